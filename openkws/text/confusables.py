"""Seeded generators of hard negative keywords for training the matcher heads.

- ``mutate_phonemes``: CED's confusable keywords (1-3 phoneme replace/insert edits).
- ``substitute_characters``: AdaKWS's near-miss spellings, then G2P.
- ``concatenate_keyword``: AdaKWS's keyword + another keyword (the negative contains the
  positive, so a head must match the whole keyword, not a prefix or suffix).
- ``nearest_keywords``: AdaKWS's nearest keywords in an embedding space.

A negative that sounds the same as the positive would be label noise, so no generator ever
returns a homophone of the positive (``is_homophone``: equal up to stress).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .g2p import Lexicon, to_phonemes
from .normalize import normalize
from .phonemes import REAL_PHONEMES, parse_phonemes, strip_stress

Rng = random.Random | int
_MAX_TRIES = 100

# Letters that sound alike, or that spell alike sounds; each letter may turn into any other
# letter of a group it belongs to.
_SIMILAR_LETTERS = ("bpv", "dt", "gkcq", "mn", "szcx", "fv", "vw", "iey", "oua", "lr", "jg")


def _letter_subs() -> dict[str, str]:
    subs: dict[str, set[str]] = {}
    for group in _SIMILAR_LETTERS:
        for c in group:
            subs.setdefault(c, set()).update(set(group) - {c})
    return {c: "".join(sorted(alts)) for c, alts in subs.items()}  # sorted: seeds reproduce


_LETTER_SUBS = _letter_subs()


def is_homophone(a: Sequence[str], b: Sequence[str]) -> bool:
    """True when two phoneme sequences are equal once stress digits are removed."""
    return [strip_stress(p) for p in a] == [strip_stress(p) for p in b]


def mutate_phonemes(phonemes: Sequence[str], rng: Rng, max_edits: int = 3) -> list[str]:
    """A confusable variant of ``phonemes`` (CED's G2P mutation).

    Draws delta in 1..min(max_edits, len), then at delta distinct positions u (right to left, so
    earlier positions keep their index) either replaces the phoneme at u or inserts one before
    it. The new phoneme is uniform over the real phonemes whose stress-free base differs from
    those at u-1, u and u+1: a new phoneme next to itself, or a vowel swapped for another
    stress of itself (AH0 -> AH1), sounds almost like the positive.
    """
    seq = parse_phonemes(phonemes)
    if max_edits < 1:
        raise ValueError(f"max_edits must be >= 1, got {max_edits}")
    rng = _as_rng(rng)

    for _ in range(_MAX_TRIES):
        out = list(seq)
        n_edits = rng.randint(1, min(max_edits, len(seq)))
        for u in sorted(rng.sample(range(len(seq)), n_edits), reverse=True):
            near = {strip_stress(p) for p in out[max(u - 1, 0) : u + 2]}
            new = rng.choice([p for p in REAL_PHONEMES if strip_stress(p) not in near])
            if rng.random() < 0.5:
                out[u] = new
            else:
                out.insert(u, new)
        if not is_homophone(out, seq):
            return out
    raise _no_negative(f"mutate {' '.join(seq)!r}")


def substitute_characters(
    text: str, rng: Rng, max_subs: int = 2, lexicon: Lexicon | None = None
) -> tuple[str, list[str]]:
    """A near-miss spelling of ``text`` and its phonemes (AdaKWS character substitution).

    Replaces 1..max_subs letters of the normalised text with acoustically similar ones
    ("lights" -> "lighds"), and retries while the result still sounds like the original
    ("cat" -> "kat"). ``lexicon`` is passed to G2P for both texts.
    """
    if max_subs < 1:
        raise ValueError(f"max_subs must be >= 1, got {max_subs}")
    rng = _as_rng(rng)
    positive = to_phonemes(text, lexicon)
    chars = list(" ".join(normalize(text)))
    slots = [i for i, c in enumerate(chars) if c in _LETTER_SUBS]
    if not slots:
        raise ValueError(f"no letter of {text!r} has an acoustically similar substitute")
    for _ in range(_MAX_TRIES):
        out = list(chars)
        for i in rng.sample(slots, rng.randint(1, min(max_subs, len(slots)))):
            out[i] = rng.choice(_LETTER_SUBS[out[i]])
        new_text = "".join(out)
        phonemes = to_phonemes(new_text, lexicon)
        if not is_homophone(phonemes, positive):
            return new_text, phonemes
    raise _no_negative(f"substitute letters in {text!r}")


def concatenate_keyword(
    phonemes: Sequence[str], other_phonemes: Sequence[str], rng: Rng
) -> list[str]:
    """``other + phonemes`` or ``phonemes + other`` (prefix or suffix, equally likely).

    The result is strictly longer than the positive, so it is never its homophone.
    """
    seq = parse_phonemes(phonemes)
    other = parse_phonemes(other_phonemes)
    return other + seq if _as_rng(rng).random() < 0.5 else seq + other


def nearest_keywords(
    query_vec: torch.Tensor,
    table_vecs: torch.Tensor,
    k: int,
    exclude: Sequence[int] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices of the ``k`` table rows nearest by cosine to each query, best first.

    query_vec: (d,) or (b, d); table_vecs: (n, d). Returns (k,) or (b, k) int64.
    A row whose direction equals the query's is never returned: it is the query itself (or a
    keyword the embedding cannot tell from it, which is no negative). ``exclude`` removes more
    rows: a list of indices (for every query) or a boolean mask broadcastable to (b, n),
    e.g. the query's homophones.
    """
    query = torch.as_tensor(query_vec)
    table = torch.as_tensor(table_vecs)
    single = query.dim() == 1
    query = query.unsqueeze(0) if single else query
    if query.dim() != 2 or table.dim() != 2 or query.shape[1] != table.shape[1]:
        raise ValueError(
            f"expected query (d,) or (b, d) and table (n, d), got {tuple(query_vec.shape)} "
            f"and {tuple(table_vecs.shape)}"
        )
    sim = F.normalize(query.float(), dim=-1) @ F.normalize(table.float(), dim=-1).T
    banned = sim >= 1 - 1e-5
    if exclude is not None:
        exclude = torch.as_tensor(exclude)
        if exclude.dtype == torch.bool:
            banned = banned | exclude.to(banned.device)
        else:
            banned[:, exclude.long()] = True
    available = int((~banned).sum(dim=1).min())
    if k > available:
        raise ValueError(f"asked for k={k} nearest keywords but only {available} are eligible")
    top = sim.masked_fill(banned, float("-inf")).topk(k, dim=1).indices
    return top[0] if single else top


def _as_rng(rng: Rng) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return random.Random(rng)
    raise TypeError(f"rng must be a random.Random or an int seed, got {type(rng).__name__}")


def _no_negative(what: str) -> ValueError:
    return ValueError(f"could not {what} without producing a homophone in {_MAX_TRIES} tries")
