"""Chinese reviews: `tuneforge init` + `tuneforge train` against a character-bigram TF-IDF + logistic regression,
on the same split of the built-in zh-reviews set, in one invocation.

A user's setting: a 4,000-row CSV of short Chinese product reviews (正面/负面), here drawn (seeded) from
zh-reviews and saved as GB18030 (GBK, as Excel in China writes it, plus the few characters GBK lacks). The
bench writes the 80/10/10 split as three files, runs `tuneforge init` on the training file (which chooses the
model and its settings), trains with exactly what init wrote, and fits the baseline on the same training rows.
Printed: both test accuracies, their difference in points, and tuneforge's wall time from init to the finished
report.

    python bench/chinese_text.py                   # 4,000 rows (about 15-25 min on 2 cores)
    python bench/chinese_text.py --rows 1000       # a quicker look
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rows(count: int, seed: int) -> list[dict]:
    from tuneforge.assets import dataset_file

    with dataset_file("zh-reviews").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    random.Random(seed).shuffle(rows)
    return rows[:count]


def _write(path: Path, rows: list[dict], encoding: str) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["评论", "情感"])
        writer.writerows([r["text"], r["label"]] for r in rows)
    return path


def _baseline(train: list[dict], test: list[dict]) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True)
    features = vectorizer.fit_transform([r["text"] for r in train])
    model = LogisticRegression(max_iter=2000).fit(features, [r["label"] for r in train])
    predicted = model.predict(vectorizer.transform([r["text"] for r in test]))
    return float((predicted == [r["label"] for r in test]).mean())


def _tuneforge(folder: Path, files: dict[str, Path]) -> tuple[float, float, str]:
    start = time.perf_counter()
    config = folder / "config.yaml"
    cli = [sys.executable, "-m", "tuneforge.cli"]
    subprocess.run([*cli, "init", "--data", str(files["train"]), "--out", str(config)], check=True)
    model = next(line.split()[1] for line in config.read_text(encoding="utf-8").splitlines()
                 if line.strip().startswith("name:") and line.startswith("  "))
    subprocess.run([*cli, "train", str(config), f"data.validation_file={files['validation']}",
                    f"data.test_file={files['test']}", f"output.dir={folder / 'runs'}", "output.progress=false"],
                   check=True)
    run = max((folder / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return metrics["test"]["accuracy"], time.perf_counter() - start, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    rows = _rows(args.rows, args.seed)
    cut = [int(0.8 * len(rows)), int(0.9 * len(rows))]
    parts = {"train": rows[:cut[0]], "validation": rows[cut[0]:cut[1]], "test": rows[cut[1]:]}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {name: _write(folder / f"{name}.csv", part, "gb18030") for name, part in parts.items()}
        baseline = _baseline(parts["train"], parts["test"])
        accuracy, seconds, model = _tuneforge(folder, files)
    print(f"\nzh-reviews, {len(rows):,} rows as GB18030 CSV "
          f"(train {len(parts['train']):,} / test {len(parts['test']):,})")
    print(f"TF-IDF char 1-2 grams + logistic regression: test accuracy {baseline:.4f}")
    print(f"tuneforge init + train ({model}):            test accuracy {accuracy:.4f}  "
          f"({100 * (accuracy - baseline):+.1f} points), {seconds / 60:.1f} min from init to report")


if __name__ == "__main__":
    main()
