"""LibriPhrase: short phrase clips from word-aligned speech, anchor/comparison pairs, official test.

The rules follow the original recipe (gusrud1103/LibriPhrase, summarised in LIBRIPHRASE.md §1):

* phrases (:func:`extract_phrases`): every run of 1-4 consecutive aligned words whose summed word
  durations lie in [0.5, 2.0] s and that holds no silence ("") or unknown ("<unk>") interval; the
  clip is cut from the first word's start to the last word's end (so it can be a little longer
  than the summed durations, as in the original);
* episodes (:func:`build_pairs`): a (speaker, phrase) that the speaker said at least
  ``min_anchor_clips`` times and that at least ``min_other_speakers`` other speakers said. The
  original asks for 6 clips of the speaker (3 anchors + 3 same-speaker positives) and 3 other
  speakers; a synthetic corpus has each phrase once per voice, so the defaults are 1 and
  ``num_pos``. Pass ``min_anchor_clips=6`` for the original rule;
* rows per episode: up to ``num_anchor`` anchor clips x ``num_pos`` positives, each from a
  different other speaker (``diffspk_positive``); for each anchor clip ``num_neg`` easy negatives
  (random (speaker, phrase) keys of the same word count with another text) and ``num_neg`` hard
  negatives (the texts nearest to the anchor text by phoneme edit distance, same word count,
  0 < distance <= 5 * (n + 2), ties broken by text; a random speaker and clip each).

Deliberate differences from the original: the hard-negative distance is a plain Levenshtein
distance over stress-stripped ARPAbet *tokens* (the original joins the phonemes into one string
and compares letters, with a quirk that makes insertions/deletions costlier near the start), easy
negatives skip homophones (same stress-stripped phonemes: not negatives at all), and everything is
seeded, so a rerun gives the same rows. As in the original, negatives may come from any speaker,
the anchor's included.

Pair rows use the official CSV schema (``PAIR_COLUMNS``), with ``anchor`` / ``comparison`` holding
utterance ids of a phrase manifest instead of wav paths and ``*_dur`` the clip durations (the
released files hold summed word durations); :func:`load_official_test` maps the released CSVs onto
the same form (clip id = the wav file's stem, e.g. ``1006-135212-0068_0``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import logging
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from data_prep.alignments import Word, is_word, read_word_alignments
from openkws.audio import SAMPLE_RATE, load_audio
from openkws.checkpoint import atomic_write_text
from openkws.data.manifest import Utterance, read_manifest, write_manifest
from openkws.text import strip_stress, to_phonemes

PAIR_COLUMNS = ("anchor", "anchor_spk", "anchor_text", "anchor_dur", "comparison", "comparison_spk",
                "comparison_text", "comparison_dur", "type", "target", "class")
POSITIVE, EASY_NEG, HARD_NEG = "diffspk_positive", "diffspk_easyneg", "diffspk_hardneg"
PAIR_TYPES = (POSITIVE, EASY_NEG, HARD_NEG)

OFFICIAL_CSV = "libriphrase_diffspk_all_{n}word.csv"
# 27 rows per episode x 4,391 / 2,605 / 467 / 56 episodes (CMCD paper; LIBRIPHRASE.md §1.7).
OFFICIAL_ROWS = {1: 118_557, 2: 70_335, 3: 12_609, 4: 1_512}
OFFICIAL_HINT = """\
The official LibriPhrase test set (4 CSVs + LibriPhrase_evalset.zip, 2.5 GB of wav clips) is not
part of openkws. Get it from the authors' Google Drive folder
  https://drive.google.com/drive/folders/1pv3wVYzhSwDsL1dIQk93zmFBZg458ujE
or a Hugging Face mirror:
  huggingface-cli download charsiu/libriphrase --repo-type dataset --local-dir LIBRIPHRASE_DIR
  (or E4rris/LibriPhrase_evalset)
Put libriphrase_diffspk_all_{1,2,3,4}word.csv in the CSV folder and unzip LibriPhrase_evalset.zip
into the audio folder: the CSVs name the clips train-other-500/train-other-500/<spk>/<chapter>/*.wav,
looked up under the audio folder or one folder below it.
Without the zip, the clips can be cut from LibriSpeech train-other-500 and its MFA word alignments
instead (`python -m data_prep.libriphrase official --source-manifest ... --alignments ...`)."""

MIN_DUR, MAX_DUR, MAX_WORDS = 0.5, 2.0, 4
_EPS = 1e-9  # float slack on the inclusive duration bounds
_MAX_DP_CELLS = 4_000_000  # cells (bytes, mostly) of one vectorised edit-distance block

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhraseSegment:
    """A phrase inside a longer utterance, to be cut into its own clip."""

    id: str  # clip id: "<utt_id>_<k>", k numbering the utterance's phrases (the official naming)
    utt_id: str
    path: str  # audio of the source utterance
    start: float  # seconds: first word's start
    end: float  # last word's end
    text: str
    speaker: str
    split: str
    word_dur: float  # summed word durations, the quantity the 0.5-2.0 s rule applies to


@functools.lru_cache(maxsize=None)
def _phonemes(text: str) -> tuple[str, ...]:
    return tuple(to_phonemes(text))


def n_words(text: str) -> int:
    """The LibriPhrase class of a phrase: its number of words."""
    return len(text.split())


# --------------------------------------------------------------------------- (a) phrases

def extract_phrases(utts: Iterable[Utterance], alignments: Mapping[str, Sequence[Word]],
                    min_dur: float = MIN_DUR, max_dur: float = MAX_DUR, max_words: int = MAX_WORDS,
                    max_gap: float | None = None) -> list[PhraseSegment]:
    """All LibriPhrase phrase segments of the aligned utterances.

    ``alignments`` maps an utterance id to its (word, start, end) list. A run of words breaks at
    a silence or unknown interval; ``max_gap`` (seconds) also breaks it at an unmarked pause
    longer than that, for aligners (such as CTC) that leave pauses out of the word list instead
    of marking them (MFA marks every pause, which is the original rule: ``None``).
    Utterances without an alignment give no phrases, and are counted in a warning.
    """
    utts = sorted(utts, key=lambda u: u.id)
    unaligned = [u.id for u in utts if u.id not in alignments]
    if unaligned:
        log.warning("%d of %d utterances have no word alignment and give no phrases (e.g. %s)",
                    len(unaligned), len(utts), ", ".join(unaligned[:3]))
    segments = []
    for u in utts:
        words = sorted(alignments.get(u.id, ()), key=lambda w: (w[1], w[2]))
        k = 0
        for i in range(len(words)):
            total = 0.0
            for j in range(i, min(i + max_words, len(words))):
                word, start, end = words[j]
                if not is_word(word) or (j > i and max_gap is not None and start - words[j - 1][2] > max_gap):
                    break
                total += end - start
                if total > max_dur + _EPS:
                    break  # durations only grow with more words
                if total >= min_dur - _EPS:
                    text = " ".join(w[0] for w in words[i:j + 1])
                    segments.append(PhraseSegment(f"{u.id}_{k}", u.id, u.path, words[i][1], end, text,
                                                  u.speaker, u.split, round(total, 4)))
                    k += 1
    return segments


# --------------------------------------------------------------------------- (b) clips

def _safe_name(s: str) -> str:
    """A file-system-safe folder name for a speaker id (TTS voice ids hold ':' and '+')."""
    return re.sub(r"[^\w.+-]", "_", s)


def _write_flac(path: Path, audio: np.ndarray) -> None:
    """Write 16-bit FLAC atomically: a reader (or a resumed run) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cut_phrase_clips(segments: Sequence[PhraseSegment], out_dir: str | os.PathLike) -> list[Utterance]:
    """Cut every segment into ``out_dir/<speaker>/<id>.flac`` (16 kHz FLAC) and return the phrase
    manifest (kind="phrase"; ``extra`` keeps the source utterance and times).

    Resumable: clips already on disk are kept (they are written atomically, so they are whole).
    """
    out_dir = Path(out_dir)
    ids = Counter(s.id for s in segments)
    dup = [i for i, c in ids.items() if c > 1]
    if dup:
        raise ValueError(f"segment ids must be unique; repeated: {', '.join(dup[:5])}")
    by_source: dict[str, list[PhraseSegment]] = defaultdict(list)
    for s in segments:
        by_source[s.path].append(s)
    utts = []
    for source, segs in tqdm(by_source.items(), desc="cutting phrase clips", unit="utt", leave=False):
        clips = [out_dir / _safe_name(s.speaker) / f"{s.id}.flac" for s in segs]
        if not all(c.exists() for c in clips):
            audio = load_audio(source)  # one read per source utterance, resampled to 16 kHz
            for s, clip in zip(segs, clips):
                if clip.exists():
                    continue
                a, b = round(s.start * SAMPLE_RATE), min(round(s.end * SAMPLE_RATE), len(audio))
                if b - a <= 0:
                    raise ValueError(f"{source}: phrase {s.id} ({s.text!r}) spans {s.start:.2f}-{s.end:.2f} s, "
                                     f"outside the {len(audio) / SAMPLE_RATE:.2f} s of audio")
                _write_flac(clip, audio[a:b])
        for s, clip in zip(segs, clips):
            utts.append(Utterance(
                id=s.id, path=str(clip), duration=sf.info(str(clip)).duration, text=s.text,
                phonemes=list(_phonemes(s.text)), speaker=s.speaker, kind="phrase", split=s.split,
                extra={"source": s.utt_id, "start": s.start, "end": s.end, "word_dur": s.word_dur}))
    return utts


# --------------------------------------------------------------------------- (c) pairs

def max_hard_distance(n: int) -> int:
    """Largest phoneme edit distance a hard negative of an n-word phrase may have (original rule)."""
    return 5 * (n + 2)


def edit_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Levenshtein distances between every row of ``a`` (A, m) and every row of ``b`` (B, n).

    Rows are equal-length integer token sequences. The dynamic programme keeps one table row
    as an (n + 1, A, B) array, so each step is an elementwise operation over all A x B pairs.
    """
    A, m = a.shape
    B, n = b.shape
    dtype = np.int8 if max(m, n) < 127 else np.int16  # distances <= max(m, n); small ints are faster
    b_cols = np.ascontiguousarray(b.T)[:, None, :]  # (n, 1, B)
    prev = np.broadcast_to(np.arange(n + 1, dtype=dtype)[:, None, None], (n + 1, A, B))
    for i in range(m):
        differs = a[None, :, i, None] != b_cols  # (n, A, B)
        sub_del = np.minimum(prev[:-1] + differs, prev[1:] + 1)  # substitution / deletion
        cur = np.empty((n + 1, A, B), dtype=dtype)
        cur[0] = i + 1
        for j in range(n):  # insertion depends on the cell to the left
            np.minimum(sub_del[j], cur[j] + 1, out=cur[j + 1])
        prev = cur
    return prev[n]


def nearest_texts(anchors: Sequence[str], texts: Sequence[str], phonemes: Mapping[str, Sequence[str]],
                  k: int, max_dist: int) -> dict[str, list[str]]:
    """For each anchor text, the ``k`` texts with the smallest phoneme edit distance in
    (0, max_dist], nearest first, ties broken by text order.

    Vectorised per (anchor length, candidate length) block, and pruned by length: the distance
    is at least the length difference, so blocks are visited in increasing length difference and
    the search stops once every anchor already has k candidates closer than that difference.
    """
    texts = sorted(set(texts))
    vocab = {p: i for i, p in enumerate(sorted({p for t in [*texts, *anchors] for p in phonemes[t]}))}
    inf = np.iinfo(np.int64).max
    base = len(texts) + 1  # sort key = distance * base + text rank: distance first, then text

    def by_length(items: Iterable[tuple[int, str]]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        groups: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for idx, t in items:
            groups[len(phonemes[t])].append((idx, t))
        return {L: (np.array([i for i, _ in g], dtype=np.int64),
                    np.array([[vocab[p] for p in phonemes[t]] for _, t in g], dtype=np.int32).reshape(len(g), L))
                for L, g in groups.items()}

    cands = by_length(enumerate(texts))
    anchors = sorted(set(anchors))
    out: dict[str, list[str]] = {}
    for la, (a_idx, a_tok) in by_length(enumerate(anchors)).items():
        best = np.full((len(a_idx), k), inf, dtype=np.int64)
        for lb in sorted(cands, key=lambda L: (abs(L - la), L)):
            gap = abs(lb - la)
            # Only anchors whose k-th best could still be beaten (or tied) at this gap go on.
            active = np.flatnonzero(best[:, -1] // base >= gap)
            if gap > max_dist or not active.size:
                break
            b_rank, b_tok = cands[lb]
            step = max(1, _MAX_DP_CELLS // (len(b_rank) * (lb + 1)))
            for s in range(0, len(active), step):
                rows = active[s:s + step]
                d = edit_distances(a_tok[rows], b_tok).astype(np.int64)
                key = np.where((d > 0) & (d <= max_dist), d * base + b_rank, inf)
                merged = np.concatenate([best[rows], key], axis=1)
                best[rows] = np.sort(np.partition(merged, k - 1, axis=1)[:, :k], axis=1)
        for i, row in zip(a_idx, best):
            out[anchors[i]] = [texts[key % base] for key in row if key != inf]
    return out


def _row(anchor: Utterance, comp: Utterance, kind: str, cls: int) -> dict:
    return {"anchor": anchor.id, "anchor_spk": anchor.speaker, "anchor_text": anchor.text,
            "anchor_dur": round(anchor.duration, 3), "comparison": comp.id, "comparison_spk": comp.speaker,
            "comparison_text": comp.text, "comparison_dur": round(comp.duration, 3), "type": kind,
            "target": int(kind == POSITIVE), "class": cls}


def build_pairs(phrase_utts: Iterable[Utterance], seed: int = 0, num_anchor: int = 3, num_pos: int = 3,
                num_neg: int = 3, min_anchor_clips: int = 1, min_other_speakers: int | None = None) -> list[dict]:
    """LibriPhrase ``diffspk_all`` rows (positives, easy and hard negatives) from a phrase manifest.

    Only ``kind == "phrase"`` utterances are used (a synthetic corpus's phrase clips, or the
    output of :func:`cut_phrase_clips`). See the module docstring for the rules;
    ``min_other_speakers`` defaults to ``num_pos``. Same input and seed -> same rows, in the
    official order (class, anchor_spk, anchor_text, target, type, comparison_spk).
    """
    min_other = num_pos if min_other_speakers is None else min_other_speakers
    utts = list(phrase_utts)
    phrases = sorted((u for u in utts if u.kind == "phrase"), key=lambda u: u.id)
    if not phrases:
        kinds = ", ".join(sorted({u.kind for u in utts})) or "none"
        raise ValueError(f"no kind='phrase' utterances among the {len(utts)} given (kinds: {kinds})")
    if len(phrases) < len(utts):
        log.info("build_pairs: ignoring %d utterances that are not phrases", len(utts) - len(phrases))
    by_class: dict[int, list[Utterance]] = defaultdict(list)
    for u in phrases:
        by_class[n_words(u.text)].append(u)
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for cls in sorted(by_class):
        rows += _class_pairs(by_class[cls], cls, rng, num_anchor, num_pos, num_neg, min_anchor_clips, min_other)
    rows.sort(key=lambda r: (r["class"], r["anchor_spk"], r["anchor_text"], r["target"], r["type"],
                             r["comparison_spk"]))
    counts = Counter(r["type"] for r in rows)
    log.info("build_pairs: %d rows (%s)", len(rows), ", ".join(f"{t} {counts[t]}" for t in PAIR_TYPES))
    return rows


def _class_pairs(utts: list[Utterance], cls: int, rng: np.random.Generator, num_anchor: int, num_pos: int,
                 num_neg: int, min_anchor_clips: int, min_other: int) -> list[dict]:
    """The rows of one word-count class (negatives always come from the same class)."""
    clips: dict[tuple[str, str], list[Utterance]] = defaultdict(list)
    phon: dict[str, tuple[str, ...]] = {}
    for u in utts:
        clips[(u.speaker, u.text)].append(u)
        phon.setdefault(u.text, tuple(strip_stress(p) for p in (u.phonemes or _phonemes(u.text))))
    keys = sorted(clips)
    speakers_of: dict[str, list[str]] = defaultdict(list)
    for spk, text in keys:
        speakers_of[text].append(spk)
    same_sound = Counter(phon[t] for _, t in keys)  # keys an easy negative must not be
    episodes = [(s, t) for s, t in keys
                if len(clips[(s, t)]) >= min_anchor_clips and len(speakers_of[t]) - 1 >= max(min_other, 1)]
    hard = nearest_texts([t for _, t in episodes], list(speakers_of), phon, num_neg, max_hard_distance(cls))
    short = sum(len(hard[t]) < num_neg for t in {t for _, t in episodes})
    if short:
        log.info("class %d: %d anchor texts have fewer than %d hard negatives within distance %d",
                 cls, short, num_neg, max_hard_distance(cls))

    def pick(group: list[Utterance]) -> Utterance:
        return group[rng.integers(len(group))]

    rows = []
    for spk, text in tqdm(episodes, desc=f"{cls}-word pairs", unit="episode", leave=False):
        own = clips[(spk, text)]
        anchors = [own[i] for i in sorted(rng.choice(len(own), min(num_anchor, len(own)), replace=False))]
        others = [s for s in speakers_of[text] if s != spk]
        positives = [pick(clips[(others[i], text)])
                     for i in rng.choice(len(others), min(num_pos, len(others)), replace=False)]
        rows += [_row(a, c, POSITIVE, cls) for a in anchors for c in positives]
        for a in anchors:
            # Drawing num_neg + (number of same-sounding keys) distinct keys leaves >= num_neg others.
            draw = rng.choice(len(keys), min(len(keys), num_neg + same_sound[phon[text]]), replace=False)
            easy = [keys[i] for i in draw if phon[keys[i][1]] != phon[text]][:num_neg]
            rows += [_row(a, pick(clips[key]), EASY_NEG, cls) for key in easy]
            for t in hard[text]:
                s = speakers_of[t][rng.integers(len(speakers_of[t]))]
                rows.append(_row(a, pick(clips[(s, t)]), HARD_NEG, cls))
    return rows


def write_pairs(path: str | os.PathLike, rows: Iterable[Mapping]) -> None:
    """Write pair rows as CSV with the official header (atomic)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PAIR_COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_pairs(path: str | os.PathLike) -> list[dict]:
    """Read a pair CSV (ours or an official one); target/class become ints and durations floats."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PAIR_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: not a LibriPhrase pair CSV, missing column(s) {', '.join(missing)}")
        rows = []
        for lineno, r in enumerate(reader, 2):
            try:
                row = {c: r[c].strip() for c in PAIR_COLUMNS}
                row["anchor_spk"] = row["anchor_spk"].replace(",", "")  # "1,006" from spreadsheet exports
                row["comparison_spk"] = row["comparison_spk"].replace(",", "")
                row["anchor_dur"], row["comparison_dur"] = float(row["anchor_dur"]), float(row["comparison_dur"])
                row["target"], row["class"] = int(float(row["target"])), int(float(row["class"]))
            except (AttributeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: bad row ({e})") from None
            if row["type"] not in PAIR_TYPES or row["target"] != int(row["type"] == POSITIVE):
                raise ValueError(f"{path}:{lineno}: type {row['type']!r} with target {row['target']} "
                                 f"(types: {', '.join(PAIR_TYPES)}; target 1 only for {POSITIVE})")
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- (d) official test

def _read_official(csv_dir: str | os.PathLike, classes: Sequence[int]) -> list[dict]:
    """Rows of the official CSVs (paths as released); warns when a row count is not the published one."""
    csv_dir = Path(csv_dir)
    missing = [OFFICIAL_CSV.format(n=n) for n in classes if not (csv_dir / OFFICIAL_CSV.format(n=n)).is_file()]
    if missing:
        raise FileNotFoundError(f"{csv_dir}: missing {', '.join(missing)}\n{OFFICIAL_HINT}")
    rows = []
    for n in classes:
        path = csv_dir / OFFICIAL_CSV.format(n=n)
        part = read_pairs(path)
        if n in OFFICIAL_ROWS and len(part) != OFFICIAL_ROWS[n]:
            warnings.warn(f"{path}: {len(part)} rows, but the official {n}-word file has {OFFICIAL_ROWS[n]}; "
                          "a truncated or different file gives numbers that do not compare with papers",
                          stacklevel=3)
        rows += part
    return rows


def _official_clips(rows: Sequence[Mapping]) -> dict[str, tuple[str, str, float]]:
    """Released clip path -> (text, speaker, summed word duration), each clip once."""
    clips = {}
    for r in rows:
        for side in ("anchor", "comparison"):
            clips.setdefault(r[side], (r[f"{side}_text"].lower(), r[f"{side}_spk"], r[f"{side}_dur"]))
    stems: dict[str, str] = {}
    for rel in clips:
        other = stems.setdefault(Path(rel).stem, rel)
        if other != rel:
            raise ValueError(f"two official clips share the file name {Path(rel).name}: {other}, {rel}")
    return clips


def _as_id_rows(rows: Sequence[Mapping]) -> list[dict]:
    """Official rows with clip paths replaced by clip ids (the file stems)."""
    return [{**r, "anchor": Path(r["anchor"]).stem, "comparison": Path(r["comparison"]).stem} for r in rows]


def _audio_base(audio_root: Path, rel: str) -> Path:
    """The folder the released relative paths hang from: the root or one folder below it
    (unzipping may add a wrapper folder such as LibriPhrase_evalset/)."""
    for base in [audio_root, *sorted(p for p in audio_root.iterdir() if p.is_dir())]:
        if (base / rel).is_file():
            return base
    raise FileNotFoundError(f"{audio_root}: LibriPhrase clip {rel} not found (searched it and the folders "
                            f"directly inside it)\n{OFFICIAL_HINT}")


def load_official_test(csv_dir: str | os.PathLike, audio_root: str | os.PathLike,
                       classes: Sequence[int] = (1, 2, 3, 4), split: str = "test"
                       ) -> tuple[list[dict], list[Utterance]]:
    """The official LibriPhrase test set as (pair rows, phrase manifest).

    Reads ``libriphrase_diffspk_all_{n}word.csv`` from ``csv_dir`` (warning when a row count
    differs from the published 118,557 / 70,335 / 12,609 / 1,512) and resolves every clip under
    ``audio_root`` (the unzipped LibriPhrase_evalset.zip). The rows' anchor/comparison become clip
    ids, which are the manifest's utterance ids. Missing files raise FileNotFoundError saying
    where to get them.
    """
    audio_root = Path(audio_root)
    if not audio_root.is_dir():
        raise FileNotFoundError(f"LibriPhrase audio folder not found: {audio_root}\n{OFFICIAL_HINT}")
    rows = _read_official(csv_dir, classes)
    clips = _official_clips(rows)
    base = _audio_base(audio_root, next(iter(clips)))
    missing = [rel for rel in clips if not (base / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"{base}: {len(missing)} of {len(clips)} LibriPhrase clips are missing, "
                                f"e.g. {', '.join(missing[:3])}\n{OFFICIAL_HINT}")
    utts = [Utterance(id=Path(rel).stem, path=str(base / rel), duration=sf.info(str(base / rel)).duration,
                      text=text, phonemes=list(_phonemes(text)), speaker=spk, kind="phrase", split=split,
                      extra={"official_path": rel, "word_dur": dur})
            for rel, (text, spk, dur) in tqdm(clips.items(), desc="official clips", leave=False)]
    return _as_id_rows(rows), utts


def _locate(words: Sequence[Word], target: list[str], word_dur: float) -> tuple[float, float, float] | None:
    """(start, end, summed duration) of the silence-free run of ``target`` words whose summed
    duration is nearest ``word_dur`` (a phrase can occur twice in an utterance), or None."""
    best = None
    n = len(target)
    for i in range(len(words) - n + 1):
        run = words[i:i + n]
        if [w for w, _, _ in run] == target:
            total = sum(e - s for _, s, e in run)
            if best is None or abs(total - word_dur) < abs(best[2] - word_dur):
                best = (run[0][1], run[-1][2], total)
    return best


def cut_official_test(csv_dir: str | os.PathLike, source_utts: Iterable[Utterance],
                      alignments: Mapping[str, Sequence[Word]], out_dir: str | os.PathLike,
                      classes: Sequence[int] = (1, 2, 3, 4), split: str = "test",
                      allow_missing: bool = False) -> tuple[list[dict], list[Utterance]]:
    """The official test pairs with clips re-cut from LibriSpeech train-other-500, for users who
    have LibriSpeech but not LibriPhrase_evalset.zip.

    ``source_utts`` is the train-other-500 manifest (data_prep.librispeech) and ``alignments``
    its MFA word alignments (data_prep.alignments; the LibriPhrase authors used Zenodo 2619474).
    A released clip ``<utt>_<k>.wav`` names its source utterance but not its times: the phrase is
    located as the run of its words in that utterance's alignment (the one whose summed duration
    is nearest the CSV's, when it occurs twice). With the same alignments the cuts match the
    released ones up to rounding; with others they are close but not identical, so say which
    clips were used when reporting. Clips that cannot be located are an error, or with
    ``allow_missing`` their rows are dropped with a warning.
    """
    rows = _read_official(csv_dir, classes)
    clips = _official_clips(rows)
    sources = {u.id: u for u in source_utts}
    segments, problems = [], []
    for rel, (text, spk, dur) in clips.items():
        clip_id = Path(rel).stem
        utt_id = clip_id.rsplit("_", 1)[0]
        if utt_id not in sources:
            problems.append(f"{rel}: source utterance {utt_id} is not in the given manifest")
        elif utt_id not in alignments:
            problems.append(f"{rel}: source utterance {utt_id} has no word alignment")
        elif (span := _locate(alignments[utt_id], text.split(), dur)) is None:
            problems.append(f"{rel}: {text!r} is not a run of aligned words in {utt_id}")
        else:
            segments.append(PhraseSegment(clip_id, utt_id, sources[utt_id].path, span[0], span[1], text,
                                          spk, split, round(span[2], 4)))
    if problems:
        msg = f"{len(problems)} of {len(clips)} LibriPhrase clips cannot be cut:\n  " + "\n  ".join(problems[:10])
        if not allow_missing:
            raise ValueError(msg + "\n(pass allow_missing=True / --allow-missing to drop their rows)")
        cut = {s.id for s in segments}
        kept = [r for r in rows if Path(r["anchor"]).stem in cut and Path(r["comparison"]).stem in cut]
        warnings.warn(f"{msg}\ndropping {len(rows) - len(kept)} of {len(rows)} rows", stacklevel=2)
        rows = kept
    utts = cut_phrase_clips(segments, out_dir)
    released = {Path(rel).stem: rel for rel in clips}
    for u in utts:
        u.extra["official_path"] = released[u.id]
    return _as_id_rows(rows), utts


# --------------------------------------------------------------------------- CLI

def _read_manifests(paths: Sequence[str]) -> list[Utterance]:
    return [u for p in paths for u in read_manifest(p)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="LibriPhrase phrase clips, pairs and the official test set.")
    sub = p.add_subparsers(dest="cmd", required=True)

    ph = sub.add_parser("phrases", help="cut 1-4 word phrase clips from aligned sentences")
    ph.add_argument("--manifest", nargs="+", required=True, help="sentence manifest(s)")
    ph.add_argument("--alignments", required=True, help="word alignments (JSONL, data_prep.alignments)")
    ph.add_argument("--clips", required=True, help="folder for the clips")
    ph.add_argument("--out", required=True, help="phrase manifest to write (JSONL)")
    ph.add_argument("--max-gap", type=float, default=None,
                    help="break phrases at unmarked pauses longer than this (s); for CTC alignments")
    ph.add_argument("--pad", type=float, default=0.0,
                    help="widen each clip by this much on both sides (s): CTC word spans end at the "
                         "last phoneme's spike, before the word really ends")
    ph.add_argument("--max-phrases", type=int, default=0, help="keep a seeded random sample of this many")
    ph.add_argument("--seed", type=int, default=0)

    pa = sub.add_parser("pairs", help="build anchor/comparison pairs from a phrase manifest")
    pa.add_argument("--manifest", nargs="+", required=True, help="phrase manifest(s)")
    pa.add_argument("--out", required=True, help="pair CSV to write")
    pa.add_argument("--seed", type=int, default=0)
    pa.add_argument("--num-anchor", type=int, default=3)
    pa.add_argument("--num-pos", type=int, default=3)
    pa.add_argument("--num-neg", type=int, default=3)
    pa.add_argument("--min-anchor-clips", type=int, default=1, help="6 reproduces the original rule")
    pa.add_argument("--min-other-speakers", type=int, default=None, help="default: --num-pos")

    of = sub.add_parser("official", help="the official test CSVs as a pair CSV + phrase manifest")
    of.add_argument("--csv-dir", required=True, help="folder with libriphrase_diffspk_all_{1,2,3,4}word.csv")
    of.add_argument("--audio-root", help="unzipped LibriPhrase_evalset.zip")
    of.add_argument("--source-manifest", nargs="+", help="instead of --audio-root: train-other-500 manifest")
    of.add_argument("--alignments", help="with --source-manifest: its word alignments (JSONL)")
    of.add_argument("--clips", help="with --source-manifest: folder for the re-cut clips")
    of.add_argument("--allow-missing", action="store_true", help="drop rows whose clips cannot be re-cut")
    of.add_argument("--out-manifest", required=True)
    of.add_argument("--out-pairs", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if args.cmd == "phrases":
        segs = extract_phrases(_read_manifests(args.manifest), read_word_alignments(args.alignments),
                               max_gap=args.max_gap)
        if 0 < args.max_phrases < len(segs):
            keep = np.random.default_rng(args.seed).choice(len(segs), args.max_phrases, replace=False)
            segs = [segs[i] for i in sorted(keep)]
        if args.pad:
            segs = [dataclasses.replace(s, start=max(0.0, s.start - args.pad), end=s.end + args.pad) for s in segs]
        utts = cut_phrase_clips(segs, args.clips)
        write_manifest(args.out, utts)
        log.info("wrote %d phrase clips to %s", len(utts), args.out)
    elif args.cmd == "pairs":
        rows = build_pairs(_read_manifests(args.manifest), args.seed, args.num_anchor, args.num_pos,
                           args.num_neg, args.min_anchor_clips, args.min_other_speakers)
        write_pairs(args.out, rows)
    else:
        if bool(args.audio_root) == bool(args.source_manifest):
            p.error("official: give either --audio-root or --source-manifest (with --alignments, --clips)")
        if args.audio_root:
            rows, utts = load_official_test(args.csv_dir, args.audio_root)
        else:
            if not (args.alignments and args.clips):
                p.error("official: --source-manifest needs --alignments and --clips")
            rows, utts = cut_official_test(args.csv_dir, _read_manifests(args.source_manifest),
                                           read_word_alignments(args.alignments), args.clips,
                                           allow_missing=args.allow_missing)
        write_manifest(args.out_manifest, utts)
        write_pairs(args.out_pairs, rows)
        log.info("official test: %d rows, %d clips", len(rows), len(utts))


if __name__ == "__main__":
    main()
