"""Waveform access and duration-bucketed batching shared by every trainer."""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from openkws.audio import load_audio
from openkws.data.manifest import Utterance


class WaveformStore:
    """The waveforms of a manifest. With ``cache=True`` they are read once and kept in memory as
    int16 (an hour of 16 kHz audio is 115 MB), which keeps small-corpus training off the disk."""

    def __init__(self, utts: Sequence[Utterance], cache: bool = True, desc: str = "loading audio"):
        self.utts = list(utts)
        self._cache: list[np.ndarray] | None = None
        if cache:
            self._cache = [_to_int16(load_audio(u.path)) for u in tqdm(self.utts, desc=desc, leave=False)]

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[i].astype(np.float32) / 32768.0
        return load_audio(self.utts[i].path)


def _to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def duration_batches(durations: Sequence[float], max_seconds: float, max_items: int, seed: int,
                     shuffle: bool = True) -> list[list[int]]:
    """Group utterances of similar length into batches of at most ``max_seconds`` of padded audio.

    Sorting by duration (with a seeded jitter so buckets differ between epochs) keeps padding low;
    the batch order is shuffled. Same seed -> same batches, which makes resumption exact.
    """
    rng = random.Random(seed)
    order = sorted(range(len(durations)), key=lambda i: durations[i] * (1 + 0.1 * rng.random() if shuffle else 1))
    batches, current, longest = [], [], 0.0
    for i in order:
        longest_if_added = max(longest, durations[i])
        if current and (longest_if_added * (len(current) + 1) > max_seconds or len(current) >= max_items):
            batches.append(current)
            current, longest_if_added = [], durations[i]
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def pad_waves(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return out, lengths
