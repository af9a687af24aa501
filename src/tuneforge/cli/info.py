"""``tuneforge init``, ``list``, ``config`` and ``prepare``: starting points and what can be chosen."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from tuneforge.errors import TuneforgeError

# `tuneforge list WHAT` -> (module, registry): imported on use, since the model registry pulls in more
_REGISTRIES = {
    "models": ("tuneforge.assets", "MODELS"),
    "datasets": ("tuneforge.assets", "DATASETS"),
    "methods": ("tuneforge.methods", "METHODS"),
    "tasks": ("tuneforge.tasks", "TASKS"),
}


def add_parser(subparsers) -> None:
    """``init``, ``list``, ``config`` and ``prepare`` and their arguments."""
    from tuneforge.tasks import TASKS

    starters = [entry.name for entry in TASKS if entry.value.starter is not None]
    p = subparsers.add_parser("init", help="write a commented starter config inferred from a data file")
    p.add_argument("--task", default=starters[0], choices=starters,  # the first registered: text classification
                   help="the task to write a config for (default: %(default)s)")
    p.add_argument("--data", required=True, help="your labelled data file (images: a folder of class folders, "
                                                 "a table of image paths or an IDX file)")
    p.add_argument("--out", help="write here instead of standard output")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--encoding", help="text encoding of --data (utf-8, gb18030, big5, utf-16...); default: detected")
    p.add_argument("--sheet", help="Excel --data: the sheet to read, by name or number from 1 (default: the first)")
    p.set_defaults(handler=init)

    p = subparsers.add_parser("list", help="list registered models, datasets, methods or tasks")
    p.add_argument("what", choices=list(_REGISTRIES))
    p.set_defaults(handler=list_entries)

    p = subparsers.add_parser("config", help="every config key with its type, default and meaning")
    p.add_argument("--markdown", action="store_true", help="as the Markdown table of docs/configuration.md")
    p.set_defaults(handler=config)

    p = subparsers.add_parser("prepare", help="convert/prepare built-in models and datasets into the cache now")
    p.add_argument("names", nargs="*", help="model or dataset names (default: all)")
    p.set_defaults(handler=prepare)


def init(args: argparse.Namespace) -> int:
    """``tuneforge init --task T --data FILE``: the task's starter config, to standard output or --out."""
    from tuneforge.tasks import TASKS

    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise TuneforgeError(f"--out {out}: a folder; name the config file to write, e.g. {out / 'config.yaml'}")
    if out is not None and out.exists() and not args.force:
        raise TuneforgeError(f"{out} exists; pass --force to overwrite it")
    text = TASKS.get(args.task).starter_config(Path(args.data), encoding=args.encoding, sheet=args.sheet)
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as error:
            raise TuneforgeError(f"--out {out}: cannot write it ({error.strerror}); check the folder exists and is "
                                 "writable") from None
        print(f"wrote {out}; train with: tuneforge train {out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def list_entries(args: argparse.Namespace) -> int:
    """``tuneforge list WHAT``: one line per entry, its name and description."""
    module, name = _REGISTRIES[args.what]
    registry = getattr(importlib.import_module(module), name)
    width = max(len(entry.name) for entry in registry)
    for entry in registry:
        print(f"{entry.name:<{width}}  {entry.description}")
    return 0


def config(args: argparse.Namespace) -> int:
    """``tuneforge config``: every key with its type, default and meaning (``--markdown``: the docs table)."""
    from tuneforge.config import config_markdown, describe_fields

    if args.markdown:
        print(config_markdown(), end="")
        return 0
    for key, kind, default, help_text in describe_fields():
        print(f"{key}  ({kind}; default {default})\n    {help_text}")
    return 0


def prepare(args: argparse.Namespace) -> int:
    """``tuneforge prepare [NAME...]``: models and datasets converted into the cache, with where they are."""
    from tuneforge.assets import DATASETS, MODELS, dataset_file

    names = args.names or [e.name for e in MODELS] + [e.name for e in DATASETS]
    for name in names:
        if name in MODELS:
            print(f"{name}: {MODELS.get(name).locate()}")
        else:
            print(f"{name}: {dataset_file(name)}")
    return 0
