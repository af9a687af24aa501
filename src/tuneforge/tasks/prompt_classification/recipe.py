"""Zero- and few-shot classification by prompting a causal LM: no training at all.

Each class has a label word (its verbalizer). A prompt is an optional instruction, k labelled
examples from the training split written with the template, then the text to classify written with
the template up to ``{label}``. The predicted class is the one whose label word the LM finds most
likely there (sum of the word's token log-probabilities). Evaluation reports every k in
``prompt.eval_shots``, so a user sees what in-context examples buy before paying for fine-tuning.

A run folder holds no weights, only ``model/tuneforge.json`` (template, label words, the drawn
examples, the base model), so ``tuneforge predict`` and ``eval`` work on it like on any run.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from tuneforge.assets import portable_model_name
from tuneforge.config import Config
from tuneforge.data.readers import Example
from tuneforge.data.splits import load_splits
from tuneforge.errors import ConfigError
from tuneforge.evaluation.metrics import classification_metrics
from tuneforge.evaluation.plots import plot_confusion_matrix
from tuneforge.runs import Run, create_run_dir, read_run, write_meta
from tuneforge.runs.finish import RunReport, write_run
from tuneforge.tasks import TASKS
from tuneforge.tasks.classification import LabelSpace, Prediction
from tuneforge.tasks.language_models.causal_lm import TASK as CAUSAL_LM
from tuneforge.tasks.language_models.recipe import build_lm


@dataclass
class PromptSpec:
    template: str
    label_words: dict[str, str]  # class name -> word
    instruction: str = ""

    def render(self, demos: list[dict], text: str) -> str:
        """Instruction, the k examples with their label words, then the query up to its label word."""
        head = self.template[: self.template.index("{label}")].rstrip(" ")
        shots = [self.template.format(text=d["text"], label=self.label_words[d["label"]]) for d in demos]
        parts = ([self.instruction] if self.instruction else []) + shots + [head.format(text=text)]
        return "\n\n".join(parts)


# --------------------------------------------------------------------------- the recipe


def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence = ()) -> Run:
    """Evaluate prompting at every k in ``prompt.eval_shots``; the run predicts with ``prompt.shots`` examples.

    ``extensions`` are refused: with no training there is nothing for them to act on.
    """
    if resume is not None:
        raise ConfigError("prompt_classification trains nothing, so there is nothing to resume: run it again")
    if extensions:
        raise ConfigError("prompt_classification trains nothing, so training extensions have nothing to act on")
    config.eval.metric = config.eval.metric or "accuracy"
    if config.data.multi_label:
        raise ConfigError("prompt_classification picks one label per text; data.multi_label must be false")
    splits = load_splits(config.data, config.seed)
    labels = splits.labels()
    spec = PromptSpec(config.prompt.template, label_words(config, labels), config.prompt.instruction)
    tokenizer, model, _ = build_lm(config.model.name, CAUSAL_LM)
    pool = draw_demos(splits.train, max([config.prompt.shots, *config.prompt.eval_shots]), config)
    classifier = PromptClassifier(model, tokenizer, spec, labels, pool, config.prompt.shots,
                                  _meta(config, spec, labels, pool), source=Path("."))
    held_out = splits.test or splits.validation
    split_name = "test" if splits.test else "validation"
    classifier.progress = config.output.progress
    headline = classifier.evaluate(held_out, config.prompt.shots)
    by_shots = classifier.evaluate_shots(held_out, sorted(set(config.prompt.eval_shots)),
                                         known={config.prompt.shots: headline})
    run_dir = create_run_dir(config)
    model_dir = run_dir / "model"
    model_dir.mkdir()
    write_meta(model_dir, classifier.meta)
    metrics = {split_name: headline, "by_shots": by_shots, "labels": labels,
               "trainable_parameters": 0, "total_parameters": sum(p.numel() for p in model.parameters())}
    report = _report(run_dir, config, spec, classifier, headline, by_shots, split_name, splits)
    return write_run(run_dir, config, metrics, None, report)


def label_words(config: Config, labels: list[str]) -> dict[str, str]:
    """The configured verbalizers, checked against the data's classes (every class named once)."""
    words = config.prompt.label_words or {name: name for name in labels}
    unknown = sorted(set(words) - set(labels))
    missing = sorted(set(labels) - set(words))
    if unknown or missing:
        raise ConfigError(f"prompt.label_words must name each class of the data once: classes {labels}; "
                          f"missing {missing}, unknown {unknown}")
    if len(set(words.values())) < len(words):
        raise ConfigError(f"prompt.label_words gives two classes the same word: {words}")
    return {name: words[name] for name in labels}


def draw_demos(train: list[Example], count: int, config: Config) -> list[dict]:
    """``count`` in-context examples, seeded; round-robin over classes when ``prompt.balanced``.

    The first k of the pool are the k-shot examples, so the k-shot prompts extend each other.
    """
    rng = random.Random(config.seed)
    rows = [{"text": e.text, "label": e.label} for e in train]
    if not config.prompt.balanced:
        return rng.sample(rows, min(count, len(rows)))
    by_class: dict[str, list[dict]] = {}
    for row in rows:
        by_class.setdefault(row["label"], []).append(row)
    queues = [rng.sample(group, len(group)) for _, group in sorted(by_class.items())]
    rng.shuffle(queues)
    pool = []
    while len(pool) < count and any(queues):
        for queue in queues:
            if queue and len(pool) < count:
                pool.append(queue.pop())
    return pool


def _meta(config: Config, spec: PromptSpec, labels: list[str], pool: list[dict]) -> dict:

    return {
        "task": config.task, "base_model": portable_model_name(config.model.name),
        "method": "prompting (no training)", "adapter": False, "labels": labels, "multi_label": False,
        "thresholds": None, "template": spec.template, "label_words": spec.label_words,
        "instruction": spec.instruction, "shots": config.prompt.shots, "eval_shots": config.prompt.eval_shots,
        "demos": pool, "text_column": config.data.text_column, "label_column": config.data.label_column,
        "batch_size": config.eval.batch_size,
    }


# --------------------------------------------------------------------------- the classifier


class PromptClassifier:
    """Predicts with a frozen causal LM and a prompt; ``tuneforge.load`` gives one for a prompt run."""

    def __init__(self, model, tokenizer, spec: PromptSpec, labels: list[str], demos: list[dict], shots: int,
                 meta: dict, source: Path) -> None:
        self.model, self.tokenizer = model.eval().to(PartialState().device), tokenizer
        self.spec, self.demos, self.shots = spec, demos, shots
        self.labels = LabelSpace(labels, multi_label=False)
        self.meta, self.source = meta, source
        self.batch_size = meta.get("batch_size", 32)
        self.progress = True  # progress bars while evaluating

    @classmethod
    def from_run(cls, path: str | Path) -> PromptClassifier:
        opened = read_run(path)
        folder, meta = opened.model_dir, opened.meta
        tokenizer, model, _ = build_lm(meta["base_model"], CAUSAL_LM)
        spec = PromptSpec(meta["template"], meta["label_words"], meta["instruction"])
        return cls(model, tokenizer, spec, meta["labels"], meta["demos"], meta["shots"], meta, folder)

    def predict_proba(self, texts: list[str], shots: int | None = None, progress: bool = False) -> np.ndarray:
        """(N, L) probabilities: a softmax over the label words' log-likelihoods."""
        demos = self.demos[: self.shots if shots is None else shots]
        prompts = [self.spec.render(demos, str(text)) for text in texts]
        words = [self.spec.label_words[name] for name in self.labels.names]
        scores = label_log_likelihoods(self.model, self.tokenizer, prompts, words, self.batch_size, progress)
        return torch.softmax(torch.from_numpy(scores), dim=1).numpy()

    def predict(self, texts: list[str]) -> list[Prediction]:
        probs = self.predict_proba(texts)
        names = self.labels.names
        return [Prediction(names[int(row.argmax())], dict(zip(names, map(float, row), strict=True)))
                for row in probs]

    def evaluate(self, examples: list[Example], shots: int) -> dict:
        probs = self.predict_proba([e.text for e in examples], shots, progress=self.progress)
        index = {name: i for i, name in enumerate(self.labels.names)}
        return classification_metrics([index[e.label] for e in examples], probs.argmax(1).tolist(), self.labels.names)

    def evaluate_shots(self, examples: list[Example], shots: list[int],
                       known: dict[int, dict] | None = None) -> dict[str, dict]:
        """Accuracy and macro F1 for each k (k larger than the drawn pool is left out; ``known`` reused)."""
        results = {}
        for k in shots:
            if k > len(self.demos):
                print(f"k={k}: only {len(self.demos)} training examples to draw from; left out", file=sys.stderr)
                continue
            metrics = (known or {}).get(k) or self.evaluate(examples, k)
            results[str(k)] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
            print(f"k={k}: accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f}", file=sys.stderr)
        return results

    def extra_evaluation(self, examples: list[Example], out_dir: Path) -> tuple[dict, dict[str, str], dict[str, str]]:
        """For ``tuneforge eval``: accuracy by k on the new data, as metrics, a report section and a plot."""
        by_shots = self.evaluate_shots(examples, sorted(set(self.meta["eval_shots"])))
        plot = _plot_shots(by_shots, out_dir / "accuracy_by_shots.png")
        return {"by_shots": by_shots}, {"Accuracy by number of in-context examples": _shots_table(by_shots)}, \
            {"Accuracy by k": str(plot)}


@torch.no_grad()
def label_log_likelihoods(model, tokenizer, prompts: list[str], words: list[str], batch_size: int,
                          progress: bool = False) -> np.ndarray:
    """(N, C): log p(word_c | prompt_n), summed over the word's tokens.

    Prompts are left-padded (positions passed explicitly) so every word ends at the last position,
    and only the logits of the last few positions are computed: a 49k-word vocabulary times every
    prompt token would not fit in memory.
    """
    word_ids = [tokenizer(" " + word, add_special_tokens=False)["input_ids"] for word in words]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    single = all(len(ids) == 1 for ids in word_ids)  # then one forward pass scores every class
    sequences = [(n, c, ids + ([] if single else word_ids[c])) for n, ids in enumerate(prompt_ids)
                 for c in ([0] if single else range(len(words)))]
    sequences.sort(key=lambda item: len(item[2]))
    scores = np.zeros((len(prompts), len(words)), dtype=np.float64)
    keep = 1 if single else max(len(ids) for ids in word_ids) + 1
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in tqdm(range(0, len(sequences), batch_size), desc="scoring", unit="batch", disable=not progress,
                      leave=False):
        chunk = sequences[start : start + batch_size]
        width = max(len(ids) for _, _, ids in chunk)
        ids = torch.tensor([[pad] * (width - len(s)) + s for _, _, s in chunk])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for _, _, s in chunk])
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        device = model.device
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       logits_to_keep=keep).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, (n, c, _) in enumerate(chunk):
            if single:
                scores[n] = [logprobs[row, -1, w[0]].item() for w in word_ids]
            else:
                word = word_ids[c]
                predicted = logprobs[row, -len(word) - 1 : -1]  # position t predicts token t + 1
                index = torch.tensor(word, device=predicted.device)[:, None]
                scores[n, c] = predicted.gather(1, index).sum().item()
    return scores


# --------------------------------------------------------------------------- report


def _shots_table(by_shots: dict[str, dict]) -> str:
    rows = "\n".join(f"| {k} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |" for k, m in by_shots.items())
    return "| in-context examples (k) | accuracy | macro F1 |\n|---|---|---|\n" + rows


def _plot_shots(by_shots: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in by_shots]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, [m["accuracy"] for m in by_shots.values()], marker="o", label="accuracy")
    ax.plot(ks, [m["macro_f1"] for m in by_shots.values()], marker="s", label="macro F1")
    ax.set_xlabel("in-context examples (k)")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1)
    ax.set_title("Prompting: quality by number of examples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _report(run_dir: Path, config: Config, spec: PromptSpec, classifier: PromptClassifier, headline: dict,
            by_shots: dict, split_name: str, splits) -> RunReport:
    images = {"Accuracy by k": str(_plot_shots(by_shots, run_dir / "accuracy_by_shots.png")),
              "Confusion matrix": str(plot_confusion_matrix(headline["confusion_matrix"], classifier.labels.names,
                                                            run_dir / "confusion_matrix.png"))}
    example = spec.render(classifier.demos[: min(2, config.prompt.shots)], "<the text to classify>")
    summary = {
        "task": config.task, "model": config.model.name, "method": "prompting, no training",
        "label words": ", ".join(f"{k} -> {v!r}" for k, v in spec.label_words.items()),
        "in-context examples for predictions": str(config.prompt.shots),
        "evaluated on": f"{split_name} split, {len(splits.test or splits.validation):,} examples",
        "seed": str(config.seed),
    }
    sections = {
        "Accuracy by number of in-context examples": _shots_table(by_shots),
        "Prompt": f"An example prompt (k = {min(2, config.prompt.shots)}):\n\n```text\n{example}\n```",
    }
    return RunReport(summary, headline, images=images, sections=sections, usage=TASKS.get(config.task).usage(run_dir),
                     warnings=splits.warnings, notes=splits.notes)
