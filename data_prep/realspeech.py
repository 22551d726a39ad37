"""The real English speech pack (``../shared/data/realspeech``) as project manifests.

    python -m data_prep.realspeech --pack ../shared/data/realspeech --out data/realspeech \
        [--corpora an4,ljspeech,...] [--exclude picovoice_s2i] [--no-whisper] [--min-logprob -0.55]

writes ``<out>/train.jsonl`` and ``<out>/dev.jsonl`` (openkws.data.manifest schema, written
atomically) with the splits the pack gives (speaker-disjoint: checked, an error if not).

Each pack line becomes one Utterance: ``text`` is the pack's normalised text, ``phonemes`` its
G2P (openkws.text.to_phonemes), ``speaker`` and ``split`` as in the pack, ``kind="sentence"``,
and the pack's other fields go to ``extra``: ``corpus``, ``transcript_source`` ("human" or
"whisper-base"), ``avg_logprob`` (Whisper clips, else null), ``text_original``, ``licence``,
``sample_rate_original``. Audio paths are written absolute (the pack usually lives outside the
repository; ``read_manifest`` keeps an absolute path as it is). ``duration`` is the pack's
(that of the decoded file; the audio is not decoded here).

AN4 spells words letter by letter ("b r e n t w o o d"): in the AN4 corpus every single-letter
token is the name of the letter (``LETTER_NAMES``; CMUdict's first reading agrees for every
letter except "a", which it reads as the article AH0, here EY1). Every letter name is one word
of the same phoneme count as G2P's reading, so word alignments (openkws.align.word_segments,
which re-runs G2P on the text) still line up.

Bad input. A pack line whose audio file is missing is an error (FileNotFoundError listing every
missing file), not a skip: a partial copy of the pack should be noticed. A line whose text
cannot be pronounced (no English word in it, or a word G2P gives no phonemes for) is skipped and
reported: logged with its id and the reason, and counted in the summary printed at the end.

Sources. ``--rebuild-from-sources DIR`` rebuilds a pack in the same layout from the public
sources named in the pack's README, when a network is there: each source archive is downloaded
into DIR (resumable, checksum-verified: ``data_prep.librispeech.download``), unpacked, and its
tree converted (``SCANNERS``) into ``--pack`` (16 kHz mono Ogg/Opus and manifest.jsonl), which is
then imported as above. Only the human-transcribed corpora with plain layouts are rebuilt: AN4
(train/dev by the corpus' own speaker split), LJ Speech and Common Voice (dev). The others need
Whisper transcripts (picovoice_s2i, librispeech), the contributors' waiver lists
(mycroft_precise) or Debian package unpacking (asterisk), and are left to the pack. The rebuilt
pack holds every clip of the source (or ``--max-per-corpus``), not the pack's selection, and no
dev_trials.csv (the trials need the pack's trial builder).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import random
import re
import tarfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.librispeech import fetch_resume, md5sum, download
from openkws.audio import SAMPLE_RATE, load_audio
from openkws.checkpoint import atomic_write_text
from openkws.data.manifest import Utterance, check_manifest, iter_jsonl
from openkws.text import normalize, to_phonemes

log = logging.getLogger("data_prep.realspeech")

# The shared data folder sits beside the repository: <repo>/../shared/data/realspeech.
DEFAULT_PACK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realspeech"
PACK_FIELDS = ("id", "path", "duration", "text", "text_original", "speaker", "corpus", "split",
               "transcript_source", "licence", "sample_rate_original")  # avg_logprob may be absent
EXTRA_FIELDS = ("corpus", "transcript_source", "avg_logprob", "text_original", "licence", "sample_rate_original")
SPLITS = ("train", "dev")
HUMAN = "human"
SPELLED_CORPORA = frozenset({"an4"})  # corpora whose single-letter tokens are spelled letters
LETTER_NAMES = {
    "a": "EY1", "b": "B IY1", "c": "S IY1", "d": "D IY1", "e": "IY1", "f": "EH1 F", "g": "JH IY1",
    "h": "EY1 CH", "i": "AY1", "j": "JH EY1", "k": "K EY1", "l": "EH1 L", "m": "EH1 M", "n": "EH1 N",
    "o": "OW1", "p": "P IY1", "q": "K Y UW1", "r": "AA1 R", "s": "EH1 S", "t": "T IY1", "u": "Y UW1",
    "v": "V IY1", "w": "D AH1 B AH0 L Y UW0", "x": "EH1 K S", "y": "W AY1", "z": "Z IY1",
}  # fmt: skip
_MAX_LISTED = 20


# ------------------------------------------------------------------------------------ import

@dataclass
class ImportSummary:
    """What an import kept, filtered out and skipped (and why)."""

    lines: int = 0
    kept: Counter = field(default_factory=Counter)  # split -> utterances
    seconds: Counter = field(default_factory=Counter)  # split -> audio seconds
    excluded_corpus: int = 0
    excluded_split: int = 0
    excluded_whisper: int = 0  # --no-whisper
    excluded_logprob: int = 0  # --min-logprob
    unpronounceable: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)

    def format(self) -> str:
        kept = ", ".join(f"{s} {self.kept[s]} ({self.seconds[s] / 3600:.2f} h)" for s in sorted(self.kept)) or "none"
        lines = [f"{self.lines} pack lines; kept: {kept}",
                 f"filtered out: {self.excluded_corpus} by corpus, {self.excluded_split} by split, "
                 f"{self.excluded_whisper} Whisper-labelled (--no-whisper), "
                 f"{self.excluded_logprob} below --min-logprob",
                 f"skipped, text cannot be pronounced: {len(self.unpronounceable)}"]
        lines += [f"  {i}: {reason}" for i, reason in self.unpronounceable[:_MAX_LISTED]]
        if len(self.unpronounceable) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.unpronounceable) - _MAX_LISTED} more")
        return "\n".join(lines)


def read_pack(pack: str | os.PathLike) -> list[dict]:
    """The pack's manifest.jsonl lines, checked (fields present and typed, ids unique, split
    known); ``path`` made absolute. Errors name the file and line."""
    pack = Path(pack)
    manifest = pack / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: --pack must be the real speech pack folder "
                                "(manifest.jsonl, audio/)")
    rows, seen = [], {}
    for where, row in iter_jsonl(manifest):
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object")
        missing = [k for k in PACK_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        for key in ("id", "path", "text", "speaker", "corpus", "split", "transcript_source"):
            if not isinstance(row[key], str) or not row[key]:
                raise ValueError(f"{where}: field {key!r} must be a non-empty string, got {row[key]!r}")
        if not isinstance(row["duration"], (int, float)) or isinstance(row["duration"], bool) \
                or not row["duration"] > 0:
            raise ValueError(f"{where}: duration must be a number > 0, got {row['duration']!r}")
        logprob = row.get("avg_logprob")
        if logprob is not None and (not isinstance(logprob, (int, float)) or isinstance(logprob, bool)):
            raise ValueError(f"{where}: avg_logprob must be a number or null, got {logprob!r}")
        if row["split"] not in SPLITS:
            raise ValueError(f"{where}: split must be one of {'/'.join(SPLITS)}, got {row['split']!r}")
        if row["id"] in seen:
            raise ValueError(f"{where}: id {row['id']!r} already at {seen[row['id']]}")
        seen[row["id"]] = where
        rows.append({**row, "path": os.path.normpath(pack / row["path"])})
    if not rows:
        raise ValueError(f"{manifest}: no clips listed")
    return rows


def pronounce(text: str, corpus: str) -> list[str]:
    """Phonemes of a pack text; in a spelled corpus (AN4) a single letter is the letter's name.
    Raises ValueError when the text cannot be pronounced."""
    return to_phonemes(text, LETTER_NAMES if corpus in SPELLED_CORPORA else None)


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s.strip()]


def load_pack(pack: str | os.PathLike = DEFAULT_PACK, corpora: str | Iterable[str] | None = None,
              exclude: str | Iterable[str] | None = None, whisper: bool = True, min_logprob: float | None = None,
              splits: Iterable[str] = SPLITS) -> tuple[list[Utterance], ImportSummary]:
    """The pack's clips as Utterances (absolute paths) and what was filtered out or skipped.

    ``corpora`` keeps only those corpora, ``exclude`` drops some (unknown names are an error
    listing the pack's corpora); ``whisper=False`` drops Whisper-labelled clips; ``min_logprob``
    drops Whisper clips whose avg_logprob is below it (human transcripts are kept); ``splits``
    keeps those splits. A missing audio file is a FileNotFoundError listing them all; a text
    that cannot be pronounced is logged and skipped (``summary.unpronounceable``). The kept
    utterances must not share a speaker across splits (ValueError).
    """
    rows = read_pack(pack)
    known = sorted({r["corpus"] for r in rows})
    keep, drop = _names(corpora), _names(exclude)
    unknown = sorted(set(keep + drop) - set(known))
    if unknown:
        raise ValueError(f"unknown corpus name(s) {', '.join(unknown)}; the pack has {', '.join(known)}")
    splits = set(splits)
    summary = ImportSummary(lines=len(rows))
    selected = []
    for r in rows:
        if (keep and r["corpus"] not in keep) or r["corpus"] in drop:
            summary.excluded_corpus += 1
        elif r["split"] not in splits:
            summary.excluded_split += 1
        elif r["transcript_source"] != HUMAN and not whisper:
            summary.excluded_whisper += 1
        elif (r["transcript_source"] != HUMAN and min_logprob is not None
              and (r.get("avg_logprob") is None or r["avg_logprob"] < min_logprob)):
            summary.excluded_logprob += 1
        else:
            selected.append(r)
    missing = [r for r in selected if not os.path.isfile(r["path"])]
    if missing:
        listed = "\n  ".join(f"{r['id']}: {r['path']}" for r in missing[:_MAX_LISTED])
        more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise FileNotFoundError(f"{Path(pack) / 'manifest.jsonl'}: {len(missing)} audio file(s) not found "
                                f"(a partial copy of the pack?):\n  {listed}{more}")
    utts = []
    for r in selected:
        try:
            phonemes = pronounce(r["text"], r["corpus"])
        except ValueError as e:
            log.warning("%s: skipped, cannot pronounce %r: %s", r["id"], r["text"], e)
            summary.unpronounceable.append((r["id"], str(e)))
            continue
        utts.append(Utterance(id=r["id"], path=r["path"], duration=float(r["duration"]), text=r["text"],
                              phonemes=phonemes, speaker=r["speaker"], kind="sentence", split=r["split"],
                              extra={k: r.get(k) for k in EXTRA_FIELDS}))
        summary.kept[r["split"]] += 1
        summary.seconds[r["split"]] += float(r["duration"])
    check_manifest(utts, check_files=False, name=str(Path(pack) / "manifest.jsonl"))
    return utts, summary


def write_manifests(utts: Sequence[Utterance], out: str | os.PathLike) -> dict[str, Path]:
    """``<out>/<split>.jsonl`` per split (train and dev, empty when nothing is kept), atomically,
    with absolute audio paths."""
    out = Path(out)
    by_split: dict[str, list[Utterance]] = defaultdict(list)
    for u in utts:
        by_split[u.split].append(u)
    paths = {}
    for split in sorted(set(SPLITS) | set(by_split)):
        paths[split] = out / f"{split}.jsonl"
        lines = [json.dumps({**asdict(u), "path": os.path.abspath(u.path)}, ensure_ascii=False) + "\n"
                 for u in sorted(by_split[split], key=lambda u: u.id)]
        atomic_write_text(paths[split], "".join(lines))
    return paths


def prepare(pack: str | os.PathLike, out: str | os.PathLike, **filters) -> ImportSummary:
    """Import the pack (``load_pack`` filters) and write the manifests; returns the summary."""
    utts, summary = load_pack(pack, **filters)
    for split, path in write_manifests(utts, out).items():
        log.info("wrote %s: %d utterances", path, summary.kept[split])
    return summary


# ------------------------------------------------------------------------------------ sources

@dataclass(frozen=True)
class Source:
    """One public source archive: where it is, and the folder inside it that the scanner reads."""

    url: str
    subdir: str  # glob below the unpacked archive's top folder(s), e.g. "*/an4"
    md5: str | None = None  # published checksum; None: recorded at the first download and checked after


# GitHub archives at the commits the pack was built from (README of the pack).
SOURCES: dict[str, Source] = {
    "an4": Source("https://github.com/adagioNeo/VoiceInterpreter/archive/e750b5e.tar.gz", "*/an4"),
    "ljspeech": Source("https://github.com/PrernaSocity/lj_speech_dataset_part_1/archive/328134a.tar.gz",
                       "*/LJSpeech-1.1"),
    "commonvoice": Source("https://github.com/omnilingo/rsample-100-cv-corpus-6.1-2020-12-11/archive/6785f86.tar.gz",
                          "*/en"),
}
REBUILT_MARKER = ".rebuilt_from_sources"
LICENCES = {
    "an4": "CMU AN4 licence (BSD-style, any use; keep the copyright notice)",
    "ljspeech": "Public domain",
    "commonvoice": "CC0-1.0",
}


def fetch(url: str, dest: str | os.PathLike, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (resuming a partial download) and verify it.

    With a published ``md5`` this is ``data_prep.librispeech.download``. Without one (GitHub
    archives publish none), the MD5 of the first complete download is recorded in
    ``dest.md5`` and every later call checks the file against it.
    """
    dest = Path(dest)
    recorded = dest.with_name(dest.name + ".md5")
    if md5 is None and recorded.exists():
        md5 = recorded.read_text().strip()
    if md5 is not None:
        return download(url, dest, md5)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if not dest.exists():
        fetch_resume(url, part, part.stat().st_size if part.exists() else 0)
        os.replace(part, dest)
    got = md5sum(dest)
    atomic_write_text(recorded, got + "\n")
    dest.with_name(dest.name + ".done").touch()
    log.warning("%s: no published checksum; recorded MD5 %s of this download in %s", url, got, recorded)
    return dest


def unpack(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a .tar(.gz/.bz2/.xz) or .zip archive into ``target`` once (``target/.done``)."""
    archive, target = Path(archive), Path(target)
    if (target / ".done").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(target)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")  # refuses absolute paths and links out of target
    (target / ".done").touch()
    return target


@dataclass(frozen=True)
class SourceClip:
    """One clip of a source tree, before conversion."""

    id: str
    audio: Path
    text: str  # normalised as the pack does it
    text_original: str
    speaker: str
    corpus: str
    split: str


def scan_an4(tree: str | os.PathLike) -> list[SourceClip]:
    """AN4 (``etc/an4_{train,test}.{fileids,transcription}``, audio ``wav/<fileid>.{wav,flac,sph}``
    or headerless 16 kHz big-endian ``.raw``): the an4test_clstk speakers are dev, the rest train.
    A listed file without a transcript is logged and skipped (the pack's copy lacks 13)."""
    tree = Path(tree)
    clips = []
    for part in ("train", "test"):
        ids_file, trans_file = tree / "etc" / f"an4_{part}.fileids", tree / "etc" / f"an4_{part}.transcription"
        if not ids_file.is_file() or not trans_file.is_file():
            raise FileNotFoundError(f"{tree}: not an AN4 tree (needs {ids_file.name} and {trans_file.name} in etc/)")
        texts = {}
        for line in trans_file.read_text(encoding="utf-8", errors="replace").splitlines():
            m = re.match(r"^\s*(?:<s>)?\s*(.*?)\s*(?:</s>)?\s*\(([^()]+)\)\s*$", line)
            if m:
                texts[m.group(2)] = m.group(1)
        for fileid in ids_file.read_text(encoding="utf-8").split():
            name = Path(fileid).name
            if name not in texts:
                log.warning("AN4 %s: no transcript, skipped", fileid)
                continue
            audio = next((p for ext in (".wav", ".flac", ".sph", ".raw")
                          if (p := tree / "wav" / f"{fileid}{ext}").is_file()), None)
            if audio is None:
                raise FileNotFoundError(f"AN4 {fileid}: no audio under {tree / 'wav'} (.wav/.flac/.sph/.raw)")
            speaker = Path(fileid).parent.name
            clips.append(SourceClip(f"an4_{name}", audio, texts[name].lower(), texts[name], f"an4_{speaker}", "an4",
                                    "dev" if fileid.startswith("an4test_clstk") else "train"))
    return clips


def scan_ljspeech(tree: str | os.PathLike) -> list[SourceClip]:
    """LJ Speech (``metadata.csv``: id|raw|normalised, ``wavs/<id>.wav``), all train, one speaker."""
    tree = Path(tree)
    meta = tree / "metadata.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"{tree}: not an LJ Speech tree (no metadata.csv)")
    clips = []
    for lineno, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        cols = line.split("|")
        if len(cols) != 3:
            raise ValueError(f"{meta}:{lineno}: expected id|text|normalised text")
        wav = tree / "wavs" / f"{cols[0]}.wav"
        if wav.is_file():  # the pack's source repository holds a part of the corpus
            clips.append(SourceClip(f"ljspeech_{cols[0]}", wav, " ".join(normalize(cols[2])), cols[1],
                                    "ljspeech_lj", "ljspeech", "train"))
    return clips


def scan_commonvoice(tree: str | os.PathLike) -> list[SourceClip]:
    """Common Voice (``validated.tsv`` with client_id, path, sentence; ``clips/``), all dev;
    speaker = the first 16 hex digits of the client id."""
    tree = Path(tree)
    tsv = tree / "validated.tsv"
    if not tsv.is_file():
        raise FileNotFoundError(f"{tsv} not found: not a Common Voice language folder")
    clips = []
    with open(tsv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            audio = tree / "clips" / row["path"]
            if audio.is_file():
                clips.append(SourceClip(f"commonvoice_{Path(row['path']).stem}", audio,
                                        " ".join(normalize(row["sentence"])), row["sentence"],
                                        f"commonvoice_{row['client_id'][:16]}", "commonvoice", "dev"))
    return clips


SCANNERS: dict[str, Callable[[Path], list[SourceClip]]] = {
    "an4": scan_an4, "ljspeech": scan_ljspeech, "commonvoice": scan_commonvoice,
}


def _read_source_audio(path: Path) -> tuple[np.ndarray, int]:
    if path.suffix == ".raw":  # AN4's headerless 16 kHz 16-bit big-endian PCM
        return np.fromfile(path, dtype=">i2").astype(np.float32) / 32768.0, 16000
    audio, rate = sf.read(str(path), dtype="float32", always_2d=False)
    return audio, rate


def write_pack(clips: Sequence[SourceClip], pack: str | os.PathLike) -> Path:
    """Convert source clips into the pack layout: ``audio/<corpus>/<name>.ogg`` (16 kHz mono
    Ogg/Opus at about 32 kb/s, as the pack's README describes) and ``manifest.jsonl`` sorted by id
    (written last, atomically). Clips already converted are kept. Refuses to write into a
    folder holding a pack that was not rebuilt here (no ``REBUILT_MARKER``): never the shared pack."""
    pack = Path(pack)
    if (pack / "manifest.jsonl").exists() and not (pack / REBUILT_MARKER).exists():
        raise ValueError(f"{pack} holds a pack that was not rebuilt from sources; refusing to overwrite it "
                         "(give --pack a new folder)")
    pack.mkdir(parents=True, exist_ok=True)
    (pack / REBUILT_MARKER).touch()
    rows = []
    for c in clips:
        rel = Path("audio") / c.corpus / f"{c.id.removeprefix(c.corpus + '_')}.ogg"
        dest = pack / rel
        rate = 16000 if c.audio.suffix == ".raw" else sf.info(str(c.audio)).samplerate
        if not dest.exists():
            audio, rate = _read_source_audio(c.audio)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            sf.write(str(tmp), load_audio(audio, rate), SAMPLE_RATE, format="OGG", subtype="OPUS",
                     compression_level=0.896)
            os.replace(tmp, dest)
        rows.append({"id": c.id, "path": rel.as_posix(), "duration": round(sf.info(str(dest)).duration, 4),
                     "text": c.text, "text_original": c.text_original, "speaker": c.speaker, "corpus": c.corpus,
                     "split": c.split, "transcript_source": HUMAN, "licence": LICENCES.get(c.corpus, ""),
                     "sample_rate_original": int(rate), "avg_logprob": None})
    rows.sort(key=lambda r: r["id"])
    atomic_write_text(pack / "manifest.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return pack


def rebuild_from_sources(downloads: str | os.PathLike, pack: str | os.PathLike,
                         corpora: Iterable[str] = tuple(SOURCES), sources: dict[str, Source] | None = None,
                         max_per_corpus: int | None = None, seed: int = 0) -> Path:
    """Download (into ``downloads``), unpack and convert the sources of ``corpora`` into a pack
    at ``pack``; ``max_per_corpus`` takes a seeded random sample of each corpus' clips."""
    sources = {**SOURCES, **(sources or {})}
    corpora = list(corpora)
    unknown = [c for c in corpora if c not in sources or c not in SCANNERS]
    if unknown:
        raise ValueError(f"cannot rebuild {', '.join(unknown)} from sources; rebuildable: "
                         f"{', '.join(c for c in sources if c in SCANNERS)}")
    downloads = Path(downloads)
    clips = []
    for corpus in corpora:
        src = sources[corpus]
        name = hashlib.md5(src.url.encode()).hexdigest()[:8] + "_" + src.url.rstrip("/").rsplit("/", 1)[-1]
        try:
            archive = fetch(src.url, downloads / corpus / name, src.md5)
        except OSError as e:
            raise OSError(f"cannot download {src.url}: {e}; put the archive at {downloads / corpus / name} "
                          "and run again") from e
        root = unpack(archive, downloads / corpus / "unpacked")
        trees = sorted(p for p in root.glob(src.subdir) if p.is_dir())
        if not trees:
            raise FileNotFoundError(f"{archive}: no folder {src.subdir} inside (unpacked in {root})")
        found = SCANNERS[corpus](trees[0])
        if max_per_corpus is not None and len(found) > max_per_corpus:
            found = sorted(random.Random(seed).sample(found, max_per_corpus), key=lambda c: c.id)
        log.info("%s: %d clips from %s", corpus, len(found), trees[0])
        clips += found
    return write_pack(clips, pack)


# ------------------------------------------------------------------------------------ CLI

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", default=str(DEFAULT_PACK), help="the real speech pack folder (default: %(default)s)")
    ap.add_argument("--out", required=True, help="folder for train.jsonl and dev.jsonl")
    ap.add_argument("--corpora", default="", help="comma-separated corpora to keep (default: all)")
    ap.add_argument("--exclude", default="", help="comma-separated corpora to drop")
    ap.add_argument("--no-whisper", action="store_true", help="drop clips whose text is a Whisper transcript")
    ap.add_argument("--min-logprob", type=float, default=None,
                    help="drop Whisper clips with avg_logprob below this (e.g. -0.55: the worst 10%%)")
    ap.add_argument("--rebuild-from-sources", metavar="DOWNLOADS", default=None,
                    help=f"first rebuild --pack from the public sources, downloading into DOWNLOADS "
                         f"(needs a network; corpora: {', '.join(SOURCES)})")
    ap.add_argument("--max-per-corpus", type=int, default=None, help="with --rebuild-from-sources: clips per corpus")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.rebuild_from_sources and args.pack == str(DEFAULT_PACK):
        ap.error("--rebuild-from-sources writes a new pack: give --pack a new folder")
    try:
        if args.rebuild_from_sources:
            rebuild_from_sources(args.rebuild_from_sources, args.pack,
                                 _names(args.corpora) or [c for c in SOURCES if c not in _names(args.exclude)],
                                 max_per_corpus=args.max_per_corpus)
        # after a rebuild the excluded corpora are not in the pack at all: nothing left to exclude
        summary = prepare(args.pack, args.out, corpora=args.corpora or None,
                          exclude=None if args.rebuild_from_sources else args.exclude or None,
                          whisper=not args.no_whisper, min_logprob=args.min_logprob)
    except (FileNotFoundError, ValueError) as e:
        ap.error(str(e))
    print(summary.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
