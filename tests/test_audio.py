import numpy as np
import pytest
import soundfile as sf
import torch

from openkws.audio import AudioError, load_audio


def _tone(sr, seconds=1.0, freq=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_stereo_int16_44k_wav_becomes_16k_mono_float(tmp_path):
    tone = _tone(44100)
    stereo = np.stack([tone, tone], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, (stereo * 32767).astype(np.int16), 44100, subtype="PCM_16")
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 1
    # the tone survives resampling: dominant frequency still 440 Hz, amplitude about 0.5
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 2
    assert 0.45 < np.abs(audio).max() < 0.55


def test_int16_array_is_scaled_and_resampled():
    x = (_tone(8000) * 32767).astype(np.int16)
    audio = load_audio(x, sample_rate=8000)
    assert audio.dtype == np.float32 and abs(len(audio) - 16000) <= 1
    assert 0.45 < np.abs(audio).max() < 0.55


def test_torch_tensor_channels_first_is_averaged():
    left = torch.from_numpy(_tone(16000))
    stereo = torch.stack([left, -left])  # (2, N): cancels to silence when averaged
    audio = load_audio(stereo)
    assert audio.shape == (16000,)
    assert np.abs(audio).max() < 1e-6


def test_channels_last_numpy_is_averaged():
    tone = _tone(16000)
    audio = load_audio(np.stack([tone, tone], axis=1))
    np.testing.assert_allclose(audio, tone, atol=1e-6)


def test_corrupt_file_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage that is not audio")
    with pytest.raises(AudioError, match="broken.wav"):
        load_audio(bad)


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.flac"):
        load_audio(tmp_path / "nope.flac")


def test_empty_audio_rejected(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_rejected(bad):
    x = np.zeros(1600, dtype=np.float32)
    x[10] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(x)


def test_wrong_rank_and_dtype_rejected():
    with pytest.raises(AudioError, match="shape"):
        load_audio(np.zeros((2, 2, 100), dtype=np.float32))
    with pytest.raises(AudioError, match="dtype"):
        load_audio(np.zeros(100, dtype=np.complex64))


def test_file_rate_mismatch_is_an_error(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _tone(8000), 8000)
    with pytest.raises(AudioError, match="8000 Hz"):
        load_audio(path, sample_rate=16000)
