"""Zero-shot real-speech evaluation on the Free Spoken Digit Dataset (FSDD).

    python -m evaluation.fsdd --model exp/<tag>/model.pt [--fsdd ../shared/data/fsdd] \
        [--heads ced,clad] --out DIR

Each of FSDD's 3,000 clips (8 kHz, upsampled to 16 kHz by openkws.audio.load_audio) is scored
against the ten words "zero" ... "nine": its own digit is the positive trial, the other nine
are negatives (3,000 positive and 27,000 negative trials). The clips are short isolated words,
so each is scored whole with ``model.score_segments`` (one encoder pass per clip, batched by
length), not with sliding windows.

Reported per head: AUC and EER pooled over all trials, per digit (the trials of that keyword:
its clips positive, every other clip negative) and per speaker (that speaker's trials); the
top-1 accuracy (the argmax over the ten words is the right digit) with its confusion matrix;
and the false-accept / false-reject rates at the model's calibrated threshold. Writes
``fsdd.json`` and ``fsdd.md``. FSDD is CC BY-SA 4.0 (the FSDD contributors); never train on it.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from openkws.audio import load_audio
from openkws.checkpoint import atomic_write_text
from openkws.metrics import eer, roc_auc
from openkws.model import KWSModel

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MANIFEST_COLUMNS = ("path", "text", "speaker", "sample_rate", "duration_s")
# The shared data folder sits beside the repository: <repo>/../shared/data/fsdd.
DEFAULT_FSDD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd"


@dataclass(frozen=True)
class Clip:
    path: Path
    digit: int  # index into DIGITS
    speaker: str


def read_fsdd(root: str | Path) -> list[Clip]:
    """The clips listed in ``root``/manifest.csv; clear errors for a missing folder or a bad row."""
    root = Path(root)
    manifest = root / "manifest.csv"
    if not root.is_dir():
        raise FileNotFoundError(f"FSDD folder not found: {root} (pass --fsdd with the folder that holds "
                                "manifest.csv and audio/)")
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: {root} is not an FSDD folder (it needs manifest.csv "
                                f"with columns {', '.join(MANIFEST_COLUMNS)})")
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("path", "text", "speaker") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest}: missing column(s) {', '.join(missing)}")
        clips = []
        for line, row in enumerate(reader, 2):
            if row["text"] not in DIGITS:
                raise ValueError(f"{manifest}:{line}: text {row['text']!r} is not a digit word ({', '.join(DIGITS)})")
            clips.append(Clip(root / row["path"], DIGITS.index(row["text"]), row["speaker"]))
    if not clips:
        raise ValueError(f"{manifest}: no clips listed")
    return clips


def score_clips(model: KWSModel, clips: Sequence[Clip], heads: Sequence[str],
                batch_size: int = 64) -> dict[str, np.ndarray]:
    """Scores (n_clips, 10) per head: every clip, scored whole, against every digit word."""
    audio = [load_audio(c.path) for c in tqdm(clips, desc="load FSDD", unit="clip")]
    order = np.argsort([len(a) for a in audio], kind="stable")  # similar lengths: little padding
    keywords = [model.keyword(d) for d in DIGITS]
    out = {}
    for head in heads:
        scores = np.zeros((len(clips), len(DIGITS)), dtype=np.float32)
        for i in tqdm(range(0, len(order), batch_size), desc=f"score {head}", unit="batch"):
            idx = order[i:i + batch_size]
            scores[idx] = model.score_segments([audio[j] for j in idx], keywords, head)
        out[head] = scores
    return out


def _auc_eer(labels: np.ndarray, scores: np.ndarray) -> dict:
    rate, threshold = eer(labels, scores)
    return {"auc": roc_auc(labels, scores), "eer": rate, "eer_threshold": threshold, "n_trials": int(labels.size)}


def evaluate(scores: np.ndarray, digits: Sequence[int], speakers: Sequence[str], threshold: float) -> dict:
    """Metrics of one head from its (n_clips, 10) score matrix; AUC and EER as fractions."""
    digits, speakers = np.asarray(digits), np.asarray(speakers)
    labels = (digits[:, None] == np.arange(len(DIGITS))[None, :]).astype(np.int64)
    accepted = scores >= threshold
    confusion = np.zeros((len(DIGITS), len(DIGITS)), dtype=np.int64)  # rows: true digit, cols: argmax
    np.add.at(confusion, (digits, scores.argmax(axis=1)), 1)
    return {
        "pooled": _auc_eer(labels.ravel(), scores.ravel()),
        "top1_accuracy": float(np.trace(confusion) / len(digits)),
        "at_model_threshold": {"threshold": float(threshold),
                               "far": float(accepted[labels == 0].mean()),
                               "frr": float(1.0 - accepted[labels == 1].mean())},
        # digits without clips (a partial folder) have no positive trial: no AUC
        "by_digit": {DIGITS[k]: _auc_eer(labels[:, k], scores[:, k]) for k in sorted(set(digits.tolist()))},
        "by_speaker": {s: _auc_eer(labels[speakers == s].ravel(), scores[speakers == s].ravel())
                       for s in sorted(set(speakers.tolist()))},
        "confusion": confusion.tolist(),
    }


def run(model: KWSModel, root: str | Path, heads: Sequence[str] | None = None, batch_size: int = 64) -> dict:
    """Score FSDD with every head in ``heads`` (default: all of the model's): the fsdd.json dict."""
    heads = list(heads or model.heads)
    for h in heads:
        model.head(h)  # unknown names fail before the (slow) scoring
    clips = read_fsdd(root)
    scores = score_clips(model, clips, heads, batch_size)
    digits, speakers = [c.digit for c in clips], [c.speaker for c in clips]
    return {"dataset": "fsdd", "root": str(root), "n_clips": len(clips), "keywords": list(DIGITS),
            "speakers": sorted(set(speakers)),
            "heads": {h: evaluate(scores[h], digits, speakers, model.thresholds[h]) for h in heads}}


def _pct(m: dict) -> str:
    return f"{100 * m['auc']:.2f} / {100 * m['eer']:.2f}"


def format_markdown(result: dict) -> str:
    heads = list(result["heads"])
    lines = [f"# FSDD zero-shot digits ({result['n_clips']} real clips, {len(result['speakers'])} speakers)", "",
             ("Each clip scored whole against the ten digit words; positives: its own digit, negatives: the "
              "other nine. FSDD: CC BY-SA 4.0, the FSDD contributors."), "",
             "| head | AUC % | EER % | top-1 accuracy % | FAR % / FRR % at model threshold | trials |",
             "|---|---|---|---|---|---|"]
    for h, r in result["heads"].items():
        p, t = r["pooled"], r["at_model_threshold"]
        lines.append(f"| {h} | {100 * p['auc']:.2f} | {100 * p['eer']:.2f} | {100 * r['top1_accuracy']:.1f} | "
                     f"{100 * t['far']:.1f} / {100 * t['frr']:.1f} (t={t['threshold']:.3f}) | {p['n_trials']} |")
    for column, key in (("digit", "by_digit"), ("speaker", "by_speaker")):
        lines += ["", f"## Per {column}: AUC % / EER %", "", f"| {column} | " + " | ".join(heads) + " |",
                  "|---|" + "---|" * len(heads)]
        lines += [f"| {n} | " + " | ".join(_pct(result["heads"][h][key][n]) for h in heads) + " |"
                  for n in result["heads"][heads[0]][key]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="openkws model file (exp/<tag>/model.pt)")
    ap.add_argument("--fsdd", default=str(DEFAULT_FSDD), help="FSDD folder with manifest.csv (default: %(default)s)")
    ap.add_argument("--heads", default="", help="comma-separated heads (default: all in the model)")
    ap.add_argument("--batch-size", type=int, default=64, help="clips per score_segments call")
    ap.add_argument("--out", required=True, help="folder for fsdd.json and fsdd.md")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: small batches gain little from more, and shared cores thrash)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = KWSModel.load(args.model)
    try:
        result = run(model, args.fsdd, [h for h in args.heads.split(",") if h], args.batch_size)
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    text = format_markdown(result)
    out = Path(args.out)
    atomic_write_text(out / "fsdd.json", json.dumps({"model": args.model, **result}, indent=1) + "\n")
    atomic_write_text(out / "fsdd.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
