"""Library logging for tuneforge's processes: the CLI, the server's workers and spawned training processes.

A low module on purpose: ``compare``, ``serving`` and the Frozen ablations call it in fresh processes, and
importing it from the CLI would make those layers depend on the command line.
"""

from __future__ import annotations


def quiet_libraries() -> None:
    """Keep the terminal for tuneforge's own progress: library load reports and deprecations are noise here."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()  # "Loading weights" bars on every model load
