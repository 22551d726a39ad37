"""The phoneme-to-vector (P2V) table: the audio-compliant text encoder of CED (ALGORITHMS.md §A.3).

The frozen acoustic model is run over training audio; CTC forced alignment against the reference
phonemes gives each phoneme occurrence a frame span; its *local vector* is the mean encoder output
over the span; a phoneme's *global vector* is the mean of its local vectors. A keyword is then
text -> phonemes -> F (m x d), with no trainable parameters.

Phonemes never seen in alignment are backed off, never left as zero vectors: a vowel takes another
stress variant of the same vowel (1, then 0, then 2); anything else takes the seen phoneme whose
CTC output weights are closest (cosine), since those weights point where that phoneme's frames lie.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from openkws.checkpoint import atomic_torch_save, safe_torch_load
from openkws.text import PHONEMES, REAL_PHONEMES, encode, is_vowel, strip_stress, to_phonemes

_STRESS_BACKOFF = ("1", "0", "2", "")


@dataclass
class LocalVectors:
    """Local vectors of aligned phoneme occurrences: ``vectors`` (N, d), ``ids`` (N,) phoneme ids,
    ``utt`` (N,) index of the utterance each came from."""
    vectors: torch.Tensor
    ids: torch.Tensor
    utt: torch.Tensor


def local_vectors(aligned: Iterable) -> LocalVectors:
    """Local vectors (mean encoder frame over each phoneme's span) of aligned utterances, as
    produced by :func:`openkws.align.align_corpus`."""
    vecs, ids, utts = [], [], []
    for a in aligned:
        for token, (first, last) in zip(a.targets, a.spans):
            vecs.append(a.enc[first:last + 1].mean(0))
            ids.append(token)
            utts.append(a.index)
    if not vecs:
        raise ValueError("P2V: no utterance could be aligned (is the acoustic model trained?)")
    return LocalVectors(torch.stack(vecs), torch.tensor(ids), torch.tensor(utts))


class P2V:
    """Phoneme -> global vector table over the whole inventory (``len(PHONEMES)`` rows)."""

    def __init__(self, table: torch.Tensor, counts: torch.Tensor, backoff: dict[str, str]):
        if table.shape[0] != len(PHONEMES):
            raise ValueError(f"P2V table has {table.shape[0]} rows, the inventory has {len(PHONEMES)}")
        self.table, self.counts, self.backoff = table.float(), counts.long(), dict(backoff)

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    @classmethod
    def from_local_vectors(cls, local: LocalVectors, ctc_weight: torch.Tensor) -> "P2V":
        """Global vectors = mean local vector per phoneme, with the documented back-off.
        ``ctc_weight`` is the (V, d) CTC output layer weight, used to back off unseen consonants."""
        V, d = len(PHONEMES), local.vectors.shape[1]
        sums = torch.zeros(V, d).index_add_(0, local.ids, local.vectors)
        counts = torch.bincount(local.ids, minlength=V)
        table = sums / counts.clamp(min=1).unsqueeze(1)
        seen = {PHONEMES[i] for i in range(V) if counts[i] > 0}
        backoff = {}
        for p in REAL_PHONEMES:
            if p in seen:
                continue
            source = _stress_backoff(p, seen) or _nearest_by_weight(p, seen, ctc_weight)
            backoff[p] = source
            table[PHONEMES.index(p)] = table[PHONEMES.index(source)]
        # Special symbols never occur in keywords; give them the mean vector rather than zeros.
        mean = local.vectors.mean(0)
        for p in PHONEMES:
            if p not in REAL_PHONEMES and counts[PHONEMES.index(p)] == 0:
                table[PHONEMES.index(p)] = mean
        return cls(table, counts, backoff)

    def encode(self, phonemes: Sequence[str]) -> torch.Tensor:
        """Phoneme list -> F (m, d)."""
        if not phonemes:
            raise ValueError("P2V.encode: empty phoneme sequence")
        return self.table[torch.tensor(encode(list(phonemes)))]

    def encode_text(self, text: str) -> torch.Tensor:
        return self.encode(to_phonemes(text))

    def coverage(self) -> dict:
        """How many local vectors each real phoneme had, and which ones were backed off."""
        return {"counts": {p: int(self.counts[PHONEMES.index(p)]) for p in REAL_PHONEMES},
                "backoff": dict(self.backoff)}

    def state_dict(self) -> dict:
        return {"table": self.table, "counts": self.counts, "backoff": self.backoff, "phonemes": list(PHONEMES)}

    @classmethod
    def from_state_dict(cls, state: dict) -> "P2V":
        if list(state.get("phonemes", [])) != list(PHONEMES):
            raise ValueError("P2V table was built for a different phoneme inventory")
        return cls(state["table"], state["counts"], state["backoff"])

    def save(self, path: str | Path) -> None:
        atomic_torch_save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> "P2V":
        return cls.from_state_dict(safe_torch_load(path))


def _stress_backoff(p: str, seen: set[str]) -> str | None:
    if not is_vowel(p):
        return None
    base = strip_stress(p)  # g2p_en also has a bare "UW" without a stress digit
    for s in _STRESS_BACKOFF:
        if base + s != p and base + s in seen:
            return base + s
    return None


def _nearest_by_weight(p: str, seen: set[str], ctc_weight: torch.Tensor) -> str:
    if not seen:
        raise ValueError("P2V: no phoneme was seen at all")
    w = torch.nn.functional.normalize(ctc_weight.float(), dim=1)
    candidates = sorted(seen)
    sims = w[[PHONEMES.index(c) for c in candidates]] @ w[PHONEMES.index(p)]
    return candidates[int(sims.argmax())]
