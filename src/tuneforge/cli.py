"""The ``tuneforge`` command: a thin layer of argument parsing over the Python API.

User mistakes (``TuneforgeError``) print one ``error:`` line and exit with code 2; anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneforge.errors import TuneforgeError

EPILOG = """examples:
  tuneforge quickstart                                  LoRA on minilm-l6 over rt-sentences
  tuneforge train configs/quickstart.yaml train.lr=1e-4 method.r=16
  tuneforge predict runs/quickstart-2026... "a gripping film" "a dull mess"
  tuneforge eval runs/quickstart-2026... --data reviews.csv
  tuneforge init --task text_classification --data reviews.csv > my.yaml
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    if not hasattr(args, "handler"):
        parser.print_help()
        return 1
    try:
        return args.handler(args) or 0
    except TuneforgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    """Keep the terminal for tuneforge's own progress: library load reports and deprecations are noise here."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()


# --------------------------------------------------------------------------- commands


def _train(args: argparse.Namespace) -> int:
    from tuneforge.api import train
    from tuneforge.config import load_config

    config = load_config(args.config, args.overrides)
    _report_run(train(config, resume=args.resume, resume_force=args.resume_force))
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from tuneforge.api import train
    from tuneforge.config import load_config

    print("tuneforge quickstart: LoRA fine-tuning of minilm-l6 on rt-sentences (sentiment)", file=sys.stderr)
    _report_run(train(load_config(None, args.overrides)))
    return 0


def _report_run(run) -> None:
    from accelerate import PartialState

    from tuneforge.evaluation.metrics import format_metrics_table

    if not PartialState().is_main_process:  # under torchrun every process returns; one reports
        return

    split = "test" if "test" in run.metrics else "validation"
    print(f"\n{split} metrics:\n{format_metrics_table(run.metrics[split])}")
    print(f"\nrun directory: {run.dir}")
    print(f"report:        {run.report}")
    print("next:")
    print(f"  tuneforge predict {run.dir} \"an utterly charming film\"")
    print(f"  tuneforge predict {run.dir} --file texts.csv --out predictions.csv")
    print(f"  tuneforge eval {run.dir} --data labelled.csv")


def _predict(args: argparse.Namespace) -> int:
    from tuneforge.api import load
    from tuneforge.tasks.text_io import check_output, read_texts, write_predictions

    if bool(args.texts) == bool(args.file):
        raise TuneforgeError("give either texts to classify or --file FILE (not both, not neither)")
    model = load(args.run)
    if args.file:
        source = Path(args.file)
        out = Path(args.out) if args.out else source.with_suffix(".predictions.csv")
        check_output(out, source, args.force)
        rows, texts = read_texts(source, args.text_column or model.meta["text_column"])
        write_predictions(out, rows, model.predict(texts))
        print(f"wrote {len(texts):,} predictions to {out}")
        return 0
    for text, prediction in zip(args.texts, model.predict(args.texts), strict=True):
        best = max(prediction.probabilities.values())
        shown = prediction.label if isinstance(prediction.label, str) else ", ".join(prediction.label) or "(none)"
        print(f"{shown}\t{best:.3f}\t{text}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from tuneforge.api import load
    from tuneforge.evaluation.metrics import format_metrics_table
    from tuneforge.tasks.text_io import evaluate_file

    model = load(args.run)
    out = Path(args.out) if args.out else None
    metrics, out_dir = evaluate_file(model, Path(args.data), out, args.text_column, args.label_column,
                                     args.on_bad_rows, args.force)
    print(format_metrics_table(metrics))
    print(f"\nreport: {out_dir / 'report.md'}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from tuneforge.api import load
    from tuneforge.runs import open_run

    if not args.merge:
        raise TuneforgeError("nothing to export: pass --merge (more formats come with tuneforge's export issue)")
    model = load(args.run)
    out = Path(args.out) if args.out else open_run(args.run).parent / "merged"
    if out.exists() and any(out.iterdir()) and not args.force:
        raise TuneforgeError(f"{out} is not empty; pass --force to overwrite it")
    model.save_merged(out)
    print(f"wrote a plain transformers model (adapters merged) to {out}")
    print(f"load it with AutoModelForSequenceClassification.from_pretrained('{out}')")
    return 0


def _init(args: argparse.Namespace) -> int:
    from tuneforge.starter import starter_config

    text = starter_config(args.task, Path(args.data))
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            raise TuneforgeError(f"{out} exists; pass --force to overwrite it")
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}; train with: tuneforge train {out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def _list(args: argparse.Namespace) -> int:
    registry = _registry(args.what)
    width = max(len(entry.name) for entry in registry)
    for entry in registry:
        print(f"{entry.name:<{width}}  {entry.description}")
    return 0


def _registry(what: str):
    if what == "models":
        from tuneforge.assets import MODELS as registry
    elif what == "datasets":
        from tuneforge.assets import DATASETS as registry
    elif what == "methods":
        from tuneforge.methods import METHODS as registry
    else:
        from tuneforge.tasks import TASKS as registry
    return registry


def _config(args: argparse.Namespace) -> int:
    from tuneforge.config import config_markdown, describe_fields

    if args.markdown:
        print(config_markdown(), end="")
        return 0
    for key, kind, default, help_text in describe_fields():
        print(f"{key}  ({kind}; default {default})\n    {help_text}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from tuneforge.assets import DATASETS, MODELS, dataset_file

    names = args.names or [e.name for e in MODELS] + [e.name for e in DATASETS]
    for name in names:
        if name in MODELS:
            print(f"{name}: {MODELS.get(name).locate()}")
        else:
            print(f"{name}: {dataset_file(name)}")
    return 0


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuneforge",
        description="Fine-tune pretrained models into specialists for your own data.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    overrides_help = "dotted overrides, e.g. train.lr=1e-4 method.r=16 (see `tuneforge config`)"

    p = sub.add_parser("train", help="train from a YAML config")
    p.add_argument("config", help="YAML config file (see configs/)")
    p.add_argument("overrides", nargs="*", help=overrides_help)
    p.add_argument("--resume", nargs="?", const="latest", metavar="RUN_OR_CHECKPOINT",
                   help="continue exactly from the latest intact checkpoint (of the newest run of this config, "
                        "or of the given run directory / checkpoint folder)")
    p.add_argument("--resume-force", action="store_true",
                   help="resume even if the config changed data, model, method or batch settings")
    p.set_defaults(handler=_train)

    p = sub.add_parser("quickstart", help="the main job: LoRA on minilm-l6 over rt-sentences, a few minutes on CPU")
    p.add_argument("overrides", nargs="*", help=overrides_help)
    p.set_defaults(handler=_quickstart)

    p = sub.add_parser("predict", help="classify texts with a trained run")
    p.add_argument("run", help="run directory (runs/<name>-<timestamp>)")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--file", help="CSV/TSV/JSONL/Parquet file of texts")
    p.add_argument("--out", help="where to write predictions (CSV); default: next to --file")
    p.add_argument("--text-column", help="text column in --file (default: the one used in training)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(handler=_predict)

    p = sub.add_parser("eval", help="evaluate a trained run on new labelled data, with the full report")
    p.add_argument("run", help="run directory")
    p.add_argument("--data", required=True, help="labelled CSV/TSV/JSONL/Parquet file")
    p.add_argument("--out", help="report folder (default: RUN/eval-<timestamp>)")
    p.add_argument("--text-column", help="default: the one used in training")
    p.add_argument("--label-column", help="default: the one used in training")
    p.add_argument("--on-bad-rows", choices=["error", "skip"], default="error", help="as data.on_bad_rows")
    p.add_argument("--force", action="store_true", help="overwrite a report already in --out")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("export", help="export a run's model (--merge: fold LoRA adapters into a plain model)")
    p.add_argument("run", help="run directory")
    p.add_argument("--merge", action="store_true", help="write a merged full transformers model")
    p.add_argument("--out", help="output folder (default: RUN/merged)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.set_defaults(handler=_export)

    p = sub.add_parser("init", help="write a commented starter config inferred from a data file")
    p.add_argument("--task", default="text_classification", choices=["text_classification"])
    p.add_argument("--data", required=True, help="your labelled data file")
    p.add_argument("--out", help="write here instead of standard output")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(handler=_init)

    p = sub.add_parser("list", help="list registered models, datasets, methods or tasks")
    p.add_argument("what", choices=["models", "datasets", "methods", "tasks"])
    p.set_defaults(handler=_list)

    p = sub.add_parser("config", help="every config key with its type, default and meaning")
    p.add_argument("--markdown", action="store_true", help="as the Markdown table of docs/configuration.md")
    p.set_defaults(handler=_config)

    p = sub.add_parser("prepare", help="convert/prepare built-in models and datasets into the cache now")
    p.add_argument("names", nargs="*", help="model or dataset names (default: all)")
    p.set_defaults(handler=_prepare)
    return parser


if __name__ == "__main__":
    sys.exit(main())
