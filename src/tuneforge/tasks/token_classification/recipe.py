"""Token classification, top to bottom: tagged data -> model -> method -> train -> entity scores -> save -> report.

Named entities from CoNLL files (BIO, IOB1, BIOES, BMES, IO) or annotation-tool span exports, all read into one
form (character-offset entities over words, ``data.tagging``) and tagged BIO per word. The model scores each
word at its first sub-token; an optional CRF (``ner.crf``) decodes whole sequences. Scores are seqeval's strict
entity-level precision, recall and F1. The saved ``model/`` is an HF token-classification folder (or a PEFT
adapter folder), the CRF's transitions in ``crf.safetensors``, and ``tuneforge.json`` with the tags and windows.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from tuneforge.assets import resolve_model
from tuneforge.assets.datasets import check_dataset_task
from tuneforge.config import Config
from tuneforge.data.coverage import check_coverage, cjk_share
from tuneforge.data.tagging import TaggedText, entity_tags, load_tagged_splits, tags_to_entities
from tuneforge.data.text import SeededBatches
from tuneforge.engine.loop import fit, planned_steps
from tuneforge.engine.setup import apply_memory_settings, make_accelerator, process_state, seed_everything
from tuneforge.errors import ConfigError
from tuneforge.extensions import Extension, Extensions, TaskContext
from tuneforge.methods import Target, apply_method, count_parameters, describe_trainable, head_module_names
from tuneforge.runs import Run, run_dir_for, write_meta
from tuneforge.runs.finish import RunReport, data_notes, run_summary, write_run
from tuneforge.runs.reader import trained_meta
from tuneforge.starter import CJK_THRESHOLD
from tuneforge.tasks import TASKS
from tuneforge.tasks.token_classification.encoding import WindowCollator, WindowDataset, WordTokenizer
from tuneforge.tasks.token_classification.inference import Tagging, tag_windows
from tuneforge.tasks.token_classification.network import Tagger, build_tagger
from tuneforge.tasks.token_classification.patterns import compile_patterns
from tuneforge.tasks.token_classification.scoring import entity_errors, entity_scores, report_section, type_confusion

CRF_FILE = "crf.safetensors"

# --------------------------------------------------------------------------- the recipe


def train(config: Config, resume: str | Path | None = None, resume_force: bool = False,
          extensions: Sequence[Extension] = ()) -> Run:
    """Fine-tune a pretrained encoder to tag entities; returns the finished run."""
    processes = process_state()
    config.eval.metric = config.eval.metric or "f1"
    _check_settings(config)
    hooks, context = Extensions(extensions), TaskContext(config)
    hooks.recipe_start(context)
    seed_everything(config)
    if config.data.dataset and not config.data.train_file:
        check_dataset_task(config.data.dataset, config.task)
    splits = load_tagged_splits(config.data, config.seed)  # every sentence validated before any model loads
    compile_patterns(config.ner.patterns, Path.cwd())  # a bad rule is a config error now, not after training
    tags = bio_tags(splits.labels())
    context.splits = splits

    tokenizer, model = hooks.build_model(lambda: build_tagger(config.model.name, tags, config.ner.layers), context)
    context.tokenizer = tokenizer
    check_coverage([e.text for e in splits.train], tokenizer, config.model.name, config.data.allow_unknown_tokens)
    apply_memory_settings(model, config)
    tagging = Tagging(WordTokenizer(tokenizer), tags, config.data.max_length, config.ner.stride)
    windows = {name: tagging.windows(_documents(rows), [entity_tags(r) for r in rows])
               for name, rows in (("train", splits.train), ("validation", splits.validation), ("test", splits.test))}
    train_set = hooks.train_data(WindowDataset([w for doc in windows["train"] for w in doc]), context)
    context.datasets = {"train": train_set, **{k: v for k, v in windows.items() if k != "train"}}
    pad_id = tokenizer.pad_token_id or 0
    context.remake_batch = batch_remaker(splits.train, train_set, tagging, pad_id)
    train_loader = _train_loader(train_set, pad_id, config)
    heads = tuple(head_module_names(model))
    target = Target(heads=heads, task_type="TOKEN_CLS", total_steps=planned_steps(config, train_loader),
                    tokenizer_path=resolve_model(config.model.name))
    tagger = Tagger(apply_method(model, config.method, target), tags, config.ner.crf)
    trainable, total = count_parameters(tagger)
    print(f"Trainable parameters: {describe_trainable(trainable, total)}", file=sys.stderr)
    run_dir, checkpoint = run_dir_for(config, resume, resume_force, processes)

    accelerator = make_accelerator(config, run_dir)
    result = fit(tagger, train_loader, lambda m, batch: m(batch, with_loss=True),
                 _validation_scorer(accelerator, splits.validation, windows["validation"], pad_id, config),
                 config, accelerator, (*heads, "crf"), run_dir=run_dir, resume=checkpoint, extensions=extensions,
                 context=context, row_ids=lambda indices: [_window_source(splits.train, train_set, i)
                                                           for i in indices])
    tagger = accelerator.unwrap_model(tagger).eval()

    evaluation, errors = _final_evaluation(tagger, splits, windows, pad_id, config)
    extras = {"trainable_parameters": trainable, "total_parameters": total, "fit": result.summary(),
              "tags": tags, "errors": errors}
    more, sections = hooks.report(context, tagger, evaluation)
    extras |= more
    if not processes.is_main_process:
        return Run(run_dir, {"task": config.task, **evaluation, **extras})
    save_tagger(tagger, tokenizer, run_dir / "model", config, language_of([e.text for e in splits.train]))
    return _finish(run_dir, config, splits, evaluation, result.history, extras, sections)


def _check_settings(config: Config) -> None:
    if getattr(config.method, "cache_features", False):
        raise ConfigError("method.cache_features: only image_classification caches features; set it false")
    if config.data.multi_label:
        raise ConfigError("data.multi_label: token classification gives each word one tag; set it false")
    if config.data.paraphrase_column:
        raise ConfigError("data.paraphrase_column: a paraphrase has no entity spans to train on; set it null "
                          "(data.augment keeps entities aligned)")
    if config.method.name in ("prefix_tuning", "prompt_tuning"):
        # PEFT prepends virtual tokens, which shifts every word's position in the model's output
        raise ConfigError(f"method '{config.method.name}' adds virtual tokens before the text, which token "
                          "classification cannot align with words; use lora, adalora, ia3, topk, freeze or full")


def bio_tags(types: list[str]) -> list[str]:
    """The model's tag set: O, then B-/I- for each entity type in sorted order."""
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in ("B", "I")]


def _documents(rows: list[TaggedText]) -> list[tuple[str, tuple]]:
    return [(r.text, r.words) for r in rows]


def _window_source(rows: list[TaggedText], dataset: WindowDataset, index: int) -> str:
    windows = getattr(dataset, "windows", None)
    if windows is None or index >= len(windows):
        return f"added example {index + 1}"
    return rows[windows[index].item].source


def batch_remaker(rows: list[TaggedText], dataset: WindowDataset, tagging: Tagging, pad_id: int):
    """``TaskContext.remake_batch`` for tagged text: a sentence that fits one window is re-encoded after
    ``change(index, sentence)``; windows of longer documents stay as they are."""
    collate = WindowCollator(pad_id)

    def remake(batch: dict, change) -> dict:
        items = []
        for index in batch["index"].tolist():
            item = dataset[index]
            window = dataset.windows[index] if index < len(dataset.windows) else None
            whole = window is not None and window.first_word == 0 and \
                len(window.word_positions) == len(rows[window.item].words)
            changed = change(index, rows[window.item]) if whole else None
            if changed is not None:
                remade = tagging.windows([(changed.text, changed.words)], [entity_tags(changed)])[0]
                if len(remade) == 1:  # still one window (an inserted word could push it past max_length)
                    item = {"input_ids": remade[0].input_ids, "word_positions": remade[0].word_positions,
                            "word_tags": remade[0].word_tags, "index": index}
            items.append(item)
        return collate(items)

    return remake


def _train_loader(dataset: WindowDataset, pad_id: int, config: Config) -> DataLoader:
    mode = "grouped" if config.train.group_by_length else "random"
    batches = SeededBatches(dataset.lengths(), config.train.batch_size, config.seed, mode)
    # a private generator: starting an epoch must not draw from dropout's global RNG (exact resume)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=WindowCollator(pad_id),
                      num_workers=config.train.num_workers, generator=torch.Generator().manual_seed(config.seed))


# --------------------------------------------------------------------------- scoring


def _validation_scorer(accelerator, rows: list[TaggedText], windows, pad_id: int, config: Config):
    gold = [entity_tags(r) for r in rows]

    def evaluate_validation(model) -> dict[str, float]:
        predicted, _, loss = tag_windows(accelerator.unwrap_model(model), windows, pad_id, config.eval.batch_size,
                                         with_loss=True)
        scores = entity_scores(gold, predicted)
        return {k: v for k, v in scores.items() if isinstance(v, float)} | {"loss": loss}

    return evaluate_validation


def _final_evaluation(tagger: Tagger, splits, windows: dict, pad_id: int, config: Config) -> tuple[dict, dict]:
    """Entity scores on validation and test, and the test split's (else validation's) errors by kind."""
    evaluation, errors = {}, {}
    for split in ("validation", "test"):
        rows = getattr(splits, split)
        if not rows:
            continue
        predicted, _, loss = tag_windows(tagger, windows[split], pad_id, config.eval.batch_size, with_loss=True)
        gold_tags = [entity_tags(r) for r in rows]
        evaluation[split] = entity_scores(gold_tags, predicted) | {"loss": loss}
        gold = [r.entities for r in rows]
        found = [tags_to_entities(t, r.words) for t, r in zip(predicted, rows, strict=True)]
        errors = {"kinds": entity_errors(gold, found, [r.text for r in rows]),
                  "confusion": type_confusion(gold, found), "split": split}
    return evaluation, errors


# --------------------------------------------------------------------------- saving and the report


def language_of(texts: list[str]) -> str:
    """"zh" when at least 30% of the letters are CJK (as ``tuneforge init`` judges a file), else "other"."""
    return "zh" if cjk_share(texts[:2000]) >= CJK_THRESHOLD else "other"


def save_tagger(tagger: Tagger, tokenizer, folder: Path, config: Config, language: str) -> None:
    """An HF token-classification folder (or a PEFT adapter folder), the CRF, the tokenizer and tuneforge.json."""
    folder.mkdir(parents=True, exist_ok=True)
    tagger.model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if tagger.crf is not None:
        save_file({k: v.detach().contiguous() for k, v in tagger.crf.state_dict().items()}, folder / CRF_FILE)
    meta = trained_meta(config, tagger.model) | {
        "tags": tagger.tag_names,
        "max_length": config.data.max_length,
        "stride": config.ner.stride,
        "crf": tagger.crf is not None,
        "layers": config.ner.layers,
        "patterns": _stored_patterns(config),
        "language": language,
    }
    write_meta(folder, meta)


def _stored_patterns(config: Config) -> list[dict]:
    """The rules as regular expressions (dictionary files compiled in), so the run predicts the same wherever it
    is copied, without the files."""
    rules = compile_patterns(config.ner.patterns, Path.cwd()).rules
    return [{"type": rule.type, "regex": rule.regex.pattern} for rule in rules]


def _finish(run_dir: Path, config: Config, splits, evaluation: dict, history: list[dict], extras: dict,
            sections: dict[str, str]) -> Run:
    headline = evaluation.get("test") or evaluation["validation"]
    errors = extras.pop("errors")
    entities = report_section(headline, errors["kinds"], errors["confusion"])
    report = RunReport(
        summary=run_summary(config, extras, splits), headline=_headline(headline), notes=data_notes(splits),
        sections={f"Entities ({errors['split']} split)": entities} | sections,
        usage=TASKS.get(config.task).usage(run_dir), warnings=list(splits.warnings),
    )
    metrics = {**evaluation, **extras, "errors": errors["kinds"]["counts"]}  # examples stay in the report
    return write_run(run_dir, config, metrics, history, report)


def _headline(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "per_type"}  # the per-type table is the Entities section
