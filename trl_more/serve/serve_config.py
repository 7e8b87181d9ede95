"""Options of `trl-more serve`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# The longest item a model is served for by default when its own limit is larger or unknown (a bound on the memory
# and time one request can take).
SERVED_MAX_LENGTH = 4096
TOKEN_ENVIRONMENT_VARIABLE = "TRL_MORE_SERVE_TOKEN"


@dataclass
class ServeConfig:
    r"""
    Options of `trl-more serve` (docs/serve.md).

    Parameters:
        model (`list[str]`, *optional*, defaults to `[]`):
            Reward model folders (or Hub ids), each served under its folder name (`name=PATH` to choose the name). A
            request names the model it wants; with one model it may leave the name out.
        ensemble (`list[str]`, *optional*, defaults to `[]`):
            Ensembles served as one model, each `NAME=PATH1,PATH2,...` (two or more reward models): every item gets
            the mean of the members' rewards on one scale as its `reward`, their spread (population standard
            deviation) as its `uncertainty`, and each member's reward (`member_rewards`). The scale is every member's
            stored reward statistics, else its temperature (`ensemble_calibration`).
        ensemble_calibration (`str`, *optional*, defaults to `"stored"`):
            `"stored"` puts the members' rewards on one scale before they are averaged and refuses a member that
            stores no scale (`trl-more evaluate --save_calibrated_model` fits one); `"none"` averages raw rewards.
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Interface to listen on. The default accepts connections from this machine only; another address exposes
            the models to the network (with the token still required).
        port (`int`, *optional*, defaults to `8000`):
            TCP port.
        token (`str` or `None`, *optional*, defaults to `None`):
            Bearer token every request must send (`Authorization: Bearer <token>`); read from the
            `TRL_MORE_SERVE_TOKEN` environment variable when not given (preferable: a flag shows in the process list).
            Without one the server refuses to start, unless `no_auth` is set.
        no_auth (`bool`, *optional*, defaults to `False`):
            Serve without authentication (anyone who can reach the port can use the models).
        max_batch_size (`int`, *optional*, defaults to `32`):
            Sequences per forward pass; concurrent requests are batched together up to this size.
        max_wait_ms (`float`, *optional*, defaults to `5.0`):
            How long the first waiting request waits for others to share its batch: the latency batching adds.
        max_items_per_request (`int`, *optional*, defaults to `1024`):
            Largest number of (prompt, response) items in one request.
        max_request_bytes (`int`, *optional*, defaults to `4194304`):
            Largest request body (4 MiB); larger bodies get HTTP 413.
        max_length (`int` or `None`, *optional*, defaults to `None`):
            Longest tokenized (prompt, response); a longer item is rejected with HTTP 422 (never silently cut).
            `None`: every model's own limit, the `max_length` it was trained with (recorded in its config by
            trl-more's trainers) or else its position limit (e.g. 512 for BERT-style encoders), at most 4096 tokens;
            `GET /v1/models` shows the limit of every model.
        dtype (`str`, *optional*, defaults to `"float32"`):
            Dtype the models are loaded in (`float32`, `bfloat16`, `float16`, `auto`).
        device (`str` or `None`, *optional*, defaults to `None`):
            Device to score on; `None` picks `cuda` when available.
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Run code shipped with a model folder (the multi-objective model's modeling file when trl-more's classes are
            not registered). Only for folders whose code you have read.
    """

    model: list[str] = field(
        default_factory=list, metadata={"help": "Reward model folders or Hub ids (NAME=PATH to name one)."}
    )
    ensemble: list[str] = field(
        default_factory=list,
        metadata={"help": "An ensemble served as one model with an uncertainty per item: NAME=PATH1,PATH2,..."},
    )
    ensemble_calibration: str = field(
        default="stored",
        metadata={
            "help": "Put the members on one scale (stored) or average raw rewards (none).",
            "choices": ["stored", "none"],
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on (default: this machine only)."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    token: str | None = field(
        default=None, metadata={"help": "Bearer token required from clients (default: $TRL_MORE_SERVE_TOKEN)."}
    )
    no_auth: bool = field(default=False, metadata={"help": "Serve without authentication."})
    max_batch_size: int = field(default=32, metadata={"help": "Sequences per forward pass."})
    max_wait_ms: float = field(default=5.0, metadata={"help": "Longest wait for other requests to share a batch."})
    max_items_per_request: int = field(default=1024, metadata={"help": "Largest number of items in a request."})
    max_request_bytes: int = field(default=4 * 1024 * 1024, metadata={"help": "Largest request body in bytes."})
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest tokenized item (longer: HTTP 422). Default: each model's training max_length, else its "
            f"position limit, at most {SERVED_MAX_LENGTH}."
        },
    )
    dtype: str = field(
        default="float32",
        metadata={"help": "Dtype to load the models in.", "choices": ["float32", "bfloat16", "float16", "auto"]},
    )
    device: str | None = field(default=None, metadata={"help": "Device to score on (default: cuda if available)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code shipped with a model folder (only if you have read it)."}
    )

    def __post_init__(self):
        if not self.model and not self.ensemble:
            raise ValueError("Give the reward models to serve with --model PATH (or --ensemble NAME=PATH1,PATH2).")
        self.ensembles  # noqa: B018  (a malformed --ensemble stops the command before any model loads)
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None
        if self.token is None and not self.no_auth:
            raise ValueError(
                f"Give the clients' bearer token in ${TOKEN_ENVIRONMENT_VARIABLE} (or --token), or serve without "
                "authentication knowingly with --no_auth."
            )
        if self.no_auth and self.token is not None:
            raise ValueError("Give a token or --no_auth, not both.")
        for name in ("max_batch_size", "max_items_per_request", "max_request_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.max_wait_ms < 0:
            raise ValueError(f"`max_wait_ms` must be >= 0, got {self.max_wait_ms}.")

    @property
    def models(self) -> dict[str, str]:
        """`{name: path}` of the served models."""
        served = {}
        for spec in self.model:
            name, has_name, path = spec.partition("=")
            if not has_name:
                path, name = spec, os.path.basename(os.path.normpath(spec)) or spec
            if not name or not path:
                raise ValueError(f"Bad --model {spec!r}: give PATH or NAME=PATH.")
            if name in served:
                raise ValueError(f"Two models are served as {name!r}; name them with NAME=PATH.")
            served[name] = path
        clash = sorted(set(served) & set(self.ensembles))
        if clash:
            raise ValueError(f"{', '.join(clash)} names both a model and an ensemble; give them different names.")
        return served

    @property
    def ensembles(self) -> dict[str, list[str]]:
        """`{name: [member paths]}` of the served ensembles."""
        served = {}
        for spec in self.ensemble:
            name, has_name, paths = spec.partition("=")
            members = [path for path in paths.split(",") if path]
            if not has_name or not name or len(members) < 2:
                raise ValueError(f"Bad --ensemble {spec!r}: give NAME=PATH1,PATH2[,...] with two or more models.")
            if name in served:
                raise ValueError(f"Two ensembles are named {name!r}.")
            served[name] = members
        return served
