"""``tuneforge export``, ``distill``, ``prune`` and ``compress``: smaller or portable variants of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from tuneforge.cli.common import OVERRIDES_HELP, output_folder, split_list
from tuneforge.cli.train import report_run
from tuneforge.errors import TuneforgeError
from tuneforge.runs.reader import is_ensemble_folder


def add_parser(subparsers) -> None:
    """The export and compression commands and their arguments."""
    p = subparsers.add_parser("export", help="export a run: merged transformers folder, int8, ONNX or ONNX int8",
                              description="Each export is a self-contained folder (tokenizer, labels, config) "
                                          "that `tuneforge predict`, `eval` and `serve` load like a run. An "
                                          "ensemble exports each member (int8, onnx, onnx-int8) into "
                                          "OUT/members/<i>/.")
    p.add_argument("run", help="run directory")
    p.add_argument("--format", choices=["merged", "int8", "onnx", "onnx-int8"],
                   help="merged: adapters folded into plain transformers weights; int8: PyTorch dynamic int8; "
                        "onnx: fp32 graph for ONNX Runtime; onnx-int8: ONNX Runtime dynamic int8 (smallest, "
                        "fastest on CPU)")
    p.add_argument("--merge", action="store_true", help="same as --format merged")
    p.add_argument("--out", help="output folder (default: RUN/merged, RUN/export-FORMAT for the others)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(handler=export)

    p = subparsers.add_parser("distill", help="train a student from a text or image classifier or causal-LM run "
                                              "(knowledge distillation)",
                              description="Without CONFIG: the teacher's own data and split and full fine-tuning. "
                                          "Text and LM students keep every other teacher layer; image students are "
                                          "model.name (set it, or a lighter method). distill.* keys tune it "
                                          "(`tuneforge config`).")
    p.add_argument("teacher", help="the teacher's run directory")
    p.add_argument("config", nargs="?", help="the student's YAML config (default: the teacher's config)")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + ", e.g. distill.keep_layers=[0,5]")
    p.set_defaults(handler=distill)
    _add_prune(subparsers)
    _add_compress(subparsers)


def _add_prune(subparsers) -> None:
    p = subparsers.add_parser("prune", help="prune a text classifier: attention heads, FFN neurons, layers or "
                                            "magnitude",
                              description="Structured methods give a smaller dense model that plain transformers "
                                          "loads (trust_remote_code=True for heads/ffn); magnitude zeroes weights in "
                                          "place, which shrinks only a compressed copy and does not speed up dense "
                                          "CPU kernels.")
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
    p.set_defaults(handler=prune)


def _add_compress(subparsers) -> None:
    p = subparsers.add_parser("compress", help="build smaller variants of a run and tabulate size, accuracy and "
                                               "speed",
                              description="Measures the original and each variant in one invocation on the run's "
                                          "test split; writes compression.md, .csv and .png (accuracy against "
                                          "latency).")
    p.add_argument("run", help="a text-classification run directory")
    p.add_argument("--all", action="store_true", help="every variant: int8, onnx, onnx-int8, distilled, heads, "
                                                      "ffn, layers, magnitude (trains two students, minutes)")
    p.add_argument("--variants", help="comma-separated variants (default: int8,onnx,onnx-int8)")
    p.add_argument("--out", help="output folder (default: RUN/compress-<timestamp>)")
    p.add_argument("overrides", nargs="*", help="settings for the variants that train, e.g. train.epochs=2")
    p.set_defaults(handler=compress)


def export(args: argparse.Namespace) -> int:
    """``tuneforge export RUN --format F``: the folder written, and how to use it."""
    from tuneforge.compression.export import export as export_run

    if args.merge and args.format not in (None, "merged"):
        raise TuneforgeError(f"--merge and --format {args.format} ask for different exports; pass one")
    fmt = "merged" if args.merge else args.format
    if fmt is None:
        raise TuneforgeError("nothing to export: pass --format (merged, int8, onnx, onnx-int8) or --merge")
    if is_ensemble_folder(args.run):  # every member exported, plus the ensemble's own tuneforge.json
        from tuneforge.experiments.ensemble import export_ensemble

        out = export_ensemble(args.run, fmt, output_folder(args.out), args.force)
        print(f"wrote the ensemble's members as {fmt} to {out}/members/")
        print(f"use it like the ensemble: tuneforge predict {out} ...  |  tuneforge serve {out}")
        return 0
    out = export_run(args.run, fmt, output_folder(args.out), args.force)
    print(f"wrote {fmt} to {out}")
    print(f"use it like the run: tuneforge predict {out} ...  |  tuneforge serve {out}")
    if fmt == "merged":
        print(f"or with plain transformers: AutoModelFor...from_pretrained('{out}')")
    elif fmt.startswith("onnx"):
        print(f"or with ONNX Runtime alone: onnxruntime.InferenceSession('{out}/model.onnx') "
              "(inputs input_ids, attention_mask)")
    return 0


def distill(args: argparse.Namespace) -> int:
    """``tuneforge distill TEACHER [CONFIG] [overrides]``: trains the student, then reports it like ``train``."""
    from tuneforge.compression.distill import distill as distill_run

    config, overrides = args.config, args.overrides
    if config and "=" in config and not Path(config).exists():  # `distill RUN key=value`: no config, an override
        config, overrides = None, [config, *overrides]
    report_run(distill_run(args.teacher, config, overrides))
    return 0


def prune(args: argparse.Namespace) -> int:
    """``tuneforge prune RUN --method M``: a pruned folder, or with recovery epochs a new run."""
    from tuneforge.compression.pruning import prune as prune_run

    result = prune_run(args.run, args.method, args.amount, output_folder(args.out), args.recover_epochs,
                       args.overrides, args.force)
    if isinstance(result, Path):
        print(f"wrote the pruned model to {result}")
        print(f"use it like the run: tuneforge predict {result} ...  |  tuneforge eval {result} --data FILE")
        return 0
    report_run(result)
    return 0


def compress(args: argparse.Namespace) -> int:
    """``tuneforge compress RUN``: every variant measured, then the trade-off table."""
    from tuneforge.compression.report import FAST, VARIANTS
    from tuneforge.compression.report import compress as compress_run

    if args.all and args.variants:
        raise TuneforgeError("pass --all or --variants, not both")
    variants = list(VARIANTS) if args.all else (split_list(args.variants) if args.variants else list(FAST))
    out = compress_run(args.run, variants, output_folder(args.out), args.overrides)
    print((out / "compression.md").read_text(encoding="utf-8"))
    print(f"table: {out}/compression.md (+ .csv, .png)")
    return 0
