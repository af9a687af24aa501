"""Continued pretraining of a causal LM on domain text: packed blocks, next-token loss, perplexity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tuneforge.config import Config
from tuneforge.data.coverage import check_coverage
from tuneforge.data.lm import CausalCollator, Documents, TokenBlocks, evenly_spaced, load_documents, pack_causal
from tuneforge.data.lm import split_blocks as split_into_blocks
from tuneforge.errors import DataError
from tuneforge.extensions import Extension
from tuneforge.runs import Run
from tuneforge.tasks.language_models.recipe import LMData, LMTask, run


def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence[Extension] = ()) -> Run:
    """Domain-adaptive pretraining of a causal LM; validation perplexity is reported before and after."""
    return run(TASK, config, resume, resume_force, extensions)


def prepare(config: Config, tokenizer) -> LMData:
    documents = readable_documents(config, tokenizer)
    return blocks_data(documents, config, lambda texts: pack_causal(texts, tokenizer, config.data.max_length),
                       CausalCollator(tokenizer.pad_token_id or 0), CausalCollator(tokenizer.pad_token_id or 0))


def readable_documents(config: Config, tokenizer) -> Documents:
    """The run's documents, once the tokenizer is known to read them (``data.coverage``)."""
    documents = load_documents(config.data, config.seed)
    check_coverage([d.text for d in documents.train], tokenizer, config.model.name, config.data.allow_unknown_tokens)
    return documents


def blocks_data(documents: Documents, config: Config, pack, collate, collate_eval) -> LMData:
    """Pack each split into blocks (or split the blocks themselves when documents are too few)."""
    def pack_all(docs) -> TokenBlocks:
        return pack([d.text for d in docs]) if docs else TokenBlocks([])

    train, validation, test = (pack_all(docs) for docs in (documents.train, documents.validation, documents.test))
    if documents.split_blocks:  # carve only the held-out splits no file was given for
        shares = [config.data.split[0], 0.0 if len(validation) else config.data.split[1],
                  0.0 if len(test) else config.data.split[2]]
        train, carved_validation, carved_test = split_into_blocks(train, shares, config.seed)
        validation, test = _join(carved_validation, validation), _join(carved_test, test)
    if not len(validation):
        raise DataError(f"no validation text: {documents.sources['validation']} gives no block of tokens; give "
                        "data.validation_file or a data.split with a validation share")
    if config.data.max_examples is not None:
        train = evenly_spaced(train, config.data.max_examples)
    limit = config.lm.eval_blocks
    validation, test = evenly_spaced(validation, limit), evenly_spaced(test, limit)
    notes = [f"{len(documents.train) + len(documents.validation) + len(documents.test):,} documents, "
             f"packed into blocks of {config.data.max_length} tokens ({train.num_tokens():,} training tokens)."]
    if documents.split_blocks:
        notes.append("Too few documents to hold whole ones out: validation and test are a seeded split of blocks.")
    if limit is not None:
        notes.append(f"Held-out perplexity is measured on at most {limit} evenly spaced blocks per split "
                     "(lm.eval_blocks).")
    if documents.skipped_rows:
        reasons = ", ".join(f"{n} {kind}" for kind, n in documents.skipped.items())
        notes.append(f"{documents.skipped_rows:,} documents/rows skipped (data.on_bad_rows: skip): {reasons}.")
    counts = {"train blocks": len(train), "validation blocks": len(validation), "test blocks": len(test)}
    return LMData(train, validation, test, collate, collate_eval, train.lengths(), documents.sources, notes, counts)


def _join(first: TokenBlocks, second: TokenBlocks) -> TokenBlocks:
    starts = None
    if first.word_starts is not None or second.word_starts is not None:
        starts = (first.word_starts or []) + (second.word_starts or [])
    return TokenBlocks(first.input_ids + second.input_ids, starts)


TASK = LMTask("causal_lm", "AutoModelForCausalLM", "CAUSAL_LM", prepare)
