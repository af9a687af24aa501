"""Rule entities: regexes and dictionaries from ner.patterns, their errors, and merging with the model's."""

import random
import re

import pytest

from tuneforge.data.tagging import Entity
from tuneforge.errors import ConfigError
from tuneforge.tasks.token_classification.patterns import (
    Rule,
    RulePatterns,
    compile_patterns,
    dictionary_regex,
    merge,
)

AMOUNTS = [{"type": "ORDER", "regex": r"ORD-\d{6}"}, {"type": "AMOUNT", "regex": r"¥\d+(\.\d\d)?"},
           {"type": "AMOUNT", "regex": r"\d+元"}]
PRODUCTS = "华为\n华为Mate 60\n华为Mate 60 Pro\n小米手环\n\n  iPhone 15  \n华为\n"


def _found(rules: RulePatterns, text: str) -> list[tuple[str, str]]:
    return [(text[e.start:e.end], e.type) for e in rules.find(text)]


def test_order_numbers_and_amounts():
    rules = compile_patterns(AMOUNTS, ".")
    text = "订单ORD-123456已付款¥99.50，另付30元运费，ORD-12345不算"
    assert _found(rules, text) == [("ORD-123456", "ORDER"), ("¥99.50", "AMOUNT"), ("30元", "AMOUNT")]
    start = text.index("¥")
    assert rules.find(text)[1] == Entity(start, start + 6, "AMOUNT")
    assert rules.types == ["ORDER", "AMOUNT"] and len(rules) == 3


def test_chinese_product_dictionary_longest_first_with_ascii_word_boundaries(tmp_path):
    (tmp_path / "products.txt").write_text(PRODUCTS, encoding="utf-8")
    rules = compile_patterns([{"type": "PRODUCT", "file": "products.txt"}], tmp_path)
    text = "我买了华为Mate 60 Pro和小米手环，还有华为平板；买iPhone 15。不是iPhone 15s，也不是华为Mate 600"
    assert _found(rules, text) == [("华为Mate 60 Pro", "PRODUCT"), ("小米手环", "PRODUCT"), ("华为", "PRODUCT"),
                                   ("iPhone 15", "PRODUCT"), ("华为", "PRODUCT")]
    # ASCII names do not match inside a longer ASCII word
    assert _found(rules, "xiPhone 15 and iPhone 15") == [("iPhone 15", "PRODUCT")]


def test_dictionary_in_gb18030_is_detected_or_taken_as_set(tmp_path):
    (tmp_path / "gbk.txt").write_bytes("小米手环\n华为平板\n荣耀笔记本电脑\n".encode("gb18030"))
    for entry in ({"type": "PRODUCT", "file": str(tmp_path / "gbk.txt")},
                  {"type": "PRODUCT", "file": "gbk.txt", "encoding": "gb18030"}):
        rules = compile_patterns([entry], tmp_path)
        assert _found(rules, "荣耀笔记本电脑和华为平板") == [("荣耀笔记本电脑", "PRODUCT"), ("华为平板", "PRODUCT")]


def test_dictionary_trie_matches_a_brute_force_leftmost_longest_scan():
    generator = random.Random(3)
    alphabet = "甲乙丙丁"
    for _ in range(30):
        names = {"".join(generator.choices(alphabet, k=generator.randint(1, 4))) for _ in range(8)}
        text = "".join(generator.choices(alphabet, k=40))
        rules = RulePatterns((_dictionary_rule(names),))
        expected, i = [], 0
        while i < len(text):
            longest = max((n for n in names if text.startswith(n, i)), key=len, default=None)
            if longest:
                expected.append(Entity(i, i + len(longest), "X"))
            i += len(longest) if longest else 1
        assert rules.find(text) == expected


def _dictionary_rule(names):
    return Rule("X", re.compile(dictionary_regex(names)), "test")


def test_a_large_dictionary_compiles_and_matches():
    generator = random.Random(0)
    names = ["".join(generator.choices("的一是在不了有和人这中大为上个国我以要他", k=generator.randint(2, 8)))
             for _ in range(5000)]
    rules = RulePatterns((_dictionary_rule(names),))
    # 啊 is in no name, so the longest name starting after it is the one put there
    assert rules.find("啊" + names[1234] + "啊") == [Entity(1, 1 + len(names[1234]), "X")]


def test_overlapping_rules_longer_wins_then_earlier_rule():
    rules = compile_patterns([{"type": "NUMBER", "regex": r"\d+"}, {"type": "AMOUNT", "regex": r"\d+元"},
                              {"type": "CODE", "regex": r"[A-Z]\d"}], ".")
    assert _found(rules, "共30元") == [("30元", "AMOUNT")]
    assert _found(rules, "A1") == [("A1", "CODE")]  # "1" alone is shorter
    same = compile_patterns([{"type": "FIRST", "regex": "ab"}, {"type": "SECOND", "regex": "ab"}], ".")
    assert _found(same, "ab") == [("ab", "FIRST")]


@pytest.mark.parametrize(("patterns", "message"), [
    ([{"type": "ORDER", "regex": "ORD-(\\d{6}"}], r"ner.patterns\[0\]: regex 'ORD-\(\\\\d\{6\}' does not compile: "
                                                  "missing \\), unterminated subpattern at position 4"),
    ([AMOUNTS[0], {"type": "X", "regx": "a"}], r"ner.patterns\[1\]: unknown key 'regx' \(did you mean 'regex'\?\)"),
    ([{"regex": "a"}], r"ner.patterns\[0\]: 'type' is missing"),
    ([{"type": "X", "regex": "a", "file": "f.txt"}], r"ner.patterns\[0\] needs exactly one of 'regex'"),
    ([{"type": "X"}], r"ner.patterns\[0\] needs exactly one of 'regex'"),
    ([{"type": "X", "regex": r"\d*"}], r"matches the empty string"),
    ([{"type": "X", "file": "nowhere.txt"}], r"ner.patterns\[0\]: dictionary file nowhere.txt not found"),
    (["ORD-\\d{6}"], r"ner.patterns\[0\] must be a mapping"),
    ({"type": "X", "regex": "a"}, r"ner.patterns must be a list"),
])
def test_config_mistakes_name_the_entry(tmp_path, patterns, message):
    with pytest.raises(ConfigError, match=message):
        compile_patterns(patterns, tmp_path)


def test_empty_or_malformed_dictionary_files_are_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"ner.patterns\[0\]: dictionary file empty.txt has no entries"):
        compile_patterns([{"type": "X", "file": "empty.txt"}], tmp_path)
    (tmp_path / "csv.txt").write_text("名字\n" + "，".join(["小米手环"] * 60) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 2 of csv.txt is 299 characters long"):
        compile_patterns([{"type": "X", "file": "csv.txt"}], tmp_path)
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\xff\xfe\x00" * 50)
    with pytest.raises(ConfigError, match=r"ner.patterns\[0\]: .*binary.txt"):
        compile_patterns([{"type": "X", "file": "binary.txt"}], tmp_path)


def test_no_patterns_is_no_rules():
    assert len(compile_patterns(None, ".")) == 0
    assert compile_patterns([], ".").find("ORD-123456") == []


def test_merge_rules_win_over_overlapping_model_entities():
    text = "张三的订单ORD-123456共¥99.50"
    rules = compile_patterns(AMOUNTS, ".")
    model = [(Entity(0, 2, "PER"), 0.93),  # kept: no rule overlaps it
             (Entity(5, 9, "PRODUCT"), 0.81),  # "ORD-" inside the order number: the rule wins
             (Entity(19, 21, "MISC"), 0.99)]  # ".5" inside the amount, however sure the model is
    merged = rules.apply(text, model)
    assert merged == [
        {"type": "PER", "start": 0, "end": 2, "text": "张三", "score": 0.93, "source": "model"},
        {"type": "ORDER", "start": 5, "end": 15, "text": "ORD-123456", "score": 1.0, "source": "rule"},
        {"type": "AMOUNT", "start": 16, "end": 22, "text": "¥99.50", "score": 1.0, "source": "rule"},
    ]
    assert merge(model, [], text)[1]["source"] == "model"  # without rules the model's entities stand


def test_merge_overlapping_model_entities_keep_the_higher_score():
    text = "New York City"
    merged = merge([(Entity(0, 8, "LOC"), 0.6), (Entity(4, 13, "ORG"), 0.7)], [], text)
    assert [(m["text"], m["type"]) for m in merged] == [("York City", "ORG")]
