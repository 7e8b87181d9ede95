"""Uploading to the Hugging Face Hub: the one error every trainer and subcommand raises when an upload fails.

A failed upload never loses anything: the folder is written before the upload starts and left as it is, and the
error says what failed, where the local copy is and how to retry.
"""

from __future__ import annotations

import os


__all__ = ["HubUploadError", "upload_failure_message"]


class HubUploadError(RuntimeError):
    """Uploading a trained model to the Hub failed. Nothing local is removed: the message says where it is."""


def upload_failure_message(error: BaseException, repo_id: str | None, output_dir: str) -> str:
    """What failed, where the local copy is and how to retry, for a failed `push_to_hub`."""
    output_dir = os.path.abspath(output_dir)
    saved = any(os.path.isfile(os.path.join(output_dir, name)) for name in ("config.json", "adapter_config.json"))
    repo = repo_id or os.path.basename(output_dir)
    local = (
        f"The trained model is saved locally and unchanged in {output_dir} (weights, config, tokenizer, model card)."
        if saved
        else f"No saved model was found in {output_dir}: save it with `trainer.save_model()` before retrying."
    )
    return (
        f"Uploading {output_dir} to the Hub repository {repo!r} failed: {type(error).__name__}: {error}\n{local}\n"
        f"Retry with `trainer.push_to_hub()`, or from a shell once the cause is fixed (login: `hf auth login`): "
        f"hf upload {repo} {output_dir} . --exclude 'checkpoint-*' --exclude '_*'"
    )
