"""The ``ctc`` matcher head (training-free CTC keyword search) at every level: on hand-made
posteriors, its calibration, inside KWSModel, in the streaming spotter, and calibrated on dev trials."""
import csv
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_chunked, toy_wave
from evaluation import realspeech as rs
from evaluation.calibrate import calibrate
from openkws.config import load_config
from openkws.metrics import eer, roc_auc
from openkws.model import Keyword, KWSModel
from openkws.models.acoustic import load_acoustic
from openkws.models.ctc_head import CTCSearchHead, fit_calibration
from openkws.models.heads import PairBatch, build_head, num_parameters
from openkws.models.p2v import P2V
from openkws.spotter import BLOCK_SECONDS, HOP_QUANTUM, LOCATE_CONTEXT_SECONDS, KeywordSpotter
from openkws.text import PHONEMES, encode
from openkws.train.heads import HeadTrainConfig, train_head

V = len(PHONEMES)
SR = 16000


# ------------------------------------------------------------------ hand-made posteriors

def frames_of(*words, lead=3, tail=3, gap=2):
    """CTC-like frame labels: each word's phonemes as 2-frame spikes separated by one blank, words
    separated by ``gap`` blanks; and each word's true span (first, last frame)."""
    seq, spans = [0] * lead, []
    for w, word in enumerate(words):
        if w:
            seq += [0] * gap
        first = len(seq)
        for i, tok in enumerate(encode(word.split())):
            seq += ([0] if i else []) + [tok, tok]
        spans.append((first, len(seq) - 1))
    return seq + [0] * tail, spans


def peaky(seq, gen, peak=8.0, noise=0.5):
    """(T, V) log-posteriors whose argmax follows the frame labels ``seq``, plus noise."""
    logits = noise * torch.randn(len(seq), V, generator=gen)
    logits[torch.arange(len(seq)), torch.tensor(seq)] += peak
    return logits.log_softmax(-1)


def pair_batch(clips, keywords, variants=None, extra_frames=0, junk=0.0, seed=0):
    """Every (clip, keyword) pair: clips are (T_i, V) log-posteriors, padded with ``junk`` to the
    longest + ``extra_frames``; keywords are pronunciation strings. ``variants`` (optional): per
    keyword a list of pronunciations (variant_ids). The encoder frames are random (distinct clips)."""
    gen = torch.Generator().manual_seed(seed)
    n = max(len(c) for c in clips) + extra_frames
    lp = torch.full((len(clips), n, V), junk)
    for i, c in enumerate(clips):
        lp[i, : len(c)] = c
    audio = torch.randn(len(clips), n, 4, generator=gen)
    ids = [encode(k.split()) for k in keywords]
    m = max(map(len, ids))
    phoneme_ids = torch.tensor([row + [0] * (m - len(row)) for row in ids])
    ci = torch.arange(len(clips)).repeat_interleave(len(keywords))
    ki = torch.arange(len(keywords)).repeat(len(clips))
    extra = {}
    if variants is not None:
        rows, width = max(map(len, variants)), max(len(p.split()) for v in variants for p in v)
        vid = torch.zeros(len(keywords), rows, width, dtype=torch.long)
        for k, prons in enumerate(variants):
            for r, p in enumerate(prons):
                vid[k, r, : len(p.split())] = torch.tensor(encode(p.split()))
        extra["variant_ids"] = vid[ki]
    return PairBatch(audio=audio[ci], audio_lengths=torch.tensor([len(c) for c in clips])[ci],
                     text=torch.zeros(len(ci), m, 4), text_lengths=torch.tensor([len(i) for i in ids])[ki],
                     phoneme_ids=phoneme_ids[ki], log_probs=lp[ci], **extra)


def test_spoken_keyword_scores_higher_and_is_located():
    head = build_head("ctc")
    seq, spans = frames_of("K IH1 S")
    clip = peaky(seq, torch.Generator().manual_seed(0))
    keywords = ["K IH1 S", "K IH0 S", "S IH1 K", "B IY1", "K IH1 S M"]
    batch = pair_batch([clip], keywords)
    logits, probs, found = head(batch), head.score(batch), head.search(batch)
    spoken, unstressed, reversed_, other, longer = logits.tolist()
    assert spoken > max(reversed_, other, longer) + 2.0  # 2 logits = half a token's worth of cost
    assert unstressed == pytest.approx(spoken, abs=1e-5)  # stress-insensitive by default
    assert probs[0] > 0.5 > probs[2:].max()
    assert torch.allclose(logits, head.calibrate(found.score)) and float(found.score[0]) == pytest.approx(0.0, abs=1e-3)
    assert (int(found.start[0]), int(found.end[0])) == spans[0]  # the span of the spoken keyword (frames)
    # Two keywords in one clip: each is found where it was spoken.
    seq, spans = frames_of("B IY1", "K IH1 S", "M AA1")
    found = head.search(pair_batch([peaky(seq, torch.Generator().manual_seed(1))], ["M AA1", "K IH1 S", "B IY1"]))
    assert list(zip(found.start.tolist(), found.end.tolist())) == spans[::-1]
    assert found.score.max() - found.score.min() < 1e-3


def test_scores_do_not_depend_on_padding_or_on_the_other_pairs():
    head = build_head("ctc")
    gen = torch.Generator().manual_seed(2)
    clips = [peaky(frames_of(*w)[0], gen) for w in (["K IH1 S"], ["B IY1", "S IY1 M"], ["M AA1"], ["S IY1"])]
    keywords = ["K IH1 S", "S IY1 M", "B IY1", "M AA1 S", "AA1"]
    full = pair_batch(clips, keywords, extra_frames=7, junk=0.0)  # junk: every token certain in the padding
    logits = head(full)
    found = head.search(full)
    alone = torch.stack([head(pair_batch([c], [k])) for c in clips for k in keywords]).flatten()
    torch.testing.assert_close(logits, alone, atol=1e-5, rtol=0)
    assert bool((found.end < full.audio_lengths).all()) and bool((found.start >= 0).all())
    index = torch.tensor([7, 0, 0, 19, 7, 3, 12, 12])  # a permutation with repeats
    torch.testing.assert_close(head(full.select(index)), logits[index], atol=1e-5, rtol=0)
    picked = head.search(full.select(index))
    assert torch.equal(picked.start, found.start[index]) and torch.equal(picked.end, found.end[index])


def test_clips_with_equal_encoder_frames_keep_their_own_posteriors():
    # The head reads nothing of the audio but its CTC posteriors: pairs must never be grouped
    # into one clip when their posteriors differ, whatever their encoder frames hold.
    head = build_head("ctc")
    gen = torch.Generator().manual_seed(3)
    spoken = peaky(frames_of("K IH1 S", lead=2, tail=2)[0], gen)
    silent = peaky([0] * len(spoken), gen)
    batch = pair_batch([spoken, silent], ["K IH1 S"])
    batch.audio.zero_()  # e.g. a caller with no encoder frames
    spoken_logit, silent_logit = head(batch).tolist()
    assert spoken_logit > silent_logit + 4.0


def test_score_is_the_best_of_the_keyword_variants():
    head = build_head("ctc")
    gen = torch.Generator().manual_seed(4)
    clips = [peaky(frames_of(w)[0], gen) for w in ("R IY1 D", "R EH1 D", "B IY1")]
    prons = ["R EH1 D", "R IY1 D", "B IY1"]
    single = head(pair_batch(clips, prons)).view(3, 3)
    both = pair_batch(clips, ["R EH1 D", "B IY1"], variants=[["R EH1 D", "R IY1 D"], ["B IY1"]])
    logits, found = head(both).view(3, 2), head.search(both)
    torch.testing.assert_close(logits[:, 0], single[:, :2].max(1).values, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:, 1], single[:, 2], atol=1e-5, rtol=0)  # the zero row is no variant
    assert found.variant.view(3, 2)[:2, 0].tolist() == [1, 0]  # the variant that was spoken
    assert logits[0, 0] > single[0, 0] + 2.0 and logits[1, 0] > single[1, 1] + 2.0
    # without variant_ids the text's phonemes are the one pronunciation
    torch.testing.assert_close(head(pair_batch(clips, ["R EH1 D"])), single[:, 0], atol=1e-6, rtol=0)


def test_head_is_training_free():
    head = build_head("ctc", {"normalisation": "frame", "scale": 2.0, "bias": -1.0})
    assert isinstance(head, CTCSearchHead) and head.searcher.normalisation == "frame"
    assert head.needs_log_probs and head.locates and not head.trainable and not head.needs_feats
    assert list(head.parameters()) == [] and num_parameters(head, trainable_only=False) == 0
    assert head.state_dict() == {}
    batch = pair_batch([peaky(frames_of("B IY1")[0], torch.Generator().manual_seed(5))], ["B IY1"])
    batch.labels = torch.ones(1)
    with pytest.raises(ValueError, match="training-free.*fit_calibration"):
        head.loss(batch)
    torch.testing.assert_close(head.calibrate(torch.tensor([0.0, -1.5])), torch.tensor([-1.0, -4.0]))
    batch.log_probs = None
    with pytest.raises(ValueError, match="log_probs"):
        head(batch)
    with pytest.raises(ValueError, match="normalisation"):
        build_head("ctc", {"normalisation": "nope"})


def test_train_head_refuses_the_ctc_head(toy_system, tmp_path):
    exp = tmp_path / "ctc"
    cfg = load_config(HeadTrainConfig, None, [
        f"exp_dir={exp}", "head=ctc", f"acoustic={toy_system['acoustic']}", f"p2v={toy_system['p2v']}",
        f"train=[{toy_system['phrases']['train']}]", "device=cpu"])
    with pytest.raises(ValueError, match="'ctc' has nothing to train.*evaluation.calibrate"):
        train_head(cfg)
    assert not (exp / "best_model.pt").exists() and not (exp / "last_model.pt").exists()


# ------------------------------------------------------------------ calibration fit

def test_fit_calibration_recovers_a_known_logistic():
    rng = np.random.default_rng(0)
    raw = -rng.exponential(3.0, 20000)  # raw search scores are <= 0
    for scale, bias in ((1.7, 0.8), (0.6, -1.0)):
        labels = (rng.random(len(raw)) < 1 / (1 + np.exp(-(scale * raw + bias)))).astype(int)
        got = fit_calibration(raw, labels)
        assert got == pytest.approx((scale, bias), abs=0.12)
    # separable dev data: finite, positive slope
    s, b = fit_calibration(np.array([0.0, -0.1, -2.0, -3.0]), np.array([1, 1, 0, 0]))
    assert np.isfinite([s, b]).all() and s > 0
    for one_class in (np.ones(5), np.zeros(5)):
        with pytest.raises(ValueError, match="positive and negative"):
            fit_calibration(-np.arange(5.0), one_class)


# ------------------------------------------------------------------ KWSModel

CTC_CFG = {"normalisation": "token", "stress_insensitive": True, "scale": 3.0, "bias": 1.5}


@pytest.fixture(scope="module")
def model_path(toy_system, tmp_path_factory):
    torch.manual_seed(0)
    p2v = P2V.load(toy_system["p2v"])
    heads = {"ctc": build_head("ctc", CTC_CFG, p2v.dim), "ced": build_head("ced", None, p2v.dim)}
    path = tmp_path_factory.mktemp("ctc_model") / "model.pt"
    KWSModel(load_acoustic(toy_system["acoustic"]), p2v, heads, "ctc", {"ctc": 0.6, "ced": 0.4}).save(path)
    return path


@pytest.fixture(scope="module")
def model(model_path):
    return KWSModel.load(model_path)


def test_model_file_keeps_the_ctc_head_and_its_calibration(model, model_path, tmp_path):
    head = model.head()
    assert model.default_head == "ctc" and isinstance(head, CTCSearchHead)
    assert asdict(head.cfg) == CTC_CFG and model.thresholds == {"ctc": 0.6, "ced": 0.4}
    head.cfg.scale, head.cfg.bias = 7.25, -0.5
    try:
        model.save(tmp_path / "m.pt")
    finally:
        head.cfg.scale, head.cfg.bias = CTC_CFG["scale"], CTC_CFG["bias"]
    again = KWSModel.load(tmp_path / "m.pt")
    assert asdict(again.head("ctc").cfg) == CTC_CFG | {"scale": 7.25, "bias": -0.5}
    clip = toy_wave(["S", "IY1", "M"], np.random.default_rng(0))
    kws = [model.keyword("seem"), model.keyword("bob")]
    logit = torch.logit(torch.from_numpy(model.score_segments([clip], kws, "ctc")).double())
    raw = (logit - CTC_CFG["bias"]) / CTC_CFG["scale"]  # the search scores, from the first model's calibration
    expect = torch.sigmoid(7.25 * raw - 0.5).numpy()
    np.testing.assert_allclose(again.score_segments([clip], kws, "ctc"), expect, atol=1e-4)


def test_locate_pairs_finds_the_keyword_inside_its_clip(model):
    rng = np.random.default_rng(1)
    short, long = toy_wave(["S", "K", "IY1", "M"], rng), toy_wave(["M", "AA1", "B"] * 4, rng)
    enc = model.encode([short, long])  # the short clip is padded in this batch
    words = ["scheme", "ski", "bob", "see"]
    kws = [model.keyword(w) for w in words]
    clip_index, keyword_index = torch.tensor([0, 0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 3, 0, 2])
    scores, first, last = model.locate_pairs(enc, kws, clip_index, keyword_index)
    lengths = enc.audio_lengths[clip_index].numpy()
    assert ((0 <= first) & (first <= last) & (last < lengths)).all()
    np.testing.assert_allclose(scores, model.score_pairs(enc, kws, clip_index, keyword_index), atol=1e-6)
    assert scores[0] > 0.5 > scores[2] and scores[0] > scores[4]  # scheme in its clip, not bob, not elsewhere
    frame = model.frame_samples
    start, stop = first[0] * frame, (last[0] + 1) * frame
    tones = (800, len(short) - 800)  # toy_wave: 50 ms of silence either side
    assert abs(start - tones[0]) <= 2 * frame and abs(stop - tones[1]) <= 2 * frame
    assert first[0] <= first[1] <= last[1] <= last[0]  # "ski" is the start of "scheme"
    assert first[0] <= first[3] <= last[3] < last[0]  # "see": S ... IY1, inside scheme's span
    with pytest.raises(ValueError, match="does not locate"):
        model.locate_pairs(enc, kws, clip_index, keyword_index, head="ced")


def test_keyword_variants_cmudict_first_and_explicit_pronunciation(model):
    either = model.keyword("either")
    assert len(either.variants) == 2 and either.variants[0] == either.phonemes
    assert set(either.variants) == {("IY1", "DH", "ER0"), ("AY1", "DH", "ER0")}
    read = model.keyword("read")
    assert read.variants[0] == read.phonemes and {("R", "EH1", "D"), ("R", "IY1", "D")} == set(read.variants)
    explicit = model.keyword("either", pronunciation="AY1 DH ER0")
    assert explicit.phonemes == ("AY1", "DH", "ER0") and explicit.variants == (explicit.phonemes,)
    assert model.keyword("bee").variants == (("B", "IY1"),)
    # In the model the ctc head searches every variant: a keyword scores as its best one.
    clip = toy_wave(["S", "IY1", "M"], np.random.default_rng(2))
    vectors = model.keyword("bob").vectors
    kws = [Keyword("two", ("B", "AA1", "B"), vectors, (("B", "AA1", "B"), ("S", "IY1", "M"))),
           Keyword("one", ("B", "AA1", "B"), vectors, (("B", "AA1", "B"),)),
           Keyword("other", ("S", "IY1", "M"), vectors, (("S", "IY1", "M"),))]
    enc = model.encode([clip])
    scores, first, last = model.locate_pairs(enc, kws, torch.zeros(3, dtype=torch.long), torch.arange(3))
    assert scores[0] == pytest.approx(max(scores[1], scores[2]), abs=1e-6) and scores[2] > scores[1] + 0.1
    assert (first[0], last[0]) == (first[2], last[2])


# ------------------------------------------------------------------ spotter

@pytest.fixture(scope="module")
def stream():
    """~3.9 s of toy speech; "scheme" (S K IY1 M) is said once, from about 1.17 s to 1.64 s, in
    block 1; the rest says B, AA1 and M only."""
    rng = np.random.default_rng(5)
    parts = [toy_wave(["B", "AA1", "M", "AA1", "B", "M", "AA1", "B", "AA1"], rng),
             toy_wave(["S", "K", "IY1", "M"], rng),
             toy_wave(["M", "AA1", "B", "B", "AA1", "M", "AA1", "B", "M"] * 2, rng)]
    truth = (len(parts[0]) + 800, len(parts[0]) + len(parts[1]) - 800)  # the tones, without the silences
    return np.concatenate(parts), truth


def test_ctc_spotter_does_not_depend_on_chunk_size(model, stream):
    audio, _ = stream
    seen = []
    spotter = KeywordSpotter(model, head="ctc", refractory_seconds=0.5, on_window=seen.append)
    for word in ("scheme", "bob", "seek"):
        spotter.enroll(word, threshold=0.0)  # threshold 0: every window not muted is a detection
    ref, ref_best = run_chunked(spotter, audio, len(audio))
    ref_windows = list(seen)
    assert len(ref) > 4 and {d.keyword for d in ref} == {"scheme", "bob", "seek"}
    for chunk in (1600, 7919):
        seen.clear()
        got, best = run_chunked(spotter, audio, chunk)
        assert [(d.keyword, d.start, d.end) for d in got] == [(d.keyword, d.start, d.end) for d in ref]
        np.testing.assert_allclose([d.score for d in got], [d.score for d in ref], atol=1e-5)
        assert [(w.keyword, w.start, w.stop) for w in seen] == [(w.keyword, w.start, w.stop) for w in ref_windows]
        assert best.keys() == ref_best.keys()
        np.testing.assert_allclose([best[k] for k in ref_best], list(ref_best.values()), atol=1e-5)


def _pass(block_index, end):
    """The spotter's encoder pass for a block: the block and LOCATE_CONTEXT_SECONDS before it."""
    block, context = round(BLOCK_SECONDS * SR), round(LOCATE_CONTEXT_SECONDS * SR)
    start = block_index * block
    return max(0, start - context) // HOP_QUANTUM * HOP_QUANTUM, min(end, start + block)


def test_ctc_detections_are_the_located_spans_and_reported_once(model, stream):
    audio, truth = stream
    seen = []
    spotter = KeywordSpotter(model, head="ctc", refractory_seconds=0.0, on_window=seen.append)
    spotter.enroll("scheme", threshold=0.5)
    spotter.enroll("bob", threshold=0.5)
    detections, _ = spotter.scan(audio)
    assert all(0 <= w.start < w.stop <= len(audio) for w in seen)
    assert all(w.start % model.frame_samples == 0 and w.stop % model.frame_samples == 0 for w in seen)
    assert all(0 <= d.start < d.end <= len(audio) / SR for d in detections)

    def overlaps(a, b):
        return a[0] < b[1] and b[0] < a[1]

    # One occurrence of "scheme", one window and one detection on it, even with no refractory period.
    on_truth = [w for w in seen if w.keyword == "scheme" and overlaps((w.start, w.stop), truth)]
    assert len(on_truth) == 1, on_truth
    hit = on_truth[0]
    assert [d for d in detections if d.keyword == "scheme"] == [hit.detection()]
    assert abs(hit.start - truth[0]) <= 0.1 * SR and abs(hit.stop - truth[1]) <= 0.1 * SR
    # The window is the span located in the pass of the block that the path ends in...
    block = round(BLOCK_SECONDS * SR)
    p = (hit.stop - 1) // block
    keyword = [model.keyword("scheme")]
    one = (torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    start, stop = _pass(p, len(audio))
    score, first, last = model.locate_pairs(model.encode([audio[start:stop]]), keyword, *one)
    frame = model.frame_samples
    assert (hit.start, hit.stop) == (start + first[0] * frame, start + (last[0] + 1) * frame)
    assert hit.score == pytest.approx(float(score[0]), abs=1e-5)
    # ...and the next block's pass finds the same occurrence in its left context: not reported again.
    start, stop = _pass(p + 1, len(audio))
    _, first, last = model.locate_pairs(model.encode([audio[start:stop]]), keyword, *one)
    again = (start + first[0] * frame, start + (last[0] + 1) * frame)
    assert overlaps(again, truth) and again[1] <= (p + 1) * block


# ------------------------------------------------------------------ calibration on dev trials

CLIPS = {"c1": ["S", "K", "IY1", "M"], "c2": ["B", "AA1", "B"], "c3": ["M", "AA1", "K"], "c4": ["S", "IY1", "M"],
         "c5": ["K", "IY1", "B", "AA1", "B"]}
TRIALS = [("c1", "pos1", "scheme", 1, "", ""), ("c1", "easy", "bob", 0, "", ""), ("c1", "hard", "seem", 0, "scheme", 1),
          ("c1", "hard", "ski", 0, "scheme", 1),  # said within "scheme": a negative the search cannot reject
          ("c2", "pos1", "bob", 1, "", ""), ("c2", "easy", "seek", 0, "", ""), ("c2", "hard", "mob", 0, "bob", 1),
          ("c3", "pos1", "mock", 1, "", ""), ("c3", "easy", "see", 0, "", ""), ("c3", "hard", "sock", 0, "mock", 1),
          ("c4", "pos1", "seem", 1, "", ""), ("c4", "easy", "bob", 0, "", ""), ("c4", "hard", "beam", 0, "seem", 1),
          ("c5", "pos2", "key bob", 1, "", ""), ("c5", "easy", "seem", 0, "", ""),
          ("c5", "hard", "key mob", 0, "key bob", 1)]


def write_trials(root):
    """A stand-in dev pack: toy clips and a dev_trials.csv about them."""
    rng = np.random.default_rng(6)
    (root / "audio").mkdir(parents=True)
    for name, phones in CLIPS.items():
        sf.write(root / "audio" / f"{name}.wav", toy_wave(phones, rng), SR)
    with open(root / "dev_trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "kind", "text", "label", "anchor", "phone_dist"])
        w.writerows([(f"audio/{c}.wav", *rest) for c, *rest in TRIALS])
    return root / "dev_trials.csv"


def test_calibrate_fits_the_ctc_head_and_thresholds_on_dev_trials(model_path, tmp_path):
    model = KWSModel.load(model_path)
    trials = rs.read_trials(write_trials(tmp_path / "pack"))
    labels = np.array([t.label for t in trials])
    audio = rs.AudioCache()
    head = model.head("ctc")
    raw = np.zeros(len(trials))  # the raw search score of each trial, each clip searched whole
    for i, t in enumerate(trials):
        enc = model.encode([audio(t.path)])
        pairs = model._pair_batch(enc, [model.keyword(t.text)], torch.zeros(1, dtype=torch.long),
                                  torch.zeros(1, dtype=torch.long), "ctc")
        raw[i] = float(head.search(pairs).score[0])
    assert 0.5 < roc_auc(labels, raw) < 1.0  # informative, not separable

    report = calibrate(model, trials, ["ctc", "ced"], audio)
    scale, bias = head.cfg.scale, head.cfg.bias
    assert report["ctc_calibration"] == {"scale": scale, "bias": bias}
    assert (scale, bias) != (CTC_CFG["scale"], CTC_CFG["bias"]) and scale > 0
    assert (scale, bias) == pytest.approx(fit_calibration(raw, labels), rel=1e-3, abs=1e-3)
    after = rs.score_trials(model, trials, "ctc", audio)
    np.testing.assert_allclose(after, 1 / (1 + np.exp(-(scale * raw + bias))), atol=1e-5)
    assert roc_auc(labels, after) == pytest.approx(roc_auc(labels, raw))  # calibration keeps the ordering
    assert after.mean() == pytest.approx(labels.mean(), abs=0.02)  # a fitted logistic: calibrated on average
    for name, scores in (("ctc", after), ("ced", rs.score_trials(model, trials, "ced", audio))):
        rate, threshold = eer(labels, scores)
        assert model.thresholds[name] == pytest.approx(threshold) == pytest.approx(report[name]["threshold"])
        assert report[name]["dev_eer"] == pytest.approx(rate) and report[name]["n_trials"] == len(trials)
    assert model.thresholds["ctc"] != 0.6 and model.thresholds["ced"] != 0.4
    model.save(tmp_path / "calibrated.pt")
    again = KWSModel.load(tmp_path / "calibrated.pt")
    assert (again.head("ctc").cfg.scale, again.head("ctc").cfg.bias) == (scale, bias)
    assert again.thresholds == model.thresholds
