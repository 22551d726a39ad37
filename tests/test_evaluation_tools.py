"""Evaluation tools: speed benchmark, FSDD digits, continuous-speech spotting (tiny model, no TTS)."""

import csv
import json
import random

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from conftest import toy_wave
from data_prep import tts
from data_prep.tts import Voice
from evaluation import bench_speed, continuous, fsdd
from evaluation.continuous import Occurrence, count_hits, recall_at_fa
from openkws.model import KWSModel
from openkws.models.acoustic import load_acoustic
from openkws.models.heads import build_head
from openkws.models.p2v import P2V
from openkws.spotter import Detection


@pytest.fixture(scope="module")
def model_path(toy_system, tmp_path_factory):
    torch.manual_seed(0)
    p2v = P2V.load(toy_system["p2v"])
    heads = {name: build_head(name, None, p2v.dim) for name in ("ced", "clad")}
    kws = KWSModel(load_acoustic(toy_system["acoustic"]), p2v, heads, "ced", {"ced": 0.5, "clad": 0.5})
    path = tmp_path_factory.mktemp("eval_model") / "model.pt"
    kws.save(path)
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return KWSModel.load(model_path)


# ------------------------------------------------------------------------------- bench_speed

def test_bench_speed_table_structure(model):
    threads = torch.get_num_threads()
    result = bench_speed.run_benchmark(model, ["ced"], audio_seconds=(1,), keyword_counts=(1, 10),
                                       stream_seconds=1.0, enroll_count=6, min_seconds=0.0)
    assert torch.get_num_threads() == threads  # restored after the one-thread run
    assert result["threads"] == 1
    r = result["heads"]["ced"]
    for table in (r["score_ms"], r["score_segments_ms"]):
        assert list(table) == ["1s"] and list(table["1s"]) == ["1", "10"]
        assert all(v > 0 for v in table["1s"].values())
    assert r["stream"]["rtf"] > 0 and r["stream"]["keywords"] == 10
    assert result["enroll"]["n"] == 6 and result["enroll_oov"]["n"] == bench_speed.OOV_ENROLL_COUNT
    assert set(result["checks"]["ced"]) == set(bench_speed.TARGETS)  # every target measured
    for check in result["checks"]["ced"].values():
        assert check["pass"] == (check["value"] <= check["target"])
    text = bench_speed.format_markdown(result)
    assert "| 1 s clip x 10 keywords, openkws.score (ms) | <= 20 |" in text
    assert "| ced | openkws.score | 1s |" in text and "| ced | score_segments | 1s |" in text
    json.dumps(result)  # speed.json is plain JSON


def test_bench_speed_keyword_sets_are_fresh():
    phrases = bench_speed.keyword_phrases(30)
    assert len(set(phrases)) == 30 and phrases == bench_speed.keyword_phrases(30)
    made_up = bench_speed.made_up_words(10)
    assert len(set(made_up)) == 10 and not set(made_up) & set(phrases)


# ------------------------------------------------------------------------------- fsdd

def test_fsdd_metrics_on_a_known_case():
    # Three clips (digits 0, 1, 2): each scores 0.9 on its own digit and 0.1 elsewhere, except
    # clip 2, whose "five" scores 0.95: one negative above all three positives.
    scores = np.full((3, 10), 0.1, dtype=np.float32)
    scores[[0, 1, 2], [0, 1, 2]] = 0.9
    scores[2, 5] = 0.95
    r = fsdd.evaluate(scores, [0, 1, 2], ["a", "a", "b"], threshold=0.5)
    assert r["pooled"]["n_trials"] == 30
    assert r["pooled"]["auc"] == pytest.approx(78 / 81)  # 3 x 26 of the 3 x 27 pairs ordered right
    assert r["pooled"]["eer"] == pytest.approx(1 / 27)
    assert r["top1_accuracy"] == pytest.approx(2 / 3)
    assert r["confusion"][2][5] == 1 and r["confusion"][0][0] == 1
    assert r["at_model_threshold"]["far"] == pytest.approx(1 / 27)
    assert r["at_model_threshold"]["frr"] == 0.0
    assert set(r["by_digit"]) == {"zero", "one", "two"}  # digits with clips only
    assert r["by_digit"]["zero"]["auc"] == 1.0 and r["by_digit"]["zero"]["eer"] == 0.0
    assert r["by_speaker"]["a"]["auc"] == 1.0
    assert r["by_speaker"]["b"]["auc"] == pytest.approx(8 / 9)


def _write_fsdd(root, digits=("zero", "one", "two"), speakers=("ann", "bob")):
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(digits):
        for spk in speakers:
            wave = soxr.resample(toy_wave(["AA1", "B", "K", "S"][: 2 + i], rng), 16000, 8000)
            path = f"audio/{i}_{spk}.flac"
            (root / "audio").mkdir(parents=True, exist_ok=True)
            sf.write(root / path, wave, 8000)
            rows.append({"path": path, "text": text, "speaker": spk, "sample_rate": 8000,
                         "duration_s": round(len(wave) / 8000, 3)})
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fsdd.MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_fsdd_end_to_end_on_a_tiny_folder(model, model_path, tmp_path):
    _write_fsdd(tmp_path / "fsdd")
    result = fsdd.run(model, tmp_path / "fsdd", ["ced", "clad"], batch_size=4)
    assert result["n_clips"] == 6 and result["speakers"] == ["ann", "bob"]
    for r in result["heads"].values():
        assert r["pooled"]["n_trials"] == 60 and 0 <= r["pooled"]["auc"] <= 1
        assert sum(map(sum, r["confusion"])) == 6
    # Batching and padding do not change a clip's scores.
    clips = fsdd.read_fsdd(tmp_path / "fsdd")
    np.testing.assert_allclose(fsdd.score_clips(model, clips, ["ced"], batch_size=1)["ced"],
                               fsdd.score_clips(model, clips, ["ced"], batch_size=6)["ced"], atol=1e-5)
    assert fsdd.main(["--model", str(model_path), "--fsdd", str(tmp_path / "fsdd"), "--heads", "ced",
                      "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "fsdd.json").read_text())["heads"]["ced"]["pooled"]["n_trials"] == 60
    assert "| two |" in (tmp_path / "out" / "fsdd.md").read_text()


def test_fsdd_clear_errors(model_path, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="FSDD folder not found: .*nowhere"):
        fsdd.read_fsdd(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        fsdd.read_fsdd(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.csv").write_text("path,text,speaker\naudio/x.flac,eleven,ann\n")
    with pytest.raises(ValueError, match=r"manifest.csv:2: text 'eleven'"):
        fsdd.read_fsdd(tmp_path / "bad")
    with pytest.raises(SystemExit):
        fsdd.main(["--model", str(model_path), "--fsdd", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert "FSDD folder not found" in capsys.readouterr().err


# ------------------------------------------------------------------------------- continuous

def _det(keyword, centre, half=0.5, score=0.9):
    return Detection(keyword, score, centre - half, centre + half)


def test_hits_and_false_alarms_are_counted_exactly():
    occ = [Occurrence("a", 10.0, 11.0), Occurrence("a", 20.0, 21.0), Occurrence("b", 30.0, 31.0),
           Occurrence("a", 39.6, 40.4), Occurrence("a", 40.4, 41.2)]  # the last two: centres 40.0 and 40.8
    detections = [
        _det("a", 10.0),  # -0.5 s from 10.5: the edge counts as a hit
        _det("a", 10.6),  # that occurrence is already hit: a false alarm
        _det("a", 21.001),  # 0.501 s from 20.5: outside, a false alarm (20.5 is never hit)
        _det("a", 30.5),  # right place, wrong keyword: a false alarm
        _det("b", 31.0),  # +0.5 s: the other edge, a hit
        _det("a", 40.3),  # claims the nearest occurrence (40.0) ...
        _det("a", 40.6),  # ... so this one takes 40.8: both hit
    ]
    assert count_hits(detections, occ) == (4, 3)
    # Tighter: the edge detections miss, and 10.6 now hits 10.5.
    assert count_hits(detections, occ, tolerance=0.45) == (3, 4)
    assert count_hits([], occ) == (0, 0)
    assert count_hits(detections[:1], []) == (0, 1)


def test_recorded_windows_replay_exactly_as_rerunning_the_spotter(model):
    rng = np.random.default_rng(3)
    audio = np.concatenate([toy_wave(["AA1", "B", "K", "S", "IY1", "M"] * 3, rng) for _ in range(2)])
    keywords = ["bee", "kiss"]
    windows = continuous.window_scores(model, "ced", keywords, audio)
    assert {w.keyword for w in windows} == set(keywords) and len(windows) > 10
    scores = np.array([w.score for w in windows])
    for refractory in (0.5, 1.0):
        for threshold in np.quantile(scores, [0.0, 0.3, 0.6, 0.9]):
            spotter = continuous.spotter_at(model, "ced", keywords, float(threshold), refractory)
            expected = spotter.scan(audio)[0]
            assert expected and spotter.decide(windows) == expected  # scan() leaves the spotter reset


def test_evaluate_head_sweeps_thresholds_over_the_recorded_windows(model):
    rng = np.random.default_rng(5)
    audio = np.concatenate([toy_wave(["AA1", "B", "K", "S", "IY1", "M"] * 3, rng) for _ in range(2)])
    keywords = ["bee", "kiss"]
    recordings = [continuous.Recording("r0", "toy", audio, [Occurrence("bee", 1.0, 1.4)], "toy")]
    result = continuous.evaluate_head(model, "ced", keywords, recordings)
    assert result["n_windows"] == len(continuous.window_scores(model, "ced", keywords, audio))
    thresholds = [p["threshold"] for p in result["curve"]]
    assert thresholds == sorted(thresholds, reverse=True) and model.thresholds["ced"] in thresholds
    lowest = result["curve"][-1]
    detections = continuous.spotter_at(model, "ced", keywords, lowest["threshold"]).scan(audio)[0]
    assert lowest["hits"] + lowest["false_alarms"] == len(detections) > 0


def test_recall_at_fa_interpolates_the_upper_envelope():
    fa, recall = [0.0, 2.0, 3.0, 4.0], [0.2, 0.6, 0.5, 0.8]  # the point at 3 FA/h is dominated
    assert recall_at_fa(fa, recall, 1.0) == pytest.approx(0.4)
    assert recall_at_fa(fa, recall, 0.0) == pytest.approx(0.2)
    assert recall_at_fa(fa, recall, 3.0) == pytest.approx(0.7)  # between (2, 0.6) and (4, 0.8)
    assert recall_at_fa(fa, recall, 10.0) == pytest.approx(0.8)  # past the last point
    assert recall_at_fa([2.0, 4.0], [0.6, 0.8], 1.0) == pytest.approx(0.3)  # from "accept nothing" (0, 0)


def test_recording_knows_where_each_keyword_is():
    keywords = ["open the window", "feed the cat"]

    def fake_tts(voice, text):  # keywords: 0.6 s at 1 kHz; other pieces: 0.1 s a word at 300 Hz
        sr = 22050
        seconds, freq = (0.6, 1000.0) if text in keywords else (0.1 * len(text.split()), 300.0)
        t = np.arange(int(seconds * sr)) / sr
        pad = np.zeros(int(0.2 * sr))
        return np.concatenate([pad, 0.5 * np.sin(2 * np.pi * freq * t), pad]).astype(np.float32), sr

    fillers = iter(["please open the window now"] + ["a few other words"] * 100)  # the first mentions one
    rec = continuous.build_recording("r", Voice("espeak", "en-us+f3"), keywords, 20.0, random.Random(0),
                                     lambda: next(fillers), synthesize=fake_tts)
    assert rec.seconds >= 20.0 and "please open the window now" not in rec.text
    assert len(rec.occurrences) >= 4 and {o.keyword for o in rec.occurrences} == set(keywords)
    for o in rec.occurrences:
        assert o.end - o.start == pytest.approx(0.6, abs=0.011)  # trimmed to the speech, 10 ms frames
        piece = rec.audio[round(o.start * 16000): round(o.end * 16000)]
        spectrum = np.abs(np.fft.rfft(piece))
        assert np.fft.rfftfreq(len(piece), 1 / 16000)[spectrum.argmax()] == pytest.approx(1000, abs=5)
        before = rec.audio[round(o.start * 16000) - 320: round(o.start * 16000) - 160]  # in the gap
        assert np.abs(before).max() < 0.01


def test_keyword_choice_and_test_voices(tmp_path):
    avoid = {" ".join(k.split()) for k in continuous.KEYWORD_CANDIDATES[3:]}
    chosen = continuous.choose_keywords(5, avoid, random.Random(0))
    assert set(chosen[:3]) == set(continuous.KEYWORD_CANDIDATES[:3]) and len(set(chosen)) == 5
    with pytest.raises(ValueError, match="--keywords"):
        continuous.choose_keywords(0, set(), random.Random(0))
    with pytest.raises(FileNotFoundError, match="voices.json"):
        continuous.heldout_voices(tmp_path)
    voices = tts.available_voices()
    if len(voices) < 2:
        pytest.skip("needs two installed TTS voices")
    rows = [{"id": voices[0].id, "split": "train"}, {"id": voices[1].id, "split": "test"}]
    (tmp_path / "voices.json").write_text(json.dumps(rows))
    assert continuous.heldout_voices(tmp_path) == [voices[1]]
