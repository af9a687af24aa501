"""Running exported text classifiers: ONNX Runtime sessions and dynamic-int8 PyTorch models.

Both stand where a transformers model stands in ``TextClassifier``: ``model(input_ids=..., attention_mask=...)``
returns an object with ``.logits``, so ``predict``, ``tuneforge eval`` and the server work unchanged.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from tuneforge.errors import RunError

ONNX_FILE = "model.onnx"
INT8_FILE = "model-int8.safetensors"
SCALE_SUFFIX = ".weight_scale"  # beside each quantized Linear's int8 ``.weight``


class OnnxSequenceClassifier(nn.Module):
    """An ONNX Runtime session that answers like ``AutoModelForSequenceClassification`` (CPU)."""

    device = torch.device("cpu")

    def __init__(self, path: Path, config) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises its own types for corrupt or truncated files
            raise RunError(f"{path}: ONNX Runtime cannot load it ({str(error).splitlines()[0]}); export it again "
                           "with `tuneforge export RUN --format onnx`") from None
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> SimpleNamespace:
        feeds = {"input_ids": input_ids.numpy().astype(np.int64),
                 "attention_mask": attention_mask.numpy().astype(np.int64)}
        logits = self.session.run(None, {name: feeds[name] for name in self.input_names})[0]
        return SimpleNamespace(logits=torch.from_numpy(logits))


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 (PyTorch): every Linear's weights int8 per output channel, activations quantized on the fly."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model.eval(), {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def int8_tensors(quantized: nn.Module) -> dict[str, torch.Tensor]:
    """A dynamic-int8 model as plain tensors for safetensors: int8 weights plus per-channel scales."""
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear

    tensors = {}
    linear_names = set()
    for name, module in quantized.named_modules():
        if isinstance(module, QuantizedLinear):
            weight, bias = module._weight_bias()
            linear_names.add(name)
            tensors[f"{name}.weight"] = weight.int_repr().contiguous()
            tensors[f"{name}{SCALE_SUFFIX}"] = weight.q_per_channel_scales().float().contiguous()
            if bias is not None:
                tensors[f"{name}.bias"] = bias.detach().contiguous()
    for name, tensor in quantized.state_dict().items():
        owner = name.rpartition(".")[0]
        if isinstance(tensor, torch.Tensor) and not tensor.is_quantized and owner not in linear_names \
                and "_packed_params" not in name:
            tensors[name] = tensor.contiguous()
    return _untie(tensors)


def load_int8(folder: Path, config) -> nn.Module:
    """The dynamic-int8 model saved by ``int8_tensors``, rebuilt from its config and tensors."""
    from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear
    from transformers import AutoModelForSequenceClassification

    tensors = load_file(folder / INT8_FILE)
    skeleton = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
    linears = {name for name, module in skeleton.named_modules() if isinstance(module, nn.Linear)}
    plain = {k: v for k, v in tensors.items() if k.rpartition(".")[0] not in linears}
    missing, unexpected = skeleton.load_state_dict(plain, strict=False)
    missing = [k for k in missing if k.rpartition(".")[0] not in linears and not k.endswith("position_ids")]
    if missing or unexpected:
        raise RunError(f"{folder / INT8_FILE}: does not match config.json (missing {missing[:3]}, unexpected "
                       f"{unexpected[:3]}); export it again")
    model = quantize_int8(skeleton)
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            scales = tensors[f"{name}{SCALE_SUFFIX}"].double()
            weight = torch._make_per_channel_quantized_tensor(
                tensors[f"{name}.weight"], scales, torch.zeros(len(scales), dtype=torch.long), 0)
            module.set_weight_bias(weight, tensors.get(f"{name}.bias"))
    return model.eval()


def _untie(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied embeddings): store each once as its own copy."""
    seen, out = set(), {}
    for name, tensor in tensors.items():
        key = (tensor.data_ptr(), tensor.shape)
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out


def load_exported(folder: Path, fmt: str) -> nn.Module:
    """The model of an exported folder, by its ``tuneforge.json`` format."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    if fmt in ("onnx", "onnx-int8"):
        return OnnxSequenceClassifier(folder / ONNX_FILE, config)
    if fmt == "int8":
        return load_int8(folder, config)
    raise RunError(f"{folder}: unknown format '{fmt}' in tuneforge.json (this tuneforge reads onnx, onnx-int8, int8)")


def register_pruned_bert() -> None:
    """Let transformers build pruned BERTs from tuneforge's own class, never from the ``pruned_bert.py`` a folder
    carries: tuneforge loads every folder with ``trust_remote_code=False``, so no folder's code ever runs."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from tuneforge.models.pruned_bert import PrunedBertConfig, PrunedBertForSequenceClassification

    AutoConfig.register("pruned_bert", PrunedBertConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(PrunedBertConfig, PrunedBertForSequenceClassification, exist_ok=True)


register_pruned_bert()
