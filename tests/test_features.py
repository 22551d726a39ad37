import numpy as np
import pytest
import torch

from openkws.features import (Fbank, FbankConfig, HamaLogMel, StreamingFbank, build_frontend, frontend_config,
                              num_frames, spec_augment)


def _speechlike(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    x += 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def test_matches_kaldi_native_fbank():
    knf = pytest.importorskip("kaldi_native_fbank")
    x = _speechlike(16000 * 2 + 123)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 80
    online = knf.OnlineFbank(opts)
    online.accept_waveform(16000, (x * 32768).tolist())
    online.input_finished()
    ref = np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])
    ours, n = Fbank()(torch.from_numpy(x)[None])
    ours = ours[0].numpy()
    assert ours.shape == ref.shape == (num_frames(len(x)), 80)
    # Tolerance: both compute in float32 with different FFT/summation orders; log-mel values are
    # O(10), so 1e-3 absolute (about 0.01% relative) is float32 rounding, while any real
    # difference (window, pre-emphasis, mel edges, DC removal) changes values by >0.05.
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


def test_batched_with_lengths_equals_single():
    a, b = _speechlike(8000, 1), _speechlike(5000, 2)
    batch = torch.zeros(2, 8000)
    batch[0], batch[1, :5000] = torch.from_numpy(a), torch.from_numpy(b)
    fb = Fbank()
    feats, lens = fb(batch, torch.tensor([8000, 5000]))
    assert lens.tolist() == [num_frames(8000), num_frames(5000)]
    single, _ = fb(torch.from_numpy(b)[None])
    torch.testing.assert_close(feats[1, : lens[1]], single[0], atol=1e-4, rtol=0)
    assert feats[1, lens[1]:].abs().sum() == 0  # padding frames are zeroed


@pytest.mark.parametrize("chunk", [160, 1000, 4000, 333])
def test_streaming_equals_offline(chunk):
    x = torch.from_numpy(_speechlike(16000 + 77, 3))
    fb = Fbank()
    offline, _ = fb(x[None])
    stream = StreamingFbank(fb)
    parts = [stream.accept(x[i:i + chunk]) for i in range(0, len(x), chunk)]
    online = torch.cat(parts)
    assert online.shape == offline[0].shape
    torch.testing.assert_close(online, offline[0], atol=1e-4, rtol=0)


def test_short_input_gives_no_frames():
    feats, lens = Fbank()(torch.zeros(1, 100), torch.tensor([100]))
    assert lens.tolist() == [0]


def test_spec_augment_masks_and_keeps_padding():
    feats = torch.randn(2, 100, 80)
    lengths = torch.tensor([100, 60])
    gen = torch.Generator().manual_seed(0)
    out = spec_augment(feats, lengths, generator=gen)
    assert out.shape == feats.shape
    assert (out != feats).any()
    torch.testing.assert_close(out[1, 60:], feats[1, 60:])
    again = spec_augment(feats, lengths, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)


def _random_mel(seed=0):
    return torch.rand(201, 80, generator=torch.Generator().manual_seed(seed)) * 0.03


def test_old_frontend_dicts_load_as_kaldi():
    old = {k: v for k, v in FbankConfig().to_dict().items() if k != "kind"}  # a model file from before `kind`
    cfg = frontend_config(old)
    assert cfg == FbankConfig() and cfg.kind == "kaldi" and isinstance(build_frontend(cfg), Fbank)
    hama = frontend_config(FbankConfig.hama().to_dict())
    assert hama.kind == "hama" and isinstance(build_frontend(hama), HamaLogMel)
    with pytest.raises(ValueError, match="kind"):
        FbankConfig(kind="whisper")
    with pytest.raises(ValueError, match="StreamingFbank"):
        StreamingFbank(HamaLogMel(mel_fb=_random_mel()))


def test_hama_logmel_matches_a_plain_stft():
    x = _speechlike(16000 + 77, 4)
    mel = _random_mel()
    feats, n = HamaLogMel(mel_fb=mel)(torch.from_numpy(x)[None])
    assert n.tolist() == [len(x) // 160 + 1] == [num_frames(len(x), FbankConfig.hama())]
    spec = torch.stft(torch.from_numpy(x).double(), 400, 160, window=torch.hann_window(400, dtype=torch.float64),
                      center=True, pad_mode="reflect", return_complex=True)
    ref = (spec.abs().square().T @ mel.double()).clamp(min=1e-10).log()
    assert feats.shape == (1, ref.shape[0], 80)
    # float16 rounding of the log-mel (as hama's engine does): within half a float16 step
    torch.testing.assert_close(feats[0].double(), ref, atol=8e-3, rtol=0)
    assert torch.equal(feats, feats.half().float())


def test_hama_logmel_batch_reflects_each_clip_at_its_own_end():
    a, b = _speechlike(8000, 5), _speechlike(5123, 6)
    batch = torch.zeros(2, 9000)
    batch[0, :8000], batch[1, :5123] = torch.from_numpy(a), torch.from_numpy(b)
    fe = HamaLogMel(mel_fb=_random_mel())
    feats, lens = fe(batch, torch.tensor([8000, 5123]))
    assert lens.tolist() == [51, 33]
    for i, x in enumerate((a, b)):
        single, _ = fe(torch.from_numpy(x)[None])
        torch.testing.assert_close(feats[i, : lens[i]], single[0], atol=1e-6, rtol=0)
    assert feats[1, lens[1]:].abs().sum() == 0


def test_hama_logmel_mel_matrix_travels_in_the_state_dict():
    fe = HamaLogMel(mel_fb=_random_mel(1))
    assert set(fe.state_dict()) == {"mel_fb"}
    assert "mel" not in Fbank().state_dict()  # the Kaldi fbank's keys are unchanged (none)
    fresh = HamaLogMel(mel_fb=None)
    fresh.load_state_dict(fe.state_dict())
    x = torch.from_numpy(_speechlike(4000, 7))[None]
    torch.testing.assert_close(fresh(x)[0], fe(x)[0])


def test_hama_logmel_without_its_mel_matrix_says_so(monkeypatch):
    import openkws.features as features

    monkeypatch.setattr(features, "_installed_hama_mel", lambda: None)
    with pytest.raises(RuntimeError, match=r"mel matrix.*pip install hama==1\.7\.0"):
        HamaLogMel()(torch.zeros(1, 1600))
