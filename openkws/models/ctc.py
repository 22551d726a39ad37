"""CTC output layer, greedy decoding and Viterbi forced alignment (plain torch, batched).

Token id 0 is the CTC blank in openkws (forced alignment also takes another blank id). Frame
spans are (first, last) frame indices, both inclusive; blank frames belong to no token.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLANK = 0


class CTCHead(nn.Module):
    """Linear projection of encoder frames to per-frame log-probabilities over the vocabulary."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)

    def forward(self, enc: Tensor) -> Tensor:
        """enc (B, T, D) -> log_probs (B, T, V), always float32 or wider (stable under AMP)."""
        logits = self.proj(enc)
        return logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)

    def loss(
        self,
        log_probs: Tensor,
        lengths: Tensor | Sequence[int],
        targets: Tensor | Sequence[Sequence[int]],
        target_lengths: Tensor | Sequence[int] | None = None,
    ) -> Tensor:
        """CTC loss (blank=0, zero_infinity) of log_probs (B, T, V) with `lengths` valid frames.

        `targets` is a list of token-id lists, or a padded (B, L) tensor plus `target_lengths`.
        Normalisation: each utterance's negative log-likelihood is divided by its target length,
        then averaged over utterances (F.ctc_loss reduction="mean"), so long transcripts do not
        dominate the batch.
        """
        if log_probs.dim() != 3:
            raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
        device = log_probs.device
        if isinstance(targets, Tensor):
            if target_lengths is None:
                raise ValueError("padded target tensor needs target_lengths")
            padded = targets.to(device=device, dtype=torch.long)
        else:
            if target_lengths is not None:
                raise ValueError("target_lengths is implied by a list of target lists; pass None")
            padded, target_lengths = _pad(targets, device)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
        target_lengths = torch.as_tensor(target_lengths, dtype=torch.long, device=device)
        if int(lengths.max()) > log_probs.shape[1]:
            raise ValueError(f"a frame length exceeds the {log_probs.shape[1]} frames of log_probs")
        in_target = torch.arange(padded.shape[1], device=device) < target_lengths[:, None]
        if bool((in_target & ((padded <= BLANK) | (padded >= log_probs.shape[2]))).any()):
            raise ValueError(
                f"targets must be token ids in [1, {log_probs.shape[2]}) (0 is the blank)"
            )
        return F.ctc_loss(
            log_probs.transpose(0, 1), padded, lengths, target_lengths,
            blank=BLANK, reduction="mean", zero_infinity=True,
        )


def _pad(seqs: Sequence[Sequence[int]], device: torch.device) -> tuple[Tensor, Tensor]:
    """List of token lists -> padded (B, max(L, 1)) long tensor (pad = blank) and lengths."""
    lens = [len(s) for s in seqs]
    out = torch.full((len(seqs), max(lens, default=0) or 1), BLANK, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out.to(device), torch.tensor(lens, dtype=torch.long, device=device)


def _frame_lengths(log_probs: Tensor, lengths: Tensor | Sequence[int] | None) -> Tensor:
    batch, frames = log_probs.shape[:2]
    if lengths is None:
        return torch.full((batch,), frames, dtype=torch.long, device=log_probs.device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=log_probs.device)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if bool(((lengths < 0) | (lengths > frames)).any()):
        raise ValueError(f"lengths must lie in [0, {frames}], got {lengths.tolist()}")
    return lengths


def greedy_segments(
    log_probs: Tensor, lengths: Tensor | Sequence[int] | None = None
) -> list[list[tuple[int, int, int]]]:
    """Best-path CTC decoding with frame runs: per utterance, (token, first, last) per token.

    A token is emitted for each maximal run of identical non-blank argmax frames; (first, last) is
    that run (the phoneme interval CED averages into its P2V local vectors).
    """
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    lengths = _frame_lengths(log_probs, lengths)
    frames = log_probs.shape[1]
    ids = log_probs.argmax(-1)
    # Padding frames become blank so that runs end at each utterance's own length.
    ids = ids.masked_fill(torch.arange(frames, device=ids.device) >= lengths[:, None], BLANK)
    starts = ids != F.pad(ids[:, :-1], (1, 0), value=-1)
    ends = ids != F.pad(ids[:, 1:], (0, 1), value=-1)
    emitted = ids != BLANK
    # Row-major nonzero keeps the k-th run start paired with the k-th run end.
    start_bt = (starts & emitted).nonzero().tolist()
    end_t = (ends & emitted).nonzero()[:, 1].tolist()
    tokens = ids[starts & emitted].tolist()
    out: list[list[tuple[int, int, int]]] = [[] for _ in range(log_probs.shape[0])]
    for (b, first), last, tok in zip(start_bt, end_t, tokens):
        out[b].append((tok, first, last))
    return out


def greedy_decode(
    log_probs: Tensor, lengths: Tensor | Sequence[int] | None = None
) -> list[list[int]]:
    """Best-path CTC decoding: argmax per frame, collapse repeats, drop blanks."""
    return [[tok for tok, _, _ in segs] for segs in greedy_segments(log_probs, lengths)]


def _check_alignable(num_frames: int, targets: Sequence[int], vocab: int, blank: int) -> None:
    """Raise ValueError unless `targets` can be CTC-aligned to `num_frames` frames."""
    if len(targets) == 0:
        raise ValueError("forced alignment needs at least one target token, got none")
    bad = [x for x in targets if x == blank or not 0 <= x < vocab]
    if bad:
        raise ValueError(
            f"targets must be token ids in [0, {vocab}) other than the blank {blank}, got {bad[:5]}"
        )
    # CTC must put a blank between two equal adjacent labels, costing one extra frame each.
    repeats = sum(a == b for a, b in zip(targets[:-1], targets[1:]))
    if num_frames < len(targets) + repeats:
        raise ValueError(
            f"{num_frames} frames are too few to align {len(targets)} targets with {repeats} "
            f"adjacent repeats: CTC needs at least {len(targets) + repeats} frames"
        )


def forced_align(
    log_probs: Tensor, targets: Sequence[int], blank: int = BLANK
) -> list[tuple[int, int]]:
    """Viterbi CTC alignment of one utterance: log_probs (T, V), targets (no blanks).

    Returns (first, last) frame of each target token, in order, on the most probable CTC path
    that emits exactly `targets`. Raises ValueError if T is too short or targets are invalid.
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (T, V), got shape {tuple(log_probs.shape)}")
    targets = [int(x) for x in targets]
    # Checked here too so that errors do not carry the batch version's "item 0:" prefix.
    _check_alignable(log_probs.shape[0], targets, log_probs.shape[1], blank)
    # One implementation for both entry points guarantees identical results and tie-breaking.
    return forced_align_batch(
        log_probs[None], [log_probs.shape[0]], torch.tensor([targets]), [len(targets)], blank
    )[0]


def forced_align_batch(
    log_probs: Tensor,
    input_lengths: Tensor | Sequence[int],
    targets: Tensor | Sequence[Sequence[int]],
    target_lengths: Tensor | Sequence[int],
    blank: int = BLANK,
) -> list[list[tuple[int, int]]]:
    """Batched Viterbi CTC alignment on log_probs' device; loops over time only.

    log_probs (B, T, V); input_lengths (B,) valid frames; targets padded (B, L) (padding value
    ignored); target_lengths (B,). Returns per item the (first, last) frame of each target token.
    Ties between equally good predecessors prefer stay > advance > skip, and the path ends on the
    final blank unless ending on the last label is strictly better.
    """
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    batch, frames, vocab = log_probs.shape
    device = log_probs.device
    input_lengths = torch.as_tensor(input_lengths, dtype=torch.long, device=device)
    targets = torch.as_tensor(targets, dtype=torch.long, device=device)
    target_lengths = torch.as_tensor(target_lengths, dtype=torch.long, device=device)
    if (
        input_lengths.shape != (batch,) or target_lengths.shape != (batch,)
        or targets.dim() != 2 or targets.shape[0] != batch
    ):
        raise ValueError(
            f"expected input_lengths ({batch},), targets ({batch}, L), target_lengths ({batch},); "
            f"got {tuple(input_lengths.shape)}, {tuple(targets.shape)}, "
            f"{tuple(target_lengths.shape)}"
        )
    n_tok = targets.shape[1]
    in_lens, tgt_lens, tgt_rows = input_lengths.tolist(), target_lengths.tolist(), targets.tolist()
    for b in range(batch):
        if not 1 <= in_lens[b] <= frames or not 0 <= tgt_lens[b] <= n_tok:
            raise ValueError(
                f"item {b}: input length {in_lens[b]} must be in [1, {frames}] and target length "
                f"{tgt_lens[b]} in [1, {n_tok}]"
            )
        try:
            _check_alignable(in_lens[b], tgt_rows[b][: tgt_lens[b]], vocab, blank)
        except ValueError as err:
            raise ValueError(f"item {b}: {err}") from None
    frame_valid = torch.arange(frames, device=device) < input_lengths[:, None]
    if bool((torch.isnan(log_probs).any(-1) & frame_valid).any()):
        raise ValueError("log_probs contain NaN within the valid frames")

    # Extended label sequence: blank, y1, blank, y2, ..., yL, blank (padding tokens -> blank).
    tok_valid = torch.arange(n_tok, device=device) < target_lengths[:, None]
    tokens = targets.masked_fill(~tok_valid, blank)
    n_states = 2 * n_tok + 1
    ext = torch.full((batch, n_states), blank, dtype=torch.long, device=device)
    ext[:, 1::2] = tokens
    # Skipping the blank between two labels is only allowed when the labels differ.
    can_skip = torch.zeros(batch, n_states, dtype=torch.bool, device=device)
    can_skip[:, 3::2] = tokens[:, 1:] != tokens[:, :-1]
    emit = log_probs.gather(2, ext[:, None, :].expand(batch, frames, n_states))
    emit = emit.to(torch.promote_types(emit.dtype, torch.float32))  # accumulate fp16 in fp32

    neg_inf = float("-inf")
    alpha = torch.full((batch, n_states), neg_inf, dtype=emit.dtype, device=device)
    alpha[:, :2] = emit[:, 0, :2]
    last_frame = input_lengths - 1
    final = alpha.clone()  # alpha at each item's own last frame
    back = torch.zeros(frames, batch, n_states, dtype=torch.int8, device=device)  # 0 stay, 1, 2
    for t in range(1, frames):
        best, step = alpha, torch.zeros_like(back[t])
        advance = F.pad(alpha[:, :-1], (1, 0), value=neg_inf)
        skip = F.pad(alpha[:, :-2], (2, 0), value=neg_inf).masked_fill(~can_skip, neg_inf)
        for k, cand in ((1, advance), (2, skip)):
            better = cand > best  # strict: earlier candidates win ties
            best = torch.where(better, cand, best)
            step = step.masked_fill(better, k)
        alpha = best + emit[:, t]
        back[t] = step
        final = torch.where((last_frame == t)[:, None], alpha, final)

    end_blank = 2 * target_lengths
    score_blank = final.gather(1, end_blank[:, None]).squeeze(1)
    score_label = final.gather(1, (end_blank - 1)[:, None]).squeeze(1)
    state = torch.where(score_label > score_blank, end_blank - 1, end_blank)
    impossible = torch.maximum(score_blank, score_label) == neg_inf
    if bool(impossible.any()):
        raise ValueError(
            "no CTC path with non-zero probability for item(s) "
            f"{impossible.nonzero()[:, 0].tolist()}"
        )

    # Backtrack every item from its own last frame; padded frames keep state -1.
    path = torch.full((batch, frames), -1, dtype=torch.long, device=device)
    rows = torch.arange(batch, device=device)
    for t in range(frames - 1, -1, -1):
        active = t <= last_frame
        path[:, t] = torch.where(active, state, -1)
        if t:
            state = state - back[t, rows, state].long() * active

    # Odd extended states are labels: state 2j+1 is target j. Reduce frames to (first, last).
    on_label = (path >= 0) & (path % 2 == 1)
    token_of_frame = torch.where(on_label, (path - 1) // 2, n_tok)  # n_tok: bucket for blanks
    frame_idx = torch.arange(frames, device=device).expand(batch, frames)
    first = torch.full((batch, n_tok + 1), frames, dtype=torch.long, device=device)
    last = torch.full((batch, n_tok + 1), -1, dtype=torch.long, device=device)
    first = first.scatter_reduce(1, token_of_frame, frame_idx, "amin")[:, :n_tok].tolist()
    last = last.scatter_reduce(1, token_of_frame, frame_idx, "amax")[:, :n_tok].tolist()
    return [list(zip(first[b][: tgt_lens[b]], last[b][: tgt_lens[b]])) for b in range(batch)]


def word_spans(
    phone_spans: Sequence[tuple[int, int]], word_phone_counts: Sequence[int]
) -> list[tuple[int, int]]:
    """Word (first, last) frames from consecutive phoneme spans and each word's phoneme count."""
    if any(c < 1 for c in word_phone_counts):
        raise ValueError(
            f"every word needs at least one phoneme, got counts {list(word_phone_counts)}"
        )
    if sum(word_phone_counts) != len(phone_spans):
        raise ValueError(
            f"word phoneme counts sum to {sum(word_phone_counts)} but there are "
            f"{len(phone_spans)} phoneme spans"
        )
    out, start = [], 0
    for count in word_phone_counts:
        out.append((phone_spans[start][0], phone_spans[start + count - 1][1]))
        start += count
    return out
