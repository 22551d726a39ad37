"""Real-speech evaluation: keywords in real read sentences, FSDD digits, PER, continuous speech.

    python -m evaluation.realspeech --model exp/<tag>/model.pt [--heads ced,clad] \
        [--pack ../shared/data/realspeech] [--fsdd ../shared/data/fsdd] [--out DIR] \
        [--skip fsdd,continuous] [--max-fsdd 600] [--scoring spotter|whole]

Writes ``realspeech.json``, ``realspeech.md`` and, per head, ``roc_<head>.png``,
``det_<head>.png`` and ``hist_<head>.png`` (every condition a curve; evaluation.report's plots)
into ``--out`` (default ``exp/realspeech_eval/<model file stem>``). Heads: ``--heads`` or every
head the model holds, whatever their names. ``evaluate_realspeech`` is the function behind it.

Parts (each timed; ``--skip`` leaves parts out):

* ``trials``: the pack's ``dev_trials.csv`` (Common Voice dev clips; see the pack's README).
  Each clip is scored once against all of its trial keywords, the way a user's
  ``openkws.score(audio, keywords, model=..., head=...)`` scores it: the best sliding window of
  the streaming spotter (a clip shorter than a keyword's window is one window, scored whole).
  ``--scoring whole`` scores the whole clip in one piece instead (``KWSModel.score_segments``),
  which for sentences longer than the head's window is not what the heads were trained on.
  Conditions, AUC and EER pooled over their trials: ``easy`` (pos1 + pos2 vs easy negatives),
  ``hard`` (pos1 + pos2 vs hard, confusable negatives) and ``hard_1word`` (pos1 vs hard, the
  matched pairs). Hard negatives are fine phonetic contrasts: a stress test.
* ``fsdd``: evaluation.fsdd (each FSDD clip scored whole against the ten digit words): pooled AUC,
  EER, top-1 accuracy; ``--max-fsdd N`` scores N clips evenly spread over the manifest.
* ``per``: phoneme error rate of the acoustic model's greedy CTC output (over the openkws phoneme
  inventory) on the dev utterances with human transcripts (Common Voice + AN4 test speakers,
  pronounced as data_prep.realspeech does: AN4 letters are letter names), with stress digits
  (evaluation.per's PER) and without; per corpus too. A property of the acoustic model, so one
  number for all heads.
* ``continuous``: the dev utterances (manifest order) joined into one stream of real speech,
  searched with every keyword of the trials' positives (pos1 words and pos2 word pairs) by the
  streaming spotter (evaluation.continuous's window record, replayed at every threshold).
  Truth per keyword: an utterance whose words contain it holds that many occurrences; one whose
  pronunciation contains the keyword's phones (stress ignored) without the words (a part of a
  longer word, or across words) is ignored; every other utterance is a negative region. A
  detection (by its centre) within an utterance holding the keyword, or within
  ``TOLERANCE_S`` of it, claims one of its occurrences (a hit) or, when all are claimed, is
  ignored; one in a negative region is a false alarm. False alarms per hour are per keyword:
  all false alarms over the summed duration of every keyword's negative regions. Reported:
  recall at 1 FA/h (evaluation.continuous.recall_at_fa), the hours of audio, the keyword-hours
  of negative audio behind the FA/h and the number of occurrences.

Audio (Ogg/Opus) is decoded once per run (openkws.audio.load_audio) and shared by the parts.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data_prep.realspeech import DEFAULT_PACK, load_pack
from evaluation import continuous, fsdd as fsdd_eval, per as per_eval
from evaluation.report import plot_head, split_metrics
from openkws.api import score as api_score
from openkws.audio import SAMPLE_RATE, load_audio
from openkws.checkpoint import atomic_write_text
from openkws.data.manifest import Utterance
from openkws.model import KWSModel
from openkws.spotter import Detection
from openkws.metrics import error_rate
from openkws.text import decode, encode, normalize, strip_stress

log = logging.getLogger("evaluation.realspeech")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FSDD = fsdd_eval.DEFAULT_FSDD
DEFAULT_OUT = REPO / "exp" / "realspeech_eval"
PARTS = ("trials", "fsdd", "per", "continuous")
TRIAL_COLUMNS = ("path", "kind", "text", "label")  # required; anchor and phone_dist are optional
TRIAL_KINDS = {"pos1": 1, "pos2": 1, "easy": 0, "hard": 0}  # kind -> its label
CONDITIONS = {  # name -> (positive kinds, negative kinds)
    "easy": (("pos1", "pos2"), ("easy",)),
    "hard": (("pos1", "pos2"), ("hard",)),
    "hard_1word": (("pos1",), ("hard",)),
}
SCORING = ("spotter", "whole")
TOLERANCE_S = continuous.TOLERANCE_S
REFRACTORY_S = continuous.REFRACTORY_S
TARGET_FA_PER_HOUR = continuous.TARGET_FA_PER_HOUR


# ------------------------------------------------------------------------------------ trials

@dataclass(frozen=True)
class Trial:
    """One keyword-in-sentence trial: is ``text`` spoken in the clip at ``path``?"""

    path: Path  # absolute
    kind: str  # pos1 | pos2 | easy | hard
    text: str
    label: int  # 1: spoken in the clip
    anchor: str = ""  # hard negatives: the pos1 word they were made from
    phone_dist: int | None = None  # hard negatives: phone edit distance to the anchor


def read_trials(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Trial]:
    """The trials of a dev_trials.csv; clip paths are taken relative to ``root`` (default: the
    file's folder). Errors name the file and line: missing columns, unknown kind, label not 0/1
    or not the kind's, empty keyword or path, bad phone_dist."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    if not path.is_file():
        raise FileNotFoundError(f"trial file not found: {path}")
    trials = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in TRIAL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}:1: missing column(s) {', '.join(missing)} (need {', '.join(TRIAL_COLUMNS)})")
        for line, row in enumerate(reader, 2):
            where = f"{path}:{line}"
            if any(row[c] is None for c in TRIAL_COLUMNS):
                raise ValueError(f"{where}: too few fields")
            kind, text, label, clip = (row[c].strip() for c in ("kind", "text", "label", "path"))
            if kind not in TRIAL_KINDS:
                raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(TRIAL_KINDS)}")
            if label not in ("0", "1"):
                raise ValueError(f"{where}: label must be 0 or 1, got {label!r}")
            if int(label) != TRIAL_KINDS[kind]:
                raise ValueError(f"{where}: label {label} contradicts kind {kind!r} (label {TRIAL_KINDS[kind]})")
            if not text or not clip:
                raise ValueError(f"{where}: empty {'text' if not text else 'path'}")
            dist = (row.get("phone_dist") or "").strip()
            try:
                phone_dist = int(dist) if dist else None
            except ValueError:
                raise ValueError(f"{where}: phone_dist must be an integer or empty, got {dist!r}") from None
            trials.append(Trial(Path(os.path.normpath(root / clip)), kind, text, int(label),
                                (row.get("anchor") or "").strip(), phone_dist))
    if not trials:
        raise ValueError(f"{path}: no trials")
    return trials


class AudioCache:
    """Decoded 16 kHz audio by path, each file decoded once per run."""

    def __init__(self):
        self._audio: dict[str, np.ndarray] = {}

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        key = os.path.abspath(path)
        if key not in self._audio:
            self._audio[key] = load_audio(key)
        return self._audio[key]


def score_trials(model: KWSModel, trials: Sequence[Trial], head: str, audio: Callable[[Path], np.ndarray],
                 scoring: str = "spotter") -> np.ndarray:
    """Score of every trial (in order) with one head; each clip is scored once against all of its
    keywords: ``openkws.score`` (``scoring="spotter"``) or whole (``"whole"``)."""
    if scoring not in SCORING:
        raise ValueError(f"scoring must be one of {', '.join(SCORING)}, got {scoring!r}")
    by_clip: dict[Path, list[int]] = defaultdict(list)
    for i, t in enumerate(trials):
        by_clip[t.path].append(i)
    scores = np.zeros(len(trials), dtype=np.float64)
    for clip, idx in tqdm(by_clip.items(), desc=f"trials {head}", unit="clip", leave=False):
        keywords = list(dict.fromkeys(trials[i].text for i in idx))
        if scoring == "spotter":
            best = api_score(audio(clip), keywords, model=model, head=head)
        else:
            row = model.score_segments([audio(clip)], [model.keyword(k) for k in keywords], head)[0]
            best = dict(zip(keywords, row.tolist()))
        for i in idx:
            scores[i] = best[trials[i].text]
    return scores


def condition_records(trials: Sequence[Trial], scores: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(labels, scores) of each condition in CONDITIONS."""
    kinds = np.array([t.kind for t in trials])
    labels = np.array([t.label for t in trials])
    out = {}
    for name, (pos, neg) in CONDITIONS.items():
        mask = np.isin(kinds, pos + neg)
        out[name] = (labels[mask], scores[mask])
    return out


def _auc_eer(labels: np.ndarray, scores: np.ndarray) -> dict:
    m = split_metrics(labels, scores)
    if m["auc"] is None:
        raise ValueError(f"a condition needs positive and negative trials, got {m['n_pos']} and {m['n_neg']}")
    return {"auc": m["auc"], "eer": m["eer"], "n_trials": m["n_trials"], "n_pos": m["n_pos"], "n_neg": m["n_neg"]}


# ------------------------------------------------------------------------------------ continuous

@dataclass(frozen=True)
class Segment:
    """One utterance inside the continuous stream."""

    id: str
    start: float  # seconds from the start of the stream
    end: float
    words: tuple[str, ...]  # normalised transcript
    phones: tuple[str, ...]  # its pronunciation, stress stripped


@dataclass(frozen=True)
class KeywordTruth:
    """Where a keyword is and is not in the stream, by segment index."""

    keyword: str
    occurrences: dict[int, int]  # segment -> occurrences of the keyword's words in it
    negative: tuple[int, ...]  # segments without the keyword: its false alarms are counted there
    ignored: tuple[int, ...]  # the keyword's phones are in the segment, its words are not

    def negative_seconds(self, segments: Sequence[Segment]) -> float:
        return sum(segments[i].end - segments[i].start for i in self.negative)


def _count(seq: Sequence[str], sub: Sequence[str]) -> int:
    """Occurrences of ``sub`` as a contiguous run in ``seq`` (overlaps counted)."""
    n = len(sub)
    return sum(1 for i in range(len(seq) - n + 1) if tuple(seq[i:i + n]) == tuple(sub)) if n else 0


def build_stream(utts: Sequence[Utterance], audio: Callable[[str], np.ndarray]) -> tuple[np.ndarray, list[Segment]]:
    """The utterances' audio joined in order, and where each one lies in it."""
    parts, segments, t = [], [], 0
    for u in utts:
        wave = audio(u.path)
        parts.append(wave)
        segments.append(Segment(u.id, t / SAMPLE_RATE, (t + len(wave)) / SAMPLE_RATE, tuple(normalize(u.text)),
                                tuple(strip_stress(p) for p in u.phonemes)))
        t += len(wave)
    if not parts:
        raise ValueError("no utterance to build a stream from")
    return np.concatenate(parts), segments


def keyword_truth(keyword: str, phonemes: Sequence[str], segments: Sequence[Segment]) -> KeywordTruth:
    """Which segments hold ``keyword`` (its words), which do not (negatives) and which hold its
    phones (``phonemes``, stress ignored) without its words (ignored)."""
    words, phones = normalize(keyword), [strip_stress(p) for p in phonemes]
    occurrences, negative, ignored = {}, [], []
    for i, s in enumerate(segments):
        n = _count(s.words, words)
        if n:
            occurrences[i] = n
        elif _count(s.phones, phones):
            ignored.append(i)
        else:
            negative.append(i)
    return KeywordTruth(keyword, occurrences, tuple(negative), tuple(ignored))


def count_region_hits(detections: Iterable[Detection], truth: KeywordTruth, segments: Sequence[Segment],
                      tolerance: float = TOLERANCE_S) -> tuple[int, int]:
    """(hits, false alarms) of one keyword's detections. A detection's centre inside a segment
    holding the keyword, or within ``tolerance`` of one, claims one of its unclaimed occurrences
    (the segment containing the centre first, then the nearest); when all are claimed it is
    ignored. Otherwise a centre inside a negative segment is a false alarm; elsewhere (an ignored
    segment, past the stream) it is ignored."""
    starts = [s.start for s in segments]
    negative = set(truth.negative)
    left = dict(truth.occurrences)
    hits = fas = 0
    for d in sorted(detections, key=lambda d: d.start + d.end):
        centre = (d.start + d.end) / 2
        near = [i for i in truth.occurrences
                if segments[i].start - tolerance <= centre <= segments[i].end + tolerance]
        if near:
            open_ = [i for i in near if left[i] > 0]
            if open_:
                i = min(open_, key=lambda i: max(segments[i].start - centre, centre - segments[i].end, 0.0))
                left[i] -= 1
                hits += 1
            continue
        i = bisect.bisect_right(starts, centre) - 1
        if 0 <= i < len(segments) and centre < segments[i].end and i in negative:
            fas += 1
    return hits, fas


def evaluate_continuous(model: KWSModel, head: str, keywords: Sequence[str], stream: np.ndarray,
                        segments: Sequence[Segment], tolerance: float = TOLERANCE_S,
                        refractory_seconds: float = REFRACTORY_S) -> dict:
    """Recall / false alarms per keyword-hour of one head on the stream (see the module doc)."""
    truths = {k: keyword_truth(k, model.keyword(k).phonemes, segments) for k in keywords}
    n_occ = sum(sum(t.occurrences.values()) for t in truths.values())
    if n_occ == 0:
        raise ValueError("no keyword occurs in the stream")
    negative_hours = sum(t.negative_seconds(segments) for t in truths.values()) / 3600
    windows = continuous.window_scores(model, head, keywords, stream)
    scores = np.array([w.score for w in windows])
    model_threshold = float(model.thresholds[head])

    def point(threshold: float) -> dict:
        spotter = continuous.spotter_at(model, head, keywords, threshold, refractory_seconds)
        # Windows below the threshold never fire nor mute: deciding over the others is exact.
        detections = spotter.decide([windows[i] for i in np.flatnonzero(scores >= threshold)])
        by_keyword: dict[str, list[Detection]] = defaultdict(list)
        for d in detections:
            by_keyword[d.keyword].append(d)
        counts = [count_region_hits(ds, truths[k], segments, tolerance) for k, ds in by_keyword.items()]
        hits, fas = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return {"threshold": threshold, "hits": hits, "false_alarms": fas, "recall": hits / n_occ,
                "fa_per_hour": fas / negative_hours}

    curve = [point(t) for t in continuous.sweep_thresholds(scores, [model_threshold])]
    fa, rec = [p["fa_per_hour"] for p in curve], [p["recall"] for p in curve]
    return {"recall_at_1fa_per_h": continuous.recall_at_fa(fa, rec, TARGET_FA_PER_HOUR),
            "hours": len(stream) / SAMPLE_RATE / 3600, "negative_keyword_hours": negative_hours,
            "n_occurrences": n_occ, "n_keywords": len(keywords),
            "n_ignored_regions": sum(len(t.ignored) for t in truths.values()),
            "recall_at_0fa": max([p["recall"] for p in curve if p["false_alarms"] == 0], default=0.0),
            "at_model_threshold": next(p for p in curve if p["threshold"] == model_threshold),
            "max_recall": max(rec), "n_windows": int(scores.size), "curve": curve}


# ------------------------------------------------------------------------------------ driver

def _evenly(items: Sequence, n: int | None) -> list:
    """``n`` items spread evenly over ``items`` (all of them when n is None or too large)."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ValueError(f"max_fsdd must be >= 1, got {n}")
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def evaluate_realspeech(model: KWSModel | str | os.PathLike, heads: Sequence[str] | None = None,
                        pack: str | os.PathLike = DEFAULT_PACK, fsdd: str | os.PathLike = DEFAULT_FSDD,
                        skip: Iterable[str] = (), max_fsdd: int | None = None, scoring: str = "spotter",
                        out: str | os.PathLike | None = None, plots: bool = True,
                        model_name: str | None = None) -> dict:
    """Every part (PARTS, less ``skip``) for every head in ``heads`` (default: all of the
    model's); the realspeech.json dict. With ``out``, also writes realspeech.json,
    realspeech.md and the plots there. ``model`` is a KWSModel or a model file."""
    if not isinstance(model, KWSModel):
        model_name = model_name or str(model)
        model = KWSModel.load(model)
    model_name = model_name or "<in-memory model>"
    heads = list(heads or model.heads)
    for h in heads:
        model.head(h)  # an unknown name fails before the slow parts
    skip = set(skip)
    unknown = sorted(skip - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) to skip {', '.join(unknown)}; parts: {', '.join(PARTS)}")
    if scoring not in SCORING:
        raise ValueError(f"scoring must be one of {', '.join(SCORING)}, got {scoring!r}")
    pack = Path(pack)
    timing: dict[str, object] = {}
    result: dict = {"model": model_name, "pack": str(pack), "fsdd_dir": str(fsdd) if "fsdd" not in skip else None,
                    "scoring": scoring, "skipped": sorted(skip), "heads": {h: {} for h in heads}}
    records: dict[str, list[dict]] = defaultdict(list)  # head -> trial records for the plots
    audio = AudioCache()

    t0 = time.perf_counter()
    # The dev utterances serve the PER and the stream; the trials, their scoring and the keywords.
    dev = load_pack(pack, splits=("dev",))[0] if not skip >= {"per", "continuous"} else []
    trials = read_trials(pack / "dev_trials.csv", pack) if not skip >= {"trials", "continuous"} else []
    missing = sorted({str(t.path) for t in trials if not t.path.is_file()})
    if missing:
        raise FileNotFoundError(f"{pack / 'dev_trials.csv'}: {len(missing)} clip(s) not found, e.g. {missing[0]}")
    for u in dev:
        audio(u.path)
    for t in trials:
        audio(t.path)
    timing["load"] = time.perf_counter() - t0

    if "trials" not in skip:
        timing["trials"] = {}
        for h in heads:
            t0 = time.perf_counter()
            scores = score_trials(model, trials, h, audio, scoring)
            for name, (y, s) in condition_records(trials, scores).items():
                result["heads"][h][name] = _auc_eer(y, s)
                records[h] += [{"label": int(a), "score": float(b), "split": name, "head": h} for a, b in zip(y, s)]
            timing["trials"][h] = time.perf_counter() - t0
        result["trials"] = {"n_trials": len(trials), "n_clips": len({t.path for t in trials}),
                            "by_kind": {k: sum(t.kind == k for t in trials) for k in TRIAL_KINDS}}

    if "fsdd" not in skip:
        t0 = time.perf_counter()
        all_clips = fsdd_eval.read_fsdd(fsdd)
        clips = _evenly(all_clips, max_fsdd)
        fsdd_scores = fsdd_eval.score_clips(model, clips, heads)
        timing["fsdd_load_and_score"] = time.perf_counter() - t0
        for h in heads:
            r = fsdd_eval.evaluate(fsdd_scores[h], [c.digit for c in clips], [c.speaker for c in clips],
                                   model.thresholds[h])
            result["heads"][h]["fsdd"] = {"auc": r["pooled"]["auc"], "eer": r["pooled"]["eer"],
                                          "top1": r["top1_accuracy"], "n_trials": r["pooled"]["n_trials"],
                                          "n_clips": len(clips)}
            labels = (np.array([c.digit for c in clips])[:, None] == np.arange(10)[None, :]).ravel()
            records[h] += [{"label": int(a), "score": float(b), "split": "fsdd", "head": h}
                           for a, b in zip(labels, fsdd_scores[h].ravel())]
        result["fsdd_clips"] = {"scored": len(clips), "of": len(all_clips)}

    if "per" not in skip:
        t0 = time.perf_counter()
        human = [u for u in dev if u.extra.get("transcript_source") == "human"]
        result["per"] = _per(model, human, audio)
        timing["per"] = time.perf_counter() - t0

    if "continuous" not in skip:
        keywords = list(dict.fromkeys(t.text for t in trials if t.label == 1))
        stream, segments = build_stream(dev, audio)
        timing["continuous"] = {}
        for h in heads:
            t0 = time.perf_counter()
            result["heads"][h]["continuous"] = evaluate_continuous(model, h, keywords, stream, segments)
            timing["continuous"][h] = time.perf_counter() - t0
        result["continuous_setup"] = {"utterances": len(segments), "keywords": len(keywords),
                                      "tolerance_s": TOLERANCE_S, "refractory_s": REFRACTORY_S,
                                      "corpora": sorted({u.extra.get("corpus", "?") for u in dev})}

    timing["total"] = sum(v if isinstance(v, float) else sum(v.values()) for v in timing.values())
    result["timing_s"] = timing
    if out is not None:
        write_outputs(result, records, out, plots)
    return result


def _per(model: KWSModel, utts: Sequence[Utterance], audio: Callable[[str], np.ndarray]) -> dict:
    """PER with and without stress, over all utterances and per corpus (one decoding pass)."""
    if not utts:
        raise ValueError("no dev utterance with a human transcript for the PER")
    hyps = per_eval.greedy_hypotheses(model.acoustic, list(utts), waves=[audio(u.path) for u in utts])
    refs = [encode(u.phonemes) for u in utts]

    def rates(idx: Sequence[int]) -> dict:
        r, h = [refs[i] for i in idx], [hyps[i] for i in idx]
        return {"per": error_rate(r, h), "per_no_stress": error_rate(per_eval.stressless(r), per_eval.stressless(h)),
                "n_utts": len(idx), "n_phonemes": sum(len(x) for x in r)}

    by_corpus: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        by_corpus[u.extra.get("corpus", "?")].append(i)
    return {**rates(range(len(utts))), "by_corpus": {c: rates(idx) for c, idx in sorted(by_corpus.items())},
            "examples": [(u.text, " ".join(decode(h))) for u, h in list(zip(utts, hyps))[:5]]}


# ------------------------------------------------------------------------------------ report

def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_markdown(result: dict) -> str:
    heads = result["heads"]
    lines = [f"# Real-speech evaluation: {result['model']}", ""]
    cols = [c for c in (*CONDITIONS, "fsdd") if any(c in r for r in heads.values())]
    header = "| head | " + " | ".join(f"{c} AUC % | {c} EER %" for c in cols)
    if any("fsdd" in r for r in heads.values()):
        header += " | FSDD top-1 %"
    if any("continuous" in r for r in heads.values()):
        header += " | recall @ 1 FA/h %"
    lines += [header + " |", "|" + "---|" * (header.count("|"))]
    for h, r in heads.items():
        cells = [f"{_pct(r[c]['auc'])} | {_pct(r[c]['eer'])}" if c in r else "- | -" for c in cols]
        if "fsdd" in cols:
            cells.append(_pct(r.get("fsdd", {}).get("top1")))
        if any("continuous" in x for x in heads.values()):
            cells.append(_pct(r.get("continuous", {}).get("recall_at_1fa_per_h")))
        lines.append(f"| {h} | " + " | ".join(cells) + " |")
    lines.append("")
    if "trials" in result:
        t = result["trials"]
        n = {c: next(iter(heads.values()))[c]["n_trials"] for c in CONDITIONS if c in next(iter(heads.values()))}
        lines.append(f"Keyword-in-sentence trials: {t['n_trials']} over {t['n_clips']} Common Voice dev clips "
                     f"(easy {n.get('easy')}, hard {n.get('hard')}, hard_1word {n.get('hard_1word')} trials), scored "
                     + ("as openkws.score does (best sliding window)." if result["scoring"] == "spotter"
                        else "whole (score_segments)."))
    if "fsdd_clips" in result:
        f = result["fsdd_clips"]
        lines.append(f"FSDD: {f['scored']} of {f['of']} clips, each against the ten digit words.")
    if "continuous_setup" in result:
        c = next(r["continuous"] for r in heads.values() if "continuous" in r)
        n_utts = result["continuous_setup"]["utterances"]
        lines.append(f"Continuous: {c['hours'] * 60:.1f} min of real dev speech ({n_utts} "
                     f"utterances joined), {c['n_keywords']} keywords, {c['n_occurrences']} occurrences; FA/h per "
                     f"keyword over {c['negative_keyword_hours']:.1f} keyword-hours of negative audio (one false alarm "
                     f"= {1 / c['negative_keyword_hours']:.2f} FA/h).")
        lines += ["", "| head | recall @ 1 FA/h % | recall @ 0 FA % | model threshold: recall % / FA/h "
                  "| max recall % |", "|---|---|---|---|---|"]
        for h, r in heads.items():
            if "continuous" in r:
                c, m = r["continuous"], r["continuous"]["at_model_threshold"]
                lines.append(f"| {h} | {_pct(c['recall_at_1fa_per_h'])} | {_pct(c['recall_at_0fa'])} | "
                             f"{_pct(m['recall'])} / {m['fa_per_hour']:.1f} (t={m['threshold']:.3f}) | "
                             f"{_pct(c['max_recall'])} |")
    if "per" in result:
        p = result["per"]
        by = ", ".join(f"{c} {_pct(v['per'])} / {_pct(v['per_no_stress'])} ({v['n_utts']})"
                       for c, v in p["by_corpus"].items())
        lines += ["", f"PER of the acoustic model (greedy CTC over the openkws inventory), dev utterances with "
                  f"human transcripts: {_pct(p['per'])} % with stress, {_pct(p['per_no_stress'])} % without "
                  f"({p['n_utts']} utterances, {p['n_phonemes']} phonemes); by corpus: {by}."]
    timing = result["timing_s"]
    lines += ["", "Time (s): " + ", ".join(
        f"{k} {v:.1f}" if isinstance(v, float) else f"{k} " + "/".join(f"{h} {x:.1f}" for h, x in v.items())
        for k, v in timing.items()), ""]
    return "\n".join(lines)


def write_outputs(result: dict, records: dict[str, list[dict]], out: str | os.PathLike, plots: bool = True) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "realspeech.json", json.dumps(result, indent=1) + "\n")
    atomic_write_text(out / "realspeech.md", format_markdown(result))
    if plots:
        for h, recs in records.items():
            if recs:
                plot_head(h, recs, {**result["heads"][h]}, out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="openkws model file")
    ap.add_argument("--heads", default="", help="comma-separated heads (default: every head of the model)")
    ap.add_argument("--pack", default=str(DEFAULT_PACK), help="real speech pack (default: %(default)s)")
    ap.add_argument("--fsdd", default=str(DEFAULT_FSDD), help="FSDD folder (default: %(default)s)")
    ap.add_argument("--out", default=None, help="output folder (default: exp/realspeech_eval/<model stem>)")
    ap.add_argument("--skip", default="", help=f"comma-separated parts to leave out ({', '.join(PARTS)})")
    ap.add_argument("--max-fsdd", type=int, default=None, help="score only N FSDD clips (evenly spread)")
    ap.add_argument("--scoring", default="spotter", choices=SCORING,
                    help="trials: best sliding window as openkws.score (default) or the whole clip")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: small batches gain little from more, and shared cores thrash)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out) if args.out else DEFAULT_OUT / Path(args.model).stem
    try:
        result = evaluate_realspeech(args.model, [h for h in args.heads.split(",") if h], args.pack, args.fsdd,
                                     [s for s in args.skip.split(",") if s], args.max_fsdd, args.scoring, out,
                                     not args.no_plots)
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    print(format_markdown(result))
    print(f"wrote {out / 'realspeech.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
