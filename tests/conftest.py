"""Shared fixtures: tiny corpora generated on the spot (no TTS, no network)."""

import numpy as np
import pytest
import soundfile as sf

from openkws.data.manifest import Utterance, write_manifest

# Each phoneme of the toy corpora is a distinct tone, so a tiny CTC model can learn them.
TOY_PHONEMES = ["AA1", "B", "K", "S", "IY1", "M"]
_TONES = {p: 300.0 + 250.0 * i for i, p in enumerate(TOY_PHONEMES)}


def toy_wave(phonemes, rng, seconds_per_phoneme=0.12, sr=16000):
    parts = [np.zeros(int(0.05 * sr), np.float32)]
    for p in phonemes:
        n = int(seconds_per_phoneme * sr * rng.uniform(0.8, 1.2))
        t = np.arange(n) / sr
        parts.append((0.3 * np.sin(2 * np.pi * _TONES[p] * t)).astype(np.float32))
    parts.append(np.zeros(int(0.05 * sr), np.float32))
    wave = np.concatenate(parts)
    return wave + 0.01 * rng.standard_normal(len(wave)).astype(np.float32)


def make_toy_corpus(root, n_train=24, n_dev=6, seed=0):
    """Write toy utterances of 3-5 'phonemes' and train/dev manifests; return the manifest paths."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        utts = []
        for i in range(n):
            phones = list(rng.choice(TOY_PHONEMES, size=rng.integers(3, 6)))
            wave = toy_wave(phones, rng)
            path = root / "audio" / f"{split}_{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave, 16000)
            utts.append(Utterance(id=f"{split}_{i}", path=str(path), duration=len(wave) / 16000,
                                  text=" ".join(phones).lower(), phonemes=phones,
                                  speaker=f"{split}_spk{i % 3}", kind="sentence", split=split))
        paths[split] = root / f"{split}.jsonl"
        write_manifest(paths[split], utts)
    return paths


@pytest.fixture
def toy_corpus(tmp_path):
    return make_toy_corpus(tmp_path)
