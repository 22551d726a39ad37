"""Text side of openkws: phoneme inventory, normalisation, offline G2P, confusable negatives."""

from .confusables import (
    concatenate_keyword,
    is_homophone,
    mutate_phonemes,
    nearest_keywords,
    substitute_characters,
)
from .g2p import pronunciation_variants, to_phonemes, to_word_phonemes
from .nltk_data import cache_dir, ensure_nltk_data
from .normalize import normalize
from .phonemes import (
    BLANK_ID,
    NUM_PHONEMES,
    PHONEMES,
    REAL_PHONEMES,
    decode,
    encode,
    is_vowel,
    parse_phonemes,
    phoneme_to_id,
    strip_stress,
)

__all__ = [
    "BLANK_ID",
    "NUM_PHONEMES",
    "PHONEMES",
    "REAL_PHONEMES",
    "cache_dir",
    "concatenate_keyword",
    "decode",
    "encode",
    "ensure_nltk_data",
    "is_homophone",
    "is_vowel",
    "mutate_phonemes",
    "nearest_keywords",
    "normalize",
    "parse_phonemes",
    "phoneme_to_id",
    "pronunciation_variants",
    "strip_stress",
    "substitute_characters",
    "to_phonemes",
    "to_word_phonemes",
]
