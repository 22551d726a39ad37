"""LibriSpeech (OpenSLR resource 12): download, extract, and write one manifest per subset.

    python -m data_prep.librispeech --root DOWNLOADS --subsets train-clean-100 dev-clean --out data/manifests

``--root`` holds the archives and the extracted ``LibriSpeech/<subset>/`` tree. A tree that is
already there (``ROOT/LibriSpeech/<subset>``, ``ROOT/<subset>``, or a symlink to a shared copy) is
used as it is and nothing is downloaded. Downloads resume (HTTP Range) after an interruption, are
checked against the MD5 sums that OpenSLR publishes (resources/12/md5sum.txt), and leave a
``.done`` marker so a rerun skips finished steps; manifests already written are kept unless
``--force``.

Manifest ``<out>/librispeech_<subset>.jsonl``: one Utterance per utterance: the FLAC, its
duration, the lowercased transcript and its phonemes (openkws.text.to_phonemes), speaker id,
kind="sentence", split mapped from the subset (``DEFAULT_SPLITS``; train-other-500 is "test"
because LibriPhrase's test set is cut from it), and ``extra = {"subset", "chapter"}``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import tarfile
import urllib.error
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from openkws.data.manifest import Utterance, write_manifest
from openkws.text import to_phonemes

BASE_URL = "https://www.openslr.org/resources/12"
MIRRORS = ("https://us.openslr.org/resources/12", "https://openslr.elda.org/resources/12",
           "https://openslr.magicdatatech.com/resources/12")
# From https://www.openslr.org/resources/12/md5sum.txt
MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
# Utterances per subset in the released corpus; a different count is reported (partial extract?).
NUM_UTTERANCES = {
    "dev-clean": 2703, "dev-other": 2864, "test-clean": 2620, "test-other": 2939,
    "train-clean-100": 28539, "train-clean-360": 104014, "train-other-500": 148688,
}  # fmt: skip
DEFAULT_SPLITS = {
    "train-clean-100": "train", "train-clean-360": "train", "train-other-500": "test",
    "dev-clean": "dev", "dev-other": "dev", "test-clean": "test", "test-other": "test",
}  # fmt: skip
_CHUNK = 1 << 20

log = logging.getLogger(__name__)


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch_resume(url: str, part: Path, offset: int) -> None:
    """Append ``url`` from byte ``offset`` to ``part``, or rewrite it whole if the server ignores Range."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    with urllib.request.urlopen(request, timeout=60) as resp:
        resumed = offset > 0 and getattr(resp, "status", None) == 206
        size = resp.headers.get("Content-Length")
        total = int(size) + (offset if resumed else 0) if size else None
        with open(part, "ab" if resumed else "wb") as f, \
                tqdm(total=total, initial=offset if resumed else 0, unit="B", unit_scale=True,
                     desc=part.name, leave=False) as bar:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                f.write(block)
                bar.update(len(block))


def download(url: str, dest: str | os.PathLike, md5: str) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``, and check its MD5.

    A finished, verified download leaves ``dest.done`` and is not fetched or hashed again. When
    the server ignores the Range request (answers 200, or a file:// URL), the download restarts
    from the beginning. A checksum mismatch deletes the partial file and raises ValueError.
    """
    dest = Path(dest)
    done = dest.with_name(dest.name + ".done")
    if dest.exists() and done.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # complete file from elsewhere (e.g. copied in): verify instead of fetching
        part = dest
    else:
        part = dest.with_name(dest.name + ".part")
        offset = part.stat().st_size if part.exists() else 0
        try:
            fetch_resume(url, part, offset)
        except urllib.error.HTTPError as e:
            if e.code != 416:  # 416: nothing left after the offset, the part is complete
                raise
    got = md5sum(part)
    if got != md5:
        if part == dest:  # not ours to delete
            raise ValueError(f"{dest}: MD5 {got} does not match the published {md5}; the file is "
                             "corrupt or not the OpenSLR archive: delete it and run again")
        part.unlink()
        raise ValueError(f"{dest}: MD5 {got} of the download from {url} does not match the published "
                         f"{md5}; the corrupt file was deleted, run again to download it anew")
    if part != dest:
        os.replace(part, dest)
    done.touch()
    return dest


def extract(archive: str | os.PathLike, root: str | os.PathLike, subset: str) -> Path:
    """Extract a LibriSpeech archive into ``root`` (it unpacks to LibriSpeech/<subset>/) once."""
    root = Path(root)
    target = root / "LibriSpeech" / subset
    done = target / ".done"
    if done.exists():
        return target
    log.info("extracting %s into %s", archive, root)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")  # "data" refuses absolute paths and links out of root
    if not target.is_dir():
        raise ValueError(f"{archive}: extracting it did not create {target}; is it a LibriSpeech archive?")
    done.touch()
    return target


def find_subset(root: str | os.PathLike, subset: str) -> Path | None:
    """The extracted ``<subset>`` folder under ``root``, in any of the usual layouts, or None."""
    root = Path(root)
    for cand in (root / "LibriSpeech" / subset, root / subset):
        if cand.is_dir() and any(cand.iterdir()):
            return cand
    return None


def fetch_subset(root: str | os.PathLike, subset: str, base_url: str = BASE_URL) -> Path:
    """The ``<subset>`` folder under ``root``; downloaded and extracted first when absent."""
    if subset not in MD5:
        raise ValueError(f"unknown LibriSpeech subset {subset!r}; choose from {', '.join(MD5)}")
    root = Path(root)
    archive = root / f"{subset}.tar.gz"
    if (root / "LibriSpeech" / subset / ".done").exists():
        return root / "LibriSpeech" / subset
    if not archive.exists():
        found = find_subset(root, subset)
        if found is not None:
            return found  # a tree the user extracted or linked in
    url = f"{base_url.rstrip('/')}/{subset}.tar.gz"
    try:
        download(url, archive, MD5[subset])  # only verifies an archive that is already there
    except OSError as e:
        raise OSError(f"cannot download {url}: {e}\nTry a mirror (--base-url {' | '.join(MIRRORS)}), "
                      f"or put the extracted corpus (or {subset}.tar.gz) under {root}") from e
    return extract(archive, root, subset)


def scan_subset(subset_dir: str | os.PathLike, split: str, jobs: int = 1) -> list[Utterance]:
    """One Utterance per utterance of an extracted subset, sorted by id.

    Reads every ``<spk>/<chapter>/<spk>-<chapter>.trans.txt``; a transcript line without its
    FLAC, or a FLAC without a transcript line, is an error naming the file.
    """
    subset_dir = Path(subset_dir)
    subset = subset_dir.name
    entries = []  # (utt_id, flac, text, speaker, chapter)
    for trans in sorted(subset_dir.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        listed = set()
        for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            flac = trans.parent / f"{utt_id}.flac"
            if not text.strip() or not flac.is_file():
                raise ValueError(f"{trans}:{lineno}: " + ("empty transcript" if not text.strip()
                                                          else f"audio {flac.name} not found"))
            listed.add(flac.name)
            entries.append((utt_id, flac, text.strip().lower(), speaker, chapter))
        unlisted = sorted(p.name for p in trans.parent.glob("*.flac") if p.name not in listed)
        if unlisted:
            raise ValueError(f"{trans}: no transcript for {', '.join(unlisted[:5])}")
    if not entries:
        raise ValueError(f"{subset_dir}: no <spk>/<chapter>/*.trans.txt found; not a LibriSpeech subset folder")
    texts = [e[2] for e in entries]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            phonemes = list(tqdm(pool.map(to_phonemes, texts, chunksize=256), total=len(texts),
                                 desc=f"G2P {subset}", leave=False))
    else:
        phonemes = [to_phonemes(t) for t in tqdm(texts, desc=f"G2P {subset}", leave=False)]
    utts = [Utterance(id=utt_id, path=str(flac.resolve()), duration=sf.info(str(flac)).duration, text=text,
                      phonemes=phon, speaker=speaker, kind="sentence", split=split,
                      extra={"subset": subset, "chapter": chapter})
            for (utt_id, flac, text, speaker, chapter), phon in zip(entries, phonemes)]
    expected = NUM_UTTERANCES.get(subset)
    if expected is not None and len(utts) != expected:
        log.warning("%s: %d utterances, the released %s has %d (partial or modified copy?)",
                    subset_dir, len(utts), subset, expected)
    return sorted(utts, key=lambda u: u.id)


def prepare(root: str | os.PathLike, subsets: list[str], out: str | os.PathLike,
            splits: dict[str, str] | None = None, base_url: str = BASE_URL, jobs: int = 1,
            force: bool = False) -> list[Path]:
    """Fetch (when needed) and scan each subset; write ``<out>/librispeech_<subset>.jsonl``."""
    splits = {**DEFAULT_SPLITS, **(splits or {})}
    written = []
    for subset in subsets:
        manifest = Path(out) / f"librispeech_{subset}.jsonl"
        if manifest.exists() and not force:
            log.info("%s exists; skipping %s (--force to redo)", manifest, subset)
        else:
            utts = scan_subset(fetch_subset(root, subset, base_url), splits[subset], jobs)
            write_manifest(manifest, utts)
            log.info("wrote %s: %d utterances, %.1f h", manifest, len(utts), sum(u.duration for u in utts) / 3600)
        written.append(manifest)
    return written


def _split_map(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        subset, sep, split = item.partition("=")
        if not sep or subset not in MD5:
            raise argparse.ArgumentTypeError(f"--split wants SUBSET=SPLIT with SUBSET one of {', '.join(MD5)}, "
                                             f"got {item!r}")
        out[subset] = split
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Download / locate LibriSpeech subsets and write manifests.")
    p.add_argument("--root", required=True, help="download folder, or an existing LibriSpeech tree")
    p.add_argument("--subsets", nargs="+", required=True, choices=list(MD5))
    p.add_argument("--out", required=True, help="folder for the manifests")
    p.add_argument("--split", nargs="*", default=[], metavar="SUBSET=SPLIT",
                   help="override the split of a subset (default: train-clean-* train, dev-* dev, "
                        "test-* and train-other-500 test)")
    p.add_argument("--base-url", default=BASE_URL, help=f"OpenSLR mirror (also: {', '.join(MIRRORS)})")
    p.add_argument("--jobs", type=int, default=max(1, min(8, (os.cpu_count() or 1) - 1)), help="G2P processes")
    p.add_argument("--force", action="store_true", help="rewrite manifests that exist")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        splits = _split_map(args.split)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    prepare(args.root, args.subsets, args.out, splits, args.base_url, args.jobs, args.force)


if __name__ == "__main__":
    main()
