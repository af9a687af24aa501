"""A linear-chain CRF over word emissions: training loss (forward algorithm) and Viterbi decoding.

Vendored rather than taken from pytorch-crf 0.7.2 (the usual PyPI package). pytorch-crf does run on torch 2.13
with bool masks, but it has had no release since 2019 and cannot constrain decoding: forbidding the BIO
transitions that would decode to a broken entity (``O -> I-PER``) means editing the scores inside its Viterbi
loop. The whole CRF is this module, checked against a brute-force enumeration of every tag path in
``tests/tasks/test_ner_crf.py``.

Every sequence is a left-aligned prefix of its row (``mask`` is True for the first ``length`` positions and
False after): the tagger gathers one position per word before the CRF, so there are no holes to skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

# Added to a forbidden transition's score when decoding. Large enough that no emission outweighs it, finite so
# that a table allowing no path at all still decodes to something rather than NaN.
FORBIDDEN = -1e4


@dataclass(frozen=True)
class AllowedTransitions:
    """Which tag may start a sequence, follow another, and end one (bool tensors; True = allowed).

    Attributes:
        start: (K,) tags a sequence may begin with.
        pairs: (K, K) ``pairs[i, j]``: tag ``j`` may follow tag ``i``.
        end: (K,) tags a sequence may end with.
    """

    start: torch.Tensor
    pairs: torch.Tensor
    end: torch.Tensor


def allowed_transitions(tag_names: Sequence[str]) -> AllowedTransitions:
    """The transitions that keep a BIO (IOB2) tag sequence well formed.

    ``I-X`` may only follow ``B-X`` or ``I-X``: so never at the start, never after ``O``, never after a tag of
    another type. Every tag may end a sequence. The type is everything after the first ``-``, so ``B-WORK-OF-ART``
    has type ``WORK-OF-ART``.

    Args:
        tag_names: The tag of each id: ``"O"``, ``"B-X"`` or ``"I-X"``.

    Raises:
        ValueError: A tag that is not ``O``, ``B-...`` or ``I-...``.
    """
    parsed = [_bio(tag) for tag in tag_names]
    count = len(parsed)
    start = torch.tensor([prefix != "I" for prefix, _ in parsed], dtype=torch.bool)
    pairs = torch.ones(count, count, dtype=torch.bool)
    for j, (prefix, kind) in enumerate(parsed):
        if prefix == "I":
            pairs[:, j] = torch.tensor([p in ("B", "I") and k == kind for p, k in parsed], dtype=torch.bool)
    return AllowedTransitions(start=start, pairs=pairs, end=torch.ones(count, dtype=torch.bool))


def _bio(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I") or not kind:
        raise ValueError(f"tag {tag!r} is not BIO: expected 'O', 'B-<type>' or 'I-<type>'")
    return prefix, kind


class CRF(nn.Module):
    """Linear-chain conditional random field with learnt start, end and transition scores.

    ``allowed`` (from :func:`allowed_transitions`) constrains decoding only: training keeps the plain
    likelihood, because a corpus may hold a path the rules forbid (a lone ``I-`` that the reader kept) and a
    forbidden gold path would give an enormous loss. The learnt transitions soon make such paths unlikely
    anyway; the constraint guarantees that decoding never produces one. It is a buffer left out of the
    ``state_dict``, so weights saved with or without it load either way.
    """

    def __init__(self, num_tags: int, allowed: AllowedTransitions | None = None) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be at least 1, got {num_tags}")
        self.num_tags = num_tags
        self.start_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end_transitions = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))  # (from, to)
        penalty = [torch.zeros(num_tags), torch.zeros(num_tags, num_tags), torch.zeros(num_tags)]
        if allowed is not None:
            tables = (allowed.start, allowed.pairs, allowed.end)
            if any(table.shape != p.shape for table, p in zip(tables, penalty, strict=True)):
                raise ValueError(f"allowed transitions do not fit {num_tags} tags")
            penalty = [(~table.bool()).float() * FORBIDDEN for table in tables]
        for name, value in zip(("start_penalty", "pair_penalty", "end_penalty"), penalty, strict=True):
            self.register_buffer(name, value, persistent=False)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The mean negative log-likelihood; see :meth:`neg_log_likelihood`."""
        return self.neg_log_likelihood(emissions, tags, mask)

    def neg_log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
                           reduction: str = "mean") -> torch.Tensor:
        """Negative log-likelihood of the gold tag paths: log Z minus the gold path's score.

        Args:
            emissions: (B, T, K) scores of each tag at each position (computed in float32).
            tags: (B, T) gold tag ids; values at masked positions are ignored (``-100`` is fine there).
            mask: (B, T) bool, True on each row's first ``length`` positions. A row of length 0 has loss 0
                and does not count towards the mean.
            reduction: ``"mean"`` over non-empty sequences, ``"sum"``, or ``"none"`` (one value per row).
        """
        emissions, mask, lengths = self._check(emissions, mask)
        if emissions.shape[1] == 0:
            nll = emissions.sum(dim=(1, 2))  # zeros, still attached to the graph
        else:
            tags = tags.masked_fill(~mask, 0)
            nll = self._log_partition(emissions, mask) - self._path_score(emissions, tags, mask, lengths)
            nll = nll * (lengths > 0)
        if reduction == "none":
            return nll
        if reduction == "sum":
            return nll.sum()
        if reduction != "mean":
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        return nll.sum() / (lengths > 0).sum().clamp(min=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The highest-scoring tag path of each row (Viterbi), within the allowed transitions if any.

        Args:
            emissions: (B, T, K) tag scores.
            mask: (B, T) bool, a left-aligned prefix per row.

        Returns:
            One list of tag ids per row, as long as the row's mask (empty for an empty row).
        """
        emissions, mask, lengths = self._check(emissions, mask)
        batch, steps, _ = emissions.shape
        if steps == 0:
            return [[] for _ in range(batch)]
        transitions = self.transitions + self.pair_penalty  # (K, K)
        score = self.start_transitions + self.start_penalty + emissions[:, 0]  # (B, K)
        history = []
        for t in range(1, steps):
            best, previous = (score.unsqueeze(2) + transitions).max(dim=1)  # over the previous tag: (B, K)
            score = torch.where(mask[:, t : t + 1], best + emissions[:, t], score)
            history.append(previous)
        last = (score + self.end_transitions + self.end_penalty).argmax(dim=1)  # (B,)
        # Walk back from the end of the longest row; each shorter row starts its walk at its own last position.
        paths = torch.zeros(batch, steps, dtype=torch.long, device=emissions.device)
        current = last
        for t in range(steps - 1, -1, -1):
            current = torch.where(lengths - 1 == t, last, current)
            paths[:, t] = current
            if t > 0:
                current = history[t - 1].gather(1, current.unsqueeze(1)).squeeze(1)
        return [row[:length] for row, length in zip(paths.tolist(), lengths.tolist(), strict=True)]

    def _check(self, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            raise ValueError(f"emissions must be (B, T, {self.num_tags}), got {tuple(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match emissions {tuple(emissions.shape)}")
        mask = mask.bool()
        if bool((mask[:, 1:] & ~mask[:, :-1]).any()):
            raise ValueError("each mask row must be a left-aligned prefix (True, ..., True, False, ..., False)")
        return emissions.float(), mask, mask.sum(dim=1)

    def _path_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
                    lengths: torch.Tensor) -> torch.Tensor:
        """Score of the given paths: (B,)."""
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        score = (emitted * mask).sum(dim=1)
        score = score + (self.transitions[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(dim=1)
        last = tags.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return score + self.start_transitions[tags[:, 0]] + self.end_transitions[last]

    def _log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z, the log-sum-exp of every path's score (forward algorithm): (B,)."""
        alpha = self.start_transitions + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            # (B, K_prev, 1) + (K_prev, K) + (B, 1, K), summed out over the previous tag
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t : t + 1], step, alpha)
        return torch.logsumexp(alpha + self.end_transitions, dim=1)
