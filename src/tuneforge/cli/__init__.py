"""The ``tuneforge`` command line (``tuneforge = "tuneforge.cli:main"``; also ``python -m tuneforge.cli``).

``app`` builds the parser and handles errors; each command group is one module with its arguments
(``add_parser``) beside its handlers: ``train`` (train, quickstart, compare), ``predict`` (predict, eval),
``compression`` (export, distill, prune, compress), ``generate``, ``frozen`` (caption, ask, ablate),
``serve`` (serve, keys) and ``info`` (init, list, config, prepare).
"""

from tuneforge.cli.app import main

__all__ = ["main"]
