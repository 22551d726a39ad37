"""Log-mel front ends in plain torch (batched, any device), a streaming extractor whose output
equals the offline one, and SpecAugment.

Two kinds, named by ``FbankConfig.kind``; :class:`FbankConfig` travels inside every model file
(as a plain dict; files written before ``kind`` existed are "kaldi"), so a model is always fed
the features it was trained on. :func:`build_frontend` makes the module a config names.

- ``"kaldi"`` (the default, :class:`Fbank`): Kaldi's ``compute-fbank-feats`` defaults (povey
  window, DC removal, pre-emphasis 0.97, power spectrum, triangular filters on the mel scale,
  snip_edges=True, no dither), matching kaldi-native-fbank. Frame-local, hence streamable.
- ``"hama"`` (:class:`HamaLogMel`): the front end of hama 1.7.0's pretrained phoneme model:
  centred frames (reflect padding of 200 samples at each end of each clip), periodic Hann window,
  400-point DFT, hop 160, power, hama's own 201 x 80 mel matrix (a persistent buffer, so it
  travels in the state_dict), log(max(x, 1e-10)), rounded to float16 and back. T = N // 160 + 1
  frames (hama's engine also caps T at 3000 frames = 30 s; ours does not).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


FRONTEND_KINDS = ("kaldi", "hama")


@dataclass(frozen=True)
class FbankConfig:
    """Front-end settings. For ``kind="hama"`` only sample_rate, num_mel_bins, frame_length (the
    window = n_fft), frame_shift and n_fft are read; :meth:`hama` gives its values."""

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
    kind: str = "kaldi"  # "kaldi" (Fbank) | "hama" (HamaLogMel)

    def __post_init__(self):
        if self.kind not in FRONTEND_KINDS:
            raise ValueError(f"FbankConfig.kind={self.kind!r}; expected one of {list(FRONTEND_KINDS)}")

    @classmethod
    def hama(cls) -> "FbankConfig":
        """hama 1.7.0's front end (the unused Kaldi fields are set to neutral values)."""
        return cls(sample_rate=16000, num_mel_bins=80, frame_length=400, frame_shift=160, n_fft=400,
                   preemphasis=0.0, low_freq=0.0, high_freq=8000.0, input_scale=1.0, kind="hama")

    def to_dict(self) -> dict:
        return asdict(self)


def num_frames(num_samples: int | torch.Tensor, cfg: FbankConfig = FbankConfig()):
    """Frames produced from ``num_samples`` samples: Kaldi snip_edges=True for "kaldi",
    centred frames (``N // hop + 1``, none for an empty clip) for "hama"."""
    if cfg.kind == "hama":
        if isinstance(num_samples, torch.Tensor):
            return torch.where(num_samples > 0, torch.div(num_samples, cfg.frame_shift, rounding_mode="floor") + 1,
                               torch.zeros_like(num_samples))
        return num_samples // cfg.frame_shift + 1 if num_samples > 0 else 0
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
        if cfg.kind != "kaldi":
            raise ValueError(f"Fbank is the Kaldi front end; FbankConfig.kind={cfg.kind!r} (use build_frontend)")
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


HAMA_LOG_FLOOR = 1e-10


def periodic_hann_dft(n_fft: int) -> torch.Tensor:
    """(2 (n_fft//2 + 1), n_fft): rows ``w[n] cos(2 pi k n / N)`` then ``-w[n] sin(2 pi k n / N)``,
    periodic Hann ``w``, computed in float32 as hama's ``stft_real/imag_kernel`` were (they agree
    to 1 ulp; the rounding of the float32 angle is part of what the engine computes)."""
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float32)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float32)[:, None]
    n = torch.arange(n_fft, dtype=torch.float32)[None, :]
    angle = 2 * math.pi * k * n / n_fft
    return torch.cat([window * torch.cos(angle), -window * torch.sin(angle)])


def reflect_indices(lengths: torch.Tensor, pad: int, total: int) -> torch.Tensor:
    """(B, total) sample indices of each clip reflect-padded by ``pad`` at both of its own ends
    (edge sample not repeated, as numpy/torch "reflect"); positions past a clip's padded end
    are don't-care (valid indices into the clip)."""
    n = lengths.clamp(min=1)[:, None]
    s = (torch.arange(total, device=lengths.device) - pad)[None, :]
    period = (2 * (n - 1)).clamp(min=1)
    s = torch.remainder(s, period)  # reflection is periodic with period 2 (N - 1)
    s = torch.where(s >= n, period - s, s)
    return s.clamp(max=n - 1)


class HamaLogMel(nn.Module):
    """hama 1.7.0's log-mel (see the module docstring): ``(B, N)`` waveforms + lengths ->
    ``(B, T, 80)`` + lengths, each clip padded at its own end exactly as when alone; padding
    frames are zero.

    ``mel_fb`` (201, 80) is a persistent buffer: it comes from the model file; a fresh module
    takes it from the installed hama wheel when there is one (``pip install hama==1.7.0``)."""

    def __init__(self, cfg: FbankConfig = FbankConfig.hama(), mel_fb: torch.Tensor | None = None):
        super().__init__()
        if cfg.kind != "hama":
            raise ValueError(f"HamaLogMel needs FbankConfig.kind='hama', got {cfg.kind!r}")
        self.cfg = cfg
        self.register_buffer("dft", periodic_hann_dft(cfg.n_fft).T.contiguous(), persistent=False)  # (n_fft, 2F)
        self.register_buffer("mel_fb", torch.zeros(cfg.n_fft // 2 + 1, cfg.num_mel_bins))
        self._has_mel = False
        if mel_fb is None:
            mel_fb = _installed_hama_mel()
        if mel_fb is not None:
            self.set_mel_fb(mel_fb)

    @torch.no_grad()
    def set_mel_fb(self, mel_fb) -> None:
        mel_fb = torch.as_tensor(mel_fb, dtype=torch.float32)
        if tuple(mel_fb.shape) != tuple(self.mel_fb.shape):
            raise ValueError(f"mel matrix of shape {tuple(mel_fb.shape)}; expected {tuple(self.mel_fb.shape)}")
        self.mel_fb.copy_(mel_fb)
        self._has_mel = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "mel_fb" in state_dict:
            self._has_mel = True

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None):
        if not self._has_mel:
            raise RuntimeError("hama front end without its mel matrix: load it from a model file, or install "
                               "hama (pip install hama==1.7.0, or openkws[pretrained]) before building it")
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if lengths is None:
            lengths = torch.full((wave.shape[0],), wave.shape[1], dtype=torch.long, device=wave.device)
        # Full float32 even under autocast: bf16/fp16 matmuls would change the spectrum far more
        # than the float16 rounding of the log-mel that the pretrained weights expect.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            return self._forward(wave, lengths.to(wave.device))

    def _forward(self, wave: torch.Tensor, lengths: torch.Tensor):
        cfg = self.cfg
        pad = cfg.n_fft // 2
        max_frames = max(1, wave.shape[1] // cfg.frame_shift + 1)
        total = (max_frames - 1) * cfg.frame_shift + cfg.n_fft
        padded = wave.float().gather(1, reflect_indices(lengths, pad, total))
        frames = padded.unfold(-1, cfg.n_fft, cfg.frame_shift)  # (B, T, n_fft)
        spec = frames @ self.dft  # (B, T, 2F): real parts, then imaginary parts
        half = spec.shape[-1] // 2
        power = spec[..., :half].square() + spec[..., half:].square()
        feats = (power @ self.mel_fb).clamp(min=HAMA_LOG_FLOOR).log().half().float()
        feat_lengths = num_frames(lengths, cfg)
        mask = torch.arange(feats.shape[1], device=wave.device)[None, :] < feat_lengths[:, None]
        return feats * mask.unsqueeze(-1), feat_lengths


def _installed_hama_mel() -> torch.Tensor | None:
    """hama's mel matrix from the installed wheel, or None without hama."""
    try:
        from openkws.models.pretrained import hama_asset_path, read_hama_archive
        path = hama_asset_path()
    except ImportError:
        return None
    return torch.from_numpy(read_hama_archive(path, names=("mel_fb",))["mel_fb"])


def build_frontend(cfg: FbankConfig = FbankConfig()) -> nn.Module:
    """The front-end module a config names: :class:`Fbank` or :class:`HamaLogMel`."""
    return HamaLogMel(cfg) if cfg.kind == "hama" else Fbank(cfg)


def frontend_config(data: dict | FbankConfig | None) -> FbankConfig:
    """A model file's front-end dict (with or without ``kind``) -> FbankConfig."""
    if isinstance(data, FbankConfig):
        return data
    from openkws.config import from_dict
    return from_dict(FbankConfig, data, "frontend")


class StreamingFbank:
    """Feeds audio in chunks of any size; the frames it returns, concatenated, equal
    ``Fbank`` on the whole signal (frames depend only on their own 400 samples)."""

    def __init__(self, fbank: Fbank):
        if getattr(fbank.cfg, "kind", "kaldi") != "kaldi":
            raise ValueError(f"StreamingFbank needs a frame-local Kaldi fbank; the {fbank.cfg.kind!r} front end "
                             "centres (reflect-pads) its frames at the clip's ends")
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
