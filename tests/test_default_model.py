"""The shipped default model: loads offline, scores, and finds a keyword inside a sentence."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import openkws
from openkws.api import DEFAULT_MODEL


def test_default_model_is_shipped_and_scores(tmp_path):
    assert DEFAULT_MODEL.exists() and DEFAULT_MODEL.stat().st_size <= 20e6
    model = openkws.load_model()
    assert model.info.get("corpus") == "synth"
    clip = (0.01 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    scores = openkws.score(clip, ["turn on lights", "play music"])
    assert set(scores) == {"turn on lights", "play music"} and all(0 <= s <= 1 for s in scores.values())


@pytest.mark.slow
def test_cli_detect_finds_keyword_inside_a_sentence(tmp_path):
    from data_prep.tts import Voice, synthesize
    from openkws.audio import load_audio

    voice = Voice.from_id("piper:joe:ls1.08:ns0.667:nw0.8:w1.16")  # a test-split voice of the synthetic corpus
    pieces = [load_audio(*synthesize(voice, text)) for text in ("please could you", "turn on lights", "in the kitchen now")]
    gap = np.zeros(int(0.15 * 16000), np.float32)
    audio = np.concatenate([pieces[0], gap, pieces[1], gap, pieces[2]])
    start = (len(pieces[0]) + len(gap)) / 16000
    end = start + len(pieces[1]) / 16000
    path = tmp_path / "long.wav"
    sf.write(path, audio, 16000)
    out = subprocess.run([sys.executable, "-m", "openkws", "detect", str(path), "turn on lights", "--json"],
                         capture_output=True, text=True, check=True).stdout
    detections = json.loads(out)
    assert any(d["keyword"] == "turn on lights" and d["start"] < end and d["end"] > start for d in detections), \
        (detections, start, end)



REAL_PACK = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realspeech"


@pytest.mark.skipif(not (REAL_PACK / "dev_trials.csv").exists(), reason="needs the real-speech pack beside the repository")
def test_default_model_finds_keywords_inside_real_sentences():
    # The first clips of the real dev trials: the shipped model, as a user calls it, ranks the
    # words spoken in each sentence above words that are not.
    from evaluation.realspeech import AudioCache, read_trials, score_trials
    from openkws.metrics import roc_auc

    trials = [t for t in read_trials(REAL_PACK / "dev_trials.csv") if t.kind in ("pos1", "easy")][:40]
    scores = score_trials(openkws.load_model(), trials, openkws.load_model().default_head, AudioCache())
    assert roc_auc([t.label for t in trials], scores) > 0.9
