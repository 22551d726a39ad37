"""Phoneme inventory, normalisation and offline G2P (openkws.text)."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

import openkws.text as t
from openkws.text.g2p import _g2p


# --- inventory -----------------------------------------------------------------------------


def test_inventory_layout():
    assert t.NUM_PHONEMES == len(t.PHONEMES) == 74
    assert t.PHONEMES[:4] == ("<blank>", "<unk>", "<s>", "</s>")
    assert t.BLANK_ID == 0 and t.PHONEMES[t.BLANK_ID] == "<blank>"
    assert len(t.REAL_PHONEMES) == 70 and t.PHONEMES[4:] == t.REAL_PHONEMES
    assert "UW" in t.REAL_PHONEMES  # g2p_en's inventory has a bare UW next to UW0/1/2


def test_inventory_is_g2p_ens_own_order():
    # Ids must line up with g2p_en's decoder (its <pad> slot is our blank).
    assert tuple(_g2p().phonemes[4:]) == t.REAL_PHONEMES
    assert len(_g2p().phonemes) == t.NUM_PHONEMES


def test_encode_decode_round_trip():
    ids = t.encode(t.PHONEMES)
    assert ids == list(range(t.NUM_PHONEMES))
    assert t.decode(ids) == list(t.PHONEMES)
    assert t.phoneme_to_id("T") == t.PHONEMES.index("T")


def test_unknown_symbols_are_named():
    with pytest.raises(ValueError, match="'XX'"):
        t.phoneme_to_id("XX")
    with pytest.raises(ValueError, match="'XX'"):
        t.encode(["T", "XX"])
    with pytest.raises(ValueError, match="out of range"):
        t.decode([t.NUM_PHONEMES])
    # A vowel without stress is the usual mistake: the message says which ones exist.
    with pytest.raises(ValueError, match=r"'ER' \(did you mean ER0/ER1/ER2\?\)"):
        t.parse_phonemes("T ER N")
    with pytest.raises(ValueError, match="empty"):
        t.parse_phonemes("  ")


def test_parse_and_stress_helpers():
    assert t.parse_phonemes("t er1  n") == ["T", "ER1", "N"]
    assert t.parse_phonemes(["T", "ER1", "N"]) == ["T", "ER1", "N"]
    assert t.strip_stress("AH0") == "AH" and t.strip_stress("T") == "T"
    assert t.is_vowel("AY1") and t.is_vowel("UW") and not t.is_vowel("T")
    assert sum(t.is_vowel(p) for p in t.REAL_PHONEMES) == 46  # 15 vowels x 3 stresses + UW


# --- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("Turn on 3 lights!", "turn on three lights"),
        ("7:30", "seven thirty"),
        ("7:05", "seven oh five"),
        ("7:00", "seven o'clock"),
        ("the 2nd door", "the second door"),
        ("21st", "twenty first"),
        ("R2D2", "r two d two"),
        ("$5", "five dollars"),
        ("$1.50", "one dollar fifty cents"),
        ("50%", "fifty percent"),
        ("3.5", "three point five"),
        ("1999", "nineteen ninety nine"),
        ("1905", "nineteen oh five"),
        ("2005", "two thousand five"),
        ("2024", "twenty twenty four"),
        ("1,000,000", "one million"),
        ("123", "one hundred twenty three"),
        ("007", "zero zero seven"),
        ("-5", "minus five"),
        ("Hey, Jarvis...", "hey jarvis"),
        ("don't  STOP 'rock'", "don't stop rock"),
        ("well-known café", "well known cafe"),
        ("it\u2019s", "it's"),
    ],
)
def test_normalize(text, words):
    assert t.normalize(text) == words.split()


@pytest.mark.parametrize("text", ["", "   ", "!!!", "'", "-"])
def test_normalize_nothing(text):
    assert t.normalize(text) == []


# --- G2P -----------------------------------------------------------------------------------


def test_turn_on_lights():
    assert t.to_phonemes("turn on lights") == "T ER1 N AA1 N L AY1 T S".split()
    assert t.to_phonemes("Turn on LIGHTS!") == t.to_phonemes("turn on lights")


def test_word_phonemes_align_with_normalised_words():
    pairs = t.to_word_phonemes("turn on 3 lights")
    assert [w for w, _ in pairs] == ["turn", "on", "three", "lights"]
    assert pairs[2][1] == ["TH", "R", "IY1"]
    assert [p for _, pron in pairs for p in pron] == t.to_phonemes("turn on 3 lights")


def test_oov_word_uses_the_neural_model():
    assert "zorblax" not in _g2p().cmu
    phonemes = t.to_phonemes("zorblax")
    assert phonemes and set(phonemes) <= set(t.REAL_PHONEMES)
    assert phonemes[0] == "Z"


def test_lexicon_override_wins():
    lexicon = {"LIGHTS": "L AY1 T Z", "zorblax": ["Z", "AO1", "R", "B", "L", "AE2", "K", "S"]}
    assert t.to_phonemes("turn on lights", lexicon=lexicon)[-4:] == ["L", "AY1", "T", "Z"]
    assert t.to_phonemes("zorblax", lexicon=lexicon) == lexicon["zorblax"]
    with pytest.raises(ValueError, match="lexicon entry for 'lights'.*'AY'"):
        t.to_phonemes("lights", lexicon={"lights": "L AY T S"})


def test_homographs_follow_part_of_speech():
    words = t.to_word_phonemes("I refuse to collect the refuse")
    verb, noun = words[1][1], words[5][1]
    assert verb == ["R", "IH0", "F", "Y", "UW1", "Z"]
    assert noun == ["R", "EH1", "F", "Y", "UW2", "Z"]


@pytest.mark.parametrize("text", ["", "   ", "!!!", "?-?"])
def test_nothing_to_pronounce(text):
    with pytest.raises(ValueError, match="nothing to pronounce in " + re.escape(repr(text))):
        t.to_phonemes(text)


def test_every_dictionary_pronunciation_is_in_the_inventory():
    g2p, real = _g2p(), set(t.REAL_PHONEMES)
    for pron1, pron2, _ in g2p.homograph2features.values():
        assert set(pron1) <= real and set(pron2) <= real
    bad = {w: prons[0] for w, prons in g2p.cmu.items() if not set(prons[0]) <= real}
    assert not bad
    assert len(g2p.cmu) > 120_000


_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    class NoSocket(socket.socket):  # a class, not a function: ssl subclasses socket.socket
        def __init__(self, *args, **kwargs):
            refuse()

    socket.socket = NoSocket
    socket.create_connection = socket.getaddrinfo = refuse
    import nltk
    nltk.download = refuse  # g2p_en's import-time fallback must never be reached

    import openkws.text as t
    print(" ".join(t.to_phonemes("turn on lights")))
    print(" ".join(t.to_phonemes("I refuse to collect the refuse")))
    print(" ".join(t.to_phonemes("zorblax")))
    """
)


def test_offline_from_an_empty_cache(tmp_path):
    """Two fresh processes with no network race to build the NLTK data; both must work."""
    env = dict(os.environ, OPENKWS_CACHE=str(tmp_path / "cache"), NLTK_DATA="")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OFFLINE_SCRIPT],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
        assert "[nltk_data]" not in out
        lines = out.splitlines()
        assert lines[0] == "T ER1 N AA1 N L AY1 T S"
        assert lines[1].endswith("R EH1 F Y UW2 Z") and "R IH0 F Y UW1 Z" in lines[1]
        assert lines[2].startswith("Z ")
    built = tmp_path / "cache" / "nltk_data"
    assert (built / "corpora" / "cmudict" / "cmudict").is_file()
    assert (built / "taggers" / "averaged_perceptron_tagger.zip").is_file()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["nltk_data"]  # no temp leftovers
