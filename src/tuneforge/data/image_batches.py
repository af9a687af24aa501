"""Image batches for training and prediction: decoding and augmentation in DataLoader workers.

Training batches carry keys ``epoch * N + index`` instead of bare indices, so each image's augmentation
is drawn from a generator seeded by (seed, epoch, index): the same in every worker, every repeat and
after a resume, and different in every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tuneforge.data.images import ImageExample, open_image
from tuneforge.data.text import SeededBatches
from tuneforge.data.transforms import Augmentation, Preprocessing


class ImageDataset(Dataset):
    """Decoded, transformed images: ``{"pixel_values", "labels", "index"}`` items."""

    def __init__(self, images: Sequence, targets: torch.Tensor | None, prep: Preprocessing,
                 augmentation: Augmentation | None = None, seed: int = 0) -> None:
        self.images = list(images)  # file paths or ArrayImage
        self.targets = targets
        self.prep = prep
        self.augmentation = augmentation
        self.seed = seed

    @classmethod
    def of(cls, examples: list[ImageExample], targets: torch.Tensor | None, prep: Preprocessing,
           augmentation: Augmentation | None = None, seed: int = 0) -> ImageDataset:
        return cls([e.image for e in examples], targets, prep, augmentation, seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int) -> dict:
        index, epoch = key % len(self.images), key // len(self.images)
        image = open_image(self.images[index])
        if self.augmentation is None:
            pixels = self.prep(image)
        else:
            rng = np.random.default_rng((self.seed, epoch, index))
            pixels = self.augmentation(image, self.prep, rng)
        item = {"pixel_values": torch.from_numpy(pixels), "index": index}
        if self.targets is not None:
            item["labels"] = self.targets[index]
        return item


class FeatureDataset(Dataset):
    """Cached backbone features (N, D) and targets: what a linear probe trains on."""

    def __init__(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self.features = features
        self.targets = targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, key: int) -> dict:
        index = key % len(self.features)
        return {"features": self.features[index], "labels": self.targets[index], "index": index}


class EpochKeyedBatches(SeededBatches):
    """Seeded random batches whose items are ``epoch * N + index`` (see the module docstring)."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        super().__init__([1] * size, batch_size, seed, mode="random")

    def __iter__(self) -> Iterator[list[int]]:
        offset = self.epoch * len(self.lengths)
        return iter([[offset + i for i in batch] for batch in self._remaining(self._batches())])
