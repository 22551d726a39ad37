"""TTS wrappers and the synthetic corpus builder (tiny corpora: seconds, not hours)."""

import hashlib
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
import soundfile as sf

from data_prep import synth, tts
from data_prep.tts import Voice
from openkws.data.manifest import check_manifest, read_manifest
from openkws.text import REAL_PHONEMES

VOICES = ["espeak:en-us+*", "piper"]  # 24 espeak voices (24 speaker groups) + 10 piper voices
ARGS = {"hours": 0.005, "seed": 0, "voice_specs": VOICES, "min_phoneme_count": 0}


def test_pypi_engines_give_at_least_12_voices():
    pip_only = [v for v in tts.available_voices() if v.engine in ("espeak", "piper")]
    assert len({v.id for v in pip_only}) >= 12
    assert {v.engine for v in pip_only} == {"espeak", "piper"}
    for v in pip_only:
        assert Voice.from_id(v.id) == v
    assert Voice("espeak", "en-us+f3", rate=165, pitch=60).id == "espeak:en-us+f3:r165:p60"


@pytest.mark.parametrize("engine", tts.ENGINES)
def test_each_engine_speaks(engine):
    if not tts.is_installed(engine):
        pytest.skip(f"{engine} not installed")
    voice = next(v for v in tts.available_voices() if v.engine == engine)
    audio, sr = tts.synthesize(voice, "turn on the lights")
    assert audio.dtype == np.float32 and audio.ndim == 1 and sr > 0
    out = synth.postprocess(audio, sr)  # -> 16 kHz, trimmed, peak-normalised
    assert out.dtype == np.float32
    assert 0.4 < len(out) / synth.SAMPLE_RATE < 4.0
    assert np.sqrt(np.mean(out**2)) > 0.02  # not silent
    assert np.max(np.abs(out)) <= 1.0


def test_missing_engine_skipped_but_explicit_request_fails(monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    assert {v.engine for v in tts.available_voices()} <= {"espeak", "piper", "kokoro"}
    with pytest.raises(RuntimeError, match="apt-get install flite"):
        synth.select_voices(["flite"])
    with pytest.raises(RuntimeError, match="not installed"):
        tts.synthesize(Voice("flite", "slt"), "hello")


def test_bad_voices_and_specs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown TTS engine 'nope'"):
        Voice("nope", "x")
    with pytest.raises(ValueError, match="espeak variant 'zz' .* not found"):
        tts.synthesize(Voice("espeak", "en-us+zz"), "hello")
    with pytest.raises(ValueError, match="bad parameter 'q5'"):
        Voice.from_id("espeak:en-us:q5")
    with pytest.raises(ValueError, match="matches no installed voice"):
        synth.select_voices(["espeak:xx-*"])
    with pytest.raises(ValueError, match="empty text"):
        tts.synthesize(Voice("espeak", "en-us"), "  ")


def test_exclusion_specs_remove_voices():
    everything = synth.select_voices()
    without_piper = synth.select_voices(["!piper:*"])
    assert without_piper == [v for v in everything if v.engine != "piper"]
    assert {v.engine for v in synth.select_voices(["espeak", "piper", "!piper:joe:ls0.8*"])} == {"espeak", "piper"}
    assert all(not v.id.startswith("piper:joe:ls0.8") for v in synth.select_voices(["piper", "!piper:joe:ls0.8*"]))
    with pytest.raises(ValueError, match="leave no voice"):
        synth.select_voices(["piper", "!piper:*"])


def test_voice_split_is_speaker_disjoint_and_seeded():
    voices = tts.available_voices()
    split = synth.split_voices(voices, seed=0)
    assert split == synth.split_voices(voices, seed=0)
    groups = defaultdict(set)
    for v in voices:
        groups[v.speaker_group].add(split[v.id])
    assert all(len(s) == 1 for s in groups.values())
    for s in ("train", "dev", "test"):  # several engine families in every split
        assert len({v.family for v in voices if split[v.id] == s}) >= 2
    assert Counter(split.values())["train"] > Counter(split.values())["dev"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny corpus built through the command line with 2 worker processes."""
    out = tmp_path_factory.mktemp("synth") / "a"
    synth.main(["--out", str(out), "--hours", str(ARGS["hours"]), "--seed", "0", "--workers", "2",
                "--min-phoneme-count", "0", "--voices", *VOICES])
    return out


def test_tiny_corpus_is_valid_and_voice_disjoint(corpus):
    utts = {s: read_manifest(corpus / f"{s}.jsonl") for s in ("train", "dev", "test")}
    everything = [u for us in utts.values() for u in us]
    check_manifest(everything)  # files exist, phonemes valid, speakers disjoint across splits
    voices = json.loads((corpus / "voices.json").read_text())
    group_splits = defaultdict(set)
    for v in voices:
        group_splits[v["speaker_group"]].add(v["split"])
    assert all(len(s) == 1 for s in group_splits.values())
    for split, us in utts.items():
        assert {u.kind for u in us} == {"sentence", "phrase"}
        per_phrase = Counter(u.text for u in us if u.kind == "phrase")
        assert min(per_phrase.values()) >= synth.PHRASE_VOICES[split]
        for text in per_phrase:  # ... each said by distinct voices
            assert len({u.speaker for u in us if u.text == text}) == per_phrase[text]
    texts = [{u.text for u in us} for us in utts.values()]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    u = everything[0]
    audio, sr = sf.read(u.path, dtype="float32")
    assert sr == 16000 and audio.ndim == 1 and abs(len(audio) / sr - u.duration) < 1e-3
    assert u.extra["engine"] in ("espeak", "piper") and u.speaker == Voice.from_id(u.speaker).id
    summary = json.loads((corpus / "summary.json").read_text())
    assert summary["failed"] == [] and summary["impossible_phonemes"] == ["UW"]


def _digests(folder):
    return {p.relative_to(folder): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "summary.json"}


def test_same_seed_same_corpus_and_resume(corpus):
    # Same seed, one worker instead of two: byte-identical manifests and audio (piper included).
    again = corpus.parent / "b"
    synth.build_corpus(again, workers=1, **ARGS)
    assert _digests(again) == _digests(corpus)

    # Kill-and-resume: deleted clips come back identical; nothing else is rewritten.
    clips = sorted((again / "audio").rglob("*.flac"))
    piper = [p for p in clips if "piper" in p.name]
    victims = [piper[len(piper) // 2], piper[-1], next(p for p in clips if "espeak" in p.name)]
    for p in victims:
        p.unlink()
    (again / "train.jsonl").unlink()
    mtimes = {p: p.stat().st_mtime_ns for p in clips if p not in victims}
    synth.build_corpus(again, workers=1, **ARGS)
    assert all(p.is_file() for p in victims)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert _digests(again) == _digests(corpus)


def test_other_seed_other_texts():
    voices = synth.select_voices(VOICES)
    a, _, _ = synth.plan_corpus(voices, 0.003, seed=0, min_phoneme_count=0)
    b, _, _ = synth.plan_corpus(voices, 0.003, seed=1, min_phoneme_count=0)
    assert {c.text for c in a} != {c.text for c in b}


def test_phoneme_coverage_is_filled():
    voices = synth.select_voices(["espeak:en-us+*"])
    clips, _, impossible = synth.plan_corpus(voices, 0.003, seed=0, min_phoneme_count=2)
    for split in ("train", "dev", "test"):
        counts = Counter(p for c in clips if c.split == split for p in c.phonemes)
        short = [p for p in REAL_PHONEMES if counts[p] < 2]
        assert short == impossible == ["UW"]
