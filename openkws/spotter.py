"""Streaming keyword spotting over audio of any length, fed in chunks of any size.

Each keyword is searched with sliding windows sized from its phoneme count (CLAD: phonemes x 90 ms
+ 300 ms margin, rounded up to one of a few bucket sizes so many keywords share windows), half
overlap. Windows sit on a fixed grid of absolute sample positions, so the
detections do not depend on how the audio was chunked; ``flush()`` scores the tail of the stream
(a clip shorter than a window is scored whole). After a hit, a keyword is muted for a refractory
period so one utterance of it gives one detection.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import soxr

from openkws.audio import SAMPLE_RATE, load_audio
from openkws.model import Keyword, KWSModel

HOP_QUANTUM = 160  # window lengths and hops are whole fbank hops (10 ms)
WINDOW_BUCKETS = (0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)  # seconds


@dataclass(frozen=True)
class Detection:
    keyword: str
    score: float
    start: float  # seconds from the start of the stream
    end: float


@dataclass
class _Enrolled:
    keyword: Keyword
    threshold: float
    muted_until: int = -1  # absolute sample index


class KeywordSpotter:
    """One spotter per audio stream (it keeps that stream's state)."""

    def __init__(self, model: KWSModel, head: str | None = None, refractory_seconds: float = 1.0):
        self.model, self.head_name = model, head or model.default_head
        model.head(self.head_name)  # validate the name now, not at the first chunk
        self.refractory = int(refractory_seconds * SAMPLE_RATE)
        self._enrolled: dict[str, _Enrolled] = {}
        self.reset()

    # -- enrolment ---------------------------------------------------------------------------
    def enroll(self, text: str, threshold: float | None = None,
               pronunciation: str | Sequence[str] | None = None) -> Keyword:
        """Add a keyword (text, optionally with an explicit ARPAbet pronunciation)."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        kw = self.model.keyword(text, pronunciation)
        default = self.model.thresholds[self.head_name]
        self._enrolled[text] = _Enrolled(kw, default if threshold is None else float(threshold))
        return kw

    def remove(self, text: str) -> None:
        self._enrolled.pop(text, None)

    @property
    def keywords(self) -> list[str]:
        return list(self._enrolled)

    # -- streaming ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream (audio, window positions, refractory periods); keep the keywords."""
        self._buffer = np.zeros(0, dtype=np.float32)
        self._resampler, self._resampler_rate = None, None
        self._offset = 0  # absolute index of _buffer[0]
        self._next_start: dict[int, int] = defaultdict(int)  # window length -> next window start
        self._scored_until: dict[int, int] = defaultdict(int)  # window length -> end of last window
        self.best_scores: dict[str, float] = {}  # best window score per keyword since reset()
        for e in self._enrolled.values():
            e.muted_until = -1

    def _groups(self) -> dict[int, list[_Enrolled]]:
        """Keywords by window length (samples): the smallest bucket that holds the keyword's
        window, so that a handful of window sizes serve any number of keywords."""
        groups: dict[int, list[_Enrolled]] = defaultdict(list)
        for e in self._enrolled.values():
            seconds = next((b for b in WINDOW_BUCKETS if b >= e.keyword.window_seconds), e.keyword.window_seconds)
            groups[int(round(seconds * SAMPLE_RATE / HOP_QUANTUM)) * HOP_QUANTUM].append(e)
        return groups

    def accept_waveform(self, chunk, sample_rate: int = SAMPLE_RATE) -> list[Detection]:
        """Feed audio (float32 in [-1, 1] or int16, any length, at ``sample_rate``); returns the
        detections that became certain with this chunk."""
        if len(chunk) == 0:
            return []
        audio = load_audio(np.asarray(chunk))  # dtype and channels only; the rate is handled here
        if sample_rate != SAMPLE_RATE:
            # a stateful resampler: the output does not depend on how the input was chunked
            if self._resampler is None or self._resampler_rate != sample_rate:
                self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
                self._resampler_rate = sample_rate
            audio = self._resampler.resample_chunk(audio)
        self._buffer = np.concatenate([self._buffer, audio])
        return self._process(final=False)

    def flush(self) -> list[Detection]:
        """Score the stream's tail (the part no full window has covered yet)."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._buffer = np.concatenate([self._buffer, tail])
            self._resampler = None
        return self._process(final=True)

    def _process(self, final: bool) -> list[Detection]:
        if not self._enrolled:
            raise ValueError("no keyword enrolled: call enroll() first")
        end = self._offset + len(self._buffer)
        planned = []  # (window length, members, window starts)
        for length, members in self._groups().items():
            hop = max(HOP_QUANTUM, (length // 2) // HOP_QUANTUM * HOP_QUANTUM)
            starts = []
            while self._next_start[length] + length <= end:
                starts.append(self._next_start[length])
                self._next_start[length] += hop
            if final and end > self._scored_until[length] and not starts:
                starts.append(max(0, end - length))  # the tail: aligned to the end of the stream
            if starts:
                self._scored_until[length] = max(self._scored_until[length], min(starts[-1] + length, end))
                planned.append((length, members, starts))
        if not planned:
            return []
        # One batched call for every window of every group: the encoder dominates the cost, and
        # groups often share windows (e.g. a short clip is the tail window of every group).
        spans = sorted({(s, min(s + length, end)) for length, _, starts in planned for s in starts})
        row = {span: i for i, span in enumerate(spans)}
        enrolled = [m for _, members, _ in planned for m in members]
        col = {id(m): j for j, m in enumerate(enrolled)}
        scores = self.model.score_segments([self._buffer[a - self._offset: b - self._offset] for a, b in spans],
                                           [m.keyword for m in enrolled], self.head_name)
        detections = []
        for length, members, starts in planned:
            for start in starts:
                stop = min(start + length, end)
                for member in members:
                    score = float(scores[row[(start, stop)], col[id(member)]])
                    text = member.keyword.text
                    self.best_scores[text] = max(score, self.best_scores.get(text, 0.0))
                    if score >= member.threshold and start >= member.muted_until:
                        detections.append(Detection(text, score, start / SAMPLE_RATE, stop / SAMPLE_RATE))
                        member.muted_until = stop + self.refractory - length // 2
        self._trim()
        return sorted(detections, key=lambda d: (d.start, d.keyword))

    def _trim(self) -> None:
        """Drop audio that no future window can reach."""
        if not self._next_start:
            return
        keep_from = min(self._next_start.values())
        drop = max(0, keep_from - self._offset)
        if drop:
            self._buffer = self._buffer[drop:]
            self._offset += drop

    # -- whole clips -------------------------------------------------------------------------
    def scan(self, audio, sample_rate: int | None = None) -> tuple[list[Detection], dict[str, float]]:
        """Run a whole recording through a fresh stream: its detections and each keyword's best
        window score."""
        self.reset()
        detections = self.accept_waveform(load_audio(audio, sample_rate)) + self.flush()
        best = dict(self.best_scores)
        self.reset()
        return detections, best
