"""Training-free CTC keyword search: the best CTC path of a keyword with a free start and end.

Given frame log-posteriors ``log_probs`` (B, T, V) of a CTC acoustic model (blank id 0) and K
keywords, each with one or more pronunciation variants (token-id sequences over the same
vocabulary), :func:`ctc_keyword_search` finds for every (clip, keyword) where the keyword is
most likely spoken, how likely, and a score that compares across keywords and clips.

Topology. A keyword variant y_1..y_L (no blanks) occupies a span [start, end] of frames: the
path inside the span runs over the states ``y_1, blank, y_2, blank, ..., blank, y_L``; it
starts on y_1 at ``start`` and ends on y_L at ``end`` (both inclusive), each token takes one or
more frames, the blank between two tokens is optional when they differ and mandatory when they
are equal (``[1, 1]`` needs at least 3 frames). Leading and trailing blank frames are not part
of the span: every frame outside it belongs to the unconstrained part of the clip, which is
scored by its best token, ``max_v log_probs[t, v]``, whatever that token is.

Search. The keyword path is scored against that unconstrained best path over the same frames::

    ratio = sum_{t in span} (log_probs[t, path_t] - max_v log_probs[t, v])  <= 0

The cost is additive per frame, so one Viterbi pass with per-frame emissions
``log_probs[t, token] - max_v log_probs[t, v]``, a "before the keyword" state of cost 0 that may
enter y_1 at any frame (free start) and an absorbing "after" state of cost 0 that y_L may enter
at any frame (free end) finds the span and path that maximise ``ratio`` exactly; every path
ends in the after state, so its score after the last frame is the answer. The span is carried
along with the score as an integer key (frames spent on the keyword, and after it), so neither
a per-frame read-out nor a traceback is needed. All clips x keyword variants are one batch of
rows (B x K* rows, variants padded to one length); the only Python loop is over frames, with
no host synchronisation inside it.

Ties are frequent: a frame whose best token is the path's own costs exactly 0, so a run of
frames where the first (last) token is the best one may start (end) the span at any of its
frames for the same ratio. Among the paths with the best ratio the search keeps the one with
the longest span, then the latest end (the DP compares (score, key) lexicographically, the key
packing the two frame counts), so such runs are kept whole. Conversely every frame inside the
span where another token beats the path's costs the difference, so the span is the best-paying
core of the keyword: a frame of noise inside the first or last token's run cuts the span there
(with a peaky CTC model the span runs from the first token's spike to the last token's spike).

Normalisations (``normalisation=``), all computed on the span the search found:

* ``"token"`` -- ratio / number of keyword tokens (the variant's L);
* ``"frame"`` -- ratio / number of frames in the span (end - start + 1);
* ``"posterior"`` -- the mean over the keyword's tokens of that token's best frame
  log-posterior within the span, ``mean_j max_{start<=t<=end} log_probs[t, y_j]`` (a confidence
  in the spirit of "every phoneme was heard somewhere in the keyword's span", insensitive to
  durations; <= 0 for normalised log-posteriors).

The search maximises the un-normalised ratio; the span that would maximise ratio / L is the
same (L is fixed per variant), the one maximising ratio / frames is not in general (that
normalisation is reported for the span the ratio chose, not searched for). A multi-pronunciation
keyword reports its best variant under the chosen normalisation (ties: the first variant).

A (clip, keyword) with no possible path (an empty clip, a keyword needing more frames than the
clip has, or -inf log-probs on every path) gets ``score = loglik = NO_MATCH_SCORE`` (finite,
below any real score, so pooled ROC/AUC code accepts it) and ``start = end = -1``.

Stress: :func:`collapse_stress` replaces every stress variant of a vowel by the log-sum-exp over
its variants (AH0, AH1 and AH2 all become log P(AH*)); :class:`CTCKeywordSearch` applies it by
default before the search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from openkws.text.phonemes import PHONEMES, encode, is_vowel, parse_phonemes, strip_stress

__all__ = [
    "NORMALISATIONS",
    "NO_MATCH_SCORE",
    "CTCKeywordSearch",
    "KeywordBatch",
    "SearchResult",
    "collapse_stress",
    "ctc_keyword_search",
    "encode_pronunciations",
    "prepare_keywords",
]

NORMALISATIONS: tuple[str, ...] = ("token", "frame", "posterior")
NO_MATCH_SCORE = -1e9

Keywords = Sequence[Sequence[Sequence[int]]]


@dataclass
class SearchResult:
    """Per (clip, keyword) result of :func:`ctc_keyword_search`; every field is (B, K).

    score   -- the normalised score (float, higher = more likely; <= 0 except with
               un-normalised inputs), NO_MATCH_SCORE where the keyword cannot fit.
    loglik  -- log-likelihood of the keyword's best path over its span, i.e. the sum of
               log_probs[t, path_t] for start <= t <= end (the best raw path within that span).
    start   -- first frame of the keyword's first token (long, inclusive), -1 if no match.
    end     -- last frame of the keyword's last token (long, inclusive), -1 if no match.
    variant -- index of the chosen pronunciation variant within the keyword (long).
    """

    score: Tensor
    loglik: Tensor
    start: Tensor
    end: Tensor
    variant: Tensor


@dataclass
class KeywordBatch:
    """Keywords padded once for :func:`ctc_keyword_search` (reuse it across calls).

    tokens (K*, L) long -- every variant of every keyword, padded with the blank;
    n_tokens (K*,) long -- each variant's length; variant_index (K, M) long -- row of keyword k's
    m-th variant in ``tokens`` (-1 where keyword k has fewer than M variants). The search's
    state layout is built on first use and cached here.
    """

    tokens: Tensor
    n_tokens: Tensor
    variant_index: Tensor
    blank: int = 0
    max_token: int = field(default=-1, repr=False)
    _layouts: dict = field(default_factory=dict, repr=False, compare=False)
    _copies: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_keywords(self) -> int:
        return self.variant_index.shape[0]

    def to(self, device: torch.device | str) -> KeywordBatch:
        """This batch on `device` (the copy is cached, with its layouts)."""
        device = torch.device(device)
        if self.tokens.device == device:
            return self
        if device not in self._copies:
            self._copies[device] = KeywordBatch(
                self.tokens.to(device), self.n_tokens.to(device), self.variant_index.to(device),
                self.blank, self.max_token,
            )
        return self._copies[device]

    def layout(self, vocab: int) -> tuple[Tensor, Tensor, Tensor]:
        """(column tokens (K*, C), entry penalties (K*, C, 3), key increments (K*, C)), cached.

        Columns, right-aligned so that every variant ends on the same last column: padding,
        a virtual "before" state, y_1, blank, y_2, ..., blank, y_L, an absorbing "after" state.
        Column tokens index the search's extended vocabulary: real ids, then vocab (the before
        state), vocab + 1 (padding, never possible), vocab + 2 (the after state). Penalties are
        0 / -inf for entering a column from two columns back (a skip, allowed only into a token
        that differs from the previous one), one back, itself.
        """
        if vocab not in self._layouts:
            self._layouts[vocab] = _layout(self.tokens, self.n_tokens, self.blank, vocab)
        return self._layouts[vocab]


# The tie-breaking key of a path packs two frame counts (each < 2**31) into one int64:
# key = keyword_frames * 2**31 - after_frames, so that a larger key means a longer keyword span,
# then fewer frames after it (a later end).
_UNIT = 1 << 31


def _layout(tokens: Tensor, n_tokens: Tensor, blank: int, vocab: int):
    n_var, n_tok = tokens.shape
    device = tokens.device
    n_cols = 2 * n_tok + 1  # 2L - 1 keyword states, before and after states
    col = torch.arange(n_cols, device=device)
    first = n_cols - 1 - (2 * n_tokens - 1)  # column of y_1 per variant
    rel = col - first[:, None]  # state index within the variant (-1: before state)
    is_after = (col == n_cols - 1).expand(n_var, n_cols)
    is_state = (rel >= 0) & ~is_after
    is_label = is_state & (rel % 2 == 0)
    tok_idx = (rel // 2).clamp(0, n_tok - 1)
    label = tokens.gather(1, tok_idx)
    code = torch.where(is_label, label, blank)
    code = torch.where(rel == -1, vocab, torch.where(rel < -1, vocab + 1, code))
    code = torch.where(is_after, vocab + 2, code)
    prev_label = tokens.gather(1, (tok_idx - 1).clamp(min=0))
    can_skip = is_label & (rel >= 2) & (label != prev_label)
    pen = torch.zeros((n_var, n_cols, 3), device=device)  # from two back, one back, itself
    pen[:, :, 0] = torch.where(can_skip, 0.0, float("-inf"))
    inc = torch.where(is_after, -1, torch.where(is_state, _UNIT, 0))
    return code, pen, inc


def prepare_keywords(
    keywords: Keywords, vocab_size: int | None = None, blank: int = 0, device=None
) -> KeywordBatch:
    """Validate and pad keywords (per keyword, a list of token-id variants) into a KeywordBatch.

    Raises ValueError for a keyword with no variant, an empty variant, a blank or (when
    ``vocab_size`` is given) an out-of-range token id.
    """
    rows: list[list[int]] = []
    index: list[list[int]] = []
    for k, variants in enumerate(keywords):
        if isinstance(variants, (str, bytes)) or len(variants) == 0:
            raise ValueError(
                f"keyword {k}: expected a list of token-id variants, got {variants!r} "
                "(use encode_pronunciations for phoneme symbols)"
            )
        index.append([])
        for m, var in enumerate(variants):
            if isinstance(var, (str, bytes, int)) or isinstance(var, Tensor) and var.dim() != 1:
                raise ValueError(
                    f"keyword {k}: each variant must be a list of token ids, got {var!r}"
                )
            ids = [int(x) for x in var]
            bad = [x for x in ids if x == blank or x < 0 or (vocab_size is not None
                                                              and x >= vocab_size)]
            if not ids or bad:
                raise ValueError(
                    f"keyword {k} variant {m}: token ids must be non-empty and in "
                    f"[0, {vocab_size if vocab_size is not None else 'V'}) other than the blank "
                    f"{blank}, got {ids}"
                )
            index[-1].append(len(rows))
            rows.append(ids)
    n_max = max((len(r) for r in rows), default=1)
    m_max = max((len(i) for i in index), default=1)
    tokens = torch.full((len(rows), n_max), blank, dtype=torch.long)
    for r, ids in enumerate(rows):
        tokens[r, : len(ids)] = torch.tensor(ids)
    variant_index = torch.full((len(index), m_max), -1, dtype=torch.long)
    for k, idx in enumerate(index):
        variant_index[k, : len(idx)] = torch.tensor(idx)
    n_tokens = torch.tensor([len(r) for r in rows], dtype=torch.long)
    max_token = max((max(r) for r in rows), default=-1)
    return KeywordBatch(tokens, n_tokens, variant_index, blank, max_token).to(device or "cpu")


def encode_pronunciations(
    pronunciations: str | Sequence[str | Sequence[str]],
) -> list[list[int]]:
    """One keyword's pronunciation variants as token ids of openkws' phoneme inventory.

    Each element is one variant, a string "T ER1 N" or a list of symbols ["T", "ER1", "N"]; a
    bare string is one variant. Unknown symbols raise ValueError (see parse_phonemes).
    """
    if isinstance(pronunciations, str):
        pronunciations = [pronunciations]
    if len(pronunciations) == 0:
        raise ValueError("a keyword needs at least one pronunciation")
    return [encode(parse_phonemes(p)) for p in pronunciations]


_STRESS_MAPS: dict[tuple[tuple[str, ...], str], tuple[Tensor, Tensor]] = {}


def _stress_map(phonemes: Sequence[str], device) -> tuple[Tensor, Tensor]:
    """(members (G, M) padded with -1, source (V,)) for the vowel groups of an inventory."""
    key = (tuple(phonemes), str(device))
    if key not in _STRESS_MAPS:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(phonemes):
            if is_vowel(p):
                groups.setdefault(strip_stress(p), []).append(i)
        groups = {g: ids for g, ids in groups.items() if len(ids) > 1}
        vocab = len(phonemes)
        m_max = max((len(ids) for ids in groups.values()), default=1)
        members = torch.full((len(groups), m_max), -1, dtype=torch.long)
        source = torch.arange(vocab)
        for g, ids in enumerate(groups.values()):
            members[g, : len(ids)] = torch.tensor(ids)
            source[ids] = vocab + g
        _STRESS_MAPS[key] = (members.to(device), source.to(device))
    return _STRESS_MAPS[key]


def collapse_stress(log_probs: Tensor, phonemes: Sequence[str] = PHONEMES) -> Tensor:
    """Stress-insensitive log-probs: each vowel's stress variants get logsumexp over them all.

    ``log_probs`` (..., V) with ``V == len(phonemes)``; ``phonemes[i]`` is the symbol of column i.
    AH0, AH1 and AH2 (and UW, UW0, UW1, UW2) all become log P(AH*) (resp. log P(UW*)); other
    columns are returned unchanged. The result no longer sums to one over V.
    """
    if log_probs.shape[-1] != len(phonemes):
        raise ValueError(
            f"log_probs have {log_probs.shape[-1]} columns but the inventory has "
            f"{len(phonemes)} phonemes"
        )
    members, source = _stress_map(phonemes, log_probs.device)
    if members.numel() == 0:
        return log_probs
    neg_inf = torch.tensor(float("-inf"), dtype=log_probs.dtype, device=log_probs.device)
    gathered = log_probs[..., members.clamp(min=0)]  # (..., G, M)
    gathered = torch.where(members >= 0, gathered, neg_inf)
    group = torch.logsumexp(gathered, dim=-1)  # (..., G)
    return torch.cat([log_probs, group], dim=-1)[..., source]


_LOWEST = torch.iinfo(torch.long).min
# Clips are searched in chunks so that the per-frame transition tensor stays under this many
# elements (about 256 MB in float32); a chunk is never smaller than one clip.
_MAX_ELEMENTS = 2**26


def _viterbi(trans: Tensor, keys: Tensor, start_open: Tensor) -> tuple[Tensor, Tensor]:
    """Viterbi over banded transitions; returns the final (score, key) of the last column.

    trans (T, N, C, 3): per frame, row and column, the score of entering the column from two
    columns back, one back, itself (last dimension), emission included; keys (N, C, 3): what
    that transition adds to the path's tie-breaking key. start_open (N, C): the columns open
    (score 0) before the first frame. (score, key) pairs are compared lexicographically.
    """
    _, n_rows, n_cols, width = trans.shape
    # Guard columns at the left make each column's predecessors one window of the state.
    alpha = trans.new_full((n_rows, n_cols + width - 1), float("-inf"))
    key = torch.zeros((n_rows, n_cols + width - 1), dtype=torch.long, device=trans.device)
    alpha_body, key_body = alpha[:, width - 1 :], key[:, width - 1 :]
    alpha_body.masked_fill_(start_open, 0.0)
    windows, key_windows = alpha.unfold(1, width, 1), key.unfold(1, width, 1)  # (N, C, 3) views
    best_now = alpha_body.unsqueeze(-1)
    for trans_t in trans:  # 6 small ops per frame; the loop is the search's whole cost
        cand = windows + trans_t
        key_cand = key_windows + keys
        torch.amax(cand, dim=-1, out=alpha_body)
        torch.amax(torch.where(cand == best_now, key_cand, _LOWEST), dim=-1, out=key_body)
    return alpha_body[:, -1].clone(), key_body[:, -1].clone()


def ctc_keyword_search(
    log_probs: Tensor,
    lengths: Tensor | Sequence[int] | None,
    keywords: Keywords | KeywordBatch,
    normalisation: str = "token",
    blank: int = 0,
) -> SearchResult:
    """Best free-span CTC path of every keyword in every clip (see the module docstring).

    log_probs (B, T, V) frame log-posteriors (any float dtype, computed in float32 or wider);
    lengths (B,) valid frames per clip (None: all T); keywords: per keyword a list of variants,
    each a list of token ids over the same vocabulary without the blank (or a KeywordBatch from
    prepare_keywords). normalisation: "token", "frame" or "posterior".
    Returns a SearchResult of (B, K) tensors on log_probs' device.

    Cost: one iteration of a few small tensor ops per frame of the longest clip, each over
    B x K* x (2 L_max + 1) x 3 elements; large batches are split into chunks of clips so that
    memory stays bounded (see _MAX_ELEMENTS).
    """
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    batch, frames, vocab = log_probs.shape
    device = log_probs.device
    if not 0 <= blank < vocab:
        raise ValueError(f"blank id {blank} outside the vocabulary [0, {vocab})")
    if isinstance(keywords, KeywordBatch):
        kw = keywords.to(device)
        if kw.blank != blank:
            raise ValueError(f"keywords were prepared with blank {kw.blank}, search uses {blank}")
        if kw.max_token >= vocab:
            raise ValueError(f"a keyword token id is outside the vocabulary [0, {vocab})")
    else:
        kw = prepare_keywords(keywords, vocab, blank, device)
    if lengths is None:
        lengths = torch.full((batch,), frames, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    len_min, len_max = (int(x) for x in torch.aminmax(lengths)) if batch else (0, 0)
    if len_min < 0 or len_max > frames:
        raise ValueError(f"lengths must lie in [0, {frames}], got {lengths.tolist()}")
    n_var, n_tok = kw.tokens.shape
    per_clip = (len_max + 1) * n_var * (2 * n_tok + 1) * 3
    if batch > 1 and batch * per_clip > _MAX_ELEMENTS:
        step = max(1, _MAX_ELEMENTS // per_clip)
        parts = [
            ctc_keyword_search(log_probs[i : i + step], lengths[i : i + step], kw,
                               normalisation, blank)
            for i in range(0, batch, step)
        ]
        return SearchResult(*(torch.cat([getattr(p, f.name) for p in parts])
                              for f in fields(SearchResult)))

    dtype = torch.promote_types(log_probs.dtype, torch.float32)
    lp = log_probs.to(dtype)
    valid = torch.arange(frames, device=device) < lengths[:, None]  # (B, T)
    best_frame = lp.amax(-1)  # (B, T) the unconstrained best path, frame by frame (NaN-aware)
    if bool(((torch.isnan(best_frame) | torch.isposinf(best_frame)) & valid).any()):
        raise ValueError("log_probs contain NaN or +inf within the valid frames")
    neg_inf = float("-inf")
    lp = lp.masked_fill(~valid[..., None], neg_inf)  # padding frames: nothing can be emitted
    best_frame = torch.where(valid & (best_frame > neg_inf), best_frame, 0.0)
    cost = lp - best_frame[..., None]  # <= 0, -inf outside the clip

    k_count = kw.num_keywords
    if n_var == 0 or batch == 0:
        empty_f = torch.zeros((batch, k_count), dtype=dtype, device=device)
        empty_l = torch.zeros((batch, k_count), dtype=torch.long, device=device)
        return SearchResult(empty_f, empty_f.clone(), empty_l, empty_l.clone(), empty_l.clone())

    code, pen, inc = kw.layout(vocab)
    n_cols = code.shape[1]
    # Extended vocabulary: the before state (0 on valid frames), padding (never), the after
    # state (0 always). One frame past the longest clip where only the after state lives, so
    # that every path that ended is read off it.
    n_frames = len_max + 1
    before = torch.zeros((), dtype=dtype, device=device).expand(batch, len_max)
    before = before.masked_fill(~valid[:, :len_max], neg_inf)[..., None]
    ext = torch.cat([cost[:, :len_max], before, before.new_full((batch, len_max, 2), neg_inf)], -1)
    ext = torch.nn.functional.pad(ext, (0, 0, 0, 1), value=neg_inf)
    ext[..., vocab + 2] = 0.0
    emit = ext.index_select(2, code.reshape(-1)).view(batch, n_frames, n_var, n_cols)
    emit = emit.transpose(0, 1)  # (F, B, K*, C)
    # Window order of the loop: from two columns back, one back, itself.
    trans = (emit[..., None] + pen.to(dtype)).reshape(n_frames, batch * n_var, n_cols, 3)
    keys = inc[:, :, None].expand(batch, n_var, n_cols, 3).reshape(batch * n_var, n_cols, 3)
    start_open = (code == vocab).repeat(batch, 1)
    ratio, key = _viterbi(trans, keys, start_open)
    # Unpack the key: after frames = n_frames - 1 - end, keyword frames = end - start + 1.
    ratio, key = ratio.view(batch, n_var), key.view(batch, n_var)
    after = (-key).remainder(_UNIT)
    end = n_frames - 1 - after
    start = end - (key + after).div(_UNIT, rounding_mode="floor") + 1
    found = ratio > neg_inf
    start = torch.where(found, start, 0)
    end = torch.where(found, end, 0)
    L = kw.n_tokens

    # Log-likelihood of the path = ratio + the unconstrained best over the same frames.
    csum = torch.nn.functional.pad(best_frame.cumsum(1), (1, 0))  # (B, T+1)
    span_best = csum.gather(1, (end + 1).clamp(max=frames)) - csum.gather(1, start)
    loglik = ratio + span_best

    if normalisation == "token":
        score = ratio / L.to(dtype)
    elif normalisation == "frame":
        score = ratio / (end - start + 1).to(dtype)
    else:  # posterior: mean over tokens of the token's best frame log-posterior in the span
        t_idx = torch.arange(frames, device=device)
        in_span = (t_idx >= start[..., None]) & (t_idx <= end[..., None])  # (B, K*, T)
        tok_lp = lp.transpose(1, 2)[:, kw.tokens.reshape(-1)].reshape(batch, n_var, n_tok, frames)
        tok_lp = tok_lp.masked_fill(~in_span[:, :, None, :], neg_inf)
        if frames:
            best_tok = tok_lp.amax(-1)  # (B, K*, n_tok)
        else:
            best_tok = tok_lp.new_full(tok_lp.shape[:3], neg_inf)
        tok_valid = torch.arange(n_tok, device=device) < L[:, None]
        best_tok = best_tok.masked_fill(~tok_valid, 0.0)
        score = best_tok.sum(-1) / L.to(dtype)

    found = found & torch.isfinite(score)
    score = score.masked_fill(~found, NO_MATCH_SCORE)
    loglik = loglik.masked_fill(~found, NO_MATCH_SCORE)
    start = start.masked_fill(~found, -1)
    end = end.masked_fill(~found, -1)

    # Best variant per keyword (first one on ties).
    vidx = kw.variant_index  # (K, M)
    per_kw = score[:, vidx.clamp(min=0)].masked_fill(vidx < 0, neg_inf)  # (B, K, M)
    best_score, best_m = per_kw.max(-1)  # (B, K)
    row = vidx.clamp(min=0).expand(batch, -1, -1).gather(2, best_m[..., None]).squeeze(2)

    def pick(x: Tensor) -> Tensor:
        return x.gather(1, row)

    return SearchResult(
        score=best_score, loglik=pick(loglik), start=pick(start), end=pick(end), variant=best_m
    )


@dataclass
class CTCKeywordSearch:
    """Configured CTC keyword search (the ``ctc`` head's scorer).

    normalisation -- "token", "frame" or "posterior" (see the module docstring);
    stress_insensitive -- apply :func:`collapse_stress` first (on by default: a G2P's stress
    digit should not decide a detection); phonemes -- the symbol of each log-prob column;
    blank -- the CTC blank id.
    """

    normalisation: str = "token"
    stress_insensitive: bool = True
    phonemes: tuple[str, ...] = field(default=PHONEMES)
    blank: int = 0
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}"
            )

    def prepare(
        self, keywords: Sequence[str | Sequence[str | Sequence[str]]] | Keywords, device=None
    ) -> KeywordBatch:
        """Pad keywords once: per keyword, token-id variants or pronunciations (strings).

        The last few keyword sets are cached, so calling the search again and again with the
        same keywords (a stream) does not re-encode them.
        """
        cache_key = (_freeze(keywords), str(device or "cpu"))
        batch = self._cache.pop(cache_key, None)
        if batch is None:
            ids = [encode_pronunciations(k) if _is_pronunciation(k) else k for k in keywords]
            batch = prepare_keywords(ids, len(self.phonemes), self.blank, device)
        self._cache[cache_key] = batch  # most recently used last
        while len(self._cache) > 16:
            self._cache.pop(next(iter(self._cache)))
        return batch

    def __call__(
        self,
        log_probs: Tensor,
        lengths: Tensor | Sequence[int] | None,
        keywords: Sequence[str | Sequence[str | Sequence[str]]] | Keywords | KeywordBatch,
    ) -> SearchResult:
        if self.stress_insensitive:
            log_probs = collapse_stress(log_probs, self.phonemes)
        if not isinstance(keywords, KeywordBatch):
            keywords = self.prepare(keywords, log_probs.device)
        return ctc_keyword_search(log_probs, lengths, keywords, self.normalisation, self.blank)


def _is_pronunciation(keyword) -> bool:
    """True for "T ER1 N" or ["T ER1 N", ["T", "ER0", "N"]]; False for token-id variants."""
    if isinstance(keyword, str):
        return True
    return len(keyword) > 0 and all(
        isinstance(v, str) or (len(v) > 0 and all(isinstance(s, str) for s in v))
        for v in keyword
    )


def _freeze(x):
    """Nested lists of strings / ints -> nested tuples (a cache key)."""
    if isinstance(x, Tensor):
        return tuple(x.tolist())
    if isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
        return int(x) if hasattr(x, "__index__") else x
    return tuple(_freeze(v) for v in x)
