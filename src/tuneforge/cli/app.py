"""The ``tuneforge`` command: a thin layer of argument parsing over the Python API.

Each command module adds its subcommands (``add_parser``) beside their handlers. User mistakes
(``TuneforgeError``) print one ``error:`` line and exit with code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneforge.cli import compression, ensemble, frozen, generate, info, predict, serve, train
from tuneforge.errors import TuneforgeError
from tuneforge.logging_setup import quiet_libraries

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
  tuneforge train configs/quickstart.yaml --seeds 3      3 seeds on one split, then their ensemble
  tuneforge ensemble runs/a-2026... runs/b-2026... --weights equal   runs combined (probability average)
"""

# The command groups, in the order `tuneforge --help` lists them.
COMMAND_MODULES = (train, predict, compression, ensemble, generate, frozen, serve, info)


def main(argv: list[str] | None = None) -> int:
    """Run one ``tuneforge`` command; returns the exit code (2 for a user mistake, 130 on Ctrl-C)."""
    parser = build_parser()
    args = parse_args(parser, argv)
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


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, each added by its module."""
    parser = argparse.ArgumentParser(
        prog="tuneforge",
        description="Fine-tune pretrained models into specialists for your own data.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(subparsers)
    return parser


# Options whose value is optional (``nargs="?"``), and what each means when given alone: ``train CONFIG --resume
# output.dir=X`` is the newest run plus an override, not a run directory named "output.dir=X".
OPTIONAL_VALUES = {"resume": "latest"}


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, with positionals that argparse leaves over after an option put where they belong.

    argparse fills a trailing ``nargs="*"`` or ``"?"`` positional at the first run of positionals, so
    ``train CONFIG --resume RUN train.epochs=3`` leaves ``train.epochs=3`` unclaimed, and
    ``generate MODEL --chat "hi"`` leaves the prompt. An optional value that is an override, not an existing
    path (``--resume train.epochs=3``), is an override too; overrides keep their command-line order (the last wins).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    overrides = getattr(args, "overrides", None)
    if isinstance(overrides, list):
        moved = [item for item in extra if is_override(item)]
        for option, alone in OPTIONAL_VALUES.items():
            value = getattr(args, option, None)
            if isinstance(value, str) and is_override(value) and not Path(value).exists():
                moved.append(value)
                setattr(args, option, alone)
        args.overrides = in_command_line_order([*overrides, *moved], argv)
        extra = [item for item in extra if item not in moved]
    if extra and getattr(args, "prompt", "") is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.prompt, extra = extra[0], []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def in_command_line_order(items: list[str], argv: list[str]) -> list[str]:
    """``items`` sorted by where they stand in ``argv`` (``--resume=x=1`` stands for ``x=1``)."""
    def position(item: str) -> int:
        return next((i for i, token in enumerate(argv) if token == item or token.endswith(f"={item}")), len(argv))

    return sorted(items, key=position)


def is_override(item: str) -> bool:
    """``KEY=VALUE`` on the command line (an option, ``--x=1``, is not)."""
    return "=" in item and not item.startswith("-")
