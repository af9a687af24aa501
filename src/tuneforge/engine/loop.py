"""The training loop, shared by every task: Accelerate underneath, the task's loss and evaluation on top.

A task hands over a model, a training DataLoader, a ``loss_fn(model, batch)`` and an
``evaluate(model) -> metrics`` callable; the loop owns optimisation, gradient accumulation and
clipping, periodic evaluation, early stopping, best-weights selection, logging and the progress bar.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tuneforge.config import Config
from tuneforge.engine.checkpoint import Checkpoint, find_checkpoints, load_checkpoint, prune, save_checkpoint
from tuneforge.engine.optim import build_optimizer, build_scheduler
from tuneforge.errors import RunError, TuneforgeError
from tuneforge.methods import step_hooks

LossFn = Callable[[nn.Module, dict], torch.Tensor]
EvaluateFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # train and eval records, in order
    steps: int = 0
    best_step: int | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    train_seconds: float = 0.0  # optimisation only: evaluation time is counted apart
    eval_seconds: float = 0.0
    samples_per_second: float = 0.0
    nonfinite_skipped: int = 0

    def summary(self) -> dict:
        """The figures a run's metrics.json and report show."""
        return {
            "steps": self.steps,
            "best_step": self.best_step,
            "best_validation_metric": self.best_metric,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self.train_seconds, 2),
            "eval_seconds": round(self.eval_seconds, 2),
            "train_samples_per_second": round(self.samples_per_second, 2),
            "nonfinite_batches_skipped": self.nonfinite_skipped,
        }


def higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in ("loss", "perplexity", "error"))


def steps_per_epoch(batches_per_epoch: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch: Accelerate also steps on a short last accumulation window."""
    return math.ceil(batches_per_epoch / grad_accum)


def total_steps(config: Config, per_epoch: int) -> int:
    if config.train.max_steps is not None:
        return config.train.max_steps
    return max(1, math.ceil(config.train.epochs * per_epoch))


def planned_steps(config: Config, train_loader: DataLoader) -> int:
    """The optimizer steps ``fit`` will take over ``train_loader`` (AdaLoRA's schedule needs it upfront)."""
    return total_steps(config, steps_per_epoch(len(train_loader), config.train.grad_accum))


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    loss_fn: LossFn,
    evaluate: EvaluateFn,
    config: Config,
    accelerator: Accelerator,
    head_prefixes: tuple[str, ...] = (),
    run_dir: Path | None = None,
    resume: Checkpoint | None = None,
    row_ids: Callable[[list[int]], list[str]] | None = None,
    head_lr: float | None = None,
) -> FitResult:
    """Train ``model`` in place; on return it holds the best weights seen on validation.

    With ``run_dir``, checkpoints go to ``run_dir/checkpoints`` at each evaluation (and every
    ``train.checkpoint.every`` steps); ``resume`` continues from one exactly where it left off.
    """
    train = config.train
    per_epoch = steps_per_epoch(len(train_loader), train.grad_accum)
    steps = total_steps(config, per_epoch)
    optimizer = build_optimizer(model, train, head_prefixes, head_lr)
    scheduler = build_scheduler(optimizer, train, steps)
    batches = train_loader.batch_sampler  # ours; under DDP Accelerate wraps it and won't forward set_epoch
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    hooks = step_hooks(accelerator.unwrap_model(model))
    if resume is not None and hooks.after_step is not None:
        raise RunError("an AdaLoRA run cannot be resumed: its rank allocator's state is not checkpointed; "
                       "start it again (or use lora, which resumes exactly)")
    run = _Run(model, optimizer, scheduler, accelerator, config, run_dir)
    if resume is not None:
        run.restore(resume, len(train_loader))
    eval_every = per_epoch if config.eval.every == "epoch" else config.eval.every
    describe_rows = row_ids or (lambda indices: [str(i) for i in indices])

    bar = tqdm(total=steps, initial=run.step, desc="training", unit="step", disable=not config.output.progress,
               dynamic_ncols=True)
    with _StopOnInterrupt() as interrupt:
        while run.step < steps and not run.tracker.should_stop:
            # Each epoch gets its own seeded order. Accelerate's loader hands its own epoch counter to our
            # sampler when iteration starts (single process), so it is set too: a run resumed in a later
            # epoch would otherwise replay epoch 0's order. Resuming mid-epoch, the sampler leaves out the
            # batches already trained on (never loaded) and the numbering below continues after them.
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(run.epoch)
            batches.set_epoch(run.epoch)
            batches.skip_first(run.skip_batches)
            model.train()
            for batch_index, batch in enumerate(train_loader, start=run.skip_batches):
                with accelerator.accumulate(model), _explain_out_of_memory(batch, config):
                    loss = loss_fn(model, batch)
                    if hooks.regularizer is not None:
                        loss = loss + hooks.regularizer()
                    finite = _backward_if_finite(loss, model, accelerator, train)
                    if finite:
                        optimizer.step()
                        scheduler.step()
                        if hooks.after_step is not None and accelerator.sync_gradients:
                            hooks.after_step(run.step)  # AdaLoRA: importance from this step's gradients
                    optimizer.zero_grad(set_to_none=True)
                if not finite:
                    run.nonfinite(describe_rows(batch["index"].tolist()))
                    continue
                run.samples += len(batch["index"])
                run.tracker.add_loss(loss.detach())
                if not accelerator.sync_gradients:
                    continue
                run.step += 1
                bar.update(1)
                fraction = run.epoch + (batch_index + 1) / len(train_loader)
                if run.step % train.log_every == 0 or run.step == steps:
                    record = run.tracker.log_train(run.step, fraction, scheduler.get_last_lr()[0], run.speed())
                    bar.set_postfix(loss=f"{record['train_loss']:.4f}", lr=f"{record['lr']:.2e}",
                                    samples_s=f"{record['samples_per_second']:.1f}")
                evaluated = run.step % eval_every == 0 or run.step == steps
                if evaluated:
                    run.evaluate(evaluate, fraction)
                    model.train()
                every = train.checkpoint.every
                if evaluated or (every and run.step % every == 0) or interrupt.requested:
                    run.checkpoint(batch_index + 1)
                if interrupt.requested:
                    raise TrainingInterrupted(run.step, run_dir)
                if run.step >= steps or run.tracker.should_stop:
                    break
            run.epoch += 1
            run.skip_batches = 0
    bar.close()
    return run.finish()


class TrainingInterrupted(TuneforgeError):
    """Ctrl-C: the current step finished and a checkpoint was written."""

    exit_code = 130

    def __init__(self, step: int, run_dir: Path | None) -> None:
        where = f"; resume with: tuneforge train {run_dir}/config.yaml --resume {run_dir}" if run_dir else ""
        super().__init__(f"interrupted after step {step}, checkpoint written{where}")


class NonFiniteLoss(TuneforgeError):
    """A NaN or infinite loss/gradient with ``train.on_nonfinite: stop``."""


def _backward_if_finite(loss: torch.Tensor, model: nn.Module, accelerator: Accelerator, train) -> bool:
    """Backward and clip; False (nothing applied) when the loss or the gradient norm is not finite."""
    if not torch.isfinite(loss):
        return False
    accelerator.backward(loss)
    if not accelerator.sync_gradients:
        return True
    limit = train.max_grad_norm if train.max_grad_norm is not None else float("inf")
    norm = accelerator.clip_grad_norm_(model.parameters(), limit)
    return bool(torch.isfinite(norm))


class OutOfMemory(TuneforgeError):
    """A step needed more memory than the device has."""


@contextlib.contextmanager
def _explain_out_of_memory(batch: dict, config: Config) -> Iterator[None]:
    """Turn an out-of-memory error into what to change, instead of a bare traceback."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as error:
        inputs = batch.get("input_ids", batch.get("pixel_values"))
        shape = tuple(inputs.shape) if inputs is not None else ()
        t = config.train
        smaller = (f"a lower image.size (now {config.image.size})" if "pixel_values" in batch
                   else f"a lower data.max_length (now {config.data.max_length})")
        raise OutOfMemory(
            f"out of memory in a training step (batch of shape {shape}): {str(error).splitlines()[0][:200]}\n"
            f"reduce memory with: train.batch_size={max(1, t.batch_size // 2)} "
            f"train.grad_accum={t.grad_accum * 2} (same effective batch), {smaller}, or method.name=lora"
        ) from None


class _StopOnInterrupt:
    """Turns the first Ctrl-C into a request honoured after the current step; a second one stops at once."""

    def __enter__(self) -> _StopOnInterrupt:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step and writing a checkpoint (Ctrl-C again to stop now)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _Run:
    """The mutable state of one training run: position, counters, tracker, checkpoints."""

    def __init__(self, model, optimizer, scheduler, accelerator: Accelerator, config: Config,
                 run_dir: Path | None) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.accelerator = accelerator
        self.config = config
        self.checkpoints = run_dir / "checkpoints" if run_dir is not None else None
        self.tracker = _Tracker(config, accelerator, higher_is_better(config.eval.metric))
        self.step = self.epoch = self.skip_batches = self.samples = self.nonfinite_skipped = 0
        self.start = time.perf_counter()
        self.eval_seconds = 0.0

    def speed(self) -> float:
        return self.samples / max(_since(self.start) - self.eval_seconds, 1e-9)

    def evaluate(self, evaluate: EvaluateFn, fraction: float) -> None:
        started = time.perf_counter()
        self.tracker.log_eval(self.step, fraction, evaluate(self.model), self.model)
        self.eval_seconds += _since(started)
        tqdm.write(_eval_line(self.tracker.history[-1], self.config.eval.metric), file=sys.stderr)

    def nonfinite(self, rows: list[str]) -> None:
        if self.config.train.on_nonfinite == "skip_batch":
            self.nonfinite_skipped += 1
            return
        last = find_checkpoints(self.checkpoints) if self.checkpoints else []
        good = f"last good checkpoint: {last[0].path}" if last else "no checkpoint written yet"
        shown = ", ".join(rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
        raise NonFiniteLoss(f"non-finite loss or gradient at step {self.step + 1}, batch rows: {shown}; {good}. "
                            "Lower train.lr, check these rows, or set train.on_nonfinite: skip_batch")

    def checkpoint(self, batches_done: int) -> None:
        if self.checkpoints is None or not self.accelerator.is_main_process:
            return
        state = {
            "step": self.step, "epoch": self.epoch, "batches_done": batches_done, "samples": self.samples,
            "nonfinite_skipped": self.nonfinite_skipped, "config": self.config.to_dict(),
        } | self.tracker.state()
        weights = _trainable_state(self.accelerator.unwrap_model(self.model))
        save_checkpoint(self.checkpoints, weights, self.optimizer.state_dict(), self.scheduler.state_dict(), state)
        prune(self.checkpoints, self.config.train.checkpoint.keep_last, self.tracker.best_step)

    def restore(self, checkpoint: Checkpoint, batches_per_epoch: int) -> None:
        """Everything back as it was after ``checkpoint.step``: weights, optimizer, schedule, RNG, position."""
        self.tracker.load(checkpoint.state)
        best = self.tracker.best_step
        if best is not None and best != checkpoint.step:  # the best weights so far: their own checkpoint
            self.tracker.best_state = load_checkpoint(checkpoint.path.parent / f"step-{best:08d}")[0]
        weights, optimizer, scheduler = load_checkpoint(checkpoint.path)  # loaded last: its RNG state wins
        _load_trainable(self.accelerator.unwrap_model(self.model), weights)
        if best == checkpoint.step:
            self.tracker.best_state = {k: v.clone() for k, v in weights.items()}
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(scheduler)
        state = checkpoint.state
        self.step, self.samples = state["step"], state["samples"]
        self.nonfinite_skipped = state["nonfinite_skipped"]
        self.epoch, self.skip_batches = state["epoch"], state["batches_done"]
        if self.skip_batches >= batches_per_epoch:
            self.epoch, self.skip_batches = self.epoch + 1, 0
        print(f"resumed from {checkpoint.path} (step {self.step})", file=sys.stderr)

    def finish(self) -> FitResult:
        seconds = max(_since(self.start) - self.eval_seconds, 1e-9)
        self.tracker.restore_best(self.model)
        for tracker in self.accelerator.trackers:  # not end_training(): it also ends the process group,
            tracker.finish()  # which the final evaluation still gathers over
        t = self.tracker
        return FitResult(t.history, self.step, t.best_step, t.best_metric, t.should_stop, seconds,
                         self.eval_seconds, self.samples / seconds, self.nonfinite_skipped)


def _load_trainable(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    missing = trainable - set(weights)
    result = model.load_state_dict(weights, strict=False)
    if missing or result.unexpected_keys:
        raise RunError(f"checkpoint does not fit this model (missing {sorted(missing)[:3]}, unexpected "
                       f"{result.unexpected_keys[:3]}): was the model or method changed?")


def _eval_line(record: dict, metric: str) -> str:
    shown = dict.fromkeys(["loss", "accuracy", "macro_f1", metric])
    values = "  ".join(f"{k} {record[f'eval_{k}']:.4f}" for k in shown if f"eval_{k}" in record)
    return f"step {record['step']} (epoch {record['epoch']:.2f})  validation: {values}"


def _since(start: float) -> float:
    return max(time.perf_counter() - start, 1e-9)


class _Tracker:
    """Losses, history, trackers (TensorBoard...), early stopping and the best weights."""

    def __init__(self, config: Config, accelerator: Accelerator, higher_better: bool) -> None:
        self.accelerator = accelerator
        self.metric = config.eval.metric
        self.patience = config.eval.early_stopping_patience
        self.higher_better = higher_better
        self.history: list[dict] = []
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_evals = 0
        self.should_stop = False
        self._losses: list[torch.Tensor] = []

    def add_loss(self, loss: torch.Tensor) -> None:
        self._losses.append(loss)

    def log_train(self, step: int, epoch: float, lr: float, samples_per_second: float) -> dict:
        loss = torch.stack(self._losses).float().mean().item() if self._losses else float("nan")
        self._losses = []
        record = {"step": step, "epoch": round(epoch, 4), "train_loss": loss, "lr": lr,
                  "samples_per_second": samples_per_second}
        self._record(record)
        return record

    def log_eval(self, step: int, epoch: float, metrics: dict[str, float], model: nn.Module) -> None:
        record = {"step": step, "epoch": round(epoch, 4)} | {f"eval_{k}": v for k, v in metrics.items()}
        self._record(record)
        value = metrics[self.metric]
        if self.best_metric is None or (value > self.best_metric if self.higher_better else value < self.best_metric):
            self.best_metric, self.best_step, self.bad_evals = value, step, 0
            self.best_state = _trainable_state(self.accelerator.unwrap_model(model))
        else:
            self.bad_evals += 1
            self.should_stop = self.patience is not None and self.bad_evals >= self.patience

    def state(self) -> dict:
        """What a checkpoint needs to continue exactly (history and early stopping included)."""
        return {"history": self.history, "best_metric": self.best_metric, "best_step": self.best_step,
                "bad_evals": self.bad_evals, "should_stop": self.should_stop,
                "pending_losses": [loss.item() for loss in self._losses]}

    def load(self, state: dict) -> None:
        self.history = state["history"]
        self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        self.bad_evals, self.should_stop = state["bad_evals"], state["should_stop"]
        self._losses = [torch.tensor(loss) for loss in state["pending_losses"]]

    def restore_best(self, model: nn.Module) -> None:
        if self.best_state is not None:
            self.accelerator.unwrap_model(model).load_state_dict(self.best_state, strict=False)

    def _record(self, record: dict) -> None:
        self.history.append(record)
        scalars = {k: v for k, v in record.items() if k not in ("step", "epoch") and isinstance(v, int | float)}
        self.accelerator.log(scalars, step=record["step"])


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what training changes: trainable tensors (small for probes and adapters) and buffers.

    Buffers are batch-norm running statistics: training moves them, and weights restored without the
    statistics they were trained with evaluate badly.
    """
    changing = {name for name, p in model.named_parameters() if p.requires_grad}
    changing |= {name for name, _ in model.named_buffers()}
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k in changing}
