"""A trained text classifier, loaded back from its run: predict, evaluate on new data, merge adapters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from tuneforge.data.text import TokenizedTexts, tokenize
from tuneforge.errors import RunError
from tuneforge.methods.bottleneck import BottleneckModel, insert_adapters, read_settings, restore_adapters
from tuneforge.models.runtime import INT8_FILE, SCALE_SUFFIX, load_exported, quantize_int8
from tuneforge.runs import read_run
from tuneforge.tasks.classification import LabelSpace, Prediction, predictions_from
from tuneforge.tasks.merging import merge_adapters, save_merged
from tuneforge.tasks.text_classification.recipe import build_model, predict_probs


class TextClassifier:
    """``tuneforge.load(run_dir)`` for text classification runs."""

    def __init__(self, model: nn.Module, tokenizer, meta: dict, source: Path) -> None:
        self.source = source  # the model folder it was loaded from
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.labels = LabelSpace(meta["labels"], meta["multi_label"])

    @classmethod
    def from_run(cls, path: str | Path) -> TextClassifier:
        opened = read_run(path)
        folder, meta = opened.model_dir, opened.meta
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        adapters = read_settings(folder)  # bottleneck adapters: rebuilt on the base model (or int8 skeleton)
        if meta.get("format", "pytorch") == "int8" and adapters is not None:
            return cls(_load_int8_adapted(folder, adapters), tokenizer, meta, folder)
        if meta.get("format", "pytorch") != "pytorch":  # an export: int8 or ONNX (tuneforge export)
            return cls(load_exported(folder, meta["format"]), tokenizer, meta, folder)
        if adapters is not None:
            _, base = build_model(meta["base_model"], LabelSpace(meta["labels"], meta["multi_label"]))
            model = restore_adapters(base, folder, adapters)
        elif meta["adapter"]:
            from peft import PeftModel

            _, base = build_model(meta["base_model"], LabelSpace(meta["labels"], meta["multi_label"]))
            model = PeftModel.from_pretrained(base, folder)
        else:  # pruned BERTs too: built from tuneforge's registered class, never from code in the folder
            model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False)
        return cls(model, tokenizer, meta, folder)

    def predict_proba(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """(N, L) probabilities, columns in ``self.labels.names`` order."""
        ids = tokenize([str(t) for t in texts], self.tokenizer, self.meta["max_length"])
        return predict_probs(self.model, TokenizedTexts(ids, None), self.tokenizer.pad_token_id or 0, batch_size,
                             multi_label=self.labels.multi_label)

    def predict(self, texts: list[str], batch_size: int = 128) -> list[Prediction]:
        if not texts:
            return []
        probs = self.predict_proba(texts, batch_size)
        return predictions_from(probs, self.labels, self.meta.get("thresholds"))

    def merged(self) -> nn.Module:
        """The plain transformers model: adapters folded into the base weights (a no-op without them)."""
        return merge_adapters(self.model, self.meta)

    def save_merged(self, folder: Path) -> None:
        """A plain HF folder that both transformers and ``tuneforge predict/eval`` load."""
        save_merged(self.model, self.tokenizer, self.meta, folder)


def _load_int8_adapted(folder: Path, settings: dict) -> nn.Module:
    """The dynamic-int8 export of a bottleneck adapter run: the architecture rebuilt from ``config.json`` and
    ``bottleneck_config.json``, quantised as the export was, then given its tensors (as ``models.runtime.load_int8``
    does for plain models, whose skeleton has no adapter layers)."""
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    tensors = load_file(folder / INT8_FILE)
    base = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder), trust_remote_code=False)
    insert_adapters(base, settings["target_modules"], settings["reduction_factor"], settings["non_linearity"])
    skeleton = BottleneckModel(base, settings)
    linears = {name for name, module in skeleton.named_modules() if isinstance(module, nn.Linear)}
    plain = {k: v for k, v in tensors.items() if k.rpartition(".")[0] not in linears}
    missing, unexpected = skeleton.load_state_dict(plain, strict=False)
    missing = [k for k in missing if k.rpartition(".")[0] not in linears and not k.endswith("position_ids")]
    if missing or unexpected:
        raise RunError(f"{folder / INT8_FILE}: does not match config.json and bottleneck_config.json (missing "
                       f"{missing[:3]}, unexpected {unexpected[:3]}); export it again")
    model = quantize_int8(skeleton)
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            scales = tensors[f"{name}{SCALE_SUFFIX}"].double()
            weight = torch._make_per_channel_quantized_tensor(
                tensors[f"{name}.weight"], scales, torch.zeros(len(scales), dtype=torch.long), 0)
            module.set_weight_bias(weight, tensors.get(f"{name}.bias"))
    return model.eval()
