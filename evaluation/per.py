"""Phoneme error rate (greedy CTC decoding) of an acoustic model on a manifest or on FSDD.

    python -m evaluation.per --acoustic exp/<tag>/ctc/best_model.pt --manifest data/synth/test.jsonl
    python -m evaluation.per --acoustic exp/<tag>/ctc/best_model.pt --fsdd ../shared/data/fsdd

FSDD's transcript is the digit word ("seven" -> S EH1 V AH0 N).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from openkws.checkpoint import atomic_write_text
from openkws.data.dataset import WaveformStore, duration_batches, pad_waves
from openkws.data.manifest import Utterance, read_manifest
from openkws.metrics import error_rate
from openkws.models.acoustic import load_acoustic
from openkws.models.ctc import greedy_decode
from openkws.text import decode, encode, strip_stress, to_phonemes


def read_fsdd(folder: str | Path) -> list[Utterance]:
    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        raise FileNotFoundError(f"FSDD manifest not found: {manifest}")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    phonemes = {text: to_phonemes(text) for text in {r["text"] for r in rows}}
    return [Utterance(id=Path(r["path"]).stem, path=str(folder / r["path"]), duration=float(r["duration_s"]),
                      text=r["text"], phonemes=phonemes[r["text"]], speaker=r["speaker"], kind="word",
                      split="test") for r in rows]


@torch.no_grad()
def _decode(model, utts: Sequence[Utterance], batch_seconds: float,
            waves: Sequence[np.ndarray] | None) -> tuple[list[int], list[list[int]]]:
    """Greedy CTC hypotheses (phoneme ids) and the utterance indices they belong to, in batch order."""
    model.eval()
    store = WaveformStore(utts, cache=False) if waves is None else waves
    hyps, order = [], []
    for ids in duration_batches([u.duration for u in utts], batch_seconds, 64, seed=0, shuffle=False):
        wave, lengths = pad_waves([store[i] for i in ids])
        log_probs, enc_lengths = model(wave, lengths, log_probs=True)
        hyps += greedy_decode(log_probs, enc_lengths)
        order += ids
    return order, hyps


def greedy_hypotheses(model, utts: Sequence[Utterance], batch_seconds: float = 120.0,
                      waves: Sequence[np.ndarray] | None = None) -> list[list[int]]:
    """The greedy CTC hypothesis (phoneme ids) of each utterance, in ``utts`` order; ``waves``
    are their 16 kHz waveforms when the caller has them decoded already (else read from the files)."""
    order, hyps = _decode(model, utts, batch_seconds, waves)
    out: list[list[int]] = [[] for _ in utts]
    for i, h in zip(order, hyps):
        out[i] = list(h)
    return out


def phoneme_error_rate(model, utts: list[Utterance], batch_seconds: float = 120.0,
                       waves: Sequence[np.ndarray] | None = None, stress: bool = True) -> tuple[float, list]:
    """Corpus PER of greedy CTC decoding and ten (text, hypothesis) examples. ``waves``: as in
    ``greedy_hypotheses``; ``stress=False`` strips the stress digits from reference and hypothesis
    (AH0 = AH1), which the default, stress-marked PER counts as substitutions."""
    order, hyps = _decode(model, utts, batch_seconds, waves)
    refs = [encode(utts[i].phonemes) for i in order]
    examples = [(utts[i].text, " ".join(decode(h))) for i, h in zip(order[:10], hyps[:10])]
    if not stress:
        refs, hyps = stressless(refs), stressless(hyps)
    return error_rate(refs, hyps), examples


def stressless(seqs: Sequence[Sequence[int]]) -> list[list[str]]:
    """Phoneme id sequences as symbols without stress digits ('AH0' -> 'AH')."""
    return [[strip_stress(p) for p in decode(x)] for x in seqs]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--acoustic", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", nargs="+")
    src.add_argument("--fsdd")
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args(argv)
    utts = read_fsdd(args.fsdd) if args.fsdd else [u for m in args.manifest for u in read_manifest(m)]
    per, examples = phoneme_error_rate(load_acoustic(args.acoustic), utts)
    result = {"per": per, "utterances": len(utts), "source": args.fsdd or args.manifest, "examples": examples}
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
