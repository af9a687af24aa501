"""``tuneforge eval RUN --perturb typos,synonyms``: the labelled data scored again after noise, beside the clean score.

Each perturbation (``tuneforge.data.augment.perturb``) is drawn per example from a ``random.Random`` seeded by
(kind, example position) alone, so two runs evaluated on the same file see the same noisy text and their scores
compare. ``typos`` is keyboard-neighbour typos in English and similar-sounding or equivalent characters in
Chinese; ``synonyms`` replaces words by thesaurus synonyms (WordNet, Cilin). Token classification perturbs the
text outside the entities only, so the gold spans stay true.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigError, TuneforgeError

DEFAULT_RATE = 0.1  # share of words (English) or characters (Chinese typos) touched
_SHOWN = 3  # perturbed examples shown per kind


def parse_perturbations(items: Sequence[str]) -> list[tuple[str, float]]:
    """``["typos", "synonyms=0.2"]`` -> ``[("typos", 0.1), ("synonyms", 0.2)]``; unknown kinds are refused."""
    from tuneforge.data.augment import PERTURBATIONS

    parsed = []
    for item in items:
        kind, _, rate = item.strip().partition("=")
        if kind not in PERTURBATIONS:
            raise ConfigError(f"--perturb {item}: unknown perturbation '{kind}'; choose from "
                              f"{', '.join(PERTURBATIONS)} (optionally KIND=RATE, e.g. typos=0.2)")
        try:
            value = float(rate) if rate else DEFAULT_RATE
        except ValueError:
            value = -1.0
        if not 0 < value <= 1:
            raise ConfigError(f"--perturb {item}: the rate must be a number in (0, 1], e.g. {kind}=0.2")
        parsed.append((kind, value))
    return parsed


def perturb_items(items: list[Any], kind: str, rate: float) -> list[Any]:
    """Every item (a text, or a ``TaggedText``) perturbed, each from its own seeded stream."""
    from tuneforge.data.augment import perturb, perturb_tagged

    change = perturb_tagged if items and hasattr(items[0], "entities") else perturb
    return [change(item, kind, random.Random(f"{kind}/{position}"), rate) for position, item in enumerate(items)]


def robustness(items: list[Any], perturbations: list[tuple[str, float]], score: Callable[[list[Any]], dict],
               clean: dict, keys: Sequence[str], text_of: Callable[[Any], str] = str) -> tuple[dict, str]:
    """Scores of ``items`` under each perturbation and the report section comparing them with ``clean``.

    Args:
        items: The evaluated examples (texts or tagged sentences), in order.
        perturbations: ``(kind, rate)`` pairs from :func:`parse_perturbations`.
        score: Items -> metrics, as the clean score was computed.
        clean: The clean metrics.
        keys: The metrics compared in the table (``accuracy``, ``macro_f1``; ``f1`` for entities).
        text_of: An item's text, for the examples shown.

    Returns:
        ``{kind: {"rate": r, key: value, f"{key}_change": value - clean}}`` and the Markdown section.
    """
    results, shown = {}, []
    for kind, rate in perturbations:
        noisy = perturb_items(items, kind, rate)
        metrics = score(noisy)
        results[kind] = {"rate": rate} | {key: metrics[key] for key in keys} | {
            f"{key}_change": metrics[key] - clean[key] for key in keys}
        pairs = [(text_of(a), text_of(b)) for a, b in zip(items, noisy, strict=True) if text_of(a) != text_of(b)]
        shown += [(kind, a, b) for a, b in pairs[:_SHOWN]]
    return results, _section(results, clean, keys, shown)


def _section(results: dict, clean: dict, keys: Sequence[str], shown: list[tuple[str, str, str]]) -> str:
    header = "| data | " + " | ".join(keys) + " |"
    lines = ["The same examples scored after each perturbation (seeded per example: reruns see the same noise).", "",
             header, "|---" * (len(keys) + 1) + "|",
             "| clean | " + " | ".join(f"{clean[k]:.4f}" for k in keys) + " |"]
    for kind, row in results.items():
        cells = [f"{row[k]:.4f} ({row[f'{k}_change']:+.4f})" for k in keys]
        lines.append(f"| {kind} (rate {row['rate']:g}) | " + " | ".join(cells) + " |")
    if shown:
        lines += ["", "| perturbation | written | perturbed |", "|---|---|---|"]
        lines += [f"| {kind} | {_cell(a)} | {_cell(b)} |" for kind, a, b in shown]
    return "\n".join(lines)


def _cell(text: str) -> str:
    text = text if len(text) <= 140 else text[:137] + "..."
    return text.replace("|", "\\|").replace("\n", " ")


def run_config(run_dir: str | Path, what: str):
    """The config a run was trained with (its test split is the default data of ``eval --perturb``)."""
    from tuneforge.config import load_config

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TuneforgeError(f"{run_dir}: no config.yaml to find the run's test split; pass --data with {what}")
    return load_config(path)
