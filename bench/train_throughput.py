"""Training throughput: tuneforge vs a plain transformers.Trainer script, same work, one invocation.

Both sides fine-tune minilm-l6 (full fine-tuning) on the same rt-sentences training rows with the
same batch size, max length, learning rate and number of optimizer steps; each runs in its own
subprocess so peak RSS is its own. Printed: samples/s of each and their ratio, achieved GFLOP/s
(useful work on real, non-padding tokens) as a fraction of a matrix-product peak measured in this
run, peak RSS, and test accuracy after the steps (so speed is compared at equal accuracy).

    python bench/train_throughput.py                # 120 steps each (~3 min on 2 cores)
    python bench/train_throughput.py --steps 800    # closer to a full epoch (~8.5k rows / 32)
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from _worker import run_worker  # bench/ is on sys.path when a bench script runs

BATCH, MAX_LENGTH, LR, SEED = 32, 64, 5e-5, 42




def _split():
    from tuneforge.config import DataConfig
    from tuneforge.data.splits import load_splits

    return load_splits(DataConfig(), seed=SEED)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _accuracy(model, tokenizer, test) -> float:
    import numpy as np
    import torch

    model.eval()
    labels = {"negative": 0, "positive": 1}
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test), 128):
            rows = test[start : start + 128]
            batch = tokenizer([r.text for r in rows], padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt")
            predicted = model(**batch).logits.argmax(-1).numpy()
            correct += int((predicted == np.array([labels[r.label] for r in rows])).sum())
    return correct / len(test)


def run_trainer(steps: int) -> dict:
    """The naive baseline: what a user writes from the transformers docs (dynamic padding, random batches)."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from tuneforge.assets import resolve_model

    splits = _split()
    path = resolve_model("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    ids = tokenizer([r.text for r in splits.train], truncation=True, max_length=MAX_LENGTH)["input_ids"]
    labels = {"negative": 0, "positive": 1}
    train = [{"input_ids": i, "labels": labels[r.label]} for i, r in zip(ids, splits.train, strict=True)]
    args = TrainingArguments(output_dir="/tmp/tuneforge-bench-trainer", per_device_train_batch_size=BATCH,
                             learning_rate=LR, max_steps=steps, warmup_steps=0.06, weight_decay=0.01,
                             lr_scheduler_type="linear", save_strategy="no", report_to=[], logging_steps=50,
                             seed=SEED, use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=DataCollatorWithPadding(tokenizer))
    output = trainer.train()
    seconds = output.metrics["train_runtime"]
    tokens = _real_tokens(ids, steps)
    return {"samples_per_second": steps * BATCH / seconds, "seconds": seconds, "real_tokens": tokens,
            "test_accuracy": _accuracy(model, tokenizer, splits.test), "peak_rss_mb": _peak_rss_mb()}


def run_tuneforge(steps: int) -> dict:
    import tuneforge

    config = {
        "name": "bench", "seed": SEED,
        "method": {"name": "full"},
        "data": {"max_length": MAX_LENGTH},
        "train": {"max_steps": steps, "batch_size": BATCH, "lr": LR, "log_every": 50, "precision": "fp32"},
        "eval": {"every": 10**9},  # one evaluation, at the end (excluded from the timing)
        "output": {"dir": "/tmp/tuneforge-bench-runs", "progress": False, "tensorboard": False},
    }
    run = tuneforge.train(config)
    fit = run.metrics["fit"]
    from transformers import AutoTokenizer

    splits = _split()
    ids = AutoTokenizer.from_pretrained(run.model_dir)([r.text for r in splits.train], truncation=True,
                                                       max_length=MAX_LENGTH)["input_ids"]
    return {"samples_per_second": fit["train_samples_per_second"], "seconds": fit["train_seconds"],
            "real_tokens": _real_tokens(ids, steps), "test_accuracy": run.metrics["test"]["accuracy"],
            "peak_rss_mb": _peak_rss_mb()}


def _real_tokens(ids: list[list[int]], steps: int) -> float:
    """Non-padding tokens processed in ``steps`` batches (average length x samples)."""
    mean_length = sum(len(i) for i in ids) / len(ids)
    return mean_length * steps * BATCH


def matmul_peak_gflops(size: int = 1024, repeats: int = 20) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def training_flops(tokens: float) -> float:
    """6 x non-embedding parameters per token (forward + backward) plus attention, for MiniLM-L6."""
    layers, d, d_ff, length = 6, 384, 1536, 27
    per_layer = 4 * d * d + 2 * d * d_ff
    attention = 2 * length * d  # scores and weighted sum, per token per layer
    return 6 * tokens * layers * (per_layer + attention)


def _worker(name: str, steps: int) -> dict:
    return run_worker(__file__, "--worker", name, "--steps", str(steps), label=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--worker", choices=["trainer", "tuneforge"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = run_trainer(args.steps) if args.worker == "trainer" else run_tuneforge(args.steps)
        print(json.dumps(result))
        return

    peak = matmul_peak_gflops()
    results = {name: _worker(name, args.steps) for name in ("trainer", "tuneforge")}
    print(f"full fine-tuning of minilm-l6 on rt-sentences: {args.steps} steps x batch {BATCH}, max length "
          f"{MAX_LENGTH}, lr {LR}")
    print(f"matrix-product peak measured now: {peak:.1f} GFLOP/s (fp32, 1024x1024)")
    print(f"{'':12}{'samples/s':>11}{'seconds':>9}{'GFLOP/s':>9}{'of peak':>9}{'RSS MB':>8}{'test acc':>10}")
    for name, r in results.items():
        gflops = training_flops(r["real_tokens"]) / r["seconds"] / 1e9
        print(f"{name:12}{r['samples_per_second']:11.1f}{r['seconds']:9.1f}{gflops:9.1f}{gflops / peak:9.0%}"
              f"{r['peak_rss_mb']:8.0f}{r['test_accuracy']:10.4f}")
    ratio = results["tuneforge"]["samples_per_second"] / results["trainer"]["samples_per_second"]
    print(f"speed ratio tuneforge / Trainer: {ratio:.2f}x (goal >= 1.3x at equal accuracy)")


if __name__ == "__main__":
    main()
