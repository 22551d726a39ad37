"""On-the-fly, seeded waveform augmentation that makes synthetic speech sound recorded.

One call of ``augment`` applies, each with its own probability, in the order a real recording
chain would: speed perturbation (tempo and pitch), pitch / vocal-tract-length perturbation (harmonics and
formants scaled together at unchanged tempo), room reverberation, additive noise (generated coloured
noise, babble from other utterances, or files from a noise folder), a telephone channel (8 kHz
band, 300-3400 Hz, optional G.711 mu-law) and gain. Everything draws from the caller's
``numpy.random.Generator``, so a seed gives the same audio every time.

Room impulse responses come from a folder of recorded ones (``rir_dir``) or are simulated once
per process with pyroomacoustics' image method (random shoebox rooms, RT60 drawn uniformly);
they are shifted so the direct path lands at sample 0, which keeps speech where its labels say.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soxr
from scipy.signal import butter, fftconvolve, sosfilt

from openkws.audio import load_audio

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class AugmentConfig:
    enabled: bool = True
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    pitch_prob: float = 0.4
    pitch_factor: list[float] = field(default_factory=lambda: [0.88, 1.12])  # frequency scale, tempo kept
    reverb_prob: float = 0.3
    rt60: list[float] = field(default_factory=lambda: [0.15, 0.8])  # seconds, simulated rooms
    rir_dir: str = ""  # folder of recorded impulse responses; empty = simulated rooms
    rir_pool_size: int = 64  # simulated rooms per process
    noise_prob: float = 0.5
    babble_prob: float = 0.3  # of the noisy cases, how many use babble instead of coloured noise
    noise_dir: str = ""  # folder of noise recordings; when set, half the non-babble noise comes from it
    snr_db: list[float] = field(default_factory=lambda: [5.0, 25.0])
    telephone_prob: float = 0.2
    mulaw_prob: float = 0.5  # of the telephone cases, how many also go through 8-bit mu-law
    gain_db: list[float] = field(default_factory=lambda: [-10.0, 6.0])
    seed: int = 0  # of the simulated room pool (the per-clip draws use the caller's generator)


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch together, like sox ``speed``)."""
    if factor == 1.0:
        return wave
    return soxr.resample(wave, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def pitch_shift(wave: np.ndarray, factor: float, n_fft: int = 512) -> np.ndarray:
    """Scale every frequency by ``factor`` at unchanged tempo: pitch and formants move together,
    as with a shorter (factor > 1) or longer vocal tract and a higher or lower voice. A phase
    vocoder: each output bin takes the magnitude and the instantaneous frequency (times
    ``factor``) of the input at bin / factor, and its phase is accumulated from that frequency."""
    if factor == 1.0 or len(wave) < n_fft:
        return wave
    hop = n_fft // 4
    window = np.hanning(n_fft + 1)[:-1]
    n_frames = 1 + (len(wave) - n_fft + hop - 1) // hop
    padded = np.pad(wave.astype(np.float64), (0, (n_frames - 1) * hop + n_fft - len(wave)))
    spec = np.fft.rfft(np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop] * window, axis=1)
    bins = np.arange(spec.shape[1])
    expected = 2 * np.pi * hop * bins / n_fft  # phase advance per hop of each bin's centre frequency
    phase = np.angle(spec)
    deviation = np.diff(phase, axis=0, prepend=phase[:1]) - expected
    inst_freq = expected + (deviation + np.pi) % (2 * np.pi) - np.pi  # radians per hop
    src = bins / factor
    lo = np.minimum(np.floor(src).astype(int), len(bins) - 1)
    hi = np.minimum(lo + 1, len(bins) - 1)
    frac = src - np.floor(src)
    inside = src <= bins[-1]
    mag = np.abs(spec)
    out_mag = (mag[:, lo] * (1 - frac) + mag[:, hi] * frac) * inside
    out_phase = np.cumsum(inst_freq[:, np.round(src).astype(int).clip(max=len(bins) - 1)] * factor, axis=0)
    out_phase += phase[:1, np.round(src).astype(int).clip(max=len(bins) - 1)] - out_phase[:1]
    frames = np.fft.irfft(out_mag * np.exp(1j * out_phase), n_fft, axis=1) * window
    out = np.zeros(len(padded))
    norm = np.zeros(len(padded))
    for i, frame in enumerate(frames):
        out[i * hop: i * hop + n_fft] += frame
        norm[i * hop: i * hop + n_fft] += window**2
    return (out / np.maximum(norm, 1e-3))[: len(wave)].astype(np.float32)


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


def simulate_rir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """Impulse response of a random shoebox room (3-10 m x 3-8 m x 2.4-4 m) with the given RT60,
    source and microphone at random places at least 0.5 m from the walls."""
    import pyroomacoustics as pra

    dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 40))
    room.add_source(rng.uniform(0.5, dims - 0.5))
    room.add_microphone(rng.uniform(0.5, dims - 0.5))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)


@functools.lru_cache(maxsize=4)
def rir_pool(rir_dir: str, size: int, rt60_low: float, rt60_high: float, seed: int) -> tuple[np.ndarray, ...]:
    """Impulse responses, each starting at its direct path (its largest peak) and scaled to unit
    energy: every file under ``rir_dir``, or ``size`` simulated rooms. Built once per process."""
    if rir_dir:
        files = sorted(p for p in Path(rir_dir).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"augment.rir_dir {rir_dir!r} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
        rirs = [load_audio(str(p)) for p in files]
    else:
        rng = np.random.default_rng([seed, 7919])
        rirs = [simulate_rir(rng, float(rng.uniform(rt60_low, rt60_high))) for _ in range(size)]
    pool = []
    for h in rirs:
        h = h[int(np.argmax(np.abs(h))):]
        pool.append((h / (np.sqrt(np.sum(h**2)) + 1e-12)).astype(np.float32))
    return tuple(pool)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` (direct path at sample 0), same length and RMS as the input."""
    wet = fftconvolve(wave, rir)[: len(wave)]
    return (wet * np.sqrt((np.mean(wave**2) + 1e-10) / (np.mean(wet**2) + 1e-10))).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _telephone_filter() -> np.ndarray:
    return butter(4, [300.0, 3400.0], btype="bandpass", fs=8000, output="sos")


def telephone(wave: np.ndarray, mulaw: bool) -> np.ndarray:
    """A narrow-band telephone channel: down to 8 kHz, 300-3400 Hz band-pass, optionally 8-bit
    G.711 mu-law companding, back up to 16 kHz (nothing is left above 4 kHz)."""
    narrow = sosfilt(_telephone_filter(), soxr.resample(wave, SAMPLE_RATE, 8000))
    if mulaw:
        peak = np.abs(narrow).max() + 1e-9
        x = narrow / peak
        coded = np.round(np.sign(x) * np.log1p(255 * np.abs(x)) / np.log(256) * 127) / 127
        narrow = np.sign(coded) * np.expm1(np.abs(coded) * np.log(256)) / 255 * peak
    out = soxr.resample(narrow.astype(np.float32), 8000, SAMPLE_RATE)
    return np.pad(out, (0, max(0, len(wave) - len(out))))[: len(wave)].astype(np.float32)


@functools.lru_cache(maxsize=4)
def _noise_files(noise_dir: str) -> tuple[Path, ...]:
    files = tuple(sorted(p for p in Path(noise_dir).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"augment.noise_dir {noise_dir!r} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


@functools.lru_cache(maxsize=256)
def _noise_recording(path: Path) -> np.ndarray:
    """A decoded noise file, kept: augmentation draws from the same files again and again."""
    return load_audio(str(path))


def noise_from_dir(noise_dir: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of a random noise file from a random offset (looped when it is shorter)."""
    files = _noise_files(noise_dir)
    noise = _noise_recording(files[int(rng.integers(len(files)))])
    if len(noise) == 0:
        return coloured_noise(n, rng, 0.0)
    start = int(rng.integers(len(noise)))
    return np.resize(np.roll(noise, -start), n).astype(np.float32)


def augment(wave: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
            babble: Callable[[int, np.random.Generator], np.ndarray] | None = None) -> np.ndarray:
    """One random augmentation of ``wave``. ``babble(n, rng)`` returns n samples of other speech."""
    if not cfg.enabled:
        return wave
    wave = speed_perturb(wave, float(rng.choice(cfg.speeds)))
    if rng.random() < cfg.pitch_prob:
        wave = pitch_shift(wave, float(rng.uniform(*cfg.pitch_factor)))
    if rng.random() < cfg.reverb_prob:
        pool = rir_pool(cfg.rir_dir, cfg.rir_pool_size, *cfg.rt60, cfg.seed)
        wave = reverberate(wave, pool[int(rng.integers(len(pool)))])
    if rng.random() < cfg.noise_prob:
        if babble is not None and rng.random() < cfg.babble_prob:
            noise = babble(len(wave), rng)
        elif cfg.noise_dir and rng.random() < 0.5:
            noise = noise_from_dir(cfg.noise_dir, len(wave), rng)
        else:
            noise = coloured_noise(len(wave), rng, float(rng.choice([0.0, 1.0, 2.0])))
        wave = add_noise(wave, noise, float(rng.uniform(*cfg.snr_db)))
    if rng.random() < cfg.telephone_prob:
        wave = telephone(wave, mulaw=bool(rng.random() < cfg.mulaw_prob))
    wave = wave * 10 ** (rng.uniform(*cfg.gain_db) / 20)
    peak = np.abs(wave).max()
    return (wave / peak * 0.99 if peak > 0.99 else wave).astype(np.float32)
