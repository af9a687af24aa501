"""Issue 19's table: what augmentation, adversarial training, bottleneck adapters and ensembles buy on rt-sentences.

    python bench/low_data.py                      # every part (about 40 min on 2 cores, alone)
    python bench/low_data.py --parts augment      # one part: augment, adversarial, adapters, ensemble, cost
    python bench/low_data.py --seeds 2            # fewer seeds (the low-data targets are judged on 3)
    python bench/low_data.py --full-seeds 3 --adapter-seeds 3   # more seeds for the full-set FGM and adapter rows

minilm-l6 + LoRA (the quickstart), rt-sentences with its usual seeded 80/10/10 split (validation 1,057 and test
1,057 sentences). Every figure is a mean over seeds: one run's noise on 1,057 test sentences is about +-1 point.

- augment: 200 labelled training sentences (a seeded, class-balanced sample per seed), plain vs data.augment.
- adversarial: the full training set, plain vs FGM; clean test accuracy and accuracy on the test set after
  keyboard typos (`tuneforge eval --perturb typos`, rate 0.1, the same noise for every model).
- adapters: the full training set, LoRA r 8 vs bottleneck adapters (Pfeiffer and Houlsby), parameter counts.
- ensemble: the plain full-set runs as members of a fitted ensemble; a 3-layer student distilled from it.
- cost: seconds per epoch of each technique against plain training, measured back to back in this invocation.

Results go to bench/results/low_data.json (each part updates its own key) and a Markdown table is printed.
Run benchmarks alone: a second torch process on these cores slows both far more than twice.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tuneforge
from tuneforge.config import load_config
from tuneforge.data.splits import load_splits

RESULTS = Path(__file__).resolve().parent / "results" / "low_data.json"
SPLIT_SEED = 42  # the quickstart's split: the same validation and test sentences for every run
LOW_DATA = 200
AUGMENT = {"synonym": 0.1, "insert": 0.1, "swap": 0.1, "delete": 0.1, "probability": 0.8}  # EDA's alpha 0.1
AUGMENT_VARIANTS = {"augmented (EDA, 0.1)": AUGMENT,
                    "augmented (synonyms 0.2 + insert 0.1)": {"synonym": 0.2, "insert": 0.1, "probability": 1.0}}
LOW_DATA_TRAIN = {"epochs": 15, "batch_size": 16}
LOW_DATA_EVAL = {"every": 39}  # every 3 epochs: 1,057 validation sentences cost more than 3 epochs of 200
FGM = {"method": "fgm", "epsilon": 0.02}  # 2% of each example's embedding norm (the default)
# Adapters want a larger step than LoRA: a 200-step probe on 1,057 training rows gave validation accuracy 0.780 at
# lr 1e-3 and 0.810 at 3e-3 (Pfeiffer), LoRA 0.806 at its 1e-3.
ADAPTER_LR = 3e-3
PARTS = ("augment", "adversarial", "ensemble", "cost", "adapters")


def base_config(out: Path, seed: int, **sections) -> dict:
    config = load_config(None).to_dict()  # the quickstart: minilm-l6, LoRA r 8, 3 epochs, lr 1e-3
    config |= {"name": "bench", "seed": seed}
    config["data"]["split_seed"] = SPLIT_SEED
    config["output"] |= {"dir": str(out), "progress": False, "tensorboard": False}
    for key, value in sections.items():
        config[key] = config.get(key, {}) | value if isinstance(config.get(key), dict) else value
    return config


def train(config: dict):
    """A finished run of ``config`` (same folder, seed and settings) left by an earlier, interrupted invocation,
    else a new one."""
    earlier = _finished(config)
    if earlier is not None:
        return earlier
    started = time.perf_counter()
    run = tuneforge.train(copy.deepcopy(config))
    run.wall = time.perf_counter() - started
    return run


def _finished(config: dict):
    import types

    import yaml

    folder = Path(config["output"]["dir"])
    for run_dir in sorted(folder.glob(f"{config['name']}-*")) if folder.is_dir() else []:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else None
        if saved and (run_dir / "metrics.json").is_file() and _same(saved, config):
            metrics = json.loads((run_dir / "metrics.json").read_text())
            print(f"reusing {run_dir}", file=sys.stderr)
            return types.SimpleNamespace(dir=run_dir, metrics=metrics, wall=metrics["fit"]["train_seconds"])
    return None


def _same(saved: dict, wanted: dict) -> bool:
    keys = ("seed", "method", "train", "data")
    saved, wanted = _without_idle_settings(saved), _without_idle_settings(_resolved(wanted))
    return all(json.dumps(saved.get(k), sort_keys=True) == json.dumps(wanted.get(k), sort_keys=True) for k in keys)


def _without_idle_settings(config: dict) -> dict:
    """Settings of a technique that is off do not make runs differ (their defaults may have changed since)."""
    config = copy.deepcopy(config)
    if not (config["train"].get("adversarial") or {}).get("method"):
        config["train"].pop("adversarial", None)
    return config


def _resolved(config: dict) -> dict:
    from tuneforge.config import config_from_dict

    return config_from_dict(copy.deepcopy(config), "bench").to_dict()


def typo_accuracy(run_dir: Path, texts: list[str], labels: list[str]) -> float:
    """Accuracy on the test sentences after keyboard typos, exactly as `eval --perturb typos` draws them."""
    from tuneforge.tasks.robustness import DEFAULT_RATE, perturb_items

    model = tuneforge.load(run_dir)
    noisy = perturb_items(texts, "typos", DEFAULT_RATE)
    predicted = [p.label for p in model.predict(noisy)]
    return sum(p == gold for p, gold in zip(predicted, labels, strict=True)) / len(labels)


def figures(run, test_texts=None, test_labels=None) -> dict:
    fit = run.metrics["fit"]
    row = {"accuracy": run.metrics["test"]["accuracy"], "run": str(run.dir), "wall_s": round(run.wall, 1),
           "samples_per_s": fit["train_samples_per_second"], "trainable": run.metrics.get("trainable_parameters")}
    if test_texts is not None:
        row["typos_accuracy"] = typo_accuracy(run.dir, test_texts, test_labels)
    return row


# --------------------------------------------------------------------------- the parts


def part_augment(out: Path, seeds: int) -> dict:
    """200 labels: plain vs augmented, each seed its own class-balanced sample."""
    splits = load_splits(load_config(None).data, SPLIT_SEED)
    variants = {"plain": None, **AUGMENT_VARIANTS}
    rows = {name: [] for name in variants}
    for seed in range(seeds):
        sample = _balanced_sample(splits.train, LOW_DATA, seed)
        files = _write_split_files(out / f"data-{seed}", sample, splits.validation, splits.test)
        data = {"dataset": None, **files}
        for variant, augment in variants.items():
            extra = {"augment": augment} if augment else {}
            run = train(base_config(out / f"v{list(variants).index(variant)}", seed, data=data | extra,
                                    train=LOW_DATA_TRAIN, eval=LOW_DATA_EVAL))
            rows[variant].append(figures(run))
            print(f"augment part, seed {seed}, {variant}: test accuracy {rows[variant][-1]['accuracy']:.4f}",
                  file=sys.stderr)
    return rows


def part_adversarial(out: Path, seeds: int, fgm_seeds: int, texts, labels) -> dict:
    """Plain runs for ``seeds`` seeds (they are the ensemble's members too), FGM for the first ``fgm_seeds``."""
    rows = {"plain": [], "fgm": []}
    for seed in range(seeds):
        for variant in rows:
            if variant == "fgm" and seed >= fgm_seeds:
                continue
            extra = {"adversarial": FGM} if variant == "fgm" else {}
            run = train(base_config(out / variant, seed, train=extra))
            rows[variant].append(figures(run, texts, labels))
            print(f"adversarial part, seed {seed}, {variant}: {rows[variant][-1]}", file=sys.stderr)
    return rows


def part_adapters(out: Path, seeds: int, lora: list[dict]) -> dict:
    """LoRA r 8 (the adversarial part's plain runs, when present) against both adapter placements."""
    variants = {"adapter pfeiffer": {"name": "adapter", "placement": "pfeiffer"},
                "adapter houlsby": {"name": "adapter", "placement": "houlsby"}}
    if len(lora) < seeds:
        variants = {"lora r8": {"name": "lora"}, **variants}
    rows = {"lora r8": [] if "lora r8" in variants else lora[:seeds]} | {name: [] for name in variants}
    for seed in range(seeds):
        for name, method in variants.items():
            config = base_config(out / name.replace(" ", "-"), seed)
            config["method"] = method
            if method["name"] == "adapter":
                config["train"]["lr"] = ADAPTER_LR
            rows[name].append(figures(train(config)))
            print(f"adapters part, seed {seed}, {name}: {rows[name][-1]}", file=sys.stderr)
    return rows


def part_ensemble(out: Path, seeds: int, members: list[str] | None) -> dict:
    from tuneforge.experiments.ensemble import build_ensemble

    if not members:
        members = [figures(train(base_config(out / "members", seed)))["run"] for seed in range(seeds)]
    member_rows = [{"run": m, "accuracy": _test_accuracy(Path(m))} for m in members]
    ensemble = build_ensemble([Path(m) for m in members], out / "ensemble", weighting="fitted").dir
    ensemble_accuracy = _test_accuracy(ensemble)
    started = time.perf_counter()
    from tuneforge.compression.distill import distill

    student = distill(ensemble, None, ["output.progress=false", "output.tensorboard=false", f"output.dir={out}"])
    return {"members": member_rows, "ensemble": {"run": str(ensemble), "accuracy": ensemble_accuracy},
            "student": {"run": str(student.dir), "accuracy": student.metrics["test"]["accuracy"],
                        "wall_s": round(time.perf_counter() - started, 1)}}


def part_cost(out: Path) -> dict:
    """One epoch-equivalent of each technique, back to back: seconds per epoch and the ratio to plain."""
    variants = {"plain": {}, "augment": {"data": {"augment": AUGMENT}},
                "fgm": {"train": {"adversarial": FGM}},
                "pgd (3 steps)": {"train": {"adversarial": {"method": "pgd", "steps": 3}}},
                "adapter pfeiffer": {"method": {"name": "adapter", "placement": "pfeiffer"}}}
    rows = {}
    for name, sections in variants.items():
        config = base_config(out / "cost", 0, train={"max_steps": 80, "epochs": 1}, eval={"every": 1000})
        for key, value in sections.items():
            config[key] = value if key == "method" else config[key] | {
                k: (config[key].get(k, {}) | v if isinstance(v, dict) else v) for k, v in value.items()}
        run = train(config)
        per_epoch = 8454 / run.metrics["fit"]["train_samples_per_second"]
        rows[name] = {"seconds_per_epoch": round(per_epoch, 1)}
    plain = rows["plain"]["seconds_per_epoch"]
    for row in rows.values():
        row["vs_plain"] = round(row["seconds_per_epoch"] / plain, 2)
    return rows


# --------------------------------------------------------------------------- data and output


def _balanced_sample(rows: list, count: int, seed: int) -> list:
    rng = random.Random(seed)
    by_label: dict[str, list] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    per_label = count // len(by_label)
    return [row for label in sorted(by_label) for row in rng.sample(by_label[label], per_label)]


def _write_split_files(folder: Path, train, validation, test) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((row.text, row.label) for row in rows)
        files[f"{name}_file"] = str(path)
    return files


def _test_accuracy(run_dir: Path) -> float:
    return json.loads((Path(run_dir) / "metrics.json").read_text())["test"]["accuracy"]


def _mean(rows: list[dict], key: str) -> float:
    return statistics.mean(row[key] for row in rows)


def table(results: dict) -> str:
    lines = ["| part | variant | test accuracy (mean) | typos accuracy | per seed |", "|---|---|---:|---:|---|"]
    for part in ("augment", "adversarial", "adapters"):
        for variant, rows in results.get(part, {}).items():
            typos = f"{_mean(rows, 'typos_accuracy'):.4f}" if rows and "typos_accuracy" in rows[0] else ""
            seeds = ", ".join(f"{row['accuracy']:.4f}" for row in rows)
            lines.append(f"| {part} | {variant} | {_mean(rows, 'accuracy'):.4f} | {typos} | {seeds} |")
    ensemble = results.get("ensemble")
    if ensemble:
        best = max(m["accuracy"] for m in ensemble["members"])
        lines.append(f"| ensemble | {len(ensemble['members'])} members (best {best:.4f}) | "
                     f"{ensemble['ensemble']['accuracy']:.4f} | | |")
        lines.append(f"| ensemble | distilled 3-layer student | {ensemble['student']['accuracy']:.4f} | | |")
    for name, row in results.get("cost", {}).items():
        lines.append(f"| cost | {name} | {row['seconds_per_epoch']} s/epoch | {row['vs_plain']}x plain | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the 200-label runs and of the plain "
                        "full-set runs (the ensemble's members)")
    parser.add_argument("--full-seeds", type=int, default=2, help="seeds of the FGM runs on the full set")
    parser.add_argument("--adapter-seeds", type=int, default=1, help="seeds of each adapter placement")
    parser.add_argument("--out", help="folder for the runs (default: a temporary folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="tuneforge-low-data-"))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    test = load_splits(load_config(None).data, SPLIT_SEED).test
    texts, labels = [r.text for r in test], [r.label for r in test]
    for part in args.parts.split(","):
        started = time.perf_counter()
        if part == "augment":
            results[part] = part_augment(out / part, args.seeds)
        elif part == "adversarial":
            results[part] = part_adversarial(out / part, args.seeds, args.full_seeds, texts, labels)
        elif part == "adapters":
            plain = [row for row in results.get("adversarial", {}).get("plain", []) if Path(row["run"]).is_dir()]
            results[part] = part_adapters(out / part, args.adapter_seeds, plain)
        elif part == "ensemble":
            plain = results.get("adversarial", {}).get("plain", [])
            members = [row["run"] for row in plain if Path(row["run"]).is_dir()]
            results[part] = part_ensemble(out / part, args.seeds, members)
        elif part == "cost":
            results[part] = part_cost(out / part)
        else:
            parser.error(f"unknown part {part}; choose from {', '.join(PARTS)}")
        print(f"part {part}: {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
