"""Opening a run: one reader that checks a run's files once, so every command fails the same clear way.

``predict``, ``eval``, ``serve``, ``export``, ``distill`` and ``tuneforge.load`` all come through
``read_run``: a folder with a damaged ``tuneforge.json``, a truncated or missing weights file, an adapter folder
without its config, or a base model folder that is gone gets one message naming the file and the command that
repairs it (``how_to_repair``: resume or retrain the run, or make the export again), instead of a library
traceback. The task registry (``tuneforge.tasks.open_run``) adds what only the task knows: which weights must be
there.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from tuneforge.errors import RunError

META_FILE = "tuneforge.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MODEL_WEIGHTS = "model.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
MODEL_CONFIG = "config.json"  # a saved transformers model: its weights must sit beside it
TOKENIZER_CONFIG = "tokenizer_config.json"
# Files only a model folder holds (a checkpoint holds weights.safetensors and state.json instead)
_MODEL_FILES = (MODEL_CONFIG, MODEL_WEIGHTS, ADAPTER_CONFIG, "model.onnx", "model-int8.safetensors",
                "vision.safetensors", TOKENIZER_CONFIG)
# The model file of each export format, as ``compression.export`` writes it (``models.runtime`` reads it)
EXPORT_FILES = {"int8": "model-int8.safetensors", "onnx": "model.onnx", "onnx-int8": "model.onnx"}
ENSEMBLE_KEY = "ensemble"  # in tuneforge.json: an ensemble of member runs, no weights of its own
_JSON_PARSE_LIMIT = 2 * 1024 * 1024  # larger JSON (a big vocabulary's tokenizer.json) is only checked for its end
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")


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

    @property
    def is_ensemble(self) -> bool:
        """An ensemble folder (``tuneforge ensemble``): its members are other runs."""
        return isinstance(self.meta.get(ENSEMBLE_KEY), dict)

    @property
    def members(self) -> list[Path]:
        """An ensemble's member runs; stored paths are relative to the model folder, so a tree that moves whole
        keeps working."""
        entries = (self.meta.get(ENSEMBLE_KEY) or {}).get("members") or []
        return [member_path(self.model_dir, entry) for entry in entries]


def read_run(path: str | Path) -> RunFolder:
    """The checked model folder of a run directory (or of a model folder given directly).

    Raises:
        RunError: no such folder, an unfinished run, unreadable metadata, damaged or missing weight files, or a
            base model folder the run loads onto that is gone; each names the file and how to repair it.
    """
    folder = find_model_dir(Path(path))
    meta = read_meta(folder)
    run = RunFolder(folder, meta)
    if run.is_ensemble:  # no weights of its own: each member is opened and checked instead
        _check_ensemble(run)
        return run
    fix = how_to_repair(folder, meta)
    for weights in sorted(folder.rglob("*.safetensors")):  # subfolders too: a Frozen run's fine-tuned LM
        check_safetensors(weights, fix)
    for settings in sorted(folder.rglob("*.json")):
        if settings != folder / META_FILE:
            check_json(settings, fix)
    if run.is_adapter:
        _check_adapter(folder, fix)
    elif run.format == "pytorch":
        _check_saved_model(folder, fix)
    else:
        _check_export(folder, run.format, fix)
    _check_base_models(run)
    return run


# --------------------------------------------------------------------------- finding the model folder


def find_model_dir(path: Path) -> Path:
    """``RUN/model`` or the folder itself, whichever holds ``tuneforge.json``.

    Raises:
        RunError: what the path is instead (missing, a file, an unfinished run, a folder of runs...) and what to
            give instead.
    """
    for candidate in (path / "model", path):
        if (candidate / META_FILE).is_file():
            return candidate
    raise RunError(_not_a_run(path))


def _not_a_run(path: Path) -> str:
    """What ``path`` is instead of a run, and what to give or do instead."""
    if not path.exists():
        return f"{path}: no such run directory (runs are the folders under output.dir, e.g. runs/NAME-DATE-TIME)"
    inside = _enclosing_run(path)
    if not path.is_dir():
        if inside is not None:
            return f"{path}: a file inside the run {inside}; give the run directory itself: {inside}"
        return f"{path}: a file, not a run directory; give the folder that holds config.yaml and model/"
    if (path / "config.yaml").is_file() or (path / "model").is_dir():
        return f"{path}: not a finished tuneforge run (no model/{META_FILE}); {how_to_repair(path / 'model')}"
    if any((path / name).is_file() for name in _MODEL_FILES):
        return _model_folder_without_meta(path, inside)
    if inside is not None:
        return f"{path}: a folder inside the run {inside}; give the run directory itself: {inside}"
    runs = [p for p in path.iterdir() if (p / "model" / META_FILE).is_file()]
    if runs:
        newest = max(runs, key=lambda p: (p / "model" / META_FILE).stat().st_mtime)
        return f"{path}: a folder of runs, not a run itself; name one of them, e.g. {newest}"
    return (f"{path}: not a finished tuneforge run (no model/{META_FILE}); give a run directory, the folder that "
            "holds config.yaml and model/")


def _model_folder_without_meta(path: Path, inside: Path | None) -> str:
    if inside is not None or (path.parent / "config.yaml").is_file():  # part of a run: it lost its metadata
        return f"{path}: a model folder without its {META_FILE}; {how_to_repair(path)}"
    return (f"{path}: a model folder without {META_FILE}, so not a tuneforge run (or one whose {META_FILE} was "
            f"lost: copy it again); to fine-tune a transformers model from it, set model.name={path} in a config")


def _enclosing_run(path: Path) -> Path | None:
    """The run (or model folder) a file or subfolder lies in, up to three levels up: what the user meant."""
    for folder in list(path.parents)[:3]:
        if (folder / "model" / META_FILE).is_file():
            return folder
        if (folder / META_FILE).is_file():
            return folder.parent if folder.name == "model" and (folder.parent / "config.yaml").is_file() else folder
    return None


# --------------------------------------------------------------------------- metadata


def read_meta(folder: Path) -> dict:
    """``tuneforge.json`` as a dict with at least a ``task``."""
    source = folder / META_FILE
    try:
        meta = json.loads(source.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{source}: damaged run metadata ({error}); {how_to_repair(folder)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise RunError(f"{source}: run metadata without a task; {how_to_repair(folder)}")
    return meta


def write_meta(folder: Path, meta: dict) -> None:
    """``tuneforge.json``: what transformers has no slot for (task, labels, thresholds, lengths, method)."""
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")


def trained_meta(config, model) -> dict:
    """The ``tuneforge.json`` fields every trained run shares; a task adds its own (labels, lengths...)."""
    from tuneforge.assets import portable_model_name

    return {"task": config.task, "base_model": portable_model_name(config.model.name),
            "method": config.method.name, "adapter": hasattr(model, "peft_config")}


# --------------------------------------------------------------------------- how to repair


def how_to_repair(model_dir: Path, meta: dict | None = None) -> str:
    """The command that makes a damaged model folder whole again: remake the export or pruned copy it is, resume
    the run from its last checkpoint, or train it again. ``meta``: its ``tuneforge.json``, when readable."""
    remade = _remake_variant(model_dir, meta or {})
    if remade:
        return remade
    run_dir = model_dir.parent if model_dir.name == "model" else model_dir
    config = run_dir / "config.yaml"
    if config.is_file() and any((run_dir / "checkpoints").glob("step-*")):
        return f"finish or redo the run from its last checkpoint: tuneforge train {config} --resume {run_dir}"
    if config.is_file():
        return f"train the run again: tuneforge train {config}"
    if (model_dir.parent / "model" / META_FILE).is_file():  # an export or pruned copy inside its run
        return (f"make it again from its run {model_dir.parent} (tuneforge export or tuneforge prune, "
                f"with --out {model_dir} --force)")
    return "copy the whole folder again from where it was made, or train the run again"


def _remake_variant(model_dir: Path, meta: dict) -> str | None:
    """How to remake an export (its format and source are in its metadata), a merged copy or a pruned model."""
    origin = _source_run(model_dir, meta)
    again = f"--out {model_dir} --force"
    fmt = meta.get("format", "pytorch")
    if fmt != "pytorch":
        return f"export it again: tuneforge export {origin} --format {fmt} {again}"
    if str(meta.get("method", "")).endswith("(merged)"):
        return f"export it again: tuneforge export {origin} --format merged {again}"
    pruning = meta.get("pruning")
    if isinstance(pruning, dict):
        amount = f" --amount {pruning['amount']}" if "amount" in pruning else ""
        return f"prune it again: tuneforge prune {origin} --method {pruning.get('method', 'METHOD')}{amount} {again}"
    return None


def _source_run(model_dir: Path, meta: dict) -> str:
    """The run an export was made from: recorded by ``export``, else the run folder around it, else ``RUN``."""
    source = meta.get("exported_from")
    if isinstance(source, str) and source:
        path = Path(source)
        return str(path.parent if path.name == "model" else path)
    if (model_dir.parent / "model" / META_FILE).is_file():
        return str(model_dir.parent)
    return "RUN"


# --------------------------------------------------------------------------- weights


def check_safetensors(path: Path, fix: str = "copy the file again or train the run again") -> None:
    """A safetensors file whose header parses and whose tensors all lie inside the file (not truncated)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if not 0 < length <= min(_HEADER_LIMIT, size - 8):
                raise ValueError("header length out of range")
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as error:
        raise RunError(f"{path}: not a valid safetensors file ({error}); the file is damaged: {fix}") from None
    if 8 + length + end > size:
        raise RunError(f"{path}: truncated ({size:,} bytes, the header promises {8 + length + end:,}); the file is "
                       f"damaged: {fix}")


def check_json(path: Path, fix: str = "copy the file again or train the run again") -> None:
    """A JSON file that parses; a large one (a tokenizer's vocabulary) at least ends where JSON ends."""
    try:
        if path.stat().st_size <= _JSON_PARSE_LIMIT:
            json.loads(path.read_text(encoding="utf-8"))
            return
        with path.open("rb") as handle:
            handle.seek(-64, 2)
            if not handle.read().rstrip().endswith((b"}", b"]")):
                raise ValueError("it stops mid-way, truncated")
    except (UnicodeDecodeError, ValueError) as error:
        raise RunError(f"{path}: damaged JSON ({error}); {fix}") from None


def _check_model_config(folder: Path, fix: str) -> None:
    """The ``config.json`` transformers builds the model from, with the ``model_type`` it needs."""
    path = folder / MODEL_CONFIG
    if not path.is_file():
        raise RunError(f"{folder}: no model config ({MODEL_CONFIG} is missing); {fix}")
    settings = json.loads(path.read_text(encoding="utf-8"))  # parses: check_json read it first
    if not isinstance(settings, dict) or "model_type" not in settings:
        raise RunError(f"{path}: not a transformers model config (no model_type); {fix}")


def _check_adapter(folder: Path, fix: str) -> None:
    """An adapter run needs its PEFT config (valid JSON) and its adapter weights side by side."""
    config = folder / ADAPTER_CONFIG
    if not config.is_file():
        raise RunError(f"{folder}: an adapter run without {ADAPTER_CONFIG}; {fix}")
    try:
        peft = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{config}: damaged adapter config ({error}); {fix}") from None
    if not isinstance(peft, dict) or "peft_type" not in peft:
        raise RunError(f"{config}: not a PEFT adapter config (no peft_type); {fix}")
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise RunError(f"{folder}: an adapter run without {ADAPTER_WEIGHTS}; {fix}")


def _check_saved_model(folder: Path, fix: str) -> None:
    """A saved transformers model (``config.json``) has its weights: ``model.safetensors``, or every shard its
    index names."""
    index = folder / SHARD_INDEX
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise RunError(f"{index}: damaged shard index ({error}); {fix}") from None
        missing = sorted(str(shard) for shard in shards if not (folder / str(shard)).is_file())
        if missing:
            raise RunError(f"{folder}: no model weights ({', '.join(missing)} missing); {fix}")
    elif (folder / MODEL_CONFIG).is_file() and not (folder / MODEL_WEIGHTS).is_file():
        raise RunError(f"{folder}: no model weights ({MODEL_WEIGHTS} is missing); {fix}")
    has_weights = (folder / MODEL_WEIGHTS).is_file() or index.is_file()
    if has_weights and (folder / TOKENIZER_CONFIG).is_file():  # a transformers model (images keep neither)
        _check_model_config(folder, fix)


def _check_export(folder: Path, fmt: str, fix: str) -> None:
    """An export has the model file of its format (an unknown format is left to the task to refuse)."""
    expected = EXPORT_FILES.get(fmt)
    if expected and not (folder / expected).is_file():
        raise RunError(f"{folder}: an export ({fmt}) without its model file ({expected} is missing); {fix}")
    if expected and expected.endswith(".onnx"):
        check_onnx(folder / expected, fix)
    if expected:
        _check_model_config(folder, fix)


def check_onnx(path: Path, fix: str = "export the run again") -> None:
    """An ONNX graph that parses (a truncated copy does not); its weights are not loaded twice."""
    try:
        import onnx
        from google.protobuf.message import Error as ProtobufError
    except ImportError:  # without onnx installed, ONNX Runtime reports it at load
        return
    try:
        onnx.load(str(path), load_external_data=False)
    except (ProtobufError, ValueError, OSError) as error:
        raise RunError(f"{path}: not a readable ONNX model ({error}); the file is damaged: {fix}") from None


# --------------------------------------------------------------------------- ensembles


def member_path(model_dir: Path, entry: str) -> Path:
    """Where an ensemble member lies: a stored relative path is read from the ensemble's model folder."""
    path = Path(entry).expanduser()
    return path if path.is_absolute() else model_dir / path


def _check_ensemble(run: RunFolder) -> None:
    """An ensemble's metadata is whole and every member opens (checked like any run) with the ensemble's task and
    labels; a member that moved or is damaged is named, with how to repair the ensemble."""
    source, spec = run.model_dir / META_FILE, run.meta[ENSEMBLE_KEY]
    entries, weights = spec.get("members"), spec.get("weights")
    if not (isinstance(entries, list) and len(entries) >= 2 and all(isinstance(e, str) for e in entries)
            and isinstance(weights, list) and len(weights) == len(entries)
            and all(isinstance(w, int | float) and w >= 0 for w in weights)
            and abs(sum(weights) - 1) < 1e-3 and isinstance(run.meta.get("labels"), list)):
        raise RunError(f"{source}: damaged ensemble metadata (members, weights or labels); {_rebuild(run)}")
    for entry, member in zip(entries, run.members, strict=True):
        where = f"{run.run_dir}: ensemble member {entry}"
        if not member.exists():
            raise RunError(f"{where} is not there ({member} does not exist: moved or deleted?); put the run back "
                           f"there, or {_rebuild(run)}")
        try:
            opened = read_run(member)
        except RunError as error:
            raise RunError(f"{where} cannot be opened: {error}") from None
        if opened.is_ensemble:
            raise RunError(f"{where} is itself an ensemble; {_rebuild(run)} from plain runs")
        if (opened.task, opened.meta.get("labels")) != (run.task, run.meta["labels"]):
            raise RunError(f"{where} is now a {opened.task} run with labels {opened.meta.get('labels')}, not the "
                           f"{run.task} run with labels {run.meta['labels']} the ensemble was built from; "
                           f"{_rebuild(run)}")


def _rebuild(run: RunFolder) -> str:
    if run.format != "pytorch":  # an exported ensemble: export the ensemble again
        return how_to_repair(run.model_dir, run.meta)
    members = " ".join(str(member) for member in run.members) or "RUN RUN ..."
    return f"rebuild the ensemble: tuneforge ensemble {members} --out {run.run_dir} --force"


def is_ensemble_folder(path: str | Path) -> bool:
    """Whether ``path`` is an ensemble's folder (metadata only; ``read_run`` checks the rest)."""
    try:
        return RunFolder(Path(), read_meta(find_model_dir(Path(path)))).is_ensemble
    except RunError:
        return False


# --------------------------------------------------------------------------- base models


def _check_base_models(run: RunFolder) -> None:
    """A run that loads onto a base model kept in a local folder needs that folder: say so before any library
    tries the path as a hub id."""
    for key, name in base_models(run):
        if looks_like_path(name) and not Path(name).expanduser().is_dir():
            merge = (f", then keep a self-contained copy: tuneforge export {run.run_dir} --format merged"
                     if run.is_adapter else "")
            raise RunError(f"{run.model_dir}: needs its base model {name} ({key} in {META_FILE}), and that folder is "
                           f"not there; the run keeps only what training changed, so put the base model back at "
                           f"that path{merge}")


def base_models(run: RunFolder) -> list[tuple[str, str]]:
    """(key, name) of each model a run loads its weights onto: an adapter's base, the base of a run that keeps
    no weights of its own (prompt classification), and a language model that stayed frozen (Frozen)."""
    if run.format != "pytorch":
        return []
    found = []
    # bottleneck adapters keep only their own weights too (``bottleneck_adapters.safetensors``)
    keeps_base = run.is_adapter or (run.model_dir / "bottleneck_config.json").is_file()
    if keeps_base or not any(run.model_dir.glob("*.safetensors")):
        found.append(("base_model", run.meta.get("base_model")))
    if not run.meta.get("finetune_lm", True):
        found.append(("language_model", run.meta.get("language_model")))
    return [(key, name) for key, name in found if isinstance(name, str) and name]


def looks_like_path(name: str) -> bool:
    """A model name that can only be a folder: absolute, relative, home, Windows or nested; a registered name
    (``minilm-l6``) or a hub id (``org/model``) is not."""
    return (name.startswith((".", "/", "~", "\\")) or "\\" in name or name.count("/") > 1
            or bool(_WINDOWS_DRIVE.match(name)))
