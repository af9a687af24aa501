"""The shared loop on its own: epochs see every example in a new order, and the loop restores the best."""

import torch
from torch import nn
from torch.utils.data import DataLoader

from tuneforge.config import config_from_dict
from tuneforge.data.text import PadCollator, SeededBatches, TokenizedTexts
from tuneforge.engine.loop import fit
from tuneforge.engine.setup import make_accelerator


class Scorer(nn.Module):
    """One weight; the 'model' only needs to produce a differentiable loss."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(1.0))


def loader(n: int = 40) -> DataLoader:
    dataset = TokenizedTexts([[1] * (1 + i % 7) for i in range(n)], torch.zeros(n, dtype=torch.long))
    return DataLoader(dataset, batch_sampler=SeededBatches(dataset.lengths(), 8, seed=3),
                      collate_fn=PadCollator(0))


def config(**train):
    return config_from_dict({"train": {"epochs": 3, "log_every": 1, "warmup_ratio": 0.0, **train},
                             "eval": {"metric": "score"}, "output": {"progress": False, "tensorboard": False}})


def test_each_epoch_sees_every_example_in_a_new_order():
    seen: list[list[int]] = []

    def loss_fn(model, batch):
        seen.append(batch["index"].tolist())
        return (model.weight**2).sum()

    cfg = config()
    fit(Scorer(), loader(), loss_fn, lambda model: {"score": 0.0}, cfg, make_accelerator(cfg, None))
    epochs = [sum(seen[i * 5 : (i + 1) * 5], []) for i in range(3)]  # 40 rows / batch 8 = 5 batches
    assert all(sorted(epoch) == list(range(40)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]


def test_best_weights_restored():
    # the score is highest at the first evaluation; training then moves the weight away from it
    cfg = config(lr=0.5)
    model = Scorer()

    def evaluate(model):
        return {"score": -abs(model.weight.item() - 0.8)}

    result = fit(model, loader(), lambda m, b: -m.weight.sum(), evaluate, cfg, make_accelerator(cfg, None))
    assert result.best_step == 5
    assert -abs(model.weight.item() - 0.8) == result.best_metric


def test_nonfinite_batch_skipped_and_counted_or_stops_naming_rows():
    import pytest

    from tuneforge.engine.loop import NonFiniteLoss

    def poisoned(model, batch):  # one row (index 7) gives a NaN loss, as a corrupt example would
        loss = (model.weight**2).sum()
        return loss * float("nan") if 7 in batch["index"].tolist() else loss

    cfg = config_from_dict({"train": {"epochs": 2, "on_nonfinite": "skip_batch", "warmup_ratio": 0.0},
                            "eval": {"metric": "score"}, "output": {"progress": False, "tensorboard": False}})
    model = Scorer()
    result = fit(model, loader(), poisoned, lambda m: {"score": 0.0}, cfg, make_accelerator(cfg, None))
    # the step budget counts applied updates: skipped batches are made up from the next epoch
    assert result.nonfinite_skipped >= 2 and result.steps == 10
    assert torch.isfinite(model.weight).all()

    cfg = config(epochs=1)
    rows = lambda indices: [f"data.csv:{i + 2}" for i in indices]  # noqa: E731
    with pytest.raises(NonFiniteLoss, match=r"at step \d+, batch rows: .*data.csv:9"):
        fit(Scorer(), loader(), poisoned, lambda m: {"score": 0.0}, cfg, make_accelerator(cfg, None), row_ids=rows)


def test_out_of_memory_names_the_settings_to_change():
    import pytest

    from tuneforge.engine.loop import OutOfMemory

    def too_big(model, batch):  # the allocator refusing, exactly as torch reports it on a GPU
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    cfg = config(epochs=1)
    with pytest.raises(OutOfMemory, match=r"train.batch_size=16 train.grad_accum=2.*max_length.*lora"):
        fit(Scorer(), loader(), too_big, lambda m: {"score": 0.0}, cfg, make_accelerator(cfg, None))


def test_checkpoint_write_failure_names_path_and_keeps_previous(tmp_path):
    import pytest

    from tuneforge.engine.checkpoint import find_checkpoints, save_checkpoint
    from tuneforge.errors import RunError

    weights = {"w": torch.ones(3)}
    first = save_checkpoint(tmp_path, weights, {}, {}, {"step": 1})
    blocker = tmp_path / "step-00000002"
    blocker.write_text("a file where the new checkpoint folder must go")  # the rename target is unusable
    with pytest.raises(RunError, match="step-00000002"):
        save_checkpoint(tmp_path, weights, {}, {}, {"step": 2})
    assert [c.path for c in find_checkpoints(tmp_path)] == [first]
    assert not list(tmp_path.glob(".partial-*"))
