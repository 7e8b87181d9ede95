"""Every command of the README's command block, and every example it lists, run as a user types it.

The commands are read from README.md itself, so a command that stops working, or a new command without a run here,
fails this file. Each runs in a copy of the repository layout (`recipes/` and `examples/` linked, `../shared/data`
linked to the real data) with its own flags unchanged; the only additions are documented flags that make it tiny
(`TINY_FLAGS`: fewer steps, fewer pairs, a smaller mixture through `--mixture`), appended so that they win. Nothing
sets `bf16`, `max_length` or any other option the README does not show. Then each checks that the files the README
promises are there.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml

from trl_more.cli import main as cli_main
from trl_more.data import load_preference_source
from trl_more.synthetic import TRAINING_STYLE, policy_prompts


REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
EXAMPLES_SENTENCE = re.compile(r"`examples/` has short scripts[^:]*:(?P<names>(?:[^.]|\.py)*)\.")


def readme_commands() -> list[str]:
    """The commands of the README's set-up block (after `pip install ... &&`) and of its "Command line" block, with
    continuation lines joined and comments removed, in order and without repeats."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    command_block = next(block for block in blocks if "trl-more evaluate" in block)
    commands = []
    for block in (blocks[0], command_block):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" #")[0].split("&&")[-1].strip()
            if command and not command.startswith(("pip ", "python -m pytest")) and command not in commands:
                commands.append(" ".join(command.split()))
    return commands


def readme_examples() -> list[str]:
    return re.findall(r"`(\w+\.py)`", EXAMPLES_SENTENCE.search(README).group("names"))


# The documented flags that make each README command tiny (appended: later flags win). `{mixture}` is the command's
# own mixture with a few examples per source (`max_examples`), `{fixtures}` the folder of the test fixtures.
TINY_FLAGS = {
    "trl-more reward --config recipes/quickstart.yaml": "--max_steps 1 --mixture {mixture}",
    "trl-more reward --config recipes/reward/cpu-minilm-more.yaml": "--max_steps 1 --mixture {mixture}",
    "trl-more reward --demo": "--max_steps 1",
    "trl-more evaluate --model runs/cpu-minilm-more --output_dir runs/cpu-minilm-more/evaluation --sources "
    "hh-helpful=../shared/data/hh_rlhf/helpful-base.test.jsonl.gz --calibration_sources held_out=pairs.jsonl": (
        "--max_pairs_per_source 12"
    ),
    "trl-more evaluate --model runs/cpu-minilm-more --output_dir runs/cpu-minilm-more/audit --audit --sources "
    "hh-helpful=../shared/data/hh_rlhf/helpful-base.test.jsonl.gz": "--max_pairs_per_source 6",
    "trl-more doctor --model runs/cpu-minilm-more --output_dir runs/cpu-minilm-more/doctor --sources "
    "hh-helpful=../shared/data/hh_rlhf/helpful-base.test.jsonl.gz": "--sample_size 6",
    "trl-more evaluate --model runs/cpu-minilm-more --rewardbench allenai/reward-bench --rewardbench_version 1 "
    "--output_dir runs/cpu-minilm-more/rewardbench": "--rewardbench {fixtures}/rewardbench_v1.jsonl",  # offline
    "trl-more evaluate --model runs/cpu-minilm-more --rmbench THU-KEG/RM-Bench --output_dir "
    "runs/cpu-minilm-more/rmbench": "--rmbench {fixtures}/rmbench.json",  # offline
    "trl-more evaluate --model runs/cpu-minilm-more --best_of_n samples.jsonl --gold_model my_package.rewards:gold "
    "--output_dir runs/cpu-minilm-more/best_of_n": (
        "--gold_model trl_more.synthetic:gold_reward --best_of_n_bootstrap 50"  # the gold of `samples.jsonl`'s world
    ),
    "trl-more strength --config recipes/strength/cpu-minilm-cross-fit.yaml --save_models": (
        "--max_steps 1 --mixture {mixture}"
    ),
    "trl-more average --model runs/hh-strength/model-00 --model runs/hh-strength/model-01 --output_dir "
    "runs/hh-warm": "",
    "trl-more armo --stage regression --rating_source topical-chat --rating_path "
    "../shared/data/topical_chat/topical_chat.json --truncation_mode keep_end --max_length 256 --output_dir "
    "runs/armo-stage1": "--per_device_eval_batch_size 64",
    "python recipes/rjs_alpaca.py --smoke": "--num_iterations 1 --max_new_tokens 8",
    "TRL_MORE_SERVE_TOKEN=change-me trl-more serve --model runs/cpu-minilm-more --port 8000": "--port {port}",
}

# What the README says each command writes (relative to the working directory).
WRITES = {
    "trl-more reward --config recipes/quickstart.yaml": [
        "outputs/quickstart/model.safetensors",
        "outputs/quickstart/README.md",
        "outputs/quickstart/evaluation/metrics.md",
        "outputs/quickstart/evaluation/reliability.png",
    ],
    "trl-more reward --config recipes/reward/cpu-minilm-more.yaml": [
        "runs/cpu-minilm-more/model.safetensors",
        "runs/cpu-minilm-more/README.md",
        "runs/cpu-minilm-more/evaluation/metrics.md",
    ],
    "trl-more reward --demo": ["trainer_output/model.safetensors", "trainer_output/evaluation/metrics.md"],
    "trl-more evaluate --model runs/cpu-minilm-more --output_dir runs/cpu-minilm-more/evaluation": [
        "runs/cpu-minilm-more/evaluation/metrics.json",
        "runs/cpu-minilm-more/evaluation/reliability.png",
        "runs/cpu-minilm-more/evaluation/reward_differences.png",
        "runs/cpu-minilm-more/evaluation/temperature.json",
    ],
    "trl-more evaluate --model runs/cpu-minilm-more --output_dir runs/cpu-minilm-more/audit --audit": [
        "runs/cpu-minilm-more/audit/audit.json",
        "runs/cpu-minilm-more/audit/audit.md",
    ],
    "trl-more doctor --model runs/cpu-minilm-more --output_dir runs/cpu-minilm-more/doctor": [
        "runs/cpu-minilm-more/doctor/doctor.md",
        "runs/cpu-minilm-more/doctor/doctor.json",
    ],
    "trl-more evaluate --model runs/cpu-minilm-more --rewardbench": [
        "runs/cpu-minilm-more/rewardbench/rewardbench.json",
        "runs/cpu-minilm-more/rewardbench/rewardbench.png",
    ],
    "trl-more evaluate --model runs/cpu-minilm-more --rmbench": [
        "runs/cpu-minilm-more/rmbench/rmbench.json",
        "runs/cpu-minilm-more/rmbench/rmbench.png",
    ],
    "trl-more evaluate --model runs/cpu-minilm-more --best_of_n": [
        "runs/cpu-minilm-more/best_of_n/best_of_n.json",
        "runs/cpu-minilm-more/best_of_n/best_of_n.png",
        "runs/cpu-minilm-more/best_of_n/best_of_n_samples.jsonl",
    ],
    "trl-more strength": [
        "runs/hh-strength/strength.jsonl",
        "runs/hh-strength/strength_summary.md",
        "runs/hh-strength/model-00/model.safetensors",
        "runs/hh-strength/model-01/model.safetensors",
    ],
    "trl-more average": ["runs/hh-warm/model.safetensors", "runs/hh-warm/README.md", "runs/hh-warm/tokenizer.json"],
    "trl-more armo": ["runs/armo-stage1/README.md", "runs/armo-stage1/config.json"],
    "python recipes/rjs_alpaca.py --smoke": ["runs/rjs-alpaca-smoke/iteration-00/metrics.json"],
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data) -> Path:
    """A working directory laid out like the repository: `recipes/` and `examples/` linked, `../shared/data` the real
    data, `pairs.jsonl`, the README's placeholder for held-out pairs of the user's own (40 real HH pairs), and
    `samples.jsonl`, its placeholder for prompts with sampled responses (6 prompts of the known-answer world with 4
    responses each, whose gold reward `trl_more.synthetic.gold_reward` is then the gold)."""
    root = tmp_path_factory.mktemp("readme")
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(shared_data)
    work = root / "repo"
    work.mkdir()
    for name in ("recipes", "examples"):
        (work / name).symlink_to(REPO / name)
    harmless = load_preference_source("hh-harmless", path=shared_data / "hh_rlhf/harmless-base.test.jsonl.gz").dataset
    harmless.select(range(40)).to_json(work / "pairs.jsonl")  # TRL's format: prompt, chosen, rejected
    rng = np.random.default_rng(0)
    samples = [
        {"prompt": prompt.text, "responses": [TRAINING_STYLE.sample(prompt, rng) for _ in range(4)]}
        for prompt in policy_prompts(6)
    ]
    (work / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in samples))
    return work


def tiny_flags(command: str, workdir: Path, port: int = 0) -> list[str]:
    flags = TINY_FLAGS[command].format(
        mixture=small_mixture(command, workdir) if "{mixture}" in TINY_FLAGS[command] else "",
        fixtures=REPO / "tests" / "fixtures",
        port=port,
    )
    return shlex.split(flags)


def small_mixture(command: str, workdir: Path, examples_per_source: int = 16) -> Path:
    """The mixture of the command's `--config` recipe with at most `examples_per_source` examples per source and a
    quarter of that held out."""
    recipe = yaml.safe_load((workdir / shlex.split(command)[shlex.split(command).index("--config") + 1]).read_text())
    mixture = yaml.safe_load((workdir / recipe["mixture"]).read_text())
    for source in mixture["sources"]:
        source["max_examples"] = examples_per_source
        if "test_path" in source or "test_split" in source or isinstance(source.get("test_size"), int):
            source["test_size"] = examples_per_source // 4
    path = workdir / f"small-{Path(recipe['mixture']).stem}.yaml"
    path.write_text(yaml.safe_dump(mixture))
    return path


def run(command: str, workdir: Path, monkeypatch) -> None:
    """Run a README command in `workdir` with its tiny flags: `trl-more` in-process, `python <script>` as a process."""
    monkeypatch.chdir(workdir)
    arguments = shlex.split(command) + tiny_flags(command, workdir)
    assert "=" not in arguments[0], f"{command!r}: only the served command sets environment variables here"
    if arguments[0] == "trl-more":
        cli_main(arguments[1:])
    else:
        result = subprocess.run([sys.executable, *arguments[1:]], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]


def check_writes(command: str, workdir: Path) -> None:
    expected = [path for prefix, paths in WRITES.items() if command.startswith(prefix) for path in paths]
    assert expected, f"WRITES names nothing for {command!r}"
    missing = [path for path in expected if not (workdir / path).is_file()]
    assert not missing, f"{command!r} did not write {missing}"


@pytest.fixture(scope="module")
def trained_model(workdir) -> Path:
    """`runs/cpu-minilm-more`, which the evaluate and serve commands read: its README command, tiny, run once."""
    command = next(command for command in readme_commands() if "cpu-minilm-more.yaml" in command)
    with pytest.MonkeyPatch.context() as monkeypatch:
        run(command, workdir, monkeypatch)
    return workdir / "runs" / "cpu-minilm-more"


@pytest.fixture(scope="module")
def strength_members(workdir) -> None:
    """`runs/hh-strength/model-XX`, which the average command reads: the strength README command, tiny, run once (run
    again as its own test, it reuses the members)."""
    command = next(command for command in readme_commands() if command.startswith("trl-more strength"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        run(command, workdir, monkeypatch)


def test_every_readme_command_has_a_tiny_run_here():
    commands = readme_commands()
    assert len(commands) >= 10, commands
    assert sorted(commands) == sorted(TINY_FLAGS), "a README command changed: update TINY_FLAGS (and WRITES)"


RUN_HERE = [command for command in TINY_FLAGS if " trl-more serve " not in command]


@pytest.mark.parametrize("command", RUN_HERE, ids=[re.sub(r"\W+", "-", command)[:70] for command in RUN_HERE])
def test_a_readme_command_runs_as_typed(command, workdir, request, monkeypatch):
    if "cpu-minilm-more" in command:
        request.getfixturevalue("trained_model")  # trains it (once), with its own README command
    if command.startswith("trl-more average"):
        request.getfixturevalue("strength_members")
    if "--model runs/cpu-minilm-more" in command or "cpu-minilm-more" not in command:
        run(command, workdir, monkeypatch)
    check_writes(command, workdir)


def test_the_readme_serve_command_answers_a_request(workdir, trained_model):
    command = next(command for command in TINY_FLAGS if " trl-more serve " in command)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    words = shlex.split(command) + tiny_flags(command, workdir, port)
    assignments = [word for word in words if "=" in word and not word.startswith("-")][: words.index("trl-more")]
    program, arguments = words[len(assignments)], words[len(assignments) + 1 :]
    environment = dict(assignment.split("=", 1) for assignment in assignments)
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name(program)), *arguments],
        cwd=workdir,
        env={**os.environ, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        prompt = "\n\nHuman: Hi\n\nAssistant:"
        body = json.dumps({"query": [prompt + " Hello! How can I help?"], "prompts": [prompt]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/get_reward",
            data=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {environment['TRL_MORE_SERVE_TOKEN']}",
            },
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                break
            except urllib.error.HTTPError:
                raise
            except OSError:  # not listening yet
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                assert time.monotonic() < deadline, "the server did not answer within 120 s"
                time.sleep(0.5)
        assert len(answer["rewards"]) == 1 and isinstance(answer["rewards"][0], float)
    finally:
        server.terminate()
        server.wait(timeout=30)


def check_more_reward(output_dir: Path, printed: str) -> None:
    assert all(re.search(rf"{name}: accuracy [\d.]+%, ECE 0\.\d{{4}}", printed) for name in TOY_SOURCES)
    card = (output_dir / "README.md").read_text()
    assert "**MORE**" in card and all(f"| {name} | 36 |" in card for name in TOY_SOURCES)  # 48 pairs, 12 held out
    assert all(f"| {name} | 12 |" in card for name in TOY_SOURCES)  # the evaluation table, from trainer.evaluate()
    assert (output_dir / "lambda.png").is_file() and (output_dir / "model.safetensors").is_file()


def check_evaluate_with_plots(output_dir: Path, printed: str) -> None:
    for name in ("A", "B"):
        written = json.loads((output_dir / name / "metrics.json").read_text())
        assert [row["num_pairs"] for row in written["sources"].values()] == [20, 20, 20]  # odd rows of 40 held out
        assert (output_dir / name / "reliability.png").is_file()
    assert (output_dir / "reward_differences.png").read_bytes()[:4] == b"\x89PNG"


def check_dropin_reward(output_dir: Path, printed: str) -> None:
    assert f"Model saved to {output_dir}." in printed and (output_dir / "model.safetensors").is_file()


def check_multi_objective_reward(output_dir: Path, printed: str) -> None:
    assert "Validation R^2:" in printed and "reloaded through the Auto class with the same score" in printed
    assert {"README.md", "modeling_multi_objective.py", "model.safetensors"} <= {p.name for p in output_dir.iterdir()}


def check_rejection_sampling(output_dir: Path, printed: str) -> None:
    assert printed.count("iteration ") == 1 and (output_dir / "iteration-00" / "metrics.json").is_file()


TOY_SOURCES = ("polite", "concise", "factual")
# What each example prints and writes under its `--output_dir` with `--tiny`.
EXAMPLE_CHECKS = {
    "more_reward.py": check_more_reward,
    "evaluate_with_plots.py": check_evaluate_with_plots,
    "dropin_reward.py": check_dropin_reward,
    "multi_objective_reward.py": check_multi_objective_reward,
    "rejection_sampling.py": check_rejection_sampling,
}


def test_the_readme_names_every_example():
    assert sorted(readme_examples()) == sorted(path.name for path in (REPO / "examples").glob("*.py"))
    assert sorted(EXAMPLE_CHECKS) == sorted(readme_examples())


@pytest.mark.parametrize("example", readme_examples())
def test_every_example_runs_with_tiny(example, tmp_path, workdir):
    """`python examples/<name> --tiny --output_dir DIR` finishes offline and writes what its docstring says."""
    result = subprocess.run(
        [sys.executable, f"examples/{example}", "--tiny", "--output_dir", str(tmp_path)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    EXAMPLE_CHECKS[example](tmp_path, result.stdout)
