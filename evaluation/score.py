"""Score LibriPhrase-style trials with a model file: every (audio clip, text) trial, every head.

    python -m evaluation.score --model exp/<tag>/model.pt --manifest PHRASES.jsonl \
        --pairs test_pairs.csv [--protocol pooled] [--heads ced,clad] --out scores.jsonl

Benchmark clips are cut tightly around the phrase, so each clip is scored whole (no sliding
window): one encoder pass per clip, then each head scores every trial of that clip.
"""

from __future__ import annotations

import argparse
import json

from openkws.checkpoint import atomic_write_text
from openkws.data.manifest import read_manifest
from openkws.data.pairs import ClipBank, Pair
from openkws.model import KWSModel
from openkws.train.heads import score_pairs

from data_prep.libriphrase import read_pairs
from evaluation.protocols import trials as make_trials


def score_trials(model: KWSModel, utts, trials, heads: list[str], device="cpu") -> list[dict]:
    index = {u.id: i for i, u in enumerate(utts)}
    missing = sorted({t.audio for t in trials} - set(index))
    if missing:
        raise ValueError(f"{len(missing)} trial clips are not in the manifest, e.g. {missing[:3]}")
    bank = ClipBank(model.acoustic, utts, device, keep_feats=any(model.head(h).needs_feats for h in heads),
                    stream=[model.head(h).stream for h in heads if model.head(h).stream is not None])
    pairs = [Pair(index[t.audio], 0, model.keyword(t.text).phonemes, int(t.label), 0) for t in trials]
    rows = []
    for name in heads:
        scores = score_pairs(model.head(name), pairs, bank, model.p2v, device=device)
        rows += [{"audio": t.audio, "text": t.text, "label": int(t.label), "split": t.split, "class": t.cls,
                  "head": name, "score": float(s)} for t, s in zip(trials, scores)]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True, nargs="+", help="phrase manifest(s) holding the trial clips")
    ap.add_argument("--pairs", required=True, help="pair CSV (LibriPhrase schema)")
    ap.add_argument("--protocol", default="pooled", help="trial protocol (see evaluation/protocols.py)")
    ap.add_argument("--heads", default="", help="comma-separated heads (default: all in the model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    model = KWSModel.load(args.model)
    heads = [h for h in args.heads.split(",") if h] or list(model.heads)
    utts = [u for m in args.manifest for u in read_manifest(m)]
    trials = make_trials(read_pairs(args.pairs), protocol=args.protocol)
    rows = score_trials(model, utts, trials, heads, args.device)
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"scored {len(trials)} trials x {len(heads)} heads -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
