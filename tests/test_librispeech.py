"""LibriSpeech preparation on a tiny generated tree: scanning, manifests, download, extraction."""
import hashlib
import io
import logging
import os
import tarfile

import numpy as np
import pytest
import soundfile as sf

from data_prep import librispeech
from data_prep.librispeech import download, fetch_subset, prepare, scan_subset
from openkws.data.manifest import check_manifest, read_manifest

SR = 16000
TRANSCRIPTS = {  # speaker -> chapter -> [(utterance number, text)]
    "19": {"198": [(0, "NORTHANGER ABBEY"), (1, "THE HOUSE WAS QUIET")]},
    "26": {"495": [(3, "IT'S A NICE DAY")]},
}


def make_tree(root, subset="train-clean-100", seconds=1.0):
    """LibriSpeech/<subset>/<spk>/<chap>/<spk>-<chap>-<utt>.flac + <spk>-<chap>.trans.txt."""
    rng = np.random.default_rng(0)
    for spk, chapters in TRANSCRIPTS.items():
        for chap, lines in chapters.items():
            folder = root / "LibriSpeech" / subset / spk / chap
            folder.mkdir(parents=True, exist_ok=True)
            trans = []
            for num, text in lines:
                uid = f"{spk}-{chap}-{num:04d}"
                sf.write(folder / f"{uid}.flac", (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)
                trans.append(f"{uid} {text}\n")
            (folder / f"{spk}-{chap}.trans.txt").write_text("".join(trans))
    return root / "LibriSpeech" / subset


def test_scan_subset(tmp_path, caplog):
    subset_dir = make_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        utts = scan_subset(subset_dir, "train")
    assert "3 utterances, the released train-clean-100 has 28539" in caplog.text
    assert [u.id for u in utts] == ["19-198-0000", "19-198-0001", "26-495-0003"]
    u = utts[2]
    assert u.text == "it's a nice day" and u.speaker == "26" and u.kind == "sentence" and u.split == "train"
    assert u.phonemes[:3] == ["IH1", "T", "S"] and u.duration == pytest.approx(1.0)
    assert u.extra == {"subset": "train-clean-100", "chapter": "495"} and os.path.isabs(u.path)
    check_manifest(utts)


def test_scan_subset_errors_name_the_file(tmp_path):
    subset_dir = make_tree(tmp_path)
    (subset_dir / "19" / "198" / "19-198-0001.flac").unlink()
    with pytest.raises(ValueError, match=r"19-198.trans.txt:2: audio 19-198-0001.flac not found"):
        scan_subset(subset_dir, "train")
    subset_dir = make_tree(tmp_path / "b")
    sf.write(subset_dir / "26" / "495" / "26-495-0009.flac", np.zeros(1600, np.float32), SR)
    with pytest.raises(ValueError, match=r"26-495.trans.txt: no transcript for 26-495-0009.flac"):
        scan_subset(subset_dir, "train")
    with pytest.raises(ValueError, match="not a LibriSpeech subset folder"):
        scan_subset(tmp_path, "train")


def test_prepare_existing_tree_and_resume(tmp_path):
    make_tree(tmp_path / "corpus", "dev-clean")
    out = tmp_path / "manifests"
    [path] = prepare(tmp_path / "corpus", ["dev-clean"], out)
    assert path == out / "librispeech_dev-clean.jsonl"
    utts = read_manifest(path)
    assert len(utts) == 3 and {u.split for u in utts} == {"dev"} and all(os.path.isfile(u.path) for u in utts)
    stamp = path.stat().st_mtime_ns
    prepare(tmp_path / "corpus", ["dev-clean"], out)  # done: kept as it is
    assert path.stat().st_mtime_ns == stamp
    librispeech.main(["--root", str(tmp_path / "corpus"), "--subsets", "dev-clean", "--out", str(out),
                      "--split", "dev-clean=test", "--force", "--jobs", "1"])
    assert {u.split for u in read_manifest(path)} == {"test"}
    with pytest.raises(SystemExit):
        librispeech.main(["--root", str(tmp_path), "--subsets", "dev-clean", "--out", str(out),
                          "--split", "nonsense=train"])


def md5sum(data):
    return hashlib.md5(data).hexdigest()


def test_download_file_url_checksum_and_skip(tmp_path, monkeypatch):
    data = os.urandom(300_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    dest = tmp_path / "dl" / "x.tar.gz"
    download(src.as_uri(), dest, md5sum(data))
    assert dest.read_bytes() == data and (tmp_path / "dl" / "x.tar.gz.done").exists()

    def offline(*a, **k):
        raise AssertionError("a finished download must not be fetched again")

    monkeypatch.setattr(librispeech.urllib.request, "urlopen", offline)
    download(src.as_uri(), dest, md5sum(data))
    monkeypatch.undo()

    other = tmp_path / "dl" / "y.tar.gz"
    with pytest.raises(ValueError, match="does not match the published 0+; the corrupt file was deleted"):
        download(src.as_uri(), other, "0" * 32)
    assert not other.exists() and not (tmp_path / "dl" / "y.tar.gz.part").exists()


class _RangeResponse(io.BytesIO):
    """Just enough of an HTTP response from a server that honours Range requests."""

    def __init__(self, data, offset):
        super().__init__(data[offset:])
        self.status = 206 if offset else 200
        self.headers = {"Content-Length": str(len(data) - offset)}


def test_download_resumes_with_range(tmp_path, monkeypatch):
    data = os.urandom(250_000)
    dest = tmp_path / "x.tar.gz"
    (tmp_path / "x.tar.gz.part").write_bytes(data[:100_000])  # an interrupted earlier run
    ranges = []

    def fake_urlopen(request, timeout=None):
        header = request.get_header("Range")
        ranges.append(header)
        return _RangeResponse(data, int(header[len("bytes="):-1]) if header else 0)

    monkeypatch.setattr(librispeech.urllib.request, "urlopen", fake_urlopen)
    download("https://example.org/x.tar.gz", dest, md5sum(data))
    assert ranges == ["bytes=100000-"] and dest.read_bytes() == data


def test_fetch_subset_downloads_and_extracts(tmp_path, monkeypatch):
    make_tree(tmp_path / "build", "dev-other")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "dev-other.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "LibriSpeech", arcname="LibriSpeech")
    monkeypatch.setitem(librispeech.MD5, "dev-other", md5sum((mirror / "dev-other.tar.gz").read_bytes()))
    root = tmp_path / "root"
    subset_dir = fetch_subset(root, "dev-other", base_url=mirror.as_uri())
    assert subset_dir == root / "LibriSpeech" / "dev-other" and (subset_dir / ".done").exists()
    assert len(scan_subset(subset_dir, "dev")) == 3
    (mirror / "dev-other.tar.gz").unlink()  # finished: no network and no archive needed any more
    assert fetch_subset(root, "dev-other", base_url=mirror.as_uri()) == subset_dir
    with pytest.raises(OSError, match="cannot download(.|\n)*mirror"):
        fetch_subset(tmp_path / "empty", "dev-other", base_url=mirror.as_uri())
    with pytest.raises(ValueError, match="unknown LibriSpeech subset 'train-clean-5'"):
        fetch_subset(root, "train-clean-5")
