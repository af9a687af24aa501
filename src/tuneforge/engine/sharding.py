"""Scoring a dataset under N processes: each scores every N-th example, then the pieces are gathered.

Every example is scored exactly once whatever the split size (no padding duplicates, unlike a
DistributedSampler), and every process ends with the full result in dataset order.
"""

from __future__ import annotations

import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object


def my_share(total: int) -> list[int]:
    """The dataset indices this process scores."""
    processes = PartialState()
    return list(range(processes.process_index, total, processes.num_processes))


def gather_rows(rows: list[int], scores: list[np.ndarray], total: int) -> np.ndarray:
    """Every process's (rows, score batches) assembled into one (total, width) float32 array."""
    pieces = [(rows, np.concatenate(scores) if scores else None)]
    if PartialState().num_processes > 1:
        pieces = gather_object(pieces)
    width = next((s.shape[1] for _, s in pieces if s is not None), 0)
    out = np.zeros((total, width), dtype=np.float32)
    for piece_rows, piece_scores in pieces:
        if piece_scores is not None:
            out[piece_rows] = piece_scores
    return out
