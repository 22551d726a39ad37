"""Metrics, plots and tables from a score file.

    python -m evaluation.report --scores scores.jsonl --corpus synth --out exp/tag

The score file is JSONL or CSV (by extension) with one trial a record: ``audio`` (clip id),
``text``, ``label`` (0/1), ``split`` ("easy" / "hard"), ``class`` (word count), ``score``
(higher = keyword present) and ``head`` (matcher head name). For every head and split it computes
the exact AUC and the EER (openkws.metrics), per word-count class too, and writes:

* ``results.json``: ``{"corpus", "protocol", "heads": {HEAD: {SPLIT: {"auc", "eer", "n_trials",
  ...extras, "by_class": {CLASS: {...}}}}}}`` with AUC and EER as fractions (0.927, not 92.7);
* ``results.md``: AUC % / EER % per head x split, the published reference rows (marked "paper,
  real LibriPhrase": other corpora, other protocols; not our runs) and the per-class breakdown;
* ``roc_<head>.png``, ``det_<head>.png`` (probit axes), ``hist_<head>.png`` (score histograms).

The EER is pooled over the split by default. ``eer_mode="batch"`` reproduces PhonMatchNet's
number instead: the trials shuffled with a seed, cut into batches of 2048, the EER of each batch
averaged (the last, shorter batch weighs the same as the others).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import norm
from sklearn.metrics import det_curve, roc_curve

from evaluation.protocols import PROTOCOLS
from openkws.checkpoint import atomic_write_text
from openkws.metrics import eer, roc_auc

REQUIRED = ("label", "split", "score", "head")
EER_MODES = ("pooled", "batch")
SPLIT_ORDER = ("easy", "hard")
# Published LibriPhrase numbers (%), copied from research/published_results.csv (LE = easy, LH =
# hard): (method, easy AUC, easy EER, hard AUC, hard EER). Each paper used its own protocol.
PUBLISHED = (
    ("CMCD (Shin et al., Interspeech 2022)", 96.70, 8.42, 73.58, 32.90),
    ("PhonMatchNet (Lee & Cho, Interspeech 2023)", 99.29, 2.80, 88.52, 18.82),
    ("CED (Nishu et al., ICASSP 2024)", 99.84, 1.70, 92.70, 14.40),
)


# --------------------------------------------------------------------------- reading

def read_scores(path: str | os.PathLike) -> list[dict]:
    """Score records from a ``.jsonl`` / ``.json`` (JSON lines) or ``.csv`` file, checked and typed."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            raw = [(i, r) for i, r in enumerate(csv.DictReader(f), 2)]
    elif path.suffix.lower() in (".jsonl", ".json"):
        raw = []
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        raw.append((i, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{i}: bad JSON ({e.msg})") from None
    else:
        raise ValueError(f"{path}: unknown score file type {path.suffix!r}; use .jsonl or .csv")
    if not raw:
        raise ValueError(f"{path}: no score records")
    records = []
    for i, r in raw:
        missing = [k for k in REQUIRED if r.get(k) in (None, "")]
        if missing:
            raise ValueError(f"{path}:{i}: missing {', '.join(missing)} (a record needs {', '.join(REQUIRED)})")
        try:
            rec = {**r, "label": int(float(r["label"])), "score": float(r["score"]),
                   "split": str(r["split"]), "head": str(r["head"])}
            if r.get("class") not in (None, ""):
                rec["class"] = int(float(r["class"]))
        except ValueError as e:
            raise ValueError(f"{path}:{i}: {e}") from None
        if rec["label"] not in (0, 1) or not np.isfinite(rec["score"]):
            raise ValueError(f"{path}:{i}: label must be 0/1 and score finite, got {r['label']!r}, {r['score']!r}")
        records.append(rec)
    return records


# --------------------------------------------------------------------------- metrics

def batch_eer(labels: np.ndarray, scores: np.ndarray, batch_size: int = 2048, seed: int = 0) -> float:
    """PhonMatchNet's EER: the mean of per-batch EERs over shuffled batches (single-class batches,
    which have no EER, are skipped)."""
    order = np.random.default_rng(seed).permutation(len(labels))
    rates = []
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        if 0 < labels[idx].sum() < len(idx):
            rates.append(eer(labels[idx], scores[idx])[0])
    if not rates:
        raise ValueError("no batch holds both positive and negative trials")
    return float(np.mean(rates))


def split_metrics(labels: Iterable[int], scores: Iterable[float], eer_mode: str = "pooled",
                  batch_size: int = 2048, seed: int = 0) -> dict:
    """AUC, EER (fractions) and trial counts of one set of trials; AUC/EER are None when the
    trials are all positive or all negative."""
    labels, scores = np.asarray(list(labels), dtype=np.int64), np.asarray(list(scores), dtype=np.float64)
    n_pos = int(labels.sum())
    out = {"auc": None, "eer": None, "n_trials": int(len(labels)), "n_pos": n_pos, "n_neg": int(len(labels) - n_pos)}
    if 0 < n_pos < len(labels):
        out["auc"] = roc_auc(labels, scores)
        if eer_mode == "batch":
            out["eer"] = batch_eer(labels, scores, batch_size, seed)
        else:
            out["eer"], out["eer_threshold"] = eer(labels, scores)
    return out


def _ordered(splits: Iterable[str]) -> list[str]:
    return sorted(set(splits), key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))


def compute_metrics(records: Iterable[Mapping], eer_mode: str = "pooled", batch_size: int = 2048,
                    seed: int = 0) -> dict[str, dict[str, dict]]:
    """``{head: {split: {"auc", "eer", "n_trials", "n_pos", "n_neg", ["eer_threshold"], "eer_mode",
    "by_class": {class: {...}}}}}``."""
    if eer_mode not in EER_MODES:
        raise ValueError(f"unknown eer_mode {eer_mode!r}; choose from {', '.join(EER_MODES)}")
    groups: dict[str, dict[str, list[Mapping]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[r["head"]][r["split"]].append(r)
    mode = "pooled" if eer_mode == "pooled" else f"mean of per-batch EERs (batch {batch_size}, seed {seed})"
    out: dict[str, dict[str, dict]] = {}
    for head in sorted(groups):
        out[head] = {}
        for split in _ordered(groups[head]):
            recs = groups[head][split]
            m = split_metrics((r["label"] for r in recs), (r["score"] for r in recs), eer_mode, batch_size, seed)
            if m["auc"] is None:
                raise ValueError(f"head {head!r}, split {split!r}: all {len(recs)} trials have the same label")
            m["eer_mode"] = mode
            by_class: dict[int, list[Mapping]] = defaultdict(list)
            for r in recs:
                if "class" in r:
                    by_class[r["class"]].append(r)
            if by_class:
                m["by_class"] = {str(c): split_metrics((r["label"] for r in rs), (r["score"] for r in rs),
                                                       eer_mode, batch_size, seed)
                                 for c, rs in sorted(by_class.items())}
            out[head][split] = m
    return out


# --------------------------------------------------------------------------- plots

def _save(fig: Figure, path: Path) -> None:
    """Save a figure atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def plot_head(head: str, records: Iterable[Mapping], metrics: Mapping[str, Mapping], out_dir: Path) -> list[Path]:
    """ROC, DET (probit axes) and score-histogram PNGs of one head, every split as its own curve."""
    by_split: dict[str, list[Mapping]] = defaultdict(list)
    for r in records:
        by_split[r["split"]].append(r)
    data = {s: (np.array([r["label"] for r in by_split[s]]), np.array([r["score"] for r in by_split[s]]))
            for s in _ordered(by_split)}
    paths = [out_dir / f"{kind}_{_safe(head)}.png" for kind in ("roc", "det", "hist")]

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for s, (y, x) in data.items():
        fpr, tpr, _ = roc_curve(y, x)
        ax.plot(fpr, tpr, label=f"{s}: AUC {100 * metrics[s]['auc']:.2f}%")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {head}")
    ax.legend(loc="lower right")
    _save(fig, paths[0])

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ticks = np.array([0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
    lo, hi = 0.0005, 0.9
    for s, (y, x) in data.items():
        fpr, fnr, _ = det_curve(y, x)
        ax.plot(norm.ppf(np.clip(fpr, lo, hi)), norm.ppf(np.clip(fnr, lo, hi)),
                label=f"{s}: EER {100 * metrics[s]['eer']:.2f}%")
    ax.plot(norm.ppf([lo, hi]), norm.ppf([lo, hi]), ":", color="grey")
    labels = [f"{100 * t:g}" for t in ticks]
    ax.set_xticks(norm.ppf(ticks), labels)
    ax.set_yticks(norm.ppf(ticks), labels)
    ax.set(xlim=norm.ppf([lo, hi]), ylim=norm.ppf([lo, hi]), xlabel="false alarm rate (%)",
           ylabel="miss rate (%)", title=f"DET: {head}")
    ax.legend(loc="upper right")
    _save(fig, paths[1])

    fig = Figure(figsize=(5 * len(data), 4))
    axes = np.atleast_1d(fig.subplots(1, len(data)))
    for ax, (s, (y, x)) in zip(axes, data.items()):
        bins = np.linspace(x.min(), x.max() + 1e-9, 50)
        ax.hist(x[y == 1], bins=bins, alpha=0.6, label="positive")
        ax.hist(x[y == 0], bins=bins, alpha=0.6, label="negative")
        ax.set(xlabel="score", ylabel="trials", title=f"{head}: {s}")
        ax.legend()
    fig.tight_layout()
    _save(fig, paths[2])
    return paths


# --------------------------------------------------------------------------- tables

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def markdown(corpus: str, protocol: str, metrics: Mapping[str, Mapping[str, Mapping]]) -> str:
    """The results.md text: our numbers, the published reference rows, the per-class breakdown."""
    splits = _ordered(s for head in metrics.values() for s in head)
    mode = next(iter(next(iter(metrics.values())).values()))["eer_mode"]
    head_row = "| head | " + " | ".join(f"{s} AUC % | {s} EER %" for s in splits) + " | trials |"
    lines = [f"# Results: {corpus}", "",
             f"Trials: protocol `{protocol}` (see evaluation/protocols.py; numbers from different protocols "
             f"are not comparable). EER: {mode}.", "", head_row,
             "|" + "---|" * (2 * len(splits) + 2)]
    for head, by_split in metrics.items():
        cells = [f"{_pct(by_split[s]['auc'])} | {_pct(by_split[s]['eer'])}" if s in by_split else "- | -"
                 for s in splits]
        trials = " / ".join(str(by_split[s]["n_trials"]) for s in splits if s in by_split)
        lines.append(f"| {head} | " + " | ".join(cells) + f" | {trials} |")
    if set(splits) >= {"easy", "hard"}:
        lines += ["", "Published numbers for reference: **paper, real LibriPhrase** (LE = easy, LH = hard), "
                  "not runs of this code and not on this corpus; each paper used its own trial protocol "
                  "(PhonMatchNet: 4-way expansion with per-batch EER).", "",
                  "| method | easy AUC % | easy EER % | hard AUC % | hard EER % |", "|---|---|---|---|---|"]
        lines += [f"| {name} (paper, real LibriPhrase) | {a:.2f} | {b:.2f} | {c:.2f} | {d:.2f} |"
                  for name, a, b, c, d in PUBLISHED]
    class_rows = [f"| {head} | {s} | {c} | {_pct(m['auc'])} | {_pct(m['eer'])} | {m['n_trials']} |"
                  for head, by_split in metrics.items() for s, sm in by_split.items()
                  for c, m in sm.get("by_class", {}).items()]
    if class_rows:
        lines += ["", "By word count:", "", "| head | split | words | AUC % | EER % | trials |",
                  "|---|---|---|---|---|---|", *class_rows]
    return "\n".join(lines) + "\n"


def report(records: list[Mapping], corpus: str, out_dir: str | os.PathLike, protocol: str = "pooled",
           eer_mode: str = "pooled", batch_size: int = 2048, seed: int = 0, acoustic_init: str = "",
           realspeech: Mapping | None = None, realspeech_md: str = "") -> dict:
    """Compute the metrics, write results.json, results.md and the PNGs; return the results dict.
    ``acoustic_init`` records where the acoustic model started ("scratch", or "hama": a pretrained
    model of undisclosed training data, which may have heard LibriSpeech); ``realspeech`` (the
    output of ``evaluation.realspeech``) goes under the "realspeech" key, its table first in results.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(records, eer_mode, batch_size, seed)
    results = {"corpus": corpus, "protocol": protocol, "acoustic_init": acoustic_init or "scratch", "heads": metrics}
    if realspeech is not None:
        results["realspeech"] = dict(realspeech)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    note = "" if results["acoustic_init"] == "scratch" else (
        f"Acoustic model initialised from the pretrained `{results['acoustic_init']}` model (training data "
        "undisclosed; it may have heard LibriSpeech): not comparable with published LibriPhrase numbers.\n\n")
    atomic_write_text(out_dir / "results.md", note + (realspeech_md + "\n" if realspeech_md else "")
                      + markdown(corpus, protocol, metrics))
    by_head: dict[str, list[Mapping]] = defaultdict(list)
    for r in records:
        by_head[r["head"]].append(r)
    for head, recs in by_head.items():
        plot_head(head, recs, metrics[head], out_dir)
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="AUC/EER per head and split, ROC/DET/histogram plots, "
                                            "results.json and results.md from a score file.")
    p.add_argument("--scores", required=True, help="JSONL or CSV: audio, text, label, split, class, score, head")
    p.add_argument("--corpus", required=True, help="corpus name recorded in results.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--protocol", default="pooled", choices=PROTOCOLS, help="how the trials were built")
    p.add_argument("--eer", default="pooled", choices=EER_MODES, help="batch: PhonMatchNet's per-batch mean")
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--acoustic-init", default="scratch", help="where the acoustic model started (scratch | hama)")
    p.add_argument("--realspeech", help="a realspeech.json of evaluation.realspeech to include (its .md beside it too)")
    args = p.parse_args(argv)
    realspeech, realspeech_md = None, ""
    if args.realspeech:
        realspeech = json.loads(Path(args.realspeech).read_text())
        md = Path(args.realspeech).with_suffix(".md")
        realspeech_md = md.read_text() if md.exists() else ""
    results = report(read_scores(args.scores), args.corpus, args.out, args.protocol, args.eer,
                     args.batch_size, args.seed, args.acoustic_init, realspeech, realspeech_md)
    for head, by_split in results["heads"].items():
        print(head, "  ".join(f"{s}: AUC {_pct(m['auc'])}% EER {_pct(m['eer'])}%" for s, m in by_split.items()))


if __name__ == "__main__":
    main()
