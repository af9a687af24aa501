"""A trained image classifier, loaded back from its run: predict images, evaluate on new labelled images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from tuneforge.data.image_batches import ImageDataset
from tuneforge.data.transforms import Preprocessing
from tuneforge.models.vision import build_classifier
from tuneforge.runs import read_run, write_meta
from tuneforge.tasks.classification import LabelSpace, Prediction
from tuneforge.tasks.image_classification.recipe import predict_probs
from tuneforge.tasks.merging import merge_adapters


class ImageClassifierModel:
    """``tuneforge.load(run_dir)`` for image classification runs."""

    def __init__(self, model: nn.Module, meta: dict, source: Path) -> None:
        self.source = source
        self.model = model.eval()
        self.meta = meta
        self.labels = LabelSpace(meta["labels"], multi_label=False)
        self.prep = Preprocessing.from_dict(meta["preprocessing"])

    @classmethod
    def from_run(cls, path: str | Path) -> ImageClassifierModel:
        opened = read_run(path)
        folder, meta = opened.model_dir, opened.meta
        size, labels = meta["preprocessing"]["size"], len(meta["labels"])
        # Full weights replace every pretrained one, so only an adapter needs the ImageNet weights.
        model = build_classifier(meta["base_model"], labels, size, meta["dropout"], pretrained=meta["adapter"],
                                 channels_last=meta["channels_last"])
        if meta["adapter"]:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, folder)
        else:
            model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(model, meta, folder)

    def predict_proba(self, images: list[str | Path | Image.Image], batch_size: int = 64) -> np.ndarray:
        """(N, L) probabilities, columns in ``self.labels.names`` order; images are paths or PIL images."""
        items = [str(i) if isinstance(i, Path) else i for i in images]
        return predict_probs(self.model, ImageDataset(items, None, self.prep), batch_size)

    def save_merged(self, folder: Path) -> None:
        """LoRA folded into the convolutions: a ``model.safetensors`` folder tuneforge loads like a full run."""
        folder.mkdir(parents=True, exist_ok=True)
        merged = merge_adapters(self.model, self.meta)
        save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, str(folder / "model.safetensors"))
        meta = self.meta | {"adapter": False, "method": f"{self.meta['method']} (merged)" if self.meta["adapter"]
                            else self.meta["method"]}
        write_meta(folder, meta)

    def predict(self, images: list[str | Path | Image.Image], batch_size: int = 64) -> list[Prediction]:
        if not images:
            return []
        probs = self.predict_proba(images, batch_size)
        names = self.labels.names
        return [Prediction(names[int(row.argmax())], {n: float(p) for n, p in zip(names, row, strict=True)})
                for row in probs]
