"""The compression trade-off table for a MiniLM-L6 text classifier, with the issue's targets checked.

Builds every variant of one run (`tuneforge compress RUN --all`): PyTorch int8, ONNX, ONNX Runtime int8,
a 3-layer distilled student, 40% of heads pruned with one recovery epoch, 30% of FFN neurons pruned,
2 of 6 layers dropped, 30% magnitude sparsity. All are measured in this one invocation against the
original (fp32, adapters merged), so the ratios hold on a noisy machine even where absolute times don't.

    python bench/compress.py                              # trains the quickstart run first (~4 min)
    python bench/compress.py --run runs/quickstart-2026...  # a text-classification run of yours
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tuneforge.logging_setup import quiet_libraries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="teacher run (default: train the quickstart into a temporary folder)")
    parser.add_argument("--variants", default="all", help="comma-separated, or all (default)")
    parser.add_argument("--out", help="output folder (default: a temporary folder)")
    args = parser.parse_args()
    quiet_libraries()

    from tuneforge.api import train
    from tuneforge.compression.report import VARIANTS, compress

    work = Path(tempfile.mkdtemp(prefix="tuneforge-compress-"))
    run = args.run or train(None, [f"output.dir={work / 'runs'}"]).dir
    variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    out = compress(run, variants, args.out or work / "compress")
    print((out / "compression.md").read_text(encoding="utf-8"))
    check_targets(out)


def check_targets(out: Path) -> None:
    import csv

    rows = {r["variant"]: r for r in csv.DictReader((out / "compression.csv").open(encoding="utf-8"))}
    base = rows["original"]

    def ratio(row, key):
        return float(row[key]) / float(base[key])

    print("targets:")
    for name in ("int8", "onnx-int8"):
        if name in rows:
            r = rows[name]
            print(f"  {name}: b=1 speed-up {float(r['speedup_b1']):.2f}x (>= 2), size {100 * ratio(r, 'size_mb'):.0f}% "
                  f"(<= 30%), accuracy {100 * (float(r['accuracy']) - float(base['accuracy'])):+.2f} pt (>= -1), "
                  f"same label {float(r['agreement_pct']):.1f}% (>= 99)")
    if "distilled" in rows:
        r = rows["distilled"]
        print(f"  distilled 3-layer: {float(r['retained_pct']):.1f}% of the teacher's accuracy (>= 97), "
              f"b=32 throughput {float(r['speedup_b32']):.2f}x (>= 1.8)")
    if "heads" in rows:
        r = rows["heads"]
        print(f"  heads -40% + recovery: accuracy {100 * (float(r['accuracy']) - float(base['accuracy'])):+.2f} pt "
              f"(>= -1), speed-up b=1 {float(r['speedup_b1']):.2f}x, b=32 {float(r['speedup_b32']):.2f}x")


if __name__ == "__main__":
    main()
