import dataclasses

import numpy as np
import pytest
import soundfile as sf

from openkws.data.augment import (
    SAMPLE_RATE,
    AugmentConfig,
    augment,
    noise_from_dir,
    pitch_shift,
    reverberate,
    rir_pool,
    simulate_rir,
    telephone,
)


def _tone(*freqs: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return sum(0.2 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def _peaks(wave: np.ndarray, k: int) -> list[float]:
    spectrum = np.abs(np.fft.rfft(wave[1000:-1000]))
    freqs = np.fft.rfftfreq(len(wave) - 2000, 1 / SAMPLE_RATE)
    return sorted(freqs[np.argsort(spectrum)[-k:]])


def _band_energy(wave: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_pitch_shift_scales_frequencies_at_unchanged_tempo(factor):
    wave = _tone(500, 1200)
    out = pitch_shift(wave, factor)
    assert len(out) == len(wave)
    assert _peaks(out, 2) == pytest.approx([500 * factor, 1200 * factor], abs=8)
    assert np.sqrt(np.mean(out**2)) == pytest.approx(np.sqrt(np.mean(wave**2)), rel=0.2)
    assert pitch_shift(wave, 1.0) is wave


def test_telephone_keeps_only_the_narrow_band():
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    for mulaw in (False, True):
        out = telephone(wave, mulaw)
        assert len(out) == len(wave)
        assert _band_energy(out, 4000, 8001) < 1e-3
        assert _band_energy(out, 0, 150) < 1e-2
        assert _band_energy(out, 300, 3400) > 0.9
    # mu-law adds quantisation noise but keeps the signal
    clean, coded = telephone(wave, False), telephone(wave, True)
    assert not np.allclose(clean, coded)
    assert np.corrcoef(clean, coded)[0, 1] > 0.9


def test_simulated_rooms_reverberate_longer_with_larger_rt60():
    def tail_energy(h):  # fraction of energy later than 50 ms after the direct path
        h = h[int(np.argmax(np.abs(h))):]
        return float(np.sum(h[int(0.05 * SAMPLE_RATE):] ** 2) / np.sum(h**2))

    rng = np.random.default_rng(0)
    dry = np.mean([tail_energy(simulate_rir(rng, 0.15)) for _ in range(3)])
    wet = np.mean([tail_energy(simulate_rir(rng, 0.8)) for _ in range(3)])
    assert wet > 2 * dry


def test_reverberation_keeps_speech_in_place_and_level(tmp_path):
    # a recorded impulse response with 300 samples of pre-delay: the pool strips it
    rir = np.zeros(4000, dtype=np.float32)
    rir[300], rir[600:4000] = 1.0, 0.3 * np.exp(-np.arange(3400) / 500.0)
    sf.write(tmp_path / "room.wav", rir, SAMPLE_RATE)
    (pool,) = rir_pool(str(tmp_path), 0, 0.0, 0.0, 0)
    assert np.argmax(np.abs(pool)) == 0 and np.sum(pool**2) == pytest.approx(1.0, rel=1e-4)
    click = np.zeros(SAMPLE_RATE, dtype=np.float32)
    click[1000] = 1.0
    out = reverberate(click, pool)
    assert len(out) == len(click) and int(np.argmax(np.abs(out))) == 1000
    assert np.mean(out**2) == pytest.approx(np.mean(click**2), rel=1e-3)


def test_folders_without_audio_are_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="rir_dir"):
        rir_pool(str(tmp_path), 0, 0.0, 0.0, 0)
    with pytest.raises(FileNotFoundError, match="noise_dir"):
        noise_from_dir(str(tmp_path), 100, np.random.default_rng(0))


def test_noise_from_a_folder_loops_short_files(tmp_path):
    sf.write(tmp_path / "hum.flac", _tone(50, seconds=0.1), SAMPLE_RATE)
    noise = noise_from_dir(str(tmp_path), SAMPLE_RATE, np.random.default_rng(0))
    assert len(noise) == SAMPLE_RATE
    assert _peaks(np.concatenate([np.zeros(1000), noise, np.zeros(1000)]), 1)[0] == pytest.approx(50, abs=2)


def test_augment_is_seeded_and_every_stage_runs(tmp_path):
    sf.write(tmp_path / "fan.wav", np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1,
             SAMPLE_RATE)
    wave = _tone(300, 700)
    everything = AugmentConfig(pitch_prob=1.0, reverb_prob=1.0, noise_prob=1.0, babble_prob=0.0,
                               noise_dir=str(tmp_path), telephone_prob=1.0, rir_pool_size=4)
    a = augment(wave, np.random.default_rng(5), everything)
    b = augment(wave, np.random.default_rng(5), everything)
    c = augment(wave, np.random.default_rng(6), everything)
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.allclose(a, c)
    assert a.dtype == np.float32 and np.abs(a).max() <= 0.99
    assert _band_energy(a, 4000, 8001) < 1e-3  # the telephone channel comes after the noise
    off = dataclasses.replace(everything, enabled=False)
    assert augment(wave, np.random.default_rng(5), off) is wave
