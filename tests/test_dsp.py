"""Dynamic sequence partitioning against brute force over all boundary choices."""
import itertools
import random

import pytest
import torch

from openkws.models.dsp import partition, partition_batch


def _brute_force(sim: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Best mask over every partition of the longer axis into contiguous groups of the shorter."""
    m, n = sim.shape
    flip = n < m
    s = sim.T if flip else sim
    rows, cols = s.shape
    best_score, best_mask = float("-inf"), None
    for cuts in itertools.combinations(range(1, cols), rows - 1):
        bounds = (0, *cuts, cols)
        mask = torch.zeros(rows, cols, dtype=torch.bool)
        for i in range(rows):
            mask[i, bounds[i] : bounds[i + 1]] = True
        score = float(s[mask].sum())
        if score > best_score:
            best_score, best_mask = score, mask
    return best_score, best_mask.T if flip else best_mask


def _check_monotonic(mask: torch.Tensor) -> None:
    """Every row and column covered, and row intervals ordered and contiguous."""
    assert mask.any(0).all() and mask.any(1).all()
    prev_last = -1
    for row in mask:
        idx = row.nonzero()[:, 0].tolist()
        assert idx == list(range(idx[0], idx[-1] + 1))
        assert idx[0] >= prev_last  # may share a column with the previous row only when n < m
        prev_last = idx[-1]


def test_partition_matches_brute_force():
    torch.manual_seed(0)
    for m in range(1, 5):
        for n in range(1, 9):
            for _ in range(8):
                sim = torch.randn(m, n, dtype=torch.float64)
                mask = partition(sim)
                score, expected = _brute_force(sim)
                assert mask.dtype == torch.bool and mask.shape == (m, n)
                assert abs(float(sim[mask].sum()) - score) < 1e-9
                assert torch.equal(mask, expected)
                _check_monotonic(mask)
                if n >= m:
                    assert (mask.sum(0) == 1).all()
                else:
                    assert (mask.sum(1) == 1).all()


def test_staircase_recovered():
    # Token i is strongly similar to its own frames: DSP must recover exactly that staircase.
    owner = [0, 0, 1, 1, 1, 2, 3, 3]
    sim = torch.full((4, len(owner)), -0.5)
    sim[torch.tensor(owner), torch.arange(len(owner))] = 0.9
    expected = torch.zeros_like(sim, dtype=torch.bool)
    expected[torch.tensor(owner), torch.arange(len(owner))] = True
    assert torch.equal(partition(sim + 0.01 * torch.randn_like(sim)), expected)


def test_fewer_frames_than_tokens():
    # 5 tokens, 2 frames: each token gets one frame, frames split the tokens contiguously.
    sim = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    expected = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1]], dtype=torch.bool)
    assert torch.equal(partition(sim), expected)
    assert torch.equal(partition(torch.randn(3, 1)), torch.ones(3, 1, dtype=torch.bool))
    assert torch.equal(partition(torch.randn(1, 4)), torch.ones(1, 4, dtype=torch.bool))


def test_batched_equals_unbatched_with_padding():
    rng = random.Random(0)
    torch.manual_seed(0)
    for _ in range(30):
        batch = rng.randint(1, 6)
        shapes = [(rng.randint(1, 6), rng.randint(1, 10)) for _ in range(batch)]  # mixes n < m
        max_m = max(m for m, _ in shapes) + rng.randint(0, 2)
        max_n = max(n for _, n in shapes) + rng.randint(0, 2)
        sims = [torch.randn(m, n) for m, n in shapes]
        padded = torch.full((batch, max_m, max_n), float("nan"))  # garbage padding
        for b, s in enumerate(sims):
            padded[b, : s.shape[0], : s.shape[1]] = s
        masks = partition_batch(padded, [m for m, _ in shapes], [n for _, n in shapes])
        assert masks.shape == padded.shape
        for b, (s, (m, n)) in enumerate(zip(sims, shapes)):
            assert torch.equal(masks[b, :m, :n], partition(s))
            assert masks[b].sum() == partition(s).sum()  # nothing True in the padding


def test_no_grad_and_errors():
    sim = torch.randn(3, 5, requires_grad=True)
    assert not partition(sim).requires_grad
    with pytest.raises(ValueError, match="NaN"):
        partition(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="shape"):
        partition(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="lengths"):
        partition_batch(torch.randn(1, 2, 3), [3], [3])
    with pytest.raises(ValueError, match="lengths"):
        partition_batch(torch.randn(1, 2, 3), [0], [3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(1)
    sim = torch.randn(5, 6, 20)
    lengths = ([6, 3, 5, 2, 6], [20, 14, 3, 9, 4])
    mask = partition_batch(sim.cuda(), *lengths)
    assert mask.is_cuda and torch.equal(mask.cpu(), partition_batch(sim, *lengths))
