"""Checkpoint overhead: training throughput with a checkpoint every 50 steps vs none, one invocation.

Each pair trains minilm-l6 on rt-sentences for the same steps, batch and seed, in its own subprocess;
both write the final checkpoint at the last evaluation, only one also writes one every 50 steps.
Checkpoints are atomic (scratch folder, fsync, sha256 manifest, rename), so this measures all of it.

    python bench/checkpoint_overhead.py              # 200 steps, LoRA and full fine-tuning
"""

from __future__ import annotations

import argparse
import json
import tempfile

from _worker import run_worker  # bench/ is on sys.path when a bench script runs


def run(method: str, every: int | None, steps: int) -> float:
    import tuneforge

    with tempfile.TemporaryDirectory() as out:
        run = tuneforge.train({
            "name": "bench", "method": {"name": method},
            "train": {"max_steps": steps, "lr": 5e-5 if method == "full" else 1e-3, "precision": "fp32",
                      "checkpoint": {"every": every, "keep_last": 2}},
            "eval": {"every": 10**9},
            "output": {"dir": out, "progress": False, "tensorboard": False},
        })
        return run.metrics["fit"]["train_samples_per_second"]


def _worker(method: str, every: int | None, steps: int) -> float:
    return run_worker(__file__, "--worker", method, str(every), "--steps", str(steps), label=method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        method, every = args.worker
        print(json.dumps(run(method, None if every == "None" else int(every), args.steps)))
        return
    print(f"minilm-l6 on rt-sentences, {args.steps} steps x batch 32; checkpoint every 50 steps vs none")
    print(f"{'method':8}{'none s/s':>10}{'every 50':>10}{'ratio':>8}")
    for method in ("lora", "full"):
        base = _worker(method, None, args.steps)
        checkpointed = _worker(method, 50, args.steps)
        print(f"{method:8}{base:10.1f}{checkpointed:10.1f}{checkpointed / base:8.3f}"
              f"   overhead {100 * (1 - checkpointed / base):+.1f}% (goal <= 5%; negative = noise)")


if __name__ == "__main__":
    main()
