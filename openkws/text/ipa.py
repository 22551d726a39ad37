"""ARPAbet <-> IPA for hama 1.7.0's phoneme recogniser (:mod:`openkws.models.pretrained`).

hama's ASR model emits 191 tokens (:func:`hama_tokens`): the 189 ``decoder`` symbols of the wheel's
``hama/assets/g2p_vocab.json`` (multilingual IPA: English, Korean, tones, diacritics; ids 0-3 are
``<pad> <sos> <eos> <unk>``) then ``<wb>`` (word boundary, 189) and ``<blank>`` (190). Every English
phoneme is one token: the diphthongs ``aɪ aʊ eɪ oʊ ɔɪ``, the affricates ``t͡ʃ d͡ʒ`` and the
r-coloured vowels ``ɝ ɚ`` each have their own id, so no ARPAbet phoneme needs two tokens.

:data:`ARPABET_TO_IPA` gives the token whose output row initialises each of our phonemes, chosen
from what hama actually emits on real English speech aligned to g2p_en transcripts (150 clips of
../shared/data/realspeech):

- AH0 (schwa) <- ``ə`` but AH1/AH2 <- ``ʌ``: hama separates the two (AH0 is emitted as ``ə`` 114
  times, as ``ʌ`` never); every other vowel's stress variants share one row.
- ER0/ER1/ER2 <- ``ɝ``: hama emits ``ɝ`` for stressed and unstressed r-coloured vowels alike and
  practically never ``ɚ``.
- G <- ASCII ``g`` (id 18), which hama emits, not IPA ``ɡ`` (id 95), which it does not.
- R <- ``ɹ`` (not the trill ``r``), Y <- ``j``, UW <- ``u``, HH <- ``h``.

:data:`IPA_TO_ARPABET` reads hama's output as our (stress-less) phonemes: the tokens above plus
English allophones and near variants (flap ``ɾ`` and glottal stop ``ʔ`` -> T, dark ``ɫ`` -> L,
``ɚ ɜ`` -> ER, ``ɐ a ᵊ`` -> AH, ``ɒ`` -> AA, ``o`` -> OW, ``e`` -> EY, ``ɡ r`` -> G R, centring
diphthongs ``ɪə eə`` -> IH R / EH R), and Korean and other foreign segments to their nearest
English phoneme. Diacritics, length marks (``ː``, syllabic ``̩``, non-syllabic ``̯`` ...), tones,
punctuation and the specials map to nothing (a syllabic consonant is hama's consonant + ``̩``, so
it reads as the bare consonant).
"""

from __future__ import annotations

import json
from functools import lru_cache

from .phonemes import PHONEMES, REAL_PHONEMES, strip_stress

HAMA_WORD_BOUNDARY_TOKEN = "<wb>"
HAMA_BLANK_TOKEN = "<blank>"

# ARPAbet base -> the hama token whose output row it takes (see the module docstring).
ARPABET_TO_IPA: dict[str, str] = {
    "AA": "ɑ", "AE": "æ", "AH": "ʌ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "B": "b", "CH": "t͡ʃ",
    "D": "d", "DH": "ð", "EH": "ɛ", "ER": "ɝ", "EY": "eɪ", "F": "f", "G": "g", "HH": "h",
    "IH": "ɪ", "IY": "i", "JH": "d͡ʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ",
    "OW": "oʊ", "OY": "ɔɪ", "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ",
    "UH": "ʊ", "UW": "u", "V": "v", "W": "w", "Y": "j", "Z": "z", "ZH": "ʒ",
}  # fmt: skip
# Stress-marked exceptions to ARPABET_TO_IPA (an unstressed AH is a schwa).
STRESSED_TO_IPA: dict[str, str] = {"AH0": "ə"}

# hama token -> ARPAbet bases (usually one; empty tuple = drop). Tokens not listed are dropped.
IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    **{ipa: (arpa,) for arpa, ipa in ARPABET_TO_IPA.items()},
    # English allophones and variants
    "ə": ("AH",), "ɐ": ("AH",), "ᵊ": ("AH",), "a": ("AH",), "ɚ": ("ER",), "ɜ": ("ER",),
    "ɾ": ("T",), "ʔ": ("T",), "ɫ": ("L",), "ɒ": ("AA",), "o": ("OW",), "e": ("EY",),
    "ɡ": ("G",), "r": ("R",), "ɪə": ("IH", "R"), "eə": ("EH", "R"),
    # near vowels
    "ä": ("AA",), "à": ("AA",), "ã": ("AA",), "å": ("AO",), "ì": ("IY",), "ǐ": ("IY",), "ĩ": ("IY",),
    "ũ": ("UW",), "õ": ("OW",), "ẽ": ("EH",), "ɨ": ("IH",), "ʉ": ("UW",), "ɯ": ("UW",), "y": ("UW",),
    "ʏ": ("UH",), "ɵ": ("OW",), "ø": ("ER",), "œ": ("ER",), "ɘ": ("AH",), "ɤ": ("AH",),
    # glide + vowel (Korean)
    "ja": ("Y", "AA"), "je": ("Y", "EH"), "jo": ("Y", "OW"), "ju": ("Y", "UW"), "jʌ": ("Y", "AH"),
    "wa": ("W", "AA"), "we": ("W", "EH"), "wi": ("W", "IY"), "wʌ": ("W", "AH"), "ɯi": ("UW", "IY"),
    # consonants: aspirated / tense / retroflex / palatal variants
    "kʰ": ("K",), "k͈": ("K",), "pʰ": ("P",), "p͈": ("P",), "tʰ": ("T",), "t͈": ("T",), "s͈": ("S",),
    "t͡ɕ": ("CH",), "t͡ɕʰ": ("CH",), "t͡ɕ͈": ("JH",), "ɕ": ("SH",), "ʑ": ("ZH",), "ʂ": ("SH",), "ʐ": ("ZH",),
    "c": ("K",), "ɟ": ("G",), "ɲ": ("N",), "ñ": ("N",), "ʎ": ("L",), "ɮ": ("L",), "ʈ": ("T",), "ɖ": ("D",),
    "ɓ": ("B",), "ɗ": ("D",), "ʙ": ("B",), "ɱ": ("M",), "ɴ": ("NG",),
    "x": ("HH",), "ç": ("HH",), "χ": ("HH",), "ħ": ("HH",), "ɦ": ("HH",), "ɣ": ("G",),
    "β": ("V",), "ɸ": ("F",), "ʋ": ("V",), "ɰ": ("W",), "ɥ": ("W",), "ʝ": ("Y",),
    "ʁ": ("R",), "ʀ": ("R",), "ɻ": ("R",), "ɽ": ("R",), "ẑ": ("Z",),
}  # fmt: skip


@lru_cache(maxsize=1)
def hama_tokens() -> tuple[str, ...]:
    """hama's 191 ASR output tokens, read from the installed wheel (``pip install hama==1.7.0``)."""
    from openkws.models.pretrained import HAMA_VOCAB_SIZE, hama_asset_path

    path = hama_asset_path("g2p_vocab.json")
    try:
        decoder = json.loads(path.read_text(encoding="utf-8"))["decoder"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not hama's vocabulary (no 'decoder' list): {e}") from None
    tokens = tuple(decoder) + (HAMA_WORD_BOUNDARY_TOKEN, HAMA_BLANK_TOKEN)
    if len(tokens) != HAMA_VOCAB_SIZE:
        raise ValueError(f"{path}: {len(tokens)} ASR tokens, expected {HAMA_VOCAB_SIZE} (hama 1.7.0)")
    return tokens


def phoneme_to_ipa(phoneme: str) -> str:
    """One of our phonemes (stress-marked or not) -> the hama token of its output row."""
    if phoneme in STRESSED_TO_IPA:
        return STRESSED_TO_IPA[phoneme]
    try:
        return ARPABET_TO_IPA[strip_stress(phoneme)]
    except KeyError:
        raise ValueError(f"no IPA token for phoneme {phoneme!r}") from None


def arpabet_to_hama(phonemes) -> list[int]:
    """Our phonemes (e.g. ``to_phonemes("turn on lights")``) -> hama token ids, one per phoneme."""
    ids = {t: i for i, t in enumerate(hama_tokens())}
    return [ids[phoneme_to_ipa(p)] for p in phonemes]


def hama_to_arpabet(tokens) -> list[str]:
    """hama tokens (strings or ids) -> our stress-less phonemes; unmapped tokens are dropped."""
    vocab = hama_tokens()
    out = []
    for t in tokens:
        out.extend(IPA_TO_ARPABET.get(vocab[int(t)] if not isinstance(t, str) else t, ()))
    return out


def output_layer_rows() -> list[int | None]:
    """For each id of ``openkws.text.PHONEMES``, the hama output row that initialises it: blank
    <- hama's ``<blank>``, each phoneme <- its IPA token; None for ``<unk> <s> </s>``."""
    ids = {t: i for i, t in enumerate(hama_tokens())}
    real = set(REAL_PHONEMES)
    rows: list[int | None] = []
    for p in PHONEMES:
        if p == PHONEMES[0]:
            rows.append(ids[HAMA_BLANK_TOKEN])
        elif p in real:
            rows.append(ids[phoneme_to_ipa(p)])
        else:
            rows.append(None)
    return rows
