"""Instruction-tuning data: rows -> conversations -> token ids with loss only on the assistant's turns.

A row is either a ``messages`` list (``{"role": ..., "content": ...}``) or instruction / optional
input / output columns (``prompt`` / ``response`` also accepted). The model's own chat template
formats every conversation; labels are -100 everywhere except the assistant's tokens (its reply and
the end-of-turn token, so the tuned model learns to stop).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from tuneforge.config import Config, SFTConfig
from tuneforge.data.encodings import announce
from tuneforge.data.formats import check_file, load_table
from tuneforge.data.readers import Problem, convert_text, detect_format, missing_columns_message
from tuneforge.data.splits import resolve_files
from tuneforge.data.validation import count_bad_rows, format_problems, summarize_skipped
from tuneforge.errors import DataError

ROLES = ("system", "user", "assistant")
IGNORE = -100

# ChatML, for tokenizers that ship no chat template of their own.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    source: str  # "file.jsonl:12"


@dataclass
class Conversations:
    train: list[Conversation]
    validation: list[Conversation]
    test: list[Conversation]
    sources: dict[str, str]
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: int = 0
    total_rows: int = 0


def load_conversations(config: Config) -> Conversations:
    """Read, validate and split the conversations a config points at.

    Raises:
        DataError: listing bad rows (unless ``data.on_bad_rows: skip``), or missing columns.
    """
    data = config.data
    files = resolve_files(data)
    given = bool(data.train_file)  # a built-in dataset is prepared as UTF-8 JSON Lines
    read = {split: read_conversations(path, config.sft, data.format if given else "jsonl",
                                      encoding=data.encoding if given else None, sheet=data.sheet if given else None)
            for split, path in files.items()}
    problems = [p for _, found, _ in read.values() for p in found]
    total = sum(n for _, _, n in read.values())
    if problems and data.on_bad_rows == "error":
        raise DataError(format_problems(problems, total))
    builtin = None if data.train_file else f"{data.dataset} (built-in)"
    sources = {split: builtin or str(path) for split, path in files.items()}
    parts = _split({split: rows for split, (rows, _, _) in read.items()}, data.split, config.seed, sources)
    if data.max_examples is not None:
        parts = [_cap(rows, data.max_examples, config.seed) for rows in parts]
    if not parts[0] or not parts[1]:
        raise DataError(f"too few usable conversations in {sources['train']} for training and validation")
    return Conversations(*parts, sources, summarize_skipped(problems), count_bad_rows(problems), total)


def read_conversations(path: Path, sft: SFTConfig, fmt: str | None, encoding: str | None = None,
                       sheet: str | int | None = None) -> tuple[list[Conversation], list[Problem], int]:
    """Every row of one file as a conversation, or as problems naming the file and line."""
    check_file(path)
    table = load_table(path, detect_format(path, fmt), wanted=None, limit=None, encoding=encoding, sheet=sheet)
    announce(table.encoding_note)
    to_messages = _row_reader(str(path), table.columns, sft)
    conversations, problems, total = [], [], 0
    for row in table.rows:
        total += 1
        location = f"{table.unit} {row.number}"
        found = [Problem(str(path), location, kind, message) for kind, message in row.problems]
        if row.values is not None and not found:
            messages, trouble = to_messages(row.values)
            if trouble:
                found.append(Problem(str(path), location, trouble[0], trouble[1]))
            else:
                conversations.append(Conversation(messages, f"{path}:{row.number}"))
        problems += found
    return conversations, problems, total


def _row_reader(file: str, columns: list[str], sft: SFTConfig):
    """A function row -> (messages, problem) for the file's layout: messages, or instruction/response."""
    system = [{"role": "system", "content": sft.system_prompt}] if sft.system_prompt else []
    if sft.messages_column in columns:
        return lambda values: _from_messages(values[sft.messages_column], sft.messages_column, system)
    prompt = _pick_column(columns, sft.prompt_column, "prompt")
    response = _pick_column(columns, sft.response_column, "response")
    missing = [(role, name) for role, name, found in (("prompt", sft.prompt_column, prompt),
                                                       ("response", sft.response_column, response)) if not found]
    if missing:
        message = missing_columns_message(file, columns, missing).replace("data.prompt_column", "sft.prompt_column")
        message = message.replace("data.response_column", "sft.response_column")
        raise DataError(f"{file}: no '{sft.messages_column}' column (sft.messages_column), and\n{message}")
    extra = sft.input_column if sft.input_column in columns else None
    return lambda values: _from_columns(values, prompt, extra, response, system)


def _pick_column(columns: list[str], configured: str, alternative: str) -> str | None:
    return configured if configured in columns else (alternative if alternative in columns else None)


def _from_columns(values: dict, prompt: str, extra: str | None, response: str,
                  system: list[dict]) -> tuple[list[dict] | None, tuple[str, str] | None]:
    user, problem = convert_text(values.get(prompt), prompt)
    if problem:
        return None, problem
    reply, problem = convert_text(values.get(response), response)
    if problem:
        return None, problem
    if extra is not None and values.get(extra) not in (None, ""):
        addition, problem = convert_text(values.get(extra), extra)
        if problem:
            return None, problem
        user = f"{user}\n\n{addition}"
    return system + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}], None


def _from_messages(value: Any, column: str, system: list[dict]) -> tuple[list[dict] | None, tuple[str, str] | None]:
    if not isinstance(value, list) or not value:
        return None, ("wrong_type", f"column {column!r} must be a non-empty list of {{role, content}} messages")
    messages = []
    for position, message in enumerate(value, start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return None, ("wrong_type", f"message {position} in {column!r} needs a role among {', '.join(ROLES)}")
        content, problem = convert_text(message.get("content"), f"{column}[{position}].content")
        if problem:
            return None, problem
        messages.append({"role": message["role"], "content": content})
    if messages[-1]["role"] != "assistant":
        return None, ("wrong_type", f"the conversation in {column!r} must end with an assistant message")
    first = next(m["role"] for m in messages if m["role"] != "system")
    if first != "user":
        return None, ("wrong_type", f"the conversation in {column!r} must start (after any system message) "
                                    "with a user message")
    has_system = messages[0]["role"] == "system"
    return (messages if has_system else system + messages), None


def _split(parts: dict[str, list[Conversation]], fractions: list[float], seed: int,
           sources: dict[str, str]) -> list[list[Conversation]]:
    train = parts["train"]
    if "validation" in parts:
        return [train, parts["validation"], parts.get("test", [])]
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    share_val, share_test = fractions[1], 0.0 if "test" in parts else fractions[2]
    n_val, n_test = round(len(train) * share_val), round(len(train) * share_test)
    for split in ("validation", "test"):
        sources.setdefault(split, f"seeded split of {sources['train']}")
    held_val = [train[i] for i in order[:n_val]]
    held_test = parts.get("test") or [train[i] for i in order[n_val : n_val + n_test]]
    return [[train[i] for i in order[n_val + n_test :]], held_val, held_test]


def _cap(rows: list[Conversation], limit: int, seed: int) -> list[Conversation]:
    return rows if len(rows) <= limit else random.Random(seed).sample(rows, limit)


# --------------------------------------------------------------------------- tokenizing


@dataclass
class EncodeStats:
    kept: int = 0
    truncated: int = 0
    dropped: int = 0


def ensure_chat_template(tokenizer) -> bool:
    """Give a tokenizer without a chat template the ChatML one; True when the model had its own."""
    if getattr(tokenizer, "chat_template", None):
        return True
    tokenizer.chat_template = FALLBACK_TEMPLATE
    return False


def encode(conversation: list[dict], tokenizer, max_length: int,
           on_too_long: str) -> tuple[list[int], list[int], bool] | None:
    """Token ids, labels (-100 outside assistant turns) and whether it was cut; None when dropped.

    Each assistant turn's tokens are found by rendering the conversation up to the turn with the
    generation prompt (where the reply starts) and through the turn (where it ends).
    """
    ids = _render(tokenizer, conversation, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    for turn, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, conversation[:turn], generation_prompt=True)
        start, end = len(prompt), len(_render(tokenizer, conversation[: turn + 1], generation_prompt=False))
        if ids[:start] != prompt:
            raise DataError("the model's chat template rewrites earlier turns, so the reply tokens cannot be "
                            "located; use a model whose template renders conversations incrementally")
        labels[start:end] = ids[start:end]
    truncated = len(ids) > max_length
    if truncated:
        if on_too_long == "drop":
            return None
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE for label in labels):
        return None  # the reply was cut off entirely: nothing to learn from
    return ids, labels, truncated


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    rendered = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                             return_dict=False)
    return list(rendered["input_ids"] if isinstance(rendered, dict) else rendered)


def encode_all(conversations: list[Conversation], tokenizer, max_length: int,
               on_too_long: str) -> tuple[SFTExamples, EncodeStats]:
    stats = EncodeStats()
    ids, labels = [], []
    for conversation in conversations:
        encoded = encode(conversation.messages, tokenizer, max_length, on_too_long)
        if encoded is None:
            stats.dropped += 1
            continue
        stats.kept += 1
        stats.truncated += encoded[2]
        ids.append(encoded[0])
        labels.append(encoded[1])
    return SFTExamples(ids, labels), stats


class SFTExamples(Dataset):
    def __init__(self, input_ids: list[list[int]], labels: list[list[int]]) -> None:
        self.input_ids, self.labels = input_ids, labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index], "index": index}

    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def subset(self, indices) -> SFTExamples:
        return SFTExamples([self.input_ids[i] for i in indices], [self.labels[i] for i in indices])


class SFTCollator:
    """Right-pads ids (pad token) and labels (-100) to the longest example of the batch."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in items)
        ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"])
            labels[row, :n] = torch.tensor(item["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels,
                "index": torch.tensor([item["index"] for item in items])}
