"""Run directories: ``runs/<name>-<timestamp>/`` with config, metrics, report, plots and the model.

A run directory is the unit users pass around: ``tuneforge predict RUN``, ``eval RUN``, ``export
RUN``. The resolved config is written first, so even a crashed run says how it was started.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from tuneforge.config import Config, flatten, load_config, save_config
from tuneforge.engine.checkpoint import Checkpoint, find_checkpoints
from tuneforge.errors import RunError


@dataclass
class Run:
    """A finished run: where it is and what it measured."""

    dir: Path
    metrics: dict = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.dir / "model"

    @property
    def report(self) -> Path:
        return self.dir / "report.md"

    @property
    def config(self) -> Config:
        return load_config(self.dir / "config.yaml")


def create_run_dir(config: Config) -> Path:
    """A fresh, writable run directory holding the resolved config."""
    parent = Path(config.output.dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = parent / f"{config.name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = parent / f"{config.name}-{stamp}-{suffix}"
    try:
        run_dir.mkdir(parents=True)
        save_config(config, run_dir / "config.yaml")
    except OSError as error:
        raise RunError(f"cannot write the run directory {run_dir}: {error.strerror} (check output.dir)") from None
    check_writable(run_dir / "checkpoints")
    return run_dir


# Changing these does not break exactness of a resumed run (more epochs, other logging).
_RESUME_FREE = ("output.", "train.epochs", "train.max_steps", "train.log_every", "train.checkpoint.",
                "eval.early_stopping_patience", "train.num_workers")


def find_resume_point(config: Config, resume: str | Path, force: bool = False) -> tuple[Path, Checkpoint]:
    """The run directory and checkpoint to continue from: ``latest`` run of this config, a run or a checkpoint.

    Raises:
        RunError: no intact checkpoint, or a config that changes what exact resume depends on.
    """
    if str(resume) == "latest":
        own = re.compile(rf"{re.escape(config.name)}-\d{{8}}-\d{{6}}(-\d+)?")  # not "<name>-other-..." runs
        candidates = sorted(Path(config.output.dir).glob(f"{config.name}-*"), key=lambda p: p.name, reverse=True)
        run_dirs = [p for p in candidates if own.fullmatch(p.name) and (p / "checkpoints").is_dir()]
        if not run_dirs:
            raise RunError(f"nothing to resume: no run of '{config.name}' with checkpoints in {config.output.dir}")
        run_dir, wanted = run_dirs[0], None
    else:
        path = Path(resume)
        is_checkpoint = (path / "state.json").exists() or path.name.startswith("step-")
        run_dir, wanted = (path.parent.parent, path) if is_checkpoint else (path, None)
    checkpoints = find_checkpoints(run_dir / "checkpoints") if (run_dir / "checkpoints").is_dir() else []
    if wanted is not None:
        checkpoints = [c for c in checkpoints if c.path == wanted]
    if not checkpoints:
        raise RunError(f"{resume}: no intact checkpoint to resume from in {run_dir}")
    _check_same_run(config, checkpoints[0].state["config"], force)
    check_writable(run_dir / "checkpoints")
    return run_dir, checkpoints[0]


def run_dir_for(config: Config, resume: str | Path | None, resume_force: bool,
                processes) -> tuple[Path, Checkpoint | None]:
    """The run directory (and checkpoint) of a starting or resumed run, the same in every process.

    Called only once set-up succeeded, so config mistakes leave no empty run folders behind.
    """
    if resume is not None:
        return find_resume_point(config, resume, resume_force)
    run_dir = create_run_dir(config) if processes.is_main_process else None
    if processes.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        run_dir = broadcast_object_list([run_dir])[0]
    return run_dir, None


def check_writable(folder: Path) -> None:
    """A test write before training starts: a full disk or read-only folder fails now, not hours in."""
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as handle:
            handle.write(b"\0" * (1 << 20))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise RunError(f"cannot write to {folder}: {error.strerror or error} (free space or fix permissions)") from None
    finally:
        probe.unlink(missing_ok=True)


def _check_same_run(config: Config, saved: dict, force: bool) -> None:
    now, before = flatten(config.to_dict()), flatten(saved)
    if now.get("eval.metric") is None:  # unset: the recipe fills in its task's default, as it did when it saved
        now["eval.metric"] = before.get("eval.metric")
    # Keys added to tuneforge after the checkpoint was written (e.g. image.*) cannot have been changed.
    changed = [f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in sorted(before)
               if now.get(key) != before.get(key) and not key.startswith(_RESUME_FREE)]
    if changed and not force:
        raise RunError("the config differs from the checkpoint's in ways that break an exact resume:\n  "
                       + "\n  ".join(changed) + "\nrevert them, or pass --resume-force to continue anyway")
