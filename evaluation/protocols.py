"""Turn LibriPhrase pair rows into text-enrolled scoring trials: (audio, text, label, split, class).

A trial asks "is ``text`` spoken in clip ``audio``?" (``audio`` is an utterance id of the phrase
manifest the rows refer to). Three protocols are in use in the literature (LIBRIPHRASE.md §2),
and they build DIFFERENT trial sets from the same rows: AUC/EER numbers from different protocols
are NOT comparable, so always report which one was used.

``pooled`` (default; MM-KWS / DS-KWS / DMA-KWS, §2.2)
    Every row gives two trials, one per direction: (comparison clip, anchor text) and
    (anchor clip, comparison text), label = target. easy = positive + easy-negative rows, hard =
    positive + hard-negative rows (the positives are shared). Per split: 2 x (P + E) and
    2 x (P + H) trials, 270,684 each on the official test set. Identical trials repeat (a clip
    is shared by several rows); they are kept, as in the reference code.
``phonmatchnet`` (PhonMatchNet, §2.1)
    Only negative-type rows are used, each giving four trials: (anchor clip, anchor text, 1),
    (anchor clip, comparison text, 0), (comparison clip, comparison text, 1), (comparison clip,
    anchor text, 0). easy = 4 x E, hard = 4 x H; positive rows are dropped, so the positives are
    same-clip "self" trials. PhonMatchNet also averaged per-batch EERs (evaluation.report
    ``--eer batch``).
``clap`` (CLAP-IPA, §2.3)
    One trial per row, text = anchor text, audio = comparison clip. easy = P + E, hard = P + H.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from data_prep.libriphrase import EASY_NEG, HARD_NEG, PAIR_TYPES, POSITIVE

PROTOCOLS = ("pooled", "phonmatchnet", "clap")
# Which row types feed each split.
_SPLIT_TYPES = {"easy": (POSITIVE, EASY_NEG), "hard": (POSITIVE, HARD_NEG)}


class Trial(NamedTuple):
    audio: str  # utterance id of the clip
    text: str  # the enrolled keyword
    label: int  # 1: the text is spoken in the clip
    split: str  # "easy" | "hard"
    cls: int  # the row's class: number of words of the anchor phrase


def trials(rows: Iterable[Mapping], protocol: str = "pooled") -> list[Trial]:
    """Trials of ``rows`` (pair rows in the LibriPhrase CSV schema) under ``protocol``.

    Easy-split trials come first, then hard ones, each in row order.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    rows = list(rows)
    for r in rows:
        if r["type"] not in PAIR_TYPES:
            raise ValueError(f"row with anchor {r['anchor']!r}: unknown type {r['type']!r}")
    out = []
    for split, types in _SPLIT_TYPES.items():
        for r in rows:
            if r["type"] not in types or (protocol == "phonmatchnet" and r["type"] == POSITIVE):
                continue
            a, c, target, cls = r["anchor"], r["comparison"], int(r["target"]), int(r["class"])
            at, ct = r["anchor_text"], r["comparison_text"]
            if protocol == "pooled":
                out += [Trial(c, at, target, split, cls), Trial(a, ct, target, split, cls)]
            elif protocol == "phonmatchnet":
                out += [Trial(a, at, 1, split, cls), Trial(a, ct, target, split, cls),
                        Trial(c, ct, 1, split, cls), Trial(c, at, target, split, cls)]
            else:
                out.append(Trial(c, at, target, split, cls))
    return out
