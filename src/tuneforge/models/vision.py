"""EfficientNet-Lite backbones (from ``efficientnet_lite_pytorch``) with a new head for the user's classes.

The backbone's own 1000-class ImageNet layer is dropped; ``ImageClassifier`` pools the last feature
map (1280 channels) and applies dropout and one linear layer. Frozen parts of the backbone stay in
evaluation mode while the rest trains: their batch-norm statistics and stochastic depth must not move
when their weights cannot (a linear probe, top-k blocks, adapters).
"""

from __future__ import annotations

import contextlib
import io

import torch
from torch import nn

from tuneforge.assets import MODELS, resolve_model
from tuneforge.errors import ConfigError

FEATURE_DIM = 1280  # channels of EfficientNet-Lite's last feature map (round_filters(1280) with the head fixed)
# LoRA on the 1x1 convolutions (expansion, projection, final conv): most of the weights, and the kernels PEFT
# adapts exactly; depthwise convolutions hold few weights and would need rank to divide their groups.
LORA_TARGETS = ["_expand_conv", "_project_conv", "_conv_head"]


def check_vision_model(name: str) -> None:
    vision = [entry.name for entry in MODELS if entry.value.kind == "vision"]
    if name not in vision:
        raise ConfigError(f"model.name: '{name}' is not an image model; image_classification uses one of: "
                          f"{', '.join(vision)} (`tuneforge list models`)")


def build_backbone(name: str, image_size: int, pretrained: bool = True) -> nn.Module:
    """An EfficientNet-Lite whose 'same' padding is computed for ``image_size`` inputs."""
    from efficientnet_lite_pytorch import EfficientNet

    check_vision_model(name)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        if pretrained:
            net = EfficientNet.from_pretrained(name, weights_path=resolve_model(name), image_size=image_size)
        else:
            net = EfficientNet.from_name(name, image_size=image_size)
    return _plain_pointwise_convs(net)


def _plain_pointwise_convs(net: nn.Module) -> nn.Module:
    """1x1 convolutions as plain ``nn.Conv2d``: the same maths (their 'same' padding is zero), and a type
    PEFT can copy for LoRA (it builds adapters with the base layer's class, which needs an image size)."""
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and type(child) is not nn.Conv2d and child.kernel_size == (1, 1) \
                    and tuple(child.stride) == (1, 1):
                plain = nn.Conv2d(child.in_channels, child.out_channels, 1, groups=child.groups,
                                  bias=child.bias is not None)
                plain.load_state_dict(child.state_dict())
                setattr(parent, child_name, plain)
    return net


class ImageClassifier(nn.Module):
    """Backbone -> global average pooling -> dropout -> linear `classifier` (the new head)."""

    default_lora_targets = LORA_TARGETS

    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float = 0.2, channels_last: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        backbone._fc = nn.Identity()  # the ImageNet classifier: replaced by `classifier`
        backbone._dropout = nn.Identity()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(FEATURE_DIM, num_labels)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, 1280): what a linear probe can cache."""
        if self.channels_last:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        return self.backbone.extract_features(pixel_values).mean(dim=(2, 3))

    def forward(self, pixel_values: torch.Tensor | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        if features is None:
            features = self.features(pixel_values)
        return self.classifier(self.dropout(features))

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        if mode:
            norms = [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            for module in [*norms, *self.backbone._blocks]:  # blocks: stochastic depth (drop-connect)
                if not _trains(module):
                    module.eval()
        return self


def _trains(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def build_classifier(name: str, num_labels: int, image_size: int, dropout: float, pretrained: bool = True,
                     channels_last: bool = True) -> ImageClassifier:
    """The backbone with a fresh head; channels-last layout makes CPU convolutions 1.6-2.3x faster (measured)."""
    model = ImageClassifier(build_backbone(name, image_size, pretrained), num_labels, dropout, channels_last)
    for module in model.modules():
        # TF's batch-norm momentum (0.01 in PyTorch terms) lets running statistics lag a short fine-tuning
        # run: at a new input size they stay ImageNet's and evaluation collapses to chance (seen at 20 steps).
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    return model.to(memory_format=torch.channels_last) if channels_last else model
