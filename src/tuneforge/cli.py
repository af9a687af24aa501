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
  tuneforge train configs/shakespeare_causal_lm.yaml     continued pretraining of smollm2-135m
  tuneforge generate runs/shakespeare-dapt-2026... "ROMEO." --max-new-tokens 60
  tuneforge generate smollm2-135m --chat               chat in the terminal
  tuneforge compare configs/compare_rt.yaml --methods full,freeze,lora,ia3
  tuneforge train configs/fashion_mnist.yaml            image classification (efficientnet-lite0)
  tuneforge init --task image_classification --data photos/ > photos.yaml
  tuneforge predict runs/fashion-mnist-2026... shoe.png boot.jpg
  tuneforge predict runs/fashion-mnist-2026... --dir photos/ --out preds.csv
  tuneforge train configs/frozen_twemoji.yaml           Frozen: visual prefixes for a frozen smollm2-135m
  tuneforge caption runs/frozen-twemoji-2026... cat.png
  tuneforge ask runs/frozen-twemoji-2026... --image a.png --text "This is a dax." --image q.png --text "This is a"
  tuneforge eval runs/frozen-twemoji-2026... --blind runs/frozen-twemoji-blind-2026...
  tuneforge ablate configs/frozen_twemoji.yaml          the paper's ablations, side by side
  tuneforge keys create my-app                          an API key for the server (shown once)
  tuneforge serve runs/quickstart-2026... runs/frozen-twemoji-2026... --port 8000
  tuneforge export runs/quickstart-2026... --format onnx-int8   a small, fast CPU model
  tuneforge distill runs/quickstart-2026...              a 3-layer student of the 6-layer run
  tuneforge prune runs/quickstart-2026... --method heads --amount 0.4 --recover-epochs 1
  tuneforge compress runs/quickstart-2026... --all      every variant, one trade-off table
"""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills an optional positional before it sees the options: `generate MODEL --chat "hi"`
    if extra and getattr(args, "prompt", "") is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.prompt, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_libraries()
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


def quiet_libraries() -> None:
    """Keep the terminal for tuneforge's own progress: library load reports and deprecations are noise here."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()  # "Loading weights" bars on every model load


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
    if "by_shots" in run.metrics:
        shots = ", ".join(f"k={k}: {m['accuracy']:.4f}" for k, m in run.metrics["by_shots"].items())
        print(f"accuracy by in-context examples: {shots}")
    print(f"\nrun directory: {run.dir}")
    print(f"report:        {run.report}")
    print("next:")
    task = run.metrics.get("task")
    if task in ("causal_lm", "sft"):
        print(f"  tuneforge generate {run.dir}{' --chat' if task == 'sft' else ''} \"your prompt\"")
    elif task == "masked_lm":
        print(f"  start a classifier from it: tuneforge train CONFIG model.name={run.dir}/model")
    elif task == "frozen":
        print(f"  tuneforge caption {run.dir} image.png")
        print(f"  tuneforge ask {run.dir} --image a.png --text \"This is a dax.\" --image q.png "
              "--text \"Q: What is this? A: This is a\"")
        print(f"  tuneforge eval {run.dir}   # fast binding, VQA, perplexity (--blind BLIND_RUN)")
    elif task == "image_classification":
        print(f"  tuneforge predict {run.dir} photo.jpg other.png")
        print(f"  tuneforge predict {run.dir} --dir FOLDER --out predictions.csv")
        print(f"  tuneforge eval {run.dir} --data LABELLED_FOLDER")
    else:
        print(f"  tuneforge predict {run.dir} \"an utterly charming film\"")
        print(f"  tuneforge predict {run.dir} --file texts.csv --out predictions.csv")
        print(f"  tuneforge eval {run.dir} --data labelled.csv")


def _predict(args: argparse.Namespace) -> int:
    from tuneforge.api import load
    from tuneforge.tasks.text_io import check_output, read_texts, write_predictions

    if _run_task(args.run) == "image_classification":
        if sum(map(bool, (args.texts, args.file, args.dir))) != 1:  # before the model loads
            raise TuneforgeError("give image files, --dir FOLDER or --file TABLE (exactly one of them)")
        return _predict_images(load(args.run), args)
    if args.dir:
        raise TuneforgeError(f"--dir is for image runs; {args.run} classifies text (give texts or --file)")
    if bool(args.texts) == bool(args.file):
        raise TuneforgeError("give either texts to classify or --file FILE (not both, not neither)")
    model = load(args.run)
    if hasattr(model, "generate") and not hasattr(model, "predict"):
        raise TuneforgeError(f"{args.run} is a language-model run: it generates text (tuneforge generate "
                             f"{args.run} \"...\"); predict classifies with a classification run")
    if not hasattr(model, "predict"):
        raise TuneforgeError(f"{args.run} is a masked-LM run: start a classifier from it (model.name: "
                             f"{args.run}/model); predict needs a classification run")
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


def _run_task(run: str) -> str | None:
    """The task a run was trained for (read from its tuneforge.json, without loading the model)."""
    import json

    from tuneforge.runs import open_run

    return json.loads((open_run(run) / "tuneforge.json").read_text(encoding="utf-8")).get("task")


def _predict_images(model, args: argparse.Namespace) -> int:
    from tuneforge.tasks.image_io import checked_images, images_from_table, images_in
    from tuneforge.tasks.text_io import check_output, write_predictions

    if args.texts:
        paths = [Path(p) for p in args.texts]
    elif args.dir:
        paths = images_in(Path(args.dir))
    else:
        paths = images_from_table(Path(args.file), args.image_column or model.meta["image_column"])
    source = Path(args.file) if args.file else None
    out = None
    if args.dir or args.file or args.out:
        out = Path(args.out) if args.out else (source.with_suffix(".predictions.csv") if source
                                               else Path("predictions.csv"))
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


def _eval(args: argparse.Namespace) -> int:
    from tuneforge.api import load
    from tuneforge.evaluation.metrics import format_metrics_table
    from tuneforge.tasks.text_io import evaluate_file

    if _run_task(args.run) == "frozen":
        return _eval_frozen(args)
    if args.data is None:
        raise TuneforgeError("--data is required: the labelled data (or text) to evaluate on")
    model = load(args.run)
    if hasattr(model, "generate"):  # a causal-LM run: perplexity on new text
        from tuneforge.tasks.language_model import text_perplexity

        result = text_perplexity(model, Path(args.data), args.text_column or "text", args.on_bad_rows)
        print(f"perplexity {result['perplexity']:.2f} (loss {result['loss']:.4f} nats/token) over "
              f"{int(result['tokens']):,} tokens of {args.data}")
        return 0
    if not hasattr(model, "predict"):
        raise TuneforgeError(f"{args.run}: evaluating a {getattr(model, 'meta', {}).get('task', 'masked_lm')} run "
                             "is not supported; its report has held-out perplexity")
    out = Path(args.out) if args.out else None
    if getattr(model, "meta", {}).get("task") == "image_classification":
        from tuneforge.tasks.image_io import evaluate_images

        metrics, out_dir = evaluate_images(model, Path(args.data), out, args.image_column, args.label_column,
                                           args.on_bad_rows, args.force)
    else:
        metrics, out_dir = evaluate_file(model, Path(args.data), out, args.text_column, args.label_column,
                                         args.on_bad_rows, args.force)
    print(format_metrics_table(metrics))
    print(f"\nreport: {out_dir / 'report.md'}")
    return 0


def _eval_frozen(args: argparse.Namespace) -> int:
    from tuneforge.tasks.frozen_eval import evaluate_run

    if args.data is not None:
        raise TuneforgeError("a Frozen run is evaluated on its own held-out pairs; give --binding FOLDER or "
                             "--vqa DATA for other data, not --data")
    _, out = evaluate_run(args.run, args.blind, args.binding, args.vqa, args.episodes,
                          Path(args.out) if args.out else None, args.force)
    print((out / "eval.md").read_text(encoding="utf-8"))
    print(f"report: {out / 'eval.md'}")
    return 0


def _caption(args: argparse.Namespace) -> int:
    from tuneforge.api import load

    model = _frozen_model(args.run, load)
    for image, caption in zip(args.images, model.caption(args.images, args.max_new_tokens), strict=True):
        print(f"{image}\t{caption}")
    return 0


def _ask(args: argparse.Namespace) -> int:
    from tuneforge.api import load
    from tuneforge.tasks.frozen_model import Image

    segments = [Image(value) if kind == "image" else value for kind, value in args.segments or []]
    if not any(isinstance(s, Image) for s in segments):
        raise TuneforgeError("give at least one --image (and --text pieces between them, in order)")
    model = _frozen_model(args.run, load)
    print(model.generate(segments, args.max_new_tokens))
    return 0


def _frozen_model(run: str, load):
    task = _run_task(run)
    if task != "frozen":
        raise TuneforgeError(f"{run} is a {task} run; caption and ask need a Frozen run (task: frozen)")
    return load(run)


def _positive(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


class _Segment(argparse.Action):
    """--image and --text append to one ordered list: the interleaved prompt, as typed."""

    def __call__(self, parser, namespace, value, option_string=None):
        kind = "image" if option_string == "--image" else "text"
        namespace.segments = [*(namespace.segments or []), (kind, value)]


def _ablate(args: argparse.Namespace) -> int:
    from tuneforge.tasks.frozen_ablations import ablate

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    result = ablate(args.config, variants, args.overrides, Path(args.out) if args.out else None,
                    episodes=args.episodes)
    print((result / "ablations.md").read_text(encoding="utf-8"))
    print(f"ablations: {result}/ablations.md (+ .csv, .json)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from tuneforge.compression.export import export

    if args.merge and args.format not in (None, "merged"):
        raise TuneforgeError(f"--merge and --format {args.format} ask for different exports; pass one")
    fmt = "merged" if args.merge else args.format
    if fmt is None:
        raise TuneforgeError("nothing to export: pass --format (merged, int8, onnx, onnx-int8) or --merge")
    out = export(args.run, fmt, args.out, args.force)
    print(f"wrote {fmt} to {out}")
    print(f"use it like the run: tuneforge predict {out} ...  |  tuneforge serve {out}")
    if fmt == "merged":
        print(f"or with plain transformers: AutoModelFor...from_pretrained('{out}')")
    elif fmt.startswith("onnx"):
        print(f"or with ONNX Runtime alone: onnxruntime.InferenceSession('{out}/model.onnx') "
              "(inputs input_ids, attention_mask)")
    return 0


def _distill(args: argparse.Namespace) -> int:
    from tuneforge.compression.distill import distill

    config, overrides = args.config, args.overrides
    if config and "=" in config and not Path(config).exists():  # `distill RUN key=value`: no config, an override
        config, overrides = None, [config, *overrides]
    _report_run(distill(args.teacher, config, overrides))
    return 0


def _prune(args: argparse.Namespace) -> int:
    from tuneforge.compression.pruning import prune

    result = prune(args.run, args.method, args.amount, args.out, args.recover_epochs, args.overrides, args.force)
    if isinstance(result, Path):
        print(f"wrote the pruned model to {result}")
        print(f"use it like the run: tuneforge predict {result} ...  |  tuneforge eval {result} --data FILE")
        return 0
    _report_run(result)
    return 0


def _compress(args: argparse.Namespace) -> int:
    from tuneforge.compression.report import FAST, VARIANTS, compress

    if args.all and args.variants:
        raise TuneforgeError("pass --all or --variants, not both")
    variants = list(VARIANTS) if args.all else (
        [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else list(FAST))
    out = compress(args.run, variants, args.out, args.overrides)
    print((out / "compression.md").read_text(encoding="utf-8"))
    print(f"table: {out}/compression.md (+ .csv, .png)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from tuneforge.tasks.generator import GenerationSettings
    from tuneforge.tasks.text_io import check_output

    model = _language_model(args.model)
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.top_k,
                                  args.repetition_penalty, args.stop or [], args.seed)
    settings.check()
    if args.file:
        source = Path(args.file)
        out = Path(args.out) if args.out else source.with_suffix(".generations.jsonl")
        check_output(out, source, args.force, suffix=".jsonl")
        return _generate_file(model, settings, source, out, args.chat)
    if args.prompt is None and not args.chat:
        raise TuneforgeError("give a prompt, --file PROMPTS, or --chat for a conversation")
    if args.prompt is None:
        return _chat_loop(model, settings)
    prompt = [{"role": "user", "content": args.prompt}] if args.chat else args.prompt
    if not args.chat:
        print(args.prompt, end="", flush=True)
    result = model.generate(prompt, settings, on_text=_print_piece)
    print()
    print(f"[{result.new_tokens} tokens, finish: {result.finish_reason}]", file=sys.stderr)
    return 0


def _language_model(name: str):
    from tuneforge.errors import RunError
    from tuneforge.tasks.generator import LanguageModel

    try:
        return LanguageModel.from_run(name)
    except RunError:
        if Path(name, "model", "tuneforge.json").is_file() or Path(name, "tuneforge.json").is_file():
            raise  # a tuneforge run of another task: say so
        return LanguageModel.from_pretrained(name)


def _print_piece(text: str) -> None:
    print(text, end="", flush=True)


def _chat_loop(model, settings) -> int:
    print("chat with the model; an empty line or Ctrl-D ends it", file=sys.stderr)
    messages: list[dict[str, str]] = []
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        reply = model.generate(messages, settings, on_text=_print_piece)
        print()
        messages.append({"role": "assistant", "content": reply.text})
    return 0


def _generate_file(model, settings, source: Path, out: Path, chat: bool) -> int:
    """One generation per prompt: lines of a .txt file, or the `prompt` field of JSONL rows."""
    import json

    from tqdm.auto import tqdm

    prompts = _read_prompts(source)
    partial = out.with_name(out.name + ".partial")  # an existing --out survives a crash part-way
    with partial.open("w", encoding="utf-8") as handle:
        for prompt in tqdm(prompts, desc="generating", unit="prompt"):
            result = model.generate([{"role": "user", "content": prompt}] if chat else prompt, settings)
            record = {"prompt": prompt, "completion": result.text, "finish_reason": result.finish_reason,
                      "prompt_tokens": result.prompt_tokens, "completion_tokens": result.new_tokens}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    partial.replace(out)
    print(f"wrote {len(prompts):,} generations to {out}")
    return 0


def _read_prompts(source: Path) -> list[str]:
    from tuneforge.data.readers import read_examples

    if source.suffix.lower() == ".txt":
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise TuneforgeError(f"{source}: cannot read the prompts ({error})") from None
        prompts = [line for line in lines if line.strip()]
    else:
        result = read_examples(source, "prompt", None)
        if result.problems:
            raise TuneforgeError(f"{result.problems[0]} ({len(result.problems)} bad rows in all)")
        prompts = [example.text for example in result.examples]
    if not prompts:
        raise TuneforgeError(f"{source}: no prompts in the file")
    return prompts


def _compare(args: argparse.Namespace) -> int:
    from tuneforge.compare import compare, format_table

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    per_method: dict[str, list[str]] = {}
    for item in args.set or []:
        method, sep, override = item.partition(":")
        if not sep or "=" not in override:
            raise TuneforgeError(f"--set {item}: expected METHOD:KEY=VALUE, e.g. full:train.lr=5e-5")
        per_method.setdefault(method.strip(), []).append(override)
    result = compare(args.config, methods, args.overrides, Path(args.out) if args.out else None,
                     method_overrides=per_method)
    print(format_table(result.rows, result.metric))
    print(f"\ncomparison: {result.dir}/comparison.md (+ .csv, .png)")
    return 0 if all(not row.get("error") for row in result.rows) else 1


def _init(args: argparse.Namespace) -> int:
    from tuneforge.starter import image_starter_config, starter_config

    data = Path(args.data)
    text = image_starter_config(data) if args.task == "image_classification" else starter_config(args.task, data)
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


def _serve(args: argparse.Namespace) -> int:
    from tuneforge.config import load_config
    from tuneforge.serving.models import model_specs
    from tuneforge.serving.server import serve

    overrides = [item if item.startswith("serve.") else f"serve.{item}" for item in args.set or []]
    flags = {"host": args.host, "port": args.port, "workers": args.workers}
    overrides += [f"serve.{key}={value}" for key, value in flags.items() if value is not None]
    settings = load_config(args.config, overrides).serve
    serve(model_specs(args.runs, args.name or []), settings, auth=settings.auth and not args.no_auth)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from tuneforge.config import load_config
    from tuneforge.serving.keys import KeyStore

    store = KeyStore(args.file or load_config(args.config).serve.keys_file)
    if args.action == "create":
        if not args.name:
            raise TuneforgeError("name the key: tuneforge keys create NAME")
        key = store.create(args.name)
        print(key)
        print(f"key '{args.name}' created in {store.path}; copy it now, only its hash is kept", file=sys.stderr)
    elif args.action == "revoke":
        if not args.name:
            raise TuneforgeError("name the key to revoke: tuneforge keys revoke NAME")
        store.revoke(args.name)
        print(f"key '{args.name}' revoked; running servers refuse it from their next request (403)")
    else:
        keys = store.keys()
        if not keys:
            print(f"no keys in {store.path}; create one with `tuneforge keys create NAME`")
        for key in keys:
            status = f"revoked {key.revoked}" if key.revoked else "active"
            print(f"{key.name:24} {key.prefix}...  created {key.created}  {status}")
    return 0


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

    p = sub.add_parser("predict", help="classify texts or images with a trained run")
    p.add_argument("run", help="run directory (runs/<name>-<timestamp>)")
    p.add_argument("texts", nargs="*", metavar="INPUT", help="texts to classify (image runs: image files)")
    p.add_argument("--file", help="CSV/TSV/JSONL/Parquet file of texts (image runs: of image paths)")
    p.add_argument("--dir", help="image runs: classify every image in this folder (recursively)")
    p.add_argument("--out", help="where to write predictions (CSV); default: next to --file, ./predictions.csv "
                                 "for --dir")
    p.add_argument("--text-column", help="text column in --file (default: the one used in training)")
    p.add_argument("--image-column", help="image-path column in --file (default: the one used in training)")
    p.add_argument("--on-bad-rows", choices=["error", "skip"], default="error",
                   help="image runs: stop on an unreadable image (default) or skip it")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(handler=_predict)

    p = sub.add_parser("eval", help="evaluate a run on new labelled data (full report), or an LM run's perplexity "
                                    "on new text")
    p.add_argument("run", help="run directory")
    p.add_argument("--data",
                   help="labelled CSV/TSV/JSONL/Parquet file (language models: .txt, folder or text column; "
                        "image runs: class-per-folder directory, table of image paths or IDX file); "
                        "not for Frozen runs, which use their held-out pairs")
    p.add_argument("--blind", metavar="BLIND_RUN", help="Frozen: a blind run (frozen.blind) to compare perplexity")
    p.add_argument("--binding", metavar="FOLDER", help="Frozen: category folders for fast binding "
                                                     "(default: frozen.binding_data)")
    p.add_argument("--vqa", metavar="DATA", help="Frozen: easy-vqa or a table of image/question/answer")
    p.add_argument("--episodes", type=_positive,
                   help="Frozen: binding episodes per cell (default frozen.binding_episodes)")
    p.add_argument("--out", help="report folder (default: RUN/eval-<timestamp>)")
    p.add_argument("--text-column", help="default: the one used in training")
    p.add_argument("--image-column", help="image runs, table data: the image-path column")
    p.add_argument("--label-column", help="default: the one used in training")
    p.add_argument("--on-bad-rows", choices=["error", "skip"], default="error", help="as data.on_bad_rows")
    p.add_argument("--force", action="store_true", help="overwrite a report already in --out")
    p.set_defaults(handler=_eval)

    p = sub.add_parser("export", help="export a run: merged transformers folder, int8, ONNX or ONNX int8",
                       description="Each export is a self-contained folder (tokenizer, labels, config) that "
                                   "`tuneforge predict`, `eval` and `serve` load like a run.")
    p.add_argument("run", help="run directory")
    p.add_argument("--format", choices=["merged", "int8", "onnx", "onnx-int8"],
                   help="merged: adapters folded into plain transformers weights; int8: PyTorch dynamic int8; "
                        "onnx: fp32 graph for ONNX Runtime; onnx-int8: ONNX Runtime dynamic int8 (smallest, "
                        "fastest on CPU)")
    p.add_argument("--merge", action="store_true", help="same as --format merged")
    p.add_argument("--out", help="output folder (default: RUN/merged, RUN/export-FORMAT for the others)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(handler=_export)

    p = sub.add_parser("distill", help="train a student from a text or image classifier or causal-LM run "
                                       "(knowledge distillation)",
                       description="Without CONFIG: the teacher's own data and split and full fine-tuning. Text and "
                                   "LM students keep every other teacher layer; image students are model.name (set "
                                   "it, or a lighter method). distill.* keys tune it (`tuneforge config`).")
    p.add_argument("teacher", help="the teacher's run directory")
    p.add_argument("config", nargs="?", help="the student's YAML config (default: the teacher's config)")
    p.add_argument("overrides", nargs="*", help=overrides_help + ", e.g. distill.keep_layers=[0,5]")
    p.set_defaults(handler=_distill)

    p = sub.add_parser("prune", help="prune a text classifier: attention heads, FFN neurons, layers or magnitude",
                       description="Structured methods give a smaller dense model that plain transformers loads "
                                   "(trust_remote_code=True for heads/ffn); magnitude zeroes weights in place, which "
                                   "shrinks only a compressed copy and does not speed up dense CPU kernels.")
    p.add_argument("run", help="a text-classification run directory")
    p.add_argument("--method", required=True, choices=["heads", "ffn", "layers", "magnitude"])
    p.add_argument("--amount", type=float, default=0.3,
                   help="fraction to remove: of all heads, of each layer's FFN neurons, of the layers, or of all "
                        "Linear weights (default 0.3)")
    p.add_argument("--recover-epochs", type=float, default=0,
                   help="fine-tune the pruned model this many epochs, distilling from the original (a new run "
                        "directory); 0 = none (default)")
    p.add_argument("--out", help="output folder without recovery (default: RUN/pruned-METHOD)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("overrides", nargs="*", help="recovery settings, e.g. train.lr=3e-5 output.dir=runs")
    p.set_defaults(handler=_prune)

    p = sub.add_parser("compress", help="build smaller variants of a run and tabulate size, accuracy and speed",
                       description="Measures the original and each variant in one invocation on the run's test "
                                   "split; writes compression.md, .csv and .png (accuracy against latency).")
    p.add_argument("run", help="a text-classification run directory")
    p.add_argument("--all", action="store_true", help="every variant: int8, onnx, onnx-int8, distilled, heads, "
                                                      "ffn, layers, magnitude (trains two students, minutes)")
    p.add_argument("--variants", help="comma-separated variants (default: int8,onnx,onnx-int8)")
    p.add_argument("--out", help="output folder (default: RUN/compress-<timestamp>)")
    p.add_argument("overrides", nargs="*", help="settings for the variants that train, e.g. train.epochs=2")
    p.set_defaults(handler=_compress)

    p = sub.add_parser("generate", help="generate text with a causal-LM run or model (streamed)",
                       description="Continue a prompt, answer it as a chat (--chat), or run a file of prompts.")
    p.add_argument("model", help="causal_lm/sft run directory, registered model (smollm2-135m) or HF folder")
    p.add_argument("prompt", nargs="?", help="text to continue (with --chat: the user message)")
    p.add_argument("--chat", action="store_true",
                   help="format with the model's chat template; without a prompt, an interactive conversation")
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate at most (default 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (with --temperature)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0 = all)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop before this text (repeatable)")
    p.add_argument("--seed", type=int, help="seed for sampling")
    p.add_argument("--file", help="prompts: a .txt file (one per line) or CSV/JSONL with a 'prompt' column")
    p.add_argument("--out", help="JSONL output for --file (default: next to it)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(handler=_generate)

    p = sub.add_parser("caption", help="caption images with a Frozen run")
    p.add_argument("run", help="Frozen run directory")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--max-new-tokens", type=_positive, default=16, help="longest caption in tokens (default 16)")
    p.set_defaults(handler=_caption)

    p = sub.add_parser("ask", help="continue an interleaved image-text prompt with a Frozen run",
                       description="--image and --text build one prompt in the order given, e.g. "
                                   "--image a.png --text 'This is a dax.' --image q.png --text 'Q: What is this? "
                                   "A: This is a'")
    p.add_argument("run", help="Frozen run directory")
    p.add_argument("--image", action=_Segment, dest="segments", metavar="FILE", help="an image (repeatable)")
    p.add_argument("--text", action=_Segment, dest="segments", metavar="TEXT", help="a text (repeatable)")
    p.add_argument("--max-new-tokens", type=_positive, default=16, help="tokens to generate at most (default 16)")
    p.set_defaults(handler=_ask)

    p = sub.add_parser("ablate", help="train a Frozen config's ablations and tabulate them side by side")
    p.add_argument("config", help="a task: frozen YAML config")
    p.add_argument("overrides", nargs="*", help=overrides_help + "; applied to every variant")
    p.add_argument("--variants", default="frozen,blind,finetune_lm,prefix_1,prefix_4,scratch",
                   help="comma-separated (default: the paper's six): frozen (the config as is), blind, "
                        "finetune_lm, prefix_1, prefix_4, scratch; also interleaved (frozen.interleaved=2)")
    p.add_argument("--episodes", type=_positive, help="binding episodes per cell (default frozen.binding_episodes)")
    p.add_argument("--out", help="output folder (default: <output.dir>/ablate-<name>-<timestamp>)")
    p.set_defaults(handler=_ablate)

    p = sub.add_parser("compare", help="train one config with several methods and tabulate the results")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", help=overrides_help + "; applied to every method")
    p.add_argument("--methods", default="full,freeze,topk,lora,adalora,ia3,prefix_tuning,prompt_tuning",
                   help="comma-separated methods (default: all eight)")
    p.add_argument("--set", action="append", metavar="METHOD:KEY=VALUE",
                   help="an override for one method only, e.g. full:train.lr=5e-5 (repeatable)")
    p.add_argument("--out", help="output folder (default: <output.dir>/compare-<name>-<timestamp>)")
    p.set_defaults(handler=_compare)

    p = sub.add_parser("init", help="write a commented starter config inferred from a data file")
    p.add_argument("--task", default="text_classification", choices=["text_classification", "image_classification"])
    p.add_argument("--data", required=True, help="your labelled data file (images: a folder of class folders, "
                                                 "a table of image paths or an IDX file)")
    p.add_argument("--out", help="write here instead of standard output")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(handler=_init)

    p = sub.add_parser("serve", help="serve runs over an authenticated HTTP API (FastAPI + uvicorn)",
                       description="Serve trained runs: /v1/classify, /v1/completions, /v1/chat/completions "
                                   "(OpenAI shapes), /v1/caption, /v1/ask, /metrics, /healthz, /readyz; "
                                   "docs at /docs. Needs an API key (tuneforge keys create NAME).")
    p.add_argument("runs", nargs="*", help="run directories, each served under its folder name")
    p.add_argument("--name", action="append", metavar="NAME=RUN_DIR", help="serve a run under a name of your "
                   "choice (repeatable)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, help="server processes, each holding every model (default 1)")
    p.add_argument("--config", help="a YAML file with a `serve:` section (see `tuneforge config`, serve.*)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a serve setting, e.g. --set mask_inputs=true --set max_batch_size=16 (repeatable)")
    p.add_argument("--no-auth", action="store_true", help="no API keys (local experiments only)")
    p.set_defaults(handler=_serve)

    p = sub.add_parser("keys", help="create, list or revoke the server's API keys (stored hashed)")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    p.add_argument("--file", help="key store (default: serve.keys_file, else $TUNEFORGE_HOME/api_keys.json)")
    p.add_argument("--config", help="a YAML file whose serve.keys_file names the key store")
    p.set_defaults(handler=_keys)

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
