"""Plots are written as non-blank PNG files of the expected pixel size, from margins, results and trainer logs."""

import json
import sys

import numpy as np
import pytest

from trl_more.metrics import RewardEvaluation
from trl_more.plots import load_log_history, plot_lambda_history, plot_reliability_diagrams, plot_reward_differences


pytest.importorskip("matplotlib", reason="the plots need the `plots` extra (matplotlib)")


def read_png(path):
    """(height, width) of a PNG and whether it shows anything but one flat colour."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    return pixels.shape[:2], float(pixels[..., :3].std()) > 0.01


def margins_by_source(*sources, seed=0):
    rng = np.random.default_rng(seed)
    return {source: rng.normal(0.5 + index, 2.0, 300) for index, source in enumerate(sources)}


@pytest.mark.parametrize(("sources", "pixels"), [(("a",), (350, 350)), (("a", "b", "c", "d"), (700, 1050))])
def test_reliability_diagrams_one_panel_per_source(tmp_path, sources, pixels):
    path = plot_reliability_diagrams(margins_by_source(*sources), tmp_path / "sub" / "reliability.png")
    assert path == tmp_path / "sub" / "reliability.png"
    assert read_png(path) == (pixels, True)


def test_reliability_diagrams_from_an_evaluation_result(tmp_path):
    result = RewardEvaluation.from_margins(margins_by_source("helpful", "harmless"))
    path = plot_reliability_diagrams(result, tmp_path / "reliability.png", panel_size=2.0, dpi=50)
    assert read_png(path) == ((100, 200), True)


def test_reward_difference_boxplots_for_one_model_and_for_several(tmp_path):
    single = plot_reward_differences(margins_by_source("a", "b", "c"), tmp_path / "one.png", figsize=(6, 4))
    assert read_png(single) == ((400, 600), True)
    models = {
        "MultiTask": RewardEvaluation.from_margins(margins_by_source("a", "b", "c", seed=1)),
        "MORE": margins_by_source("a", "c", seed=2),  # a model without source b leaves a gap
    }
    several = plot_reward_differences(models, tmp_path / "several.png", dpi=80)
    (height, width), drawn = read_png(several)
    assert drawn and height == 360 and width == 80 * max(6.0, 0.6 * 2 * 3 + 2.0)


def run_more_training(tmp_path):
    from trl_more import MORERewardConfig, MORERewardTrainer
    from trl_more.testing import tiny_reward_model, tiny_tokenizer, toy_preference_sources

    tokenizer = tiny_tokenizer()
    args = MORERewardConfig(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=3,
        max_steps=4,
        logging_steps=1,
        save_steps=2,
        report_to="none",
        bf16=False,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = MORERewardTrainer(
        model=tiny_reward_model("qwen2", tokenizer),
        args=args,
        train_dataset=toy_preference_sources(6),
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def test_lambda_history_from_a_trainer_its_state_file_and_its_output_folder(tmp_path):
    trainer = run_more_training(tmp_path)
    history = load_log_history(trainer)
    lambdas = [entry for entry in history if "lambda/polite" in entry]
    assert [entry["step"] for entry in lambdas] == [1, 2, 3, 4]
    for entry in lambdas:
        assert sum(entry[f"lambda/{name}"] for name in ("polite", "concise", "factual")) == pytest.approx(1.0)

    path = plot_lambda_history(trainer, tmp_path / "lambda.png", figsize=(5, 3), dpi=60)
    assert read_png(path) == ((180, 300), True)
    # No trainer_state.json at the top of the output folder: the last checkpoint's is read.
    run = tmp_path / "run"
    assert not (run / "trainer_state.json").exists()
    assert (
        load_log_history(run) == json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    )
    assert read_png(plot_lambda_history(run / "checkpoint-4" / "trainer_state.json", tmp_path / "again.png"))[1]


def test_lambda_history_without_lambda_entries_or_state_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="lambda/<source>"):
        plot_lambda_history([{"loss": 0.6, "step": 1}], tmp_path / "lambda.png")
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        load_log_history(tmp_path)


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes `from matplotlib.figure import ...` fail
    with pytest.raises(ImportError, match=r"pip install trl-more\[plots\]"):
        plot_reliability_diagrams(margins_by_source("a"), tmp_path / "x.png")
