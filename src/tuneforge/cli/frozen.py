"""``tuneforge caption``, ``ask`` and ``ablate``: prompting runs with images, and the Frozen paper's ablations."""

from __future__ import annotations

import argparse

from tuneforge.cli.common import OVERRIDES_HELP, optional_path, positive, split_list
from tuneforge.errors import TuneforgeError


class _Segment(argparse.Action):
    """--image and --text append to one ordered list: the interleaved prompt, as typed."""

    def __call__(self, parser, namespace, value, option_string=None):
        kind = "image" if option_string == "--image" else "text"
        namespace.segments = [*(namespace.segments or []), (kind, value)]


def add_parser(subparsers) -> None:
    """``caption``, ``ask`` and ``ablate`` and their arguments."""
    p = subparsers.add_parser("caption", help="caption images with a Frozen run")
    p.add_argument("run", help="Frozen run directory")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--max-new-tokens", type=positive, default=16, help="longest caption in tokens (default 16)")
    p.set_defaults(handler=caption)

    p = subparsers.add_parser("ask", help="continue an interleaved image-text prompt with a Frozen run",
                              description="--image and --text build one prompt in the order given, e.g. "
                                          "--image a.png --text 'This is a dax.' --image q.png --text 'Q: What is "
                                          "this? A: This is a'")
    p.add_argument("run", help="Frozen run directory")
    p.add_argument("--image", action=_Segment, dest="segments", metavar="FILE", help="an image (repeatable)")
    p.add_argument("--text", action=_Segment, dest="segments", metavar="TEXT", help="a text (repeatable)")
    p.add_argument("--max-new-tokens", type=positive, default=16, help="tokens to generate at most (default 16)")
    p.set_defaults(handler=ask)

    p = subparsers.add_parser("ablate", help="train a Frozen config's ablations and tabulate them side by side")
    p.add_argument("config", help="a task: frozen YAML config")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + "; applied to every variant")
    p.add_argument("--variants", default="frozen,blind,finetune_lm,prefix_1,prefix_4,scratch",
                   help="comma-separated (default: the paper's six): frozen (the config as is), blind, "
                        "finetune_lm, prefix_1, prefix_4, scratch; also interleaved (frozen.interleaved=2)")
    p.add_argument("--episodes", type=positive, help="binding episodes per cell (default frozen.binding_episodes)")
    p.add_argument("--out", help="output folder (default: <output.dir>/ablate-<name>-<timestamp>)")
    p.set_defaults(handler=ablate)


def caption(args: argparse.Namespace) -> int:
    """``tuneforge caption RUN IMAGE...``: one line per image, its path and caption."""
    model = _image_prompted_model(args.run)
    for image, text in zip(args.images, model.caption(args.images, args.max_new_tokens), strict=True):
        print(f"{image}\t{text}")
    return 0


def ask(args: argparse.Namespace) -> int:
    """``tuneforge ask RUN --image A --text T ...``: the continuation of the interleaved prompt."""
    from tuneforge.tasks.frozen.model import Image

    segments = [Image(value) if kind == "image" else value for kind, value in args.segments or []]
    if not any(isinstance(s, Image) for s in segments):
        raise TuneforgeError("give at least one --image (and --text pieces between them, in order)")
    model = _image_prompted_model(args.run)
    print(model.generate(segments, args.max_new_tokens))
    return 0


def _image_prompted_model(run: str):
    from tuneforge.tasks import open_run

    folder, task = open_run(run)
    if not task.prompts_with_images:
        raise TuneforgeError(f"{run} is a {folder.task} run; caption and ask need a Frozen run (task: frozen)")
    return task.load(run)


def ablate(args: argparse.Namespace) -> int:
    """``tuneforge ablate CONFIG``: every variant trained, then the side-by-side table."""
    from tuneforge.experiments.ablations import ablate as run_ablations

    result = run_ablations(args.config, split_list(args.variants), args.overrides, optional_path(args.out),
                           episodes=args.episodes)
    print((result / "ablations.md").read_text(encoding="utf-8"))
    print(f"ablations: {result}/ablations.md (+ .csv, .json)")
    return 0
