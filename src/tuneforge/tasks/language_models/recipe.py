"""What causal LM, masked LM and instruction tuning share: model, loss, perplexity, the recipe, saving.

Each of those tasks only decides how text becomes token batches (``LMData``); this module trains on
them with the shared engine, measures held-out perplexity before and after, saves the model (a
plain HF folder, or a PEFT adapter folder) and writes the report.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import PartialState
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tuneforge.assets import MODELS, resolve_model
from tuneforge.assets.datasets import check_dataset_task
from tuneforge.config import Config
from tuneforge.data.text import SeededBatches
from tuneforge.engine.loop import fit, planned_steps
from tuneforge.engine.setup import apply_memory_settings, make_accelerator, process_state, seed_everything
from tuneforge.errors import ConfigError, RegistryError
from tuneforge.extensions import Extension, Extensions, TaskContext
from tuneforge.methods import Target, apply_method, count_parameters, describe_trainable
from tuneforge.runs import Run, read_run, run_dir_for, write_meta
from tuneforge.runs.finish import RunReport, write_run
from tuneforge.runs.reader import trained_meta
from tuneforge.tasks import TASKS

LM_METRICS = ("perplexity", "loss")


@dataclass
class LMData:
    """A task's token batches: datasets per split, how to collate them, and what to tell the user."""

    train: Dataset
    validation: Dataset
    test: Dataset | None
    collate: Callable  # training batches
    collate_eval: Callable  # held-out batches (masked LM: fixed masks, so numbers are comparable)
    lengths: list[int]  # token count of each training item, for length-grouped batches
    sources: dict[str, str]
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # examples per split, for the summary
    samples: list[tuple[list[dict], str]] = field(default_factory=list)  # held-out (conversation, reply)


@dataclass
class LMTask:
    """How one language-model task differs: its model class, PEFT task type and data preparation."""

    name: str
    auto_class: str  # "AutoModelForCausalLM" or "AutoModelForMaskedLM"
    peft_task_type: str | None
    prepare: Callable[[Config, object], LMData]
    grouped_batches: bool = False  # SFT examples vary in length; packed blocks do not
    chat: bool = False  # conversations: the run keeps its system prompt for generation (SFT)

    @property
    def causal(self) -> bool:
        return self.auto_class.endswith("CausalLM")


def run(task: LMTask, config: Config, resume: str | Path | None = None, resume_force: bool = False,
        extensions: Sequence[Extension] = ()) -> Run:
    """Train a language model on ``task``'s data; returns the finished run.

    ``extensions``: training techniques that join the run (``tuneforge.extensions``; ``tuneforge distill``'s).
    """
    processes = process_state()
    config.eval.metric = config.eval.metric or "perplexity"
    if config.eval.metric not in LM_METRICS:
        raise ConfigError(f"eval.metric: '{config.eval.metric}' is not measured for {task.name}; "
                          f"use {' or '.join(LM_METRICS)}")
    hooks, context = Extensions(extensions), TaskContext(config)
    hooks.recipe_start(context)
    seed_everything(config)
    if config.data.dataset and not config.data.train_file:
        check_dataset_task(config.data.dataset, task.name)
    tokenizer, model, new = hooks.build_model(lambda: build_lm(config.model.name, task), context)
    context.tokenizer = tokenizer
    data = task.prepare(config, tokenizer)  # every row validated before training starts
    extended = hooks.train_data(data.train, context)
    if extended is not data.train:
        data.train, data.lengths = extended, extended.lengths()
    context.datasets = {"train": data.train, "validation": data.validation, "test": data.test}
    check_block_length(model, config.data.max_length)
    apply_memory_settings(model, config)

    model.to(processes.device)  # perplexity before training is measured where training will run
    train_loader = _train_loader(data, config, task.grouped_batches)
    evaluate = _evaluator(task, data, config)
    before = {split: evaluate(model, split) for split in ("validation", "test") if _has(data, split)}
    if new:
        print(f"New weights (not in the checkpoint), trained by every method: {', '.join(new)}", file=sys.stderr)
    target = Target(heads=new, task_type=task.peft_task_type, total_steps=planned_steps(config, train_loader),
                    tokenizer_path=resolve_model(config.model.name))
    model = apply_method(model, config.method, target)
    trainable, total = count_parameters(model)
    print(f"Trainable parameters: {describe_trainable(trainable, total)}", file=sys.stderr)
    print(f"validation perplexity before training: {before['validation']['perplexity']:.2f}", file=sys.stderr)

    run_dir, checkpoint = run_dir_for(config, resume, resume_force, processes)
    accelerator = make_accelerator(config, run_dir)
    loss = causal_loss if task.causal else masked_loss
    result = fit(model, train_loader, loss,
                 lambda m: evaluate(accelerator.unwrap_model(m), "validation"), config, accelerator,
                 head_prefixes=new, run_dir=run_dir, resume=checkpoint, extensions=extensions, context=context)
    model = accelerator.unwrap_model(model).eval()
    evaluation = {split: evaluate(model, split) | {f"{k}_before": v for k, v in before[split].items()}
                  for split in before}
    extras = {"trainable_parameters": trainable, "total_parameters": total, "fit": result.summary(),
              "counts": data.counts}
    more, sections = hooks.report(context, model, evaluation)
    extras |= more
    if not processes.is_main_process:
        return Run(run_dir, {"task": config.task, **evaluation, **extras})
    save_lm(model, tokenizer, run_dir / "model", config, task)
    samples = sample_replies(model, tokenizer, data.samples) if data.samples else None
    if samples:
        extras["sample_replies"] = samples
    return finish_lm_run(run_dir, config, data, evaluation, result.history, extras, sections)


def sample_replies(model: nn.Module, tokenizer, samples: list[tuple[list[dict], str]]) -> dict:
    """Greedy replies to held-out prompts next to the references: does the model answer as trained?"""
    from tuneforge.tasks.language_models.generator import GenerationSettings, LanguageModel

    generator = LanguageModel(model, tokenizer, {"system_prompt": None}, source="")
    rows = []
    for conversation, reference in samples:
        budget = len(tokenizer(reference, add_special_tokens=False)["input_ids"]) + 16
        reply = generator.generate(conversation, GenerationSettings(max_new_tokens=budget)).text.strip()
        rows.append({"prompt": conversation[-1]["content"], "reference": reference, "reply": reply})
    exact = sum(r["reply"] == r["reference"].strip() for r in rows) / len(rows)
    return {"exact_match": exact, "rows": rows}


# --------------------------------------------------------------------------- model


def build_lm(name: str, task: LMTask) -> tuple:
    """Tokenizer and pretrained language model of the kind ``task`` needs (its weights in fp32)."""
    import transformers

    wanted = "encoder" if task.auto_class.endswith("MaskedLM") else "decoder"
    if name in MODELS and MODELS.get(name).kind != wanted:
        kinds = {"encoder": "an encoder (e.g. minilm-l6)", "decoder": "a causal LM (e.g. smollm2-135m)"}
        raise ConfigError(f"model.name: '{name}' is a {MODELS.get(name).kind} model; {task.name} needs "
                          f"{kinds[wanted]} (`tuneforge list models`)")
    path = resolve_model(name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model, info = getattr(transformers, task.auto_class).from_pretrained(
            path, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError) as error:  # offline hub id, not a model folder, or the wrong kind of model
        raise RegistryError(f"model '{name}' could not be loaded as {task.auto_class}: "
                            f"{str(error).splitlines()[0]} (`tuneforge list models`)") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model, new_modules(model, set(info["missing_keys"]))


def new_modules(model: nn.Module, missing: set[str]) -> tuple[str, ...]:
    """Modules the checkpoint had no weights for (e.g. MiniLM ships no masked-LM head): they must train.

    Each is widened to its largest enclosing module made only of new weights; modules holding weights
    shared with the embeddings (a tied decoder) are left out, or adapters would copy the whole vocabulary.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    shared = {id(p) for p in model.get_input_embeddings().parameters()}

    def all_new(module_name: str) -> bool:
        names = [n for n in params if n.startswith(f"{module_name}.")]
        return bool(names) and all(n in missing and id(params[n]) not in shared for n in names)

    found = set()
    for key in missing:
        module = key.rsplit(".", 1)[0]
        if not all_new(module):
            continue
        while "." in module and all_new(module.rsplit(".", 1)[0]):
            module = module.rsplit(".", 1)[0]
        found.add(module)
    return tuple(sorted(found))


def check_block_length(model: nn.Module, length: int) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise ConfigError(f"data.max_length {length} exceeds what the model can read ({limit} tokens)")


def causal_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens that carry a label."""
    nll, count = _causal_nll(model, batch)
    return nll / count.clamp(min=1)


def masked_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    nll, count = _masked_nll(model, batch)
    return nll / count.clamp(min=1)


def _causal_nll(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    ids = batch["input_ids"]
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    logits = logits[:, -ids.shape[1] :]  # prompt tuning puts its virtual tokens first
    labels = batch["labels"][:, 1:].to(logits.device)
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")
    return nll, (labels != -100).sum()


def _masked_nll(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"].to(logits.device)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")
    return nll, (labels != -100).sum()


# --------------------------------------------------------------------------- evaluation


def _evaluator(task: LMTask, data: LMData, config: Config) -> Callable[[nn.Module, str], dict[str, float]]:
    nll_fn = _causal_nll if task.causal else _masked_nll

    # Logits over the whole vocabulary dominate memory (128 x 64 tokens x 49k words = 1.6 GB): held-out
    # batches stay no larger than training ones.
    batch_size = min(config.eval.batch_size, config.train.batch_size)

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        return held_out_perplexity(model, getattr(data, split), data.collate_eval, batch_size, nll_fn)

    return evaluate


def _has(data: LMData, split: str) -> bool:
    dataset = getattr(data, split)
    return dataset is not None and len(dataset) > 0


@torch.no_grad()
def held_out_perplexity(model: nn.Module, dataset: Dataset, collate: Callable, batch_size: int,
                        nll_fn: Callable) -> dict[str, float]:
    """Token-weighted loss and perplexity; under N processes each scores every N-th item, then sums."""
    was_training = model.training
    model.eval()
    processes = PartialState()
    mine = list(range(processes.process_index, len(dataset), processes.num_processes))
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(mine), batch_size):
        batch = collate([dataset[i] for i in mine[start : start + batch_size]])
        nll, n = nll_fn(model, {k: v.to(device) for k, v in batch.items()})
        total, count = total + nll.item(), count + int(n)
    model.train(was_training)
    if processes.num_processes > 1:
        pieces = gather_object([(total, count)])
        total, count = sum(p[0] for p in pieces), sum(p[1] for p in pieces)
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": float(count)}


# --------------------------------------------------------------------------- plumbing


def _train_loader(data: LMData, config: Config, grouped: bool) -> DataLoader:
    mode = "grouped" if grouped and config.train.group_by_length else "random"
    batches = SeededBatches(data.lengths, config.train.batch_size, config.seed, mode)
    return DataLoader(data.train, batch_sampler=batches, collate_fn=data.collate,
                      num_workers=config.train.num_workers, generator=torch.Generator().manual_seed(config.seed))


def save_lm(model: nn.Module, tokenizer, folder: Path, config: Config, task: LMTask) -> None:
    """An HF folder (safetensors) or a PEFT adapter folder, the tokenizer, and tuneforge.json."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = trained_meta(config, model) | {
        "max_length": config.data.max_length,
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
        "system_prompt": config.sft.system_prompt if task.chat else None,
    }
    write_meta(folder, meta)


def text_perplexity(model, path: Path, text_column: str = "text", on_bad_rows: str = "error",
                    encoding: str | None = None, sheet: str | int | None = None) -> dict[str, float]:
    """Perplexity of a causal-LM run (a ``LanguageModel``) on new text, packed as in training."""
    from tuneforge.config import DataConfig
    from tuneforge.data.lm import CausalCollator, load_documents, pack_causal

    data = DataConfig(dataset=None, train_file=str(path), text_column=text_column, split=[1.0, 0.0, 0.0],
                      on_bad_rows=on_bad_rows, encoding=encoding, sheet=sheet)
    documents = load_documents(data, seed=0)
    blocks = pack_causal([d.text for d in documents.train], model.tokenizer, model.meta["max_length"])
    collate = CausalCollator(model.tokenizer.pad_token_id or 0)
    return held_out_perplexity(model.model, blocks, collate, 8, _causal_nll)


def save_masked_lm(model: nn.Module, run_dir: str | Path, folder: Path) -> None:
    """A masked-LM run's merged model as a plain HF folder, with its tokenizer and tuneforge.json."""
    from transformers import AutoTokenizer

    opened = read_run(run_dir)

    source, meta = opened.model_dir, opened.meta
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    merged = meta | {"adapter": False, "method": f"{meta['method']} (merged)"}
    write_meta(folder, merged)


def load_masked_lm(run_dir: str | Path) -> nn.Module:
    """A masked-LM run's model as a plain transformers model (adapters merged into the weights)."""
    from transformers import AutoModelForMaskedLM

    opened = read_run(run_dir)

    folder, meta = opened.model_dir, opened.meta
    if not meta["adapter"]:
        return AutoModelForMaskedLM.from_pretrained(folder, dtype=torch.float32)
    from peft import PeftModel

    base = AutoModelForMaskedLM.from_pretrained(resolve_model(meta["base_model"]), dtype=torch.float32)
    return PeftModel.from_pretrained(base, folder).merge_and_unload()


def finish_lm_run(run_dir: Path, config: Config, data: LMData, evaluation: dict[str, dict], history: list[dict],
                  extras: dict, sections: dict[str, str] | None = None) -> Run:
    """metrics.json, history, curves and the report; ``sections`` (from extensions) join the report."""
    headline = evaluation.get("test") or evaluation["validation"]
    fit = extras["fit"]
    summary = {
        "task": config.task,
        "model": config.model.name,
        "method": config.method.name,
        "trainable parameters": describe_trainable(extras["trainable_parameters"], extras["total_parameters"]),
        "data": ", ".join(f"{k}: {v}" for k, v in data.sources.items()),
        "examples": ", ".join(f"{k} {v:,}" for k, v in data.counts.items()),
        "optimizer steps": f"{fit['steps']:,} (best at step {fit['best_step']})",
        "training time": f"{fit['train_seconds']:.1f} s ({fit['train_samples_per_second']:.1f} samples/s)",
        "seed": str(config.seed),
    }
    rows = "\n".join(
        f"| {split} | {m['perplexity_before']:.2f} | {m['perplexity']:.2f} | {m['loss_before']:.4f} | "
        f"{m['loss']:.4f} | {int(m['tokens']):,} |"
        for split, m in evaluation.items()
    )
    table = ("| split | perplexity before | perplexity after | loss before | loss after | tokens scored |\n"
             "|---|---|---|---|---|---|\n" + rows)
    sections = {"Held-out perplexity": table, **(sections or {})}
    if "sample_replies" in extras:
        sections["Sample replies to held-out prompts"] = _replies_table(extras["sample_replies"])
    report = RunReport(summary, headline, notes=data.notes, sections=sections,
                       usage=TASKS.get(config.task).usage(run_dir))
    return write_run(run_dir, config, {**evaluation, **extras}, history, report)


def _replies_table(samples: dict) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")[:300]

    rows = "\n".join(f"| {cell(r['prompt'])} | {cell(r['reference'])} | {cell(r['reply'])} |" for r in samples["rows"])
    share = f"{samples['exact_match']:.0%} of {len(samples['rows'])}"
    return (f"Greedy replies; exact match with the reference: {share}.\n\n"
            "| prompt | reference | reply |\n|---|---|---|\n" + rows)
