"""On-the-fly, seeded waveform augmentation: speed perturbation, additive noise (generated
coloured noise or babble from other utterances) and gain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soxr

SAMPLE_RATE = 16000


@dataclass
class AugmentConfig:
    enabled: bool = True
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    noise_prob: float = 0.5
    babble_prob: float = 0.3  # of the noisy cases, how many use babble instead of coloured noise
    snr_db: list[float] = field(default_factory=lambda: [5.0, 25.0])
    gain_db: list[float] = field(default_factory=lambda: [-10.0, 6.0])


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, like sox ``speed``)."""
    if factor == 1.0:
        return wave
    return soxr.resample(wave, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    signal_power = np.mean(wave**2) + 1e-10
    noise_power = np.mean(noise**2) + 1e-10
    return wave + noise * np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))


def augment(wave: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
            babble: Callable[[int, np.random.Generator], np.ndarray] | None = None) -> np.ndarray:
    """One random augmentation of ``wave``. ``babble(n, rng)`` returns n samples of other speech."""
    if not cfg.enabled:
        return wave
    wave = speed_perturb(wave, float(rng.choice(cfg.speeds)))
    if rng.random() < cfg.noise_prob:
        if babble is not None and rng.random() < cfg.babble_prob:
            noise = babble(len(wave), rng)
        else:
            noise = coloured_noise(len(wave), rng, float(rng.choice([0.0, 1.0, 2.0])))
        wave = add_noise(wave, noise, float(rng.uniform(*cfg.snr_db)))
    wave = wave * 10 ** (rng.uniform(*cfg.gain_db) / 20)
    peak = np.abs(wave).max()
    return (wave / peak * 0.99 if peak > 0.99 else wave).astype(np.float32)
