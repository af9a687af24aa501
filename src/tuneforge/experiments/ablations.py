"""The paper's ablations of a Frozen config, trained one by one and reported side by side.

Each variant is the config plus a few overrides; it trains in its own spawned process (as
``tuneforge compare`` does, so one failure costs one row), then is scored here on the same held-out
pairs and the same binding episodes as the others.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tuneforge.config import Config, apply_overrides, config_from_dict
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.experiments.compare import base_config, empty_output_dir, run_isolated, say
from tuneforge.tasks import TASKS

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "frozen": ("the config as given (frozen LM, ImageNet vision encoder)", []),
    "blind": ("images blanked in training and test (train-blind)", ["frozen.blind=true"]),
    "finetune_lm": ("language model trained too (frozen.lm_lr)", ["frozen.finetune_lm=true"]),
    "prefix_1": ("n = 1 prefix embedding", ["frozen.prefix_length=1"]),
    "prefix_4": ("n = 4 prefix embeddings", ["frozen.prefix_length=4"]),
    "scratch": ("vision encoder from random initialisation", ["frozen.vision_pretrained=false"]),
    "interleaved": ("beyond the paper: also trained to recall captions of repeated images in context",
                    ["frozen.interleaved=2"]),
}


def ablate(config: Config | dict | str | Path, variants: list[str], overrides: list[str] | None = None,
           out: Path | None = None, episodes: int | None = None, progress: bool = True) -> Path:
    """Train and evaluate every variant; writes ablations.md/.csv/.json into ``out`` and returns it."""
    base = base_config(config, overrides)
    if not TASKS.get(base.task).prompts_with_images:
        raise ConfigError(f"ablate runs Frozen ablations; the config's task is '{base.task}', not frozen")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"unknown variants {unknown or '(none given)'}; choose from {', '.join(VARIANTS)}")
    configs = {}
    for name in dict.fromkeys(variants):
        raw = apply_overrides(base.to_dict(), VARIANTS[name][1])
        raw["name"] = f"{base.name}-{name}"
        config_from_dict(raw, f"variant '{name}'")  # fail before anything trains
        configs[name] = raw
    out = empty_output_dir(out, base, "ablate")
    rows = []
    for i, (name, raw) in enumerate(configs.items(), 1):
        say(progress, f"[{i}/{len(configs)}] {name}: training...")
        trained = run_isolated(raw, name, "perplexity")
        row = {"variant": name, "what": VARIANTS[name][0], **trained}
        if not trained.get("error"):
            try:
                row["binding"] = _binding(trained["run_dir"], episodes, progress)
            except TuneforgeError as error:  # this row loses its binding columns, not the whole ablation
                row["binding_error"] = str(error)
        rows.append(row)
        (out / "ablations.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")  # kept as it goes
    _write(out, rows)
    return out


def _binding(run_dir: str, episodes: int | None, progress: bool) -> list[dict]:
    from tuneforge.tasks.frozen.evaluation import evaluate_run

    results, _ = evaluate_run(run_dir, episodes=episodes, progress=progress)
    return results.get("binding", {}).get("rows", [])


def _write(out: Path, rows: list[dict]) -> None:
    cells = sorted({(b["ways"], b["shots"]) for r in rows for b in r.get("binding", []) if "accuracy" in b})
    header = ["variant", "held-out caption perplexity", *[f"{n}-way {k}-shot" for n, k in cells],
              "trainable parameters", "wall (s)"]
    table = []
    for row in rows:
        if row.get("error"):
            table.append([row["variant"], f"failed: {' '.join(str(row['error']).split())}"] + [""] * (len(header) - 2))
            continue
        binding = {(b["ways"], b["shots"]): b for b in row.get("binding", []) if "accuracy" in b}
        table.append([row["variant"], f"{row['metric_value']:.2f}",
                      *[f"{binding[c]['accuracy']:.3f} [{binding[c]['ci_low']:.2f}, {binding[c]['ci_high']:.2f}]"
                        if c in binding else "" for c in cells],
                      f"{row['trainable_parameters']:,}", f"{row['wall_seconds']:.0f}"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in table]
    notes = "\n".join(f"- **{r['variant']}**: {r['what']}" for r in rows)
    (out / "ablations.md").write_text("# Frozen ablations\n\n" + "\n".join(lines) + "\n\nBinding cells: accuracy "
                                      "[95% interval].\n\n" + notes + "\n", encoding="utf-8")
    with (out / "ablations.csv").open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([header, *table])

