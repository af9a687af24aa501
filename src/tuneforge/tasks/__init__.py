"""The task registry: everything task-specific, in one place per task.

A ``Task`` says what the rest of tuneforge needs to know about a task: its recipe (``tuneforge train``), its
loader (``tuneforge.load``), what ``predict`` reads, how ``eval`` scores new data, the ``init`` starter, the
server routes it answers, which exports and compressions apply, and the next-step lines after training.
Code is named by ``"module:attribute"`` strings and imported on first use, so ``tuneforge list`` and the CLI
start without torch. No module outside this registry compares against a task name
(``tests/test_architecture.py`` checks it).

Adding a task: a package or module with its recipe and loader, and one ``TASKS.register`` call below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import RunError, TuneforgeError
from tuneforge.registry import Registry
from tuneforge.runs.reader import RunFolder, how_to_repair, is_ensemble_folder, read_run


@dataclass(frozen=True)
class ServeSpec:
    """How the server answers a task's runs: a kind (which request handler) and the routes of that kind."""

    kind: str  # "text-classifier", "image-classifier", "tagger", "language-model", "image-text" (Frozen)
    routes: tuple[str, ...]


@dataclass
class EvalRequest:
    """``tuneforge eval`` options; a task's evaluator uses the ones it needs and refuses the rest."""

    data: Path | None = None
    out: Path | None = None
    text_column: str | None = None
    label_column: str | None = None
    image_column: str | None = None
    on_bad_rows: str = "error"
    force: bool = False
    blind: str | None = None
    binding: str | None = None
    vqa: str | None = None
    episodes: int | None = None
    encoding: str | None = None  # of --data (null: detected)
    sheet: str | int | None = None  # of an Excel --data
    perturb: tuple[str, ...] = ()  # robustness: also score the data after these perturbations ("typos", "synonyms")


@dataclass(frozen=True)
class Task:
    """One task: its code (lazily imported ``module:attribute`` references) and what it supports."""

    name: str
    description: str
    recipe: str  # train(config, resume=None, resume_force=False, extensions=()) -> Run
    loader: str  # load(run_dir) -> the trained model (predict/generate/caption...)
    evaluator: str | None = None  # evaluate(run_dir, EvalRequest) -> the text to print
    starter: str | None = None  # starter(task_name, data_path) -> commented YAML for `tuneforge init`
    predicts: str | None = None  # what `predict` reads: "texts", "images", "spans" (texts in, entities out), None
    generates: bool = False  # `tuneforge generate` works on its runs
    prompts_with_images: bool = False  # `tuneforge caption` / `ask` work on its runs
    serve: ServeSpec | None = None
    not_served: str = "it is not a model to serve"  # why, when ``serve`` is None
    exports: tuple[str, ...] = ()  # `tuneforge export --format` values that apply
    compressible: bool = False  # prune / compress / int8 / ONNX
    distillable: bool = False  # a run can teach a student (`tuneforge distill`)
    weights: tuple[str, ...] = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                                "bottleneck_adapters.safetensors")
    usage: Callable[[Path], list[str]] = field(default=lambda run: [])  # next steps: "command   # comment"

    def train(self, config, resume=None, resume_force: bool = False, extensions=()) -> Any:
        from tuneforge.techniques import configured_techniques  # lazily: they import torch

        extensions = [*configured_techniques(config), *extensions]  # data.augment, train.adversarial...
        more = {"extensions": extensions} if extensions else {}
        return _resolve(self.recipe)(config, resume=resume, resume_force=resume_force, **more)

    def load(self, run_dir: str | Path) -> Any:
        if is_ensemble_folder(run_dir):  # members of this task, combined (``tuneforge ensemble``)
            return _resolve(ENSEMBLE_LOADER)(run_dir)
        return _resolve(self.loader)(run_dir)

    def evaluate(self, run_dir: str | Path, request: EvalRequest) -> str:
        if self.evaluator is None:
            raise TuneforgeError(f"{run_dir}: evaluating a {self.name} run is not supported; its report has the "
                                 "held-out figures")
        return _resolve(self.evaluator)(run_dir, request)

    def starter_config(self, data: Path, encoding: str | None = None, sheet: str | int | None = None) -> str:
        if self.starter is None:
            raise TuneforgeError(f"tuneforge init has no starter for task {self.name}; copy a config from configs/")
        return _resolve(self.starter)(self.name, data, encoding=encoding, sheet=sheet)


def _resolve(reference: str) -> Callable:
    module, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


# An ensemble folder (``tuneforge ensemble``) is no task of its own: it names its members' task, and this loader
# combines the members' probabilities.
ENSEMBLE_LOADER = "tuneforge.tasks.ensemble:EnsembleClassifier.from_run"

TASKS: Registry[Task] = Registry("task")


def register(task: Task) -> Task:
    return TASKS.register(task.name, task.description, task)


def task_named(name: str) -> Task:
    return TASKS.get(name)


def recipe_for(task: str) -> Callable:
    """The ``train(config, ...) -> Run`` function of a task (imported lazily: recipes pull in torch)."""
    return _resolve(TASKS.get(task).recipe)


def open_run(path: str | Path) -> tuple[RunFolder, Task]:
    """A run's checked folder and its task: the one way every command opens a run.

    Raises:
        RunError: anything ``runs.read_run`` finds, an unknown task, or weights the task needs are missing.
    """
    run = read_run(path)
    if run.task not in TASKS:
        raise RunError(f"{path}: unknown task '{run.task}' in {run.model_dir / 'tuneforge.json'} (written by a newer "
                       "tuneforge?)")
    task = TASKS.get(run.task)
    if run.is_ensemble:  # no weights of its own; read_run opened every member
        return run, task
    present = {p.name for p in run.model_dir.iterdir()}
    if task.weights and run.format == "pytorch" and not present & set(task.weights):
        raise RunError(f"{run.model_dir}: no model weights ({' or '.join(task.weights)}); the folder is incomplete: "
                       f"{how_to_repair(run.model_dir, run.meta)}")
    if run.format != "pytorch" and not present & {"model.onnx", "model-int8.safetensors"}:
        raise RunError(f"{run.model_dir}: a {run.format} export without its model file; export the run again")
    return run, task


def load(path: str | Path) -> Any:
    """The trained model of a run (``tuneforge.load``); an ensemble folder gives its ``EnsembleClassifier``."""
    _, task = open_run(path)
    return task.load(path)


# --------------------------------------------------------------------------- the tasks

_CLASSIFIER_EXPORTS = ("merged", "int8", "onnx", "onnx-int8")


def _text_classifier_usage(run: Path) -> list[str]:
    return [f"tuneforge predict {run} \"{_example_text(run)}\"",
            f"tuneforge predict {run} --file texts.csv --out predictions.csv",
            f"tuneforge eval {run} --data labelled.csv   # the report on new data"]


def _example_text(run: Path) -> str:
    """A text to try the classifier on, in the language of its labels (Chinese labels: a Chinese review)."""
    from tuneforge.data.coverage import cjk_share

    try:
        labels = read_run(run).meta.get("labels") or []
    except RunError:
        labels = []
    return "物流很快，质量也不错" if cjk_share([str(label) for label in labels]) > 0.5 else "an utterly charming film"


def _image_classifier_usage(run: Path) -> list[str]:
    return [f"tuneforge predict {run} photo.jpg other.png",
            f"tuneforge predict {run} --dir FOLDER --out predictions.csv",
            f"tuneforge eval {run} --data LABELLED_FOLDER   # the report on new data"]


def _tagger_usage(run: Path) -> list[str]:
    return [f"tuneforge predict {run} \"{_example_sentence(run)}\"",
            f"tuneforge predict {run} --file texts.csv --out entities.jsonl",
            f"tuneforge eval {run} --data labelled.conll   # entity scores on new data"]


def _example_sentence(run: Path) -> str:
    """A sentence to try the tagger on, in the language of its training data (recorded as ``language``)."""
    try:
        chinese = read_run(run).meta.get("language") == "zh"
    except RunError:
        chinese = False
    return "李明昨天在北京参观了清华大学。" if chinese else "Angela Merkel met Emmanuel Macron in Paris."


def _lm_usage(chat: bool) -> Callable[[Path], list[str]]:
    return lambda run: [f"tuneforge generate {run}{' --chat' if chat else ''} \"your prompt\"",
                        f"tuneforge eval {run} --data held_out.txt   # perplexity on new text"]


def _frozen_usage(run: Path) -> list[str]:
    return [f"tuneforge caption {run} image.png",
            f"tuneforge ask {run} --image a.png --text \"This is a dax.\" --image q.png "
            "--text \"Q: What is this? A: This is a\"",
            f"tuneforge eval {run}   # fast binding, VQA, perplexity (--blind BLIND_RUN)"]


register(Task(
    "text_classification",
    "single- or multi-label text classification with a fresh head on a pretrained encoder",
    recipe="tuneforge.tasks.text_classification.recipe:train",
    loader="tuneforge.tasks.text_classification.model:TextClassifier.from_run",
    evaluator="tuneforge.tasks.text_classification.files:evaluate_run",
    starter="tuneforge.starter:starter_config",
    predicts="texts",
    serve=ServeSpec("text-classifier", ("/v1/classify",)),
    exports=_CLASSIFIER_EXPORTS, compressible=True, distillable=True,
    weights=("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
             "bottleneck_adapters.safetensors"),
    usage=_text_classifier_usage,
))
register(Task(
    "token_classification",
    "named entities (token classification) from CoNLL files or annotation-tool exports; spans with types, "
    "offsets and scores; optional CRF and rule patterns",
    recipe="tuneforge.tasks.token_classification.recipe:train",
    loader="tuneforge.tasks.token_classification.model:TokenClassifier.from_run",
    evaluator="tuneforge.tasks.token_classification.files:evaluate_run",
    starter="tuneforge.tasks.token_classification.files:starter_config",
    predicts="spans",
    serve=ServeSpec("tagger", ("/v1/extract",)),
    exports=("merged", "onnx"),
    usage=_tagger_usage,
))
register(Task(
    "causal_lm",
    "continued pretraining of a causal LM (smollm2-135m) on domain text: packed blocks, perplexity before/after",
    recipe="tuneforge.tasks.language_models.causal_lm:train",
    loader="tuneforge.tasks.language_models.generator:LanguageModel.from_run",
    evaluator="tuneforge.tasks.language_models.files:evaluate_run",
    generates=True,
    serve=ServeSpec("language-model", ("/v1/completions", "/v1/chat/completions")),
    exports=("merged",), distillable=True,
    usage=_lm_usage(chat=False),
))
register(Task(
    "masked_lm",
    "domain-adaptive masked-LM pretraining of an encoder (minilm-l6); its model/ starts a later classifier",
    recipe="tuneforge.tasks.language_models.masked_lm:train",
    loader="tuneforge.tasks.language_models.recipe:load_masked_lm",
    not_served="a masked-LM run is a starting point for a classifier, not a model to serve",
    exports=("merged",),
    usage=lambda run: [f"tuneforge export {run} --merge   # first, if it trained an adapter (lora, ia3...)",
                       f"tuneforge train CONFIG model.name={run}/model   # a text classifier starts from it"],
))
register(Task(
    "sft",
    "instruction tuning of a causal LM on chat messages or instruction/response columns; loss on responses only",
    recipe="tuneforge.tasks.language_models.sft:train",
    loader="tuneforge.tasks.language_models.generator:LanguageModel.from_run",
    evaluator="tuneforge.tasks.language_models.files:evaluate_run",
    generates=True,
    serve=ServeSpec("language-model", ("/v1/completions", "/v1/chat/completions")),
    exports=("merged",), distillable=True,
    usage=_lm_usage(chat=True),
))
register(Task(
    "prompt_classification",
    "zero/few-shot classification by a causal LM's likelihood of each label word; no training",
    recipe="tuneforge.tasks.prompt_classification.recipe:train",
    loader="tuneforge.tasks.prompt_classification.recipe:PromptClassifier.from_run",
    evaluator="tuneforge.tasks.text_classification.files:evaluate_run",
    predicts="texts",
    serve=ServeSpec("text-classifier", ("/v1/classify",)),
    weights=(),  # the template, label words and drawn examples; the base model is read at load
    usage=_text_classifier_usage,
))
register(Task(
    "image_classification",
    "image classification on efficientnet-lite0 (probe with cached features, top-k blocks, full, LoRA on convs)",
    recipe="tuneforge.tasks.image_classification.recipe:train",
    loader="tuneforge.tasks.image_classification.model:ImageClassifierModel.from_run",
    evaluator="tuneforge.tasks.image_classification.files:evaluate_run",
    starter="tuneforge.starter:image_starter_config",
    predicts="images",
    serve=ServeSpec("image-classifier", ("/v1/classify",)),
    exports=("merged",), distillable=True,
    usage=_image_classifier_usage,
))
register(Task(
    "frozen",
    "Frozen (Tsimpoukelli et al. 2021): a vision encoder learns prefixes for a frozen smollm2-135m; captions, "
    "interleaved few-shot prompts, fast concept binding, VQA",
    recipe="tuneforge.tasks.frozen.recipe:train",
    loader="tuneforge.tasks.frozen.model:FrozenModel.from_run",
    evaluator="tuneforge.tasks.frozen.evaluation:evaluate_request",
    prompts_with_images=True,
    serve=ServeSpec("image-text", ("/v1/caption", "/v1/ask")),
    weights=("vision.safetensors",),
    usage=_frozen_usage,
))
