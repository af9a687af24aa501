"""Labelled images from folders, tables and IDX files: found, checked and decoded before any training.

Sources (``data.train_file`` and friends, or a built-in dataset):
- a folder with one sub-folder per class, optionally under ``train/``, ``validation/`` (or ``val/``)
  and ``test/``;
- a CSV/TSV/JSONL/Parquet table with an image-path column (relative to the table) and a label column;
- an IDX file (the MNIST format, gzipped or not), its labels in the ``labels-idx1`` file beside it.

Every image file is opened and fully decoded once before training, so a missing, truncated, empty
or unsupported image is reported with its path (and table row) instead of crashing a DataLoader
worker an hour in. Problems follow ``data.on_bad_rows`` exactly as text rows do. A class folder that
yields no image (empty, or only .heic photos) is a warning naming it and its files, never a class that
quietly disappears; when no class folder yields an image it is an error.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tuneforge.config import DataConfig
from tuneforge.data.hygiene import warn
from tuneforge.data.readers import PROBLEM_KINDS, Problem, ReadResult, read_examples
from tuneforge.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
# Modes with an unambiguous RGB rendering. 16-bit and float images (I;16, I, F) need a user's choice
# of scaling, so they are reported rather than silently clipped.
SUPPORTED_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
SPLIT_FOLDERS = {"train": ("train",), "validation": ("validation", "val", "valid"), "test": ("test",)}
_IDX_IMAGES = re.compile(r"images[-.]idx3[-.]ubyte(\.gz)?$")

PROBLEM_KINDS.update({
    "missing_image": "image file not found",
    "unreadable_image": "not a readable image",
    "truncated_image": "truncated image",
    "empty_image": "empty image",
    "unsupported_mode": "unsupported image mode",
    "outside_class_folder": "image outside a class folder",
})


class ArrayImage(NamedTuple):
    """Image ``index`` of an (N, H, W) uint8 array (IDX data lives in memory, not in files)."""

    pixels: np.ndarray
    index: int


@dataclass
class FolderReadResult(ReadResult):
    """The images of a folder of class folders, and the warnings about its class folders (printed when found,
    kept for the run's report)."""

    warnings: list[str] = field(default_factory=list)


@dataclass
class ImageExample:
    """One labelled image: a file path or an in-memory array image, and where it came from."""

    image: str | ArrayImage
    label: str
    source: str

    @property
    def labels(self) -> list[str]:
        return [self.label]


def open_image(image: str | ArrayImage | Image.Image) -> Image.Image:
    """The image as RGB; transparent areas are composited on white (not the black PIL would give)."""
    if isinstance(image, ArrayImage):
        return Image.fromarray(image.pixels[image.index]).convert("RGB")
    if isinstance(image, Image.Image):
        return to_rgb(image)
    with Image.open(image) as raw:
        return to_rgb(ImageOps.exif_transpose(raw))  # phone photos store their rotation in EXIF


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        image.load()
        return image.copy()
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


# --------------------------------------------------------------------------- finding the images


def resolve_image_files(data: DataConfig) -> tuple[dict[str, Path], tuple[str, ...] | None]:
    """Split -> source (folder, table or IDX file), and class names where the source has none (IDX digits)."""
    if data.train_file:
        train = Path(data.train_file)
        files = {"train": train}
        if train.is_dir():
            files |= split_folders(train)
        for split, name in (("validation", data.validation_file), ("test", data.test_file)):
            if name:
                files[split] = Path(name)
        return files, None
    if data.validation_file or data.test_file:
        raise DataError("data.validation_file / data.test_file need data.train_file as well")
    if not data.dataset:
        raise DataError("no data: set data.dataset (see `tuneforge list datasets`) or data.train_file")
    from tuneforge.assets.datasets import DATASETS, dataset_folder

    asset = DATASETS.get(data.dataset)
    folder = dataset_folder(data.dataset)
    return {split: folder / name for split, name in asset.files.items()}, asset.class_names


def split_folders(root: Path) -> dict[str, Path]:
    """``root/train``, ``root/validation`` (``val``), ``root/test`` when the folder is laid out by split."""
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    if found and "train" not in found:
        raise DataError(f"{root}: has {', '.join(p.name for p in found.values())}/ but no train/ folder")
    return found


def read_images(path: Path, data: DataConfig, class_names: tuple[str, ...] | None = None) -> ReadResult:
    """Every labelled image of one source, each file checked; bad ones become problems."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _check_class_folders(check_image_files(_read_folder(path), path), path)
    if _IDX_IMAGES.search(path.name):
        return _read_idx(path, class_names)  # arrays: nothing left to check per image
    return check_image_files(_read_table(path, data), path)


def _read_folder(root: Path) -> FolderReadResult:
    result = FolderReadResult()
    classes = class_folders(root)
    if not classes:
        raise DataError(f"{root}: an image folder needs one sub-folder per class (e.g. {root}/cat/1.jpg)")
    for stray in sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        result.total_rows += 1
        result.problems.append(Problem(str(root), stray.name, "outside_class_folder",
                                       "image outside any class folder; move it into one"))
    ignored: Counter[str] = Counter()
    for folder in classes:  # images anywhere under a class folder belong to that class
        files = _visible_files(folder)
        images = [file for file in files if file.suffix.lower() in IMAGE_SUFFIXES]
        if images:  # a folder without any is warned about as a whole (_check_class_folders), not file by file
            ignored.update(file.suffix.lower() or "(no suffix)" for file in files
                           if file.suffix.lower() not in IMAGE_SUFFIXES)
        result.total_rows += len(images)
        result.examples += [ImageExample(str(file), folder.name, f"{root}:{file.relative_to(root)}") for file in images]
    if ignored:  # e.g. .heic phone photos: say so rather than train on fewer images unnoticed
        kinds = ", ".join(f"{count} {suffix}" for suffix, count in ignored.most_common())
        result.warnings.append(warn(f"{root}: ignored {sum(ignored.values())} files that are not images tuneforge "
                                    f"reads ({kinds}); convert them to JPEG or PNG to train on them"))
    return result


def class_folders(root: Path) -> list[Path]:
    """The class folders of an image folder: its sub-folders, hidden ones left out, sorted by name."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _visible_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _check_class_folders(result: FolderReadResult, root: Path) -> FolderReadResult:
    """A class folder that yields no usable image is a warning naming it and its files (its class is left out);
    when no class folder yields one, the folder cannot train anything: an error."""
    found = {example.label for example in result.examples}
    unusable = [folder for folder in class_folders(root) if folder.name not in found]
    if unusable and not result.examples:
        described = "; ".join(f"{folder.name}/: {_describe_files(folder)}" for folder in unusable)
        failed = (f" {len(result.problems)} image files failed the check, e.g. {result.problems[0]}."
                  if result.problems else "")
        raise DataError(f"{root}: no class folder holds an image tuneforge can read ({', '.join(IMAGE_SUFFIXES)}): "
                        f"{described}.{failed} Convert the images to JPEG or PNG (.heic: e.g. `heif-convert`)")
    for folder in unusable:
        result.warnings.append(warn(
            f"class folder {folder} yields no image tuneforge can read, so class {folder.name!r} is left out: "
            f"{_describe_files(folder)}; convert them to JPEG or PNG (.heic: e.g. `heif-convert`) or remove it"))
    return result


def _describe_files(folder: Path, shown: int = 5) -> str:
    """"is empty" or "holds 3 files: a.heic, b.heic, c.heic" (the first ``shown`` names, then a count)."""
    names = [file.relative_to(folder).as_posix() for file in _visible_files(folder)]
    if not names:
        return "it is empty"
    listed = ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return f"it holds {len(names)} file{'' if len(names) == 1 else 's'}: {listed}"


def _read_table(path: Path, data: DataConfig) -> ReadResult:
    """Rows of a table; image paths are relative to the table's folder (or absolute)."""
    rows = read_examples(path, data.image_column, data.label_column, fmt=data.format, encoding=data.encoding,
                         sheet=data.sheet)
    result = ReadResult(problems=rows.problems, total_rows=rows.total_rows, encoding=rows.encoding,
                        encoding_note=rows.encoding_note)
    for row in rows.examples:
        image = Path(row.text.strip()).expanduser()
        image = image if image.is_absolute() else path.parent / image
        result.examples.append(ImageExample(str(image), str(row.label), row.source))
    return result


def check_image_files(result: ReadResult, origin: Path) -> ReadResult:
    """Decode every image file once (threads: PIL decodes without the GIL); bad ones become problems."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda e: check_image_file(e.image), result.examples))
    good = []
    for example, verdict in zip(result.examples, verdicts, strict=True):
        if verdict is None:
            good.append(example)
            continue
        kind, message = verdict
        where = example.source[len(str(origin)) + 1 :]  # sources read "<origin>:<line or relative path>"
        if where.isdigit() or where.startswith("row "):  # a table row: say which image file it names
            where, message = (f"line {where}" if where.isdigit() else where), f"{example.image}: {message}"
        result.problems.append(Problem(str(origin), where, kind, message))
    result.examples = good
    return result


def check_image_file(path: str) -> tuple[str, str] | None:
    """None if the file is a complete image in a supported mode, else (problem kind, message)."""
    file = Path(path)
    if not file.is_file():
        return "missing_image", "file not found"
    if file.stat().st_size == 0:
        return "empty_image", "empty file (0 bytes)"
    try:
        with Image.open(file) as image:
            if image.width == 0 or image.height == 0:
                return "empty_image", f"zero-size image ({image.width}x{image.height})"
            if image.mode not in SUPPORTED_MODES:
                return "unsupported_mode", (f"image mode {image.mode} is not supported (16-bit, float or a "
                                            "colour space without an RGB rendering); convert it to 8-bit RGB")
            image.load()  # a full decode: truncation shows only here
    except UnidentifiedImageError:
        return "unreadable_image", "not an image file Pillow can read"
    except (OSError, SyntaxError, ValueError) as error:
        if "truncated" in str(error).lower():
            return "truncated_image", "truncated image file (incomplete download or copy?)"
        return "unreadable_image", f"cannot decode the image ({error})"
    except Image.DecompressionBombError:
        return "unreadable_image", "image too large (Pillow's decompression-bomb limit)"
    return None


# --------------------------------------------------------------------------- IDX (MNIST format)


def _read_idx(path: Path, class_names: tuple[str, ...] | None) -> ReadResult:
    labels_path = idx_labels_path(path)
    pixels = read_idx(path, expected_dims=3)
    labels = read_idx(labels_path, expected_dims=1)
    if len(labels) != len(pixels):
        raise DataError(f"{labels_path}: {len(labels):,} labels for {len(pixels):,} images in {path}")
    if pixels.shape[1] == 0 or pixels.shape[2] == 0:
        raise DataError(f"{path}: zero-size images ({pixels.shape[1]}x{pixels.shape[2]})")
    if labels.min(initial=0) < 0:
        raise DataError(f"{labels_path}: negative label {labels.min()}; IDX labels are class numbers from 0")
    if class_names is not None and labels.max(initial=0) >= len(class_names):
        raise DataError(f"{labels_path}: label {labels.max()} but only {len(class_names)} classes are named")
    names = class_names or tuple(str(i) for i in range(int(labels.max(initial=0)) + 1))
    result = ReadResult(total_rows=len(pixels))
    result.examples = [ImageExample(ArrayImage(pixels, i), names[int(label)], f"{path}:image {i}")
                       for i, label in enumerate(labels)]
    return result


def idx_labels_path(images: Path) -> Path:
    name = re.sub(r"images([-.])idx3", r"labels\1idx1", images.name)
    for candidate in (images.with_name(name), images.with_name(name.removesuffix(".gz")),
                      images.with_name(name + ".gz")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{images}: its labels file {images.with_name(name)} is missing (IDX labels sit beside "
                    f"the images, named ...labels-idx1-ubyte)")


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """An IDX array (http://yann.lecun.com/exdb/mnist/ format), checked against its declared size."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot read ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dims = raw[3]
    if dims != expected_dims:
        raise DataError(f"{path}: {dims}-dimensional IDX data; expected {expected_dims} dimensions")
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: truncated or padded IDX file ({len(raw) - header:,} data bytes, "
                        f"{expected:,} expected for shape {shape})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(np.uint8 if dims == 3 else np.int64)


def thumbnail(image: str | ArrayImage | Image.Image, side: int = 112) -> Image.Image:
    """A Pillow image at most ``side`` pixels across for report grids; small images are enlarged with nearest
    neighbours (crisp pixels, not blur)."""
    image = open_image(image)
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    tiny = max(image.size) < side
    return image.resize(size, Image.Resampling.NEAREST if tiny else Image.Resampling.BILINEAR)
