from pathlib import Path

import pytest
import yaml

from tuneforge.config import Config, describe_fields, load_config, save_config
from tuneforge.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    config = load_config(path)
    from tuneforge.tasks import TASKS

    assert config.task in {entry.name for entry in TASKS}
    if config.data.dataset:  # a built-in dataset must be one made for the config's task
        from tuneforge.assets.datasets import check_dataset_task

        check_dataset_task(config.data.dataset, config.task)


def test_shipped_configs_exist():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


def test_quickstart_yaml_is_the_embedded_defaults():
    assert load_config(Path(__file__).parents[1] / "configs" / "quickstart.yaml") == Config()


def test_unknown_key_names_file_path_and_suggestion(tmp_path):
    path = write(tmp_path, "train:\n  lerning_rate: 0.1\n  batch_size: 8\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and "train.lerning_rate" in message


def test_did_you_mean(tmp_path):
    with pytest.raises(ConfigError, match=r"'train.bach_size'.*did you mean 'batch_size'"):
        load_config(write(tmp_path, "train:\n  bach_size: 8\n"))


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'trian'.*did you mean 'train'"):
        load_config(write(tmp_path, "trian:\n  epochs: 1\n"))


def test_wrong_type_names_expected_type(tmp_path):
    with pytest.raises(ConfigError, match=r"train.batch_size: expected an integer, got 'big'"):
        load_config(write(tmp_path, "train:\n  batch_size: big\n"))


def test_bool_is_not_an_integer(tmp_path):
    with pytest.raises(ConfigError, match="train.batch_size"):
        load_config(write(tmp_path, "train:\n  batch_size: true\n"))


def test_literal_choices_listed(tmp_path):
    with pytest.raises(ConfigError, match=r"train.scheduler: expected one of 'linear', 'cosine', 'constant'"):
        load_config(write(tmp_path, "train:\n  scheduler: step\n"))


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    # PyYAML reads 5e-4 as a string; a user writing it means a number.
    assert load_config(write(tmp_path, "train:\n  lr: 5e-4\n")).train.lr == pytest.approx(5e-4)


def test_invalid_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg.yaml, line \d+: invalid YAML"):
        load_config(write(tmp_path, "train:\n  lr: [1, 2\n"))


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("nope.yaml")


def test_overrides_are_typed_and_applied():
    config = load_config(None, ["train.lr=1e-4", "method.r=16", "data.max_examples=50", "eval.every=100"])
    assert config.train.lr == pytest.approx(1e-4)
    assert config.method.r == 16
    assert config.data.max_examples == 50
    assert config.eval.every == 100


def test_override_type_error_and_typo():
    with pytest.raises(ConfigError, match=r"method.r: expected an integer, got 'x'"):
        load_config(None, ["method.r=x"])
    with pytest.raises(ConfigError, match=r"'train.lr_rate'.*did you mean 'lr'"):
        load_config(None, ["train.lr_rate=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["train.lr"])


def test_method_options_depend_on_method():
    config = load_config(None, ["method.name=topk", "method.k=3"])
    assert config.method.k == 3
    with pytest.raises(ConfigError, match=r"'method.r' for method 'full'"):
        load_config(None, ["method.name=full", "method.r=8"])
    with pytest.raises(ConfigError, match=r"unknown method 'lroa'.*did you mean 'lora'"):
        load_config(None, ["method.name=lroa"])


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["train.lr=2e-4", "method.name=topk", "method.k=1", "data.split=[0.7,0.2,0.1]"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["lr"] == pytest.approx(2e-4)


def test_every_field_is_documented():
    rows = describe_fields()
    assert {"data.text_column", "train.lr", "method.r", "method.k", "eval.metric"} <= {r[0] for r in rows}
    assert all(help_text.strip() for *_, help_text in rows)


def test_configuration_docs_are_current():
    from tuneforge.config import config_markdown

    docs = Path(__file__).parents[1] / "docs" / "configuration.md"
    assert docs.read_text() == config_markdown(), "regenerate: tuneforge config --markdown > docs/configuration.md"


@pytest.mark.parametrize("override,message", [
    ("train.log_every=0", "train.log_every must be at least 1"),
    ("train.batch_size=0", "train.batch_size must be at least 1"),
    ("train.epochs=.inf", "train.epochs must be a positive number"),
    ("data.split=[0.5,0.6,0.1]", "data.split must be three fractions"),
    ("method.r=0", "method.r must be at least 1"),
    ("eval.early_stopping_patience=0", "eval.early_stopping_patience must be at least 1"),
    # one per section that checks itself, so each section's check is known to run
    ("train.checkpoint.keep_last=0", "train.checkpoint.keep_last must be at least 1"),
    ("lm.random_replace_prob=0.5", r"lm.random_replace_prob must be in \[0, 1 - lm.mask_replace_prob\], got 0.5"),
    ("prompt.template=x", "prompt.template must be a text with {text}, ending in {label}"),
    ("image.resize=100", "image.resize must be at least image.size, got 100"),
    ("frozen.binding_ways=[1]", "frozen.binding_ways must be N-way values between 2 and 8"),
    ("distill.temperature=0", "distill.temperature must be positive"),
    ("serve.max_wait_ms=2000", "serve.max_wait_ms must be between 0 and 1000"),
    ("method.name=adalora method.target_r=20", "method.target_r must be between 1 and method.init_r"),
    ("method.name=topk method.k=0", "method.k must be at least 1"),
    ("method.name=prompt_tuning method.num_virtual_tokens=0", "method.num_virtual_tokens must be at least 1"),
])
def test_values_that_cannot_work_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, override.split())


def test_api_applies_overrides_to_a_dict(tmp_path):
    from tuneforge.config import apply_overrides

    raw = {"train": {"lr": 0.1}}
    assert apply_overrides(raw, ["train.lr=0.2"]) == {"train": {"lr": 0.2}}
    assert raw == {"train": {"lr": 0.1}}  # the caller's dict is untouched


ACCELERATE_CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=[p.name for p in ACCELERATE_CONFIGS])
def test_shipped_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(path)
    assert config.num_processes >= 2 and config.distributed_type.value in ("MULTI_GPU", "FSDP", "DEEPSPEED")
