import numpy as np
import pytest
import torch

import openkws
from conftest import toy_wave
from openkws.model import KWSModel
from openkws.models.acoustic import load_acoustic
from openkws.models.heads import build_head
from openkws.models.p2v import P2V
from openkws.spotter import KeywordSpotter


@pytest.fixture(scope="module")
def model(toy_system, tmp_path_factory):
    torch.manual_seed(0)
    p2v = P2V.load(toy_system["p2v"])
    heads = {name: build_head(name, None, p2v.dim) for name in ("ced", "clad", "phonmatch")}
    kws = KWSModel(load_acoustic(toy_system["acoustic"]), p2v, heads, "ced", {"ced": 0.0}, {"corpus": "toy"})
    path = tmp_path_factory.mktemp("model") / "model.pt"
    kws.save(path)
    return KWSModel.load(path)


@pytest.fixture(scope="module")
def long_audio():
    rng = np.random.default_rng(3)
    return np.concatenate([toy_wave(["AA1", "B", "K", "S", "IY1", "M"] * 3, rng) for _ in range(2)])


def _run(spotter, audio, chunk):
    spotter.reset()
    out = []
    for i in range(0, len(audio), chunk):
        out += spotter.accept_waveform(audio[i:i + chunk])
    return out + spotter.flush(), dict(spotter.best_scores)


def test_detections_do_not_depend_on_chunk_size(model, long_audio):
    spotter = KeywordSpotter(model, refractory_seconds=0.5)
    spotter.enroll("bee", threshold=0.0)  # threshold 0: every window not muted is a detection
    spotter.enroll("kiss", pronunciation="K IH1 S", threshold=0.0)
    ref, ref_best = _run(spotter, long_audio, len(long_audio))
    assert len(ref) > 3 and {d.keyword for d in ref} == {"bee", "kiss"}
    for chunk in (160, 1000, 4000, 7777):
        got, best = _run(spotter, long_audio, chunk)
        assert [(d.keyword, d.start, d.end) for d in got] == [(d.keyword, d.start, d.end) for d in ref]
        np.testing.assert_allclose([d.score for d in got], [d.score for d in ref], atol=1e-5)
        assert best.keys() == ref_best.keys()


def test_refractory_period_spaces_detections(model, long_audio):
    spotter = KeywordSpotter(model, refractory_seconds=1.0)
    spotter.enroll("bee", threshold=0.0)
    detections, _ = spotter.scan(long_audio)
    starts = [d.start for d in detections]
    assert all(b - a >= 0.5 for a, b in zip(starts, starts[1:]))
    assert all(0 <= d.start < d.end <= len(long_audio) / 16000 + 1e-6 for d in detections)


def test_int16_and_resampled_streams_match_float(model, long_audio):
    spotter = KeywordSpotter(model)
    spotter.enroll("bee", threshold=0.0)
    ref, _ = _run(spotter, long_audio, 4000)
    as_int16 = (long_audio * 32767).astype(np.int16)
    got, _ = _run(spotter, as_int16, 4000)
    assert [d.start for d in got] == [d.start for d in ref]
    # an 8 kHz stream is resampled statefully: the chunking still does not matter
    import soxr
    low = soxr.resample(long_audio, 16000, 8000)
    outs = []
    for chunk in (80, 3000):
        spotter.reset()
        dets = []
        for i in range(0, len(low), chunk):
            dets += spotter.accept_waveform(low[i:i + chunk], sample_rate=8000)
        outs.append([(d.start, round(d.score, 4)) for d in dets + spotter.flush()])
    assert outs[0] == outs[1]


def test_short_clip_is_scored_whole_and_api_matches_spotter(model):
    clip = toy_wave(["B", "IY1"], np.random.default_rng(0))
    scores = openkws.score(clip, ["bee", "kiss"], model=model)
    assert set(scores) == {"bee", "kiss"} and all(0 <= s <= 1 for s in scores.values())
    direct = model.score_segments([clip], [model.keyword("bee"), model.keyword("kiss")])[0]
    np.testing.assert_allclose([scores["bee"], scores["kiss"]], direct, atol=1e-6)
    assert openkws.detect(clip, "bee", model=model, threshold=1.0) == []


def test_model_file_round_trip_and_errors(model, tmp_path):
    path = tmp_path / "m.pt"
    model.save(path)
    again = KWSModel.load(path)
    clip = toy_wave(["B", "IY1"], np.random.default_rng(1))
    kws = [model.keyword("bee")]
    for head in ("ced", "clad", "phonmatch"):
        np.testing.assert_allclose(again.score_segments([clip], kws, head), model.score_segments([clip], kws, head))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="m.pt"):
        KWSModel.load(path)
    with pytest.raises(ValueError, match="non-empty"):
        model.keyword("  ")
    with pytest.raises(ValueError, match="ZZ"):
        model.keyword("bee", pronunciation="B ZZ")
    with pytest.raises(ValueError, match="no head"):
        model.head("nope")
    spotter = KeywordSpotter(model)
    with pytest.raises(ValueError, match="enroll"):
        spotter.accept_waveform(np.zeros(16000, dtype=np.float32))
    with pytest.raises(ValueError, match="threshold"):
        spotter.enroll("bee", threshold=2.0)
