"""Domain-adaptive pretraining of an encoder with masked-language-model loss (BERT-style masking).

The saved ``model/`` folder is an ordinary HF masked-LM folder: a later classification run starts
from it with ``model.name: <run>/model``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tuneforge.config import Config
from tuneforge.data.lm import MaskingCollator, pack_masked
from tuneforge.extensions import Extension
from tuneforge.runs import Run
from tuneforge.tasks.language_models.causal_lm import blocks_data, readable_documents
from tuneforge.tasks.language_models.recipe import LMData, LMTask, run


def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence[Extension] = ()) -> Run:
    """Continue pretraining an encoder on domain text; masked-token perplexity before and after."""
    return run(TASK, config, resume, resume_force, extensions)


def prepare(config: Config, tokenizer) -> LMData:
    documents = readable_documents(config, tokenizer)
    collate_eval = MaskingCollator(tokenizer, config.lm, fixed_seed=config.seed)  # same masks every evaluation
    data = blocks_data(documents, config, lambda texts: pack_masked(texts, tokenizer, config.data.max_length),
                       MaskingCollator(tokenizer, config.lm), collate_eval)
    share = "whole words" if config.lm.whole_word_mask else "tokens"
    data.notes.append(f"{config.lm.mlm_probability:.0%} of {share} selected; of those "
                      f"{config.lm.mask_replace_prob:.0%} -> [MASK], {config.lm.random_replace_prob:.0%} -> random "
                      "token, the rest unchanged.")
    return data


TASK = LMTask("masked_lm", "AutoModelForMaskedLM", None, prepare)
