"""``tuneforge prune RUN --method ...``: structured pruning into a smaller dense model, or magnitude sparsity.

Structured methods remove whole pieces, so the result is a genuinely smaller dense model:

- ``heads``: attention heads ranked by gradient importance (Michel et al., 2019: |dL/d gate| of each head,
  normalised per layer), the least important ``amount`` of all heads removed (at least one kept per layer).
- ``ffn``: intermediate (FFN) neurons ranked the same way, ``amount`` of each layer's removed.
- ``layers``: whole blocks; each block's score is how much the loss rises without it.

Heads and FFN neurons leave layers of different widths, which BERT's config cannot express, so those
models are saved as ``PrunedBertForSequenceClassification`` with its modeling file beside the weights
(``trust_remote_code=True`` loads them in plain transformers). ``recover_epochs`` fine-tunes the pruned
model afterwards, distilling from the unpruned one.

``magnitude``: the smallest ``amount`` of all Linear weights (globally) set to zero for good. The file is as
large as before and dense CPU kernels run no faster; only a compressed copy shrinks. The report says so.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tuneforge.compression.export import check_replaceable, default_output
from tuneforge.compression.students import keep_layers, layer_stack
from tuneforge.config import Config
from tuneforge.data.text import PadCollator, SeededBatches, TokenizedTexts, encode_targets, tokenize
from tuneforge.errors import ConfigError, RunError
from tuneforge.runs import Run, write_meta
from tuneforge.tasks import open_run
from tuneforge.tasks.merging import require_mergeable

METHODS = ("heads", "ffn", "layers", "magnitude")
IMPORTANCE_ROWS = 512  # training rows whose gradients rank heads and neurons


def prune(run: str | Path, method: str, amount: float, out: str | Path | None = None, recover_epochs: float = 0,
          overrides: list[str] | None = None, force: bool = False) -> Run | Path:
    """Prune ``run``'s text classifier; a run directory when ``recover_epochs`` > 0, else a model folder."""

    if method not in METHODS:
        raise ConfigError(f"--method: unknown method '{method}'; choose from {', '.join(METHODS)}")
    if not 0 < amount < 1:
        raise ConfigError(f"--amount: a fraction between 0 and 1 (0.3 = remove 30%), got {amount}")
    folder, task = open_run(run)
    source = folder.model_dir
    if not task.compressible or folder.format != "pytorch":
        raise ConfigError(f"{run}: pruning works on fp32 text-classification runs (prune first, then export)")
    classifier = task.load(run)
    if method == "magnitude" and recover_epochs:
        raise ConfigError("--recover-epochs: fine-tuning would fill the zeroed weights again; magnitude pruning "
                          "is applied once, without recovery")
    require_mergeable(classifier.meta, "prune")
    config = _teacher_config(source, method, recover_epochs, overrides)
    model = classifier.merged().eval()
    if method == "magnitude":
        pruned, details = magnitude_prune(model, amount)
    else:
        _check_bert(model, method)
        sample = _importance_sample(classifier, config)
        pruned, details = _structured(model, method, amount, sample)
    print(f"prune: {details['summary']}", file=sys.stderr)
    if recover_epochs:
        return _recover(classifier, source, pruned, config, details)
    out = Path(out) if out else default_output(source, f"pruned-{method}")
    check_replaceable(out, source, force)
    save_pruned(pruned, classifier.tokenizer, classifier.meta | {"pruning": details}, out)
    return out


# --------------------------------------------------------------------------- structured pruning


def _structured(model: nn.Module, method: str, amount: float, sample: list[dict]) -> tuple[nn.Module, dict]:
    before = sum(p.numel() for p in model.parameters())
    if method == "layers":
        scores = layer_removal_scores(model, sample)
        drop = max(1, round(amount * len(scores)))
        if drop >= len(scores):
            raise ConfigError(f"--amount {amount} would drop all {len(scores)} layers")
        keep = sorted(sorted(range(len(scores)), key=lambda i: scores[i])[drop:])
        pruned = keep_layers(model, keep)
        details = {"method": "layers", "kept_layers": keep, "loss_increase_without_layer": scores}
    else:
        heads, neurons = gradient_importance(model, sample)
        pruned = to_pruned_bert(model)
        if method == "heads":
            keep = heads_to_keep(heads, amount)
            _slice_heads(pruned, keep)
            details = {"method": "heads", "heads_per_layer": [len(k) for k in keep],
                       "removed_heads": sum(len(h) - len(k) for h, k in zip(heads, keep, strict=True))}
        else:
            keep = [torch.argsort(layer, descending=True)[: max(1, round(len(layer) * (1 - amount)))].sort().values
                    for layer in neurons]
            _slice_ffn(pruned, keep)
            details = {"method": "ffn", "intermediate_per_layer": [len(k) for k in keep]}
        pruned = _rebuilt(pruned)
    after = sum(p.numel() for p in pruned.parameters())
    details |= {"amount": amount, "parameters_before": before, "parameters_after": after,
                "summary": f"{method}: {before:,} -> {after:,} parameters ({100 * (1 - after / before):.1f}% fewer)"}
    return pruned.eval(), details


def gradient_importance(model: nn.Module, sample: list[dict]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer: each head's and each FFN neuron's E|dL/d gate| over ``sample`` (heads normalised per layer).

    A head's gate multiplies its context vectors, so dL/d gate = sum over tokens of <context, dL/d context>;
    the same holds for each FFN neuron's activation. Hooks read both at the layers' output projections.
    """
    blocks = layer_stack(model)[2]
    head_count = model.config.num_attention_heads
    heads = [torch.zeros(_heads_in(block, head_count)) for block in blocks]
    neurons = [torch.zeros(block.output.dense.in_features) for block in blocks]
    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.attention.output.dense.register_forward_pre_hook(_gate_gradient(heads, i, by_head=True)))
        handles.append(block.output.dense.register_forward_pre_hook(_gate_gradient(neurons, i, by_head=False)))
    model.eval()  # importance of the model as it predicts: no dropout
    model.requires_grad_(True)  # a merged LoRA model comes back frozen
    try:
        for batch in tqdm(sample, desc="head and neuron importance", unit="batch", file=sys.stderr, leave=False):
            model.zero_grad(set_to_none=True)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            F.cross_entropy(logits.float(), batch["labels"], reduction="sum").backward()  # every row weighs the same
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    heads = [h / (h.norm() + 1e-12) for h in heads]  # Michel et al.: layers compare on equal footing
    return heads, neurons


def _heads_in(block: nn.Module, default: int) -> int:
    return getattr(block.attention.self, "num_attention_heads", default)


def _gate_gradient(store: list[torch.Tensor], layer: int, by_head: bool):
    def hook(module: nn.Module, inputs: tuple) -> None:
        activation = inputs[0]
        if not activation.requires_grad:
            return

        def on_gradient(gradient: torch.Tensor) -> None:
            per_unit = (activation.detach() * gradient).sum(dim=1)  # (batch, width): summed over tokens
            if by_head:
                per_unit = per_unit.view(per_unit.shape[0], len(store[layer]), -1).sum(-1)
            store[layer] += per_unit.abs().sum(0)

        activation.register_hook(on_gradient)

    return hook


def heads_to_keep(importance: list[torch.Tensor], amount: float) -> list[list[int]]:
    """The heads that stay in each layer: the globally least important ``amount`` go, one per layer remains."""
    ranked = sorted(((float(score), layer, head) for layer, scores in enumerate(importance)
                     for head, score in enumerate(scores)))
    to_remove = round(amount * len(ranked))
    keep = [set(range(len(scores))) for scores in importance]
    for _, layer, head in ranked:
        if to_remove == 0:
            break
        if len(keep[layer]) > 1:
            keep[layer].discard(head)
            to_remove -= 1
    return [sorted(k) for k in keep]


def layer_removal_scores(model: nn.Module, sample: list[dict]) -> list[float]:
    """How much the sample's loss rises when each block alone is removed (small = safe to drop)."""
    count = model.config.num_hidden_layers
    baseline = _sample_loss(model, sample)
    scores = []
    for layer in tqdm(range(count), desc="layer importance", unit="layer", file=sys.stderr, leave=False):
        without = keep_layers(model, [i for i in range(count) if i != layer])
        scores.append(_sample_loss(without, sample) - baseline)
    return scores


@torch.no_grad()
def _sample_loss(model: nn.Module, sample: list[dict]) -> float:
    model.eval()
    losses = [F.cross_entropy(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float(),
                              b["labels"], reduction="sum") for b in sample]
    return float(sum(losses) / sum(len(b["labels"]) for b in sample))


# --------------------------------------------------------------------------- surgery


def _check_bert(model: nn.Module, method: str) -> None:
    if method != "layers" and model.config.model_type not in ("bert", "pruned_bert"):
        raise ConfigError(f"--method {method}: head and FFN pruning supports BERT-family encoders (minilm-l6 and "
                          f"other BertForSequenceClassification models), not '{model.config.model_type}'; "
                          "--method layers works for any transformer")


def to_pruned_bert(model: nn.Module) -> nn.Module:
    """The same weights in ``PrunedBertForSequenceClassification``, whose layers may differ in width."""
    from tuneforge.models.pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification

    if isinstance(model, PrunedBertForSequenceClassification):
        return copy.deepcopy(model)
    settings = model.config.to_dict()
    settings.pop("model_type", None)
    settings["architectures"] = ["PrunedBertForSequenceClassification"]
    pruned = PrunedBertForSequenceClassification(PrunedBertConfig(**settings))
    pruned.load_state_dict(model.state_dict())
    return pruned


def _rebuilt(model: nn.Module) -> nn.Module:
    """A fresh instance from the updated config, so saving and loading see exactly these shapes."""
    from tuneforge.models.pruned_bert import PrunedBertForSequenceClassification

    fresh = PrunedBertForSequenceClassification(model.config)
    fresh.load_state_dict(model.state_dict())
    return fresh


def _slice_heads(model: nn.Module, keep: list[list[int]]) -> None:
    head_size = model.config.hidden_size // model.config.num_attention_heads
    for block, heads in zip(model.bert.encoder.layer, keep, strict=True):
        rows = torch.cat([torch.arange(h * head_size, (h + 1) * head_size) for h in heads])
        attention = block.attention.self
        for name in ("query", "key", "value"):
            setattr(attention, name, _linear_subset(getattr(attention, name), rows=rows))
        block.attention.output.dense = _linear_subset(block.attention.output.dense, columns=rows)
        attention.num_attention_heads = len(heads)
        attention.all_head_size = len(heads) * head_size
    model.config.heads_per_layer = [len(h) for h in keep]


def _slice_ffn(model: nn.Module, keep: list[torch.Tensor]) -> None:
    for block, neurons in zip(model.bert.encoder.layer, keep, strict=True):
        block.intermediate.dense = _linear_subset(block.intermediate.dense, rows=neurons)
        block.output.dense = _linear_subset(block.output.dense, columns=neurons)
    model.config.intermediate_per_layer = [len(k) for k in keep]


def _linear_subset(linear: nn.Linear, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None):
    weight = linear.weight.detach()
    weight = weight[rows] if rows is not None else weight
    weight = weight[:, columns] if columns is not None else weight
    smaller = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
    smaller.weight.data.copy_(weight)
    if linear.bias is not None:
        smaller.bias.data.copy_(linear.bias.detach()[rows] if rows is not None else linear.bias.detach())
    return smaller


# --------------------------------------------------------------------------- magnitude pruning


@torch.no_grad()
def magnitude_prune(model: nn.Module, sparsity: float) -> tuple[nn.Module, dict]:
    """The smallest ``sparsity`` of all Linear weights, ranked globally by |w|, set to zero permanently."""
    pruned = copy.deepcopy(model)
    weights = [m.weight for m in pruned.modules() if isinstance(m, nn.Linear)]
    magnitudes = torch.cat([w.abs().flatten() for w in weights])
    count = int(sparsity * len(magnitudes))
    threshold = magnitudes.kthvalue(count).values if count else torch.tensor(-1.0)
    for weight in weights:
        weight[weight.abs() <= threshold] = 0.0
    zeros = sum(int((w == 0).sum()) for w in weights)
    details = {"method": "magnitude", "amount": sparsity, "linear_weights": len(magnitudes), "zeroed": zeros,
               "note": "zeros are stored densely: the file and dense CPU kernels are unchanged; only a "
                       "compressed copy (zip, gzip) shrinks",
               "summary": f"magnitude: {zeros:,} of {len(magnitudes):,} Linear weights set to zero "
                          f"({100 * zeros / len(magnitudes):.1f}%)"}
    return pruned.eval(), details


def compressed_size(folder: Path) -> int:
    """Bytes of the folder's weights after zlib (level 6): what sparsity buys in a compressed archive."""
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        compressor, size = zlib.compressobj(6), 0
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                size += len(compressor.compress(chunk))
        total += size + len(compressor.flush())
    return total


# --------------------------------------------------------------------------- data, recovery, saving


def _teacher_config(source: Path, method: str, recover_epochs: float, overrides: list[str] | None) -> Config:
    """The run's own config (its data and split), made a full fine-tune for recovery, plus overrides."""
    import yaml

    from tuneforge.config import apply_overrides, config_from_dict

    path = source.parent / "config.yaml"
    if not path.is_file():
        raise RunError(f"{source}: no config.yaml beside the model, so its training data is unknown; prune the run "
                       "directory itself")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["name"] = f"{raw.get('name', 'model')}-pruned-{method}"
    raw["method"] = {"name": "full"}
    train = raw.setdefault("train", {})
    train |= {"lr": 5e-5, "epochs": recover_epochs or 1, "max_steps": None}
    raw.setdefault("distill", {})["from_teacher"] = True
    return config_from_dict(apply_overrides(raw, overrides or []), f"{path} (+ pruning defaults)")


def _importance_sample(classifier, config: Config) -> list[dict]:
    """Batches of up to ``IMPORTANCE_ROWS`` training rows (seeded), tokenized as the classifier reads."""
    from tuneforge.data.splits import load_splits

    if config.data.multi_label:
        raise ConfigError("pruning ranks heads with single-label cross-entropy; multi-label runs are not supported")
    rows = load_splits(config.data, config.seed).train
    rows = [rows[i] for i in torch.randperm(len(rows), generator=torch.Generator().manual_seed(config.seed))
            [:IMPORTANCE_ROWS].tolist()]
    ids = tokenize([r.text for r in rows], classifier.tokenizer, classifier.meta["max_length"])
    dataset = TokenizedTexts(ids, encode_targets([r.label for r in rows], classifier.labels.names, False))
    collate = PadCollator(classifier.tokenizer.pad_token_id or 0)
    return [collate([dataset[i] for i in batch]) for batch in SeededBatches(dataset.lengths(), 32, mode="sorted")]


def _recover(classifier, source: Path, pruned: nn.Module, config: Config, details: dict) -> Run:
    """Fine-tune the pruned model on the run's data, distilling from the unpruned model."""
    from tuneforge.compression.distill import Distillation
    from tuneforge.tasks import recipe_for

    config.model.name = classifier.meta["base_model"]
    distillation = Distillation(classifier, source, config.distill, preset_student=pruned,
                                kept=details.get("kept_layers"))
    run = recipe_for(config.task)(config, extensions=[distillation])
    (run.dir / "pruning.json").write_text(json.dumps(details, indent=2), encoding="utf-8")
    return run


def save_pruned(model: nn.Module, tokenizer, meta: dict, folder: Path) -> None:
    """An HF folder that tuneforge and transformers load; a PrunedBert* model also writes ``auto_map`` and its
    pruned_bert.py. An earlier folder at ``folder`` (already checked replaceable) is replaced."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_meta(folder, meta | {"adapter": False})
