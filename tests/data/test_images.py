"""Image data: sources (folders, tables, IDX, built-ins), per-image validation, seeded transforms."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tuneforge.assets.datasets import write_idx
from tuneforge.config import Config, DataConfig, ImageConfig
from tuneforge.data.image_batches import ImageDataset
from tuneforge.data.images import ArrayImage, open_image, read_idx, read_images, resolve_image_files
from tuneforge.data.transforms import Augmentation, Preprocessing
from tuneforge.errors import DataError
from tuneforge.tasks.image_classification.recipe import load_image_splits


def save_digit(path, digit_pixels: np.ndarray, mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(digit_pixels).convert(mode).save(path)


@pytest.fixture(scope="module")
def digits():
    """Real MNIST digits (mnist-5k): pixels (N, 28, 28) and labels."""
    from tuneforge.assets.datasets import dataset_folder

    folder = dataset_folder("mnist-5k")
    return read_idx(folder / "mnist-5k-images-idx3-ubyte.gz", 3), read_idx(folder / "mnist-5k-labels-idx1-ubyte.gz", 1)


def test_builtin_mnist_5k_is_5000_real_digits(digits):
    pixels, labels = digits
    assert pixels.shape == (5000, 28, 28) and pixels.dtype == np.uint8
    assert sorted(set(labels.tolist())) == list(range(10))
    assert 20 < pixels.mean() < 60  # dark background, bright strokes: real digits, not noise


def test_builtin_fashion_mnist_has_official_splits_and_class_names():
    from tuneforge.assets.datasets import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("Debian package dataset-fashion-mnist not installed (make install installs it as root)")
    config = Config(task="image_classification", data=DataConfig(dataset="fashion-mnist", split=[0.9, 0.1, 0.0]))
    splits = load_image_splits(config)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (54_000, 6_000, 10_000)
    assert "Ankle boot" in splits.labels() and len(splits.labels()) == 10


def test_fashion_mnist_missing_package_names_the_fix(monkeypatch, tmp_path):
    from tuneforge.assets import datasets

    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*mnist-5k"):
        datasets.dataset_folder("fashion-mnist")


def test_folder_of_class_folders_with_bad_images_reports_each(tmp_path, digits, capsys):
    pixels, labels = digits
    root = tmp_path / "data"
    for i in range(6):
        save_digit(root / str(labels[i]) / f"{i}.png", pixels[i])
    good = root / str(labels[0]) / "0.png"
    (root / "7" / "truncated.png").parent.mkdir(exist_ok=True)
    (root / "7" / "truncated.png").write_bytes(good.read_bytes()[:-40])
    (root / "7" / "empty.jpg").write_bytes(b"")
    (root / "7" / "notes.jpg").write_text("not an image")
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(root / "7" / "sixteen_bit.png")
    save_digit(root / "stray.png", pixels[0])
    (root / "7" / "README.txt").write_text("ignored: not an image suffix")

    (root / "7" / "holiday.heic").write_bytes(b"\0" * 10)
    result = read_images(root, DataConfig())
    assert "ignored 2 files that are not images tuneforge reads (1 .txt, 1 .heic)" in capsys.readouterr().err
    assert len(result.examples) == 6
    kinds = {p.location: p.kind for p in result.problems}
    assert kinds == {"7/truncated.png": "truncated_image", "7/empty.jpg": "empty_image",
                     "7/notes.jpg": "unreadable_image", "7/sixteen_bit.png": "unsupported_mode",
                     "stray.png": "outside_class_folder"}
    assert all(p.file == str(root) for p in result.problems)

    config = Config(task="image_classification", data=DataConfig(dataset=None, train_file=str(root)))
    with pytest.raises(DataError, match=r"Found 5 problems in 11 rows(.|\n)*7/truncated.png: truncated"):
        load_image_splits(config)


def test_table_of_image_paths_relative_to_the_file(tmp_path, digits):
    pixels, labels = digits
    for i in range(4):
        save_digit(tmp_path / "img" / f"{i}.png", pixels[i])
    rows = [f"img/{i}.png,{labels[i]}" for i in range(4)] + ["img/missing.png,3"]
    (tmp_path / "data.csv").write_text("path,digit\n" + "\n".join(rows) + "\n")
    data = DataConfig(image_column="path", label_column="digit")
    result = read_images(tmp_path / "data.csv", data)
    assert [e.label for e in result.examples] == [str(labels[i]) for i in range(4)]
    assert open_image(result.examples[0].image).size == (28, 28)
    (problem,) = result.problems
    assert (problem.location, problem.kind) == ("line 6", "missing_image")
    assert "img/missing.png: file not found" in problem.message


def test_split_folders_are_used_as_given(tmp_path, digits):
    pixels, labels = digits
    for split, start in (("train", 0), ("val", 100), ("test", 200)):
        for i in range(start, start + 30):
            save_digit(tmp_path / split / str(labels[i]) / f"{i}.png", pixels[i])
    files, _ = resolve_image_files(DataConfig(dataset=None, train_file=str(tmp_path)))
    assert {k: v.name for k, v in files.items()} == {"train": "train", "validation": "val", "test": "test"}


def test_idx_round_trip_and_damaged_files(tmp_path, digits):
    pixels, labels = digits
    write_idx(tmp_path / "x-images-idx3-ubyte.gz", pixels[:10])
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", labels[:10].astype(np.uint8))
    result = read_images(tmp_path / "x-images-idx3-ubyte.gz", DataConfig())
    image = result.examples[3].image
    assert isinstance(image, ArrayImage) and np.array_equal(image.pixels[3], pixels[3])
    assert result.examples[3].label == str(labels[3])

    raw = (tmp_path / "x-images-idx3-ubyte.gz").read_bytes()
    import gzip

    (tmp_path / "y-images-idx3-ubyte").write_bytes(gzip.decompress(raw)[:-100])
    with pytest.raises(DataError, match="truncated or padded IDX"):
        read_idx(tmp_path / "y-images-idx3-ubyte", 3)
    with pytest.raises(DataError, match="labels file .* is missing"):
        read_images(tmp_path / "y-images-idx3-ubyte", DataConfig())


def test_transforms_are_seeded_per_epoch_and_image(digits):
    pixels, _ = digits
    prep = Preprocessing.from_config(ImageConfig(size=32))
    augment = Augmentation(random_resized_crop=True, hflip=True, color_jitter=0.3)
    images = [ArrayImage(pixels, i) for i in range(4)]
    dataset = ImageDataset(images, None, prep, augment, seed=7)
    first, again = dataset[1]["pixel_values"], dataset[1]["pixel_values"]
    assert first.shape == (3, 32, 32)
    assert str(first.dtype) == "torch.float32"
    assert np.array_equal(first.numpy(), again.numpy())  # same (seed, epoch, image): same pixels
    next_epoch = dataset[len(images) + 1]["pixel_values"]  # key = epoch * N + index
    assert not np.array_equal(first.numpy(), next_epoch.numpy())
    other_seed = ImageDataset(images, None, prep, augment, seed=8)[1]["pixel_values"]
    assert not np.array_equal(first.numpy(), other_seed.numpy())

    plain = ImageDataset(images, None, prep)[1]["pixel_values"].numpy()
    # grey input becomes three equal channels, normalised with ImageNet's mean/std: black -> -mean/std
    background = (0 - np.array(prep.mean)) / np.array(prep.std)
    assert np.allclose(plain[:, 0, 0], background, atol=1e-5)


def test_transparent_areas_become_white(tmp_path):
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.putpixel((5, 5), (255, 0, 0, 255))
    image.save(tmp_path / "emoji.png")
    rgb = np.asarray(open_image(str(tmp_path / "emoji.png")))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[5, 5]) == (255, 0, 0)


def test_centre_crop_keeps_aspect_and_random_crop_stays_inside():
    prep = Preprocessing(size=32, resize=36)
    wide = Image.new("RGB", (200, 100), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 50, 100))  # white left quarter: cropped away by the centre crop
    assert np.asarray(prep.centre_crop(wide)).max() == 0
    white = Image.new("RGB", (200, 100), (255, 255, 255))
    rng = np.random.default_rng(0)
    for _ in range(50):  # a box reaching outside the image would pull in black fill
        crop = Augmentation(crop_scale=(0.08, 1.0))._crop(white, prep, rng)
        assert crop.size == (32, 32) and np.asarray(crop).min() == 255
