"""The training loop, shared by every task: Accelerate underneath, the task's loss and evaluation on top.

A task hands over a model, a training DataLoader, a ``loss_fn(model, batch)`` and an
``evaluate(model) -> metrics`` callable; the loop owns optimisation, gradient accumulation and
clipping, periodic evaluation, early stopping, best-weights selection, logging and the progress bar.
Training techniques join through extensions (``tuneforge.extensions``), which the loop knows only by their events.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tuneforge.config import Config
from tuneforge.engine.checkpoint import (
    Checkpoint,
    find_checkpoints,
    load_checkpoint,
    load_extension_states,
    prune,
    save_checkpoint,
)
from tuneforge.engine.optim import build_optimizer, build_scheduler
from tuneforge.errors import RunError, TuneforgeError
from tuneforge.extensions import Extension, Extensions, FitState, LossFn, TaskContext
from tuneforge.methods import method_extensions

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


def fit(model: nn.Module, train_loader: DataLoader, loss_fn: LossFn, evaluate: EvaluateFn, config: Config,
        accelerator: Accelerator, head_prefixes: tuple[str, ...] = (), run_dir: Path | None = None,
        resume: Checkpoint | None = None, row_ids: Callable[[list[int]], list[str]] | None = None,
        head_lr: float | None = None, extensions: Sequence[Extension] = (),
        context: TaskContext | None = None) -> FitResult:
    """Train ``model`` in place; on return it holds the best weights seen on validation.

    With ``run_dir``, checkpoints go to ``run_dir/checkpoints`` at each evaluation (and every
    ``train.checkpoint.every`` steps); ``resume`` continues from one exactly where it left off.
    ``extensions`` (after the method's own, e.g. AdaLoRA's rank allocator) act on the training events with
    ``context``, what the recipe knows about its task (``tuneforge.extensions``).
    """
    train = config.train
    per_epoch = steps_per_epoch(len(train_loader), train.grad_accum)
    steps = total_steps(config, per_epoch)
    optimizer = build_optimizer(model, train, head_prefixes, head_lr)
    scheduler = build_scheduler(optimizer, train, steps)
    batches = train_loader.batch_sampler  # ours; under DDP Accelerate wraps it and won't forward set_epoch
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    hooks = Extensions([*method_extensions(accelerator.unwrap_model(model)), *extensions])
    state = FitState(model, optimizer, scheduler, train_loader, config, accelerator, loss_fn, steps, run_dir, context)
    hooks.fit_start(state)
    run = _Run(state, hooks, row_ids)
    if resume is not None:
        run.restore(resume, len(train_loader))
    eval_every = per_epoch if config.eval.every == "epoch" else config.eval.every

    bar = tqdm(total=steps, initial=state.step, desc="training", unit="step", disable=not config.output.progress,
               dynamic_ncols=True)
    with _StopOnInterrupt() as interrupt:
        while state.step < steps and not run.tracker.should_stop:
            # Each epoch gets its own seeded order. Accelerate's loader hands its own epoch counter to our
            # sampler when iteration starts (single process), so it is set too: a run resumed in a later
            # epoch would otherwise replay epoch 0's order. Resuming mid-epoch, the sampler leaves out the
            # batches already trained on (never loaded) and the numbering below continues after them.
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(state.epoch)
            batches.set_epoch(state.epoch)
            batches.skip_first(run.skip_batches)
            model.train()
            for batch_index, batch in enumerate(train_loader, start=run.skip_batches):
                if not run.train_batch(batch):  # inside an accumulation window, or skipped (non-finite)
                    continue
                bar.update(1)
                if run.step_done(batch_index, evaluate, eval_every, interrupt.requested, bar):
                    break
            state.epoch += 1
            run.skip_batches = 0
    bar.close()
    result = run.finish()
    hooks.fit_end(state, result)
    return result


class TrainingInterrupted(TuneforgeError):
    """Ctrl-C: the current step finished and a checkpoint was written."""

    exit_code = 130

    def __init__(self, step: int, run_dir: Path | None) -> None:
        where = f"; resume with: tuneforge train {run_dir}/config.yaml --resume {run_dir}" if run_dir else ""
        super().__init__(f"interrupted after step {step}, checkpoint written{where}")


class NonFiniteLoss(TuneforgeError):
    """A NaN or infinite loss/gradient with ``train.on_nonfinite: stop``."""


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
    """The mutable state of one training run around ``FitState``: counters, tracker, checkpoints."""

    def __init__(self, state: FitState, hooks: Extensions, row_ids: Callable[[list[int]], list[str]] | None) -> None:
        self.state, self.hooks = state, hooks
        self.config = state.config
        self.checkpoints = state.run_dir / "checkpoints" if state.run_dir is not None else None
        self.tracker = _Tracker(state.config, state.accelerator, higher_is_better(state.config.eval.metric))
        self.describe_rows = row_ids or (lambda indices: [str(i) for i in indices])
        self.skip_batches = self.samples = self.nonfinite_skipped = 0
        self.start = time.perf_counter()
        self.eval_seconds = 0.0

    def train_batch(self, batch: dict) -> bool:
        """Forward and backward of one batch, then the optimizer step when an accumulation window ends.

        True when an optimizer step was taken; a batch whose loss or gradient is not finite applies nothing.
        """
        s, hooks = self.state, self.hooks
        with s.accelerator.accumulate(s.model), _explain_out_of_memory(batch, s.config):
            batch = hooks.transform_batch(s, batch)
            loss = hooks.loss_terms(s, batch, s.loss_fn(s.model, batch))
            finite = self._backward_if_finite(loss, batch)
            if finite:
                s.optimizer.step()
                s.scheduler.step()
                if s.accelerator.sync_gradients:
                    hooks.after_optimizer_step(s)  # AdaLoRA: importance from this step's gradients
            s.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self.nonfinite(self.describe_rows(batch["index"].tolist()))
            return False
        self.samples += len(batch["index"])
        self.tracker.add_loss(loss.detach())
        return s.accelerator.sync_gradients

    def _backward_if_finite(self, loss: torch.Tensor, batch: dict) -> bool:
        """Backward and clip; False (nothing applied) when the loss or the gradient norm is not finite."""
        if not torch.isfinite(loss):
            return False
        accelerator = self.state.accelerator
        accelerator.backward(loss)
        self.hooks.after_backward(self.state, batch)
        if not accelerator.sync_gradients:
            return True
        limit = self.config.train.max_grad_norm if self.config.train.max_grad_norm is not None else float("inf")
        norm = accelerator.clip_grad_norm_(self.state.model.parameters(), limit)
        return bool(torch.isfinite(norm))

    def step_done(self, batch_index: int, evaluate: EvaluateFn, eval_every: int, interrupted: bool,
                  bar: tqdm) -> bool:
        """Log, evaluate and checkpoint after an optimizer step, as due; True when training is over."""
        s = self.state
        s.step += 1
        fraction = s.epoch + (batch_index + 1) / len(s.train_loader)
        self.log_train(fraction, bar)
        evaluated = s.step % eval_every == 0 or s.step == s.total_steps
        if evaluated:
            self.evaluate(evaluate, fraction)
            s.model.train()
        every = self.config.train.checkpoint.every
        if evaluated or (every and s.step % every == 0) or interrupted:
            self.checkpoint(batch_index + 1)
        if interrupted:
            raise TrainingInterrupted(s.step, s.run_dir)
        return s.step >= s.total_steps or self.tracker.should_stop

    def speed(self) -> float:
        return self.samples / max(_since(self.start) - self.eval_seconds, 1e-9)

    def log_train(self, fraction: float, bar: tqdm) -> None:
        step = self.state.step
        if step % self.config.train.log_every == 0 or step == self.state.total_steps:
            record = self.tracker.log_train(step, fraction, self.state.scheduler.get_last_lr()[0], self.speed())
            bar.set_postfix(loss=f"{record['train_loss']:.4f}", lr=f"{record['lr']:.2e}",
                            samples_s=f"{record['samples_per_second']:.1f}")
            if bar.disable:  # output.progress: false (a log file): a line per log_every steps instead
                tqdm.write(f"step {step}/{self.state.total_steps}  loss {record['train_loss']:.4f}  "
                           f"lr {record['lr']:.2e}  {record['samples_per_second']:.1f} samples/s", file=sys.stderr)

    def evaluate(self, evaluate: EvaluateFn, fraction: float) -> None:
        started = time.perf_counter()
        metrics = self.hooks.eval_metrics(self.state, evaluate(self.state.model))
        self.tracker.log_eval(self.state.step, fraction, metrics, self.state.model)
        self.eval_seconds += _since(started)
        tqdm.write(_eval_line(self.tracker.history[-1], self.config.eval.metric), file=sys.stderr)

    def nonfinite(self, rows: list[str]) -> None:
        if self.config.train.on_nonfinite == "skip_batch":
            self.nonfinite_skipped += 1
            return
        last = find_checkpoints(self.checkpoints) if self.checkpoints else []
        good = f"last good checkpoint: {last[0].path}" if last else "no checkpoint written yet"
        shown = ", ".join(rows[:10]) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
        raise NonFiniteLoss(f"non-finite loss or gradient at step {self.state.step + 1}, batch rows: {shown}; "
                            f"{good}. Lower train.lr, check these rows, or set train.on_nonfinite: skip_batch")

    def checkpoint(self, batches_done: int) -> None:
        s = self.state
        if self.checkpoints is None or not s.accelerator.is_main_process:
            return
        state = {
            "step": s.step, "epoch": s.epoch, "batches_done": batches_done, "samples": self.samples,
            "nonfinite_skipped": self.nonfinite_skipped, "config": self.config.to_dict(),
        } | self.tracker.state()
        weights = _trainable_state(s.unwrapped)
        save_checkpoint(self.checkpoints, weights, s.optimizer.state_dict(), s.scheduler.state_dict(), state,
                        self.hooks.state_dict())
        prune(self.checkpoints, self.config.train.checkpoint.keep_last, self.tracker.best_step)

    def restore(self, checkpoint: Checkpoint, batches_per_epoch: int) -> None:
        """Everything back as it was after ``checkpoint.step``: weights, optimizer, schedule, RNG, position,
        and the extensions' state."""
        self.tracker.load(checkpoint.state)
        best = self.tracker.best_step
        if best is not None and best != checkpoint.step:  # the best weights so far: their own checkpoint
            self.tracker.best_state = load_checkpoint(checkpoint.path.parent / f"step-{best:08d}")[0]
        weights, optimizer, scheduler = load_checkpoint(checkpoint.path)  # loaded last: its RNG state wins
        _load_trainable(self.state.unwrapped, weights)
        if best == checkpoint.step:
            self.tracker.best_state = {k: v.clone() for k, v in weights.items()}
        self.state.optimizer.load_state_dict(optimizer)
        self.state.scheduler.load_state_dict(scheduler)
        self.hooks.load_state_dict(load_extension_states(checkpoint.path), checkpoint.path)
        state = checkpoint.state
        self.state.step, self.samples = state["step"], state["samples"]
        self.nonfinite_skipped = state["nonfinite_skipped"]
        self.state.epoch, self.skip_batches = state["epoch"], state["batches_done"]
        if self.skip_batches >= batches_per_epoch:
            self.state.epoch, self.skip_batches = self.state.epoch + 1, 0
        print(f"resumed from {checkpoint.path} (step {self.state.step})", file=sys.stderr)

    def finish(self) -> FitResult:
        seconds = max(_since(self.start) - self.eval_seconds, 1e-9)
        self.tracker.restore_best(self.state.model)
        for tracker in self.state.accelerator.trackers:  # not end_training(): it also ends the process group,
            tracker.finish()  # which the final evaluation still gathers over
        t = self.tracker
        return FitResult(t.history, self.state.step, t.best_step, t.best_metric, t.should_stop, seconds,
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
