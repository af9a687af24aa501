"""Token-classification training throughput: tuneforge vs a plain transformers.Trainer script, one invocation.

Both sides train the same network on the same sentences: tuneforge's own ``build_tagger`` (gemma3-270m cut to
its first 6 layers and made bidirectional, a fresh linear tag head) with method topk k=6 applied by tuneforge's
``apply_method`` (the 6 layers, what sits above them such as Gemma's final norm, and the head train; the
embedding stays frozen), so the trainable parameters are the same tensors and only the data pipeline and the
loop differ. No CRF
(``ner.crf: false``): the Trainer side has none, and both sides take a per-token cross-entropy (tuneforge over
words gathered at their first sub-token, the Trainer through the model's own loss with -100 labels: here the
same positions, since every character of MSRA is one token for both tokenizers).

Data: the built-in msra-ner corpus through ``load_tagged_splits`` (split 0.85/0.05/0.10, seed 42,
``data.max_examples`` = (warmup + timed steps) x batch), so both sides train on the same seeded sample of
training sentences, one pass over it: every sentence once, in each side's own order. Max length 128, as
configs/msra_ner.yaml: the longest MSRA sentence is 100 characters, so nothing is truncated or windowed and
both sides feed identical token ids. The Trainer script is the transformers token-classification example:
the characters as words (``is_split_into_words=True``), labels on each word's first sub-token and -100 on
the rest and on special tokens, ``DataCollatorForTokenClassification``, random batches (its default).
Same batch size, optimizer steps, lr 1e-4 (configs/msra_ner.yaml's ``head_lr`` is left out, so both sides
run one learning rate), 3% linear warmup then linear decay, weight decay 0.01, clipping at 1.0, fused
AdamW on both sides (Trainer's default optimizer), fp32, seed 42. Each side runs in its own subprocess.

What is timed, on both sides the same window: from the end of optimizer step --warmup-steps to the end of
step --warmup-steps + --steps (the first steps pay for allocator growth and lazy initialisation). Inside
the window, each step's batch collation, forward, loss, backward, clipping, optimizer and scheduler step
and per-step loss logging. Outside it, on both sides: loading data and model, tokenization (done up front
on both sides), and for tuneforge its evaluation, checkpoint and saving after the last step. Trainer's
times come from a callback at each step end; tuneforge's from its per-step log (``history.jsonl`` with
``train.log_every: 1``: samples so far / samples per second = training seconds so far, evaluation excluded).
The whole-run figures each library reports (tuneforge ``fit.train_seconds``, which includes its
checkpoint after the last step, and Trainer ``train_runtime``) are printed too. Sentences/s = timed
steps x batch / timed seconds (every batch is full). Peak RSS is each subprocess's VmHWM.

    python bench/token_throughput.py                      # gemma3-270m, 120 timed steps after 5, batch 16
    python bench/token_throughput.py --model minilm-l6    # speed only: MiniLM reads little Chinese
    python bench/token_throughput.py --tiny               # smoke check: 3 timed steps after 1, batch 4
"""

from __future__ import annotations

import argparse
import json
import time

from _worker import run_worker  # bench/ is on sys.path when a bench script runs

SEED, MAX_LENGTH, LR, WEIGHT_DECAY, WARMUP_RATIO = 42, 128, 1e-4, 0.01, 0.03
LAYERS, TOP_K = 6, 6  # ner.layers and method.k of configs/msra_ner.yaml
SPLIT = [0.85, 0.05, 0.10]
MODELS = ("gemma3-270m", "minilm-l6")


def _peak_rss_mb() -> float:
    """VmHWM: this process's peak resident set size."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _data(model: str, sentences: int) -> dict:
    """The data section both sides read: the same seeded sample of msra-ner training sentences."""
    return {"dataset": "msra-ner", "split": SPLIT, "max_length": MAX_LENGTH, "max_examples": sentences,
            # a small sample may lack an entity type in validation/test: drop those sentences, not the run
            "on_bad_rows": "skip",
            "allow_unknown_tokens": model == "minilm-l6"}  # tuneforge refuses MiniLM on Chinese otherwise


def _warmup_lr_steps(total: int) -> int:
    return round(WARMUP_RATIO * total)  # as tuneforge's build_scheduler rounds it


def _window(times: dict[int, float], warmup: int, total: int) -> float:
    """Seconds between the end of step ``warmup`` and the end of step ``total``."""
    return times[total] - times.get(warmup, 0.0)


# --------------------------------------------------------------------------- arms (run in subprocesses)


def run_tuneforge(model: str, steps: int, warmup: int, batch: int) -> dict:
    import tuneforge

    total = warmup + steps
    config = {
        "task": "token_classification", "name": "bench-ner-throughput", "seed": SEED,
        "model": {"name": model},
        "method": {"name": "topk", "k": TOP_K},
        "ner": {"layers": LAYERS, "crf": False},
        "data": _data(model, total * batch),
        "train": {"max_steps": total, "batch_size": batch, "lr": LR, "weight_decay": WEIGHT_DECAY,
                  "warmup_ratio": WARMUP_RATIO, "scheduler": "linear", "max_grad_norm": 1.0,
                  "precision": "fp32", "log_every": 1},
        "eval": {"every": total},  # one evaluation, after the last step (outside the timed window)
        "output": {"dir": "/tmp/tuneforge-bench-runs", "progress": False, "tensorboard": False},
    }
    run = tuneforge.train(config)
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text(encoding="utf-8").splitlines()]
    train = {r["step"]: r for r in history if "train_loss" in r}
    # samples so far / samples per second so far = training seconds so far (evaluation excluded)
    elapsed = {step: step * batch / r["samples_per_second"] for step, r in train.items()}
    fit = run.metrics["fit"]
    return {"steps": fit["steps"], "window_seconds": _window(elapsed, warmup, total),
            "reported_seconds": fit["train_seconds"],
            "loss": sum(train[s]["train_loss"] for s in range(warmup + 1, total + 1)) / steps,
            "trainable_parameters": run.metrics["trainable_parameters"], "train_sentences": total * batch,
            "peak_rss_mb": _peak_rss_mb(), "run": str(run.dir)}


def run_trainer(model_name: str, steps: int, warmup: int, batch: int) -> dict:
    """The plain script: the transformers token-classification example on tuneforge's network."""
    import torch
    from transformers import DataCollatorForTokenClassification, Trainer, TrainerCallback, TrainingArguments, set_seed

    from tuneforge.config import DataConfig
    from tuneforge.config.methods import TopKConfig
    from tuneforge.data.tagging import entity_tags, load_tagged_splits
    from tuneforge.methods import Target, apply_method, head_module_names
    from tuneforge.tasks.token_classification.network import build_tagger
    from tuneforge.tasks.token_classification.recipe import bio_tags

    total = warmup + steps
    set_seed(SEED)
    splits = load_tagged_splits(DataConfig(**_data(model_name, total * batch)), SEED)
    tags = bio_tags(splits.labels())  # the tag set tuneforge builds from the same split
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    tokenizer, model = build_tagger(model_name, tags, LAYERS)
    model = apply_method(model, TopKConfig(k=TOP_K), Target(heads=tuple(head_module_names(model)),
                                                             task_type="TOKEN_CLS"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    # tokenize_and_align_labels of the HF example: each character is a word
    words = [[r.text[start:end] for start, end in r.words] for r in splits.train]
    encoded = tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH)
    train = []
    for index, row in enumerate(splits.train):
        word_tags, labels, previous = entity_tags(row), [], None
        for word in encoded.word_ids(index):
            labels.append(-100 if word is None or word == previous else tag_ids[word_tags[word]])
            previous = word
        train.append({"input_ids": encoded["input_ids"][index], "attention_mask": encoded["attention_mask"][index],
                      "labels": labels})

    step_end: dict[int, float] = {}

    class StepTimes(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_end[state.global_step] = time.perf_counter() - self.start

    args = TrainingArguments(output_dir="/tmp/tuneforge-bench-trainer-ner", per_device_train_batch_size=batch,
                             learning_rate=LR, max_steps=total, warmup_steps=_warmup_lr_steps(total),
                             weight_decay=WEIGHT_DECAY, lr_scheduler_type="linear", max_grad_norm=1.0,
                             save_strategy="no", eval_strategy="no", report_to=[], logging_steps=1, seed=SEED,
                             use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=DataCollatorForTokenClassification(tokenizer), callbacks=[StepTimes()])
    output = trainer.train()
    losses = {r["step"]: r["loss"] for r in trainer.state.log_history if "loss" in r}
    return {"steps": trainer.state.global_step, "window_seconds": _window(step_end, warmup, total),
            "reported_seconds": output.metrics["train_runtime"],
            "loss": sum(losses[s] for s in range(warmup + 1, total + 1)) / steps,
            "trainable_parameters": trainable, "train_sentences": len(train), "peak_rss_mb": _peak_rss_mb()}


# --------------------------------------------------------------------------- the comparison


def _arm(name: str, args: argparse.Namespace) -> dict:
    return run_worker(__file__, "--worker", name, "--model", args.model, "--steps", str(args.steps),
                      "--warmup-steps", str(args.warmup_steps), "--batch-size", str(args.batch_size), label=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="gemma3-270m",
                        help="minilm-l6 reads little Chinese: a speed comparison only")
    parser.add_argument("--steps", type=int, default=120, help="timed optimizer steps per side")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed optimizer steps before them")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tiny", action="store_true", help="smoke check: 3 timed steps after 1, batch 4")
    parser.add_argument("--worker", choices=["trainer", "tuneforge"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        args.steps, args.warmup_steps, args.batch_size = 3, 1, 4
    if args.worker:
        arm = run_trainer if args.worker == "trainer" else run_tuneforge
        print(json.dumps(arm(args.model, args.steps, args.warmup_steps, args.batch_size)))
        return
    if min(args.steps, args.batch_size) < 1 or args.warmup_steps < 0:
        parser.error("--steps and --batch-size must be >= 1, --warmup-steps >= 0")

    results = {name: _arm(name, args) for name in ("trainer", "tuneforge")}
    sentences = args.steps * args.batch_size
    for r in results.values():
        r["sentences_per_second"] = sentences / r["window_seconds"]
    pool = results["trainer"]["train_sentences"]
    print(f"token classification (msra-ner, no CRF), {args.model} first {LAYERS} layers, topk k={TOP_K}, fp32: "
          f"{args.steps} timed steps after {args.warmup_steps} warmup, batch {args.batch_size}, max length "
          f"{MAX_LENGTH}, lr {LR}; one pass over the same {pool:,} seeded training sentences"
          f"{' (--tiny: a smoke check, not a measurement)' if args.tiny else ''}")
    if args.model == "minilm-l6":
        print("note: MiniLM reads little Chinese (most characters are [UNK]): a speed comparison only, "
              "not a model for this data")
    print(f"{'':12}{'sentences/s':>12}{'timed s':>9}{'whole s':>9}{'RSS MB':>8}{'trainable':>13}{'loss':>8}")
    for name, r in results.items():
        print(f"{name:12}{r['sentences_per_second']:12.1f}{r['window_seconds']:9.1f}{r['reported_seconds']:9.1f}"
              f"{r['peak_rss_mb']:8.0f}{r['trainable_parameters']:13,}{r['loss']:8.3f}")
    print("(timed s: the timed steps only; whole s: train_seconds / train_runtime as each library reports it; "
          "loss: mean training loss over the timed steps)")
    if results["trainer"]["trainable_parameters"] != results["tuneforge"]["trainable_parameters"]:
        print("WARNING: the two sides train different parameter counts: the comparison is not like for like")
    ratio = results["tuneforge"]["sentences_per_second"] / results["trainer"]["sentences_per_second"]
    print(f"speed ratio tuneforge / Trainer: {ratio:.2f}x (goal >= 1.3x)")
    print(json.dumps({"model": args.model, "steps": args.steps, "warmup_steps": args.warmup_steps,
                      "batch_size": args.batch_size, "tiny": args.tiny, "speed_only": args.model == "minilm-l6",
                      "ratio": round(ratio, 4),
                      **{f"{name}_sentences_per_second": round(r["sentences_per_second"], 3)
                         for name, r in results.items()},
                      **{f"{name}_{key}": r[key] for name, r in results.items()
                         for key in ("window_seconds", "reported_seconds", "peak_rss_mb", "trainable_parameters",
                                     "loss")}}))


if __name__ == "__main__":
    main()
