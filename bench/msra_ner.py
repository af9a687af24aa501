"""MSRA Chinese NER through tuneforge: entity F1 (seqeval, strict IOB2, micro) on the whole test split, the wall time,
and the validation F1 at each evaluation (the learning curve: F1 against training sentences seen).

    python bench/msra_ner.py                       # configs/msra_ner.yaml as shipped (about 55 min on 2 cores)
    python bench/msra_ner.py train.max_steps=1300  # any override, e.g. a shorter run

The baseline row (a character BiLSTM-CRF trained from scratch, no pretrained weights) is bench/ner_bilstm_crf.py,
run alone the same way; docs/ner.md puts the two side by side. Run benchmarks alone: a second torch process on
these cores slows both far more than twice.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import tuneforge
from tuneforge.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "msra_ner.yaml"


def main(overrides: list[str]) -> None:
    config = load_config(CONFIG, ["eval.every=575", "output.progress=false", "output.tensorboard=false", *overrides])
    started = time.perf_counter()
    run = tuneforge.train(config)
    wall = time.perf_counter() - started
    metrics = run.metrics
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text().splitlines()]
    batch = config.train.batch_size
    curve = [{"step": row["step"], "sentences": row["step"] * batch, "validation_f1": round(row["eval_f1"], 4)}
             for row in history if "eval_f1" in row]
    test = metrics["test"]
    fit = metrics["fit"]
    print(f"\nMSRA test ({test['num_examples']:,} sentences, {test['num_entities']:,} entities): entity F1 "
          f"{test['f1']:.4f} (P {test['precision']:.4f}, R {test['recall']:.4f}); per type "
          + ", ".join(f"{k} {v['f1']:.4f}" for k, v in test["per_type"].items()))
    print(f"wall time {wall / 60:.1f} min (training {fit['train_seconds'] / 60:.1f} min, "
          f"{fit['train_samples_per_second']:.1f} sentences/s)")
    for point in curve:
        print(f"  after {point['sentences']:>6,} sentences: validation F1 {point['validation_f1']:.4f}")
    print(json.dumps({"f1": test["f1"], "precision": test["precision"], "recall": test["recall"],
                      "wall_minutes": wall / 60, "curve": curve, "run": str(run.dir)}))


if __name__ == "__main__":
    main(sys.argv[1:])
