"""``train.adversarial``: FGM and PGD on the input embeddings, for any model with an input-embedding layer.

The perturbation is added to the *output* of the embedding layer, not to its weights, so it works whether the
embeddings train or not (LoRA, adapters and top-k freeze them) and touches only the words in the batch. The clean
forward's embedding output keeps its gradient (one forward hook); after the clean backward:

- FGM (Miyato et al., 2017): ``delta = epsilon * ||e|| * g / ||g||`` per example, one more forward and backward;
- PGD (Madry et al., 2018): ``steps`` ascent steps of size ``alpha * ||e||`` projected onto the ball of radius
  ``epsilon * ||e||``, each a forward and a backward to the input only (no weight gradients), then the forward and
  backward that trains.

``||e||`` is the L2 norm of the example's own embeddings (all its tokens), so ``epsilon`` is a share of it and means
the same for MiniLM (token vectors of norm ~1) as for Gemma (scaled embeddings, norm ~25). On rt-sentences with
MiniLM + LoRA, a perturbation of ~2% was the useful size; ~6% already cost accuracy and ~25% stopped learning.

The adversarial loss (times ``weight``) adds its gradients to the clean ones before clipping and the step, so
gradient accumulation, clipping and non-finite checks see their sum. The perturbation uses no random numbers:
a resumed run continues exactly.
"""

from __future__ import annotations

import time

import torch

from tuneforge.errors import ConfigError
from tuneforge.extensions import Extension, FitState, TaskContext


class AdversarialTraining(Extension):
    """Train on each batch twice: as written, and with its embeddings pushed where the loss rises fastest."""

    name = "adversarial"

    def __init__(self, settings) -> None:
        self.settings = settings
        self.embeddings = None
        self.clean = None  # the clean forward's embedding output, holding its gradient after backward
        self.seconds = self.train_seconds = 0.0
        self.steps = 0

    @property
    def extra_passes(self) -> str:
        """Forward/backward passes each batch adds, as the report states them."""
        if self.settings.method == "fgm":
            return "1 forward + 1 backward"
        return f"{self.settings.steps} forwards + {self.settings.steps} backwards ({self.settings.steps - 1} to the " \
               "input only)"

    def fit_start(self, state: FitState) -> None:
        model = state.unwrapped
        embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        if not isinstance(embeddings, torch.nn.Module):
            raise ConfigError(f"train.adversarial: the {type(model).__name__} model has no input-embedding layer to "
                              "perturb (text models have one); set train.adversarial.method: null")
        if state.accelerator.num_processes > 1:
            raise ConfigError("train.adversarial: not supported with several processes yet (its extra backward "
                              "would synchronise gradients twice); train in one process")
        self.embeddings = embeddings

    def transform_batch(self, state: FitState, batch: dict) -> dict:
        handle = None

        def keep_output(module, inputs, output):
            handle.remove()  # the clean forward only
            if not output.requires_grad:  # frozen embeddings: a leaf that can hold a gradient
                output.requires_grad_(True)
            output.retain_grad()
            self.clean = output
            return output

        handle = self.embeddings.register_forward_hook(keep_output)
        return batch

    def after_backward(self, state: FitState, batch: dict) -> None:
        clean, self.clean = self.clean, None
        if clean is None or clean.grad is None:
            return
        started = time.perf_counter()
        gradient, size = clean.grad.detach(), _norms(clean.detach())
        if self.settings.method == "fgm":
            delta = _scaled(gradient, self.settings.epsilon * size)
        else:
            delta = self.pgd_delta(state, batch, gradient, size)
        loss = self.loss_with(state, batch, delta)
        if torch.isfinite(loss):  # a non-finite adversarial loss adds nothing; the clean step stays
            state.accelerator.backward(loss * self.settings.weight)
        self.seconds += time.perf_counter() - started

    def pgd_delta(self, state: FitState, batch: dict, gradient: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """``steps`` projected ascent steps from zero; the first uses the clean gradient."""
        s = self.settings
        alpha, radius = s.alpha * size, s.epsilon * size
        delta = _project(_scaled(gradient, alpha), radius)
        for _ in range(s.steps - 1):
            delta.requires_grad_(True)
            loss = self.loss_with(state, batch, delta)
            (step,) = torch.autograd.grad(loss, delta)  # the input's gradient only: no weight gradients accumulate
            delta = _project(delta.detach() + _scaled(step, alpha), radius)
        return delta.detach()

    def loss_with(self, state: FitState, batch: dict, delta: torch.Tensor) -> torch.Tensor:
        handle = self.embeddings.register_forward_hook(lambda module, inputs, output: output + delta)
        try:
            return state.loss_fn(state.model, batch)
        finally:
            handle.remove()

    def fit_end(self, state: FitState, result) -> None:
        self.train_seconds, self.steps = result.train_seconds, result.steps

    def report(self, context: TaskContext, model, evaluation: dict) -> tuple[dict, dict[str, str]]:
        s = self.settings
        share = self.seconds / self.train_seconds if self.train_seconds else 0.0
        per_step = self.train_seconds / max(self.steps, 1)
        plain = (self.train_seconds - self.seconds) / max(self.steps, 1)
        extras = {"adversarial": {"method": s.method, "epsilon": s.epsilon, "steps": s.steps if s.method == "pgd"
                                  else 1, "alpha": s.alpha, "weight": s.weight, "seconds": round(self.seconds, 2),
                                  "seconds_per_step": round(per_step, 4),
                                  "cost_vs_plain_step": round(per_step / plain, 2) if plain > 0 else None}}
        settings = f"epsilon {s.epsilon:g}" + (f", {s.steps} steps of {s.alpha:g}" if s.method == "pgd" else "")
        text = (f"{s.method.upper()} on the input embeddings ({settings}, weight {s.weight:g}): each batch adds "
                f"{self.extra_passes}. Cost: {per_step:.3f} s per optimizer step against {plain:.3f} s for its clean "
                f"part ({per_step / plain if plain > 0 else float('nan'):.2f}x); {self.seconds:.1f} s of "
                f"{self.train_seconds:.1f} s of training ({share:.0%}) went to the adversarial passes. "
                "`tuneforge eval RUN --data FILE --perturb typos,synonyms` shows what it bought.")
        return extras, {"Adversarial training": text}

    def state_dict(self) -> dict:
        return {"seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.seconds = state["seconds"]


def _norms(tensor: torch.Tensor) -> torch.Tensor:
    """L2 norm of each example's (tokens x hidden) block, shaped to broadcast back over it."""
    return tensor.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (tensor.dim() - 1)))


def _scaled(gradient: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """``gradient`` rescaled to L2 norm ``size`` (per example)."""
    return size * gradient / _norms(gradient)


def _project(delta: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """``delta`` pulled back into the ball of ``radius``, example by example."""
    return delta * (radius / _norms(delta)).clamp(max=1.0)
