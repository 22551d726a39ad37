"""Audio loading: the one place where dtypes, channel layouts and sample rates are converted.

Everything downstream of :func:`load_audio` sees float32 mono at 16 kHz with values in about
[-1, 1]. Bad input (missing or corrupt file, empty signal, NaN/inf, wrong rank, odd dtype) is
rejected here with a message that names the source, instead of failing deep inside torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
# An array dimension at most this long is taken to be the channel axis of a 2-D array.
_MAX_CHANNELS = 16

AudioSource = Union[str, os.PathLike, np.ndarray, "torch.Tensor"]  # noqa: F821


class AudioError(ValueError):
    """Audio that cannot be used, with the source named in the message."""


def load_audio(src: AudioSource, sample_rate: int | None = None) -> np.ndarray:
    """Return ``src`` as a float32, 16 kHz, mono, 1-D numpy array.

    ``src`` is a path to anything soundfile reads (WAV, FLAC, OGG, MP3), a numpy array or a torch
    tensor. Arrays are float (taken as [-1, 1]) or integer PCM (int16, int32, uint8), 1-D or 2-D
    (channels are averaged; either axis may be the channel axis). ``sample_rate`` is the rate of an
    array or tensor (default 16000); for a file the file's own rate is used, and a different
    ``sample_rate`` is an error.
    """
    if isinstance(src, (str, os.PathLike)):
        audio, rate, name = _read_file(Path(src), sample_rate)
    else:
        name = f"<{type(src).__name__} input>"
        audio = _to_numpy(src, name)
        rate = SAMPLE_RATE if sample_rate is None else int(sample_rate)
        if rate <= 0:
            raise AudioError(f"{name}: sample_rate must be positive, got {sample_rate}")
        audio = _to_float(audio, name)
    if audio.size == 0:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    audio = _to_mono(audio, name)
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: audio contains NaN or infinite values")
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _read_file(path: Path, sample_rate: int | None) -> tuple[np.ndarray, int, str]:
    name = str(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {name}")
    if path.is_dir():
        raise AudioError(f"{name}: is a directory, not an audio file")
    try:
        audio, rate = sf.read(name, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{name}: cannot read audio (corrupt or unsupported format): {e}") from e
    if sample_rate is not None and int(sample_rate) != rate:
        raise AudioError(f"{name}: file is {rate} Hz but sample_rate={sample_rate} was given; "
                         "leave sample_rate unset for files")
    return audio.T, rate, name  # (channels, samples)


def _to_numpy(src, name: str) -> np.ndarray:
    if isinstance(src, np.ndarray):
        return src
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(src, torch.Tensor):
        return src.detach().cpu().numpy()
    if isinstance(src, (list, tuple)):
        return np.asarray(src)
    raise AudioError(f"{name}: expected a path, numpy array or torch tensor, got {type(src).__name__}")


def _to_float(audio: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(audio.dtype, np.floating):
        return audio.astype(np.float32, copy=False)
    if audio.dtype == np.int16:
        return audio.astype(np.float32) / 32768.0
    if audio.dtype == np.int32:
        return audio.astype(np.float32) / 2147483648.0
    if audio.dtype == np.uint8:
        return (audio.astype(np.float32) - 128.0) / 128.0
    raise AudioError(f"{name}: unsupported sample dtype {audio.dtype} "
                     "(use float, int16, int32 or uint8)")


def _to_mono(audio: np.ndarray, name: str) -> np.ndarray:
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise AudioError(f"{name}: expected 1-D (samples) or 2-D (channels x samples) audio, "
                         f"got shape {tuple(audio.shape)}")
    rows, cols = audio.shape
    if rows <= _MAX_CHANNELS and rows <= cols:
        return audio.mean(axis=0)
    if cols <= _MAX_CHANNELS:
        return audio.mean(axis=1)
    raise AudioError(f"{name}: cannot tell the channel axis of shape {tuple(audio.shape)}; "
                     f"pass (channels, samples) with at most {_MAX_CHANNELS} channels")
