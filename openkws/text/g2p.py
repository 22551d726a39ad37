"""Offline grapheme-to-phoneme conversion: text -> g2p_en's stress-marked ARPAbet.

Pipeline per normalised word: an explicit ``lexicon`` entry, else CMUdict (homographs such as
"refuse" resolved by g2p_en's POS-tag rule over the whole sentence), else g2p_en's neural
model. g2p_en is only ever imported after ``ensure_nltk_data`` has put the locally built NLTK
data on the path, so it never downloads anything.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .nltk_data import ensure_nltk_data
from .normalize import normalize
from .phonemes import REAL_PHONEMES, parse_phonemes

if TYPE_CHECKING:
    from g2p_en import G2p

Lexicon = Mapping[str, str | Sequence[str]]  # word -> "T ER1 N" or ["T", "ER1", "N"]

_REAL = frozenset(REAL_PHONEMES)
_lock = threading.Lock()
_instance: G2p | None = None


def _g2p() -> G2p:
    """The shared g2p_en model, built on first use (it takes a few seconds)."""
    global _instance
    with _lock:
        if _instance is None:
            ensure_nltk_data()
            from g2p_en import G2p  # only after the NLTK data is on the path

            _instance = G2p()
        return _instance


@functools.lru_cache(maxsize=65536)
def _predict(word: str) -> tuple[str, ...]:
    """Neural pronunciation of an out-of-vocabulary word (cached: it is a pure function)."""
    # The decoder may emit <pad>/<unk>/<s>, which are not sounds: drop them.
    return tuple(p for p in _g2p().predict(word) if p in _REAL)


def to_word_phonemes(text: str, lexicon: Lexicon | None = None) -> list[tuple[str, list[str]]]:
    """Pronounce ``text`` word by word: [(normalised word, phonemes), ...].

    ``lexicon`` maps a word (case-insensitive) to a pronunciation, a list of symbols or a
    string such as "T ER1 N"; it wins over CMUdict and the neural model. Raises ValueError for
    text with no words and for a word that gets no pronunciation.
    """
    words = normalize(text)
    if not words:
        raise ValueError(f"nothing to pronounce in {text!r}: it has no English letters or digits")
    overrides = {k.strip().lower(): v for k, v in (lexicon or {}).items()}
    g2p = _g2p()
    # Local import: nltk is only loaded (by _g2p) once its data path is set.
    from nltk import pos_tag

    out = []
    for word, tag in pos_tag(words):
        if word in overrides:
            try:
                pron = parse_phonemes(overrides[word])
            except ValueError as e:
                raise ValueError(f"lexicon entry for {word!r}: {e}") from None
        elif word in g2p.homograph2features:  # g2p_en's rule: first reading iff POS matches
            pron1, pron2, pos1 = g2p.homograph2features[word]
            pron = list(pron1 if tag.startswith(pos1) else pron2)
        elif word in g2p.cmu:
            pron = list(g2p.cmu[word][0])
        else:
            pron = list(_predict(word))
        if not pron:
            raise ValueError(
                f"no pronunciation for {word!r} in {text!r}: "
                f"pass one with lexicon={{{word!r}: ...}}"
            )
        bad = [p for p in pron if p not in _REAL]
        assert not bad, f"G2P produced symbols outside the inventory for {word!r}: {bad}"
        out.append((word, pron))
    return out


def to_phonemes(text: str, lexicon: Lexicon | None = None) -> list[str]:
    """Phonemes of ``text`` as one flat list, e.g. "turn on lights" -> T ER1 N AA1 N L AY1 T S."""
    return [p for _, pron in to_word_phonemes(text, lexicon) for p in pron]


def pronunciation_variants(text: str, lexicon: Lexicon | None = None, limit: int = 8) -> list[list[str]]:
    """``to_phonemes(text)`` first, then each reading CMUdict also allows for one word with the
    others kept (at most ``limit`` in all; readings of two words at once are not combined).
    Words outside CMUdict or in ``lexicon`` have their one reading."""
    words = to_word_phonemes(text, lexicon)
    overrides = {k.strip().lower() for k in (lexicon or {})}
    cmu = _g2p().cmu
    variants = [[p for _, pron in words for p in pron]]
    for i, (word, pron) in enumerate(words):
        for reading in ([] if word in overrides else cmu.get(word, [])):
            variant = [p for j, (_, other) in enumerate(words) for p in (reading if j == i else other)]
            if variant not in variants and len(variants) < limit:
                variants.append(variant)
    return variants
