"""Runs loaded for serving: which endpoints each kind of run answers, and loading them safely."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.errors import RunError
from tuneforge.runs import open_run

# task in tuneforge.json -> what the server does with it
KINDS = {
    "text_classification": "text-classifier",
    "prompt_classification": "text-classifier",
    "image_classification": "image-classifier",
    "causal_lm": "language-model",
    "sft": "language-model",
    "frozen": "frozen",
}
ENDPOINTS = {
    "text-classifier": ["/v1/classify"],
    "image-classifier": ["/v1/classify"],
    "language-model": ["/v1/completions", "/v1/chat/completions"],
    "frozen": ["/v1/caption", "/v1/ask"],
}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".ckpt"}


@dataclass
class ServedModel:
    name: str
    run_dir: Path
    task: str
    labels: list[str] | None = None
    created: int = 0
    model: Any = None
    state: str = "loading"  # loading -> ready | failed
    error: str | None = None
    load_seconds: float | None = None

    @property
    def kind(self) -> str:
        return KINDS[self.task]

    @property
    def endpoints(self) -> list[str]:
        return ENDPOINTS[self.kind]

    counting_tokenizer: Any = None  # a private copy: see load()

    def load(self) -> None:
        from tuneforge.api import load

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

    meta = getattr(model, "meta", {})
    if meta.get("adapter") and meta.get("method") not in UNMERGEABLE:
        model.model = merge_adapters(model.model, meta).eval()


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
    """Check a run before the server starts: it exists, is a servable task and holds no pickle weights."""
    folder = open_run(run)
    meta = json.loads((folder / "tuneforge.json").read_text(encoding="utf-8"))
    task = meta.get("task")
    if task not in KINDS:
        hint = " (a masked-LM run is a starting point for a classifier, not a model to serve)" if task == "masked_lm" \
            else ""
        raise RunError(f"{run}: a {task} run cannot be served{hint}")
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise RunError(f"{run}: holds pickle weights ({', '.join(pickles)}), which can run code when loaded; tuneforge "
                       "serves safetensors only. Re-save the model with safetensors.")
    return ServedModel(name, Path(run), task, labels=meta.get("labels"),
                       created=int(folder.joinpath("tuneforge.json").stat().st_mtime))
