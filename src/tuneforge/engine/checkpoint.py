"""Checkpoints that survive crashes: atomic, verified, pruned.

A checkpoint is a folder ``checkpoints/step-00000123/`` holding the trainable weights
(safetensors), the optimizer and scheduler state, every RNG state, ``state.json`` (step, epoch,
position in the epoch, early-stopping state, history) and, when training extensions keep state,
``extensions.pt``. It is written into a hidden scratch folder,
each file flushed to disk, then ``manifest.json`` (sizes and sha256 of every file) is written last and
the folder renamed into place. A folder with no manifest, or whose files disagree with it, is never
used for resume: the loader says which one it skipped and why, and falls back to the previous one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tuneforge.assets.cache import sha256
from tuneforge.errors import RunError

MANIFEST = "manifest.json"
EXTENSIONS_FILE = "extensions.pt"
_PREFIX = "step-"


@dataclass
class Checkpoint:
    path: Path
    state: dict  # the contents of state.json

    @property
    def step(self) -> int:
        return self.state["step"]


def save_checkpoint(root: Path, weights: dict[str, torch.Tensor], optimizer: dict, scheduler: dict,
                    state: dict, extensions: dict | None = None) -> Path:
    """Write one checkpoint atomically; the folders already there are never touched.

    ``extensions``: the training extensions' states by key (``tuneforge.extensions``), stored when not empty.

    Raises:
        RunError: naming the path when the disk is full or the folder unwritable.
    """
    target = root / f"{_PREFIX}{state['step']:08d}"
    scratch = root / f".partial-{target.name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, scratch / "weights.safetensors")
        torch.save(optimizer, scratch / "optimizer.pt")
        torch.save({"scheduler": scheduler, "rng": _rng_state()}, scratch / "scheduler_rng.pt")
        (scratch / "state.json").write_text(json.dumps(state), encoding="utf-8")
        if extensions:
            torch.save(extensions, scratch / EXTENSIONS_FILE)
        _write_manifest(scratch)
        if target.exists():  # the same step written again (a resumed run re-reaching it): replace it
            shutil.rmtree(target)
        os.rename(scratch, target)
        _fsync_dir(root)
    except OSError as error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise RunError(f"could not write checkpoint {target}: {error.strerror or error} "
                       "(the previous checkpoints are intact)") from None
    return target


def load_checkpoint(checkpoint: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(weights, optimizer state, scheduler state) of a verified checkpoint; RNG states are restored."""
    weights = load_file(checkpoint / "weights.safetensors")
    optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    rest = torch.load(checkpoint / "scheduler_rng.pt", weights_only=True)
    _set_rng_state(rest["rng"])
    return weights, optimizer, rest["scheduler"]


def load_extension_states(checkpoint: Path) -> dict[str, dict]:
    """The training extensions' states saved with ``checkpoint``; empty when it has none (older checkpoints)."""
    path = checkpoint / EXTENSIONS_FILE
    return torch.load(path, weights_only=True) if path.is_file() else {}


def find_checkpoints(root: Path) -> list[Checkpoint]:
    """Every intact checkpoint under ``root``, newest first; damaged ones are reported and skipped."""
    found = []
    for path in sorted(root.glob(f"{_PREFIX}*"), reverse=True):
        problem = verify(path)
        if problem:
            print(f"skipping checkpoint {path}: {problem}", file=sys.stderr)
            continue
        found.append(Checkpoint(path, json.loads((path / "state.json").read_text(encoding="utf-8"))))
    return found


def verify(path: Path) -> str | None:
    """None when every file matches the manifest, else what is wrong."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return "no manifest (the write never finished)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "unreadable manifest"
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected["size"]:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {expected['size']}"
        if sha256(file) != expected["sha256"]:
            return f"{name} does not match its sha256"
    return None


def prune(root: Path, keep_last: int, best_step: int | None) -> None:
    """Delete all but the ``keep_last`` newest checkpoints and the best one, plus leftover scratch folders."""
    for scratch in root.glob(".partial-*"):
        shutil.rmtree(scratch, ignore_errors=True)
    checkpoints = sorted(root.glob(f"{_PREFIX}*"), reverse=True)
    keep = set(checkpoints[:keep_last])
    if best_step is not None:
        keep.add(root / f"{_PREFIX}{best_step:08d}")
    for path in checkpoints:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- helpers


def _write_manifest(folder: Path) -> None:
    files = {}
    for file in sorted(folder.iterdir()):
        _fsync_file(file)
        files[file.name] = {"size": file.stat().st_size, "sha256": sha256(file)}
    manifest = folder / MANIFEST
    manifest.write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")
    _fsync_file(manifest)


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _rng_state() -> dict:
    """Every RNG in use, in types ``torch.load(weights_only=True)`` accepts (no pickled NumPy objects)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
