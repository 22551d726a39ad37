"""Kaldi-compatible 80-bin log-mel filterbank in plain torch (batched, any device), a streaming
extractor whose output equals the offline one, and SpecAugment.

The constants mirror Kaldi's ``compute-fbank-feats`` defaults (povey window, DC removal,
pre-emphasis 0.97, power spectrum, triangular filters on the mel scale, snip_edges=True, no
dither) so that features match kaldi-native-fbank; :class:`FbankConfig` travels inside every
model file, so a model is always fed the features it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class FbankConfig:
    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length: int = 400  # samples: 25 ms
    frame_shift: int = 160  # samples: 10 ms
    n_fft: int = 512  # frame_length rounded up to a power of two, as Kaldi does
    preemphasis: float = 0.97
    low_freq: float = 20.0
    high_freq: float = 8000.0
    # Kaldi computes on int16-scaled samples; scaling float audio the same way keeps log values
    # (and thus the floor below) identical to Kaldi's.
    input_scale: float = 32768.0

    def to_dict(self) -> dict:
        return asdict(self)


def num_frames(num_samples: int | torch.Tensor, cfg: FbankConfig = FbankConfig()):
    """Frames produced from ``num_samples`` samples (Kaldi snip_edges=True)."""
    if isinstance(num_samples, torch.Tensor):
        n = torch.div(num_samples - cfg.frame_length, cfg.frame_shift, rounding_mode="floor") + 1
        return n.clamp(min=0)
    return max(0, (num_samples - cfg.frame_length) // cfg.frame_shift + 1)


def _mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filterbank(cfg: FbankConfig) -> torch.Tensor:
    """(n_fft//2 + 1, num_mel_bins) Kaldi mel weights; triangles are linear in mel, not in Hz."""
    n_bins = cfg.n_fft // 2
    fft_mel = _mel(np.arange(n_bins) * cfg.sample_rate / cfg.n_fft)
    lo, hi = _mel(cfg.low_freq), _mel(cfg.high_freq)
    delta = (hi - lo) / (cfg.num_mel_bins + 1)
    weights = np.zeros((n_bins + 1, cfg.num_mel_bins))  # the Nyquist bin keeps weight 0, as in Kaldi
    for b in range(cfg.num_mel_bins):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (fft_mel - left) / (center - left)
        down = (right - fft_mel) / (right - center)
        weights[:n_bins, b] = np.clip(np.minimum(up, down), 0.0, None)
    return torch.tensor(weights, dtype=torch.float32)


def povey_window(length: int) -> torch.Tensor:
    n = torch.arange(length, dtype=torch.float64)
    return ((0.5 - 0.5 * torch.cos(2 * math.pi * n / (length - 1))) ** 0.85).float()


class Fbank(nn.Module):
    """Batched log-mel filterbank: ``(B, N)`` waveforms + lengths -> ``(B, T, 80)`` + lengths."""

    def __init__(self, cfg: FbankConfig = FbankConfig()):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", povey_window(cfg.frame_length), persistent=False)
        self.register_buffer("mel", mel_filterbank(cfg), persistent=False)

    def frames_to_fbank(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., frame_length) raw frames -> (..., num_mel_bins) log-mel energies."""
        cfg = self.cfg
        x = frames.float() * cfg.input_scale
        x = x - x.mean(dim=-1, keepdim=True)
        # Kaldi pre-emphasis within each frame: the first sample is its own predecessor.
        x = torch.cat([x[..., :1] * (1 - cfg.preemphasis), x[..., 1:] - cfg.preemphasis * x[..., :-1]], -1)
        x = x * self.window
        power = torch.fft.rfft(x, n=cfg.n_fft).abs().pow(2)
        energies = power @ self.mel
        return energies.clamp(min=torch.finfo(torch.float32).eps).log()

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        cfg = self.cfg
        if wave.shape[1] < cfg.frame_length:
            wave = nn.functional.pad(wave, (0, cfg.frame_length - wave.shape[1]))
        frames = wave.unfold(-1, cfg.frame_length, cfg.frame_shift)  # (B, T, frame_length)
        feats = self.frames_to_fbank(frames)
        feat_lengths = num_frames(lengths.to(wave.device), cfg)
        mask = torch.arange(feats.shape[1], device=wave.device)[None, :] < feat_lengths[:, None]
        return feats * mask.unsqueeze(-1), feat_lengths


class StreamingFbank:
    """Feeds audio in chunks of any size; the frames it returns, concatenated, equal
    ``Fbank`` on the whole signal (frames depend only on their own 400 samples)."""

    def __init__(self, fbank: Fbank):
        self.fbank = fbank
        self.reset()

    def reset(self) -> None:
        self._buffer = torch.zeros(0)

    @torch.no_grad()
    def accept(self, chunk: torch.Tensor) -> torch.Tensor:
        """Append float samples; return the new complete frames as ``(T_new, num_mel_bins)``."""
        cfg = self.fbank.cfg
        self._buffer = torch.cat([self._buffer, chunk.float().reshape(-1).to(self._buffer.device)])
        n = num_frames(self._buffer.numel(), cfg)
        if n == 0:
            return torch.zeros(0, cfg.num_mel_bins)
        frames = self._buffer.unfold(0, cfg.frame_length, cfg.frame_shift)[:n]
        self._buffer = self._buffer[n * cfg.frame_shift:]
        return self.fbank.frames_to_fbank(frames)


@dataclass
class SpecAugmentConfig:
    freq_masks: int = 2
    freq_width: int = 10
    time_masks: int = 2
    time_width_ratio: float = 0.05  # of each utterance's length
    max_time_width: int = 40


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, cfg: SpecAugmentConfig = SpecAugmentConfig(),
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Mask random frequency bands and time spans (set to each utterance's mean), per utterance."""
    out = feats.clone()
    B, T, F = feats.shape

    def rand(high: int) -> int:
        return int(torch.randint(0, max(1, high), (1,), generator=generator))

    for b in range(B):
        n = int(lengths[b])
        if n == 0:
            continue
        fill = out[b, :n].mean()
        for _ in range(cfg.freq_masks):
            w = rand(cfg.freq_width + 1)
            f0 = rand(F - w + 1)
            out[b, :n, f0:f0 + w] = fill
        tw = min(cfg.max_time_width, int(cfg.time_width_ratio * n))
        for _ in range(cfg.time_masks):
            w = rand(tw + 1)
            t0 = rand(n - w + 1)
            out[b, t0:t0 + w, :] = fill
    return out
