"""Runs loaded for serving: checking that a run can be served, and loading it safely.

What a run answers (its kind and routes) is its task's ``ServeSpec`` in the task registry; nothing here
knows a task by name.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import RunError
from tuneforge.runs.reader import META_FILE, find_model_dir
from tuneforge.tasks import ServeSpec, open_run, task_named

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".ckpt"}


@dataclass
class ServedModel:
    """One run as the server holds it: checked by ``inspect``, loaded in the background by ``load``."""

    name: str
    run_dir: Path
    task: str
    labels: list[str] | None = None
    created: int = 0
    model: Any = None
    state: str = "loading"  # loading -> ready | failed
    error: str | None = None
    load_seconds: float | None = None
    counting_tokenizer: Any = None  # a private copy: see load()

    @property
    def spec(self) -> ServeSpec:
        """How the server answers this run: its task's ``ServeSpec``."""
        return task_named(self.task).serve

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def endpoints(self) -> list[str]:
        return list(self.spec.routes)

    def load(self) -> None:
        """Load the run's model (``tuneforge.tasks.load``) with its adapters folded in; ``state`` says how it went."""
        from tuneforge.tasks import load

        start = time.perf_counter()
        try:
            self.model = load(self.run_dir)
            fold_adapters(self.model)
            # Limits count tokens on the event loop while the model's thread tokenizes with truncation; one
            # fast tokenizer shared by both threads fails ("Already borrowed") or loses its truncation.
            tokenizer = getattr(self.model, "tokenizer", None)
            self.counting_tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else None
        except Exception as error:  # a broken run must not take the other models down with it
            self.state, self.error = "failed", f"{type(error).__name__}: {error}"
            raise
        self.load_seconds = time.perf_counter() - start
        self.state = "ready"


def fold_adapters(model) -> None:
    """LoRA, AdaLoRA and IA3 adapters folded into the weights once at load: the same answers (to float
    rounding) with less work per request (bench/serve_throughput.py). Prefix and prompt tuning stay as they are."""
    from tuneforge.tasks.merging import UNMERGEABLE, merge_adapters

    for member in getattr(model, "members", None) or [model]:  # an ensemble: each of its runs
        meta = getattr(member, "meta", {})
        if meta.get("adapter") and meta.get("method") not in UNMERGEABLE:
            holder = getattr(member, "tagger", member)  # an entity tagger holds its transformers model in its Tagger
            holder.model = merge_adapters(holder.model, meta).eval()


def model_specs(runs: list[str], named: list[str]) -> dict[str, Path]:
    """Model name -> run directory, from plain run directories (named after their folder) and NAME=RUN_DIR."""
    specs: dict[str, Path] = {}

    def add(name: str, run: str) -> None:
        if not name or any(c.isspace() or c == "/" for c in name):
            raise RunError(f"model name '{name}' must be one word without '/'")
        if name in specs:
            raise RunError(f"two runs would be served as '{name}'; name them with --name NAME=RUN_DIR")
        specs[name] = Path(run)

    for run in runs:
        path = Path(run).resolve()
        add(path.parent.name if path.name == "model" else path.name, run)
    for item in named:
        name, sep, run = item.partition("=")
        if not sep:
            raise RunError(f"--name '{item}': expected NAME=RUN_DIR")
        add(name.strip(), run.strip())
    if not specs:
        raise RunError("give at least one run directory to serve")
    return specs


def inspect(name: str, run: Path) -> ServedModel:
    """Check a run before the server starts: it opens (``tuneforge.tasks.open_run``), its task is served, and it
    holds no pickle weights.

    Raises:
        RunError: what ``open_run`` finds, a task that is not served (and why), or pickle weights.
    """
    try:
        folder, task = open_run(run)
    except RunError:
        # a folder of pickle weights alone fails for want of weights; the pickles are what the user must fix
        _refuse_pickles(run, _model_dir_or_none(Path(run)))
        raise
    if task.serve is None:
        raise RunError(f"{run}: a {task.name} run cannot be served ({task.not_served})")
    for model_dir in [folder.model_dir, *(_model_dir_or_none(member) for member in folder.members)]:
        _refuse_pickles(run, model_dir)  # an ensemble loads its members' folders too
    return ServedModel(name, Path(run), task.name, labels=folder.meta.get("labels") or _entity_types(folder.meta),
                       created=int(folder.model_dir.joinpath(META_FILE).stat().st_mtime))


def _entity_types(meta: dict) -> list[str] | None:
    """An entity tagger's types (its BIO tags without the prefixes), as the labels /v1/models lists."""
    tags = meta.get("tags")
    return sorted({tag.split("-", 1)[-1] for tag in tags if tag != "O"}) if tags else None


def _model_dir_or_none(run: Path) -> Path | None:
    try:
        return find_model_dir(run)
    except RunError:
        return None


def _refuse_pickles(run: Path, model_dir: Path | None) -> None:
    pickles = sorted(p.name for p in model_dir.rglob("*") if p.suffix in PICKLE_SUFFIXES) if model_dir else []
    if pickles:
        raise RunError(f"{run}: holds pickle weights ({', '.join(pickles)}), which can run code when loaded; tuneforge "
                       "serves safetensors only. Re-save the model with safetensors.")
