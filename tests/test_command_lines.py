"""Configs and command lines that are wrong say so: one message naming the file (or the command line), the key and
what to do, exit code 2, and nothing trained or written. No real training runs here: where a command would train,
``tuneforge.api.train`` is a stand-in that records what it was asked to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.cli.app import build_parser, parse_args

LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """An empty working directory: a run started by mistake would leave runs/ here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TrainingStarted(Exception):
    """Raised by the stand-in for training: the command got past every check."""


@pytest.fixture
def trainings(monkeypatch) -> list[dict]:
    """What `tuneforge train` handed to training (which this stand-in never starts)."""
    started: list[dict] = []

    def record(config, **options):
        started.append({"config": config, **options})
        raise TrainingStarted

    monkeypatch.setattr("tuneforge.api.train", record)
    return started


@pytest.fixture
def config(workdir) -> Path:
    """A config whose data file does not exist: training it would stop at data validation."""
    path = workdir / "cfg.yaml"
    path.write_text("name: mine\ndata:\n  dataset: null\n  train_file: reviews.csv\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- empty and malformed config files


@pytest.mark.parametrize("text", ["", "\n\n", "# my config, to fill in later\n", "{}\n", "null\n", "---\n"],
                         ids=["0-bytes", "blank", "only-comments", "braces", "null", "document-marker"])
def test_an_empty_config_is_refused_not_trained_with_defaults(workdir, capsys, trainings, text):
    path = workdir / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    code, err = run_cli(capsys, "train", path)
    assert code == 2 and f"{path} is empty" in err and "data: {train_file:" in err and "tuneforge init" in err
    assert trainings == [] and not (workdir / "runs").exists()
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("text,says", [("- task: text_classification\n", "got a list"),
                                       ("text_classification\n", "got the text 'text_classification'"),
                                       ("42\n", "got 42 (int)")])
def test_a_config_that_is_not_a_mapping_says_what_it_is(workdir, capsys, text, says):
    path = workdir / "c.yaml"
    path.write_text(text, encoding="utf-8")
    code, err = run_cli(capsys, "train", path)
    assert code == 2 and f"{path}: the top level must be a mapping of sections" in err and says in err


def test_a_section_given_twice_is_refused_not_half_dropped(workdir, capsys, trainings):
    path = workdir / "c.yaml"
    path.write_text("train:\n  lr: 0.001\ndata:\n  dataset: null\ntrain:\n  epochs: 2\n", encoding="utf-8")
    code, err = run_cli(capsys, "train", path)
    assert code == 2 and f"{path}, line 5: 'train' is given twice (lines 1 and 5)" in err and trainings == []


def test_a_config_in_a_chinese_code_page_says_to_save_it_as_utf8(workdir, capsys):
    path = workdir / "c.yaml"
    path.write_bytes("name: 评论\n# 情感分类\n".encode("gb18030"))
    code, err = run_cli(capsys, "train", path)
    assert code == 2 and f"{path}, line 1: not UTF-8 text" in err and "save the config as UTF-8" in err


def test_notepad_unicode_and_byte_order_marks_are_read(workdir, trainings):
    for name, data in [("utf16.yaml", "name: 评论\n".encode("utf-16")), ("bom.yaml", "\ufeffname: 评论\n".encode())]:
        (workdir / name).write_bytes(data)
        with pytest.raises(TrainingStarted):
            main(["train", str(workdir / name)])
        assert trainings.pop()["config"].name == "评论"


def test_a_run_directory_given_as_the_config(workdir, capsys):
    run = workdir / "lora-run"
    shutil.copytree(LEGACY / "lora-run", run)
    code, err = run_cli(capsys, "train", run)
    assert code == 2 and f"{run}: a folder, not a config file; did you mean {run}/config.yaml?" in err


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize("override,says", [
    ("train.lr_rate=1e-3", "command line: unknown key 'train.lr_rate' in train.lr_rate=1e-3 (did you mean 'lr': "
                           "train.lr=1e-3?)"),
    ("trian.lr=1e-3", "command line: unknown key 'trian' in trian.lr=1e-3 (did you mean 'train': train.lr=1e-3?)"),
    ("method.rr=8", "command line: unknown key 'method.rr' for method 'lora' in method.rr=8 (did you mean 'r': "
                    "method.r=8?)"),
    ("train.lr=fast", "command line: train.lr: expected a number, got 'fast'"),
    ("train.lr.warmup=1", "command line: train.lr.warmup=1: train.lr is a value, not a section"),
    ("method.name=lorra", "command line: method.name: unknown method 'lorra' (did you mean 'lora'?)"),
    ("train.lr=-1", "command line: train.lr must be"),
])
def test_an_override_mistake_is_blamed_on_the_command_line(config, capsys, trainings, override, says):
    code, err = run_cli(capsys, "train", config, override)
    assert code == 2 and says in err and str(config) not in err and trainings == []


def test_a_mistake_in_the_file_is_still_blamed_on_the_file(config, capsys, trainings):
    config.write_text(config.read_text(encoding="utf-8") + "train:\n  lr: -1\n", encoding="utf-8")
    code, err = run_cli(capsys, "train", config, "train.epochs=2")
    assert code == 2 and f"{config}: train.lr must be" in err and "command line" not in err
    with pytest.raises(TrainingStarted):  # the command line may repair the file
        main(["train", str(config), "train.lr=1e-4"])
    assert trainings[0]["config"].train.lr == pytest.approx(1e-4)


@pytest.mark.parametrize("override,hint", [("train.lr", " (write train.lr=VALUE)"), ("=1e-3", ""),
                                           ("train.lr:1e-3", " (write train.lr=1e-3)"), ("train..lr=1", "")])
def test_a_malformed_override_says_how_overrides_look(config, capsys, trainings, override, hint):
    code, err = run_cli(capsys, "train", config, override)
    assert code == 2 and f"command line: '{override}' is not an override{hint};" in err
    assert "expected KEY=VALUE with a dotted key, e.g. train.lr=1e-4" in err and trainings == []


def test_serve_settings_typo_names_the_setting(capsys, monkeypatch):
    code, err = run_cli(capsys, "serve", LEGACY / "full-run", "--no-auth", "--set", "max_batch=4")
    assert code == 2 and "unknown key 'serve.max_batch'" in err and "serve.max_batch_size=4" in err


# --------------------------------------------------------------------------- --resume


@pytest.mark.parametrize("argv,resume,overrides", [
    (["--resume", "output.dir=elsewhere"], "latest", ["output.dir=elsewhere"]),
    (["--resume", "output.dir=elsewhere", "train.epochs=3"], "latest", ["output.dir=elsewhere", "train.epochs=3"]),
    (["train.lr=1e-4", "--resume", "train.lr=2e-4"], "latest", ["train.lr=1e-4", "train.lr=2e-4"]),  # the last wins
    (["--resume=output.dir=elsewhere"], "latest", ["output.dir=elsewhere"]),
    (["--resume"], "latest", []),
    (["--resume", "latest", "train.epochs=3"], "latest", ["train.epochs=3"]),
    (["--resume", "runs/mine-20260101-120000", "train.epochs=3"], "runs/mine-20260101-120000", ["train.epochs=3"]),
    (["train.epochs=3"], None, ["train.epochs=3"]),
])
def test_resume_takes_an_optional_run_and_leaves_overrides_alone(argv, resume, overrides):
    args = parse_args(build_parser(), ["train", "cfg.yaml", *argv])
    assert (args.config, args.resume, args.overrides) == ("cfg.yaml", resume, overrides)


def test_an_existing_folder_with_an_equals_sign_is_still_a_run(workdir):
    run = workdir / "lr=1e-4"
    run.mkdir()
    args = parse_args(build_parser(), ["train", "cfg.yaml", "--resume", str(run)])
    assert args.resume == str(run) and args.overrides == []


def test_bare_resume_then_an_override_resumes_the_newest_run_there(config, capsys, workdir, trainings):
    elsewhere = workdir / "elsewhere"
    code, err = run_cli(capsys, "train", config, "--resume", f"output.dir={elsewhere}")
    assert code == 2 and f"nothing to resume: no run of 'mine' with checkpoints in {elsewhere}" in err
    assert trainings == [] and not elsewhere.exists()


@pytest.fixture
def legacy_run(workdir) -> Path:
    run = workdir / "lora-run"
    shutil.copytree(LEGACY / "lora-run", run)
    return run


def test_resume_with_a_run_directory(legacy_run, capsys, trainings):
    with pytest.raises(TrainingStarted):
        main(["train", str(legacy_run / "config.yaml"), "--resume", str(legacy_run), "train.epochs=3"])
    assert trainings[0]["resume"] == str(legacy_run) and trainings[0]["config"].train.epochs == 3


def test_resume_latest_finds_the_newest_run_of_the_config(legacy_run, workdir, capsys, trainings):
    runs = workdir / "somewhere"
    shutil.copytree(legacy_run, runs / "legacy-lora-20261201-214612")
    for resume in (["--resume"], ["--resume", "latest"]):
        with pytest.raises(TrainingStarted):
            main(["train", str(legacy_run / "config.yaml"), *resume, f"output.dir={runs}"])
        started = trainings.pop()
        assert started["resume"] == "latest" and started["config"].output.dir == str(runs)


def test_resume_problems_are_found_before_anything_loads(legacy_run, workdir, capsys, trainings):
    config = legacy_run / "config.yaml"
    code, err = run_cli(capsys, "train", config, "--resume", workdir / "no-such-run")
    assert code == 2 and f"--resume {workdir / 'no-such-run'}: no such run directory or checkpoint folder" in err
    code, err = run_cli(capsys, "train", config, "--resume", legacy_run, "train.batch_size=8")
    assert code == 2 and "train.batch_size: 16 -> 8" in err and "--resume-force" in err
    assert trainings == []


# --------------------------------------------------------------------------- paths that are not runs


def test_paths_that_are_not_runs_say_what_they_are(legacy_run, workdir, capsys):
    transformers_folder = workdir / "bert"
    transformers_folder.mkdir()
    shutil.copy(LEGACY / "full-run" / "model" / "config.json", transformers_folder)
    cases = [
        ("someorg/some-model", "someorg/some-model: no such run directory"),  # a hub id is not looked up
        (legacy_run / "config.yaml", f"a file inside the run {legacy_run}; give the run directory itself"),
        (legacy_run / "checkpoints", f"a folder inside the run {legacy_run}; give the run directory itself"),
        (workdir, f"{workdir}: a folder of runs, not a run itself; name one of them, e.g. {legacy_run}"),
        (transformers_folder, f"not a tuneforge run (or one whose tuneforge.json was lost: copy it again); to "
                              f"fine-tune a transformers model from it, set model.name={transformers_folder}"),
    ]
    for path, says in cases:
        for command in (["predict", path, "a fine film"], ["serve", path, "--no-auth"], ["export", path, "--merge"]):
            code, err = run_cli(capsys, *command)
            assert code == 2 and says in err and "HFValidationError" not in err, (command, err)


def test_export_to_a_file_is_refused_and_the_file_kept(legacy_run, workdir, capsys):
    target = workdir / "notes.txt"
    target.write_text("mine", encoding="utf-8")
    code, err = run_cli(capsys, "export", legacy_run, "--format", "merged", "--out", target)
    assert code == 2 and f"--out {target}: a file, not a folder" in err
    assert target.read_text(encoding="utf-8") == "mine"


def test_init_out_must_be_a_file_it_can_write(workdir, capsys):
    data = LEGACY / "reviews.csv"
    code, err = run_cli(capsys, "init", "--data", data, "--out", workdir)
    assert code == 2 and f"--out {workdir}: a folder; name the config file to write" in err
    code, err = run_cli(capsys, "init", "--data", data, "--out", workdir / "missing" / "c.yaml")
    assert code == 2 and "cannot write it" in err and not (workdir / "missing").exists()
