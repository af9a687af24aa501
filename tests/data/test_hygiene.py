"""Data that trains but is probably not what the user meant: each case is warned about on the console (one
``warning:`` line), carried on the splits and shown in the run's report.md and metrics.json."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from tuneforge.config import DataConfig
from tuneforge.data.images import read_images
from tuneforge.data.splits import load_splits, resolve_files
from tuneforge.errors import DataError

DOCS = Path(__file__).resolve().parents[2] / "docs"

# Customer-service tickets of an online shop, as its agents labelled them by hand: the refund class was typed
# three ways ("Refund", "refund " with a trailing space, full-width "ＲＥＦＵＮＤ" from a Chinese input method).
TICKETS = [
    ("耳机左边没有声音，我要退款", "Refund"),
    ("I was charged twice for the same order, please refund one of them", "Refund"),
    ("衣服尺码不合适，已经寄回去了，什么时候退钱？", "Refund"),
    ("The blender arrived with a cracked jug, I want my money back", "Refund"),
    ("订单取消了三天还没收到退款", "Refund"),
    ("Please refund my order, I cancelled it before it shipped", "Refund"),
    ("买贵了，同款今天降价一百块，能退差价吗", "Refund"),
    ("退货已经签收一周了，款项还没有原路返回", "Refund"),
    ("My refund still hasn't arrived after two weeks", "refund "),
    ("鞋子开胶了，申请退款被拒绝，为什么？", "refund "),
    ("How long does a refund to a credit card take?", "refund "),
    ("退款申请提交后一直显示处理中", "ＲＥＦＵＮＤ"),
    ("快递显示已签收，但我根本没收到包裹", "物流"),
    ("The tracking number has not updated since Monday", "物流"),
    ("为什么发货这么慢，下单五天了还没发出", "物流"),
    ("Can you ship to Hong Kong? The checkout page says unavailable", "物流"),
    ("快递员没打电话就把包裹放在了小区门口", "物流"),
    ("My parcel was delivered to the wrong address", "物流"),
    ("能不能改成顺丰发货，我着急用", "物流"),
    ("物流信息一直停在广州转运中心", "物流"),
    ("充电器用了两天就不充电了", "质量"),
    ("The zipper on the backpack broke the first time I used it", "质量"),
    ("杯子有股很重的塑料味，洗了好几遍还有", "质量"),
    ("Screen has a dead pixel in the top left corner", "质量"),
    ("收到的苹果有一半是烂的", "质量"),
    ("The paint on the mug started peeling after one wash", "质量"),
    ("手机壳边缘有毛刺，划手", "质量"),
    ("裤子洗了一次就严重缩水", "质量"),
    ("请帮我开一张公司抬头的增值税发票", "发票"),
]


def write_csv(path: Path, rows: list[tuple], header: tuple = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def warning_lines(err: str) -> list[str]:
    return [line.removeprefix("warning: ") for line in err.splitlines() if line.startswith("warning: ")]


def test_labels_spelled_several_ways_few_examples_and_missing_classes_are_warned(tmp_path, capsys):
    path = write_csv(tmp_path / "tickets.csv", TICKETS)
    splits = load_splits(DataConfig(dataset=None, train_file=str(path)), seed=0)
    printed = warning_lines(capsys.readouterr().err)

    assert printed == splits.warnings  # each printed once, as one line, and kept for the report
    variants, few, no_validation, no_test = splits.warnings
    assert variants == ("labels 'Refund' (8), 'refund' (3), 'ＲＥＦＵＮＤ' (1) differ only in case, width or "
                        "surrounding spaces and are 3 separate classes; data.normalize_labels: true merges them "
                        "into 'Refund'")
    assert few.startswith("3 classes with fewer than 5 training examples: '发票' (1 training example), "
                          "'ＲＥＦＵＮＤ' (1 training example), 'refund' (3 training examples)")
    assert no_validation.startswith("3 classes missing from the validation split")
    assert "'发票' (1 training example)" in no_validation and "'refund' (3 training examples)" in no_validation
    assert no_test.startswith("3 classes missing from the test split")
    assert splits.labels() == ["Refund", "refund", "发票", "物流", "质量", "ＲＥＦＵＮＤ"]  # warned, not changed


def test_normalize_labels_merges_every_spelling_into_the_most_frequent(tmp_path, capsys):
    path = write_csv(tmp_path / "tickets.csv", TICKETS)
    splits = load_splits(DataConfig(dataset=None, train_file=str(path), normalize_labels=True), seed=0)
    err = capsys.readouterr().err

    assert splits.labels() == ["Refund", "发票", "物流", "质量"]
    every_row = splits.train + splits.validation + splits.test
    assert len(every_row) == len(TICKETS)  # nothing lost in the merge
    assert sum(example.label == "Refund" for example in every_row) == 12
    note = "data.normalize_labels: merged 'refund' (3), 'ＲＥＦＵＮＤ' (1) into 'Refund' (8), 12 rows"
    assert splits.notes == [note] and note in err.splitlines()
    assert not any("differ only in case" in warning for warning in splits.warnings)
    assert any(w.startswith("1 class with fewer than 5 training examples: '发票'") for w in splits.warnings)


def test_normalize_labels_applies_to_a_validation_file_spelled_differently(tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", [row for row in TICKETS if row[1] != "refund "])
    validation = write_csv(tmp_path / "validation.csv", [
        ("申请退款三天了还没有人处理", "refund"),
        ("The courier left my parcel in the rain", "物流"),
        ("Refund please, the shoes are two sizes too small", "REFUND"),
    ])
    data = DataConfig(dataset=None, train_file=str(train), validation_file=str(validation))
    with pytest.raises(DataError, match=r"label 'refund' in the validation split never appears in the training"):
        load_splits(data, seed=0)
    assert "data.normalize_labels: true merges them into 'Refund'" in capsys.readouterr().err  # the way out

    data.normalize_labels = True
    splits = load_splits(data, seed=0)
    assert [example.label for example in splits.validation] == ["Refund", "物流", "Refund"]


def test_a_column_of_numbers_is_probably_the_wrong_text_column(tmp_path, capsys):
    orders = [(f"20240315{index:05d}", text, label) for index, (text, label) in enumerate(TICKETS)]
    path = write_csv(tmp_path / "orders.csv", orders, header=("order_id", "review", "label"))
    splits = load_splits(DataConfig(dataset=None, train_file=str(path), text_column="order_id",
                                    normalize_labels=True), seed=0)
    expected = (f"100% of the texts in column 'order_id' of {path} are only numbers (e.g. '2024031500000'): "
                "is data.text_column the column that holds the text?")
    assert expected in splits.warnings
    assert f"warning: {expected}" in capsys.readouterr().err.splitlines()

    right_column = load_splits(DataConfig(dataset=None, train_file=str(path), text_column="review",
                                          normalize_labels=True), seed=0)
    assert not any("only numbers" in warning for warning in right_column.warnings)


def test_a_few_numbers_among_sentences_are_not_warned_about(tmp_path):
    rows = TICKETS + [("12", "质量"), ("3 天", "物流"), ("2024-03-15", "物流")]
    splits = load_splits(DataConfig(dataset=None, train_file=str(write_csv(tmp_path / "t.csv", rows))), seed=0)
    assert not any("only numbers" in warning for warning in splits.warnings)


def test_the_share_of_skipped_rows_is_a_warning_above_a_fifth_of_the_file(tmp_path, capsys):
    unlabelled = [(text, "") for text, _ in TICKETS[:10]]  # labels lost in an Excel export
    path = write_csv(tmp_path / "train.csv", TICKETS + unlabelled)
    splits = load_splits(DataConfig(dataset=None, train_file=str(path), on_bad_rows="skip"), seed=0)
    line = f"skipped 10 of 39 rows (26%) of {path} (data.on_bad_rows: skip)"
    assert any(warning.startswith(line) for warning in splits.warnings)
    assert any(printed.startswith(line) for printed in warning_lines(capsys.readouterr().err))

    path = write_csv(tmp_path / "train.csv", TICKETS + unlabelled[:1])
    splits = load_splits(DataConfig(dataset=None, train_file=str(path), on_bad_rows="skip"), seed=0)
    assert f"skipped 1 of 30 rows (3%) of {path} (data.on_bad_rows: skip)" in splits.notes
    assert not any(warning.startswith("skipped") for warning in splits.warnings)


# --------------------------------------------------------------------------- image class folders


@pytest.fixture(scope="module")
def digits():
    """Real handwritten digits (the built-in mnist-5k): pixels (N, 28, 28) and labels."""
    from tuneforge.assets.datasets import dataset_folder
    from tuneforge.data.images import read_idx

    folder = dataset_folder("mnist-5k")
    return read_idx(folder / "mnist-5k-images-idx3-ubyte.gz", 3), read_idx(folder / "mnist-5k-labels-idx1-ubyte.gz", 1)


def load_image_folder(root: Path):
    """The splits of a folder of class folders, as image classification loads them."""
    return load_splits(DataConfig(dataset=None, train_file=str(root)), seed=0, files={"train": root}, read=read_images)


def test_a_class_folder_of_heic_photos_is_a_warning_not_a_silently_lost_class(tmp_path, digits, capsys):
    pixels, labels = digits
    root = tmp_path / "digits"  # class folders named in Chinese numerals
    for digit, folder in ((3, "三"), (7, "七")):
        (root / folder).mkdir(parents=True)
        for index in [i for i, label in enumerate(labels) if label == digit][:10]:
            Image.fromarray(pixels[index]).save(root / folder / f"{index}.png")
    (root / "五").mkdir()
    for name in ("IMG_0001.HEIC", "IMG_0002.HEIC"):  # photos of digit 5 from an iPhone: Pillow cannot read HEIC
        (root / "五" / name).write_bytes(b"\0\0\0\x18ftypheic")
    (root / "九").mkdir()

    splits = load_image_folder(root)
    printed = warning_lines(capsys.readouterr().err)
    heic = (f"class folder {root / '五'} yields no image tuneforge can read, so class '五' is left out: it holds "
            "2 files: IMG_0001.HEIC, IMG_0002.HEIC; convert them to JPEG or PNG")
    empty = f"class folder {root / '九'} yields no image tuneforge can read, so class '九' is left out: it is empty"
    for expected in (heic, empty):
        assert any(warning.startswith(expected) for warning in splits.warnings)
        assert any(line.startswith(expected) for line in printed)
    assert splits.labels() == ["七", "三"]


def test_no_usable_class_folder_at_all_is_an_error_naming_each(tmp_path, capsys):
    from tuneforge.cli.app import main

    root = tmp_path / "photos"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "IMG_0420.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (root / "dog").mkdir()
    config = tmp_path / "photos.yaml"
    config.write_text(f"task: image_classification\nmodel:\n  name: efficientnet-lite0\n"
                      f"data:\n  dataset: null\n  train_file: {root}\n", encoding="utf-8")
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"error: {root}: no class folder holds an image tuneforge can read" in err
    assert "cat/: it holds 1 file: IMG_0420.HEIC; dog/: it is empty" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- built-in datasets with official splits


NEWS = {  # rows in the zh-news-sentiment layout, one file per official split
    "train.jsonl": [("央行宣布下调存款准备金率，释放长期资金约一万亿元", "正面"),
                    ("某地化工厂发生爆炸，已造成三人死亡", "负面"),
                    ("国家统计局发布上月居民消费价格指数", "中性")] * 4,
    "validation.jsonl": [("新能源汽车销量同比增长三成", "正面"), ("台风登陆导致多地停电", "负面"),
                         ("教育部公布明年高考报名时间", "中性")],
    "test.jsonl": [("国产大飞机完成首次商业载客飞行", "正面"), ("一家上市公司因财务造假被立案调查", "负面"),
                   ("气象台发布未来三天天气预报", "中性")],
}


def test_a_builtin_dataset_uses_its_own_validation_and_test_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "zh-news-sentiment"
    folder.mkdir(parents=True)
    for name, rows in NEWS.items():  # already prepared: nothing is downloaded
        lines = [json.dumps({"text": text, "label": label}, ensure_ascii=False) for text, label in rows]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = DataConfig(dataset="zh-news-sentiment", split=[0.8, 0.1, 0.1])
    assert resolve_files(data) == {split: folder / f"{split}.jsonl" for split in ("train", "validation", "test")}
    splits = load_splits(data, seed=0)
    assert len(splits.train) == 12  # not re-split
    assert [example.text for example in splits.validation] == [text for text, _ in NEWS["validation.jsonl"]]
    assert [example.text for example in splits.test] == [text for text, _ in NEWS["test.jsonl"]]
    assert splits.sources["test"] == "zh-news-sentiment (built-in test.jsonl)"


# --------------------------------------------------------------------------- a real run, as docs/data_hygiene.md shows


def _doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / "data_hygiene.md").read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.recipe
def test_the_documented_run_reports_its_data_warnings(tiny_bert, tmp_path, monkeypatch, capsys):
    from tuneforge.cli.app import main

    monkeypatch.chdir(tmp_path)
    (config_text,) = _doc_blocks("yaml")
    Path("tickets.yaml").write_text(config_text, encoding="utf-8")
    header, *shown = csv.reader(_doc_blocks("csv")[0].splitlines())
    assert header == ["text", "label"] and all(tuple(row) in TICKETS for row in shown)  # the doc shows its rows
    write_csv(Path("tickets.csv"), TICKETS)
    commands = [shlex.split(line) for block in _doc_blocks("bash") for line in block.splitlines()
                if line.startswith("tuneforge ")]
    assert len(commands) == 2
    # the tiny test model has MiniLM's English tokenizer: Chinese becomes [UNK], which is fine for 2 steps
    fast = [f"model.name={tiny_bert}", "data.allow_unknown_tokens=true", "train.max_steps=2", "train.batch_size=8",
            "output.progress=false",
            "output.tensorboard=false"]
    runs = []
    for index, command in enumerate(commands):
        assert main([*command[1:], *fast, f"output.dir=runs{index}"]) == 0
        (run_dir,) = Path(f"runs{index}").iterdir()
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        runs.append((warning_lines(capsys.readouterr().err), metrics, (run_dir / "report.md").read_text("utf-8")))

    (printed, metrics, report), (merged_printed, merged_metrics, merged_report) = runs
    assert metrics["data_warnings"] == printed and len(printed) == 4
    shown = [line for block in _doc_blocks("text") for line in block.splitlines() if line.startswith("warning: ")]
    assert shown == [f"warning: {warning}" for warning in printed]  # the doc shows what a user sees
    section = report.split("## Data warnings\n\n", 1)[1].split("\n\n## ", 1)[0]
    assert section.splitlines() == [f"- {warning}" for warning in printed]
    assert "- labels 'Refund' (8), 'refund' (3), 'ＲＥＦＵＮＤ' (1) differ only in case" in section
    assert report.index("## Data warnings") < report.index("## Metrics")

    assert merged_metrics["data_warnings"] == merged_printed and len(merged_printed) == 3
    assert all("'发票'" in warning for warning in merged_printed)
    merge_note = "- data.normalize_labels: merged 'refund' (3), 'ＲＥＦＵＮＤ' (1) into 'Refund' (8), 12 rows"
    assert merge_note in merged_report.splitlines()  # under "Data notes"
    assert merged_metrics["labels"] == ["Refund", "发票", "物流", "质量"]


def test_a_file_saved_by_chinese_excel_is_named_with_its_encoding_in_the_notes(tmp_path):
    path = tmp_path / "tickets.csv"
    with path.open("w", newline="", encoding="gb18030") as handle:  # "CSV" as Excel saves it on Chinese Windows
        csv.writer(handle).writerows([("text", "label"), *TICKETS])
    splits = load_splits(DataConfig(dataset=None, train_file=str(path), normalize_labels=True), seed=0)
    assert splits.labels() == ["Refund", "发票", "物流", "质量"]  # no mojibake
    assert any(note.startswith(f"read {path}") and "GB18030" in note.upper() for note in splits.notes), splits.notes
