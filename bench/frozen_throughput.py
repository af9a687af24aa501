"""Frozen training throughput: tuneforge vs a naive implementation of the same model, in one invocation.

Both arms train the same vision encoder (EfficientNet-Lite0, ImageNet weights) to write n=2 prefix
embeddings for smollm2-135m on the same twemoji captions, with the same image size, batch size,
transforms, DataLoader and AdamW over the vision parameters only. The naive arm is what a first
implementation looks like: the language model's parameters keep ``requires_grad=True`` (only left out
of the optimizer), so backpropagation also computes a weight gradient for all 30 LM layers and the
tied 49k-word embedding, and the loss takes full-vocabulary logits at every position. tuneforge freezes
the LM (no weight gradients at all) and applies the output layer only where a caption token is predicted.

Each arm runs in its own subprocess; images/s count optimisation only.

    python bench/frozen_throughput.py               # 30 steps x 32 images at 64 px (~4 min on 2 cores)
    python bench/frozen_throughput.py --steps 20 --batch 16
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from _worker import run_worker  # bench/ is on sys.path when a bench script runs

SEED, LR = 42, 1e-3


def _config(args) -> dict:
    return {
        "task": "frozen",
        "name": "bench",
        "model": {"name": "smollm2-135m"},
        "method": {"name": "full"},
        "data": {"dataset": "twemoji", "split": [0.9, 0.1, 0.0], "max_examples": 1000},
        "frozen": {"prefix_length": 2, "binding_data": None},
        "image": {"size": args.size, "resize": args.size, "random_resized_crop": False, "hflip": False},
        "train": {"max_steps": args.steps, "batch_size": args.batch, "lr": LR, "num_workers": args.workers,
                  "log_every": 1000, "warmup_ratio": 0.0},
        "eval": {"every": 100_000, "batch_size": args.batch},
        "output": {"dir": tempfile.mkdtemp(), "progress": False, "tensorboard": False},
    }


def run_tuneforge(args) -> dict:
    import tuneforge

    run = tuneforge.train(_config(args))
    fit = run.metrics["fit"]
    return {"images_per_second": fit["train_samples_per_second"], "train_seconds": fit["train_seconds"]}


def run_naive(args) -> dict:
    """The same model and batches; the LM's requires_grad left on, full-vocabulary loss at every position."""
    import functools

    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from tuneforge.config import config_from_dict
    from tuneforge.data.captions import load_image_text_splits
    from tuneforge.data.transforms import Augmentation, Preprocessing
    from tuneforge.tasks.frozen.data import PairDataset
    from tuneforge.tasks.frozen.model import load_language_model, sequence_format
    from tuneforge.tasks.frozen.network import collate, positions
    from tuneforge.tasks.frozen.recipe import build_model

    torch.manual_seed(SEED)
    config = config_from_dict(_config(args))
    splits = load_image_text_splits(config.data, SEED, answers=False)
    tokenizer, lm = load_language_model("smollm2-135m")
    fmt = sequence_format(tokenizer, 2)
    model = build_model(config, lm)
    model.lm.requires_grad_(True)  # the naive part: the LM only left out of the optimizer
    data = PairDataset(splits.train, tokenizer, fmt, Preprocessing.from_config(config.image), config,
                       Augmentation.from_config(config.image))
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=args.workers,
                        collate_fn=functools.partial(collate, fmt=fmt))
    optimizer = torch.optim.AdamW(model.vision.parameters(), lr=LR)
    model.train()
    done, images, started = 0, 0, time.perf_counter()
    while done < args.steps:
        for batch in loader:
            embeds = model.embed(batch["input_ids"], batch["image_slots"], batch["pixel_values"])
            mask = batch["attention_mask"]
            logits = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask)).logits
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            model.lm.zero_grad(set_to_none=True)
            done, images = done + 1, images + len(mask)
            if done == args.steps:
                break
    seconds = time.perf_counter() - started
    return {"images_per_second": images / seconds, "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:  # inside a worker process
        print(json.dumps(run_tuneforge(args) if args.arm == "tuneforge" else run_naive(args)))
        return

    passed = sys.argv[1:]
    print(f"twemoji captions, {args.size} px, batch {args.batch}, {args.steps} steps, {args.workers} workers")
    arms = {}
    for arm in ("naive", "tuneforge"):
        arms[arm] = run_worker(__file__, *passed, "--arm", arm, label=arm)
        print(f"  {arm:<10} {arms[arm]['images_per_second']:7.1f} images/s  ({arms[arm]['train_seconds']:.1f} s)",
              flush=True)
    ratio = arms["tuneforge"]["images_per_second"] / arms["naive"]["images_per_second"]
    print(f"\ntuneforge vs naive (LM requires_grad on, full-vocabulary loss): {ratio:.2f}x (goal >= 1.3x)")


if __name__ == "__main__":
    main()
