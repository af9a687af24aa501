"""Instruction data: conversations from rows, chat-template tokens, loss only on the assistant's turns."""

import json

import pytest
from transformers import AutoTokenizer

from tuneforge.assets import resolve_model
from tuneforge.config import SFTConfig, config_from_dict
from tuneforge.data.chat import IGNORE, encode, encode_all, load_conversations, read_conversations
from tuneforge.errors import DataError


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))


def labelled_text(tokenizer, ids, labels):
    return tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != IGNORE])


def test_prompt_tokens_carry_minus_100(tokenizer):
    conversation = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]
    ids, labels, truncated = encode(conversation, tokenizer, 512, "truncate")
    assert not truncated
    assert labelled_text(tokenizer, ids, labels) == "Blue.<|im_end|>\n"  # the reply and its end-of-turn
    first = next(i for i, label in enumerate(labels) if label != IGNORE)
    assert all(label == IGNORE for label in labels[:first])
    assert "Name a colour." in tokenizer.decode(ids[:first])


def test_every_assistant_turn_is_learned(tokenizer):
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"},
                    {"role": "assistant", "content": "Goodbye."}]
    ids, labels, _ = encode(conversation, tokenizer, 512, "truncate")
    assert labelled_text(tokenizer, ids, labels) == "Hello.<|im_end|>\nGoodbye.<|im_end|>\n"


def test_too_long_is_truncated_or_dropped_and_counted(tokenizer):
    from tuneforge.data.chat import Conversation

    long = Conversation([{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}], "x:1")
    short = Conversation([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok " * 40}], "x:2")
    examples, stats = encode_all([long, short], tokenizer, 60, "truncate")
    # the long prompt leaves no room for its reply: dropped; the short one loses the end of its reply
    assert (stats.kept, stats.truncated, stats.dropped) == (1, 1, 1) and len(examples.input_ids[0]) == 60
    _, stats = encode_all([long, short], tokenizer, 60, "drop")
    assert (stats.kept, stats.dropped) == (0, 2)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_instruction_input_output_and_prompt_response_columns(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Translate.", "input": "chat", "output": "cat"}])
    [conversation], problems, _ = read_conversations(path, SFTConfig(), None)
    assert not problems
    assert conversation.messages == [{"role": "user", "content": "Translate.\n\nchat"},
                                     {"role": "assistant", "content": "cat"}]
    path = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "2+2?", "response": "4"}])
    [conversation], _, _ = read_conversations(path, SFTConfig(system_prompt="Answer with a number."), None)
    assert [m["role"] for m in conversation.messages] == ["system", "user", "assistant"]


def test_bad_rows_are_named(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            {"messages": [{"role": "user", "content": "no reply"}]},
            {"messages": [{"role": "wizard", "content": "?"}, {"role": "assistant", "content": "!"}]},
            {"messages": "not a list"}]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    conversations, problems, total = read_conversations(path, SFTConfig(), None)
    assert len(conversations) == 1 and total == 4
    shown = [str(p) for p in problems]
    assert "chat.jsonl, line 2" in shown[0] and "end with an assistant message" in shown[0]
    assert "line 3" in shown[1] and "role" in shown[1]
    assert "line 4" in shown[2]


def test_missing_columns_say_which_setting(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError, match="sft.prompt_column"):
        read_conversations(path, SFTConfig(), None)


def test_builtin_instruction_set_is_split():
    config = config_from_dict({"task": "sft", "data": {"dataset": "rt-sentiment-json", "max_examples": 50}})
    conversations = load_conversations(config)
    assert len(conversations.train) == 50 and len(conversations.validation) == 50
    answer = json.loads(conversations.train[0].messages[-1]["content"])
    assert set(answer) == {"sentiment", "strength"}
