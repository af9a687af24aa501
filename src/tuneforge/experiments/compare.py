"""Method comparison: one config trained once per method, on the same data and seed, in one table.

Each method trains in a fresh spawned process, for two reasons. Peak memory is a high-water mark that
never goes down, so runs sharing a process would all report the largest one; and a method that does
not fit the model, a crash or an out-of-memory kill then costs its own row, not the whole comparison.
The child measures itself (wall time around ``train``, its own peak RSS) and sends back one small dict.
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tuneforge.config import Config, apply_overrides, config_from_dict, load_config
from tuneforge.errors import ConfigError, RegistryError, TuneforgeError

COLUMNS = ("method", "metric", "metric_value", "split", "trainable_parameters", "total_parameters",
           "peak_rss_mb", "wall_seconds", "samples_per_second", "steps", "run_dir", "error")
_LOWER_IS_BETTER = ("loss", "perplexity")


@dataclass
class Comparison:
    """A finished comparison: its folder, one row per method (``COLUMNS``) and the metric compared."""

    dir: Path
    rows: list[dict]
    metric: str


def compare(config: Config | dict | str | Path | None, methods: list[str], overrides: list[str] | None = None,
            out: Path | None = None, progress: bool = True,
            method_overrides: dict[str, list[str]] | None = None) -> Comparison:
    """Train ``config`` once per method and write comparison.md/.csv/.json/.png into ``out``.

    ``method_overrides`` apply to one method only (methods differ in their best learning rate:
    ``{"full": ["train.lr=5e-5"]}``).

    ``out`` defaults to ``<output.dir>/compare-<name>-<timestamp>``; the runs themselves go to
    ``output.dir`` as usual, named ``<name>-<method>``. A failing method gets a row with its error.

    Raises:
        ConfigError: an unknown method name or a config that does not load, before anything runs.
        TuneforgeError: ``out`` exists and is not empty.
    """
    base = base_config(config, overrides)
    method_overrides = method_overrides or {}
    unknown = sorted(set(method_overrides) - set(methods))
    if unknown:
        raise ConfigError(f"settings given for methods not compared: {', '.join(unknown)}")
    configs = {method: _method_config(base, method, method_overrides.get(method, []))
               for method in dict.fromkeys(methods)}
    if not configs:
        raise ConfigError("no methods to compare; pass e.g. --methods full,freeze,lora")
    out = empty_output_dir(out, base, "compare")
    rows = []
    for i, (method, raw) in enumerate(configs.items(), 1):
        say(progress, f"[{i}/{len(configs)}] {method}: training...")
        rows.append(run_isolated(raw, method, base.eval.metric))
        say(progress, f"[{i}/{len(configs)}] {_describe(rows[-1])}")
    metric = next((r["metric"] for r in rows if r.get("metric")), base.eval.metric or "accuracy")
    _write_outputs(out, base, rows, metric)
    return Comparison(out, rows, metric)


def empty_output_dir(out: Path | None, base: Config, kind: str) -> Path:
    """``out`` (default ``<output.dir>/<kind>-<name>-<timestamp>``), created; never one holding earlier results."""
    out = Path(out) if out else Path(base.output.dir) / f"{kind}-{base.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        raise TuneforgeError(f"{out} exists and is not empty; pass another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def format_table(rows: list[dict], metric: str) -> str:
    """A markdown table of the rows; a failed method shows its error in the metric column."""
    lines = [f"| method | {metric} | trainable parameters | peak RSS (MB) | wall (s) | samples/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row.get("error"):
            error = " ".join(str(row["error"]).split()).replace("|", "\\|")
            lines.append(f"| {row['method']} | failed: {error} | | | | |")
            continue
        lines.append(f"| {row['method']} | {_value(row)} | {_params(row)} | "
                     f"{row['peak_rss_mb']:,.0f} | {row['wall_seconds']:.1f} | {row['samples_per_second']:.1f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- configs


def base_config(config: Config | dict | str | Path | None, overrides: list[str] | None) -> Config:
    if isinstance(config, Config):
        config = config.to_dict()
    if isinstance(config, dict):
        return config_from_dict(apply_overrides(config, overrides or []), "config")
    return load_config(config, overrides)


def _method_config(base: Config, method: str, overrides: list[str]) -> dict:
    """The base config with ``method`` swapped in (its own settings if the base uses it, else defaults),
    then this method's own overrides."""
    from tuneforge.methods import METHODS

    try:
        METHODS.get(method)
    except RegistryError as error:
        raise ConfigError(str(error)) from None
    raw = base.to_dict()
    if raw["method"]["name"] != method:
        raw["method"] = {"name": method}  # another method's keys (r, k...) would be unknown keys here
    raw["name"] = f"{base.name}-{method}"
    raw = apply_overrides(raw, overrides)
    config_from_dict(raw, f"config for method '{method}'")  # fail now, not after the other runs
    return raw


# --------------------------------------------------------------------------- one method, one process


def run_isolated(raw: dict, method: str, preferred: str | None) -> dict:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(raw, method, preferred, sender), name=f"tuneforge-{method}")
    process.start()
    sender.close()  # now recv() sees EOF if the child dies without sending
    try:
        row = receiver.recv()
    except EOFError:
        row = None
    process.join()
    if row is None:
        row = {"method": method, "error": f"the training process exited with code {process.exitcode} without "
                                          "reporting (killed, or out of memory?)"}
    return {column: row.get(column) for column in COLUMNS}


def _child(raw: dict, method: str, preferred: str | None, sender) -> None:
    from tuneforge.api import train
    from tuneforge.logging_setup import quiet_libraries

    quiet_libraries()  # a spawned process starts fresh: quiet its library logging as the CLI does

    row: dict = {"method": method}
    start = time.perf_counter()
    try:
        run = train(raw)
        row.update(_measurements(run.metrics, preferred), run_dir=str(run.dir))
    except TuneforgeError as error:
        row["error"] = str(error)
    except Exception as error:  # a bug: keep its traceback on stderr, the row gets one line
        traceback.print_exc()
        row["error"] = f"{type(error).__name__}: {error}"
    row.update(wall_seconds=round(time.perf_counter() - start, 3), peak_rss_mb=round(_peak_rss_mb(), 1))
    sender.send(row)
    sender.close()


def _measurements(metrics: dict, preferred: str | None) -> dict:
    split = "test" if "test" in metrics else "validation"
    values = metrics.get(split, {})
    name = next((n for n in (preferred, "accuracy", "perplexity", "loss") if n and _is_number(values.get(n))), None)
    fit = metrics.get("fit", {})
    return {"split": split, "metric": name, "metric_value": values.get(name),
            "trainable_parameters": metrics.get("trainable_parameters"),
            "total_parameters": metrics.get("total_parameters"),
            "samples_per_second": fit.get("train_samples_per_second"), "steps": fit.get("steps")}


def _peak_rss_mb() -> float:
    """This process's own peak RSS. VmHWM first: ``ru_maxrss`` survives exec, so a spawned child reports
    its parent's peak when that is higher (seen: 813 MB for a 14 MB child)."""
    status = Path("/proc/self/status")
    found = re.search(r"^VmHWM:\s*(\d+) kB", status.read_text(), re.M) if status.is_file() else None
    if found:
        return int(found[1]) / 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# --------------------------------------------------------------------------- outputs


def _write_outputs(out: Path, base: Config, rows: list[dict], metric: str) -> None:
    split = next((r["split"] for r in rows if r.get("split")), "test")
    summary = (f"Data: {base.data.train_file or base.data.dataset}, model: {base.model.name}, seed: {base.seed}; "
               f"metric: {split} {metric}; {_best(rows, metric)}.")
    (out / "comparison.md").write_text(f"# Method comparison: {base.name}\n\n{summary}\n\n"
                                       f"{format_table(rows, metric)}\n\n![comparison](comparison.png)\n",
                                       encoding="utf-8")
    with (out / "comparison.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "comparison.json").write_text(json.dumps({"metric": metric, "split": split, "rows": rows,
                                                     "config": base.to_dict()}, indent=2), encoding="utf-8")
    _plot(rows, f"{split} {metric}", out / "comparison.png")


def _best(rows: list[dict], metric: str) -> str:
    scores = {r["method"]: r["metric_value"] for r in rows if _is_number(r.get("metric_value"))}
    if not scores:
        return "no method finished"
    lower = any(word in metric for word in _LOWER_IS_BETTER)
    top = (min if lower else max)(scores.values())
    best = [method for method, score in scores.items() if score == top]
    tied = " tied" if len(best) > 1 else ""
    return f"best: {', '.join(best)}{tied} ({top:.4f}, {'lower' if lower else 'higher'} is better)"


def _plot(rows: list[dict], title: str, path: Path) -> Path:
    from tuneforge.evaluation.plots import plt, save_figure

    methods = [r["method"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(min(max(12.0, 3 + 2.1 * len(rows)), 24.0), 4.5))
    _bars(axes[0], methods, [r["metric_value"] for r in rows], title, "{:.4f}")
    _bars(axes[1], methods, [r["trainable_parameters"] for r in rows], "trainable parameters (log)", "{:,.0f}",
          log=True)
    _bars(axes[2], methods, [None if r.get("error") else r["wall_seconds"] for r in rows], "wall time (s)",
          "{:.1f}")
    return save_figure(fig, path)


def _bars(ax, methods: list[str], values: list, title: str, fmt: str, log: bool = False) -> None:
    """One bar per method, its value written on top; a method without a value is marked 'failed'."""
    heights = [v if _is_number(v) else 0 for v in values]
    bars = ax.bar(range(len(methods)), heights, color="tab:blue")
    for bar, value in zip(bars, values, strict=True):
        x = bar.get_x() + bar.get_width() / 2
        if _is_number(value):
            ax.annotate(fmt.format(value), (x, value), ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
        else:  # at the foot of the panel: a zero-height bar has no place on a log axis
            ax.text(x, 0.02, "failed", ha="center", color="tab:red", transform=ax.get_xaxis_transform())
    if log and any(h > 0 for h in heights):
        ax.set_yscale("log")
    slant = len(methods) > 4
    ax.set_xticks(range(len(methods)), labels=methods, rotation=30 if slant else 0, ha="right" if slant else "center")
    ax.set_title(title)
    ax.margins(y=0.15)
    ax.grid(True, axis="y", alpha=0.3)


def _value(row: dict) -> str:
    return f"{row['metric_value']:.4f}" if _is_number(row.get("metric_value")) else "n/a"


def _params(row: dict) -> str:
    trainable, total = row.get("trainable_parameters"), row.get("total_parameters")
    if not _is_number(trainable) or not total:
        return "n/a"
    share = 100 * trainable / total
    return f"{trainable:,} ({share:.1f}%)" if share >= 1 else f"{trainable:,} ({share:.2g}%)"


def _describe(row: dict) -> str:
    if row.get("error"):
        return f"{row['method']}: failed: {row['error']}"
    return (f"{row['method']}: {row['split']} {row['metric']} {_value(row)}, {_params(row)} trainable, "
            f"{row['wall_seconds']:.1f} s, peak RSS {row['peak_rss_mb']:,.0f} MB")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def say(enabled: bool, line: str) -> None:
    if enabled:
        print(line, file=sys.stderr, flush=True)
