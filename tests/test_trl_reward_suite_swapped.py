"""TRL's own reward-trainer test file, run offline with `MORERewardTrainer` / `MORERewardConfig` swapped in.

TRL's tests are in neither its wheel nor its sdist, and they are not copied into this repository: take the
`tests` folder of a TRL checkout at the installed version (`git clone --depth 1 --branch v<trl version> https://github.com/huggingface/trl`), read its `tests/conftest.py`
(it is never imported here, but a checkout is code you run), and run

    python tests/test_trl_reward_suite_swapped.py /path/to/trl/tests [pytest options, e.g. -k margin]

(`--keep-trl-classes` runs the same offline set-up with TRL's own classes, to tell a replica problem from a MORE one.)

The run changes only what it must to be offline and to test MORE:

- `trl.RewardTrainer` and `trl.RewardConfig` are MORE's classes, set before TRL's test module imports them;
- every Hub model and tokenizer the tests name is a tiny offline replica of the same architecture (built with
  `trl_more.testing`) in a temporary Hugging Face cache, with `HF_HUB_OFFLINE=1`;
- `datasets.load_dataset` serves offline replicas of `trl-internal-testing/zen` (each preference config with 17 train
  and 2 test rows and the same columns) and of `trl-internal-testing/toolcall` ("preference");
- without bf16 hardware, `bf16` defaults to False: TRL's tests assume a bf16 GPU, and on a CPU its config raises
  before any trainer exists (for TRL's own classes too);
- the `lazy_shared_datadir` fixture (from pytest-datadir) is TRL's `tests/data` folder.

Only `test_reward_trainer.py`, `testing_utils.py` and `data/` are copied from the checkout into a temporary package,
and pytest runs there with no conftest: TRL's `conftest.py` (GPU clean-up and Hub-revision fixtures, which do not
apply offline) is never imported, so nothing from the checkout runs but the reward tests themselves.

The test below checks this machinery on every run, with a small test module of our own that uses it the way TRL's
file does; TRL's file itself needs a checkout, so it is run by hand as above (41 of 41 passed with MORE's classes
on trl 1.16.0, before the pre-flight checks). TRL's tests that train a causal LM with a bare `LoraConfig()`
(`test_train_with_peft_config*`) get a pre-flight warning that the new score head is neither trained nor saved
(docs/preflight.md), and train as with TRL (tests/test_more_dropin.py).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest


TRL_TEST_FILE = "test_reward_trainer.py"
TRL_TEST_HELPERS = ("testing_utils.py",)

# Hub id -> (architecture, model class, tokenizer style) of the offline replica. "qwen" tokenizers have `<|im_start|>`
# and `<|im_end|>` special tokens and a ChatML template; "plain" ones the default template of `trl_more.testing`;
# `None` no chat template at all (TRL's tests rely on tiny-GPTNeoX having none).
HUB_MODELS = {
    "trl-internal-testing/tiny-Qwen2ForCausalLM-2.5": ("qwen2", "causal_lm", "qwen"),
    "trl-internal-testing/tiny-Qwen2ForSequenceClassification-2.5": ("qwen2", "reward_model", "qwen"),
    "trl-internal-testing/tiny-Qwen3MoeForCausalLM": ("qwen3_moe", "causal_lm", "qwen"),
    "trl-internal-testing/tiny-LlamaForCausalLM-3.2": ("llama", "causal_lm", "plain"),
    "trl-internal-testing/tiny-GPTNeoXForCausalLM": ("gpt_neox", "causal_lm", None),
}
HUB_TOKENIZERS = {"Qwen/Qwen3-4B": "qwen"}  # cloned by `chat_template_path`

CHATML_TEMPLATE = (
    "{% if tools %}<|im_start|>system\ntools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}"
    "<tool_call>{{ call['function'] | tojson }}</tool_call>{% endfor %}"
    "{% else %}{{ message['content'] or '' }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Nineteen pairs, like each config of `trl-internal-testing/zen` (17 for train, 2 for test).
ZEN_LIKE_PAIRS = [
    ("The sky is", " blue.", " made of cheese."),
    ("Water is", " wet.", " dry."),
    ("The capital of France is", " Paris.", " Rome."),
    ("Two plus two is", " four.", " five."),
    ("The sun rises in the", " east.", " west."),
    ("Ice is", " cold.", " hot."),
    ("A week has", " seven days.", " three days."),
    ("Cats like to", " sleep.", " bark."),
    ("Fire is", " hot.", " cold."),
    ("Bread is made from", " flour.", " stones."),
    ("Readability", " counts.", " does not matter."),
    ("Simple is better than", " complex.", " simple."),
    ("Errors should never pass", " silently.", " loudly unnoticed."),
    ("In the face of ambiguity, refuse the temptation to", " guess.", " decide."),
    ("Now is better than", " never.", " later, always."),
    ("Flat is better than", " nested.", " deep."),
    ("Sparse is better than", " dense.", " crowded."),
    ("Explicit is better than", " implicit.", " hidden."),
    ("Beautiful is better than", " ugly.", " plain."),
]


# --------------------------------------------------------------------------------------------------------------------
# Offline replicas
# --------------------------------------------------------------------------------------------------------------------


def replica_tokenizer(style: str | None):
    from trl_more.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    if style == "qwen":
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tokenizer.chat_template = CHATML_TEMPLATE
    elif style is None:
        tokenizer.chat_template = None
    return tokenizer


def replica_model(architecture: str, kind: str, tokenizer):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from trl_more.testing import tiny_causal_lm, tiny_reward_model

    if kind == "reward_model":
        return tiny_reward_model(architecture, tokenizer)
    if architecture != "qwen3_moe":
        return tiny_causal_lm(architecture, tokenizer)
    config = AutoConfig.for_model(
        "qwen3_moe",
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=64,
        moe_intermediate_size=32,
        num_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def snapshot_folder(hub_cache: Path, repo_id: str) -> Path:
    """The folder a Hub repo's files are read from offline (`<cache>/models--org--name/snapshots/<commit>`)."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo_folder = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo_folder / "refs").mkdir(parents=True, exist_ok=True)
    (repo_folder / "refs" / "main").write_text(commit)
    return repo_folder / "snapshots" / commit


def build_hub_cache(hub_cache: Path) -> None:
    """Write the offline replicas of `HUB_MODELS` and `HUB_TOKENIZERS` into a Hugging Face cache folder."""
    from transformers import AutoConfig

    for repo_id, (architecture, kind, style) in HUB_MODELS.items():
        folder = snapshot_folder(hub_cache, repo_id)
        tokenizer = replica_tokenizer(style)
        replica_model(architecture, kind, tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    for repo_id, style in HUB_TOKENIZERS.items():
        folder = snapshot_folder(hub_cache, repo_id)
        tokenizer = replica_tokenizer(style)
        tokenizer.eos_token = "<|im_end|>"
        tokenizer.save_pretrained(folder)
        AutoConfig.for_model("qwen2", vocab_size=len(tokenizer)).save_pretrained(folder)  # read by AutoTokenizer


def zen_replica(config_name: str):
    from datasets import DatasetDict

    from trl_more.testing import PREFERENCE_FORMATS, preference_dataset_in_format

    if config_name not in PREFERENCE_FORMATS:
        raise ValueError(
            f"The offline replica of trl-internal-testing/zen has the preference configs {PREFERENCE_FORMATS}, not "
            f"{config_name!r}."
        )
    dataset = preference_dataset_in_format(ZEN_LIKE_PAIRS, config_name)
    return DatasetDict(train=dataset.select(range(17)), test=dataset.select(range(17, 19)))


def toolcall_replica(config_name: str):
    import json

    from datasets import Dataset, DatasetDict

    if config_name != "preference":
        raise ValueError("The offline replica of trl-internal-testing/toolcall has the config 'preference' only.")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    rows = {"prompt": [], "chosen": [], "rejected": [], "tools": []}
    for city in ["Paris", "Berlin", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Accra", "Perth"]:
        call = {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}
        rows["prompt"].append([{"role": "user", "content": f"What is the weather in {city}?"}])
        rows["chosen"].append([{"role": "assistant", "content": "", "tool_calls": [call]}])
        rows["rejected"].append([{"role": "assistant", "content": f"I cannot know the weather in {city}."}])
        rows["tools"].append(json.dumps(tools))
    dataset = Dataset.from_dict(rows)
    return DatasetDict(train=dataset.select(range(8)), test=dataset.select(range(8, 10)))


OFFLINE_DATASETS = {"trl-internal-testing/zen": zen_replica, "trl-internal-testing/toolcall": toolcall_replica}


def offline_load_dataset(original):
    """`datasets.load_dataset` that serves `OFFLINE_DATASETS` and passes every other call to `original`."""

    def load_dataset(path, name=None, *args, split=None, streaming=False, **kwargs):
        build = OFFLINE_DATASETS.get(path)
        if build is None:
            return original(path, name, *args, split=split, streaming=streaming, **kwargs)
        from datasets import IterableDatasetDict

        dataset = build(name)
        if streaming:
            dataset = IterableDatasetDict({key: value.to_iterable_dataset() for key, value in dataset.items()})
        return dataset if split is None else dataset[split]

    return load_dataset


# --------------------------------------------------------------------------------------------------------------------
# The pytest plugin and the runner
# --------------------------------------------------------------------------------------------------------------------


class MOREInsteadOfTRL:
    """pytest plugin: MORE's classes under TRL's names, offline data sets, TRL's data folder, CPU-friendly bf16."""

    def __init__(self, data_dir: Path, swap: bool = True):
        self.data_dir = data_dir
        self.swap = swap

    def pytest_configure(self, config):
        import datasets
        import trl
        from transformers.utils import is_torch_bf16_gpu_available
        from trl.trainer.base_config import _BaseConfig

        from trl_more import MORERewardConfig, MORERewardTrainer

        if self.swap:
            for module in (trl, trl.trainer):
                module.RewardTrainer, module.RewardConfig = MORERewardTrainer, MORERewardConfig
        datasets.load_dataset = offline_load_dataset(datasets.load_dataset)
        if not is_torch_bf16_gpu_available():
            trl_post_init = _BaseConfig.__post_init__

            def post_init_without_bf16_hardware(args):
                if args.bf16 is None:
                    args.bf16 = False
                trl_post_init(args)

            _BaseConfig.__post_init__ = post_init_without_bf16_hardware

    @pytest.fixture
    def lazy_shared_datadir(self) -> Path:
        return self.data_dir


def run_swapped(tests_dir: Path, pytest_args: list[str], swap: bool = True) -> int:
    """Run `tests_dir/test_reward_trainer.py` (and the helpers it imports) with `MOREInsteadOfTRL`; pytest's exit code.

    `swap=False` keeps TRL's own classes, with the same offline replicas: a failure there comes from the replicas or
    the machine, not from MORE. Must run in a fresh interpreter: the Hub cache location is read when `huggingface_hub`
    is first imported.
    """
    workspace = Path(tempfile.mkdtemp(prefix="trl-reward-suite-"))
    os.environ.update(
        HF_HUB_CACHE=str(workspace / "hub"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        WANDB_MODE="disabled",
    )
    package = workspace / "trl_tests"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in (TRL_TEST_FILE, *TRL_TEST_HELPERS):
        shutil.copy(tests_dir / name, package / name)
    if (tests_dir / "data").is_dir():
        shutil.copytree(tests_dir / "data", package / "data")
    (workspace / "pytest.ini").write_text("[pytest]\n")
    build_hub_cache(workspace / "hub")
    return pytest.main(
        [
            str(package / TRL_TEST_FILE),
            "-c",
            str(workspace / "pytest.ini"),
            "--rootdir",
            str(workspace),
            "--noconftest",
            "-p",
            "no:cacheprovider",
            *pytest_args,
        ],
        plugins=[MOREInsteadOfTRL(package / "data", swap=swap)],
    )


def run_in_subprocess(tests_dir: Path, *pytest_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, __file__, str(tests_dir), "-q", *pytest_args],
        capture_output=True,
        text=True,
        timeout=1800,
    )


# --------------------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------------------

# A stand-in for TRL's test file, written here: it uses the swapped names, Hub ids and data sets the way TRL's does.
STAND_IN_TESTS = """
import pytest
from datasets import IterableDataset, load_dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import is_torch_bf16_gpu_available

from trl import RewardConfig, RewardTrainer
from trl_more import MORERewardConfig, MORERewardTrainer

from .testing_utils import TrlTestCase


class TestSwapped(TrlTestCase):
    def test_names_point_at_more(self):
        assert RewardTrainer is MORERewardTrainer and RewardConfig is MORERewardConfig

    def test_default_bf16_fits_the_hardware(self):
        assert RewardConfig(output_dir=self.tmp_dir).bf16 == is_torch_bf16_gpu_available()

    @pytest.mark.parametrize("config_name", ["standard_preference", "conversational_implicit_prompt_preference"])
    def test_zen_replica(self, config_name):
        dataset = load_dataset("trl-internal-testing/zen", config_name)
        assert (len(dataset["train"]), len(dataset["test"])) == (17, 2)
        stream = load_dataset("trl-internal-testing/zen", config_name, split="train", streaming=True)
        assert isinstance(stream, IterableDataset)
        assert load_dataset("trl-internal-testing/toolcall", "preference", split="train")[0]["tools"].startswith("[")

    def test_hub_replicas_load_offline(self, lazy_shared_datadir):
        assert (lazy_shared_datadir / "template.jinja").is_file()
        model = AutoModelForSequenceClassification.from_pretrained("trl-internal-testing/tiny-Qwen3MoeForCausalLM")
        assert model.config.model_type == "qwen3_moe"
        assert AutoTokenizer.from_pretrained("trl-internal-testing/tiny-GPTNeoXForCausalLM").chat_template is None
        assert "<|im_start|>" in AutoTokenizer.from_pretrained("Qwen/Qwen3-4B").chat_template

    def test_train_by_hub_id(self):
        dataset = load_dataset("trl-internal-testing/zen", "standard_implicit_prompt_preference", split="train")
        trainer = RewardTrainer(
            model="trl-internal-testing/tiny-Qwen2ForCausalLM-2.5",
            args=RewardConfig(output_dir=self.tmp_dir, max_steps=2, report_to="none"),
            train_dataset=dataset,
        )
        trainer.train()
        assert isinstance(trainer, MORERewardTrainer) and trainer.state.global_step == 2
"""

STAND_IN_HELPERS = """
import pytest


class TrlTestCase:
    @pytest.fixture(autouse=True)
    def set_tmp_dir(self, tmp_path):
        self.tmp_dir = str(tmp_path)
"""


def test_the_swap_machinery_with_a_stand_in_for_trls_test_file(tmp_path):
    (tmp_path / TRL_TEST_FILE).write_text(textwrap.dedent(STAND_IN_TESTS))
    (tmp_path / "testing_utils.py").write_text(textwrap.dedent(STAND_IN_HELPERS))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "template.jinja").write_text(
        "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    )
    result = run_in_subprocess(tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "6 passed" in result.stdout


if __name__ == "__main__":
    arguments = sys.argv[1:]
    keep_trl_classes = "--keep-trl-classes" in arguments
    arguments = [argument for argument in arguments if argument != "--keep-trl-classes"]
    if not arguments or not (Path(arguments[0]) / TRL_TEST_FILE).is_file():
        sys.exit(f"usage: python {Path(__file__).name} <TRL checkout>/tests [--keep-trl-classes] [pytest options]")
    sys.exit(run_swapped(Path(arguments[0]).resolve(), arguments[1:], swap=not keep_trl_classes))
