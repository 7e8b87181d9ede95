"""The HTTP application of `trl-more serve` (FastAPI): authentication, limits, the endpoints and their error bodies.

Endpoints (docs/serve.md):

- `GET /health`: `{"status": "ok"}`, without authentication (for load balancers and readiness probes);
- `GET /v1/models`: the served models, their objectives and stored temperature;
- `POST /get_reward`: OpenRLHF's remote reward-model schema, `{"query": [...], "prompts": [...]}` in,
  `{"rewards": [...], "scores": [...], "extra_logs": {}}` out (raw rewards, as OpenRLHF's own server returns; an
  ensemble's mean, with `extra_logs: {"uncertainty": [...]}`); every query is its prompt followed by the response;
- `POST /v1/rewards`: `{"model", "items": [{"prompt", "response"}], "objective_weights"}`: per item the raw
  reward, the calibrated reward (divided by the stored temperature), for the multi-objective model the
  per-objective rewards and gate weights, and for an ensemble (`--ensemble`) the members' mean reward on one scale,
  its `uncertainty` (their spread) and `member_rewards`;
- `POST /v1/preferences`: `{"model", "pairs": [{"prompt", "chosen", "rejected"}]}`: per pair both rewards and the
  calibrated probability that the chosen response is preferred, sigmoid((r_chosen - r_rejected) / T);
- `POST /classify` (also `/v1/classify`): vLLM's classification API, the request verl's reward loop sends for a
  discriminative reward model (`{"model", "input": text or [texts], "use_activation": false}`, or one conversation in
  `messages`); the answer is vLLM's `ClassificationResponse`, `{"id", "object": "list", "created", "model", "data":
  [{"index", "label", "probs": [score], "num_classes": 1}], "usage"}`, the score being the raw reward with
  `use_activation: false` (vLLM's older names `activation` and `softmax` too) and sigmoid(reward) otherwise, as vLLM
  applies a one-label model's activation by default.

Requests authenticate with `Authorization: Bearer <token>`, or `?token=<token>` in the URL for clients that send
no headers (OpenRLHF's remote reward client). Every error is a JSON body `{"error": "..."}` with a 4xx status (401 token, 404 model, 413 size, 422 content) or 500
when scoring itself failed; the server keeps serving.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from .request_queue import BatchingScorer
from .serve_config import ServeConfig
from .served_model import ServedEnsemble, ServedModel


__all__ = ["create_app"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    content: str


Prompt = str | list[Message]


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Prompt
    response: str


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Prompt
    chosen: str
    rejected: str


class RewardsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    items: list[Item]
    objective_weights: dict[str, float] | None = None


class PreferencesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    pairs: list[Pair]
    objective_weights: dict[str, float] | None = None


class OpenRLHFRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenRLHF also sends `labels` and other fields we do not use
    query: list[str]
    prompts: list[str] | None = None
    model: str | None = None


class ClassifyRequest(BaseModel):
    """vLLM's `/classify` request (`ClassificationCompletionRequest` with `input`, `ClassificationChatRequest` with
    `messages`: vllm/entrypoints/pooling/classify/protocol.py). vLLM's other fields (`priority`, `user`,
    `request_id`, `add_special_tokens`, `truncate_prompt_tokens`, ...) are accepted and have no effect: items are
    never cut (a too long one is refused)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    input: str | list[str] | None = None
    messages: list[Message] | None = None
    use_activation: bool | None = None
    activation: bool | None = None  # vLLM's earlier name of `use_activation` (what verl sends)
    softmax: bool | None = None  # and its earliest

    @property
    def activated(self) -> bool:
        """Whether the scores go through the activation: the first of `use_activation`, `softmax`, `activation` that
        is given (vLLM's order), else yes, as vLLM does by default."""
        for value in (self.use_activation, self.softmax, self.activation):
            if value is not None:
                return value
        return True


class RequestError(Exception):
    """An error answered with `status` and `{"error": message}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def create_app(models: dict[str, ServedModel | ServedEnsemble], config: ServeConfig) -> FastAPI:
    """The application serving `models` with the limits and token of `config`."""
    scorer = BatchingScorer(config.max_batch_size, config.max_wait_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        scorer.start()
        yield
        await scorer.stop()

    app = FastAPI(title="trl-more reward models", lifespan=lifespan)
    app.state.scorer = scorer

    def authorize(request: Request) -> None:
        """The bearer token, from the `Authorization` header or, for clients that send no headers (OpenRLHF's), the
        `token` query parameter of the URL."""
        if config.token is None:
            return
        sent = request.headers.get("authorization", "").removeprefix("Bearer ")
        sent = sent or request.query_params.get("token", "")
        if not hmac.compare_digest(sent.encode(), config.token.encode()):
            raise RequestError(
                401, "missing or wrong token: send `Authorization: Bearer <token>` (or `?token=<token>` in the URL)"
            )

    async def parse(request: Request, schema: type[BaseModel]) -> Any:
        authorize(request)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > config.max_request_bytes:
            raise RequestError(413, f"the body is {length} bytes, more than the server's {config.max_request_bytes}")
        body = await request.body()
        if len(body) > config.max_request_bytes:
            raise RequestError(
                413, f"the body is {len(body)} bytes, more than the server's {config.max_request_bytes}"
            )
        try:
            return schema.model_validate_json(body)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}" for problem in error.errors()
            )
            raise RequestError(422, f"invalid request ({problems})") from None

    def served(name: str | None) -> ServedModel:
        if name is None:
            if len(models) == 1:
                return next(iter(models.values()))
            raise RequestError(422, f"several models are served ({', '.join(models)}): name one in `model`")
        if name not in models:
            raise RequestError(404, f"unknown model {name!r}; served: {', '.join(models)}")
        return models[name]

    def check_count(count: int) -> None:
        """A request holds at least one item and at most the server's `max_items_per_request`."""
        if count == 0:
            raise RequestError(422, "the request holds no items")
        if count > config.max_items_per_request:
            raise RequestError(413, f"{count} items, more than the server's {config.max_items_per_request}")

    def tokenized(
        model: ServedModel, entries: list[tuple[Any, str]], weights: dict[str, float] | None = None
    ) -> list[tuple[list[int], int]]:
        """Token ids of every item, after the checks that need no tokenization (count, steering weights)."""
        try:
            model.check_weights(weights)
        except ValueError as error:
            raise RequestError(422, str(error)) from None
        check_count(len(entries))
        items = []
        for index, (prompt, response) in enumerate(entries):
            if isinstance(prompt, list):
                prompt = [message.model_dump() for message in prompt]
            try:
                items.append(model.tokenize(prompt, response))
            except ValueError as error:
                raise RequestError(422, f"item {index}: {error}") from None
        return items

    async def scores(model: ServedModel, items, weights):
        try:
            return await scorer.score(model, items, weights)
        except Exception as error:
            raise RequestError(500, f"scoring failed: {type(error).__name__}: {error}") from None

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"models": {name: model.describe() for name, model in models.items()}}

    @app.post("/v1/rewards")
    async def rewards(request: Request) -> dict[str, Any]:
        body = await parse(request, RewardsRequest)
        model = served(body.model)
        items = tokenized(model, [(item.prompt, item.response) for item in body.items], body.objective_weights)
        results = await scores(model, items, body.objective_weights)
        return {"model": model.name, "rewards": [result.to_dict() for result in results]}

    @app.post("/v1/preferences")
    async def preferences(request: Request) -> dict[str, Any]:
        body = await parse(request, PreferencesRequest)
        model = served(body.model)
        entries = [(pair.prompt, pair.chosen) for pair in body.pairs] + [
            (pair.prompt, pair.rejected) for pair in body.pairs
        ]
        results = await scores(model, tokenized(model, entries, body.objective_weights), body.objective_weights)
        temperature = model.temperature or 1.0
        count = len(body.pairs)
        answers = []
        for chosen, rejected in zip(results[:count], results[count:]):
            margin = (chosen.reward - rejected.reward) / temperature
            answers.append(
                {
                    "chosen_reward": chosen.reward,
                    "rejected_reward": rejected.reward,
                    "probability": _sigmoid(margin),
                }
            )
        return {"model": model.name, "temperature": temperature, "preferences": answers}

    @app.post("/classify")
    @app.post("/v1/classify")
    async def classify(request: Request) -> dict[str, Any]:
        body = await parse(request, ClassifyRequest)
        model = served(body.model)
        if (body.input is None) == (body.messages is None):
            raise RequestError(422, "send either `input` (a text or a list of texts) or `messages` (one conversation)")
        if body.messages is not None:
            *prompt, response = body.messages
            if not prompt or response.role != "assistant":
                raise RequestError(
                    422, "`messages` must end with the assistant's response, after at least one message before it"
                )
            items = tokenized(model, [(prompt, response.content)])
        else:
            texts = [body.input] if isinstance(body.input, str) else body.input
            check_count(len(texts))
            items = []
            for index, text in enumerate(texts):
                try:
                    items.append(model.tokenize_text(text))
                except ValueError as error:
                    raise RequestError(422, f"input {index}: {error}") from None
        results = await scores(model, items, None)
        activated = body.activated
        data = [
            {
                "index": index,
                "label": model.label,
                "probs": [_sigmoid(result.reward) if activated else result.reward],
                "num_classes": 1,
            }
            for index, result in enumerate(results)
        ]
        tokens = sum(len((item[0] if isinstance(item[0], tuple) else item)[0]) for item in items)
        return {
            "id": f"classify-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "model": model.name,
            "data": data,
            "usage": {
                "prompt_tokens": tokens,
                "total_tokens": tokens,
                "completion_tokens": 0,
                "prompt_tokens_details": None,
            },
        }

    @app.post("/get_reward")
    async def get_reward(request: Request) -> dict[str, Any]:
        body = await parse(request, OpenRLHFRequest)
        model = served(body.model)
        if body.prompts is None or len(body.prompts) != len(body.query):
            raise RequestError(422, "send `prompts` with one prompt per query (OpenRLHF's remote reward schema)")
        entries = []
        for index, (query, prompt) in enumerate(zip(body.query, body.prompts)):
            if not query.startswith(prompt):
                raise RequestError(422, f"query {index} does not start with its prompt")
            entries.append((prompt, query[len(prompt) :]))
        results = await scores(model, tokenized(model, entries), None)
        values = [result.reward for result in results]
        uncertainty = [result.uncertainty for result in results if result.uncertainty is not None]
        return {"rewards": values, "scores": values, "extra_logs": {"uncertainty": uncertainty} if uncertainty else {}}

    return app


def _sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value)) if value > -700 else 0.0
