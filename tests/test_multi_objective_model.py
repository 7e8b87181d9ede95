import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub import HfApi
from transformers import AutoModelForSequenceClassification

from trl_more.multi_objective import MultiObjectiveRewardModel, MultiObjectiveRewardModelConfig
from trl_more.testing import tiny_reward_model, tiny_tokenizer
from trl_more.tokenization import fit_to_max_length, tokenize_prompt, tokenize_prompt_response


OBJECTIVES = ["helpfulness", "correctness", "verbosity"]

# A second template, unlike trl_more.testing.CHAT_TEMPLATE: a leading bos, roles as text, newline-separated turns.
OTHER_CHAT_TEMPLATE = (
    "<|endoftext|>{% for message in messages %}<|system|>{{ message['role'] }}\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|system|>assistant\n{% endif %}"
)


def build_model(architecture="qwen2", tokenizer=None, **config_kwargs):
    tokenizer = tokenizer or tiny_tokenizer("wordpiece" if architecture in ("bert", "roberta") else "bpe")
    backbone = tiny_reward_model(architecture, tokenizer)
    torch.manual_seed(1)
    config_kwargs.setdefault("gate_hidden_sizes", [16, 16])
    model = MultiObjectiveRewardModel.from_backbone(backbone, OBJECTIVES, **config_kwargs)
    with torch.no_grad():  # a regression layer that gives distinct objective rewards
        model.regression_layer.weight.normal_(std=0.5)
    return model.eval(), tokenizer


def prompt_alone_hidden_state(model, prompt_ids):
    with torch.no_grad():
        return model.backbone(input_ids=torch.tensor([prompt_ids])).last_hidden_state[0, -1]


def padded(tokenizer, sequences, side):
    return tokenizer.pad({"input_ids": sequences}, padding_side=side, return_tensors="pt")


@pytest.fixture(scope="module")
def qwen():
    return build_model("qwen2")


CONVERSATIONS = [
    ([{"role": "user", "content": "How do I bake bread at home?"}], [{"role": "assistant", "content": "Mix flour."}]),
    (
        [
            {"role": "user", "content": "Tell me a joke."},
            {"role": "assistant", "content": "Why did the scarecrow win?"},
            {"role": "user", "content": "Why?"},
        ],
        [{"role": "assistant", "content": "He was outstanding in his field, and the quick brown fox agreed."}],
    ),
]
PLAIN = [
    ("Human: What is the capital of France? Assistant:", " Paris."),
    ("Human: Can you tell me a joke? Assistant:", " The quick brown fox jumps over the lazy dog, twice."),
]


@pytest.mark.parametrize("template", ["testing", "other", "plain"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_gate_reads_the_last_prompt_token(qwen, template, padding_side):
    model, tokenizer = qwen
    if template == "other":
        tokenizer = tiny_tokenizer()
        tokenizer.chat_template = OTHER_CHAT_TEMPLATE
    examples = PLAIN if template == "plain" else CONVERSATIONS
    sequences, prompt_lengths, prompts = [], [], []
    for prompt, response in examples:
        ids, prompt_length = tokenize_prompt_response(tokenizer, prompt, response)
        prompt_ids = tokenize_prompt(tokenizer, prompt)
        assert prompt_length == len(prompt_ids) and ids[:prompt_length] == prompt_ids
        sequences.append(ids)
        prompt_lengths.append(prompt_length)
        prompts.append(prompt_ids)
    assert len(set(map(len, sequences))) == len(sequences)  # different lengths, so padding happens
    inputs = padded(tokenizer, sequences, padding_side)
    with torch.no_grad():
        outputs = model(**inputs, prompt_lengths=torch.tensor(prompt_lengths))
    for row, prompt_ids in enumerate(prompts):
        torch.testing.assert_close(
            outputs.prompt_hidden_states[row], prompt_alone_hidden_state(model, prompt_ids), atol=1e-5, rtol=1e-5
        )
        with torch.no_grad():  # the regression layer reads the last token of the unpadded sequence
            alone = model(input_ids=torch.tensor([sequences[row]]), prompt_lengths=torch.tensor([prompt_lengths[row]]))
        torch.testing.assert_close(outputs.logits[row], alone.logits[0], atol=1e-5, rtol=1e-5)
    assert (outputs.prompt_hidden_states - outputs.pooled_hidden_states).abs().amax() > 1e-3


def test_gate_reads_the_prompt_after_truncation_of_long_responses(qwen):
    model, tokenizer = qwen
    prompt, response = PLAIN[1][0], " " + "and the quick brown fox jumps over the lazy dog " * 8
    ids, prompt_length = tokenize_prompt_response(tokenizer, prompt, response)
    truncated, kept_prompt = fit_to_max_length(ids, prompt_length, prompt_length + 5, "keep_start")
    assert len(truncated) == prompt_length + 5 and kept_prompt == prompt_length
    with torch.no_grad():
        outputs = model(input_ids=torch.tensor([truncated]), prompt_lengths=torch.tensor([kept_prompt]))
    expected = prompt_alone_hidden_state(model, tokenize_prompt(tokenizer, prompt))
    torch.testing.assert_close(outputs.prompt_hidden_states[0], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="leaves no room for the response within max_length=4"):
        fit_to_max_length(ids, prompt_length, 4, "keep_start", where="row 7")
    cut, cut_prompt = fit_to_max_length(ids, prompt_length, len(ids) - 3, "keep_end")
    assert cut == ids[3:] and cut_prompt == prompt_length - 3


def test_gating_weights_sum_to_beta_and_scores_are_gated_sums(qwen):
    model, tokenizer = qwen
    with torch.no_grad():
        model.gate.beta.fill_(3.5)
    inputs = tokenizer([p + r for p, r in PLAIN], padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs, prompt_lengths=torch.tensor([4, 4]))
    torch.testing.assert_close(outputs.gating_weights.sum(-1), torch.full((2,), 3.5))
    torch.testing.assert_close(outputs.logits[:, 0], (outputs.gating_weights * outputs.rewards).sum(-1))
    assert outputs.logits.shape == (2, 1) and outputs.rewards.shape == (2, 3)
    with torch.no_grad():
        model.gate.beta.fill_(1.0)


def test_grpo_style_scoring_of_whole_texts_uses_the_last_token_for_the_gate(qwen):
    model, tokenizer = qwen
    texts = [p + r for p, r in PLAIN] + ["Human: hi Assistant: hello"]
    with torch.no_grad():
        outputs = model(**tokenizer(texts, padding=True, return_tensors="pt", padding_side="right"))
        scores = outputs.logits[:, 0]
        alone = [model(**tokenizer([text], return_tensors="pt")).logits[0, 0] for text in texts]
    assert scores.shape == (3,)
    torch.testing.assert_close(scores, torch.stack(alone), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs.prompt_hidden_states, outputs.pooled_hidden_states)


def test_steering_and_breakdown(qwen):
    model, tokenizer = qwen
    inputs = tokenizer([p + r for p, r in PLAIN], padding=True, return_tensors="pt")
    with torch.no_grad():
        gated = model(**inputs)
        steered = model(**inputs, objective_weights={"helpfulness": 2.0, "verbosity": -1.0})
        with model.steer([0.0, 1.0, 0.0]):
            correctness_only = model(**inputs)
        after = model(**inputs)
    torch.testing.assert_close(steered.logits[:, 0], 2.0 * steered.rewards[:, 0] - steered.rewards[:, 2])
    torch.testing.assert_close(correctness_only.logits[:, 0], correctness_only.rewards[:, 1])
    torch.testing.assert_close(after.logits, gated.logits)  # the gate is back after the block
    breakdown = model.score_breakdown(steered)
    assert list(breakdown[0]) == OBJECTIVES and breakdown[0]["correctness"] == 0.0
    for row, contributions in enumerate(breakdown):
        assert sum(contributions.values()) == pytest.approx(steered.logits[row, 0].item(), abs=1e-5)
    with pytest.raises(ValueError, match=r"Unknown objective 'length'; this model's objectives are \["):
        model(**inputs, objective_weights={"length": 1.0})
    with pytest.raises(ValueError, match=r"shape \(k,\) or \(batch, k\) with k = 3"):
        model(**inputs, objective_weights=[1.0, 2.0])


def test_reward_transform_is_applied_before_gating(qwen):
    model, tokenizer = qwen
    inputs = tokenizer([p + r for p, r in PLAIN], padding=True, return_tensors="pt")
    transform = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.5, -0.25, 0.0]]
    model.set_reward_transform(transform)
    try:
        with torch.no_grad():
            outputs = model(**inputs, objective_weights=[1.0, 1.0, 1.0])
        rewards = outputs.rewards
        expected = torch.stack([rewards[:, 0] - 0.5 * rewards[:, 2], rewards[:, 1] - 0.25 * rewards[:, 2]], -1)
        torch.testing.assert_close(outputs.transformed_rewards[:, :2], expected)
        torch.testing.assert_close(outputs.transformed_rewards[:, 2], torch.zeros(2))
        with pytest.raises(ValueError, match="must be a 3 x 3 matrix"):
            model.set_reward_transform([[1.0]])
    finally:
        model.set_reward_transform(None)


def test_prompt_lengths_out_of_range_is_an_error(qwen):
    model, tokenizer = qwen
    inputs = tokenizer(["Human: hi Assistant: hello"], return_tensors="pt")
    length = inputs["input_ids"].shape[1]
    with pytest.raises(ValueError, match="between 1 and the number of attended tokens"):
        model(**inputs, prompt_lengths=torch.tensor([length + 1]))


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_encoder_backbone(padding_side):
    model, tokenizer = build_model("bert")
    sequences = [
        tokenizer("Human: hi Assistant: hello there")["input_ids"],
        tokenizer("Human: bake bread")["input_ids"],
    ]
    inputs = padded(tokenizer, sequences, padding_side)
    with torch.no_grad():
        outputs = model(**inputs, prompt_lengths=torch.tensor([3, 2]))
        for row, ids in enumerate(sequences):
            hidden = model.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
            torch.testing.assert_close(outputs.prompt_hidden_states[row], hidden[[3, 2][row] - 1], atol=1e-5, rtol=0)
            torch.testing.assert_close(outputs.pooled_hidden_states[row], hidden[-1], atol=1e-5, rtol=0)


def test_mean_pooling_averages_the_response_tokens(qwen):
    _, tokenizer = qwen
    model, _ = build_model("qwen2", tokenizer, pooling="mean")
    sequences, prompt_lengths = zip(*(tokenize_prompt_response(tokenizer, p, r) for p, r in PLAIN))
    with torch.no_grad():
        outputs = model(**padded(tokenizer, list(sequences), "left"), prompt_lengths=torch.tensor(prompt_lengths))
        for row, (ids, prompt_length) in enumerate(zip(sequences, prompt_lengths)):
            hidden = model.backbone(input_ids=torch.tensor([ids])).last_hidden_state[0]
            torch.testing.assert_close(
                outputs.pooled_hidden_states[row], hidden[prompt_length:].mean(0), atol=1e-5, rtol=0
            )
            torch.testing.assert_close(outputs.prompt_hidden_states[row], hidden[prompt_length - 1], atol=1e-5, rtol=0)


def test_config_errors():
    with pytest.raises(ValueError, match="lists no `objectives`"):
        MultiObjectiveRewardModel(MultiObjectiveRewardModelConfig(text_config={"model_type": "llama"}))
    with pytest.raises(ValueError, match="no `text_config`"):
        MultiObjectiveRewardModel(MultiObjectiveRewardModelConfig(objectives=["a"]))
    with pytest.raises(ValueError, match="unique"):
        MultiObjectiveRewardModelConfig(objectives=["a", "a"])
    with pytest.raises(ValueError, match="Unknown `pooling` 'max'"):
        MultiObjectiveRewardModelConfig(objectives=["a"], pooling="max")


LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["trl_more"] = None  # trl-more must not be importable: the saved code has to stand alone
    try:
        import trl_more
    except ImportError:
        pass
    else:
        raise SystemExit("trl_more is importable")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(1)
    folder, inputs_file = sys.argv[1], sys.argv[2]
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)  # no custom code: as the card says
    inputs = json.load(open(inputs_file))
    with torch.no_grad():
        outputs = model(
            **tokenizer(inputs["texts"], padding=True, return_tensors="pt"),
            prompt_lengths=torch.tensor(inputs["prompt_lengths"]),
        )
        steered = model(**tokenizer(inputs["texts"], padding=True, return_tensors="pt"), objective_weights=[1.0, 0, 0])
    print(json.dumps({
        "module": type(model).__module__,
        "scores": outputs.logits[:, 0].tolist(),
        "gating": outputs.gating_weights.tolist(),
        "steered": steered.logits[:, 0].tolist(),
        "breakdown": model.score_breakdown(outputs),
        "objectives": model.config.objectives,
        "transform": model.config.reward_transform,
    }))
    """
)


def test_round_trip_through_the_auto_class_in_a_fresh_process(qwen, tmp_path):
    model, tokenizer = qwen
    model.set_reward_transform([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.2, -0.1, 0.0]])
    model.config.evaluation_results = {"held-out R^2": {"helpfulness": 0.5}}
    try:
        model.save_pretrained(tmp_path / "model", tokenizer=tokenizer)
        texts = [p + r for p, r in PLAIN]
        prompt_lengths = [len(tokenize_prompt(tokenizer, p)) for p, _ in PLAIN]
        torch.set_num_threads(1)
        with torch.no_grad():
            inputs = tokenizer(texts, padding=True, return_tensors="pt")
            expected = model(**inputs, prompt_lengths=torch.tensor(prompt_lengths))
            expected_steered = model(**inputs, objective_weights=[1.0, 0, 0])
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
        model.set_reward_transform(None)
        model.config.evaluation_results = None
    saved = sorted(os.listdir(tmp_path / "model"))
    assert {"configuration_multi_objective.py", "modeling_multi_objective.py", "README.md", "tokenizer.json"} <= set(
        saved
    )
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_multi_objective.MultiObjectiveRewardModelConfig",
        "AutoModelForSequenceClassification": "modeling_multi_objective.MultiObjectiveRewardModel",
    }
    (tmp_path / "inputs.json").write_text(json.dumps({"texts": texts, "prompt_lengths": prompt_lengths}))
    (tmp_path / "load.py").write_text(LOAD_IN_FRESH_PROCESS)
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "load.py"), str(tmp_path / "model"), str(tmp_path / "inputs.json")],
        cwd=tmp_path,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr  # no question asked
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["module"].startswith("transformers_modules.")
    assert loaded["objectives"] == OBJECTIVES
    assert loaded["transform"][2] == [-0.2, -0.1, 0.0]
    assert loaded["scores"] == expected.logits[:, 0].tolist()
    assert loaded["gating"] == expected.gating_weights.tolist()
    assert loaded["steered"] == expected_steered.logits[:, 0].tolist()
    assert sum(loaded["breakdown"][0].values()) == pytest.approx(loaded["scores"][0], abs=1e-6)


def test_saved_model_loads_in_process_and_with_the_auto_class(qwen, tmp_path):
    model, tokenizer = qwen
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(
        tmp_path
    ).eval()  # registered by trl_more.multi_objective
    assert type(loaded) is MultiObjectiveRewardModel
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    card = (tmp_path / "README.md").read_text()
    assert "| 0 | helpfulness |" in card and "Gate: MLP 32 -> 16 -> 16 -> 3 (relu" in card


def captured_push(push):
    """Run `push()` with the Hub API mocked; return {path_in_repo: content} of the folder it would upload."""
    files = {}

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        folder = Path(folder_path)
        files.update(
            {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}
        )
        return mock.Mock(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    with (
        mock.patch.object(
            HfApi, "create_repo", side_effect=lambda self=None, repo_id=None, **kw: mock.Mock(repo_id=repo_id)
        ),
        mock.patch.object(HfApi, "upload_folder", autospec=True, side_effect=upload_folder),
    ):
        push()
    return files


def test_push_to_hub_sends_code_config_with_auto_map_card_and_tokenizer(qwen, tmp_path):
    model, tokenizer = qwen
    model.config.evaluation_results = {"held-out R^2": {"helpfulness": 0.5}}
    try:
        files = captured_push(lambda: model.push_to_hub("user/armo-tiny", tokenizer=tokenizer, tags=["test"]))
    finally:
        model.config.evaluation_results = None
    assert {"configuration_multi_objective.py", "modeling_multi_objective.py", "config.json", "README.md"} <= set(
        files
    )
    assert "model.safetensors" in files and "tokenizer.json" in files
    config = json.loads(files["config.json"])
    assert (
        config["auto_map"]["AutoModelForSequenceClassification"]
        == "modeling_multi_objective.MultiObjectiveRewardModel"
    )
    assert config["objectives"] == OBJECTIVES
    card = files["README.md"].decode()
    assert "- test" in card and "verbosity" in card and "trust_remote_code=True" in card
    assert "## Requirements" in card and "transformers >= 5.0" in card
    assert "AutoTokenizer.from_pretrained(path, trust_remote_code=False)" in card  # the tokenizer has no custom code
    assert config["minimum_transformers_version"] == "5.0"
    assert "## Evaluation" in card and "held-out R^2" in card and "0.5" in card
    assert b"import trl_more" not in files["modeling_multi_objective.py"]

    files = captured_push(lambda: model.save_pretrained(tmp_path, push_to_hub=True, repo_id="user/armo-tiny"))
    assert {"modeling_multi_objective.py", "config.json", "README.md", "model.safetensors"} <= set(files)


def test_trl_more_armo_reports_a_failed_upload_and_keeps_its_output(qwen, tmp_path):
    from trl_more import MultiObjectiveRewardConfig
    from trl_more.cli.armo import _save

    model, tokenizer = qwen
    args = MultiObjectiveRewardConfig(
        str(tmp_path / "armo"), push_to_hub=True, hub_model_id="user/armo-tiny", bf16=False, report_to="none"
    )
    failing_upload = mock.patch.object(MultiObjectiveRewardModel, "push_to_hub", side_effect=OSError("403 Forbidden"))
    with failing_upload, pytest.raises(SystemExit) as exit_info:
        _save(model, tokenizer, args)
    message = str(exit_info.value)
    assert (
        message.startswith("trl-more armo: Uploading") and "'user/armo-tiny' failed: OSError: 403 Forbidden" in message
    )
    assert f"saved locally and unchanged in {tmp_path / 'armo'}" in message and "hf upload user/armo-tiny" in message
    assert {"config.json", "model.safetensors", "modeling_multi_objective.py"} <= set(os.listdir(tmp_path / "armo"))
