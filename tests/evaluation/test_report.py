import numpy as np
import pytest

from tuneforge.evaluation.metrics import classification_metrics, label_distribution, multilabel_metrics
from tuneforge.evaluation.report import write_report

NAMES = ["neg", "pos", "mixed | unsure"]
SUMMARY = {"model": "minilm-l6", "method": "lora (r=8)", "trainable parameters": "73,728 (0.3%)", "epochs": "3"}


@pytest.fixture
def single_metrics() -> dict:
    return classification_metrics([0, 0, 0, 1, 1, 1, 2, 2], [0, 0, 1, 1, 1, 1, 2, 0], NAMES)


def test_single_label_report_sections(tmp_path, single_metrics):
    (tmp_path / "run").mkdir()
    path = write_report(
        tmp_path / "run" / "report.md",
        title="Ticket classifier",
        summary=SUMMARY,
        metrics=single_metrics,
        distribution=label_distribution({"train": ["neg", "neg", "pos"], "validation": ["pos", "mixed | unsure"]}),
        data_notes=["12 rows skipped: 10 empty text, 2 missing label"],
        images={"Confusion matrix": "confusion_matrix.png", "Training curves": str(tmp_path / "run" / "curves.png")},
        extra_sections={"Next steps": "Collect more *mixed* examples.", "Appendix": "raw logs in `logs/`"},
    )
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0] == "# Ticket classifier"
    assert "| model | minilm-l6 |" in lines
    assert "| trainable parameters | 73,728 (0.3%) |" in lines
    assert "| accuracy | 0.7500 |" in lines

    # Per-class table, 3 decimals, with the "|" in a label name escaped.
    assert "| label | precision | recall | F1 | support |" in lines
    assert "| neg | 0.667 | 0.667 | 0.667 | 3 |" in lines
    assert "| pos | 0.750 | 1.000 | 0.857 | 3 |" in lines
    assert "| mixed \\| unsure | 1.000 | 0.500 | 0.667 | 2 |" in lines

    # Confusion matrix as a table with label names on both axes.
    assert "| true \\ predicted | neg | pos | mixed \\| unsure |" in lines
    assert "| neg | 2 | 1 | 0 |" in lines
    assert "| mixed \\| unsure | 1 | 0 | 1 |" in lines

    assert "| label | train | validation |" in lines
    assert "| neg | 2 | 0 |" in lines
    assert "- 12 rows skipped: 10 empty text, 2 missing label" in lines

    # Images linked relative to the report, so the run folder can move.
    assert "![Confusion matrix](confusion_matrix.png)" in lines
    assert "![Training curves](curves.png)" in lines

    assert text.index("## Next steps") < text.index("## Appendix")
    assert "Collect more *mixed* examples." in text


def test_unescaped_pipe_never_splits_a_table_row(tmp_path, single_metrics):
    text = write_report(tmp_path / "r.md", title="t", summary={}, metrics=single_metrics).read_text()
    for line in text.splitlines():
        if line.startswith("| mixed"):
            cells = line.replace("\\|", "").strip("|").split("|")
            assert len(cells) in {4, 5}  # confusion row (label + 3) or per-class row (label + 4)


def test_multilabel_report_has_no_confusion_matrix(tmp_path):
    metrics = multilabel_metrics(np.array([[1, 0], [0, 1], [1, 1]]), np.array([[1, 0], [0, 0], [1, 1]]), ["x", "y"])
    path = write_report(tmp_path / "deep" / "report.md", title="Tags", summary={"model": "m"}, metrics=metrics)
    text = path.read_text()
    assert "| subset accuracy | 0.6667 |" in text
    assert "| micro F1 | 0.8571 |" in text
    assert "| hamming loss | 0.1667 |" in text
    assert "| y | 1.000 | 0.500 | 0.667 | 2 |" in text
    assert "Confusion matrix" not in text
    assert "Label distribution" not in text


def test_report_with_empty_metrics(tmp_path):
    text = write_report(tmp_path / "r.md", title="Nothing yet", summary={}, metrics={}).read_text()
    assert text.startswith("# Nothing yet\n")
    assert "No metrics were recorded." in text
