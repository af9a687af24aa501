"""Entity scores, error kinds, type confusion and the report section, on small cases worked out by hand."""

import json

import pytest

from tuneforge.data.tagging import Entity
from tuneforge.evaluation.report import write_report
from tuneforge.tasks.token_classification.scoring import (
    ERROR_KINDS,
    entity_errors,
    entity_scores,
    report_section,
    type_confusion,
)

# English, one word per tag. Gold PER 2, LOC 1, ORG 1; predicted PER 3, LOC 1, MISC 1; right: John, Tim Cook.
EN_GOLD = [["B-PER", "O", "O", "B-LOC", "I-LOC"],  # John lives in New York
           ["B-ORG", "O", "B-PER", "I-PER"],  # Apple hired Tim Cook
           ["O", "O"]]  # It rained
EN_PRED = [["B-PER", "O", "O", "B-LOC", "O"],  # "New" alone
           ["B-PER", "O", "B-PER", "I-PER"],  # Apple as a person
           ["B-MISC", "O"]]  # "It" out of nowhere


def test_english_scores_by_hand():
    scores = entity_scores(EN_GOLD, EN_PRED)
    assert scores["precision"] == pytest.approx(2 / 5)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert scores["accuracy"] == pytest.approx(8 / 11)  # 4/5 + 3/4 + 1/2 tokens right
    assert (scores["num_examples"], scores["num_entities"], scores["num_predicted"]) == (3, 4, 5)
    per_type = scores["per_type"]
    assert list(per_type) == ["LOC", "MISC", "ORG", "PER"]
    assert per_type["PER"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert per_type["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # macro: mean over the four types seen in gold or predictions; only PER scores
    assert scores["macro_f1"] == pytest.approx(0.8 / 4)
    assert scores["macro_precision"] == pytest.approx((2 / 3) / 4)
    assert scores["macro_recall"] == pytest.approx(1 / 4)
    json.dumps(scores)  # plain Python all the way down, for metrics.json


def test_chinese_characters_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]]  # 张三在北京工作
    pred = [["B-PER", "I-PER", "O", "B-ORG", "I-ORG", "O", "O"]]  # 北京 read as an organisation
    scores = entity_scores(gold, pred)
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert scores["accuracy"] == pytest.approx(5 / 7)


def test_strict_mode_a_lone_i_tag_is_no_entity_on_either_side():
    # Gold "O I-PER I-PER O": no entity, so the prediction of one is spurious and nothing is missed.
    scores = entity_scores([["O", "I-PER", "I-PER", "O"]], [["O", "B-PER", "I-PER", "O"]])
    assert (scores["num_entities"], scores["num_predicted"], scores["precision"]) == (0, 1, 0.0)
    # A predicted lone I- is not an entity: the gold one is missed (lenient scoring would give 1.0).
    scores = entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])
    assert (scores["num_predicted"], scores["recall"], scores["f1"]) == (0, 0.0, 0.0)
    # I- of another type ends the entity: B-PER alone is a one-word PER, which is not the gold two-word PER.
    scores = entity_scores([["B-PER", "I-PER"]], [["B-PER", "I-LOC"]])
    assert (scores["num_predicted"], scores["f1"]) == (1, 0.0)


def test_no_entities_anywhere_scores_zero_not_nan():
    scores = entity_scores([["O", "O"]], [["O", "O"]])
    assert (scores["f1"], scores["macro_f1"], scores["accuracy"], scores["per_type"]) == (0.0, 0.0, 1.0, {})


@pytest.mark.parametrize(("gold", "pred", "message"), [
    ([["O"]], [["O"], ["O"]], "1 gold sentences but 2"),
    ([["O", "O"]], [["O"]], "sentence 0: 2 gold tags but 1"),
    ([["O"]], [["X"]], "'X' is not BIO"),
    ([["B-"]], [["O"]], "'B-' is not BIO"),
])
def test_malformed_tags_are_refused(gold, pred, message):
    with pytest.raises(ValueError, match=message):
        entity_scores(gold, pred)


# The same disagreements as character spans, plus the kinds the tag examples above do not show.
TEXTS = ["John lives in New York", "Apple hired Tim Cook", "It rained", "Paris is big", "Bank of China Tower",
         "张三李四来了", "他在北京工作"]
GOLD = [{Entity(0, 4, "PER"), Entity(14, 22, "LOC")}, {Entity(0, 5, "ORG"), Entity(12, 20, "PER")}, set(),
        {Entity(0, 5, "LOC")}, {Entity(0, 13, "ORG")}, {Entity(0, 2, "PER"), Entity(2, 4, "PER")},
        {Entity(2, 4, "LOC")}]
PRED = [{Entity(0, 4, "PER"), Entity(14, 17, "LOC")}, {Entity(0, 5, "PER"), Entity(12, 20, "PER")},
        {Entity(0, 2, "MISC")}, set(), {Entity(8, 19, "LOC")}, {Entity(0, 4, "PER")}, {Entity(2, 4, "ORG")}]


def test_every_error_kind_by_hand():
    errors = entity_errors(GOLD, PRED, TEXTS)
    assert errors["counts"] == {"missed": 1, "spurious": 1, "wrong_type": 2, "wrong_boundary": 3,
                                "wrong_type_and_boundary": 1}
    assert errors["total"] == 8
    assert errors["examples"]["wrong_boundary"][0] == {
        "sentence": 0, "text": TEXTS[0],
        "gold": {"text": "New York", "type": "LOC", "start": 14, "end": 22},
        "predicted": {"text": "New", "type": "LOC", "start": 14, "end": 17}}
    # one prediction across two gold names is two boundary errors, one per gold name
    two = [e for e in errors["examples"]["wrong_boundary"] if e["sentence"] == 5]
    assert [(e["gold"]["text"], e["predicted"]["text"]) for e in two] == [("张三", "张三李四"), ("李四", "张三李四")]
    assert errors["examples"]["wrong_type"][1]["predicted"] == {"text": "北京", "type": "ORG", "start": 2, "end": 4}
    assert errors["examples"]["missed"][0]["predicted"] is None
    assert errors["examples"]["spurious"][0]["gold"] is None
    mixed = errors["examples"]["wrong_type_and_boundary"][0]
    assert (mixed["gold"]["text"], mixed["predicted"]["text"]) == ("Bank of China", "China Tower")
    json.dumps(errors)


def test_examples_are_capped_but_counts_are_not():
    errors = entity_errors(GOLD, PRED, TEXTS, max_examples=1)
    assert errors["counts"]["wrong_boundary"] == 3
    assert all(len(errors["examples"][kind]) <= 1 for kind in ERROR_KINDS)


def test_a_perfect_prediction_has_no_errors():
    errors = entity_errors(GOLD, GOLD, TEXTS)
    assert errors["total"] == 0 and all(not examples for examples in errors["examples"].values())


def test_type_confusion_by_exact_span():
    table = type_confusion(GOLD, PRED)
    assert table["labels"] == ["LOC", "MISC", "ORG", "PER", "(none)"]
    rows = dict(zip(table["labels"], table["matrix"], strict=True))
    # exact spans: John PER/PER, Tim Cook PER/PER, Apple ORG/PER, 北京 LOC/ORG.
    # gold only: New York LOC, Paris LOC, Bank of China ORG, 张三 PER, 李四 PER.
    # predicted only: New LOC, It MISC, China Tower LOC, 张三李四 PER.
    assert rows["LOC"] == [0, 0, 1, 0, 2]
    assert rows["MISC"] == [0, 0, 0, 0, 0]
    assert rows["ORG"] == [0, 0, 0, 1, 1]
    assert rows["PER"] == [0, 0, 0, 2, 2]
    assert rows["(none)"] == [2, 1, 0, 1, 0]


def test_report_section_renders_chinese_and_escapes_markdown(tmp_path):
    texts = [*TEXTS[:-1], "他在北京|工作*"]  # a pipe would end a table cell, a star start emphasis
    scores = entity_scores(EN_GOLD, EN_PRED)
    section = report_section(scores, entity_errors(GOLD, PRED, texts), type_confusion(GOLD, PRED))
    assert "| PER | 0.667 | 1.000 | 0.800 | 2 |" in section
    assert "| entity F1 (micro) | 0.4444 |" in section
    assert "| gold \\\\ predicted | LOC | MISC | ORG | PER | (none) |" in section
    assert "| (none) | 2 | 1 | 0 | 1 | 0 |" in section
    assert "| wrong\\_boundary | 3 |" in section
    assert "| 【张三李四】来了 | 张三 (PER) | 张三李四 (PER) |" in section
    assert "他在【北京】\\|工作\\* | 北京 (LOC) | 北京 (ORG) |" in section
    assert "| 【Paris】 is big | Paris (LOC) | — |" in section
    assert "\\u" not in section
    report = write_report(tmp_path / "report.md", title="run", summary={}, metrics={"f1": 0.4},
                          extra_sections={"Entities": section})
    assert "| 【张三李四】来了 |" in report.read_text(encoding="utf-8")


def test_report_section_cuts_long_sentences_around_the_error():
    text = "x" * 100 + " Berlin " + "y" * 100
    errors = entity_errors([{Entity(101, 107, "LOC")}], [set()], [text])
    section = report_section(entity_scores([["B-LOC"]], [["O"]]), errors)
    row = next(line for line in section.splitlines() if "【Berlin】" in line)
    assert row.startswith("| …" + "x" * 39 + " 【Berlin】 " + "y" * 39 + "… |")
