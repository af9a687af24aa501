"""Causal-LM training throughput and memory: tuneforge vs a plain transformers.Trainer script, one invocation.

Four arms, each in its own fresh subprocess (so peak RSS is its own and no arm warms another's caches):
tuneforge and Trainer, each with full fine-tuning and with LoRA, on the same model (smollm2-135m, fp32),
the same packed blocks (the shakespeare training documents joined by EOS and cut into blocks of
--block-size tokens: tuneforge's own ``load_documents`` + ``pack_causal``), the same batch size, optimizer
steps, learning rate (5e-5 full, 1e-3 LoRA), linear schedule with the same warmup steps, weight decay 0.01,
gradient clipping at 1.0 and seed. LoRA is tuneforge's default (r 8, alpha 16, dropout 0.1, PEFT's default
q_proj/v_proj targets for llama), given to PEFT identically on both sides. The Trainer script is what the
transformers docs suggest: ``DataCollatorForLanguageModeling(mlm=False)``, no evaluation, no saving.

Why the comparison is fair: both sides are timed over the same window, from the end of optimizer step
--warmup to the end of step --warmup + --steps (first steps are slower: allocator, kernels, lazy init).
Trainer's times come from a callback at each step end; tuneforge's from its own per-step log
(``history.jsonl``: samples so far / samples per second = seconds of training so far, evaluation
excluded). What each side does outside that window (tuneforge's held-out perplexity before and after,
its checkpoint at the one evaluation, saving the model) is not counted; the whole-run times each library
reports (tuneforge ``train_seconds``, which includes that final checkpoint, and Trainer ``train_runtime``)
are printed too. Tokens/s = steps x batch x block size (every training block is full length but the
last one). One known difference in what is learnt, not in the work done: smollm2's pad token is its EOS
token, so the Trainer collator also drops the loss on the EOS separators between documents (~0.2% of tokens).

Achieved GFLOP/s use the usual estimate per token: 6N (full: forward, activation and weight gradients)
or 4N (LoRA: frozen weights still need the forward and the activation gradients, but no weight
gradients; the adapters' own work is negligible), N = all base parameters (the tied embedding counted
once, as the output projection), plus 12 x layers x hidden x block for attention. The fraction is of an
fp32 matrix-product peak (2048x2048 ``torch.mm``, sustained for ~2 s) measured in this invocation,
before and after the arms (the higher one is used). Peak memory is each subprocess's VmHWM (peak RSS).
On a shared machine, compare ratios from one invocation; with --repeats the arms run in alternating
rounds and each arm's fastest round is reported.

    python bench/causal_lm_throughput.py                 # 8 timed + 2 warmup steps per arm (19 min, 2 busy cores)
    python bench/causal_lm_throughput.py --arms tuneforge-lora,trainer-lora --steps 20
    python bench/causal_lm_throughput.py --repeats 2     # busy machine: alternate rounds, keep each arm's best
"""

from __future__ import annotations

import argparse
import json
import time

from _worker import run_worker  # bench/ is on sys.path when a bench script runs

ARMS = ("tuneforge-full", "trainer-full", "tuneforge-lora", "trainer-lora")
SEED, WEIGHT_DECAY, WARMUP_RATIO, EVAL_BLOCKS = 42, 0.01, 0.06, 8
LR = {"full": 5e-5, "lora": 1e-3}


def _peak_rss_mb() -> float:
    """VmHWM: this process's peak resident set size."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _warmup_lr_steps(total: int) -> int:
    return round(WARMUP_RATIO * total)  # as tuneforge's build_scheduler rounds it


def _window(times: dict[int, float], warmup: int, total: int) -> float:
    """Seconds between the end of step ``warmup`` and the end of step ``total``."""
    return times[total] - times.get(warmup, 0.0)


# --------------------------------------------------------------------------- arms (run in subprocesses)


def run_tuneforge(model: str, method: str, steps: int, warmup: int, batch: int, block: int, precision: str,
                  checkpointing: bool) -> dict:
    import tuneforge

    total = warmup + steps
    config = {
        "task": "causal_lm", "name": f"bench-clm-{method}", "seed": SEED,
        "model": {"name": model},
        "method": {"name": method},
        "data": {"dataset": "shakespeare", "max_length": block},
        "lm": {"eval_blocks": EVAL_BLOCKS},
        "train": {"max_steps": total, "batch_size": batch, "lr": LR[method], "weight_decay": WEIGHT_DECAY,
                  "warmup_ratio": WARMUP_RATIO, "scheduler": "linear", "max_grad_norm": 1.0,
                  "precision": precision, "gradient_checkpointing": checkpointing, "log_every": 1},
        "eval": {"every": total},  # one evaluation (and so one checkpoint), after the last step
        "output": {"dir": "/tmp/tuneforge-bench-runs", "progress": False, "tensorboard": False},
    }
    run = tuneforge.train(config)
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text(encoding="utf-8").splitlines()]
    train = {r["step"]: r for r in history if "train_loss" in r}
    # samples so far / samples per second so far = training seconds so far (evaluation excluded)
    elapsed = {step: step * batch / r["samples_per_second"] for step, r in train.items()}
    metrics = run.metrics
    trainable = metrics["trainable_parameters"]
    base = metrics["total_parameters"] - (trainable if method != "full" else 0)
    return {"steps": metrics["fit"]["steps"], "window_seconds": _window(elapsed, warmup, total),
            "reported_seconds": metrics["fit"]["train_seconds"],
            "loss": sum(train[s]["train_loss"] for s in range(warmup + 1, total + 1)) / steps,
            "base_parameters": base, "trainable_parameters": trainable,
            "train_blocks": metrics["counts"]["train blocks"], "peak_rss_mb": _peak_rss_mb()}


def run_trainer(model_name: str, method: str, steps: int, warmup: int, batch: int, block: int, precision: str,
                checkpointing: bool) -> dict:
    """The plain script: packed blocks, AutoModelForCausalLM, Trainer with the LM collator."""
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from tuneforge.assets import resolve_model
    from tuneforge.config import DataConfig
    from tuneforge.data.lm import load_documents, pack_causal, split_blocks

    total = warmup + steps
    set_seed(SEED)
    path = resolve_model(model_name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = DataConfig(dataset="shakespeare", max_length=block)
    documents = load_documents(data, SEED)
    blocks = pack_causal([d.text for d in documents.train], tokenizer, block)
    if documents.split_blocks:  # as tuneforge does when there are too few documents to hold out
        blocks = split_blocks(blocks, data.split, SEED)[0]
    train = [{"input_ids": ids} for ids in blocks.input_ids]

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    base = sum(p.numel() for p in model.parameters())
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        from tuneforge.config import LoraConfig as TuneforgeLora

        lora = TuneforgeLora()  # tuneforge's defaults; target_modules None = PEFT's default for the family
        model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                 target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    step_end: dict[int, float] = {}

    class StepTimes(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            step_end[state.global_step] = time.perf_counter() - self.start

    args = TrainingArguments(output_dir="/tmp/tuneforge-bench-trainer-clm", per_device_train_batch_size=batch,
                             learning_rate=LR[method], max_steps=total, warmup_steps=_warmup_lr_steps(total),
                             weight_decay=WEIGHT_DECAY, lr_scheduler_type="linear", max_grad_norm=1.0,
                             save_strategy="no", eval_strategy="no", report_to=[], logging_steps=1, seed=SEED,
                             use_cpu=not torch.cuda.is_available(), disable_tqdm=True, bf16=precision == "bf16",
                             gradient_checkpointing=checkpointing,
                             gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None)
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[StepTimes()])
    output = trainer.train()
    losses = {r["step"]: r["loss"] for r in trainer.state.log_history if "loss" in r}
    return {"steps": trainer.state.global_step, "window_seconds": _window(step_end, warmup, total),
            "reported_seconds": output.metrics["train_runtime"],
            "loss": sum(losses[s] for s in range(warmup + 1, total + 1)) / steps,
            "base_parameters": base, "trainable_parameters": trainable, "train_blocks": len(train),
            "peak_rss_mb": _peak_rss_mb()}


# --------------------------------------------------------------------------- measurements in the parent


def matmul_peak_gflops(size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained fp32 ``torch.mm`` throughput over ~``seconds`` (after one warm-up product)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    iterations, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        torch.mm(a, b)
        iterations += 1
    return 2 * size**3 * iterations / elapsed / 1e9


def training_flops_per_token(method: str, parameters: int, layers: int, hidden: int, block: int) -> float:
    """6N (full) or 4N (LoRA: no weight gradients for frozen weights) plus attention, per trained token."""
    dense = (6 if method == "full" else 4) * parameters
    return dense + 12 * layers * hidden * block


def _model_shape(model: str) -> tuple[int, int]:
    from transformers import AutoConfig

    from tuneforge.assets import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model))
    return config.num_hidden_layers, config.hidden_size


def _arm(name: str, args: argparse.Namespace) -> dict:
    return run_worker(__file__, "--worker", name, "--model", args.model, "--steps", str(args.steps),
                      "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                      "--block-size", str(args.block_size), "--precision", args.precision,
                      *(["--gradient-checkpointing"] if args.gradient_checkpointing else []), label=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="a causal LM (`tuneforge list models`)")
    parser.add_argument("--steps", type=int, default=8, help="timed optimizer steps per arm")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=128, help="tokens per packed block (data.max_length)")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds of all arms (order reversed every other round); each arm's fastest is shown")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="both sides: bf16 autocast (tuneforge train.precision, Trainer bf16=True)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="both sides: recompute activations in the backward pass (less memory)")
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        library, method = args.worker.split("-")
        arm = run_tuneforge if library == "tuneforge" else run_trainer
        print(json.dumps(arm(args.model, method, args.steps, args.warmup, args.batch_size, args.block_size,
                             args.precision, args.gradient_checkpointing)))
        return

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"--arms: unknown {', '.join(unknown)} (choose from {', '.join(ARMS)})")
    if min(args.steps, args.repeats, args.batch_size, args.block_size) < 1 or args.warmup < 0:
        parser.error("--steps, --repeats, --batch-size and --block-size must be >= 1, --warmup >= 0")
    peak_before = matmul_peak_gflops()
    rounds: dict[str, list[dict]] = {name: [] for name in arms}
    for round_index in range(args.repeats):  # alternate the order so a drifting background load evens out
        for name in arms if round_index % 2 == 0 else arms[::-1]:
            rounds[name].append(_arm(name, args))
    peak_after = matmul_peak_gflops()
    results = {name: min(runs, key=lambda r: r["window_seconds"]) for name, runs in rounds.items()}
    peak = max(peak_before, peak_after)
    layers, hidden = _model_shape(args.model)
    tokens = args.steps * args.batch_size * args.block_size

    blocks = next(iter(results.values()))["train_blocks"]
    memory = ", gradient checkpointing" if args.gradient_checkpointing else ""
    print(f"causal LM training, {args.model} {args.precision}{memory} on shakespeare "
          f"({blocks:,} packed training blocks): "
          f"{args.steps} timed steps after {args.warmup} warmup, batch {args.batch_size} x block "
          f"{args.block_size} ({tokens:,} tokens timed per arm)")
    print(f"matrix-product peak measured now: {peak:.1f} GFLOP/s (fp32 2048x2048 mm; {peak_before:.1f} before "
          f"the arms, {peak_after:.1f} after)")
    print(f"{'':16}{'tokens/s':>9}{'timed s':>9}{'whole s':>9}{'GFLOP/s':>9}{'of peak':>9}{'RSS MB':>8}"
          f"{'trainable':>12}{'loss':>8}")
    for name, r in results.items():
        method = name.split("-")[1]
        r["tokens_per_second"] = tokens / r["window_seconds"]
        gflops = training_flops_per_token(method, r["base_parameters"], layers, hidden, args.block_size) \
            * r["tokens_per_second"] / 1e9
        print(f"{name:16}{r['tokens_per_second']:9.1f}{r['window_seconds']:9.1f}{r['reported_seconds']:9.1f}"
              f"{gflops:9.1f}{gflops / peak:9.0%}{r['peak_rss_mb']:8.0f}{r['trainable_parameters']:12,}"
              f"{r['loss']:8.3f}")
    if args.repeats > 1:
        print("timed s of every round: " + "; ".join(
            f"{name} " + ", ".join(f"{r['window_seconds']:.1f}" for r in runs) for name, runs in rounds.items()))
    print("(timed s: the timed steps only; whole s: train_seconds / train_runtime as each library reports it; "
          "loss: mean training loss over the timed steps; GFLOP/s: 6N per token full, 4N LoRA, + attention)")

    for method in ("full", "lora"):
        ours, theirs = results.get(f"tuneforge-{method}"), results.get(f"trainer-{method}")
        if ours and theirs:
            ratio = ours["tokens_per_second"] / theirs["tokens_per_second"]
            print(f"{method:4} speed ratio tuneforge / Trainer: {ratio:.2f}x (goal >= 1.2x)")
    for library in ("tuneforge", "trainer"):
        full, lora = results.get(f"{library}-full"), results.get(f"{library}-lora")
        if full and lora:
            share = lora["peak_rss_mb"] / full["peak_rss_mb"]
            goal = " (goal <= 60%)" if library == "tuneforge" else ""
            print(f"{library:9} peak RSS LoRA / full: {lora['peak_rss_mb']:.0f} / {full['peak_rss_mb']:.0f} MB "
                  f"= {share:.0%}{goal}")


if __name__ == "__main__":
    main()
