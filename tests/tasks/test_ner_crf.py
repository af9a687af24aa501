"""The CRF against a brute-force CRF that enumerates every tag path (K=3 tags, up to T=4 positions)."""

import itertools

import pytest
import torch

from tuneforge.tasks.token_classification.crf import CRF, allowed_transitions

K, T = 3, 4


def _path_score(crf: CRF, emissions: torch.Tensor, path: tuple[int, ...], penalties: bool = False) -> float:
    """Score of one path through one row's emissions (T', K), written the obvious way."""
    start, pairs, end = crf.start_transitions, crf.transitions, crf.end_transitions
    if penalties:
        start, pairs, end = start + crf.start_penalty, pairs + crf.pair_penalty, end + crf.end_penalty
    score = start[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        score = score + pairs[path[t - 1], path[t]] + emissions[t, path[t]]
    return float(score + end[path[-1]])


@torch.no_grad()
def _brute_force(crf: CRF, emissions: torch.Tensor, penalties: bool = False) -> dict[tuple[int, ...], float]:
    """Every path of this row's length and its score."""
    paths = itertools.product(range(crf.num_tags), repeat=emissions.shape[0])
    return {path: _path_score(crf, emissions, path, penalties) for path in paths}


def _random_batch(seed: int, lengths: list[int]) -> tuple[CRF, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    crf = CRF(K)
    with torch.no_grad():  # transitions as large as emissions, so they change which path wins
        for parameter in crf.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    emissions = torch.randn(len(lengths), T, K, generator=generator)
    tags = torch.randint(0, K, (len(lengths), T), generator=generator)
    mask = torch.arange(T).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return crf, emissions, tags, mask


LENGTH_SETS = [[4, 4], [4, 2, 1], [1, 3, 4, 2], [1]]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lengths", LENGTH_SETS)
def test_nll_is_log_partition_minus_gold_score(seed, lengths):
    crf, emissions, tags, mask = _random_batch(seed, lengths)
    nll = crf.neg_log_likelihood(emissions, tags, mask, reduction="none").detach()
    for row, length in enumerate(lengths):
        scores = _brute_force(crf, emissions[row, :length])
        log_z = torch.logsumexp(torch.tensor(list(scores.values())), dim=0)
        gold = scores[tuple(tags[row, :length].tolist())]
        assert float(nll[row]) == pytest.approx(float(log_z) - gold, abs=1e-4)
    expected_mean = float(nll.mean())
    assert crf.neg_log_likelihood(emissions, tags, mask).item() == pytest.approx(expected_mean, abs=1e-5)


def test_probabilities_of_all_paths_sum_to_one():
    crf, emissions, _, _ = _random_batch(7, [3])
    paths = list(itertools.product(range(K), repeat=3))
    tags = torch.tensor([list(p) + [0] for p in paths])
    batch = emissions.expand(len(paths), -1, -1)
    mask = torch.arange(T).unsqueeze(0).expand(len(paths), -1) < 3
    total = torch.exp(-crf.neg_log_likelihood(batch, tags, mask, reduction="none")).sum().item()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("lengths", LENGTH_SETS)
def test_viterbi_returns_the_best_path(seed, lengths):
    crf, emissions, _, mask = _random_batch(seed, lengths)
    decoded = crf.decode(emissions, mask)
    for row, length in enumerate(lengths):
        scores = _brute_force(crf, emissions[row, :length])
        best = max(scores, key=scores.get)
        assert len(decoded[row]) == length
        assert scores[tuple(decoded[row])] == pytest.approx(scores[best], abs=1e-5)


def test_padding_and_ignored_tags_do_not_change_a_row():
    crf, emissions, tags, mask = _random_batch(3, [2, 4])
    alone = crf.neg_log_likelihood(emissions[:1, :2], tags[:1, :2], mask[:1, :2], reduction="none").detach()
    noisy_emissions = emissions.clone()
    noisy_emissions[0, 2:] = 100.0  # garbage past the end of row 0
    noisy_tags = tags.clone()
    noisy_tags[0, 2:] = -100  # the ignore index a collator puts on padding
    batched = crf.neg_log_likelihood(noisy_emissions, noisy_tags, mask, reduction="none").detach()
    assert float(batched[0]) == pytest.approx(float(alone[0]), abs=1e-5)
    assert crf.decode(noisy_emissions, mask)[0] == crf.decode(emissions[:1, :2], mask[:1, :2])[0]


def test_empty_rows_decode_empty_and_do_not_count_in_the_mean():
    crf, emissions, tags, mask = _random_batch(5, [3, 0])
    assert crf.decode(emissions, mask)[1] == []
    nll = crf.neg_log_likelihood(emissions, tags, mask, reduction="none").detach()
    assert float(nll[1]) == 0.0
    assert crf.neg_log_likelihood(emissions, tags, mask).item() == pytest.approx(float(nll[0]))


def test_a_mask_with_holes_is_refused():
    crf, emissions, tags, _ = _random_batch(0, [4])
    holes = torch.tensor([[True, False, True, True]])
    with pytest.raises(ValueError, match="left-aligned prefix"):
        crf.neg_log_likelihood(emissions, tags, holes)
    with pytest.raises(ValueError, match="left-aligned prefix"):
        crf.decode(emissions, holes)


def test_allowed_transitions_follow_bio():
    tags = ["O", "B-PER", "I-PER", "B-WORK-OF-ART", "I-WORK-OF-ART"]
    allowed = allowed_transitions(tags)
    assert allowed.start.tolist() == [True, True, False, True, False]
    assert allowed.end.all()
    # into I-PER only from B-PER or I-PER; into I-WORK-OF-ART only from its own B-/I-
    assert allowed.pairs[:, 2].tolist() == [False, True, True, False, False]
    assert allowed.pairs[:, 4].tolist() == [False, False, False, True, True]
    assert allowed.pairs[:, [0, 1, 3]].all()
    with pytest.raises(ValueError, match="not BIO"):
        allowed_transitions(["O", "S-PER"])


def test_constrained_viterbi_is_the_best_allowed_path():
    tags = ["O", "B-PER", "I-PER"]  # K = 3, as in the brute force
    crf = CRF(3, allowed=allowed_transitions(tags))
    generator = torch.Generator().manual_seed(11)
    emissions = torch.randn(6, T, 3, generator=generator)
    emissions[:, :, 2] += 3.0  # I-PER everywhere is what the emissions alone want
    mask = torch.ones(6, T, dtype=torch.bool)
    unconstrained = CRF(3)
    unconstrained.load_state_dict(crf.state_dict())  # the constraint is not part of the weights
    assert any(path[0] == 2 for path in unconstrained.decode(emissions, mask))
    for row, path in enumerate(crf.decode(emissions, mask)):
        scores = _brute_force(crf, emissions[row], penalties=True)
        assert scores[tuple(path)] == pytest.approx(max(scores.values()), abs=1e-4)
        assert path[0] != 2
        assert all(not (b == 2 and a == 0) for a, b in zip(path, path[1:], strict=False))


def test_loss_decreases_and_training_learns_a_toy_rule():
    """Tags that depend only on the previous tag (0 -> 1 -> 2 -> 0) and emissions that carry no signal past
    the first position: only the transitions can learn it, so this also shows their gradients flow."""
    torch.manual_seed(0)
    crf = CRF(3)
    tags = torch.tensor([[(s + t) % 3 for t in range(T)] for s in range(3)])
    emissions = torch.zeros(3, T, 3)
    emissions[torch.arange(3), 0, tags[:, 0]] = 2.0
    mask = torch.ones(3, T, dtype=torch.bool)
    optimizer = torch.optim.Adam(crf.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        loss = crf.neg_log_likelihood(emissions, tags, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert crf.transitions.grad is not None and crf.start_transitions.grad is not None
    assert losses[-1] < 0.5 * losses[0]
    assert crf.decode(emissions, mask) == tags.tolist()
