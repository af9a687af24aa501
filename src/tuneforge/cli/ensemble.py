"""``tuneforge ensemble``: trained classifier runs combined into one ensemble run (their probabilities averaged)."""

from __future__ import annotations

import argparse

from tuneforge.cli.common import output_folder
from tuneforge.cli.train import show_ensemble


def add_parser(subparsers) -> None:
    """``ensemble`` and its arguments."""
    p = subparsers.add_parser(
        "ensemble", help="combine trained classifier runs into an ensemble run (probability average)",
        description="Members are text or image classification runs of the same labels, scored on the same "
                    "validation and test split (train them with one data.split_seed, or with `tuneforge train "
                    "CONFIG --seeds N`). The ensemble folder loads, predicts, evaluates, serves, exports and "
                    "distils like a run.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="member run directories (at least 2)")
    p.add_argument("--out", help="the ensemble's folder (default: <first run's folder>/../<name>-ensemble-<time>)")
    p.add_argument("--weights", choices=["equal", "fitted"], default="fitted",
                   help="fitted (default): weights that minimise the validation log-loss (never worse there than "
                        "equal); equal: the plain probability average")
    p.add_argument("--force", action="store_true", help="replace an earlier ensemble in --out")
    p.set_defaults(handler=ensemble)


def ensemble(args: argparse.Namespace) -> int:
    """``tuneforge ensemble RUN RUN ... [--out DIR] [--weights equal|fitted] [--force]``."""
    from tuneforge.experiments.ensemble import build_ensemble

    show_ensemble(build_ensemble(args.runs, output_folder(args.out), args.weights, args.force))
    return 0
