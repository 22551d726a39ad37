"""Score LibriPhrase-style trials with a model file: every (audio clip, text) trial, every head.

    python -m evaluation.score --model exp/<tag>/model.pt --manifest PHRASES.jsonl \
        --pairs test_pairs.csv [--protocol pooled] [--heads ced,clad] --out scores.jsonl

Benchmark clips are cut tightly around the phrase, so each clip is scored whole (no sliding
window): one encoder pass per clip, then each head scores every trial of that clip.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from openkws.audio import load_audio
from openkws.checkpoint import atomic_write_text
from openkws.data.manifest import read_manifest
from openkws.model import KWSModel

from data_prep.libriphrase import read_pairs
from evaluation.protocols import trials as make_trials


def score_trials(model: KWSModel, utts, trials, heads: list[str], device="cpu", clips_per_batch: int = 32) -> list[dict]:
    """Every trial scored by every head through the model's own path (``KWSModel.encode`` and
    ``score_pairs``, as ``openkws.score`` scores a clip whole): one encoder pass per clip."""
    index = {u.id: i for i, u in enumerate(utts)}
    missing = sorted({t.audio for t in trials} - set(index))
    if missing:
        raise ValueError(f"{len(missing)} trial clips are not in the manifest, e.g. {missing[:3]}")
    model.to(device)  # encode() feeds the audio to the model's device
    by_clip: dict[str, list[int]] = {}
    for i, t in enumerate(trials):
        by_clip.setdefault(t.audio, []).append(i)
    texts = sorted({t.text for t in trials})
    keywords = [model.keyword(text) for text in texts]
    column = {text: j for j, text in enumerate(texts)}
    scores = {name: np.zeros(len(trials), dtype=np.float32) for name in heads}
    clip_ids = list(by_clip)
    for b in range(0, len(clip_ids), clips_per_batch):
        chunk = clip_ids[b:b + clips_per_batch]
        audio = [load_audio(utts[index[c]].path) for c in chunk]
        rows = [i for c in chunk for i in by_clip[c]]
        clip_index = torch.tensor([k for k, c in enumerate(chunk) for _ in by_clip[c]])
        keyword_index = torch.tensor([column[trials[i].text] for i in rows])
        encoding = model.encode(audio)
        for name in heads:
            scored = model.score_pairs(model.with_stream(encoding, audio, name), keywords, clip_index, keyword_index, name)
            scores[name][rows] = scored
    return [{"audio": t.audio, "text": t.text, "label": int(t.label), "split": t.split, "class": t.cls,
             "head": name, "score": float(scores[name][i])} for name in heads for i, t in enumerate(trials)]


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
