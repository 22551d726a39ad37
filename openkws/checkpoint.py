"""Atomic writes and safe loading of checkpoints and inference model files.

Everything is saved as plain types + tensors so it loads with ``torch.load(weights_only=True)``;
a corrupt or foreign file gets an error that names it instead of an unpickling traceback.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import torch

MODEL_FORMAT = "openkws/1"


def _atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make shared model files private
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(path, buf.getvalue())


def safe_torch_load(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated / foreign files
        raise ValueError(f"{path}: not a readable openkws checkpoint (corrupt, truncated or not a "
                         f"torch file): {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    return obj


def load_model_file(path: str | Path, map_location="cpu") -> dict:
    """Load an inference model file and check its format tag."""
    obj = safe_torch_load(path, map_location)
    fmt = obj.get("format")
    if fmt != MODEL_FORMAT:
        raise ValueError(f"{path}: not an openkws model file (format={fmt!r}, expected {MODEL_FORMAT!r}); "
                         "training checkpoints are turned into model files with `openkws export`")
    missing = [k for k in ("config", "frontend", "phonemes", "p2v", "state_dict") if k not in obj]
    if missing:
        raise ValueError(f"{path}: model file lacks {missing}")
    return obj
