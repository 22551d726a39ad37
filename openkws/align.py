"""Stage 3: CTC forced alignment of a corpus with the trained acoustic model, giving phoneme spans
(for the P2V table) and word spans in seconds (for cutting LibriPhrase-style phrases).

    openkws align --acoustic exp/ctc/best_model.pt --manifest data/train.jsonl \
        --p2v exp/p2v.pt --word-alignments exp/align/train.jsonl
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from openkws.data.dataset import WaveformStore, duration_batches, pad_waves
from openkws.data.manifest import Utterance
from openkws.metrics import edit_distance
from openkws.models.ctc import forced_align_batch, greedy_decode
from openkws.text import encode, to_word_phonemes

@dataclass
class Aligned:
    index: int  # position in the manifest
    enc: torch.Tensor  # (n, d) encoder output
    targets: list[int]  # phoneme ids
    spans: list[tuple[int, int]]  # (first, last) encoder frame of each phoneme


@dataclass
class AlignStats:
    utterances: int = 0
    aligned: int = 0
    skipped_per: int = 0  # greedy PER above max_per: alignment not trusted
    skipped_short: int = 0  # fewer frames than CTC needs


@torch.no_grad()
def align_corpus(model, utts: Sequence[Utterance], store: WaveformStore | None = None, device="cpu",
                 max_per: float | None = 0.5, batch_seconds: float = 120.0,
                 stats: AlignStats | None = None) -> Iterator[Aligned]:
    """Force-align every utterance of ``utts`` to its reference phonemes."""
    model.eval().to(device)
    store = store or WaveformStore(utts, cache=False)
    stats = stats if stats is not None else AlignStats()
    for ids in duration_batches([u.duration for u in utts], batch_seconds, 64, seed=0, shuffle=False):
        wave, lengths = pad_waves([store[i] for i in ids])
        enc, enc_lengths, log_probs = model.encode(*model.features(wave.to(device), lengths.to(device)))
        targets = [encode(utts[i].phonemes) for i in ids]
        hyps = greedy_decode(log_probs, enc_lengths)
        keep = []
        for b, (tgt, hyp) in enumerate(zip(targets, hyps)):
            repeats = sum(x == y for x, y in zip(tgt[:-1], tgt[1:]))
            if int(enc_lengths[b]) < len(tgt) + repeats:
                stats.skipped_short += 1
            elif max_per is not None and edit_distance(tgt, hyp) / len(tgt) > max_per:
                stats.skipped_per += 1
            else:
                keep.append(b)
        stats.utterances += len(ids)
        if not keep:
            continue
        tgt_pad = torch.zeros(len(keep), max(len(targets[b]) for b in keep), dtype=torch.long)
        for row, b in enumerate(keep):
            tgt_pad[row, : len(targets[b])] = torch.tensor(targets[b])
        spans = forced_align_batch(log_probs[keep], enc_lengths[keep], tgt_pad, [len(targets[b]) for b in keep])
        for row, b in enumerate(keep):
            stats.aligned += 1
            yield Aligned(ids[b], enc[b, : int(enc_lengths[b])].float().cpu(), targets[b], spans[row])


def word_segments(utt: Utterance, spans: list[tuple[int, int]], frame_seconds: float) -> list[tuple[str, float, float]]:
    """(word, start_s, end_s) for each word of ``utt`` from its phoneme spans (encoder frames of
    ``frame_seconds``: the acoustic model's ``frame_samples`` / 16 kHz)."""
    words = to_word_phonemes(utt.text)
    if sum(len(p) for _, p in words) != len(spans):
        raise ValueError(f"{utt.id}: text has {sum(len(p) for _, p in words)} phonemes but "
                         f"{len(spans)} were aligned (manifest phonemes differ from the text's G2P)")
    out, k = [], 0
    for word, phones in words:
        first, last = spans[k][0], spans[k + len(phones) - 1][1]
        out.append((word, round(first * frame_seconds, 3), round((last + 1) * frame_seconds, 3)))
        k += len(phones)
    return out
