"""Keyword spotting in continuous speech: recall against false alarms per hour, per head.

    python -m evaluation.continuous --model exp/<tag>/model.pt --corpus data/synth --out DIR \
        [--minutes 10] [--recording-seconds 60] [--keywords 10] [--seed 0] [--heads ced,clad]

Test audio. Long recordings (default 60 s each, ``--minutes`` in all) are synthesised with the
TEST-split voices of ``--corpus`` (its voices.json; voice-disjoint from training), one voice per
recording, the kinds of synthesiser taken in turn. About half the sentences carry a keyword in a
carrier phrase ("could you please <keyword> for me"), the others are keyword-free sentences
from the synth corpus' text generator.
Keywords are command phrases chosen (seeded) from KEYWORD_CANDIDATES, skipping the corpus'
training phrase texts where enough others remain. Each sentence is synthesised in pieces
(carrier prefix, keyword, carrier suffix), each trimmed to its speech and joined with short
gaps, so a keyword occurrence spans exactly its piece. Known limitation: the keyword keeps the
prosody of a phrase said on its own (no coarticulation with its neighbours), which makes the
task easier than natural speech. Recordings and their truth are written under ``--out``.

Scoring. For each head, a KeywordSpotter with the keywords reports every window it scores
through its ``on_window`` hook: the complete record of window scores, scored once per
recording. Each threshold is then swept by handing that record to the spotter's own detection
rule (``KeywordSpotter.decide``: threshold, refractory period), which is exactly what rerunning
the spotter at that threshold would give (tested), without scoring again. Thresholds: the 200
highest distinct window scores (the low false-alarm region, one step per detection), 50
quantiles of all scores, and the model's calibrated threshold.

Counting. A detection of keyword k is a hit when its centre lies within +-``--tolerance``
(0.5 s, inclusive) of the centre of a true occurrence of k; detections, in time order, each claim
the nearest unclaimed such occurrence, so an occurrence is hit at most once. Every other
detection, including a second detection of an occurrence already hit, is a false alarm. Recall
= hits / occurrences; false alarms per hour over the whole audio (keyword speech included).
Recall at 1 FA/h interpolates linearly between the two operating points around 1 FA/h on the
curve's upper envelope (achievable by mixing the two), with "accept nothing" (0, 0) as a point
(the refractory period can make a lower threshold lose a hit, so not every point is on it);
with ``--minutes`` of audio one false alarm is 60 / minutes FA/h, so that number is coarse.

Writes ``continuous.json``, ``continuous.md`` and ``continuous.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from data_prep import tts
from data_prep.synth import PEAK, SILENCE_FLOOR_DB
from data_prep.tts import Voice
from openkws.audio import SAMPLE_RATE, load_audio
from openkws.checkpoint import atomic_write_text
from openkws.model import KWSModel
from openkws.spotter import Detection, KeywordSpotter, Window
from openkws.text import normalize

log = logging.getLogger("evaluation.continuous")

# Command phrases, none a word sequence inside another, phrased unlike the synth corpus' templates.
KEYWORD_CANDIDATES = (
    "open the window", "close the curtains", "lock the front door", "start the dishwasher", "pause the movie",
    "skip this track", "read my messages", "check the temperature", "good afternoon", "take a picture",
    "find my keys", "order a pizza", "check my calendar", "water the plants", "feed the cat",
    "charge the car", "make some tea", "dim the lamp", "cancel the meeting", "shuffle my songs",
    "drive me home", "answer the call", "raise the volume", "switch on the porch light",
)  # fmt: skip
# (prefix, suffix) around a keyword; an empty side puts the keyword at the sentence edge.
CARRIERS = (
    ("could you please", "for me"), ("i asked her to", "before we go"), ("and then", "right after dinner"),
    ("remember to", "when you get home"), ("", "is what he told me"), ("tell me how to", "without any help"),
    ("he wants me to", "again tomorrow"), ("we should", "this weekend"), ("why did you", "so late at night"),
    ("okay", "thanks a lot"), ("after lunch", "and then relax"), ("somebody has to", ""),
    ("do not forget to", "on your way out"), ("it would be nice to", "once in a while"),
)  # fmt: skip
KEYWORD_SENTENCE_FRACTION = 0.5
LEAD_SILENCE_S = 0.5
PIECE_GAP_S = (0.03, 0.12)  # between the pieces of one sentence
SENTENCE_GAP_S = (0.3, 0.9)
NOISE_RMS = 1e-3  # a faint noise floor: digital silence is not what microphones record
TOLERANCE_S = 0.5
REFRACTORY_S = 1.0
TARGET_FA_PER_HOUR = 1.0
TOP_THRESHOLDS, QUANTILE_THRESHOLDS = 200, 50
_EDGE = 1e-9  # seconds: float slack so the tolerance edge counts as inside


@dataclass(frozen=True)
class Occurrence:
    keyword: str
    start: float  # seconds, the keyword piece's speech
    end: float

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


@dataclass
class Recording:
    id: str
    voice: str
    audio: np.ndarray  # 16 kHz float32
    occurrences: list[Occurrence]
    text: str  # what is said, sentence by sentence

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# ------------------------------------------------------------------------------------ test audio

def heldout_voices(corpus: str | Path) -> list[Voice]:
    """The corpus' test-split voices that can be synthesised here, in voices.json order."""
    path = Path(corpus) / "voices.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --corpus must be a synth corpus folder "
                                "(built by python -m data_prep.synth)")
    ids = [row["id"] for row in json.loads(path.read_text(encoding="utf-8")) if row["split"] == "test"]
    if not ids:
        raise ValueError(f"{path} lists no test-split voice")
    installed = {v.id for v in tts.available_voices()}
    voices = [Voice.from_id(i) for i in ids if i in installed]
    if not voices:
        raise RuntimeError(f"none of the {len(ids)} test voices of {path} can be synthesised here "
                           f"(e.g. {ids[0]}): install its TTS engine")
    return voices


def training_phrases(corpus: str | Path) -> set[str]:
    """Normalised texts of the corpus' training phrases (the keywords the heads were trained on)."""
    from openkws.data.manifest import read_manifest

    path = Path(corpus) / "train.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the training manifest says which phrases to avoid")
    return {" ".join(normalize(u.text)) for u in read_manifest(path) if u.kind == "phrase"}


def _contains(text: str, phrase: str) -> bool:
    """Whether the words of ``phrase`` occur consecutively in ``text`` (after normalisation)."""
    words, sub = normalize(text), normalize(phrase)
    return any(words[i:i + len(sub)] == sub for i in range(len(words) - len(sub) + 1))


def choose_keywords(n: int, avoid: set[str], rng: random.Random) -> list[str]:
    """``n`` candidates, seeded; phrases in ``avoid`` only when too few others remain."""
    if not 1 <= n <= len(KEYWORD_CANDIDATES):
        raise ValueError(f"--keywords must be 1..{len(KEYWORD_CANDIDATES)}, got {n}")
    fresh = [k for k in KEYWORD_CANDIDATES if " ".join(normalize(k)) not in avoid]
    seen = [k for k in KEYWORD_CANDIDATES if k not in fresh]
    rng.shuffle(fresh)
    rng.shuffle(seen)
    chosen = (fresh + seen)[:n]
    if set(chosen) & set(seen):
        log.warning("only %d candidate keywords are not training phrases; also using %s",
                    len(fresh), sorted(set(chosen) & set(seen)))
    return chosen


def speech(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample to 16 kHz, cut to the first..last 10 ms frame within SILENCE_FLOOR_DB of the
    loudest one (no silence kept), peak-normalise."""
    audio = load_audio(audio, sample_rate)
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max(initial=0.0) * 10 ** (SILENCE_FLOOR_DB / 20))
    if loud.size:
        audio = audio[loud[0] * frame: (loud[-1] + 1) * frame]
    return (audio * (PEAK / max(float(np.abs(audio).max()), 1e-9))).astype(np.float32)


def build_recording(rec_id: str, voice: Voice, keywords: Sequence[str], seconds: float, rng: random.Random,
                    filler: Callable[[], str],
                    synthesize: Callable[[Voice, str], tuple[np.ndarray, int]] = tts.synthesize) -> Recording:
    """Sentences said by ``voice`` until the recording is ``seconds`` long; keywords take turns
    (shuffled), ``filler()`` supplies keyword-free sentences."""
    carriers = [c for c in CARRIERS if not any(_contains(" ".join(c), k) for k in keywords)]
    turns = itertools.cycle(rng.sample(list(keywords), len(keywords)))
    parts = [np.zeros(int(LEAD_SILENCE_S * SAMPLE_RATE), np.float32)]
    samples, occurrences, texts = len(parts[0]), [], []

    def add(audio: np.ndarray) -> int:
        nonlocal samples
        parts.append(audio)
        samples += len(audio)
        return samples - len(audio)

    def gap(bounds: tuple[float, float]) -> None:
        add(np.zeros(int(rng.uniform(*bounds) * SAMPLE_RATE), np.float32))

    while samples < seconds * SAMPLE_RATE:
        if rng.random() < KEYWORD_SENTENCE_FRACTION:
            keyword, (prefix, suffix) = next(turns), rng.choice(carriers)
            pieces = [(t, i == 1) for i, t in enumerate((prefix, keyword, suffix)) if t]
        else:
            text = filler()
            while any(_contains(text, k) for k in keywords):
                text = filler()
            pieces = [(text, False)]
        for i, (text, is_keyword) in enumerate(pieces):
            if i:
                gap(PIECE_GAP_S)
            audio = speech(*synthesize(voice, text))
            start = add(audio)
            if is_keyword:
                occurrences.append(Occurrence(text, start / SAMPLE_RATE, (start + len(audio)) / SAMPLE_RATE))
        texts.append(" ".join(t for t, _ in pieces))
        gap(SENTENCE_GAP_S)
    audio = np.concatenate(parts)
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(len(audio)).astype(np.float32)
    return Recording(rec_id, voice.id, audio + NOISE_RMS * noise, occurrences, "\n".join(texts))


def _interleave_families(voices: Sequence[Voice], rng: random.Random) -> list[Voice]:
    """Voices shuffled within each family (espeak, piper, recorded), then taken from the
    families in turn, so that a few recordings already cover every kind of synthesiser."""
    families: dict[str, list[Voice]] = defaultdict(list)
    for v in voices:
        families[v.family].append(v)
    for group in families.values():
        rng.shuffle(group)
    rounds = itertools.zip_longest(*(families[f] for f in sorted(families)))
    return [v for r in rounds for v in r if v is not None]


def make_recordings(corpus: str | Path, minutes: float, recording_seconds: float, n_keywords: int,
                    seed: int) -> tuple[list[Recording], list[str], list[str]]:
    """The test recordings, the keywords and which of them are training phrases."""
    from data_prep.synth import TextGenerator, build_vocabulary

    voices, avoid = heldout_voices(corpus), training_phrases(corpus)
    rng = random.Random(seed)
    keywords = choose_keywords(n_keywords, avoid, rng)
    tts.reseed(seed)  # piper's noise; espeak is deterministic for the same call sequence
    generator = TextGenerator(build_vocabulary(), rng)
    order = _interleave_families(voices, rng)
    n = max(1, round(60 * minutes / recording_seconds))
    recordings = [build_recording(f"rec{i:03d}", order[i % len(order)], keywords, recording_seconds, rng,
                                  generator.sentence)
                  for i in tqdm(range(n), desc="synthesise", unit="recording")]
    return recordings, keywords, [k for k in keywords if " ".join(normalize(k)) in avoid]


# ------------------------------------------------------------------------------------ detection

def window_scores(model: KWSModel, head: str, keywords: Sequence[str], audio: np.ndarray) -> list[Window]:
    """Every sliding window of every keyword with its score, from the KeywordSpotter itself."""
    windows: list[Window] = []
    spotter = KeywordSpotter(model, head, on_window=windows.append)
    for k in keywords:
        spotter.enroll(k)
    spotter.scan(audio)
    return windows


def spotter_at(model: KWSModel, head: str, keywords: Sequence[str], threshold: float,
               refractory_seconds: float = REFRACTORY_S) -> KeywordSpotter:
    """A spotter with every keyword at ``threshold``: ``reset()`` then ``decide(windows)`` gives
    the detections it would make on the stream whose window record is ``windows``."""
    spotter = KeywordSpotter(model, head, refractory_seconds=refractory_seconds)
    for k in keywords:
        spotter.enroll(k, threshold)
    return spotter


def count_hits(detections: Sequence[Detection], occurrences: Sequence[Occurrence],
               tolerance: float = TOLERANCE_S) -> tuple[int, int]:
    """(hits, false alarms) of one recording's detections against its true occurrences."""
    unclaimed: dict[str, list[float]] = defaultdict(list)
    for o in occurrences:
        unclaimed[o.keyword].append(o.centre)
    hits = 0
    for d in sorted(detections, key=lambda d: d.start + d.end):
        centre, candidates = (d.start + d.end) / 2, unclaimed[d.keyword]
        near = [c for c in candidates if abs(c - centre) <= tolerance + _EDGE]
        if near:
            candidates.remove(min(near, key=lambda c: abs(c - centre)))
            hits += 1
    return hits, len(detections) - hits


def sweep_thresholds(scores: np.ndarray, extra: Sequence[float] = ()) -> list[float]:
    """Thresholds to sweep, high to low: the TOP_THRESHOLDS highest distinct scores, quantiles
    of all of them, and ``extra``."""
    distinct = np.unique(scores)[::-1]
    quantiles = np.quantile(scores, np.linspace(0, 1, QUANTILE_THRESHOLDS))
    grid = set(distinct[:TOP_THRESHOLDS].tolist()) | set(quantiles.tolist()) | {float(t) for t in extra}
    return sorted(grid, reverse=True)


def recall_at_fa(fa_per_hour: Sequence[float], recall: Sequence[float], target: float = TARGET_FA_PER_HOUR) -> float:
    """Recall at ``target`` FA/h: linear interpolation between the operating points of the upper
    envelope (those no other point beats with as few false alarms), with (0 FA/h, recall 0),
    "accept nothing", added; beyond the last point, its recall."""
    fa = np.concatenate([[0.0], np.asarray(fa_per_hour, dtype=float)])
    rec = np.concatenate([[0.0], np.asarray(recall, dtype=float)])
    xs, ys = [], []
    for i in np.lexsort((-rec, fa)):  # FA/h ascending, the best recall first within ties
        if not ys or rec[i] > ys[-1]:
            xs.append(fa[i])
            ys.append(rec[i])
    return float(np.interp(target, xs, ys))


def evaluate_head(model: KWSModel, head: str, keywords: Sequence[str], recordings: Sequence[Recording],
                  tolerance: float = TOLERANCE_S, refractory_seconds: float = REFRACTORY_S) -> dict:
    """Recall / false-alarm curve of one head over all recordings (the spotter restarts per recording)."""
    windows = [window_scores(model, head, keywords, r.audio) for r in tqdm(recordings, desc=f"spot {head}")]
    hours = sum(r.seconds for r in recordings) / 3600
    n_occ = sum(len(r.occurrences) for r in recordings)
    if n_occ == 0:
        raise ValueError("the recordings hold no keyword occurrence: make them longer")
    model_threshold = float(model.thresholds[head])
    all_scores = np.array([w.score for ws in windows for w in ws])

    def point(threshold: float) -> dict:
        spotter, counts = spotter_at(model, head, keywords, threshold, refractory_seconds), []
        for ws, r in zip(windows, recordings):
            spotter.reset()
            counts.append(count_hits(spotter.decide(ws), r.occurrences, tolerance))
        hits, fas = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return {"threshold": threshold, "hits": hits, "false_alarms": fas, "recall": hits / n_occ,
                "fa_per_hour": fas / hours}

    curve = [point(t) for t in sweep_thresholds(all_scores, [model_threshold])]
    fa, rec = [p["fa_per_hour"] for p in curve], [p["recall"] for p in curve]
    return {"recall_at_1fa_h": recall_at_fa(fa, rec, TARGET_FA_PER_HOUR),
            "recall_at_0fa": max([p["recall"] for p in curve if p["false_alarms"] == 0], default=0.0),
            "at_model_threshold": next(p for p in curve if p["threshold"] == model_threshold),
            "max_recall": max(rec), "n_windows": int(all_scores.size), "curve": curve}


# ------------------------------------------------------------------------------------ report

def format_markdown(result: dict) -> str:
    s = result["setup"]
    lines = ["# Keyword spotting in continuous speech", "",
             (f"{s['recordings']} recordings, {60 * s['hours']:.1f} min of TTS speech by {len(s['voices'])} "
              f"test-split voices ({', '.join(f'{e} {n}' for e, n in s['engines'].items())}); {s['occurrences']} "
              f"keyword occurrences of {len(s['keywords'])} keywords; hit = detection centre within "
              f"+-{s['tolerance_s']:g} s of the occurrence centre; refractory {s['refractory_s']:g} s. One false "
              f"alarm = {1 / s['hours']:.1f} FA/h here."), "",
             "| head | recall @ 1 FA/h | recall @ 0 FA | model threshold: recall / FA/h | max recall |",
             "|---|---|---|---|---|"]
    for h, r in result["heads"].items():
        m = r["at_model_threshold"]
        lines.append(f"| {h} | {100 * r['recall_at_1fa_h']:.1f} % | {100 * r['recall_at_0fa']:.1f} % | "
                     f"{100 * m['recall']:.1f} % / {m['fa_per_hour']:.0f} (t={m['threshold']:.3f}) | "
                     f"{100 * r['max_recall']:.1f} % |")
    training = f" (also training phrases: {', '.join(s['training_keywords'])})" if s["training_keywords"] else ""
    lines += ["", f"Keywords: {', '.join(s['keywords'])}{training}.", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    for h, r in result["heads"].items():
        pts = sorted((p["fa_per_hour"], p["recall"]) for p in r["curve"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=h, drawstyle="steps-post")
    ax.axvline(TARGET_FA_PER_HOUR, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=1.0)  # linear below 1 FA/h, so 0 false alarms is on the plot
    ax.set_xlim(left=0)
    ax.set(xlabel="false alarms per hour", ylabel="recall", ylim=(0, 1.02),
           title=f"Continuous speech, {60 * result['setup']['hours']:.0f} min, test voices")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def write_recordings(recordings: Sequence[Recording], out: Path) -> None:
    """The audio (FLAC) and the truth, to listen to and to re-score."""
    (out / "recordings").mkdir(parents=True, exist_ok=True)
    truth = []
    for r in recordings:
        sf.write(out / "recordings" / f"{r.id}.flac", r.audio, SAMPLE_RATE)
        truth.append({"id": r.id, "voice": r.voice, "seconds": r.seconds, "text": r.text,
                      "occurrences": [asdict(o) for o in r.occurrences]})
    atomic_write_text(out / "recordings" / "truth.json", json.dumps(truth, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="openkws model file (exp/<tag>/model.pt)")
    ap.add_argument("--corpus", default="data/synth", help="synth corpus folder (voices.json, train.jsonl)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=10.0, help="total audio")
    ap.add_argument("--recording-seconds", type=float, default=60.0)
    ap.add_argument("--keywords", type=int, default=10, help="keywords enrolled (and spoken)")
    ap.add_argument("--heads", default="", help="comma-separated heads (default: all in the model)")
    ap.add_argument("--tolerance", type=float, default=TOLERANCE_S, help="seconds around the true centre")
    ap.add_argument("--refractory", type=float, default=REFRACTORY_S, help="spotter refractory period, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: small batches gain little from more, and shared cores thrash)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = KWSModel.load(args.model)
    heads = [h for h in args.heads.split(",") if h] or list(model.heads)
    try:
        for h in heads:
            model.head(h)
        recordings, keywords, training = make_recordings(args.corpus, args.minutes, args.recording_seconds,
                                                         args.keywords, args.seed)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        ap.error(str(e))
    out = Path(args.out)
    write_recordings(recordings, out)
    voices = sorted({r.voice for r in recordings})
    engines: dict[str, int] = defaultdict(int)
    for v in voices:
        engines[Voice.from_id(v).engine] += 1
    result = {
        "model": args.model,
        "setup": {"corpus": args.corpus, "seed": args.seed, "recordings": len(recordings),
                  "hours": sum(r.seconds for r in recordings) / 3600, "voices": voices, "engines": dict(engines),
                  "keywords": keywords, "training_keywords": training,
                  "occurrences": sum(len(r.occurrences) for r in recordings),
                  "tolerance_s": args.tolerance, "refractory_s": args.refractory,
                  "target_fa_per_hour": TARGET_FA_PER_HOUR},
        "heads": {h: evaluate_head(model, h, keywords, recordings, args.tolerance, args.refractory) for h in heads},
    }
    atomic_write_text(out / "continuous.json", json.dumps(result, indent=1) + "\n")
    text = format_markdown(result)
    atomic_write_text(out / "continuous.md", text)
    plot(result, out / "continuous.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
