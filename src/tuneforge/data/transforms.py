"""Image preprocessing and augmentation with Pillow and NumPy only (torchvision can't be installed here).

``Preprocessing`` is what a trained model needs at prediction time (it is saved with the model);
``Augmentation`` adds the training-only randomness. All randomness comes from a NumPy generator the
caller seeds per (seed, epoch, image), so a run's augmented images are the same in every repeat and
after a resume, in any DataLoader worker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageEnhance

from tuneforge.config import ImageConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class Preprocessing:
    """Deterministic: resize the shorter side to ``resize``, centre-crop ``size``, normalise, CHW float32."""

    size: int
    resize: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_config(cls, image: ImageConfig) -> Preprocessing:
        resize = image.resize or round(image.size / 0.875)
        return cls(image.size, resize, tuple(image.mean or IMAGENET_MEAN), tuple(image.std or IMAGENET_STD))

    @classmethod
    def from_dict(cls, values: dict) -> Preprocessing:
        return cls(values["size"], values["resize"], tuple(values["mean"]), tuple(values["std"]))

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.normalise(self.centre_crop(image))

    def centre_crop(self, image: Image.Image) -> Image.Image:
        """Shorter side to ``resize`` (aspect kept), then the central ``size`` x ``size`` square."""
        width, height = image.size
        scale = self.resize / min(width, height)
        new_w, new_h = max(self.size, round(width * scale)), max(self.size, round(height * scale))
        left, top = (new_w - self.size) / 2, (new_h - self.size) / 2
        # One resampling pass: the crop box is expressed in the source image's coordinates.
        box = (left / scale, top / scale, (left + self.size) / scale, (top + self.size) / scale)
        return image.resize((self.size, self.size), _RESAMPLE, box=box)

    def normalise(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(image, dtype=np.float32) * (1 / 255)
        pixels = (pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))


@dataclass(frozen=True)
class Augmentation:
    """Training-time randomness: random resized crop, horizontal flip, colour jitter."""

    random_resized_crop: bool = True
    crop_scale: tuple[float, float] = (0.35, 1.0)
    hflip: bool = True
    color_jitter: float = 0.0

    @classmethod
    def from_config(cls, image: ImageConfig) -> Augmentation:
        return cls(image.random_resized_crop, tuple(image.crop_scale), image.hflip, image.color_jitter)

    def __call__(self, image: Image.Image, prep: Preprocessing, rng: np.random.Generator) -> np.ndarray:
        image = self._crop(image, prep, rng) if self.random_resized_crop else prep.centre_crop(image)
        if self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.color_jitter > 0:
            image = self._jitter(image, rng)
        return prep.normalise(image)

    def _crop(self, image: Image.Image, prep: Preprocessing, rng: np.random.Generator) -> Image.Image:
        """Inception-style crop: a random share of the area at a random aspect ratio in [3/4, 4/3]."""
        width, height = image.size
        area = width * height
        for _ in range(10):
            target = area * rng.uniform(*self.crop_scale)
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            w, h = np.sqrt(target * ratio), np.sqrt(target / ratio)
            if w <= width and h <= height:
                left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
                return image.resize((prep.size, prep.size), _RESAMPLE, box=(left, top, left + w, top + h))
        return prep.centre_crop(image)  # extreme aspect ratios: fall back to the evaluation crop

    def _jitter(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        low, high = 1 - self.color_jitter, 1 + self.color_jitter
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhancer(image).enhance(rng.uniform(low, high))
        return image
