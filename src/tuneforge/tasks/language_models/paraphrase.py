"""``tuneforge paraphrase``: paraphrases of a training file's texts from a local causal LM, for
``data.paraphrase_column``.

Back-translation needs translation models that cannot be installed offline; a chat-tuned causal LM asked to
rewrite each text is the local stand-in. Small models (smollm2-135m, gemma3-270m) write weak paraphrases, so every
one passes a filter (not empty, not the text itself, a length within half to twice the original's, the first
line only) and the ones that fail leave their cell empty rather than training on noise. The output is the input
table plus the paraphrase column, in a file whose rows line up with the input's.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tuneforge.data.excel import write_workbook
from tuneforge.data.readers import read_rows
from tuneforge.data.tag_formats import is_cjk
from tuneforge.errors import DataError
from tuneforge.tasks.classification import CSV_ENCODING
from tuneforge.tasks.language_models.generator import GenerationSettings, LanguageModel

PROMPTS = {
    "en": "Rewrite this sentence in other words, keeping its meaning. Reply with the new sentence only.\n\n{text}",
    "zh": "请用不同的说法改写下面这句话，保持原意，只回复改写后的句子。\n\n{text}",
}


@dataclass
class ParaphraseResult:
    written: int  # rows in the output
    kept: int  # rows whose paraphrase passed the filter
    out: Path


def paraphrase_file(model: LanguageModel, path: Path, out: Path, text_column: str, column: str,
                    settings: GenerationSettings, prompt: str | None = None, *, encoding: str | None = None,
                    sheet: str | int | None = None) -> ParaphraseResult:
    """Every row of ``path`` with a paraphrase of its ``text_column`` in ``column`` (empty where none passed)."""
    rows = read_rows(path, None, None, strict=True, encoding=encoding, sheet=sheet)
    if text_column not in rows.columns:
        raise DataError(f"{path}: no column '{text_column}' (columns: {', '.join(rows.columns)}); pass --text-column")
    if column in rows.columns:
        raise DataError(f"{path}: already has a column '{column}'; choose another with --column")
    kept = 0
    table = []
    for values in tqdm(rows.values, desc="paraphrasing", unit="text"):
        text = str(values.get(text_column) or "").strip()
        candidate = _generate(model, text, settings, prompt) if text else ""
        usable = _usable(candidate, text)
        kept += usable
        table.append({**values, column: candidate if usable else ""})
    _write(out, [*rows.columns, column], table)
    return ParaphraseResult(len(table), kept, out)


def _generate(model: LanguageModel, text: str, settings: GenerationSettings, prompt: str | None) -> str:
    template = prompt or PROMPTS["zh" if any(is_cjk(c) for c in text) else "en"]
    reply = model.generate([{"role": "user", "content": template.format(text=text)}], settings).text
    lines = [line.strip().strip('"“”') for line in reply.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _usable(candidate: str, text: str) -> bool:
    """Not empty, not the text again (up to case and punctuation), and of a comparable length."""
    return bool(candidate) and _bare(candidate) != _bare(text) and 0.5 <= len(candidate) / max(len(text), 1) <= 2.0


def _bare(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _write(out: Path, header: list[str], table: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # never a half-written file under the real name
    suffix = out.suffix.lower()
    if suffix == ".xlsx":
        write_workbook(partial, header, [[row.get(name) for name in header] for row in table])
    elif suffix in (".jsonl", ".ndjson"):
        with partial.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in table)
    else:
        with partial.open("w", newline="", encoding=CSV_ENCODING) as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(table)
    partial.replace(out)
