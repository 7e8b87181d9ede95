"""`trl-more serve`: serve reward models over HTTP, for OpenRLHF's PPO and other frameworks.

Example:
    export TRL_MORE_SERVE_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(24))")
    trl-more serve --model runs/cpu-minilm-more --port 8000
    curl -s localhost:8000/v1/rewards -H "Authorization: Bearer $TRL_MORE_SERVE_TOKEN" \\
        -d '{"items": [{"prompt": "\\n\\nHuman: Hi\\n\\nAssistant:", "response": " Hello!"}]}'

Listens on 127.0.0.1 unless `--host` says otherwise, and requires the bearer token from `$TRL_MORE_SERVE_TOKEN` (or
`--token`) unless `--no_auth` is given. Endpoints and limits: docs/serve.md. Needs `pip install trl-more[serve]`.
"""

from __future__ import annotations

from trl import TrlParser

from ..serve.serve_config import LOOPBACK_HOSTS, ServeConfig


def make_parser(prog: str | None = None) -> TrlParser:
    return TrlParser(ServeConfig, prog=prog, description=__doc__.split("\n\n")[0])


def build_app(config: ServeConfig):
    """The application with every model of `config` loaded (one copy each, on one device)."""
    import torch

    try:
        from ..serve.app import create_app
    except ImportError as error:
        raise SystemExit(
            f"`trl-more serve` needs FastAPI and uvicorn: pip install 'trl-more[serve]' ({error})"
        ) from None
    from ..serve.served_model import ServedEnsemble, ServedModel

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def load(name: str, path: str) -> ServedModel:
        return ServedModel.load(
            name, path, config.dtype, device, config.max_length, config.max_batch_size, config.trust_remote_code
        )

    models = {name: load(name, path) for name, path in config.models.items()}
    for name, paths in config.ensembles.items():
        members = [load(f"{name}/{index}", path) for index, path in enumerate(paths)]
        models[name] = ServedEnsemble(name, members, config.ensemble_calibration)
    return create_app(models, config)


def main(config: ServeConfig) -> None:
    import uvicorn

    app = build_app(config)
    if config.host not in LOOPBACK_HOSTS:
        print(
            f"Serving on {config.host}: reachable from other machines"
            + (" WITHOUT authentication." if config.no_auth else ".")
        )
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
