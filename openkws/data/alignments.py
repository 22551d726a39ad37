"""Word alignments in openkws's JSONL format, one utterance a line:

    {"id": "20-205-0000", "words": [["", 0.0, 0.42], ["chapter", 0.42, 0.81], ...]}

In memory: ``{utt_id: [(word, start_s, end_s), ...]}``, words in time order, lowercase; ``""``
marks silence and ``"<unk>"`` an unknown word. Written by ``openkws align`` (CTC forced alignment)
and by ``data_prep.alignments`` (imported Montreal-Forced-Aligner alignments).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping

from openkws.checkpoint import atomic_write_text
from openkws.data.manifest import iter_jsonl

Word = tuple[str, float, float]
Alignments = dict[str, list[Word]]


def write_word_alignments(path: str | os.PathLike, alignments: Mapping[str, Iterable[Word]]) -> None:
    """Write alignments as JSONL (atomic), one ``{"id", "words"}`` object per utterance."""
    lines = []
    for utt, words in alignments.items():
        lines.append(json.dumps({"id": utt, "words": [[w, float(s), float(e)] for w, s, e in words]},
                                ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def read_word_alignments(path: str | os.PathLike) -> Alignments:
    """Read a JSONL alignment file; errors name the file, the line and the problem."""
    out: Alignments = {}
    for where, rec in iter_jsonl(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) \
                or not isinstance(rec.get("words"), list):
            raise ValueError(f"{where}: expected {{\"id\": str, \"words\": [[word, start, end], ...]}}")
        if rec["id"] in out:
            raise ValueError(f"{where}: duplicate utterance id {rec['id']!r}")
        words = []
        for item in rec["words"]:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and all(isinstance(t, (int, float)) and math.isfinite(t) for t in item[1:])
                    and item[1] <= item[2]):
                raise ValueError(f"{where}: bad word entry {item!r} (want [word, start, end], "
                                 "finite, start <= end)")
            words.append((item[0], float(item[1]), float(item[2])))
        out[rec["id"]] = words
    return out
