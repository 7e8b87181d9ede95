"""Generation with a vLLM engine colocated with each training process, its weights synced from the policy."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from accelerate import Accelerator
from accelerate.utils import is_peft_model
from torch import nn

from ..._compat import ensure_master_addr_port, gather_parameters
from .base import GenerationBackend, SamplingSettings, truncate_after_eos


def import_vllm():
    """The `vllm` module, imported on first use so that the package works without it."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            "`generation_backend='vllm'` needs vLLM (Linux with a CUDA GPU): `pip install 'trl-more[vllm]'`. "
            "Use `generation_backend='transformers'` otherwise."
        ) from error
    return vllm


class VLLMGenerationBackend(GenerationBackend):
    """Samples with vLLM: one engine per training process, on that process's GPU ("colocate" mode).

    The engine is built from the policy's checkpoint (`model.name_or_path`) with vLLM's `external_launcher` executor,
    which runs it inside the already launched training process. Before every generation round the current policy
    weights are copied into the engine, one parameter at a time (under ZeRO-3 each one is gathered first, so every
    process must take part), and the prefix cache is reset. A round is a single `LLM.generate` call with
    `SamplingParams(n=num_samples, ...)` on the prompts' token ids; vLLM schedules the batches itself.

    Args:
        model: The policy (used for its checkpoint path; its weights are synced before every round).
        accelerator: The trainer's accelerator.
        settings: Sampling settings.
        eos_token_ids: Ids that end a response.
        gpu_memory_utilization: Fraction of the GPU memory the engine may use (weights, activations, KV cache); the
            rest stays for training.
        max_model_length: Context length of the engine (prompt + response); `None` takes the model's.
        seed: Base sampling seed; process i uses `seed + i`.
    """

    def __init__(
        self,
        model: nn.Module,
        accelerator: Accelerator,
        settings: SamplingSettings,
        eos_token_ids: Collection[int],
        gpu_memory_utilization: float = 0.3,
        max_model_length: int | None = None,
        seed: int = 0,
    ):
        vllm = import_vllm()
        if is_peft_model(model):
            raise NotImplementedError(
                "The vLLM backend syncs full weights and does not merge PEFT adapters. Use "
                "`generation_backend='transformers'` with PEFT, or train without an adapter."
            )
        self.accelerator = accelerator
        self.settings = settings
        self.eos_token_ids = set(eos_token_ids)
        self._sampling_params = vllm.SamplingParams
        # The external launcher reads the process layout from the environment (set here too for a single process
        # started without a launcher).
        os.environ["RANK"] = str(accelerator.process_index)
        os.environ["LOCAL_RANK"] = str(accelerator.local_process_index)
        os.environ["WORLD_SIZE"] = str(accelerator.num_processes)
        ensure_master_addr_port()
        self.llm = vllm.LLM(
            model=model.name_or_path,
            tensor_parallel_size=1,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_length,
            distributed_executor_backend="external_launcher",
            seed=seed + accelerator.process_index,
        )
        # Loading the checkpoint takes a different time on every process; start training together.
        accelerator.wait_for_everyone()

    def generate(
        self, model: nn.Module, prompt_ids: Sequence[Sequence[int]], num_samples: int, seed: int
    ) -> list[list[list[int]]]:
        self.load_weights(model)
        settings = self.settings
        sampling_params = self._sampling_params(
            n=num_samples,
            seed=seed,  # vLLM's per-request seed: the round samples the same whatever the engine did before
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k if settings.top_k > 0 else -1,  # -1 disables top-k in every vLLM version
            repetition_penalty=settings.repetition_penalty,
            max_tokens=settings.max_new_tokens,
        )
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(ids)} for ids in prompt_ids], sampling_params=sampling_params, use_tqdm=False
        )
        return [
            [truncate_after_eos(list(completion.token_ids), self.eos_token_ids) for completion in output.outputs]
            for output in outputs
        ]

    def load_weights(self, model: nn.Module) -> None:
        """Copy the policy's current weights into the engine (collective under ZeRO-3: every process must call it)."""
        unwrapped = self.accelerator.unwrap_model(model)
        engine_model = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        gather_params = gather_parameters(self.accelerator)
        for name, parameter in unwrapped.named_parameters():
            with gather_params([parameter]):
                engine_model.load_weights([(name.replace("_checkpoint_wrapped_module.", ""), parameter.data)])
        self.llm.reset_prefix_cache()
