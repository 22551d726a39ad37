"""Shared fixtures: tiny corpora generated on the spot (no TTS, no network)."""

import numpy as np
import pytest
import soundfile as sf
import torch

from openkws.data.manifest import Utterance, write_manifest

# Tiny models gain nothing from threads, and on a busy machine OpenMP threads waiting for each
# other make them many times slower (session fixtures run before function fixtures, so set it here).
torch.set_num_threads(1)

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


def _toy_utterance(path, utt_id, phones, rng, speaker, kind, split):
    """Write one toy clip and return its manifest entry."""
    wave = toy_wave(phones, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, 16000)
    return Utterance(id=utt_id, path=str(path), duration=len(wave) / 16000, text=" ".join(phones).lower(),
                     phonemes=list(phones), speaker=speaker, kind=kind, split=split)


def make_toy_corpus(root, n_train=24, n_dev=6, seed=0):
    """Write toy utterances of 3-5 'phonemes' and train/dev manifests; return the manifest paths."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        utts = [_toy_utterance(root / "audio" / f"{split}_{i}.wav", f"{split}_{i}",
                               list(rng.choice(TOY_PHONEMES, size=rng.integers(3, 6))), rng,
                               f"{split}_spk{i % 3}", "sentence", split) for i in range(n)]
        paths[split] = root / f"{split}.jsonl"
        write_manifest(paths[split], utts)
    return paths


TOY_PHRASES = [["AA1", "B", "K"], ["S", "IY1", "M"], ["M", "AA1", "S"], ["K", "IY1", "B", "AA1"],
               ["B", "S", "M"], ["IY1", "K", "AA1", "M"]]


def make_toy_phrases(root, speakers_per_split=(("train", 4), ("dev", 2), ("test", 2)), seed=1):
    """Toy phrase clips: each phrase said by every speaker of every split (voice-disjoint)."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n_spk in speakers_per_split:
        utts = [_toy_utterance(root / "phrases" / f"{split}_{s}_{k}.wav", f"{split}_{s}_{k}", phones, rng,
                               f"{split}_spk{s}", "phrase", split)
                for s in range(n_spk) for k, phones in enumerate(TOY_PHRASES)]
        paths[split] = root / f"phrases_{split}.jsonl"
        write_manifest(paths[split], utts)
    return paths


@pytest.fixture
def toy_corpus(tmp_path):
    return make_toy_corpus(tmp_path)


@pytest.fixture(scope="session")
def toy_system(tmp_path_factory):
    """A tiny trained acoustic model + P2V table + toy phrase manifests (built once per session)."""
    from openkws.align import align_corpus
    from openkws.config import load_config
    from openkws.data.manifest import read_manifest
    from openkws.models.acoustic import load_acoustic
    from openkws.models.p2v import P2V, local_vectors
    from openkws.train.ctc import CTCTrainConfig, train_ctc

    root = tmp_path_factory.mktemp("toy_system")
    corpus = make_toy_corpus(root, n_train=60, n_dev=8)
    exp = root / "ctc"
    train_ctc(load_config(CTCTrainConfig, None, [
        f"exp_dir={exp}", f"data.train=[{corpus['train']}]", f"data.dev=[{corpus['dev']}]",
        "data.max_batch_seconds=8", "optim.epochs=30", "optim.warmup_steps=20", "optim.peak_lr=1e-2",
        "device=cpu", "augment.enabled=false", "specaug_enabled=false", *TINY_ENCODER]))
    model = load_acoustic(exp / "best_model.pt")
    local = local_vectors(align_corpus(model, read_manifest(corpus["train"]), max_per=None))
    P2V.from_local_vectors(local, model.ctc.proj.weight.detach()).save(root / "p2v.pt")
    return {"root": root, "acoustic": exp / "best_model.pt", "p2v": root / "p2v.pt", "corpus": corpus,
            "phrases": make_toy_phrases(root)}


TINY_ENCODER = ["model.encoder.d_model=32", "model.encoder.num_layers=1", "model.encoder.num_heads=2",
                "model.encoder.ffn_dim=64", "model.encoder.subsampling_channels=8", "model.encoder.dropout=0.0"]


def run_chunked(spotter, audio, chunk):
    """A fresh stream fed in chunks of ``chunk`` samples, then flushed: (detections, best scores)."""
    spotter.reset()
    out = []
    for i in range(0, len(audio), chunk):
        out += spotter.accept_waveform(audio[i:i + chunk])
    return out + spotter.flush(), dict(spotter.best_scores)
