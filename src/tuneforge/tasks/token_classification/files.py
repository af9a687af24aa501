"""Files in and out of a trained entity tagger: texts to tag, labelled files to score, and ``tuneforge init``.

Predictions are written as JSONL (one ``{"text", "entities": [...]}`` per line, the shape doccano and Label
Studio import), or as CSV (UTF-8 with BOM, opens in Excel) / .xlsx with the input columns plus an
``entities`` column of JSON and a readable ``entities_text`` column (``张三/PER; 北京/LOC``).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from tuneforge.data.encodings import decode
from tuneforge.data.excel import write_workbook
from tuneforge.data.tagging import TaggedReadResult, entity_tags, load_tagged_splits, read_tagged, tags_to_entities
from tuneforge.data.validation import format_problems
from tuneforge.errors import DataError, TuneforgeError
from tuneforge.evaluation.report import write_report
from tuneforge.starter import text_backbone
from tuneforge.tasks.classification import CSV_ENCODING, check_output, eval_dir
from tuneforge.tasks.robustness import parse_perturbations, robustness, run_config
from tuneforge.tasks.text_classification.files import read_texts
from tuneforge.tasks.token_classification.scoring import entity_errors, entity_scores, report_section, type_confusion


def predict_file(model, source: Path, out: Path, column: str, force: bool, *, encoding: str | None = None,
                 sheet: str | int | None = None) -> int:
    """Tag every text of a table (CSV/TSV/JSONL/Parquet/Excel) or a .txt file (one text per line)."""
    check_output(out, source, force, suffixes=(".jsonl", ".csv", ".xlsx"))
    if source.suffix.lower() == ".txt":
        texts = [line for line in decode(source.read_bytes(), str(source), encoding).text.splitlines()
                 if line.strip()]
        rows = [{"text": t} for t in texts]
    else:
        rows, texts = read_texts(source, column, encoding=encoding, sheet=sheet)
    entities = model.predict(texts)
    if out.suffix.lower() == ".jsonl":
        out.write_text("".join(json.dumps({"text": t, "entities": e}, ensure_ascii=False) + "\n"
                               for t, e in zip(texts, entities, strict=True)), encoding="utf-8")
    else:
        _write_table(out, rows, entities)
    return len(texts)


def _write_table(out: Path, rows: list[dict], entities: list[list[dict]]) -> None:
    """The input columns plus ``entities`` (JSON) and ``entities_text``; .xlsx, else CSV with a BOM for Excel."""
    fields = list(rows[0]) if rows else []
    header = fields + ["entities", "entities_text"]
    table = [[row.get(f) for f in fields] + [json.dumps(found, ensure_ascii=False),
                                              "; ".join(f"{e['text']}/{e['type']}" for e in found)]
             for row, found in zip(rows, entities, strict=True)]
    partial = out.with_name(out.name + ".partial")  # never a half-written file under the real name
    if out.suffix.lower() == ".xlsx":
        write_workbook(partial, header, table)
    else:
        with partial.open("w", newline="", encoding=CSV_ENCODING) as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(table)
    partial.replace(out)


def show(texts: list[str], entities: list[list[dict]]) -> str:
    """Console lines: the text, then one indented line per entity (type, offsets, text, score, source)."""
    lines = []
    for text, found in zip(texts, entities, strict=True):
        lines.append(text)
        lines += [f"  {e['type']}\t{e['start']}-{e['end']}\t{e['text']}\t{e['score']:.3f}"
                  + ("\t(rule)" if e.get("source") == "rule" else "") for e in found] or ["  (no entities)"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- eval


def evaluate_run(run_dir: str | Path, request) -> str:
    """``tuneforge eval`` for taggers: entity scores on a labelled file (or, with ``--perturb`` and no ``--data``,
    the run's own test split), and the report's path."""
    from tuneforge.tasks import load

    if request.data is None and not request.perturb:
        raise TuneforgeError("--data is required: a labelled CoNLL or span file (JSONL, Label Studio JSON)")
    for option in ("text_column", "label_column", "image_column", "sheet"):
        if getattr(request, option) is not None:
            raise TuneforgeError(f"--{option.replace('_', '-')} does not apply to token classification: its files "
                                 "have a fixed shape (CoNLL columns, or text + spans)")
    perturbations = parse_perturbations(request.perturb)
    data = Path(request.data) if request.data is not None else Path("test-split")
    out = eval_dir(Path(run_dir), data, request.out, request.force)
    items, result = _labelled_sentences(Path(run_dir), request)
    model = load(run_dir)

    def score_items(sentences: list) -> dict:
        return entity_scores([entity_tags(i) for i in sentences], model.tag(sentences)[0])

    tags, _ = model.tag(items)
    scores = entity_scores([entity_tags(i) for i in items], tags)
    found = [tags_to_entities(t, i.words) for t, i in zip(tags, items, strict=True)]
    gold = [i.entities for i in items]
    sections = {"Entities": report_section(scores, entity_errors(gold, found, [i.text for i in items]),
                                           type_confusion(gold, found))}
    if perturbations:
        scores["robustness"], sections["Robustness"] = robustness(items, perturbations, score_items, scores,
                                                                  keys=("f1", "precision", "recall"),
                                                                  text_of=lambda item: item.text)
    _write_evaluation(out, Path(run_dir), data, scores, sections, len(items), result)
    robust = "".join(f"\n{kind} (rate {row['rate']:g}): entity F1 {row['f1']:.4f} ({row['f1_change']:+.4f})"
                     for kind, row in scores.get("robustness", {}).items())
    return (f"entity F1 {scores['f1']:.4f} (precision {scores['precision']:.4f}, recall {scores['recall']:.4f}) "
            f"on {len(items):,} sentences{robust}\n\nreport: {out / 'report.md'}")


def _labelled_sentences(run_dir: Path, request) -> tuple[list, Any]:
    """The sentences ``eval`` scores: ``--data`` read and checked, or the run's own test split."""
    if request.data is None:
        config = run_config(run_dir, "a labelled CoNLL or span file")
        items = load_tagged_splits(config.data, config.seed).test
        if not items:
            raise DataError(f"{run_dir}: the run has no test split; pass --data with labelled sentences")
        return items, TaggedReadResult(examples=items)
    data = Path(request.data)
    result = read_tagged(data, encoding=request.encoding)
    if result.problems and request.on_bad_rows == "error":
        raise DataError(format_problems(result.problems, result.total_rows))
    if not result.examples:
        raise DataError(f"{data}: no usable sentences")
    return result.examples, result


def _write_evaluation(out: Path, run_dir: Path, data: Path, scores: dict, sections: dict[str, str], count: int,
                      result) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps({"data": str(data), "sentences": count, **scores}, indent=2,
                                                 ensure_ascii=False), encoding="utf-8")
    notes = [f"{count:,} sentences scored."]
    if result.encoding_note:
        notes.append(result.encoding_note)
    if result.problems:
        notes.append(f"{len(result.problems):,} problems; those sentences were skipped (--on-bad-rows skip).")
    write_report(out / "report.md", title=f"tuneforge eval of {run_dir.name} on {data.name}",
                 summary={"run": str(run_dir), "data": str(data), "when": time.strftime("%Y-%m-%d %H:%M")},
                 metrics={k: v for k, v in scores.items() if isinstance(v, float)}, data_notes=notes,
                 extra_sections=sections)


# --------------------------------------------------------------------------- init


def starter_config(task: str, data: Path, encoding: str | None = None, sheet: str | int | None = None) -> str:
    """A commented config for a tagged file: its format and tag scheme as inferred, a backbone for its language."""
    if sheet is not None:
        raise TuneforgeError("--sheet: token classification reads CoNLL or span files, not Excel")
    result = read_tagged(data, encoding=encoding)
    if not result.examples:
        raise DataError(f"{data}: no usable sentences" + (f"\n{format_problems(result.problems, result.total_rows)}"
                                                          if result.problems else ""))
    types = sorted({t for item in result.examples for t in item.labels})
    backbone = text_backbone([item.text for item in result.examples[:2000]])
    chinese = backbone.model != "minilm-l6"
    lines = [
        f"# tuneforge init: {len(result.examples):,} sentences, entity types {', '.join(types)}",
        f"# read as {result.fmt}" + (f", tag scheme {result.scheme}" if result.scheme else "")
        + (f", {result.encoding_note}" if result.encoding_note else ""),
        f"task: {task}",
        f"name: {data.stem}-ner",
        "data:",
        "  dataset: null",
        f"  train_file: {json.dumps(str(data), ensure_ascii=False)}",
        f"  format: {result.fmt}",
        *([f"  tag_scheme: {result.scheme}"] if result.scheme else []),
        *([f"  encoding: {encoding}"] if encoding else []),
        "  split: [0.8, 0.1, 0.1]",
        "  max_length: 128            # tokens per window; longer sentences are cut into overlapping windows",
        "model:",
        f"  name: {backbone.model}" + (f"     # {backbone.why}" if backbone.why else ""),
        "method:",
        "  name: topk                 # the top k layers, head and CRF train; the embeddings stay frozen",
        "  k: 6",
        "ner:",
        *(["  layers: 6                  # Gemma's first 6 of 18 layers: 3x faster (docs/ner.md)"] if chinese else []),
        "  crf: true",
        "train:",
        f"  epochs: {1 if chinese else 3}",
        "  batch_size: 16",
        "  lr: 1.0e-4",
        "  head_lr: 1.0e-3",
    ]
    if problems := result.problems:
        lines.insert(2, f"# {len(problems)} problems found (first: {problems[0]}); fix them or set "
                        "data.on_bad_rows: skip")
    return "\n".join(lines) + "\n"


def default_output(source: Path) -> Path:
    """Entities beside the input: texts.csv -> texts.entities.csv, an Excel file -> .xlsx, .txt -> .jsonl."""
    suffix = source.suffix.lower()
    if suffix == ".txt":
        return source.with_suffix(".entities.jsonl")
    return source.with_suffix(".entities.xlsx" if suffix in (".xlsx", ".xlsm") else ".entities.csv")

