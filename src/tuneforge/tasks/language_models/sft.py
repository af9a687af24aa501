"""Instruction tuning (SFT) of a causal LM: chat-formatted conversations, loss on assistant tokens only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tuneforge.config import Config
from tuneforge.data.chat import SFTCollator, encode_all, ensure_chat_template, load_conversations
from tuneforge.data.coverage import check_coverage
from tuneforge.errors import DataError
from tuneforge.extensions import Extension
from tuneforge.runs import Run
from tuneforge.tasks.language_models.recipe import LMData, LMTask, run

SAMPLE_REPLIES = 8  # held-out prompts answered in the report


def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence[Extension] = ()) -> Run:
    """Tune a causal LM to answer like the training conversations; held-out response perplexity reported."""
    return run(TASK, config, resume, resume_force, extensions)


def prepare(config: Config, tokenizer) -> LMData:
    conversations = load_conversations(config)
    texts = [message["content"] for conversation in conversations.train for message in conversation.messages]
    check_coverage(texts, tokenizer, config.model.name, config.data.allow_unknown_tokens)
    own_template = ensure_chat_template(tokenizer)
    splits, notes = {}, []
    for split in ("train", "validation", "test"):
        examples, stats = encode_all(getattr(conversations, split), tokenizer, config.data.max_length,
                                     config.sft.on_too_long)
        if split != "train" and config.lm.eval_blocks is not None:
            examples = examples.subset(range(min(len(examples), config.lm.eval_blocks)))
        splits[split] = examples
        if stats.truncated or stats.dropped:
            notes.append(f"{split}: {stats.truncated:,} conversations truncated to {config.data.max_length} tokens, "
                         f"{stats.dropped:,} dropped (sft.on_too_long: {config.sft.on_too_long}; a reply cut off "
                         "entirely is always dropped).")
    if not len(splits["train"]) or not len(splits["validation"]):
        raise DataError(f"no conversation fits in data.max_length={config.data.max_length} tokens with its reply: "
                        "raise data.max_length")
    notes.insert(0, "Conversations formatted with the model's chat template; the loss covers assistant turns only."
                 if own_template else "The tokenizer has no chat template: conversations use ChatML.")
    if conversations.skipped_rows:
        reasons = ", ".join(f"{n} {kind}" for kind, n in conversations.skipped.items())
        notes.append(f"{conversations.skipped_rows:,} rows skipped (data.on_bad_rows: skip): {reasons}.")
    collate = SFTCollator(tokenizer.pad_token_id or 0)
    counts = {split: len(examples) for split, examples in splits.items()}
    held_out = conversations.test or conversations.validation
    samples = [(c.messages[:-1], c.messages[-1]["content"]) for c in held_out[:SAMPLE_REPLIES]]
    return LMData(splits["train"], splits["validation"], splits["test"], collate, collate,
                  splits["train"].lengths(), conversations.sources, notes, counts, samples)


TASK = LMTask("sft", "AutoModelForCausalLM", "CAUSAL_LM", prepare, grouped_batches=True, chat=True)
