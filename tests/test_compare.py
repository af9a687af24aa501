"""Method comparison: real runs of the tiny BERT, one spawned process per method, and the files they leave."""

import csv
import json
import math

import pytest

from tests.conftest import tiny_config
from tuneforge.errors import ConfigError, TuneforgeError
from tuneforge.experiments.compare import compare, format_table


def test_three_methods_side_by_side(tiny_bert, rt_csv, tmp_path, capsys):
    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"max_steps": 3})
    result = compare(config, ["full", "freeze", "lora"], out=tmp_path / "cmp")

    rows = {row["method"]: row for row in result.rows}
    assert list(rows) == ["full", "freeze", "lora"] and result.metric == "accuracy"
    for row in rows.values():
        assert row["error"] is None and row["split"] == "test"
        assert math.isfinite(row["metric_value"]) and 0 <= row["metric_value"] <= 1
        assert row["peak_rss_mb"] > 50 and row["wall_seconds"] > 0 and row["samples_per_second"] > 0
        assert row["steps"] == 3
    assert rows["freeze"]["trainable_parameters"] < rows["lora"]["trainable_parameters"]
    assert rows["lora"]["trainable_parameters"] < rows["full"]["trainable_parameters"]
    assert rows["full"]["trainable_parameters"] == rows["full"]["total_parameters"]
    assert {p.name.rsplit("-", 2)[0] for p in (tmp_path / "runs").glob("test-*")} == {
        "test-full", "test-freeze", "test-lora"}

    assert result.dir == tmp_path / "cmp"
    for name in ("comparison.md", "comparison.csv", "comparison.json", "comparison.png"):
        assert (result.dir / name).stat().st_size > 0
    with (result.dir / "comparison.csv").open(newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert [r["method"] for r in table] == ["full", "freeze", "lora"]
    assert float(table[1]["metric_value"]) == pytest.approx(rows["freeze"]["metric_value"])
    assert json.loads((result.dir / "comparison.json").read_text())["rows"] == result.rows
    markdown = (result.dir / "comparison.md").read_text()
    assert "seed: 42" in markdown and "metric: test accuracy" in markdown and "best: " in markdown
    assert format_table(result.rows, "accuracy") in markdown

    progress = capsys.readouterr().err
    assert "[1/3] full" in progress and "[3/3] lora: test accuracy" in progress


def test_a_failing_method_costs_only_its_row(tiny_bert, rt_csv, tmp_path):
    # topk keeps the base config's own section (k=99, too many for 2 layers); freeze gets its defaults.
    config = tiny_config(tiny_bert, rt_csv, tmp_path, train={"max_steps": 2}, method={"name": "topk", "k": 99})
    result = compare(config, ["topk", "freeze"], out=tmp_path / "cmp", progress=False)

    topk, freeze = result.rows
    assert "method.k must be between 1 and 2" in topk["error"] and topk["metric_value"] is None
    assert freeze["error"] is None and math.isfinite(freeze["metric_value"])
    markdown = (result.dir / "comparison.md").read_text()
    assert "| topk | failed: method.k must be between 1 and 2" in markdown and "best: freeze" in markdown
    assert (result.dir / "comparison.png").is_file()


def test_unknown_method_fails_before_any_run(tiny_bert, rt_csv, tmp_path):
    config = tiny_config(tiny_bert, rt_csv, tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'lora'"):
        compare(config, ["full", "lorra"], out=tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "runs").exists()


def test_non_empty_out_folder_is_refused(tiny_bert, rt_csv, tmp_path):
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "notes.txt").write_text("mine")
    with pytest.raises(TuneforgeError, match="not empty"):
        compare(tiny_config(tiny_bert, rt_csv, tmp_path), ["full"], out=tmp_path / "cmp")
    assert not (tmp_path / "runs").exists()


def test_table_formats_parameters_and_failures():
    rows = [
        {"method": "lora", "metric_value": 0.812345, "trainable_parameters": 12345, "total_parameters": 24_690_000,
         "peak_rss_mb": 812.4, "wall_seconds": 12.345, "samples_per_second": 101.25, "error": None},
        {"method": "full", "metric_value": 0.8, "trainable_parameters": 100, "total_parameters": 100,
         "peak_rss_mb": 1024.0, "wall_seconds": 3.0, "samples_per_second": 9.0, "error": None},
        {"method": "topk", "error": "method.k | too\nbig"},
    ]
    lines = format_table(rows, "macro_f1").splitlines()
    assert lines[0].startswith("| method | macro_f1 | trainable parameters |")
    assert lines[2] == "| lora | 0.8123 | 12,345 (0.05%) | 812 | 12.3 | 101.2 |"
    assert lines[3] == "| full | 0.8000 | 100 (100.0%) | 1,024 | 3.0 | 9.0 |"
    assert lines[4] == "| topk | failed: method.k \\| too big | | | | |"
