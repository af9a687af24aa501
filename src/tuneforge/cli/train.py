"""``tuneforge train``, ``quickstart`` and ``compare``, and the summary printed after a run finishes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneforge.cli.common import OVERRIDES_HELP, output_folder, positive, split_list
from tuneforge.errors import RunError, TuneforgeError


def add_parser(subparsers) -> None:
    """The training commands and their arguments."""
    p = subparsers.add_parser("train", help="train from a YAML config")
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN_OR_CHECKPOINT",
                   help="continue exactly from the latest intact checkpoint (of the newest run of this config, "
                        "or of the given run directory / checkpoint folder); KEY=VALUE after a bare --resume is an "
                        "override")
    p.add_argument("--resume-force", action="store_true",
                   help="resume even if the config changed data, model, method or batch settings")
    p.add_argument("--seeds", type=positive, metavar="N",
                   help="train N runs (seeds seed, seed+1, ... on one split: data.split_seed, else seed), then "
                        "their ensemble with weights fitted on validation (<output.dir>/<name>-ensemble-<time>)")
    p.set_defaults(handler=train)

    p = subparsers.add_parser("quickstart",
                              help="the main job: LoRA on minilm-l6 over rt-sentences, a few minutes on CPU")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    p.set_defaults(handler=quickstart)

    p = subparsers.add_parser("compare", help="train one config with several methods and tabulate the results")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + "; applied to every method")
    p.add_argument("--methods", default="full,freeze,topk,lora,adalora,ia3,prefix_tuning,prompt_tuning,adapter",
                   help="comma-separated methods (default: all nine)")
    p.add_argument("--set", action="append", metavar="METHOD:KEY=VALUE",
                   help="an override for one method only, e.g. full:train.lr=5e-5 (repeatable)")
    p.add_argument("--out", help="output folder (default: <output.dir>/compare-<name>-<timestamp>)")
    p.set_defaults(handler=compare)


def train(args: argparse.Namespace) -> int:
    """``tuneforge train CONFIG [overrides] [--resume [RUN]]``."""
    from tuneforge.api import train as train_config
    from tuneforge.config import load_config

    config = load_config(args.config, args.overrides)
    if args.seeds is not None:
        return train_seeds(config, args)
    if args.resume is not None:
        check_resume(config, args.resume, args.resume_force)
    report_run(train_config(config, resume=args.resume, resume_force=args.resume_force))
    return 0


def train_seeds(config, args: argparse.Namespace) -> int:
    """``tuneforge train CONFIG --seeds N``: N runs on one split, then their ensemble and its table."""
    from tuneforge.experiments.ensemble import train_seeds as train_and_combine

    if args.seeds < 2:
        raise TuneforgeError(f"--seeds {args.seeds}: an ensemble needs at least 2 runs; train one run without "
                             "--seeds, or pass --seeds 2 or more")
    if args.resume is not None or args.resume_force:
        raise TuneforgeError("--resume with --seeds: resume the unfinished seed's run on its own (tuneforge train "
                             "RUN/config.yaml --resume RUN), then combine the runs: tuneforge ensemble RUN RUN ...")
    ensemble = train_and_combine(config, args.seeds)
    if ensemble is not None:
        show_ensemble(ensemble)
    return 0


def show_ensemble(ensemble) -> None:
    """The members beside the ensemble, then the ensemble like a finished run (metrics, paths, next commands)."""
    from tuneforge.experiments.ensemble import format_table
    from tuneforge.runs import Run

    print(format_table(ensemble.rows))
    report_run(Run(ensemble.dir, ensemble.metrics))


def check_resume(config, resume: str, force: bool) -> None:
    """What ``--resume`` points at, checked before the data and the model load: a wrong path, no checkpoint to
    resume or a changed config fails in a second, not minutes later."""
    from tuneforge.runs import find_resume_point

    if resume != "latest" and not Path(resume).exists():
        raise RunError(f"--resume {resume}: no such run directory or checkpoint folder; give a run directory, or "
                       "--resume alone for the newest run of this config")
    find_resume_point(config, resume, force)


def quickstart(args: argparse.Namespace) -> int:
    """``tuneforge quickstart``: the embedded default config."""
    from tuneforge.api import train as train_config
    from tuneforge.config import load_config

    print("tuneforge quickstart: LoRA fine-tuning of minilm-l6 on rt-sentences (sentiment)", file=sys.stderr)
    report_run(train_config(load_config(None, args.overrides)))
    return 0


def compare(args: argparse.Namespace) -> int:
    """``tuneforge compare``: one config, several methods; exit 1 when any method failed."""
    from tuneforge.experiments.compare import compare as compare_methods
    from tuneforge.experiments.compare import format_table

    per_method: dict[str, list[str]] = {}
    for item in args.set or []:
        method, sep, override = item.partition(":")
        if not sep or "=" not in override:
            raise TuneforgeError(f"--set {item}: expected METHOD:KEY=VALUE, e.g. full:train.lr=5e-5")
        per_method.setdefault(method.strip(), []).append(override)
    result = compare_methods(args.config, split_list(args.methods), args.overrides, output_folder(args.out),
                             method_overrides=per_method)
    print(format_table(result.rows, result.metric))
    print(f"\ncomparison: {result.dir}/comparison.md (+ .csv, .png)")
    return 0 if all(not row.get("error") for row in result.rows) else 1


def report_run(run) -> None:
    """The held-out metrics, where the run is, and the commands that use it next (its task's usage lines)."""
    from accelerate import PartialState

    from tuneforge.evaluation.metrics import format_metrics_table
    from tuneforge.tasks import TASKS

    if not PartialState().is_main_process:  # under torchrun every process returns; one reports
        return

    split = "test" if "test" in run.metrics else "validation"
    print(f"\n{split} metrics:\n{format_metrics_table(run.metrics[split])}")
    if "by_shots" in run.metrics:
        shots = ", ".join(f"k={k}: {m['accuracy']:.4f}" for k, m in run.metrics["by_shots"].items())
        print(f"accuracy by in-context examples: {shots}")
    print(f"\nrun directory: {run.dir}")
    print(f"report:        {run.report}")
    task = run.metrics.get("task")
    usage = TASKS.get(task).usage(run.dir) if task in TASKS else []
    if usage:
        print("next:")
        for line in usage:
            print(f"  {line}")
