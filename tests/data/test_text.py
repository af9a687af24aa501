"""Batching: every example exactly once per epoch, seeded order, and far less padding."""

import random

import torch

from tuneforge.data.text import PadCollator, SeededBatches, encode_targets


def lengths(n: int = 1000) -> list[int]:
    rng = random.Random(0)
    return [rng.randint(3, 64) for _ in range(n)]


def padded_tokens(batches, lens) -> int:
    return sum(max(lens[i] for i in batch) * len(batch) for batch in batches)


def test_each_example_once_per_epoch():
    lens = lengths()
    batches = list(SeededBatches(lens, 32, seed=1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lens)))
    assert len(batches) == len(SeededBatches(lens, 32, seed=1))


def test_order_depends_only_on_seed_and_epoch():
    lens = lengths()
    a, b = SeededBatches(lens, 32, seed=1), SeededBatches(lens, 32, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)


def test_length_grouping_cuts_padding():
    lens = lengths()
    grouped = padded_tokens(SeededBatches(lens, 32, seed=1), lens)
    shuffled = padded_tokens(SeededBatches(lens, 32, seed=1, mode="random"), lens)
    assert grouped < 0.7 * shuffled


def test_collator_pads_to_longest_in_batch():
    batch = PadCollator(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "index": 0, "labels": torch.tensor(1)}, {"input_ids": [8], "index": 1,
                                                                            "labels": torch.tensor(0)}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_encode_targets():
    assert encode_targets(["b", "a"], ["a", "b"], multi_label=False).tolist() == [1, 0]
    multi = encode_targets([["a", "c"], ["b"]], ["a", "b", "c"], multi_label=True)
    assert multi.tolist() == [[1, 0, 1], [0, 1, 0]]


def test_sorted_mode_for_evaluation_is_fixed_and_sorted():
    lens = lengths(100)
    batches = list(SeededBatches(lens, 10, mode="sorted"))
    flat = [i for b in batches for i in b]
    assert [lens[i] for i in flat] == sorted(lens)
