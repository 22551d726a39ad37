import torch

from conftest import TOY_PHONEMES
from openkws.align import align_corpus
from openkws.data.manifest import read_manifest
from openkws.models.acoustic import load_acoustic
from openkws.models.p2v import P2V, local_vectors
from openkws.text import PHONEMES, REAL_PHONEMES
from evaluation.p2v_report import evaluate_p2v


def test_p2v_table_covers_inventory_and_classifies_held_out_phonemes(toy_system):
    p2v = P2V.load(toy_system["p2v"])
    cov = p2v.coverage()
    assert all(cov["counts"][p] > 0 for p in TOY_PHONEMES)
    # every real phoneme has a vector: seen ones their own, the rest a stated back-off
    assert set(cov["backoff"]) == set(REAL_PHONEMES) - set(TOY_PHONEMES)
    assert cov["backoff"]["AA0"] == "AA1"  # a vowel backs off to another stress of itself
    assert all(p2v.table[PHONEMES.index(p)].norm() > 0 for p in REAL_PHONEMES)
    torch.testing.assert_close(p2v.encode(["AA0"]), p2v.encode(["AA1"]))

    model = load_acoustic(toy_system["acoustic"])
    held_out = read_manifest(toy_system["corpus"]["dev"])
    report = evaluate_p2v(p2v, local_vectors(align_corpus(model, held_out, max_per=None)))
    assert report["accuracy"] > 0.5  # chance among 70 phonemes is ~1.5%


def test_p2v_save_load_round_trip(toy_system, tmp_path):
    p2v = P2V.load(toy_system["p2v"])
    p2v.save(tmp_path / "x.pt")
    again = P2V.load(tmp_path / "x.pt")
    torch.testing.assert_close(again.table, p2v.table)
    assert again.backoff == p2v.backoff
    assert p2v.encode_text("bee").shape == (2, p2v.dim)  # B IY1
