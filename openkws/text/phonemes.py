"""The phoneme inventory: the single source of truth for symbol <-> id.

It is g2p_en's own output vocabulary (stress-marked ARPAbet, in g2p_en's order, including its
bare ``UW``), with g2p_en's ``<pad>`` slot renamed ``<blank>`` because index 0 doubles as the
CTC blank. Keeping g2p_en's order means ids line up with its decoder embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BLANK = "<blank>"
SPECIALS: tuple[str, ...] = (BLANK, "<unk>", "<s>", "</s>")

# Copied from g2p_en 2.1.0 (G2p().phonemes[4:]); a test checks it still matches.
REAL_PHONEMES: tuple[str, ...] = (
    "AA0", "AA1", "AA2", "AE0", "AE1", "AE2", "AH0", "AH1", "AH2", "AO0",
    "AO1", "AO2", "AW0", "AW1", "AW2", "AY0", "AY1", "AY2", "B", "CH", "D", "DH",
    "EH0", "EH1", "EH2", "ER0", "ER1", "ER2", "EY0", "EY1", "EY2", "F", "G", "HH",
    "IH0", "IH1", "IH2", "IY0", "IY1", "IY2", "JH", "K", "L", "M", "N", "NG", "OW0", "OW1",
    "OW2", "OY0", "OY1", "OY2", "P", "R", "S", "SH", "T", "TH", "UH0", "UH1", "UH2", "UW",
    "UW0", "UW1", "UW2", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip

PHONEMES: tuple[str, ...] = SPECIALS + REAL_PHONEMES
BLANK_ID = 0
NUM_PHONEMES = len(PHONEMES)

_ID = {p: i for i, p in enumerate(PHONEMES)}
_REAL = frozenset(REAL_PHONEMES)


def strip_stress(p: str) -> str:
    """'AH0' -> 'AH'; consonants and specials are returned unchanged."""
    return p.rstrip("012")


# Vowels are the bases that carry stress digits (plus the bare 'UW').
_VOWELS = frozenset(strip_stress(p) for p in REAL_PHONEMES if p[-1] in "012")


def is_vowel(p: str) -> bool:
    """True for any stress variant of a vowel ('AH0', 'AY1', 'UW', ...)."""
    return strip_stress(p) in _VOWELS


def phoneme_to_id(p: str) -> int:
    """Id of one symbol; raises ValueError for a symbol outside the inventory."""
    try:
        return _ID[p]
    except KeyError:
        raise ValueError(f"unknown phoneme {p!r}{_hint(p)}") from None


def encode(phonemes: Iterable[str]) -> list[int]:
    """Symbols -> ids."""
    return [phoneme_to_id(p) for p in phonemes]


def decode(ids: Iterable[int]) -> list[str]:
    """Ids (ints or 0-d tensors) -> symbols; raises ValueError for an out-of-range id."""
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < NUM_PHONEMES:
            raise ValueError(f"phoneme id {i} out of range [0, {NUM_PHONEMES})")
        out.append(PHONEMES[i])
    return out


def parse_phonemes(pron: str | Sequence[str]) -> list[str]:
    """Parse a pronunciation such as "T ER1 N AA1 N" (or a list of symbols) into symbols.

    Only real phonemes are accepted (case-insensitive); any other symbol raises ValueError
    naming it, e.g. a vowel written without its stress digit.
    """
    symbols = pron.split() if isinstance(pron, str) else [str(p).strip() for p in pron]
    symbols = [s.upper() for s in symbols]
    bad = [s for s in symbols if s not in _REAL]
    if bad:
        raise ValueError(
            f"unknown phoneme(s) {', '.join(repr(b) + _hint(b) for b in bad)} "
            f"in pronunciation {pron!r}; valid symbols: {' '.join(REAL_PHONEMES)}"
        )
    if not symbols:
        raise ValueError(f"empty pronunciation {pron!r}")
    return symbols


def _hint(p: str) -> str:
    """A 'did you mean' for the commonest mistake: a vowel without its stress digit."""
    variants = [q for q in REAL_PHONEMES if strip_stress(q) == p.upper() and q != p.upper()]
    return f" (did you mean {'/'.join(variants)}?)" if variants else ""
