"""One-call API: ``openkws.score(audio, keywords)`` and ``openkws.detect(audio, keywords)``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from openkws.model import KWSModel
from openkws.spotter import Detection, KeywordSpotter

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default_model.pt"


def load_model(path: str | Path | None = None) -> KWSModel:
    """Load an openkws model file; with no argument, the default model shipped in the package."""
    if path is None:
        if not DEFAULT_MODEL.exists():
            raise FileNotFoundError(f"the default model is missing from this install ({DEFAULT_MODEL}); "
                                    "train one with `bash recipes/libriphrase/run.sh` and pass its "
                                    "exp/<tag>/model.pt")
        return _default_model()
    return KWSModel.load(path)


@lru_cache(maxsize=1)
def _default_model() -> KWSModel:
    return KWSModel.load(DEFAULT_MODEL)


def _keywords(keywords: str | Sequence[str]) -> list[str]:
    if isinstance(keywords, str):
        items = [keywords]
    elif isinstance(keywords, (list, tuple)):
        items = list(keywords)
    else:
        raise TypeError(f"keywords must be a string or a list of strings, got {type(keywords).__name__} {keywords!r}")
    if not items:
        raise ValueError("keywords: no keyword given")
    for k in items:
        if not isinstance(k, str) or not k.strip():
            raise ValueError(f"keywords must be non-empty strings, got {type(k).__name__} {k!r} in {keywords!r}")
    return items


def _sample_rate(sample_rate) -> int | None:
    """None (the default) or a positive integer number of samples per second."""
    if sample_rate is None:
        return None
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def _spotter(keywords, model, head, threshold) -> KeywordSpotter:
    model = model if isinstance(model, KWSModel) else load_model(model)
    spotter = KeywordSpotter(model, head)
    for k in _keywords(keywords):
        spotter.enroll(k, threshold)
    return spotter


def score(audio, keywords: str | Sequence[str], model: KWSModel | str | Path | None = None,
          head: str | None = None, sample_rate: int | None = None) -> dict[str, float]:
    """Score in [0, 1] per keyword: how likely the audio contains it (the best window's score for
    long audio). ``audio`` is a path, a numpy array or a torch tensor (``sample_rate`` for arrays,
    default 16000)."""
    _, best = _spotter(keywords, model, head, None).scan(audio, _sample_rate(sample_rate))
    return best


def detect(audio, keywords: str | Sequence[str], model: KWSModel | str | Path | None = None,
           threshold: float | None = None, head: str | None = None,
           sample_rate: int | None = None) -> list[Detection]:
    """Where each keyword is spoken: detections with keyword, score, start and end (seconds).
    ``threshold`` defaults to the model's calibrated one."""
    detections, _ = _spotter(keywords, model, head, threshold).scan(audio, _sample_rate(sample_rate))
    return detections
