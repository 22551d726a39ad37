"""Streaming keyword spotting over audio of any length, fed in chunks of any size.

Windows. Each keyword is searched with sliding windows sized from its phoneme count (CLAD:
phonemes x 90 ms + 300 ms margin, rounded up to one of a few bucket sizes so many keywords share
windows), half overlap. Windows start on a fixed grid of absolute sample positions (multiples of
40 ms, one or two encoder frames), so the detections do not depend on how the audio was chunked;
``flush()`` scores the tail of the stream (a clip shorter than a window is scored whole).

Encoder blocks. The acoustic encoder does not run once per window: the stream is cut into
blocks of BLOCK_SECONDS on a fixed absolute grid, and every window that ends in a block is cut,
frame for frame (``KWSModel.cut``), out of one encoder pass over that block and the
CONTEXT_SECONDS of audio before it (a window longer than that context gets a pass of its own,
from its start to the block's end). Windows of all sizes and all keywords share the pass, so
the encoder's cost no longer grows with the number of window sizes: each sample is encoded
about (BLOCK + CONTEXT) / BLOCK times, where one encoder pass per window encoded it twice per
window size. The passes depend only on positions in the stream, never on chunking or on which
other keywords are enrolled. The encoder's attention is global, so a window's frames also see
the audio around the window within its pass. Measured with the previous shipped model on four sets of
continuous speech (evaluation/continuous.py), CED's recall at 1 FA/h was higher on average
(the sets vary widely) and, at the calibrated threshold, about as many keywords were found
with half the false alarms; whole clips score as before. The price is latency: a
window is scored once its block is complete, up to BLOCK_SECONDS after the window's end
(``flush()`` scores the last, partial block). A clip no longer than one block is encoded once,
whole.

Located keywords. A head that finds the keyword itself (``Head.locates``: the CTC keyword search,
free start and end) gets no sliding windows: each keyword is searched in every block's encoder
pass (with LOCATE_CONTEXT_SECONDS of left context), and its window is the best path's span, so a
detection's start and end are where the keyword was heard. The passes, like the windows, depend only on positions in the stream.

Detections. ``decide`` turns scored windows into detections: a window fires when its score
reaches the keyword's threshold and the keyword is not muted; a detection mutes its keyword
until the refractory period has passed after the window's centre, so one utterance gives one
detection. ``on_window`` sees every scored window before that rule (evaluation records them once
and replays ``decide`` at many thresholds).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import soxr
import torch

from openkws.audio import SAMPLE_RATE, load_audio
from openkws.model import Keyword, KWSModel

HOP_QUANTUM = 640  # samples (40 ms): window starts and hops are whole encoder frames (of 40 or 20 ms)
WINDOW_BUCKETS = (0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)  # seconds
BLOCK_SECONDS = 1.0  # encoder blocks (a multiple of HOP_QUANTUM)
CONTEXT_SECONDS = 1.6  # audio before a block that its encoder pass covers (a multiple of HOP_QUANTUM)
# The same for a head that searches whole passes (the CTC search): more left context helps the
# search (shipped model, real dev sentence trials, AUC hard 87.1 / 88.5 / 88.8 % with 1.6 / 3 / 5 s)
# and costs only encoder time (streaming RTF 0.016 -> 0.02).
LOCATE_CONTEXT_SECONDS = 3.0
SCAN_CHUNK_SECONDS = 60.0  # scan() feeds long recordings in pieces, which bounds its memory


@dataclass(frozen=True)
class Detection:
    keyword: str
    score: float
    start: float  # seconds from the start of the stream
    end: float


@dataclass(frozen=True)
class Window:
    """One keyword's score on one sliding window, before the detection rule."""

    keyword: str
    score: float
    start: int  # sample index (16 kHz) from the start of the stream
    stop: int  # exclusive

    def detection(self) -> Detection:
        return Detection(self.keyword, self.score, self.start / SAMPLE_RATE, self.stop / SAMPLE_RATE)


@dataclass
class _Enrolled:
    keyword: Keyword
    threshold: float
    muted_until: int = -1  # absolute sample index


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


class KeywordSpotter:
    """One spotter per audio stream (it keeps that stream's state). ``on_window``, when given,
    is called with every scored window (see ``Window``), whether it fires or not."""

    def __init__(self, model: KWSModel, head: str | None = None, refractory_seconds: float = 1.0,
                 on_window: Callable[[Window], object] | None = None):
        self.model, self.head_name = model, head or model.default_head
        model.head(self.head_name)  # validate the name now, not at the first chunk
        if HOP_QUANTUM % model.frame_samples:
            raise ValueError(f"the spotter's window grid ({HOP_QUANTUM} samples) is not a multiple of the "
                             f"model's encoder frame ({model.frame_samples} samples)")
        self.refractory = _samples(refractory_seconds)
        self.on_window = on_window
        self._locating = model.head(self.head_name).locates
        self._context = _samples(LOCATE_CONTEXT_SECONDS if self._locating else CONTEXT_SECONDS)
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
        self._ready = 0  # the windows ending up to here are scored (a block boundary until flush())
        self._next_start: dict[int, int] = {}  # window length -> start of its next window
        self._last_stop: dict[int, int] = {}  # window length -> end of its last scored window
        self.best_scores: dict[str, float] = {}  # best window score per keyword since reset()
        for e in self._enrolled.values():
            e.muted_until = -1

    def _groups(self) -> dict[int, list[_Enrolled]]:
        """Keywords by window length (samples): the smallest bucket that holds the keyword's
        window, so that a handful of window sizes serve any number of keywords."""
        groups: dict[int, list[_Enrolled]] = defaultdict(list)
        fbank_hop = self.model.acoustic.fbank.cfg.frame_shift  # window lengths are whole fbank hops
        for e in self._enrolled.values():
            seconds = next((b for b in WINDOW_BUCKETS if b >= e.keyword.window_seconds), e.keyword.window_seconds)
            groups[round(seconds * SAMPLE_RATE / fbank_hop) * fbank_hop].append(e)
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
        return self.decide(self._score(final=False))

    def flush(self) -> list[Detection]:
        """Score the stream's tail (the part no full window or block has covered yet)."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            self._buffer = np.concatenate([self._buffer, tail])
            self._resampler = None
        return self.decide(self._score(final=True))

    def decide(self, windows: Sequence[Window]) -> list[Detection]:
        """The detections among scored windows (each keyword's in time order; the keywords must
        be enrolled): a window fires when its score reaches the keyword's threshold and its start
        is not muted; a detection mutes the keyword until the refractory period after the
        window's centre. Muting carries over between calls until ``reset()``."""
        detections = []
        for w in windows:
            member = self._enrolled[w.keyword]
            if w.score >= member.threshold and w.start >= member.muted_until:
                detections.append(w.detection())
                member.muted_until = (w.start + w.stop) // 2 + self.refractory
        return sorted(detections, key=lambda d: (d.start, d.keyword))

    def _score(self, final: bool) -> list[Window]:
        """Score every window whose encoder block is complete (all remaining ones when ``final``)."""
        if not self._enrolled:
            raise ValueError("no keyword enrolled: call enroll() first")
        end = self._offset + len(self._buffer)
        scored = self._search_passes(end, final) if self._locating else self._score_windows(end, final)
        scored.sort(key=lambda w: (w.start, w.stop, w.keyword))
        for w in scored:
            self.best_scores[w.keyword] = max(w.score, self.best_scores.get(w.keyword, 0.0))
            if self.on_window is not None:
                self.on_window(w)
        self._trim(end)
        return scored

    def _score_windows(self, end: int, final: bool) -> list[Window]:
        """Score every sliding window whose encoder block is complete (all remaining ones when ``final``)."""
        windows = self._plan(end, final)
        if not windows:
            return []
        spans = {w: self._span(*w, end) for w in windows}
        passes = sorted(set(spans.values()))
        encoding = self.model.encode([self._audio(a, b) for a, b in passes])
        row = {span: i for i, span in enumerate(passes)}
        cut = self.model.cut(encoding, torch.tensor([row[spans[w]] for w in windows]),
                             torch.tensor([start - spans[start, stop][0] for start, stop in windows]),
                             torch.tensor([stop - start for start, stop in windows]))
        cut = self.model.with_stream(cut, [self._audio(a, b) for a, b in windows], self.head_name)
        keywords = [e.keyword for e in self._enrolled.values()]
        column = {id(e): j for j, e in enumerate(self._enrolled.values())}
        pairs = torch.tensor([(i, column[id(e)]) for i, members in enumerate(windows.values()) for e in members])
        scores = self.model.score_pairs(cut, keywords, pairs[:, 0], pairs[:, 1], self.head_name)
        bounds = list(windows)
        return [Window(keywords[j].text, float(s), *bounds[i]) for (i, j), s in zip(pairs.tolist(), scores)]

    def _search_passes(self, end: int, final: bool) -> list[Window]:
        """For a head that locates keywords (the CTC search): search every keyword in one encoder
        pass per complete block (the block and LOCATE_CONTEXT_SECONDS before it; with ``final`` the rest
        of the stream too). A keyword's window is where its best path lies, reported by the pass
        of the block that path ends in (a path ending in the context belongs to an earlier block).
        A keyword with no path that fits a pass gets the block itself as its window."""
        block, context = _samples(BLOCK_SECONDS), self._context
        ready = end if final else max(self._ready, (end - 1) // block * block)
        blocks, start = [], self._ready
        while start < ready:
            stop = min(ready, (start // block + 1) * block)
            blocks.append((start, stop))
            start = stop
        self._ready = ready
        if not blocks:
            return []
        passes = [(max(0, a - context) // HOP_QUANTUM * HOP_QUANTUM, b) for a, b in blocks]
        encoding = self.model.encode([self._audio(a, b) for a, b in passes])
        keywords = [e.keyword for e in self._enrolled.values()]
        P, K = len(passes), len(keywords)
        scores, first, last = self.model.locate_pairs(encoding, keywords, torch.arange(P).repeat_interleave(K),
                                                      torch.arange(K).repeat(P), self.head_name)
        frame = self.model.frame_samples
        windows = []
        for p, ((block_start, block_stop), (pass_start, _)) in enumerate(zip(blocks, passes)):
            for k, keyword in enumerate(keywords):
                i = p * K + k
                if first[i] < 0:
                    windows.append(Window(keyword.text, float(scores[i]), block_start, block_stop))
                    continue
                span_start, span_stop = pass_start + int(first[i]) * frame, pass_start + (int(last[i]) + 1) * frame
                if span_stop > block_start:
                    windows.append(Window(keyword.text, float(scores[i]), span_start, span_stop))
        return windows

    def _plan(self, end: int, final: bool) -> dict[tuple[int, int], list[_Enrolled]]:
        """The windows to score now, (start, stop) -> their keywords: those that end in a complete
        block, and with ``final`` all the rest, the tails included."""
        block = _samples(BLOCK_SECONDS)
        # A block is complete once audio beyond it has arrived: a stream that ends on a block
        # boundary leaves its last block to flush() rather than having it encoded twice.
        ready = end if final else max(self._ready, (end - 1) // block * block)
        groups = self._groups()
        for length in set(self._next_start) - set(groups):  # no keyword uses this window length any more
            del self._next_start[length], self._last_stop[length]
        windows: dict[tuple[int, int], list[_Enrolled]] = defaultdict(list)
        for length, members in groups.items():
            hop = max(HOP_QUANTUM, (length // 2) // HOP_QUANTUM * HOP_QUANTUM)
            if length not in self._next_start:  # a new length: its windows start after what is scored
                self._next_start[length] = -(-self._ready // hop) * hop
                self._last_stop[length] = self._ready
            while self._next_start[length] + length <= ready:
                start = self._next_start[length]
                windows[start, start + length] += members
                self._last_stop[length] = start + length
                self._next_start[length] += hop
            if final and end > self._last_stop[length]:  # the tail: the stream's last `length` samples
                windows[max(0, end - length) // HOP_QUANTUM * HOP_QUANTUM, end] += members
                self._last_stop[length] = end
        self._ready = ready
        return windows

    def _audio(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of the stream (absolute indices, still in the buffer)."""
        return self._buffer[start - self._offset: stop - self._offset]

    def _span(self, start: int, stop: int, end: int) -> tuple[int, int]:
        """The encoder pass a window is cut from: the block it ends in (cut short at the stream's
        end) with CONTEXT_SECONDS before it, or from the window's start if that is earlier."""
        block = _samples(BLOCK_SECONDS)
        block_end = -(-stop // block) * block
        return max(0, min(start, block_end - block - self._context)), min(block_end, end)

    def _trim(self, end: int) -> None:
        """Drop audio that no future window (tails included) or encoder pass can reach."""
        keep_from = min([self._ready - self._context]
                        + [min(start, (end - length) // HOP_QUANTUM * HOP_QUANTUM)
                           for length, start in self._next_start.items()])
        drop = max(0, keep_from - self._offset)
        if drop:
            self._buffer = self._buffer[drop:]
            self._offset += drop

    # -- whole clips -------------------------------------------------------------------------
    def scan(self, audio, sample_rate: int | None = None) -> tuple[list[Detection], dict[str, float]]:
        """Run a whole recording through a fresh stream: its detections and each keyword's best
        window score."""
        self.reset()
        audio = load_audio(audio, sample_rate)
        step = _samples(SCAN_CHUNK_SECONDS)
        detections = [d for i in range(0, len(audio), step) for d in self.accept_waveform(audio[i:i + step])]
        detections += self.flush()
        best = dict(self.best_scores)
        self.reset()
        return detections, best
