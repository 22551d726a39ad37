"""Dynamic sequence partitioning (DSP): the monotonic text-to-audio alignment mask CED uses.

Given a similarity matrix S (m text tokens x n audio frames), DSP cuts the n frames into m
contiguous, ordered, non-empty segments, segment i going to token i, maximising the summed
similarity of the cells kept: exactly one True per column, at least one per row.

When n < m (more tokens than frames, e.g. a long random negative against short audio) no such
partition exists. The roles of the axes then swap: the m tokens are cut into n contiguous,
ordered, non-empty groups, group t going to frame t, again maximising the summed similarity.
Every token gets exactly one frame and every frame at least one token (a monotonic path with
steps (1, 0) and (1, 1)), so a column can hold several Trues. This is the mirror image of the
n >= m rule and agrees with it at n == m (the diagonal), so callers never need a special case.

The mask is a constant (a hard argmax), so everything runs under torch.no_grad.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def partition(sim: Tensor) -> Tensor:
    """DSP mask (m, n) bool for one similarity matrix sim (m, n); see the module docstring."""
    if sim.dim() != 2:
        raise ValueError(f"sim must be (m, n), got shape {tuple(sim.shape)}")
    m, n = sim.shape
    return partition_batch(sim[None], [m], [n])[0]


@torch.no_grad()
def partition_batch(
    sim: Tensor, text_lengths: Tensor | Sequence[int], audio_lengths: Tensor | Sequence[int]
) -> Tensor:
    """DSP masks (B, m, n) bool for padded sim (B, m, n); item b uses sim[b, :m_b, :n_b].

    Padded cells are False and never influence the result. Runs on sim's device.
    """
    if sim.dim() != 3:
        raise ValueError(f"sim must be (B, m, n), got shape {tuple(sim.shape)}")
    batch, m, n = sim.shape
    text_lengths = torch.as_tensor(text_lengths, dtype=torch.long, device=sim.device)
    audio_lengths = torch.as_tensor(audio_lengths, dtype=torch.long, device=sim.device)
    if text_lengths.shape != (batch,) or audio_lengths.shape != (batch,):
        raise ValueError(
            f"text_lengths and audio_lengths must have shape ({batch},), got "
            f"{tuple(text_lengths.shape)} and {tuple(audio_lengths.shape)}"
        )
    bad_text = (text_lengths < 1) | (text_lengths > m)
    if bool((bad_text | (audio_lengths < 1) | (audio_lengths > n)).any()):
        raise ValueError(
            f"lengths must be in [1, {m}] (text) and [1, {n}] (audio), got "
            f"{text_lengths.tolist()} and {audio_lengths.tolist()}"
        )
    valid = (torch.arange(m, device=sim.device) < text_lengths[:, None])[:, :, None] & (
        torch.arange(n, device=sim.device) < audio_lengths[:, None]
    )[:, None, :]
    if bool((~torch.isfinite(sim) & valid).any()):
        raise ValueError("sim contains NaN or infinite values within the valid cells")

    mask = torch.zeros(batch, m, n, dtype=torch.bool, device=sim.device)
    wide = audio_lengths >= text_lengths
    if bool(wide.all()):  # the common case: no indexing copies
        return _partition_rows(sim, text_lengths, audio_lengths)
    if bool(wide.any()):
        mask[wide] = _partition_rows(sim[wide], text_lengths[wide], audio_lengths[wide])
    tall = ~wide
    mask[tall] = _partition_rows(
        sim[tall].transpose(1, 2), audio_lengths[tall], text_lengths[tall]
    ).transpose(1, 2)
    return mask


def _partition_rows(sim: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Cut each item's cols into rows contiguous segments (requires cols >= rows >= 1).

    DP over columns, vectorised over batch and rows: D[i, t] = S[i, t] + max(D[i, t-1],
    D[i-1, t-1]), D[i, t] = -inf for t < i. Row i only depends on rows <= i and column t on
    columns <= t, so padding never leaks into an item's own (rows-1, cols-1) optimum.
    """
    batch, n_rows, n_cols = sim.shape
    sim = sim.to(torch.promote_types(sim.dtype, torch.float32))  # sum half precision in fp32
    neg_inf = float("-inf")
    score = torch.full((batch, n_rows), neg_inf, dtype=sim.dtype, device=sim.device)
    score[:, 0] = sim[:, 0, 0]
    # from_prev_row[t, b, i]: the segment of row i starts at column t (came from row i-1).
    from_prev_row = torch.zeros(n_cols, batch, n_rows, dtype=torch.bool, device=sim.device)
    for t in range(1, n_cols):
        prev_row = F.pad(score[:, :-1], (1, 0), value=neg_inf)
        step = prev_row > score  # strict: ties extend the current segment
        score = torch.where(step, prev_row, score) + sim[:, :, t]
        from_prev_row[t] = step

    mask = torch.zeros(batch, n_rows, n_cols, dtype=torch.bool, device=sim.device)
    items = torch.arange(batch, device=sim.device)
    row = rows - 1
    for t in range(n_cols - 1, -1, -1):
        active = t < cols
        # Inactive items write False into their own padded column, which stays False anyway.
        mask[items, row, t] = active
        if t:
            row = row - (from_prev_row[t, items, row] & active).long()
    return mask
