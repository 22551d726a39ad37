"""Training-free CTC keyword search: against brute force, locating, batching, edge cases."""
import functools
import itertools
import math
import random

import pytest
import torch

from openkws.models import ctc_search
from openkws.models.ctc_search import (
    NO_MATCH_SCORE,
    NORMALISATIONS,
    CTCKeywordSearch,
    collapse_stress,
    ctc_keyword_search,
    encode_pronunciations,
    prepare_keywords,
)
from openkws.text.phonemes import PHONEMES, encode

TOY_KEYWORDS = [[1], [2, 3], [1, 1], [1, 2, 1], [3, 3, 2]]


@functools.lru_cache(maxsize=None)
def _alignments(n: int, tokens: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every frame labelling of n frames that CTC-collapses to `tokens` and starts and ends on a
    token (the keyword's span), by enumerating all label strings: independent of any state
    machine."""
    out = []
    for pi in itertools.product(sorted({0, *tokens}), repeat=n):
        if pi[0] == 0 or pi[-1] == 0:
            continue
        collapsed = [a for i, a in enumerate(pi) if a != 0 and (i == 0 or a != pi[i - 1])]
        if tuple(collapsed) == tokens:
            out.append(pi)
    return out


def _brute_force(lp: torch.Tensor, length: int, tokens: list[int]):
    """Every (span, alignment) of the keyword: {(start, end): (best raw loglik in the span,
    posterior score, [(ratio, raw loglik) of each alignment])}."""
    m = lp.max(-1).values
    spans = {}
    for s in range(length):
        for e in range(s, length):
            paths = []
            for pi in _alignments(e - s + 1, tuple(tokens)):
                ll = sum(float(lp[s + i, a]) for i, a in enumerate(pi))
                ratio = sum(float(lp[s + i, a] - m[s + i]) for i, a in enumerate(pi))
                paths.append((ratio, ll))
            paths = [p for p in paths if p[0] > -math.inf]
            if paths:
                post = sum(float(lp[s : e + 1, y].max()) for y in tokens) / len(tokens)
                spans[(s, e)] = (max(p[1] for p in paths), post, paths)
    return spans


def _peaky(seq: list[int], vocab: int, gen: torch.Generator, peak=8.0, noise=1.0):
    """(T, V) log-posteriors whose argmax follows the frame labels `seq`, plus noise."""
    logits = noise * torch.randn(len(seq), vocab, generator=gen, dtype=torch.float64)
    logits[torch.arange(len(seq)), torch.tensor(seq)] += peak
    return logits.log_softmax(-1)


@pytest.mark.parametrize("seed", range(6))
def test_search_equals_brute_force_optimum(seed):
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    batch, frames, vocab = 3, 7, 4
    lp = torch.randn(batch, frames, vocab, generator=gen, dtype=torch.float64)
    lp = (2.0 * lp).log_softmax(-1)
    lengths = [frames, rng.randint(1, frames), rng.randint(3, frames)]
    keywords = [[kw] for kw in TOY_KEYWORDS]
    results = {n: ctc_keyword_search(lp, lengths, keywords, normalisation=n)
               for n in NORMALISATIONS}
    for b in range(batch):
        for k, tokens in enumerate(TOY_KEYWORDS):
            spans = _brute_force(lp[b], lengths[b], tokens)
            if not spans:  # the keyword cannot fit in this clip
                for r in results.values():
                    assert r.score[b, k] == NO_MATCH_SCORE and r.loglik[b, k] == NO_MATCH_SCORE
                    assert r.start[b, k] == -1 and r.end[b, k] == -1
                continue
            ratio = max(p[0] for v in spans.values() for p in v[2])
            # Ties are common (a frame whose best token is the path's costs 0): among the
            # optimal spans, the longest, then the latest.
            _, e, s = max(
                (e - s, e, s)
                for (s, e), v in spans.items() for p in v[2] if p[0] >= ratio - 1e-9
            )
            ll, post, _ = spans[(s, e)]
            for name, r in results.items():
                assert (int(r.start[b, k]), int(r.end[b, k])) == (s, e), (name, b, k)
                assert float(r.loglik[b, k]) == pytest.approx(ll, abs=1e-9)
                assert int(r.variant[b, k]) == 0
            token, frame = results["token"].score[b, k], results["frame"].score[b, k]
            assert float(token) == pytest.approx(ratio / len(tokens), abs=1e-9)
            assert float(frame) == pytest.approx(ratio / (e - s + 1), abs=1e-9)
            assert float(results["posterior"].score[b, k]) == pytest.approx(post, abs=1e-9)
            for r in results.values():
                assert float(r.score[b, k]) <= 0.0


def _sentence(words, rng):
    """CTC-like frame labels of words spoken one after another (each token a spike of 1-2
    frames, 0-3 blank frames between tokens, 2-5 between words) and each word's true span."""
    seq, spans = [0] * rng.randint(1, 3), []
    for word in words:
        first = len(seq)
        for i, tok in enumerate(word):
            if i:
                seq += [0] * rng.randint(0 if tok != word[i - 1] else 1, 3)
            seq += [tok] * rng.randint(1, 2)
        spans.append((first, len(seq) - 1))
        seq += [0] * rng.randint(2, 5)
    return seq, spans


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_locates_keyword_in_a_sentence(normalisation):
    vocab = 12
    words = [[1, 2, 3], [4, 5, 5, 6], [7, 8], [9, 10, 11, 4]]
    absent = [[3, 7, 10], [6, 1, 9, 2]]
    for seed in range(6):
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        order = rng.sample(words, len(words))
        seq, spans = _sentence(order, rng)
        lp = _peaky(seq, vocab, gen, peak=5.0, noise=1.0)[None]
        kws = [[w] for w in order + absent]
        res = ctc_keyword_search(lp, None, kws, normalisation=normalisation)
        for k, (first, last) in enumerate(spans):
            assert abs(int(res.start[0, k]) - first) <= 2 and abs(int(res.end[0, k]) - last) <= 2
        # Every spoken keyword outscores every absent one.
        assert res.score[0, : len(words)].min() > res.score[0, len(words) :].max()
        # Clean one-hot-like posteriors: the span is exactly the word's first to last token frame.
        clean = _peaky(seq, vocab, gen, peak=10.0, noise=0.0)[None]
        res = ctc_keyword_search(clean, None, kws, normalisation=normalisation)
        assert [(int(a), int(b)) for a, b in zip(res.start[0, : len(words)],
                                                 res.end[0, : len(words)])] == spans


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_multi_pronunciation_scores_its_best_variant(normalisation):
    gen = torch.Generator().manual_seed(3)
    lp = (2.0 * torch.randn(2, 12, 6, generator=gen, dtype=torch.float64)).log_softmax(-1)
    variants = [[1, 2], [3, 4, 5], [2], [5, 5]]
    single = ctc_keyword_search(lp, [12, 9], [[v] for v in variants], normalisation=normalisation)
    multi = ctc_keyword_search(lp, [12, 9], [variants, variants[::-1]], normalisation=normalisation)
    for b in range(2):
        top = single.score[b].max()
        assert torch.equal(multi.score[b], top.repeat(2))
        # Ties between variants go to the first one in the keyword's own order.
        best = int(single.score[b].argmax())
        last_best = len(variants) - 1 - int(single.score[b].flip(0).argmax())
        assert multi.variant[b].tolist() == [best, len(variants) - 1 - last_best]
        for k, v in enumerate((best, last_best)):
            for field in ("loglik", "start", "end"):
                assert getattr(multi, field)[b, k] == getattr(single, field)[b, v]


def test_batch_invariance(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    lengths = [9, 4, 0, 6]
    lp = torch.randn(4, 9, 5, generator=gen).log_softmax(-1)
    for b, n in enumerate(lengths):  # padding holds garbage, even NaN and +inf
        lp[b, n:] = torch.tensor([float("nan"), float("inf"), 3.0, -1.0, 0.0])
    keywords = [[[1, 2]], [[3], [4, 4]], [[1, 2, 3, 4, 1, 2, 3]], [[2, 2]]]
    for name in NORMALISATIONS:
        full = ctc_keyword_search(lp, lengths, keywords, normalisation=name)
        assert not torch.isnan(full.score).any()
        for b, n in enumerate(lengths):
            for k, kw in enumerate(keywords):
                alone = ctc_keyword_search(lp[b : b + 1, :n], [n], [kw], normalisation=name)
                for field in ("score", "loglik", "start", "end", "variant"):
                    got, want = getattr(full, field)[b, k], getattr(alone, field)[0, 0]
                    assert torch.allclose(got.double(), want.double(), rtol=0, atol=1e-5), (
                        name, b, k, field, got, want)
        # Large batches are searched in chunks of clips: same results.
        monkeypatch.setattr(ctc_search, "_MAX_ELEMENTS", 1)
        chunked = ctc_keyword_search(lp, lengths, keywords, normalisation=name)
        monkeypatch.undo()
        for field in ("score", "loglik", "start", "end", "variant"):
            assert torch.equal(getattr(chunked, field), getattr(full, field))


def test_impossible_matches_score_very_low_without_nan():
    lp = torch.randn(3, 2, 4).log_softmax(-1)
    lp[2, :, 3] = float("-inf")  # token 3 can never be emitted in clip 2
    res = ctc_keyword_search(lp, [2, 0, 2], [[[1, 1]], [[1, 2, 3]], [[2]], [[3]]])
    assert torch.isfinite(res.score).all() and torch.isfinite(res.loglik).all()
    expected_miss = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(res.score == NO_MATCH_SCORE, expected_miss)
    assert torch.equal(res.start == -1, expected_miss) and torch.equal(res.end == -1, expected_miss)
    assert (res.score[~expected_miss] > NO_MATCH_SCORE).all()
    # No frames at all, and no keywords at all.
    empty = ctc_keyword_search(torch.zeros(2, 0, 4), [0, 0], [[[1]], [[2, 3]]], "frame")
    assert (empty.score == NO_MATCH_SCORE).all() and (empty.start == -1).all()
    assert ctc_keyword_search(lp, None, []).score.shape == (3, 0)


def test_collapse_stress_merges_vowel_variants():
    gen = torch.Generator().manual_seed(0)
    lp = torch.randn(2, 6, len(PHONEMES), generator=gen).log_softmax(-1)
    out = collapse_stress(lp)
    ah = encode(["AH0", "AH1", "AH2"])
    uw = encode(["UW", "UW0", "UW1", "UW2"])
    for group in (ah, uw):
        expected = lp[..., group].logsumexp(-1)
        for i in group:
            assert torch.allclose(out[..., i], expected)
    consonants = encode(["T", "N", "S", "HH"]) + [0]
    assert torch.equal(out[..., consonants], lp[..., consonants])
    # The stress digit of a keyword no longer matters, and does without the option.
    kw0, kw1 = encode_pronunciations("HH AH0 L OW1"), encode_pronunciations("HH AH1 L OW0")
    res = CTCKeywordSearch()(lp, None, [kw0, kw1])
    assert torch.equal(res.score[:, 0], res.score[:, 1])
    assert torch.equal(res.start[:, 0], res.start[:, 1])
    raw = CTCKeywordSearch(stress_insensitive=False)(lp, None, [kw0, kw1])
    assert not torch.equal(raw.score[:, 0], raw.score[:, 1])


def test_pronunciations_and_config():
    assert encode_pronunciations("T ER1 N") == [encode(["T", "ER1", "N"])]
    assert encode_pronunciations(["T ER1 N", ["T", "ER0", "N"]]) == [
        encode(["T", "ER1", "N"]), encode(["T", "ER0", "N"])]
    with pytest.raises(ValueError, match="ER"):
        encode_pronunciations("T ER N")
    with pytest.raises(ValueError, match="normalisation"):
        CTCKeywordSearch(normalisation="mean")
    lp = torch.randn(1, 20, len(PHONEMES)).log_softmax(-1)
    search = CTCKeywordSearch(normalisation="frame")
    by_text = search(lp, [20], ["T ER1 N", ["L AY1 T S", "L AY1 T"]])
    by_ids = search(lp, [20], search.prepare([encode_pronunciations("T ER1 N"),
                                              encode_pronunciations(["L AY1 T S", "L AY1 T"])]))
    assert torch.equal(by_text.score, by_ids.score) and by_text.score.shape == (1, 2)
    # Prepared keyword sets are cached by value: the same keywords give the same batch.
    assert search.prepare(["T ER1 N"]) is search.prepare(["T ER1 N"])
    assert search.prepare([[[5, 6]]]) is not search.prepare([[[5, 7]]])


def test_bad_input_is_a_clear_error():
    lp = torch.randn(1, 5, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="normalisation"):
        ctc_keyword_search(lp, None, [[[1]]], normalisation="mean")
    with pytest.raises(ValueError, match="blank"):
        ctc_keyword_search(lp, None, [[[1, 0, 2]]])
    with pytest.raises(ValueError, match="vocabulary|token ids"):
        ctc_keyword_search(lp, None, [[[7]]])
    with pytest.raises(ValueError, match="variant"):
        ctc_keyword_search(lp, None, [[]])
    with pytest.raises(ValueError, match="lengths"):
        ctc_keyword_search(lp, [6], [[[1]]])
    lp[0, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ctc_keyword_search(lp, None, [[[1]]])
    assert ctc_keyword_search(lp, [2], [[[1]]]).score.isfinite().all()  # NaN only in padding


def test_half_precision_and_prepared_keywords_agree():
    gen = torch.Generator().manual_seed(1)
    lp = torch.randn(2, 30, 8, generator=gen).log_softmax(-1)
    kws = [[[1, 2, 3]], [[4, 4], [5, 6]]]
    ref = ctc_keyword_search(lp, [30, 17], kws)
    prepared = ctc_keyword_search(lp, [30, 17], prepare_keywords(kws, 8))
    assert torch.equal(ref.score, prepared.score) and torch.equal(ref.start, prepared.start)
    half = ctc_keyword_search(lp.bfloat16(), [30, 17], kws)
    assert half.score.dtype == torch.float32
    assert torch.allclose(half.score, ref.score, atol=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(2)
    lp = torch.randn(3, 40, 9, generator=gen).log_softmax(-1)
    kws = [[[1, 2, 3]], [[4, 4], [5, 6, 7]], [[8]]]
    for name in NORMALISATIONS:
        cpu = ctc_keyword_search(lp, [40, 25, 3], kws, normalisation=name)
        gpu = ctc_keyword_search(lp.cuda(), torch.tensor([40, 25, 3]).cuda(), kws,
                                 normalisation=name)
        assert torch.allclose(gpu.score.cpu(), cpu.score, atol=1e-5)
        for field in ("start", "end", "variant"):
            assert torch.equal(getattr(gpu, field).cpu(), getattr(cpu, field))
