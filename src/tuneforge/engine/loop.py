"""The training loop, shared by every task: Accelerate underneath, the task's loss and evaluation on top.

A task hands over a model, a training DataLoader, a ``loss_fn(model, batch)`` and an
``evaluate(model) -> metrics`` callable; the loop owns optimisation, gradient accumulation and
clipping, periodic evaluation, early stopping, best-weights selection, logging and the progress bar.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from tuneforge.config import Config
from tuneforge.engine.optim import build_optimizer, build_scheduler

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


def higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in ("loss", "perplexity", "error"))


def steps_per_epoch(batches_per_epoch: int, grad_accum: int) -> int:
    """Optimizer steps in one epoch: Accelerate also steps on a short last accumulation window."""
    return math.ceil(batches_per_epoch / grad_accum)


def total_steps(config: Config, per_epoch: int) -> int:
    if config.train.max_steps is not None:
        return config.train.max_steps
    return max(1, math.ceil(config.train.epochs * per_epoch))


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    loss_fn: LossFn,
    evaluate: EvaluateFn,
    config: Config,
    accelerator: Accelerator,
    head_prefixes: tuple[str, ...] = (),
) -> FitResult:
    """Train ``model`` in place; on return it holds the best weights seen on validation."""
    train = config.train
    per_epoch = steps_per_epoch(len(train_loader), train.grad_accum)
    steps = total_steps(config, per_epoch)
    optimizer = build_optimizer(model, train, head_prefixes)
    scheduler = build_scheduler(optimizer, train, steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)
    tracker = _Tracker(config, accelerator, higher_is_better(config.eval.metric))
    eval_every = per_epoch if config.eval.every == "epoch" else config.eval.every

    bar = tqdm(total=steps, desc="training", unit="step", disable=not config.output.progress, dynamic_ncols=True)
    start, samples, step, epoch, eval_seconds = time.perf_counter(), 0, 0, 0, 0.0
    while step < steps and not tracker.should_stop:
        train_loader.set_epoch(epoch)  # Accelerate passes it on: each epoch gets its own seeded order
        model.train()
        for batch_index, batch in enumerate(train_loader):
            with accelerator.accumulate(model):
                loss = loss_fn(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and train.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), train.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            samples += batch["input_ids"].shape[0]
            tracker.add_loss(loss.detach())
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            fraction = epoch + (batch_index + 1) / len(train_loader)
            if step % train.log_every == 0 or step == steps:
                speed = samples / (_since(start) - eval_seconds)
                record = tracker.log_train(step, fraction, scheduler.get_last_lr()[0], speed)
                bar.set_postfix(loss=f"{record['train_loss']:.4f}", lr=f"{record['lr']:.2e}",
                                samples_s=f"{record['samples_per_second']:.1f}")
            if step % eval_every == 0 or step == steps:
                eval_start = time.perf_counter()
                tracker.log_eval(step, fraction, evaluate(model), model)
                eval_seconds += _since(eval_start)
                tqdm.write(_eval_line(tracker.history[-1], config.eval.metric), file=sys.stderr)
                model.train()
            if step >= steps or tracker.should_stop:
                break
        epoch += 1
    bar.close()
    seconds = _since(start) - eval_seconds
    tracker.restore_best(model)
    accelerator.end_training()
    return FitResult(tracker.history, step, tracker.best_step, tracker.best_metric, tracker.should_stop,
                     seconds, eval_seconds, samples / seconds)


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

    def restore_best(self, model: nn.Module) -> None:
        if self.best_state is not None:
            self.accelerator.unwrap_model(model).load_state_dict(self.best_state, strict=False)

    def _record(self, record: dict) -> None:
        self.history.append(record)
        scalars = {k: v for k, v in record.items() if k not in ("step", "epoch") and isinstance(v, int | float)}
        self.accelerator.log(scalars, step=record["step"])


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of what training changes: only trainable tensors (small for probes and adapters)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k in trainable}
