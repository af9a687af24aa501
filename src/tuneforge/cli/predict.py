"""``tuneforge predict`` and ``tuneforge eval``: a trained run on new inputs; what a run reads comes from its task."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneforge.cli.common import optional_path, positive, split_list
from tuneforge.errors import TuneforgeError


def add_parser(subparsers) -> None:
    """``predict`` and ``eval`` and their arguments."""
    p = subparsers.add_parser("predict", help="classify texts or images, or find entities, with a trained run")
    p.add_argument("run", help="run directory (runs/<name>-<timestamp>)")
    p.add_argument("texts", nargs="*", metavar="INPUT", help="texts to classify (image runs: image files)")
    p.add_argument("--file", help="CSV/TSV/JSONL/Parquet/Excel file of texts (image runs: of image paths)")
    p.add_argument("--dir", help="image runs: classify every image in this folder (recursively)")
    p.add_argument("--out", help="where to write predictions: .csv (UTF-8 with BOM, opens in Excel) or .xlsx "
                                 "(entity runs also .jsonl); default: next to --file (.xlsx for an Excel --file), "
                                 "./predictions.csv for --dir")
    p.add_argument("--text-column", help="text column in --file (default: the one used in training)")
    p.add_argument("--image-column", help="image-path column in --file (default: the one used in training)")
    p.add_argument("--on-bad-rows", choices=["error", "skip"], default="error",
                   help="image runs: stop on an unreadable image (default) or skip it")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists (never the input file)")
    add_file_options(p, "--file")
    p.set_defaults(handler=predict)

    p = subparsers.add_parser("eval", help="evaluate a run on new labelled data (full report), or an LM run's "
                                           "perplexity on new text")
    p.add_argument("run", help="run directory")
    p.add_argument("--data",
                   help="labelled CSV/TSV/JSONL/Parquet/Excel file (language models: .txt, folder or text column; "
                        "image runs: class-per-folder directory, table of image paths or IDX file); "
                        "not for Frozen runs, which use their held-out pairs")
    p.add_argument("--blind", metavar="BLIND_RUN", help="Frozen: a blind run (frozen.blind) to compare perplexity")
    p.add_argument("--binding", metavar="FOLDER", help="Frozen: category folders for fast binding "
                                                     "(default: frozen.binding_data)")
    p.add_argument("--vqa", metavar="DATA", help="Frozen: easy-vqa or a table of image/question/answer")
    p.add_argument("--episodes", type=positive,
                   help="Frozen: binding episodes per cell (default frozen.binding_episodes)")
    p.add_argument("--out", help="report folder (default: RUN/eval-<data>-<timestamp>); never the run's own folder "
                                 "or an existing file")
    p.add_argument("--text-column", help="default: the one used in training")
    p.add_argument("--image-column", help="image runs, table data: the image-path column")
    p.add_argument("--label-column", help="default: the one used in training")
    p.add_argument("--on-bad-rows", choices=["error", "skip"], default="error", help="as data.on_bad_rows")
    p.add_argument("--force", action="store_true", help="overwrite a report already in --out")
    p.add_argument("--perturb", metavar="KIND[=RATE],...",
                   help="text and token classification: also score the data after noise, beside the clean score: "
                        "typos (keyboard typos; Chinese: similar characters), synonyms (WordNet/Cilin); rate = share "
                        "of words touched (default 0.1). Without --data: the run's own test split")
    add_file_options(p, "--data")
    p.set_defaults(handler=evaluate)


def add_file_options(p, option: str) -> None:
    """``--encoding`` and ``--sheet``: how to read the data file the command takes (``option``)."""
    p.add_argument("--encoding", help=f"text encoding of {option} (utf-8, gb18030, big5, utf-16, cp1252...); "
                                      "default: a byte-order mark, UTF-8, or detected (and named on the console)")
    p.add_argument("--sheet", help=f"Excel {option}: the sheet to read, by name or number from 1 (default: the first)")


# --------------------------------------------------------------------------- predict


def predict(args: argparse.Namespace) -> int:
    """``tuneforge predict RUN``: texts or images, as the run's task reads them (``Task.predicts``)."""
    from tuneforge.tasks import load, open_run

    _, task = open_run(args.run)  # checks the run's files before the inputs or the model
    if task.predicts == "images":
        if sum(map(bool, (args.texts, args.file, args.dir))) != 1:  # before the model loads
            raise TuneforgeError("give image files, --dir FOLDER or --file TABLE (exactly one of them)")
        return _predict_images(load(args.run), args)
    if args.dir:
        raise TuneforgeError(f"--dir is for image runs; {args.run} classifies text (give texts or --file)")
    if bool(args.texts) == bool(args.file):
        raise TuneforgeError("give either texts to classify or --file FILE (not both, not neither)")
    if task.predicts is None and (task.generates or task.prompts_with_images):  # its model generates text
        raise TuneforgeError(f"{args.run} is a language-model run: it generates text (tuneforge generate "
                             f"{args.run} \"...\"); predict classifies with a classification run")
    if task.predicts is None:
        raise TuneforgeError(f"{args.run} is a masked-LM run: start a classifier from it (model.name: "
                             f"{args.run}/model); predict needs a classification run")
    if task.predicts == "spans":
        return _predict_spans(load(args.run), args)
    return _predict_texts(load(args.run), args)


def _predict_spans(model, args: argparse.Namespace) -> int:
    """Entities of texts: printed per text, or written beside --file (JSONL, CSV or .xlsx by --out's suffix)."""
    from tuneforge.tasks.token_classification.files import default_output as entities_output
    from tuneforge.tasks.token_classification.files import predict_file, show

    if args.file:
        source = Path(args.file)
        out = Path(args.out) if args.out else entities_output(source)
        count = predict_file(model, source, out, args.text_column or "text", args.force, encoding=args.encoding,
                             sheet=args.sheet)
        print(f"wrote the entities of {count:,} texts to {out}")
        return 0
    print(show(args.texts, model.predict(args.texts)))
    return 0


def default_output(source: Path) -> Path:
    """Predictions beside the input: reviews.csv -> reviews.predictions.csv, an Excel file -> .xlsx."""
    excel = source.suffix.lower() in (".xlsx", ".xlsm")
    return source.with_suffix(".predictions.xlsx" if excel else ".predictions.csv")


def _predict_texts(model, args: argparse.Namespace) -> int:
    from tuneforge.tasks.classification import check_output, check_prediction_rows, write_predictions
    from tuneforge.tasks.text_classification.files import read_texts

    if args.file:
        source = Path(args.file)
        out = Path(args.out) if args.out else default_output(source)
        check_output(out, source, args.force)
        rows, texts = read_texts(source, args.text_column or model.meta["text_column"], encoding=args.encoding,
                                 sheet=args.sheet)
        check_prediction_rows(out, rows)  # what an .xlsx cannot hold is refused before the model runs
        write_predictions(out, rows, model.predict(texts))
        print(f"wrote {len(texts):,} predictions to {out}")
        return 0
    for text, prediction in zip(args.texts, model.predict(args.texts), strict=True):
        best = max(prediction.probabilities.values())
        shown = prediction.label if isinstance(prediction.label, str) else ", ".join(prediction.label) or "(none)"
        print(f"{shown}\t{best:.3f}\t{text}")
    return 0


def _predict_images(model, args: argparse.Namespace) -> int:
    from tuneforge.tasks.classification import check_output, write_predictions
    from tuneforge.tasks.image_classification.files import checked_images, images_from_table, images_in

    if args.texts:
        paths = [Path(p) for p in args.texts]
    elif args.dir:
        paths = images_in(Path(args.dir))
    else:
        paths = images_from_table(Path(args.file), args.image_column or model.meta["image_column"],
                                  encoding=args.encoding, sheet=args.sheet)
    source = Path(args.file) if args.file else None
    out = None
    if args.dir or args.file or args.out:
        out = Path(args.out) if args.out else (default_output(source) if source else Path("predictions.csv"))
        check_output(out, source, args.force)  # before any work: an existing file is never overwritten
    paths, bad = checked_images(paths, skip_bad=args.on_bad_rows == "skip")
    if bad:
        print(f"skipped {len(bad)} unusable image(s), e.g. {bad[0]}", file=sys.stderr)
    predictions = model.predict(paths)
    if out is not None:
        write_predictions(out, [{"image": str(p)} for p in paths], predictions)
        print(f"wrote {len(paths):,} predictions to {out}")
        return 0
    for path, prediction in zip(paths, predictions, strict=True):
        print(f"{prediction.label}\t{prediction.probabilities[prediction.label]:.3f}\t{path}")
    return 0


# --------------------------------------------------------------------------- eval


def evaluate(args: argparse.Namespace) -> int:
    """``tuneforge eval RUN``: the run's task evaluates (and refuses what it cannot); its text is printed."""
    from tuneforge.tasks import EvalRequest, open_run

    _, task = open_run(args.run)
    perturb = tuple(split_list(args.perturb)) if args.perturb else ()
    if perturb and task.predicts not in ("texts", "spans"):
        raise TuneforgeError(f"--perturb: only text and token classification runs read text to perturb; "
                             f"{args.run} is a {task.name} run")
    request = EvalRequest(data=optional_path(args.data), out=optional_path(args.out), text_column=args.text_column,
                          label_column=args.label_column, image_column=args.image_column,
                          on_bad_rows=args.on_bad_rows, force=args.force, blind=args.blind, binding=args.binding,
                          vqa=args.vqa, episodes=args.episodes, encoding=args.encoding, sheet=args.sheet,
                          perturb=perturb)
    print(task.evaluate(args.run, request))
    return 0
