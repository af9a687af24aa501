"""Chinese NER baseline: a character BiLSTM-CRF trained from scratch on msra-ner, no pretrained weights.

The "what pretraining buys" row of the named-entity docs: the model every Chinese NER paper before BERT
reported (Lample et al., 2016; Huang et al., 2015), here character embeddings (128) -> BiLSTM (256 per
direction) -> tuneforge's CRF with BIO-constrained decoding, trained with Adam on the same seeded split that
``tuneforge train`` carves from msra-ner (``data.split`` 0.8/0.1/0.1, seed 42). The vocabulary is the characters
seen at least twice in the training sentences used; all others share one unknown id.

Printed: training sentences/s, entity micro F1 (strict IOB2, seqeval, on the whole test split) at each epoch end
and at the budget, and a last line of JSON. The budget counts training only; each test evaluation is timed
apart. No model selection is done on the test F1: the curve is there to read, the figure is the one at budget.

    python bench/ner_bilstm_crf.py                                     # 60 minutes on the whole training split
    python bench/ner_bilstm_crf.py --minutes 10 --train-sentences 2000  # one point of a learning curve
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tuneforge.config import config_from_dict
from tuneforge.data.tagging import entity_tags, load_tagged_splits
from tuneforge.tasks.token_classification.crf import CRF, allowed_transitions
from tuneforge.tasks.token_classification.scoring import entity_scores

PAD, UNKNOWN = 0, 1
SEED, SPLIT = 42, [0.8, 0.1, 0.1]


class BiLstmCrf(nn.Module):
    """Character embeddings -> one BiLSTM layer -> a linear layer to tag scores -> CRF."""

    def __init__(self, vocabulary: int, tags: list[str], embedding: int = 128, hidden: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, embedding, padding_idx=PAD)
        self.lstm = nn.LSTM(embedding, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden, len(tags))
        self.crf = CRF(len(tags), allowed=allowed_transitions(tags))

    def emissions(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Packed, so the backward direction starts at each sentence's last character, not at the padding.
        packed = pack_padded_sequence(self.dropout(self.embed(ids)), lengths, batch_first=True, enforce_sorted=False)
        hidden, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=ids.shape[1])
        return self.out(self.dropout(hidden))  # (B, T, K)


def _load(train_cap: int | None) -> tuple[list, list]:
    config = config_from_dict({"task": "token_classification", "seed": SEED,
                               "data": {"dataset": "msra-ner", "split": SPLIT}})
    splits = load_tagged_splits(config.data, config.seed)
    train = splits.train
    if train_cap is not None and train_cap < len(train):
        train = random.Random(SEED).sample(train, train_cap)
    return train, splits.test


def _encode(examples: list, vocabulary: dict[str, int], tag_ids: dict[str, int]) -> list[tuple[list[int], list[int]]]:
    """(unit ids, tag ids) per sentence; a unit is a word of ``TaggedText.words``: one character in msra-ner."""
    return [([vocabulary.get(e.text[s:t], UNKNOWN) for s, t in e.words], [tag_ids[tag] for tag in entity_tags(e)])
            for e in examples]


def _batches(encoded: list, size: int, rng: random.Random) -> list[list]:
    """Shuffled batches of sentences of similar length (little padding), in shuffled order."""
    order = sorted(rng.sample(range(len(encoded)), len(encoded)), key=lambda i: len(encoded[i][0]) + rng.random())
    batches = [[encoded[i] for i in order[start:start + size]] for start in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def _tensors(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(ids) for ids, _ in batch])
    ids = torch.full((len(batch), int(lengths.max())), PAD, dtype=torch.long)
    tags = torch.zeros_like(ids)
    for row, (unit_ids, tag_ids) in enumerate(batch):
        ids[row, : len(unit_ids)] = torch.tensor(unit_ids)
        tags[row, : len(tag_ids)] = torch.tensor(tag_ids)
    return ids, tags, torch.arange(ids.shape[1]) < lengths.unsqueeze(1), lengths


@torch.no_grad()
def _evaluate(model: BiLstmCrf, encoded: list, tags: list[str]) -> dict:
    model.eval()
    gold, predicted = [], []
    for start in range(0, len(encoded), 256):
        batch = encoded[start:start + 256]
        ids, _, mask, lengths = _tensors(batch)
        predicted += [[tags[i] for i in path] for path in model.crf.decode(model.emissions(ids, lengths), mask)]
        gold += [[tags[i] for i in tag_ids] for _, tag_ids in batch]
    model.train()
    return entity_scores(gold, predicted)


def _train(model: BiLstmCrf, train: list, test: list, tags: list[str], args: argparse.Namespace) -> dict:
    """Epochs until the budget is spent; test F1 at each epoch end and at the budget."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng, budget = random.Random(SEED), args.minutes * 60
    trained, sentences, epoch, curve, eval_seconds = 0.0, 0, 0, [], 0.0
    while trained < budget:
        epoch += 1
        for batch in _batches(train, args.batch_size, rng):
            started = time.perf_counter()
            ids, tag_ids, mask, lengths = _tensors(batch)
            loss = model.crf.neg_log_likelihood(model.emissions(ids, lengths), tag_ids, mask)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            trained += time.perf_counter() - started
            sentences += len(batch)
            if trained >= budget:
                break
        started = time.perf_counter()
        scores = _evaluate(model, test, tags)
        eval_seconds += time.perf_counter() - started
        complete = trained < budget or sentences % len(train) == 0
        point = {"epoch": round(sentences / len(train), 3), "train_seconds": round(trained, 1),
                 "f1": round(scores["f1"], 4)}
        curve.append(point)
        print(f"{'epoch ' + str(epoch) + ' end' if complete else 'budget spent':>14}: {point['epoch']:.2f} epochs, "
              f"{trained:.0f} s training, {sentences / trained:.1f} sentences/s, test F1 {scores['f1']:.4f} "
              f"(P {scores['precision']:.4f}, R {scores['recall']:.4f}; "
              f"evaluated in {time.perf_counter() - started:.0f} s)", flush=True)
    return {"scores": scores, "curve": curve, "train_seconds": trained, "sentences": sentences,
            "eval_seconds": eval_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="training time budget (evaluation not counted)")
    parser.add_argument("--train-sentences", type=int, default=None, help="a seeded sample of the training split")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.manual_seed(SEED)

    train_examples, test_examples = _load(args.train_sentences)
    counts = Counter(e.text[s:t] for e in train_examples for s, t in e.words)
    # Characters seen once share the unknown id, so that id is trained on and means something at test time.
    kept = sorted(unit for unit, count in counts.items() if count >= 2)
    vocabulary = {unit: index for index, unit in enumerate(kept, start=2)}  # 0 padding, 1 unknown
    types = sorted({entity.type for e in train_examples for entity in e.entities})
    tags = ["O"] + [f"{prefix}-{kind}" for kind in types for prefix in ("B", "I")]
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    train, test = _encode(train_examples, vocabulary, tag_ids), _encode(test_examples, vocabulary, tag_ids)
    model = BiLstmCrf(len(vocabulary) + 2, tags)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"msra-ner: {len(train):,} training sentences, {len(test):,} test; {len(vocabulary):,} characters, "
          f"tags {' '.join(tags)}; {parameters:,} parameters; {torch.get_num_threads()} threads; "
          f"budget {args.minutes:g} min", flush=True)

    result = _train(model, train, test, tags, args)
    scores = result["scores"]
    print(json.dumps({
        "model": "char BiLSTM-CRF from scratch (emb 128, BiLSTM 2x256)", "dataset": "msra-ner", "seed": SEED,
        "train_sentences": len(train), "test_sentences": len(test), "minutes": args.minutes,
        "parameters": parameters, "threads": torch.get_num_threads(),
        "train_seconds": round(result["train_seconds"], 1), "eval_seconds": round(result["eval_seconds"], 1),
        "epochs": result["curve"][-1]["epoch"],
        "sentences_per_second": round(result["sentences"] / result["train_seconds"], 1),
        "f1": round(scores["f1"], 4), "precision": round(scores["precision"], 4), "recall": round(scores["recall"], 4),
        "per_type_f1": {name: round(row["f1"], 4) for name, row in scores["per_type"].items()},
        "curve": result["curve"],
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
