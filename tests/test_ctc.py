"""CTC head, greedy decoding and Viterbi forced alignment (against brute force)."""
import math
import random

import pytest
import torch

from openkws.models.ctc import (
    CTCHead,
    forced_align,
    forced_align_batch,
    greedy_decode,
    greedy_segments,
    word_spans,
)


def _valid_ctc_paths(frames: int, targets: list[int]):
    """Yield every valid CTC path as extended-state indices (state 2j+1 is target j)."""
    n_states = 2 * len(targets) + 1
    ext = [0] + [x for t in targets for x in (t, 0)]

    def extend(path):
        if len(path) == frames:
            if path[-1] >= n_states - 2:
                yield path
            return
        s = path[-1]
        for nxt in (s, s + 1, s + 2):
            if nxt >= n_states:
                continue
            if nxt == s + 2 and (ext[nxt] == 0 or ext[nxt] == ext[s]):
                continue
            yield from extend(path + [nxt])

    for start in (0, 1):
        yield from extend([start])


def _spans_of(path: list[int], n_targets: int) -> list[tuple[int, int]]:
    spans = []
    for j in range(n_targets):
        frames = [t for t, s in enumerate(path) if s == 2 * j + 1]
        spans.append((frames[0], frames[-1]))
    return spans


def _score_of_spans(log_probs: torch.Tensor, targets: list[int], spans) -> float:
    labels = [0] * log_probs.shape[0]
    for tok, (a, b) in zip(targets, spans):
        for t in range(a, b + 1):
            labels[t] = tok
    return sum(float(log_probs[t, k]) for t, k in enumerate(labels))


def _brute_force(log_probs: torch.Tensor, targets: list[int]):
    ext = [0] + [x for t in targets for x in (t, 0)]
    best = max(
        _valid_ctc_paths(log_probs.shape[0], targets),
        key=lambda p: sum(float(log_probs[t, ext[s]]) for t, s in enumerate(p)),
    )
    score = sum(float(log_probs[t, ext[s]]) for t, s in enumerate(best))
    return score, _spans_of(best, len(targets))


def _random_case(rng: random.Random, vocab: int):
    n_targets = rng.randint(1, 3)
    targets = [rng.randint(1, vocab - 1) for _ in range(n_targets)]
    repeats = sum(a == b for a, b in zip(targets, targets[1:]))
    frames = rng.randint(n_targets + repeats, 7)
    log_probs = torch.randn(frames, vocab, dtype=torch.float64).mul(2).log_softmax(-1)
    return log_probs, targets


def test_forced_align_matches_brute_force():
    rng = random.Random(0)
    torch.manual_seed(0)
    n_repeats = 0
    for _ in range(300):
        log_probs, targets = _random_case(rng, vocab=rng.choice([2, 3, 4]))
        n_repeats += any(a == b for a, b in zip(targets, targets[1:]))
        spans = forced_align(log_probs, targets)
        best_score, best_spans = _brute_force(log_probs, targets)
        assert math.isclose(_score_of_spans(log_probs, targets, spans), best_score, abs_tol=1e-9)
        assert spans == best_spans
    assert n_repeats > 30  # the random cases did exercise repeated adjacent labels


def test_forced_align_tight_repeat_needs_blank():
    # "a a" in exactly 3 frames: the only path is a, blank, a.
    log_probs = torch.randn(3, 3).log_softmax(-1)
    assert forced_align(log_probs, [1, 1]) == [(0, 0), (2, 2)]


def test_forced_align_follows_peaks():
    frames = [0, 2, 2, 0, 0, 1, 1, 1, 0, 3]
    log_probs = torch.full((len(frames), 4), -10.0)
    log_probs[torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    assert forced_align(log_probs.log_softmax(-1), [2, 1, 3]) == [(1, 2), (5, 7), (9, 9)]


def test_forced_align_other_blank_id():
    torch.manual_seed(3)
    log_probs = torch.randn(9, 4).log_softmax(-1)
    swap = torch.tensor([3, 1, 2, 0])  # blank moves from id 0 to id 3, token 3 to id 0
    expected = forced_align(log_probs, [1, 3, 3])
    assert forced_align(log_probs[:, swap], [1, 0, 0], blank=3) == expected


def test_batched_equals_unbatched_with_padding():
    rng = random.Random(1)
    torch.manual_seed(1)
    for _ in range(20):
        batch, vocab = rng.randint(1, 6), rng.randint(2, 6)
        items = []
        for _ in range(batch):
            n_targets = rng.randint(1, 5)
            targets = [rng.randint(1, vocab - 1) for _ in range(n_targets)]
            repeats = sum(a == b for a, b in zip(targets, targets[1:]))
            frames = rng.randint(n_targets + repeats, 30)
            items.append((torch.randn(frames, vocab).mul(3).log_softmax(-1), targets))
        max_t = max(lp.shape[0] for lp, _ in items) + rng.randint(0, 3)
        max_l = max(len(tg) for _, tg in items) + rng.randint(0, 2)
        # Padding holds garbage (NaN frames, invalid token ids) that must be ignored.
        log_probs = torch.full((batch, max_t, vocab), float("nan"))
        targets = torch.full((batch, max_l), -7, dtype=torch.long)
        for b, (lp, tg) in enumerate(items):
            log_probs[b, : lp.shape[0]] = lp
            targets[b, : len(tg)] = torch.tensor(tg)
        got = forced_align_batch(
            log_probs, [lp.shape[0] for lp, _ in items], targets, [len(tg) for _, tg in items]
        )
        assert got == [forced_align(lp, tg) for lp, tg in items]


def test_forced_align_errors():
    log_probs = torch.randn(4, 5).log_softmax(-1)
    with pytest.raises(ValueError, match="too few"):
        forced_align(log_probs, [1, 2, 3, 4, 1])
    with pytest.raises(ValueError, match="too few"):
        forced_align(log_probs, [1, 1, 2, 2])  # 4 tokens + 2 repeats need 6 frames
    with pytest.raises(ValueError, match="at least one target"):
        forced_align(log_probs, [])
    with pytest.raises(ValueError, match="blank"):
        forced_align(log_probs, [1, 0, 2])
    with pytest.raises(ValueError, match="token ids"):
        forced_align(log_probs, [1, 9])
    with pytest.raises(ValueError, match=r"item 1: .*too few"):
        forced_align_batch(
            torch.randn(2, 4, 5).log_softmax(-1), [4, 2], torch.tensor([[1, 2], [3, 3]]), [2, 2]
        )
    impossible = torch.randn(4, 5).log_softmax(-1)
    impossible[:, 3] = float("-inf")
    with pytest.raises(ValueError, match="non-zero probability"):
        forced_align(impossible, [1, 3])


def test_greedy_decode_and_segments():
    frames = [0, 1, 1, 0, 1, 2, 2, 0, 3]
    log_probs = torch.full((2, len(frames), 4), -5.0)
    for b in range(2):
        log_probs[b, torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    log_probs = log_probs.log_softmax(-1)
    lengths = [len(frames), 6]  # item 1 is cut inside the "2" run
    assert greedy_decode(log_probs, lengths) == [[1, 1, 2, 3], [1, 1, 2]]
    assert greedy_segments(log_probs, lengths) == [
        [(1, 1, 2), (1, 4, 4), (2, 5, 6), (3, 8, 8)],
        [(1, 1, 2), (1, 4, 4), (2, 5, 5)],
    ]
    assert greedy_decode(log_probs) == [[1, 1, 2, 3]] * 2


def test_word_spans():
    phones = [(0, 1), (3, 3), (4, 6), (8, 9), (10, 12)]
    assert word_spans(phones, [2, 3]) == [(0, 3), (4, 12)]
    with pytest.raises(ValueError, match="sum to"):
        word_spans(phones, [2, 2])
    with pytest.raises(ValueError, match="at least one"):
        word_spans(phones, [0, 5])


def test_ctc_head_loss_finite_and_decreasing():
    torch.manual_seed(0)
    head = CTCHead(d_model=8, vocab_size=5)
    enc = torch.randn(3, 12, 8)
    targets = [[1, 2, 3], [4, 4], [2]]
    lengths = [12, 9, 5]
    log_probs = head(enc)
    assert log_probs.shape == (3, 12, 5)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 12))
    padded = torch.tensor([[1, 2, 3], [4, 4, 0], [2, 0, 0]])
    same = head.loss(log_probs, lengths, padded, [3, 2, 1])
    assert torch.allclose(head.loss(log_probs, lengths, targets), same)
    with pytest.raises(ValueError, match="blank"):
        head.loss(log_probs, lengths, [[1, 0], [2], [3]])

    optim = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        loss = head.loss(head(enc), lengths, targets)
        assert torch.isfinite(loss)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(2)
    log_probs = torch.randn(4, 40, 6).log_softmax(-1)
    targets = torch.randint(1, 6, (4, 7))
    args = ([40, 31, 25, 12], targets, [7, 5, 3, 6])
    cpu = forced_align_batch(log_probs, *args)
    assert forced_align_batch(log_probs.cuda(), *args) == cpu
    assert greedy_segments(log_probs.cuda(), args[0]) == greedy_segments(log_probs, args[0])
    head = CTCHead(6, 6).cuda()
    assert torch.isfinite(head.loss(head(log_probs.cuda()), args[0], targets, args[2]))
