"""Evaluating a Frozen run as the paper does: caption perplexity next to a blind run, open-ended fast
concept binding with nonsense words, and VQA from zero and a few solved examples in the prompt.

Episodes and question samples are drawn from a seeded generator, so every run (and every ablation)
is scored on exactly the same prompts.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tuneforge.data.captions import ImageText
from tuneforge.data.images import open_image
from tuneforge.tasks.frozen.data import BINDING_QUESTION  # one wording for training and evaluation
from tuneforge.tasks.frozen.model import FrozenModel, Image

NONSENSE_WORDS = ("dax", "blicket", "wug", "zib", "toma", "fep", "kiki", "lorp")
_WORD = re.compile(r"[a-z0-9]+")


def first_word(text: str) -> str:
    """The answer a generation gives: its first word, lower-case, without punctuation."""
    match = _WORD.search(text.lower())
    return match.group(0) if match else ""


def wilson_interval(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% confidence interval of a proportion (Wilson score: sound near 0 and 1, unlike mean +- 2 SE)."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Score:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.total, 1)

    def row(self) -> dict:
        low, high = wilson_interval(self.correct, self.total)
        return {"accuracy": self.accuracy, "ci_low": low, "ci_high": high, "n": self.total}


class _PixelCache:
    """Each image decoded and preprocessed once across all episodes."""

    def __init__(self, model: FrozenModel) -> None:
        self.model = model
        self.cache: dict[str, object] = {}

    def __call__(self, path: str):
        if path not in self.cache:
            self.cache[path] = self.model.pixels(open_image(path))
        return self.cache[path]


def _item(model: FrozenModel, pixels: _PixelCache, segments: list) -> dict:
    """Like ``FrozenModel.item`` for (path or text) segments, with cached pixels."""
    pieces, images = [], []
    for kind, value in segments:
        if kind == "image":
            pieces.append(("image", None))
            images.append(pixels(value))
        elif kind == "end":  # closes a solved example as training closed every answer
            pieces.append(("text", [model.fmt.end_id, model.fmt.start_id]))
        else:
            pieces.append(("text", model.tokens(value)))
    return {"pieces": pieces, "pixel_values": images}


# --------------------------------------------------------------------------- fast concept binding


@dataclass(frozen=True)
class BindingPrompt:
    """How an episode is written: the paper's wording by default."""

    support: str = "This is a {word}."  # after each support image
    question: str = BINDING_QUESTION  # after the query image
    task_induction: str | None = None  # e.g. "Answer with {words}." before everything (the paper's variant)


def binding_episode(categories: dict[str, list[str]], ways: int, shots: int, rng: random.Random,
                    prompt: BindingPrompt = BindingPrompt()) -> tuple[list, str]:
    """One open-ended episode: ``shots`` images of each of ``ways`` unseen categories, each called by a fresh
    nonsense word, in shuffled order; then a new image of one of them and the question. Returns
    (segments, the word that answers it)."""
    usable = sorted(name for name, paths in categories.items() if len(paths) > shots)
    chosen = rng.sample(usable, ways)
    words = rng.sample(NONSENSE_WORDS, ways)
    support, queries = [], {}
    for category, word in zip(chosen, words, strict=True):
        images = rng.sample(categories[category], shots + 1)
        support += [(image, word) for image in images[:shots]]
        queries[word] = images[shots]
    rng.shuffle(support)
    segments = []
    if prompt.task_induction:
        segments.append(("text", prompt.task_induction.replace("{words}", " or ".join(sorted(words)))))
    for image, word in support:
        segments += [("image", image), ("text", prompt.support.replace("{word}", word))]
    answer = rng.choice(words)
    segments += [("image", queries[answer])] + ([("text", prompt.question)] if prompt.question else [])
    return segments, answer


def fast_binding(model: FrozenModel, categories: dict[str, list[str]], ways: list[int], shots: list[int],
                 episodes: int, seed: int = 0, batch_size: int = 16, progress: bool = True,
                 prompt: BindingPrompt = BindingPrompt()) -> list[dict]:
    """Exact-match accuracy with a 95% interval for every (ways, shots) cell, against chance 1/ways."""
    pixels = _PixelCache(model)
    rows = []
    cells = [(n, k) for n in ways for k in shots]
    for n, k in tqdm(cells, desc="fast binding", unit="cell", disable=not progress):
        enough = [name for name, paths in categories.items() if len(paths) > k]
        if len(enough) < n:
            rows.append({"ways": n, "shots": k, "skipped": f"fewer than {n} categories with {k + 1}+ images"})
            continue
        rng = random.Random(f"{seed}-{n}-{k}")
        drawn = [binding_episode(categories, n, k, rng, prompt) for _ in range(episodes)]
        replies = model.generate_items([_item(model, pixels, segments) for segments, _ in drawn], 4, batch_size)
        answers = [answer for _, answer in drawn]
        score = Score(sum(first_word(r) == a for r, a in zip(replies, answers, strict=True)), episodes)
        rows.append({"ways": n, "shots": k, **score.row(), "chance": 1 / n,
                     "examples": [{"reply": r, "answer": a} for r, a in zip(replies[:3], answers[:3], strict=True)]})
    return rows


# --------------------------------------------------------------------------- VQA


def vqa_accuracy(model: FrozenModel, test: list[ImageText], solved: list[ImageText], shots: list[int],
                 question_template: str, questions: int, seed: int = 0, batch_size: int = 16,
                 progress: bool = True) -> list[dict]:
    """Exact-match accuracy on a seeded sample of questions, with ``k`` solved examples (other images,
    drawn from ``solved``) placed before each question."""
    pixels = _PixelCache(model)
    sample = random.Random(seed).sample(test, min(questions, len(test)))
    rows = []
    for k in tqdm(shots, desc="VQA", unit="setting", disable=not progress):
        rng = random.Random(f"{seed}-vqa-{k}")
        items = []
        for row in sample:
            segments = []
            for example in rng.sample(solved, k) if k else []:
                segments += [("image", example.image),
                             ("text", f"{question_template.replace('{question}', example.text)} {example.answer}"),
                             ("end", None)]
            segments += [("image", row.image), ("text", question_template.replace("{question}", row.text))]
            items.append(_item(model, pixels, segments))
        replies = model.generate_items(items, 4, batch_size)
        score = Score(sum(first_word(r) == first_word(row.answer) for r, row in zip(replies, sample, strict=True)),
                      len(sample))
        rows.append({"shots": k, **score.row()})
    return rows


# --------------------------------------------------------------------------- sample captions


def sample_captions(model: FrozenModel, rows: list[ImageText], path: Path, max_new_tokens: int, vqa: bool = False,
                    question_template: str = "Q: {question} A:") -> dict:
    """Generated captions (answers) for a few held-out images, next to the true ones: a table and a PNG grid."""
    from tuneforge.data.images import thumbnail
    from tuneforge.evaluation.plots import plot_image_grid

    prompts = [[Image(row.image)] + ([question_template.replace("{question}", row.text)] if vqa else [])
               for row in rows]
    generated = model.generate_many(prompts, max_new_tokens)
    truth = [row.answer if vqa else row.text for row in rows]
    titles = [f"{'Q: ' + row.text + chr(10) if vqa else ''}true: {t}\nmodel: {g}"
              for row, t, g in zip(rows, truth, generated, strict=True)]
    image = plot_image_grid([thumbnail(row.image) for row in rows], [_wrap(t) for t in titles], path,
                            title="Held-out images: true vs generated")
    table = "| image | true | generated |\n|---|---|---|\n" + "\n".join(
        f"| {Path(row.image).name} | {_cell(t)} | {_cell(g)} |"
        for row, t, g in zip(rows, truth, generated, strict=True))
    return {"rows": [{"image": row.image, "true": t, "generated": g} for row, t, g in
                     zip(rows, truth, generated, strict=True)], "table": table, "image": str(image)}


def _wrap(text: str, width: int = 28) -> str:
    lines = []
    for line in text.split("\n"):
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            cut = cut if cut > 0 else width
            lines.append(line[:cut])
            line = line[cut:].lstrip()
        lines.append(line)
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:200]


# --------------------------------------------------------------------------- `tuneforge eval` on a Frozen run


def evaluate_run(run_dir: str | Path, blind_run: str | Path | None = None, binding: str | None = None,
                 vqa: str | None = None, episodes: int | None = None, out: Path | None = None,
                 force: bool = False, progress: bool = True) -> tuple[dict, Path]:
    """Perplexity (next to a blind run's), fast binding and VQA, as set in the run's config unless overridden;
    writes eval.md, eval.json and binding.png."""
    import json
    import time

    from tuneforge.config import load_config
    from tuneforge.errors import TuneforgeError
    from tuneforge.runs import open_run

    folder = open_run(run_dir)
    run = folder.parent
    config = load_config(run / "config.yaml")
    fz = config.frozen
    out = out or run / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / "eval.md").exists() and not force:
        raise TuneforgeError(f"{out} already holds an evaluation; pass --force to overwrite it")
    model = FrozenModel.from_run(run)
    results: dict = {"run": str(run)}
    results["perplexity"] = held_out_perplexities(model, config, blind_run)
    binding_source = binding if binding is not None else fz.binding_data
    if binding_source:
        categories = binding_categories(binding_source, config)
        results["binding"] = {"source": binding_source, "categories": len(categories), "rows": fast_binding(
            model, categories, fz.binding_ways, fz.binding_shots, episodes or fz.binding_episodes, config.seed,
            progress=progress)}
    vqa_source = vqa or fz.vqa_data or ("run" if fz.objective == "vqa" else None)
    if vqa_source:
        test, solved = vqa_rows(vqa_source, config)
        results["vqa"] = {"source": vqa_source if vqa_source != "run" else "the run's own test split",
                          "rows": vqa_accuracy(model, test, solved, fz.vqa_shots, fz.question_template,
                                               fz.vqa_questions, config.seed, progress=progress)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_eval_report(results, out)
    return results, out


def held_out_perplexities(model: FrozenModel, config, blind_run: str | Path | None) -> dict:
    """The run's test (else validation) caption perplexity, and a blind run's on the very same pairs."""
    from tuneforge.data.captions import load_image_text_splits
    from tuneforge.tasks.frozen.data import PairDataset, caption_perplexity

    splits = load_image_text_splits(config.data, config.seed, answers=config.frozen.objective == "vqa",
                                    language=config.frozen.caption_language)
    split = "test" if splits.test else "validation"
    rows = getattr(splits, split)
    result = {"split": split, "pairs": len(rows)}
    models = {"with images": model}
    if blind_run is not None:
        models["blind run"] = FrozenModel.from_run(blind_run)
        if not models["blind run"].meta["blind"]:
            from tuneforge.errors import RunError

            raise RunError(f"{blind_run} was not trained blind (frozen.blind: true); train one to compare with")
    for name, each in models.items():
        data = PairDataset(rows, each.tokenizer, each.fmt, each.prep, config)
        result[name] = caption_perplexity(each.model, data, each.fmt, config.train.batch_size)
    return result


def binding_categories(source: str, config) -> dict[str, list[str]]:
    """Category folders for binding: a built-in dataset's held-out ``binding/`` folder, or any folder."""
    from tuneforge.assets.datasets import DATASETS, dataset_folder
    from tuneforge.data.captions import read_categories
    from tuneforge.errors import DataError

    if source in DATASETS:
        folder = dataset_folder(source) / "binding"
        if not folder.is_dir():
            raise DataError(f"built-in dataset '{source}' has no binding folder; give a folder of category "
                            "sub-folders (frozen.binding_data or --binding)")
    else:
        folder = Path(source)
    return read_categories(folder, config.data)


def vqa_rows(source: str, config) -> tuple[list[ImageText], list[ImageText]]:
    """(questions to score, solved examples for few-shot prompts) from easy-vqa, a table, or the run's data."""
    from tuneforge.config import DataConfig
    from tuneforge.data.captions import load_image_text_splits

    if source == "run":
        data = config.data
    elif source in ("easy-vqa",):
        data = DataConfig(dataset=source)
    else:
        data = DataConfig(dataset=None, train_file=source, image_column=config.data.image_column,
                          text_column=config.data.text_column, label_column=config.data.label_column)
    splits = load_image_text_splits(data, config.seed, answers=True)
    return splits.test or splits.validation, splits.train


def write_eval_report(results: dict, out: Path) -> Path:
    lines = [f"# Frozen evaluation of {results['run']}", ""]
    ppl = results["perplexity"]
    lines += [f"## Held-out caption perplexity ({ppl['split']} split, {ppl['pairs']:,} pairs)", "",
              "| model | perplexity | loss | tokens |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {m['perplexity']:.2f} | {m['loss']:.4f} | {int(m['tokens']):,} |"
              for name, m in ppl.items() if isinstance(m, dict)]
    if "binding" in results:
        b = results["binding"]
        plot = plot_binding(b["rows"], out / "binding.png")
        lines += ["", f"## Open-ended fast concept binding ({b['source']}, {b['categories']} unseen categories)", "",
                  f"Prompt: N images per category, each followed by \"This is a <word>.\", then a new image and "
                  f"\"{BINDING_QUESTION}\"; exact match of the first generated word. 95% Wilson intervals.", "",
                  "| ways | shots | accuracy | 95% interval | chance | episodes |", "|---:|---:|---:|---|---:|---:|"]
        for row in b["rows"]:
            if "skipped" in row:
                lines.append(f"| {row['ways']} | {row['shots']} | skipped: {row['skipped']} | | | |")
                continue
            lines.append(f"| {row['ways']} | {row['shots']} | {row['accuracy']:.3f} | "
                         f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}] | {row['chance']:.3f} | {row['n']} |")
        lines += ["", f"![fast binding]({plot.name})"]
    if "vqa" in results:
        v = results["vqa"]
        lines += ["", f"## VQA ({v['source']})", "", "| solved examples in the prompt | accuracy | 95% interval | "
                  "questions |", "|---:|---:|---|---:|"]
        lines += [f"| {r['shots']} | {r['accuracy']:.3f} | [{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['n']} |"
                  for r in v["rows"]]
    path = out / "eval.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plot_binding(rows: list[dict], path: Path) -> Path:
    """Accuracy over inner shots, one line per N-way, with 95% intervals and each chance level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for ways in sorted({r["ways"] for r in rows}):
        cells = [r for r in rows if r["ways"] == ways and "skipped" not in r]
        if not cells:
            continue
        shots = [r["shots"] for r in cells]
        acc = [r["accuracy"] for r in cells]
        errors = [[a - r["ci_low"] for a, r in zip(acc, cells, strict=True)],
                  [r["ci_high"] - a for a, r in zip(acc, cells, strict=True)]]
        line = ax.errorbar(shots, acc, yerr=errors, marker="o", capsize=3, label=f"{ways}-way")
        ax.axhline(1 / ways, linestyle="--", linewidth=1, color=line[0].get_color(), alpha=0.6)
    ax.set_xlabel("inner shots (images of each category in the prompt)")
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Open-ended fast concept binding (dashed: chance)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate_request(run_dir: str | Path, request) -> str:
    """``tuneforge eval`` for Frozen runs: its own held-out pairs, or --binding / --vqa data."""
    from tuneforge.errors import TuneforgeError

    if request.data is not None:
        raise TuneforgeError("a Frozen run is evaluated on its own held-out pairs; give --binding FOLDER or "
                             "--vqa DATA for other data, not --data")
    _, out = evaluate_run(run_dir, request.blind, request.binding, request.vqa, request.episodes, request.out,
                          request.force)
    return f"{(out / 'eval.md').read_text(encoding='utf-8')}\nreport: {out / 'eval.md'}"
