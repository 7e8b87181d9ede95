"""`trl-more serve`: reward models as a local HTTP scoring service for other RL frameworks (docs/serve.md).

- `ServeConfig`: the command's options (token, limits, batching).
- `ServedModel`: one model, its tokenization limits and batched scoring without gradients.
- `ServedEnsemble`: several models answering as one, with the spread of their rewards as every item's uncertainty.
- `BatchingScorer` (`request_queue`): concurrent requests batched together with bounded latency.
- `create_app`: the FastAPI application (OpenRLHF's schema and our own endpoints).

Needs the `serve` extra: `pip install trl-more[serve]` (FastAPI and uvicorn).
"""

from .serve_config import ServeConfig


__all__ = ["ServeConfig"]
