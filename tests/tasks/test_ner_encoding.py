"""Words to model inputs with the real tokenizers: every word starts a token, long texts become windows that
cover every word, and bad settings are refused before any model loads."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

import tuneforge
from tuneforge.assets import resolve_model
from tuneforge.data.tagging import split_words
from tuneforge.errors import ConfigError
from tuneforge.tasks.token_classification.encoding import WordTokenizer, best_window_per_word, windows_of

ENGLISH = "Angela Merkel met Emmanuel Macron's advisers in Paris on 3 May, at Élysée-Palace."
CHINESE = "李明昨天在北京参观了清华大学，随后前往上海浦东新区的华为研究所。" * 8


@pytest.fixture(scope="module", params=["minilm-l6", "gemma3-270m"])
def words_tokenizer(request) -> WordTokenizer:
    return WordTokenizer(AutoTokenizer.from_pretrained(resolve_model(request.param)))


@pytest.mark.parametrize("text", [ENGLISH, CHINESE[:40]])
def test_word_by_word_tokens_are_the_texts_own_tokens(words_tokenizer, text):
    """No token spans two words, and nothing is lost: BERT's word pieces are exactly those of the whole text
    (its pre-tokenizer splits words the same way); Gemma's pieces decode back to the text itself."""
    ids = words_tokenizer.word_ids(text, split_words(text))
    flat = [i for word in ids for i in word]
    tokenizer = words_tokenizer.tokenizer
    assert len(ids) == len(split_words(text)) and all(ids)
    if tokenizer.unk_token == "[UNK]":  # MiniLM's WordPiece
        assert flat == tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        assert tokenizer.decode(flat) == text


def test_a_long_chinese_text_becomes_windows_that_cover_every_word_once(words_tokenizer):
    words = split_words(CHINESE)
    word_ids = words_tokenizer.word_ids(CHINESE, words)
    windows = windows_of(0, word_ids, None, words_tokenizer, max_length=32, stride=8)
    assert len(windows) > 5
    assert all(len(w.input_ids) <= 32 for w in windows)
    assert windows[0].first_word == 0 and windows[-1].first_word + len(windows[-1].word_positions) == len(words)
    for before, after in zip(windows, windows[1:], strict=False):  # neighbours overlap, and always move on
        assert before.first_word < after.first_word < before.first_word + len(before.word_positions)
    chosen = best_window_per_word(windows, len(words))
    assert len(chosen) == len(words) and all(w >= 0 for w, _ in chosen)
    # away from the document's ends, a word is read from a window where it has context on both sides
    for word, (w, position) in list(enumerate(chosen))[4:-4]:
        assert 2 <= position <= len(windows[w].word_positions) - 3, word


def _config(tmp_path, **sections) -> dict:
    conll = tmp_path / "tiny.conll"
    sentences = [f"{a}\tB-PER\n{b}\tI-PER\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n" for a in "李王张刘陈" for b in "明华强伟"]
    conll.write_text("".join(sentences), encoding="utf-8")
    config = {"task": "token_classification", "model": {"name": "gemma3-270m"},
              "data": {"dataset": None, "train_file": str(conll)},
              "output": {"dir": str(tmp_path / "runs"), "progress": False, "tensorboard": False}}
    for key, value in sections.items():
        config.setdefault(key, {}).update(value)
    return config


@pytest.mark.parametrize(("sections", "message"), [
    ({"method": {"name": "prefix_tuning"}}, "virtual tokens"),
    ({"data": {"multi_label": True}}, "one tag"),
    ({"ner": {"patterns": [{"type": "ORDER", "regex": "ORD-(\\d+"}]}}, "ner.patterns[0]"),
    ({"data": {"dataset": "rt-sentences", "train_file": None}}, "not for task 'token_classification'"),
])
def test_settings_that_cannot_work_are_refused_before_training(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        tuneforge.train(_config(tmp_path, **sections))
    assert not (tmp_path / "runs").exists()  # no run folder was started
