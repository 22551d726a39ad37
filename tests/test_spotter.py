import numpy as np
import pytest
import torch

import openkws
from conftest import run_chunked, toy_wave
from openkws.model import KWSModel
from openkws.models.acoustic import load_acoustic
from openkws.models.heads import build_head
from openkws.models.p2v import P2V
from openkws.spotter import BLOCK_SECONDS, Detection, KeywordSpotter, Window


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


def test_detections_do_not_depend_on_chunk_size(model, long_audio):
    spotter = KeywordSpotter(model, refractory_seconds=0.5)
    spotter.enroll("bee", threshold=0.0)  # threshold 0: every window not muted is a detection
    spotter.enroll("kiss", pronunciation="K IH1 S", threshold=0.0)
    ref, ref_best = run_chunked(spotter, long_audio, len(long_audio))
    assert len(ref) > 3 and {d.keyword for d in ref} == {"bee", "kiss"}
    for chunk in (160, 1000, 4000, 7777, round(BLOCK_SECONDS * 16000)):  # the last ends on block boundaries
        got, best = run_chunked(spotter, long_audio, chunk)
        assert [(d.keyword, d.start, d.end) for d in got] == [(d.keyword, d.start, d.end) for d in ref]
        np.testing.assert_allclose([d.score for d in got], [d.score for d in ref], atol=1e-5)
        assert best.keys() == ref_best.keys()


def _windows(model, keywords, audio, enroll_late=(), after=0, chunk=4000):
    """Every window a spotter scores on ``audio``; ``enroll_late`` keywords join after ``after`` samples."""
    seen = []
    spotter = KeywordSpotter(model, on_window=seen.append)
    for k in keywords:
        spotter.enroll(k)
    for i in range(0, len(audio), chunk):
        if i >= after:
            for k in enroll_late:
                spotter.enroll(k)
        spotter.accept_waveform(audio[i:i + chunk])
    spotter.flush()
    return seen


def test_windows_sit_on_a_fixed_grid_and_cover_the_stream(model, long_audio):
    windows = _windows(model, ["bee", "kiss"], long_audio)
    end = len(long_audio)
    for keyword in ("bee", "kiss"):
        mine = [w for w in windows if w.keyword == keyword]
        length = mine[0].stop - mine[0].start
        hop = mine[1].start - mine[0].start
        assert mine[0].start == 0 and 0 < hop <= length // 2 and hop % 640 == 0
        regular, tail = mine[:-1], mine[-1]
        assert [w.start for w in regular] == list(range(0, hop * len(regular), hop))
        assert all(w.stop - w.start == length for w in regular)
        assert tail.stop == end and end - 640 < tail.start + length <= end + 640  # the stream's last window
        assert regular[-1].stop <= end < regular[-1].stop + hop


def test_window_scores_do_not_depend_on_other_keywords_or_enrolment_time(model, long_audio):
    # A window's encoder pass is fixed by its position in the stream, not by what else is enrolled,
    # and a keyword enrolled mid-stream (here with a window size new to the stream) gets the
    # windows of the rest of the stream.
    longer = "kiss bee see kiss"
    assert model.keyword(longer).window_seconds > 1.0 > model.keyword("bee").window_seconds
    both = _windows(model, ["bee", longer], long_audio)
    alone = _windows(model, ["bee"], long_audio)
    late = _windows(model, ["bee"], long_audio, enroll_late=[longer], after=len(long_audio) // 2)

    def of(windows, keyword):
        return [(w.start, w.stop, round(w.score, 5)) for w in windows if w.keyword == keyword]

    assert of(alone, "bee") == of(both, "bee") == of(late, "bee")
    late_windows, all_windows = of(late, longer), of(both, longer)
    assert 0 < len(late_windows) < len(all_windows) and late_windows == all_windows[-len(late_windows):]


def test_decide_applies_threshold_and_refractory_period(model):
    # One keyword, 1 s windows every 0.5 s, plus another keyword that must not interact.
    sr = 16000
    scores = [0.9, 0.8, 0.2, 0.95, 0.1, 0.7]
    windows = [Window("a", s, i * sr // 2, i * sr // 2 + sr) for i, s in enumerate(scores)]
    windows.insert(2, Window("b", 0.99, sr // 2, 3 * sr // 2))

    def fired(threshold, refractory=1.0):
        spotter = KeywordSpotter(model, refractory_seconds=refractory)
        spotter.enroll("a", threshold, pronunciation="AA1")
        spotter.enroll("b", threshold, pronunciation="B IY1")
        return [(d.keyword, d.start) for d in spotter.decide(windows)]

    # w0 fires and mutes "a" until its centre + refractory = 0.5 + 1.0 = 1.5 s; w3 starts exactly
    # then (fires) and mutes w5 (start 2.5 < 3.0).
    assert fired(0.5) == [("a", 0.0), ("b", 0.5), ("a", 1.5)]
    assert fired(0.92) == [("b", 0.5), ("a", 1.5)]
    # No refractory period: a detection mutes only windows that start before its centre.
    assert fired(0.5, 0.0) == [("a", 0.0), ("a", 0.5), ("b", 0.5), ("a", 1.5), ("a", 2.5)]
    assert fired(0.0, -3600.0) == sorted(((w.keyword, w.start / sr) for w in windows), key=lambda d: (d[1], d[0]))
    assert fired(1.0) == []
    assert KeywordSpotter(model).decide([]) == []
    hit = windows[0]
    assert hit.detection() == Detection("a", 0.9, 0.0, 1.0)


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
    ref, _ = run_chunked(spotter, long_audio, 4000)
    as_int16 = (long_audio * 32767).astype(np.int16)
    got, _ = run_chunked(spotter, as_int16, 4000)
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
    assert len(clip) < 0.75 * 16000  # shorter than the windows of both keywords
    for head in ("ced", "clad", "phonmatch"):
        scores = openkws.score(clip, ["bee", "kiss"], model=model, head=head)
        assert set(scores) == {"bee", "kiss"} and all(0 <= s <= 1 for s in scores.values())
        direct = model.score_segments([clip], [model.keyword("bee"), model.keyword("kiss")], head)[0]
        np.testing.assert_allclose([scores["bee"], scores["kiss"]], direct, atol=1e-6)
    assert openkws.detect(clip, "bee", model=model, threshold=1.0) == []


def test_clip_within_one_block_is_encoded_once_whole(model):
    # Every window of a clip no longer than one block is cut from the clip's own encoding: the
    # window that spans the whole clip scores exactly as the clip scored whole.
    clip = toy_wave(["K", "AA1", "S", "B", "IY1", "S", "IY1", "M", "AA1", "B"], np.random.default_rng(2))
    clip = clip[: round(BLOCK_SECONDS * 16000)]
    long_keyword = "kiss bee see kiss bee"  # its window is longer than the clip
    windows = _windows(model, ["bee", long_keyword], clip)
    whole = [w for w in windows if (w.start, w.stop) == (0, len(clip))]
    assert [w.keyword for w in whole] == [long_keyword]
    assert {w.keyword for w in windows} == {"bee", long_keyword} and len(windows) > 2
    direct = model.score_segments([clip], [model.keyword(long_keyword)])[0, 0]
    assert whole[0].score == pytest.approx(direct, abs=1e-6)


def test_cut_windows_match_encoding_them_alone_in_shape_and_fbank(model):
    clip = toy_wave(["AA1", "B", "K", "S", "IY1", "M"] * 2, np.random.default_rng(4))
    whole = model.encode([clip])
    starts, lengths = torch.tensor([0, 640, 3200]), torch.tensor([len(clip), 8000, 12345])
    cut = model.cut(whole, torch.zeros(3, dtype=torch.long), starts, lengths)
    alone = model.encode([clip[a: a + n] for a, n in zip(starts.tolist(), lengths.tolist())])
    assert torch.equal(cut.audio_lengths, alone.audio_lengths) and torch.equal(cut.feat_lengths, alone.feat_lengths)
    for i, n in enumerate(cut.feat_lengths.tolist()):  # the fbank is frame-local: the same frames
        torch.testing.assert_close(cut.feats[i, :n], alone.feats[i, :n], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(cut.audio[0], whole.audio[0])  # the whole clip: its own encoding
    assert cut.audio.shape == alone.audio.shape
    with pytest.raises(ValueError, match="multiples of 640"):
        model.cut(whole, torch.tensor([0]), torch.tensor([160]), torch.tensor([8000]))
    with pytest.raises(ValueError, match="past the end"):
        model.cut(whole, torch.tensor([0]), torch.tensor([640]), torch.tensor([len(clip)]))


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


def test_heads_with_an_audio_stream_get_it_from_each_window_own_audio(model, long_audio):
    # PhonMatchNet on Google's speech embedding: the stream has its own 80 ms grid and 720 ms of
    # left context, so a window's stream features come from the window's audio, not a slice.
    torch.manual_seed(0)
    gse = build_head("phonmatch", {"pretrained_stream": "gse"}, model.p2v.dim)
    kws = KWSModel(model.acoustic, model.p2v, {"phonmatch": gse}, "phonmatch")
    keyword = kws.keyword("bee")
    seen = []
    spotter = KeywordSpotter(kws, on_window=seen.append)
    spotter.enroll("bee")
    spotter.scan(long_audio)
    assert len(seen) > 3
    for w in seen[:3]:
        window = long_audio[w.start:w.stop]
        encoding = kws.encode([long_audio])
        first = torch.tensor([w.start])
        cut = kws.cut(encoding, torch.tensor([0]), first, torch.tensor([w.stop - w.start]))
        expected = kws.score_pairs(kws.with_stream(cut, [window]), [keyword], torch.tensor([0]), torch.tensor([0]))
        assert w.score == pytest.approx(float(expected[0]), abs=0.05)  # encoder context differs, the stream not
    with pytest.raises(ValueError, match="with_stream"):
        kws.score_pairs(kws.encode([long_audio[:16000]]), [keyword], torch.tensor([0]), torch.tensor([0]))
    whole = kws.score_segments([long_audio[:16000]], [keyword])
    assert 0.0 <= whole[0, 0] <= 1.0


@pytest.mark.parametrize("keywords", [None, 3, ["bee", None], ["bee", 7], ("bee", ""), []])
def test_api_rejects_keywords_that_are_not_strings_naming_the_argument(model, keywords):
    clip = toy_wave(["B", "IY1"], np.random.default_rng(0))
    for call in (openkws.score, openkws.detect):
        with pytest.raises((TypeError, ValueError), match="keywords"):
            call(clip, keywords, model=model)


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16000", True])
def test_api_rejects_a_sample_rate_that_is_not_a_positive_integer(model, rate):
    clip = toy_wave(["B", "IY1"], np.random.default_rng(0))
    for call in (openkws.score, openkws.detect):
        with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
            call(clip, "bee", model=model, sample_rate=rate)
