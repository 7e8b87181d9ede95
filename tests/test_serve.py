"""`trl-more serve` through a real server on 127.0.0.1 and a real HTTP client: scores equal to in-process scoring,
the token enforced, clear 4xx bodies for bad input, and a concurrent load answered completely and exactly once."""

import json
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
import uvicorn
from pydantic import BaseModel, ConfigDict

from trl_more.cli.serve import build_app
from trl_more.metrics import evaluate_reward_model, set_reward_temperature
from trl_more.multi_objective import MultiObjectiveRewardModel
from trl_more.serve import ServeConfig
from trl_more.testing import free_port, tiny_reward_model, tiny_tokenizer, toy_preference_sources


TOKEN = "test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
OBJECTIVES = ["helpfulness", "safety", "verbosity"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    tokenizer = tiny_tokenizer()
    plain = tiny_reward_model("qwen2", tokenizer, seed=3)
    set_reward_temperature(plain, 2.0)
    plain.save_pretrained(folder / "plain")
    tokenizer.save_pretrained(folder / "plain")
    torch.manual_seed(1)
    armo = MultiObjectiveRewardModel.from_backbone(
        tiny_reward_model("qwen2", tokenizer, seed=4), OBJECTIVES, gate_hidden_sizes=[16]
    )
    with torch.no_grad():
        armo.regression_layer.weight.normal_(std=0.5)
    armo.save_pretrained(folder / "armo", tokenizer=tokenizer)
    other = tiny_reward_model("qwen2", tokenizer, seed=5)
    set_reward_temperature(other, 0.5)
    other.save_pretrained(folder / "other")
    tokenizer.save_pretrained(folder / "other")
    return {"plain": folder / "plain", "armo": folder / "armo", "other": folder / "other"}, tokenizer


@pytest.fixture(scope="module")
def server(models):
    paths, _ = models
    config = ServeConfig(
        model=[f"{name}={path}" for name, path in paths.items()],
        token=TOKEN,
        max_wait_ms=20,
        ensemble=[f"pair={paths['plain']},{paths['other']}"],
        max_items_per_request=64,
        max_request_bytes=20_000,
        max_length=96,
        max_batch_size=16,
    )
    app = build_app(config)
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    while not uvicorn_server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


def post(url, path, body, headers=HEADERS):
    return httpx.post(url + path, json=body, headers=headers, timeout=60)


def test_health_needs_no_token_and_everything_else_does(server):
    url, _ = server
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/v1/models").status_code == 401
    wrong = post(url, "/v1/rewards", {"items": []}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong token" in wrong.json()["error"]
    in_url = httpx.post(url + f"/v1/rewards?token={TOKEN}", json={"model": "plain", "items": []})
    assert in_url.status_code == 422  # authenticated by the URL (OpenRLHF's client sends no headers); no items
    described = httpx.get(url + "/v1/models", headers=HEADERS).json()["models"]
    assert described["plain"]["temperature"] == 2.0 and described["armo"]["objectives"] == OBJECTIVES


def test_preferences_equal_in_process_evaluation_with_the_calibrated_probability(server, models):
    url, _ = server
    paths, tokenizer = models
    pairs = toy_preference_sources(6)["polite"]
    answer = post(url, "/v1/preferences", {"model": "plain", "pairs": list(pairs)}).json()
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(paths["plain"])
    expected = evaluate_reward_model(model, tokenizer, pairs, show_progress=False, temperature=1.0).margins["eval"]
    for row, margin in zip(answer["preferences"], expected):
        assert row["chosen_reward"] - row["rejected_reward"] == pytest.approx(margin, abs=1e-5)
        assert row["probability"] == pytest.approx(1 / (1 + math.exp(-margin / 2.0)), abs=1e-6)  # T = 2
    assert answer["temperature"] == 2.0


def test_the_openrlhf_schema_and_the_rewards_endpoint_agree(server):
    url, _ = server
    prompt, response = "Human: How do I bake bread? Assistant:", " Mix flour, water and yeast."
    ours = post(url, "/v1/rewards", {"model": "plain", "items": [{"prompt": prompt, "response": response}]}).json()
    assert ours["rewards"][0]["calibrated_reward"] == pytest.approx(ours["rewards"][0]["reward"] / 2.0)
    openrlhf = post(
        url, "/get_reward", {"model": "plain", "query": [prompt + response], "prompts": [prompt], "labels": [None]}
    )
    assert openrlhf.json()["rewards"] == pytest.approx([ours["rewards"][0]["reward"]], abs=1e-6)
    assert openrlhf.json()["scores"] == openrlhf.json()["rewards"]


def test_an_ensemble_returns_its_mean_and_uncertainty_on_the_members_scale(server):
    url, _ = server
    prompt, response = "Human: How do I bake bread? Assistant:", " Mix flour, water and yeast."
    item = {"prompt": prompt, "response": response}
    members = [
        post(url, "/v1/rewards", {"model": name, "items": [item]}).json()["rewards"][0] for name in ("plain", "other")
    ]
    scaled = [members[0]["reward"] / 2.0, members[1]["reward"] / 0.5]  # each member's stored temperature
    answer = post(url, "/v1/rewards", {"model": "pair", "items": [item]}).json()["rewards"][0]
    assert answer["member_rewards"] == pytest.approx(scaled, abs=1e-5)
    assert answer["reward"] == pytest.approx(sum(scaled) / 2, abs=1e-5)
    assert answer["uncertainty"] == pytest.approx(abs(scaled[0] - scaled[1]) / 2, abs=1e-5)
    openrlhf = post(url, "/get_reward", {"model": "pair", "query": [prompt + response], "prompts": [prompt]}).json()
    assert openrlhf["rewards"] == pytest.approx([answer["reward"]], abs=1e-6)
    assert openrlhf["extra_logs"]["uncertainty"] == pytest.approx([answer["uncertainty"]], abs=1e-6)
    assert (
        "uncertainty" not in members[0]
        and "uncertainty"
        not in post(url, "/get_reward", {"model": "plain", "query": [prompt + response], "prompts": [prompt]}).json()[
            "extra_logs"
        ]
    )
    described = httpx.get(url + "/v1/models", headers=HEADERS).json()["models"]["pair"]
    assert [member["temperature"] for member in described["members"]] == [2.0, 0.5]
    steered = post(url, "/v1/rewards", {"model": "pair", "items": [item], "objective_weights": {"safety": 1.0}})
    assert steered.status_code == 422 and "no objectives to steer" in steered.json()["error"]


def test_multi_objective_scores_gates_and_steering(server):
    url, _ = server
    item = {"prompt": "Human: a joke? Assistant:", "response": " The scarecrow was outstanding in his field."}
    gated = post(url, "/v1/rewards", {"model": "armo", "items": [item]}).json()["rewards"][0]
    assert set(gated["objectives"]) == set(OBJECTIVES) == set(gated["gate_weights"])
    weights = {"helpfulness": 1.0, "safety": 0.5}
    steered = post(url, "/v1/rewards", {"model": "armo", "items": [item], "objective_weights": weights}).json()[
        "rewards"
    ][0]
    assert steered["gate_weights"] == pytest.approx({"helpfulness": 1.0, "safety": 0.5, "verbosity": 0.0})
    assert steered["reward"] == pytest.approx(sum(w * steered["objectives"][k] for k, w in weights.items()), abs=1e-5)


class VLLMClassificationData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int
    label: str | None
    probs: list[float]
    num_classes: int


class VLLMUsageInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = 0
    prompt_tokens_details: dict | None = None


class VLLMClassificationResponse(BaseModel):
    """vLLM's answer to `/classify`, field for field (vllm/entrypoints/pooling/classify/protocol.py:
    `ClassificationResponse` with `id`, `object="list"`, `created`, `model`, `data: list[ClassificationData]` of
    `index`, `label`, `probs`, `num_classes`, and `usage: UsageInfo`, vllm/entrypoints/openai/protocol.py); extra
    fields are refused here so that the answer holds exactly vLLM's."""

    model_config = ConfigDict(extra="forbid")
    id: str
    object: str
    created: int
    model: str
    data: list[VLLMClassificationData]
    usage: VLLMUsageInfo


def test_classify_answers_the_request_verl_sends_in_vllms_schema(server, models):
    """verl's reward loop (verl/experimental/reward_loop/reward_loop.py, `compute_score_disrm`) posts
    `{"model", "input": <the chat-rendered prompt and response>, "activation": False}` to `/classify` and reads
    `output["data"][-1]["probs"][-1]` as the reward: it is the raw reward, as `/v1/rewards` gives it."""
    url, _ = server
    _, tokenizer = models
    prompt, response = "Human: How do I bake bread? Assistant:", " Mix flour, water and yeast."
    reward = post(url, "/v1/rewards", {"model": "plain", "items": [{"prompt": prompt, "response": response}]}).json()
    reward = reward["rewards"][0]["reward"]
    text = prompt + response + tokenizer.eos_token  # as the model was trained (TRL appends EOS to plain text)
    answer = post(url, "/classify", {"model": "plain", "input": text, "activation": False})
    assert answer.status_code == 200, answer.text
    parsed = VLLMClassificationResponse.model_validate(answer.json())
    assert parsed.object == "list" and parsed.model == "plain" and parsed.id.startswith("classify-")
    assert answer.json()["data"][-1]["probs"][-1] == pytest.approx(reward, abs=1e-6)  # what verl reads
    assert (parsed.data[0].index, parsed.data[0].label, parsed.data[0].num_classes) == (0, "LABEL_0", 1)
    assert parsed.usage.prompt_tokens == parsed.usage.total_tokens == len(tokenizer(text)["input_ids"])
    assert parsed.usage.completion_tokens == 0
    sigmoid = 1 / (1 + math.exp(-reward))
    for activation in ({}, {"use_activation": True}, {"activation": True}):  # vLLM applies sigmoid by default
        activated = post(url, "/v1/classify", {"model": "plain", "input": [text, text], **activation}).json()
        assert [row["index"] for row in activated["data"]] == [0, 1]
        assert [row["probs"][0] for row in activated["data"]] == pytest.approx([sigmoid] * 2, abs=1e-6)
    raw = post(url, "/classify", {"model": "plain", "input": text, "use_activation": False, "priority": 0}).json()
    assert raw["data"][0]["probs"] == pytest.approx([reward], abs=1e-6)


def test_classify_reads_a_conversation_and_serves_ensembles_and_the_multi_objective_model(server, models):
    url, _ = server
    paths, tokenizer = models
    messages = [{"role": "user", "content": "How do I bake bread?"}, {"role": "assistant", "content": "Knead it."}]
    ours = post(url, "/v1/rewards", {"model": "plain", "items": [{"prompt": messages[:1], "response": "Knead it."}]})
    reward = ours.json()["rewards"][0]["reward"]
    chat = post(url, "/classify", {"model": "plain", "messages": messages, "use_activation": False}).json()
    assert chat["data"][0]["probs"] == pytest.approx([reward], abs=1e-6)  # vLLM's chat form
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)  # what verl renders and sends as `input`
    as_text = post(url, "/classify", {"model": "plain", "input": rendered, "use_activation": False}).json()
    assert as_text["data"][0]["probs"] == pytest.approx([reward], abs=1e-6)

    item = {"prompt": messages[:1], "response": "Knead it."}
    mean = post(url, "/v1/rewards", {"model": "pair", "items": [item]}).json()["rewards"][0]["reward"]
    ensemble = post(url, "/classify", {"model": "pair", "input": rendered, "use_activation": False}).json()
    assert ensemble["data"][0]["probs"] == pytest.approx([mean], abs=1e-5)

    # A whole text gives no prompt length: the multi-objective model scores it as GRPOTrainer does.
    armo = MultiObjectiveRewardModel.from_pretrained(paths["armo"]).eval()
    with torch.no_grad():
        expected = armo(**tokenizer(rendered, return_tensors="pt")).logits[0, 0].item()
    gated = post(url, "/classify", {"model": "armo", "input": rendered, "use_activation": False}).json()
    assert gated["data"][0]["probs"] == pytest.approx([expected], abs=1e-5)


@pytest.mark.parametrize(
    "path, body, status, message",
    [
        (
            "/v1/rewards",
            {"items": [{"prompt": "Human: hi Assistant:", "response": " r"}]},
            422,
            "several models are served",
        ),
        (
            "/v1/rewards",
            {"model": "nope", "items": [{"prompt": "Human: hi Assistant:", "response": " r"}]},
            404,
            "unknown model 'nope'",
        ),
        (
            "/v1/rewards",
            {"model": "plain", "items": [{"prompt": "Human: hi Assistant:"}]},
            422,
            "items.0.response: Field required",
        ),
        ("/v1/rewards", {"model": "plain", "itmes": []}, 422, "Extra inputs are not permitted"),
        ("/v1/rewards", {"model": "plain", "items": []}, 422, "no items"),
        (
            "/v1/rewards",
            {"model": "plain", "items": [{"prompt": "Human: hi Assistant:", "response": ""}]},
            422,
            "item 0: the response is empty",
        ),
        (
            "/v1/rewards",
            {"model": "plain", "items": [{"prompt": "Human: hi Assistant:", "response": " long" * 200}]},
            422,
            "max_length=96",
        ),
        (
            "/v1/rewards",
            {"model": "plain", "items": [{"prompt": "Human: hi Assistant:", "response": " r"}] * 65},
            413,
            "more than the server's 64",
        ),
        ("/v1/rewards", {"model": "plain", "items": [{"prompt": "p" * 30_000, "response": "r"}]}, 413, "bytes"),
        (
            "/v1/rewards",
            {
                "model": "plain",
                "items": [{"prompt": "Human: hi Assistant:", "response": " r"}],
                "objective_weights": {"a": 1},
            },
            422,
            "no objectives to steer",
        ),
        (
            "/v1/rewards",
            {
                "model": "armo",
                "items": [{"prompt": "Human: hi Assistant:", "response": " r"}],
                "objective_weights": {"a": 1},
            },
            422,
            "unknown objective",
        ),
        (
            "/get_reward",
            {"model": "plain", "query": ["abc"], "prompts": ["xyz"]},
            422,
            "does not start with its prompt",
        ),
        ("/get_reward", {"model": "plain", "query": ["abc"]}, 422, "one prompt per query"),
        ("/classify", {"model": "plain"}, 422, "either `input`"),
        (
            "/classify",
            {"model": "plain", "input": "a", "messages": [{"role": "user", "content": "b"}]},
            422,
            "either `input`",
        ),
        (
            "/classify",
            {"model": "plain", "messages": [{"role": "user", "content": "b"}]},
            422,
            "must end with the assistant",
        ),
        ("/classify", {"model": "plain", "input": []}, 422, "no items"),
        ("/classify", {"model": "plain", "input": [""]}, 422, "input 0: the input is empty"),
        ("/classify", {"model": "plain", "input": " long" * 200}, 422, "max_length=96"),
        ("/classify", {"model": "plain", "input": ["x"] * 65}, 413, "more than the server's 64"),
    ],
)
def test_bad_requests_get_a_4xx_body_that_names_the_problem(server, path, body, status, message):
    url, _ = server
    answer = post(url, path, body)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_a_body_that_is_not_json_is_a_422_and_the_server_keeps_serving(server):
    url, _ = server
    answer = httpx.post(url + "/v1/rewards", content=b"{not json", headers=HEADERS)
    assert answer.status_code == 422 and "invalid request" in answer.json()["error"]
    assert httpx.get(url + "/health").status_code == 200


def test_a_concurrent_load_is_answered_completely_exactly_once_and_batched(server):
    url, app = server
    pool = [
        {"prompt": f"Human: question {i}? Assistant:", "response": f" answer {i}{' more' * (i % 5)}"}
        for i in range(20)
    ]
    expected = post(url, "/v1/rewards", {"model": "plain", "items": pool}).json()["rewards"]
    statistics = app.state.scorer.statistics
    calls_before, requests_before = statistics.calls, statistics.requests

    def client(seed):
        rng = random.Random(seed)
        answers = []
        with httpx.Client(base_url=url, headers=HEADERS, timeout=120) as session:
            for _ in range(50):
                chosen = rng.sample(range(len(pool)), rng.randint(1, 3))
                reply = session.post("/v1/rewards", json={"model": "plain", "items": [pool[i] for i in chosen]})
                answers.append((chosen, reply.status_code, reply.json()))
        return answers

    with ThreadPoolExecutor(8) as executor:
        results = [answer for answers in executor.map(client, range(8)) for answer in answers]
    assert len(results) == 400
    for chosen, status, body in results:  # every request got its own items' rewards, in its order
        assert status == 200
        assert [row["reward"] for row in body["rewards"]] == pytest.approx(
            [expected[i]["reward"] for i in chosen], abs=1e-5
        )
    assert statistics.requests - requests_before == 400
    assert statistics.calls - calls_before < 400  # concurrent requests shared forward passes
    json.dumps(results)  # plain JSON throughout


def test_serving_without_a_token_needs_no_auth_spelled_out(monkeypatch, models):
    from trl_more.cli import parse_subcommand_arguments

    monkeypatch.delenv("TRL_MORE_SERVE_TOKEN", raising=False)
    paths, _ = models
    with pytest.raises(ValueError, match=r"TRL_MORE_SERVE_TOKEN .* or serve without authentication knowingly"):
        parse_subcommand_arguments("serve", ["--model", str(paths["plain"])])
    (config,) = parse_subcommand_arguments("serve", ["--model", str(paths["plain"]), "--no_auth"])
    assert config.token is None and config.host == "127.0.0.1" and config.models == {"plain": str(paths["plain"])}
    monkeypatch.setenv("TRL_MORE_SERVE_TOKEN", "from-env")
    (config,) = parse_subcommand_arguments("serve", ["--model", f"a={paths['plain']}", f"b={paths['armo']}"])
    assert config.token == "from-env" and list(config.models) == ["a", "b"]
    (config,) = parse_subcommand_arguments("serve", ["--ensemble", f"e={paths['plain']},{paths['other']}"])
    assert config.models == {} and config.ensembles == {"e": [str(paths["plain"]), str(paths["other"])]}
    for bad in ("e=one_path", "no_name"):
        with pytest.raises(ValueError, match="NAME=PATH1,PATH2"):
            parse_subcommand_arguments("serve", ["--ensemble", bad])
    with pytest.raises(ValueError, match="Give the reward models to serve"):
        parse_subcommand_arguments("serve", [])
