"""The one manifest schema every corpus uses: JSON lines, one utterance per line.

    {"id": "train_s00012_espeak_en-us+f3_r165_p60", "path": "audio/train/.../x.flac",
     "duration": 2.41, "text": "turn on the lights", "phonemes": ["T", "ER1", ...],
     "speaker": "espeak:en-us+f3:r165:p60", "kind": "sentence", "split": "train",
     "extra": {"engine": "espeak"}}

``path`` is stored relative to the manifest's folder (so a corpus folder can be moved) and is
absolute in memory. ``speaker`` is the speaker id, or the TTS voice identity for synthetic
speech. Corpus-specific fields go in ``extra``; any other key is an error.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from openkws.checkpoint import atomic_write_text
from openkws.text import REAL_PHONEMES

SPLITS: tuple[str, ...] = ("train", "dev", "test")

_REAL = frozenset(REAL_PHONEMES)
_MAX_LISTED = 20  # check_manifest lists at most this many problems


@dataclass
class Utterance:
    """One recording: where it is, what is said in it, and who says it."""

    id: str
    path: str  # absolute once read; written relative to the manifest's folder
    duration: float  # seconds
    text: str
    phonemes: list[str]  # stress-marked ARPAbet (openkws.text.to_phonemes of text)
    speaker: str  # speaker id, or the TTS voice id for synthetic speech
    kind: str  # "sentence" | "phrase" | ...
    split: str  # "train" | "dev" | "test"
    extra: dict = field(default_factory=dict)  # corpus-specific: engine, rate, pitch, ...


_FIELDS = {f.name for f in fields(Utterance)}
_REQUIRED = _FIELDS - {"extra"}
_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str, "path": str, "duration": (int, float), "text": str, "phonemes": list,
    "speaker": str, "kind": str, "split": str, "extra": dict,
}  # fmt: skip


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, object]]:
    """(``file:line``, record) for each non-blank line of a JSON-lines file; bad JSON is a
    ValueError naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: bad JSON ({e.msg} at column {e.colno})") from None


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a JSONL manifest; relative audio paths are resolved against the manifest's folder.

    Raises ValueError naming the file and line for bad JSON, a missing or unknown field, or a
    field of the wrong type. Blank lines are ignored.
    """
    root = Path(path).resolve().parent
    utts = []
    for where, record in iter_jsonl(path):
        utt = _from_record(record, where)
        utt.path = os.path.normpath(root / utt.path)  # an absolute stored path stays as it is
        utts.append(utt)
    return utts


def write_manifest(path: str | os.PathLike, utts: Iterable[Utterance]) -> None:
    """Write utterances as JSONL, atomically (a temp file in the same folder + os.replace).

    Audio paths are stored relative to the manifest's folder (with '/' separators); a relative
    ``Utterance.path`` is taken relative to the current directory.
    """
    path = Path(path)
    root = path.resolve().parent
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in utts:
        record = asdict(u)
        record["path"] = Path(os.path.relpath(os.path.abspath(u.path), root)).as_posix()
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def validate_manifest(utts: Sequence[Utterance], check_files: bool = True) -> list[str]:
    """All problems found in ``utts`` (empty when none), one readable line each.

    Checks: ids unique, audio files exist (``check_files``), durations finite and > 0,
    phonemes non-empty and all in the inventory, splits among SPLITS, and no speaker in more
    than one split. Pass the utterances of all splits together for the last check to mean
    anything.
    """
    problems = []
    seen: dict[str, int] = {}
    splits_of: dict[str, set[str]] = defaultdict(set)
    for u in utts:
        seen[u.id] = seen.get(u.id, 0) + 1
        if seen[u.id] == 2:
            problems.append(f"{u.id}: duplicate id")
        if check_files and not os.path.isfile(u.path):
            problems.append(f"{u.id}: audio file not found: {u.path}")
        if not (isinstance(u.duration, (int, float)) and math.isfinite(u.duration) and u.duration > 0):
            problems.append(f"{u.id}: duration must be a finite number > 0, got {u.duration!r}")
        if not u.phonemes:
            problems.append(f"{u.id}: no phonemes for text {u.text!r}")
        bad = sorted({p for p in u.phonemes if p not in _REAL})
        if bad:
            problems.append(f"{u.id}: phonemes outside the inventory: {' '.join(map(str, bad))}")
        if u.split not in SPLITS:
            problems.append(f"{u.id}: split must be one of {'/'.join(SPLITS)}, got {u.split!r}")
        splits_of[u.speaker].add(u.split)
    for speaker, splits in sorted(splits_of.items()):
        if len(splits) > 1:
            problems.append(f"speaker {speaker!r} is in several splits: {', '.join(sorted(splits))}")
    return problems


def check_manifest(utts: Sequence[Utterance], check_files: bool = True, name: str = "manifest") -> None:
    """Raise ValueError listing the problems ``validate_manifest`` finds (``name`` says where)."""
    problems = validate_manifest(utts, check_files)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise ValueError(f"{name}: {len(problems)} problem(s):\n  {listed}{more}")


def _from_record(record: object, where: str) -> Utterance:
    """Build an Utterance from one parsed JSON line, with errors that say what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = sorted(_REQUIRED - record.keys())
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(record.keys() - _FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} (put corpus-specific fields in 'extra')")
    for key, value in record.items():
        if not isinstance(value, _TYPES[key]) or isinstance(value, bool):
            raise ValueError(f"{where}: field {key!r} has the wrong type ({type(value).__name__}: {value!r})")
    if not all(isinstance(p, str) for p in record["phonemes"]):
        raise ValueError(f"{where}: field 'phonemes' must be a list of strings")
    return Utterance(**{**record, "duration": float(record["duration"])})
