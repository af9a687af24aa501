"""A training extension that acts on every event, each in a way that changes the trained weights, with state
that a resumed run needs. ``python -m tests.engine.every_hook CONFIG [--resume DIR] [--kill-after STEP]`` trains
with it (the kill/resume test runs it in a subprocess)."""

from __future__ import annotations

import argparse
import os
import signal
from collections import Counter

import torch

from tuneforge.data.text import TokenizedTexts
from tuneforge.extensions import Extension

REPLAYED = 8  # training rows added once more by ``train_data``


class EveryHook(Extension):
    """Augmentation with a private RNG, an anchor penalty scaled by a loss average, an extra adversarial
    forward/backward, a weight average that becomes the final model, an added metric and a report section."""

    name = "every-hook"

    def __init__(self, kill_after: int | None = None) -> None:
        self.kill_after = kill_after  # SIGKILL this process during that optimizer step (1-based)
        self.calls: Counter[str] = Counter()  # diagnostics for the tests, not training state
        self.seen_rows: set[int] = set()
        self.generator = torch.Generator().manual_seed(1234)
        self.loss_average = 0.0
        self.weight_average: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.mask_id = 0

    # ------------------------------------------------------------------ recipe-level events

    def recipe_start(self, context) -> None:
        self.calls["recipe_start"] += 1

    def build_model(self, make, context):
        self.calls["build_model"] += 1
        tokenizer, model = make()
        with torch.no_grad():
            model.classifier.bias.fill_(0.25)  # the fresh head starts where this extension says
        return tokenizer, model

    def train_data(self, dataset: TokenizedTexts, context) -> TokenizedTexts:
        self.calls["train_data"] += 1
        ids = dataset.input_ids + dataset.input_ids[:REPLAYED]
        return TokenizedTexts(ids, torch.cat([dataset.targets, dataset.targets[:REPLAYED]]))

    def report(self, context, model, evaluation) -> tuple[dict, dict[str, str]]:
        self.calls["report"] += 1
        return ({"every_hook": {"rows_seen": len(self.seen_rows), "loss_average": self.loss_average}},
                {"Every hook": f"{len(self.seen_rows)} training rows seen."})

    # ------------------------------------------------------------------ training events

    def fit_start(self, state) -> None:
        self.calls["fit_start"] += 1
        self.anchor = {n: p.detach().clone() for n, p in state.unwrapped.named_parameters() if p.requires_grad}
        self.weight_average = {n: p.clone() for n, p in self.anchor.items()}
        self.mask_id = state.context.tokenizer.mask_token_id

    def transform_batch(self, state, batch: dict) -> dict:
        self.calls["transform_batch"] += 1
        self.seen_rows.update(batch["index"].tolist())
        ids = batch["input_ids"].clone()
        masked = (torch.rand(ids.shape, generator=self.generator) < 0.15) & (batch["attention_mask"] == 1)
        ids[masked.to(ids.device)] = self.mask_id
        return {**batch, "input_ids": ids}

    def loss_terms(self, state, batch: dict, loss: torch.Tensor) -> torch.Tensor:
        self.calls["loss_terms"] += 1
        self.loss_average = 0.9 * self.loss_average + 0.1 * loss.item()
        drift = sum(((p - self.anchor[n]) ** 2).sum() for n, p in state.unwrapped.named_parameters()
                    if n in self.anchor)
        return loss + 1e-2 * (1.0 + self.loss_average) * drift

    def after_backward(self, state, batch: dict) -> None:
        self.calls["after_backward"] += 1
        embeddings = state.unwrapped.get_input_embeddings().weight
        step = 1e-2 * embeddings.grad / (embeddings.grad.norm() + 1e-12)  # FGM: along the gradient
        with torch.no_grad():
            embeddings.add_(step)
        state.accelerator.backward(state.loss_fn(state.model, batch))
        with torch.no_grad():
            embeddings.sub_(step)

    def after_optimizer_step(self, state) -> None:
        self.calls["after_optimizer_step"] += 1
        if self.kill_after is not None and state.step + 1 == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        with torch.no_grad():
            for name, p in state.unwrapped.named_parameters():
                if name in self.weight_average:
                    self.weight_average[name].mul_(0.8).add_(p, alpha=0.2)

    def eval_metrics(self, state, metrics: dict[str, float]) -> dict[str, float]:
        self.calls["eval_metrics"] += 1
        distance = sum(((p - self.weight_average[n]) ** 2).sum().item()
                       for n, p in state.unwrapped.named_parameters() if n in self.weight_average)
        return metrics | {"average_distance": distance}

    def fit_end(self, state, result) -> None:
        self.calls["fit_end"] += 1
        with torch.no_grad():  # the final model is the weight average
            for name, p in state.unwrapped.named_parameters():
                if name in self.weight_average:
                    p.copy_(self.weight_average[name])

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "loss_average": self.loss_average,
                "weight_average": dict(self.weight_average)}

    def load_state_dict(self, state: dict) -> None:
        self.calls["load_state_dict"] += 1
        self.generator.set_state(state["generator"])
        self.loss_average = state["loss_average"]
        for name, value in state["weight_average"].items():
            self.weight_average[name].copy_(value)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--resume")
    parser.add_argument("--kill-after", type=int)
    args = parser.parse_args()
    import tuneforge

    run = tuneforge.train(args.config, resume=args.resume, extensions=[EveryHook(args.kill_after)])
    print(f"run directory: {run.dir}")


if __name__ == "__main__":
    main()
