"""Ensembles of classifier runs: ``tuneforge ensemble``, ``tuneforge train CONFIG --seeds N`` and their export.

An ensemble averages its members' probabilities, with equal weights or weights fitted on the validation split
(the validation log-loss minimised over the probability simplex: softmax-parametrised weights, L-BFGS). Members
must be runs of one task with the same labels in the same order, scored on the same validation and test examples:
each member's saved config reloads its splits the way its recipe did, and the examples are compared, so a split
carved with another seed is refused (``data.split_seed`` fixes it) while splits from files pass whatever the seed.

The ensemble is a run folder like any other: ``model/tuneforge.json`` (the members' task and labels plus an
``ensemble`` entry: member paths relative to that folder, weights, how they were chosen), ``metrics.json``,
``report.md`` (each member beside the ensemble) and a copy of the first member's ``config.yaml``.
``tuneforge.load`` gives a ``tasks.ensemble.EnsembleClassifier``, so predict, eval, serve and distill take it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.config import Config, flatten, load_config
from tuneforge.errors import ConfigError, RunError
from tuneforge.runs import RunFolder, write_meta
from tuneforge.runs.reader import ENSEMBLE_KEY, is_ensemble_folder
from tuneforge.tasks import Task, open_run
from tuneforge.tasks.classification import LabelSpace, loss_from_probs, score
from tuneforge.tasks.ensemble import EPSILON, combine

WEIGHTINGS = ("equal", "fitted")
SPLITS = ("validation", "test")
# Per-run facts in a member's tuneforge.json that do not describe the ensemble
_MEMBER_ONLY = ("format", "exported_from", "pruning", "thresholds")


@dataclass
class Member:
    """One member run: where it is, its config and metadata, and its probabilities on the shared splits."""

    folder: RunFolder
    config: Config
    splits: Any = None  # tuneforge.data.splits.Splits, as its recipe loaded them
    probs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.folder.run_dir.resolve()

    @property
    def name(self) -> str:
        return self.folder.run_dir.name


@dataclass
class Ensemble:
    """A built ensemble: its folder, metrics.json's contents and the members-vs-ensemble table rows."""

    dir: Path
    metrics: dict
    rows: list[dict]


# --------------------------------------------------------------------------- building


def build_ensemble(runs: list[str | Path], out: Path | None = None, weighting: str = "fitted",
                   force: bool = False) -> Ensemble:
    """An ensemble run folder of ``runs`` at ``out`` (default: beside the first member,
    ``<name>-ensemble-<timestamp>``); returns it with its metrics.

    Raises:
        ConfigError: fewer than two runs, members of other tasks, labels or splits, or a task whose runs do not
            give class probabilities.
        RunError: a member that does not open, or an ``out`` that must not be replaced.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"--weights: '{weighting}' is not one of {', '.join(WEIGHTINGS)}")
    task, members = open_members(runs)
    out = Path(out) if out else members[0].run_dir.parent / ensemble_name(members[0].config.name)
    check_out(out, members, force)
    inputs_of = _inputs_reader(task)
    for member in members:
        member.splits = _load_splits(member.config, task)
        _check_known_labels(member)
    check_same_splits(members)
    first = members[0]
    labels = LabelSpace(first.folder.meta["labels"], bool(first.folder.meta.get("multi_label")))
    targets = {split: _targets(getattr(first.splits, split), labels) for split in SPLITS}
    for member in members:  # one model in memory at a time
        model = task.load(member.run_dir)
        member.probs = {split: model.predict_proba([inputs_of(e) for e in getattr(first.splits, split)])
                        for split in SPLITS if len(targets[split])}
        del model
    weights = choose_weights([m.probs["validation"] for m in members], targets["validation"], labels, weighting)
    evaluation, thresholds = evaluate_ensemble(members, weights, targets, labels)
    rows = table_rows(members, weights, evaluation, targets, labels)
    metrics = {"task": task.name, **evaluation, "labels": labels.names,
               "ensemble": {"combine": "mean" if weighting == "equal" else "fitted", "weights": list(weights),
                            "members": [str(m.run_dir) for m in members]},
               "members": rows[:-1], "data_warnings": list(first.splits.warnings)}
    meta = ensemble_meta(first.folder.meta, members, weights, weighting, thresholds, out)
    _write_folder(out, meta, metrics, rows, members, task)
    return Ensemble(out, metrics, rows)


def ensemble_name(name: str) -> str:
    return f"{name}-ensemble-{time.strftime('%Y%m%d-%H%M%S')}"


def open_members(runs: list[str | Path]) -> tuple[Task, list[Member]]:
    """Each run opened and checked, with its config; the same task and labels (in the same order) for all."""
    folders = [open_run(run) for run in runs]  # a damaged or missing run is named by open_run
    unique = {folder.run_dir.resolve() for folder, _ in folders}
    if len(unique) < 2:
        raise ConfigError(f"an ensemble needs at least 2 different runs; got {len(unique)}: "
                          f"{' '.join(str(r) for r in runs)}")
    if len(unique) < len(folders):
        raise ConfigError("the same run is given twice; name each member once")
    members = []
    first_folder, task = folders[0]
    for (folder, own_task), run in zip(folders, runs, strict=True):
        _check_member(folder, own_task, run)
        if own_task.name != task.name:
            raise ConfigError(f"{run}: a {own_task.name} run; the ensemble's first member {runs[0]} is a {task.name} "
                              "run (members must share their task)")
        _check_labels(folder, first_folder, run, runs[0])
        members.append(Member(folder, load_config(folder.run_dir / "config.yaml")))
    return task, members


def _check_member(folder: RunFolder, task: Task, run: str | Path) -> None:
    if folder.is_ensemble:
        raise ConfigError(f"{run} is itself an ensemble; give its member runs instead")
    if task.predicts not in ("texts", "images"):  # spans, generated text: no class probabilities to average
        raise ConfigError(f"{run}: ensembles average class probabilities, which {task.name} runs do not give; "
                          "ensembles work for text and image classification runs")
    if folder.format != "pytorch" or not (folder.run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run}: not a trained run with its config.yaml (an export or a copied model folder?); "
                          "build the ensemble from the trained runs, then export it (tuneforge export ENSEMBLE)")


def _check_labels(folder: RunFolder, first: RunFolder, run: str | Path, first_run: str | Path) -> None:
    mine, theirs = list(folder.meta.get("labels") or []), list(first.meta.get("labels") or [])
    if bool(folder.meta.get("multi_label")) != bool(first.meta.get("multi_label")):
        raise ConfigError(f"{run} and {first_run}: one is multi-label, the other is not; members must share labels")
    if mine == theirs:
        return
    only_mine, only_theirs = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    if not only_mine and not only_theirs:
        difference = f"the same labels in another order ({mine} against {theirs})"
    else:
        difference = (f"labels only in {run}: {only_mine or 'none'}; only in {first_run}: {only_theirs or 'none'}")
    raise ConfigError(f"{run}: its labels differ from {first_run}'s: {difference}; members must have the same "
                      "labels in the same order (train them on the same data)")


def _load_splits(config: Config, task: Task):
    """The member's splits as its recipe loaded them (``data.split_seed``, else its seed, carves them)."""
    if task.predicts == "images":
        from tuneforge.tasks.image_classification.recipe import load_image_splits

        return load_image_splits(config)
    from tuneforge.data.splits import load_splits

    return load_splits(config.data, config.seed)


def _check_known_labels(member: Member) -> None:
    known = set(member.folder.meta["labels"])
    unknown = sorted({label for split in SPLITS for e in getattr(member.splits, split) for label in e.labels} - known)
    if unknown:
        raise ConfigError(f"{member.name}: its data now holds labels it was not trained on ({', '.join(unknown)}): "
                          f"the data files changed since training; rebuild from runs trained on the current data")


def _inputs_reader(task: Task):
    """What a member's ``predict_proba`` reads from an example: its image, or its text."""
    return (lambda example: example.image) if task.predicts == "images" else (lambda example: example.text)


def check_same_splits(members: list[Member]) -> None:
    """Every member is scored on the same validation and test examples, or the ensemble's scores mean nothing."""
    first = members[0]
    for member in members[1:]:
        for split in SPLITS:
            if _fingerprint(getattr(member.splits, split)) == _fingerprint(getattr(first.splits, split)):
                continue
            seeds = [_split_seed(m.config) for m in (first, member)]
            if seeds[0] != seeds[1]:
                reason = (f"they carve or sample their data with split seeds {seeds[0]} and {seeds[1]} "
                          f"(data.split_seed, else seed); train the members with one data.split_seed (e.g. "
                          f"data.split_seed={seeds[0]}), as `tuneforge train CONFIG --seeds N` does")
            else:
                keys = _differing_data_keys(first.config, member.config)
                reason = (f"their data settings differ ({', '.join(keys)})" if keys else "their data files changed "
                          "since training") + "; members must be trained on the same data"
            raise ConfigError(f"{member.name}: its {split} split is not {first.name}'s: {reason}")


def _fingerprint(examples: list) -> list[tuple]:
    """What identifies each example: its text (images: none), where it came from (file and row) and its labels."""
    return [(getattr(e, "text", None), e.source, tuple(e.labels)) for e in examples]


def _split_seed(config: Config) -> int:
    return config.data.split_seed if config.data.split_seed is not None else config.seed


def _differing_data_keys(one: Config, other: Config) -> list[str]:
    mine, theirs = flatten({"data": one.to_dict()["data"]}), flatten({"data": other.to_dict()["data"]})
    return sorted(key for key in set(mine) | set(theirs) if mine.get(key) != theirs.get(key))


def _targets(examples: list, labels: LabelSpace):
    from tuneforge.data.text import encode_targets

    return encode_targets([e.label for e in examples], labels.names, labels.multi_label)


# --------------------------------------------------------------------------- weights and scores


def choose_weights(probs: list[np.ndarray], targets, labels: LabelSpace, weighting: str) -> list[float]:
    """Equal weights, or weights fitted on validation; fitted weights never score a worse validation log-loss
    than equal ones (should the optimiser stall, equal weights are kept)."""
    equal = np.full(len(probs), 1 / len(probs))
    if weighting == "equal":
        return equal.tolist()
    fitted = fit_weights(probs, targets, labels.multi_label)
    if loss_from_probs(combine(probs, fitted), targets, labels) > loss_from_probs(combine(probs, equal), targets,
                                                                                 labels):
        return equal.tolist()
    return fitted.tolist()


def fit_weights(probs: list[np.ndarray], targets, multi_label: bool) -> np.ndarray:
    """Weights on the simplex minimising the log-loss of the weighted mean probability: softmax(z), z by L-BFGS
    from z = 0 (equal weights)."""
    import torch

    stacked = torch.tensor(np.stack(probs), dtype=torch.float64)  # (M, N, L)
    truth = torch.as_tensor(targets)
    z = torch.zeros(len(probs), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([z], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        p = torch.einsum("m,mnl->nl", torch.softmax(z, dim=0), stacked).clamp(EPSILON, 1 - EPSILON)
        if multi_label:
            t = truth.to(torch.float64)
            loss = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
        else:
            loss = -p[torch.arange(len(p)), truth].log().mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    return torch.softmax(z.detach(), dim=0).numpy()


def evaluate_ensemble(members: list[Member], weights: list[float], targets: dict, labels: LabelSpace,
                      ) -> tuple[dict[str, dict], list[float] | None]:
    """The ensemble's metrics per split; multi-label thresholds tuned on its validation probabilities, as the
    recipe tunes a single run's."""
    probs = {split: combine([m.probs[split] for m in members], weights) for split in members[0].probs}
    thresholds = None
    if labels.multi_label:
        from tuneforge.evaluation.metrics import tune_thresholds

        thresholds = tune_thresholds(targets["validation"].numpy().astype(int), probs["validation"])
    return {split: split_metrics(p, targets[split], labels, thresholds) for split, p in probs.items()}, thresholds


def split_metrics(probs: np.ndarray, targets, labels: LabelSpace, thresholds: list[float] | None) -> dict:
    metrics = score(probs, targets, labels, thresholds)
    metrics["loss"] = loss_from_probs(probs, targets, labels)
    return metrics


def table_rows(members: list[Member], weights: list[float], evaluation: dict, targets: dict,
               labels: LabelSpace) -> list[dict]:
    """One row per member (scored with its own thresholds), then the ensemble: weight and headline metrics."""
    rows = []
    for member, weight in zip(members, weights, strict=True):
        scores = {split: split_metrics(p, targets[split], labels, member.folder.meta.get("thresholds"))
                  for split, p in member.probs.items()}
        rows.append({"model": member.name, "run": str(member.run_dir), "weight": weight,
                     **{split: _headline(m) for split, m in scores.items()}})
    rows.append({"model": "ensemble", "weight": 1.0, **{split: _headline(m) for split, m in evaluation.items()}})
    return rows


def _headline(metrics: dict) -> dict:
    return {key: float(metrics[key]) for key in ("accuracy", "macro_f1", "loss") if key in metrics}


def format_table(rows: list[dict]) -> str:
    """Members beside the ensemble: accuracy, macro-F1 and log-loss on validation and test, and each weight."""
    splits = [split for split in SPLITS if split in rows[-1]]
    header = ["model", "weight"] + [f"{split} {name}" for split in splits for name in ("accuracy", "macro-F1",
                                                                                      "log-loss")]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for row in rows:
        cells = [row["model"], f"{row['weight']:.3f}" if row["model"] != "ensemble" else ""]
        for split in splits:
            cells += [f"{row[split].get(key, float('nan')):.4f}" for key in ("accuracy", "macro_f1", "loss")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the folder


def check_out(out: Path, members: list[Member], force: bool) -> None:
    """``out`` is new or empty, or (with ``force``) an earlier ensemble; never a member or another run."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out}: a file; choose a folder for the ensemble")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise RunError(f"{out} is not empty; pass --force to replace an earlier ensemble there")
    resolved = out.resolve()
    if not is_ensemble_folder(out) or any(resolved == m.run_dir or resolved in m.run_dir.parents for m in members):
        raise RunError(f"{out}: --force replaces only an earlier ensemble folder, never a run or another folder; "
                       "choose another --out")


def ensemble_meta(first: dict, members: list[Member], weights: list[float], weighting: str,
                  thresholds: list[float] | None, out: Path) -> dict:
    """The first member's tuneforge.json (labels, lengths, columns: shared by every member) with the ensemble's
    own thresholds and its ``ensemble`` entry."""
    model_dir = (out / "model").resolve()
    meta = {key: value for key, value in first.items() if key not in _MEMBER_ONLY}
    return meta | {"method": f"ensemble of {len(members)}", "adapter": False, "thresholds": thresholds,
                   ENSEMBLE_KEY: {"members": [_relative(m.run_dir, model_dir) for m in members],
                                  "weights": [float(w) for w in weights],
                                  "combine": "mean" if weighting == "equal" else "fitted"}}


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (a tree moved whole keeps working), else absolute (another drive)."""
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:
        return str(path)


def _write_folder(out: Path, meta: dict, metrics: dict, rows: list[dict], members: list[Member], task: Task) -> None:
    """Written beside ``out`` and renamed into place: a failure never leaves half an ensemble."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / "model").mkdir()
        write_meta(staging / "model", meta)
        shutil.copy(members[0].run_dir / "config.yaml", staging / "config.yaml")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        _write_report(staging, out, metrics, rows, members, task)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_report(folder: Path, out: Path, metrics: dict, rows: list[dict], members: list[Member],
                  task: Task) -> None:
    from tuneforge.evaluation.plots import plot_confusion_matrix
    from tuneforge.evaluation.report import write_report

    splits, combine_how = members[0].splits, metrics["ensemble"]["combine"]
    headline = metrics.get("test") or metrics["validation"]
    images = {}
    if "confusion_matrix" in headline:
        images["Confusion matrix"] = str(plot_confusion_matrix(headline["confusion_matrix"], metrics["labels"],
                                                               folder / "confusion_matrix.png"))
    summary = {"task": task.name, "members": ", ".join(m.name for m in members),
               "weights": ("fitted on the validation split (log-loss)" if combine_how == "fitted" else "equal")
               + ": " + ", ".join(f"{w:.3f}" for w in metrics["ensemble"]["weights"]),
               "data": ", ".join(f"{k}: {v}" for k, v in splits.sources.items()),
               "examples": f"validation {len(splits.validation):,}, test {len(splits.test):,}"}
    weights_flag = "equal" if combine_how == "mean" else "fitted"
    usage = [f"tuneforge ensemble {' '.join(str(m.run_dir) for m in members)} --weights {weights_flag} "
             f"--out {out} --force   # the same ensemble again", *task.usage(out),
             f"tuneforge distill {out}   # one model trained on the ensemble's outputs"]
    sections = {"Members and ensemble": format_table(rows)
                + ("\n\nFitted weights never score a worse validation log-loss than equal ones, but validation "
                   "figures of fitted weights are optimistic: judge on the test split." if combine_how == "fitted"
                   else ""),
                "Reproduce and use": "\n".join(["```bash", *usage, "```"])}
    write_report(folder / "report.md", title=f"tuneforge ensemble {out.name}", summary=summary, metrics=headline,
                 data_warnings=list(splits.warnings), images=images, extra_sections=sections)


# --------------------------------------------------------------------------- several seeds, then the ensemble


def train_seeds(config: Config, count: int, progress: bool = True) -> Ensemble | None:
    """``count`` runs of ``config`` with seeds seed, seed+1, ... on one split (``data.split_seed``: the config's,
    else its seed), then their ensemble with fitted weights in ``<output.dir>/<name>-ensemble-<timestamp>``.
    Returns None in the processes of a multi-process run that do not write."""
    from tuneforge.api import train

    if count < 2:
        raise ConfigError(f"--seeds {count}: an ensemble needs at least 2 runs")
    base, name = config.seed, config.name
    split_seed = config.data.split_seed if config.data.split_seed is not None else base
    runs = []
    for i in range(count):
        raw = config.to_dict()
        raw["seed"], raw["name"] = base + i, f"{name}-seed{base + i}"
        raw["data"]["split_seed"] = split_seed
        if progress:
            print(f"[{i + 1}/{count}] seed {base + i} (split seed {split_seed}): training...", file=sys.stderr)
        runs.append(train(raw).dir)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under torchrun one process builds the ensemble
        return None
    if progress:
        print(f"ensemble of {count} runs: fitting weights on the validation split...", file=sys.stderr)
    return build_ensemble(runs, Path(config.output.dir) / ensemble_name(name), "fitted")


# --------------------------------------------------------------------------- export


def export_ensemble(run: str | Path, fmt: str, out: Path | None = None, force: bool = False) -> Path:
    """Every member exported in ``fmt`` into ``out/members/<i>/``, plus the ensemble's tuneforge.json at ``out``
    (default ``ENSEMBLE/export-<fmt>``): a folder ``tuneforge.load``, predict, eval and serve take like the
    ensemble."""
    from tuneforge.compression.export import FORMATS, check_replaceable, default_output, export

    if fmt == "merged":
        raise ConfigError(f"--format merged: {run} is an ensemble, several models that no single set of weights "
                          "holds; export it as onnx, onnx-int8 or int8 (each member), or distil it into one model "
                          f"first: tuneforge distill {run}")
    if fmt not in FORMATS:
        raise ConfigError(f"--format: unknown format '{fmt}'; an ensemble exports as onnx, onnx-int8 or int8")
    folder, task = open_run(run)
    if fmt not in task.exports:
        raise ConfigError(f"--format {fmt}: the members are {task.name} runs, which do not export as {fmt}; an "
                          "ensemble exports its members as onnx, onnx-int8 or int8 where their task does")
    if folder.format != "pytorch":
        raise ConfigError(f"--format {fmt}: {run} is already an {folder.format} export of an ensemble; export the "
                          f"ensemble it came from ({folder.meta.get('exported_from', 'its run')})")
    out = Path(out) if out else default_output(folder.model_dir, f"export-{fmt}")
    check_replaceable(out, folder.model_dir, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        entries = []
        for i, member in enumerate(folder.members):
            export(member, fmt, staging / "members" / str(i))
            entries.append(f"members/{i}")
        spec = folder.meta[ENSEMBLE_KEY] | {"members": entries}
        write_meta(staging, folder.meta | {"format": fmt, "exported_from": str(folder.model_dir), ENSEMBLE_KEY: spec})
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
