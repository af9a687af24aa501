"""Opening a run: one reader that checks a run's files once, so every command fails the same clear way.

``predict``, ``eval``, ``serve``, ``export``, ``distill`` and ``tuneforge.load`` all come through
``read_run``: a folder with a damaged ``tuneforge.json``, a truncated weights file or an adapter folder
without its config gets one message naming the file and what to do, instead of a library traceback.
The task registry (``tuneforge.tasks.open_run``) adds what only the task knows: which weights must be there.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import RunError

META_FILE = "tuneforge.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class RunFolder:
    """A run's model folder and what its ``tuneforge.json`` says about it."""

    model_dir: Path
    meta: dict

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def run_dir(self) -> Path:
        """The run directory (config, report, checkpoints); the model folder itself for an export."""
        parent = self.model_dir.parent
        return parent if self.model_dir.name == "model" and (parent / "config.yaml").is_file() else self.model_dir

    @property
    def format(self) -> str:
        """``pytorch`` for a trained run; ``int8``, ``onnx`` or ``onnx-int8`` for an export."""
        return self.meta.get("format", "pytorch")

    @property
    def is_adapter(self) -> bool:
        return bool(self.meta.get("adapter"))


def read_run(path: str | Path) -> RunFolder:
    """The checked model folder of a run directory (or of a model folder given directly).

    Raises:
        RunError: no such folder, an unfinished run, unreadable metadata, or damaged weight files.
    """
    folder = find_model_dir(Path(path))
    meta = read_meta(folder)
    run = RunFolder(folder, meta)
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(weights)
    if run.is_adapter:
        _check_adapter(folder)
    return run


def find_model_dir(path: Path) -> Path:
    """``RUN/model`` or the folder itself, whichever holds ``tuneforge.json``."""
    for candidate in (path / "model", path):
        if (candidate / META_FILE).is_file():
            return candidate
    if not path.exists():
        raise RunError(f"{path}: no such run directory")
    raise RunError(f"{path}: not a finished tuneforge run (no model/{META_FILE}); did the run complete?")


def read_meta(folder: Path) -> dict:
    """``tuneforge.json`` as a dict with at least a ``task``."""
    source = folder / META_FILE
    try:
        meta = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{source}: damaged run metadata ({error}); the run must be trained or exported again") \
            from None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise RunError(f"{source}: run metadata without a task; the run must be trained or exported again")
    return meta


def write_meta(folder: Path, meta: dict) -> None:
    """``tuneforge.json``: what transformers has no slot for (task, labels, thresholds, lengths, method)."""
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


def trained_meta(config, model) -> dict:
    """The ``tuneforge.json`` fields every trained run shares; a task adds its own (labels, lengths...)."""
    from tuneforge.assets import portable_model_name

    return {"task": config.task, "base_model": portable_model_name(config.model.name),
            "method": config.method.name, "adapter": hasattr(model, "peft_config")}


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header parses and whose tensors all lie inside the file (not truncated)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 0 < length <= min(_HEADER_LIMIT, size - 8):
                raise ValueError("header length out of range")
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as error:
        raise RunError(f"{path}: not a valid safetensors file ({error}); the file is damaged, copy or train the "
                       "run again") from None
    if 8 + length + end > size:
        raise RunError(f"{path}: truncated ({size:,} bytes, the header promises {8 + length + end:,}); the file is "
                       "damaged, copy or train the run again")


def _check_adapter(folder: Path) -> None:
    """An adapter run needs its PEFT config (valid JSON) and its adapter weights side by side."""
    config = folder / ADAPTER_CONFIG
    if not config.is_file():
        raise RunError(f"{folder}: an adapter run without {ADAPTER_CONFIG}; copy the whole model folder")
    try:
        peft = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{config}: damaged adapter config ({error}); copy or train the run again") from None
    if not isinstance(peft, dict) or "peft_type" not in peft:
        raise RunError(f"{config}: not a PEFT adapter config (no peft_type); copy or train the run again")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise RunError(f"{folder}: an adapter run without {ADAPTER_WEIGHTS}; copy the whole model folder")
