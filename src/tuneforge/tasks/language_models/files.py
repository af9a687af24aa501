"""``tuneforge eval`` for causal-LM and SFT runs: perplexity on new text."""

from __future__ import annotations

from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.tasks.language_models.generator import LanguageModel
from tuneforge.tasks.language_models.recipe import text_perplexity


def evaluate_run(run_dir: str | Path, request) -> str:
    """``tuneforge eval`` for causal-LM and SFT runs: perplexity on new text."""
    if request.data is None:
        raise TuneforgeError("--data is required: the labelled data (or text) to evaluate on")
    model = LanguageModel.from_run(run_dir)
    result = text_perplexity(model, Path(request.data), request.text_column or "text", request.on_bad_rows,
                             request.encoding, request.sheet)
    return (f"perplexity {result['perplexity']:.2f} (loss {result['loss']:.4f} nats/token) over "
            f"{int(result['tokens']):,} tokens of {request.data}")
