"""The JSONL manifest schema: round trip, atomic writes, clear errors, the validator."""

import json
import os
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from openkws.data.manifest import (
    Utterance,
    check_manifest,
    read_manifest,
    validate_manifest,
    write_manifest,
)


def _utt(tmp_path, uid="u1", speaker="spk1", split="train", **kw) -> Utterance:
    path = tmp_path / "audio" / f"{uid}.flac"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(1600, np.float32), 16000)
    fields = {"id": uid, "path": str(path), "duration": 0.1, "text": "turn on lights",
              "phonemes": ["T", "ER1", "N", "AA1", "N", "L", "AY1", "T", "S"], "speaker": speaker,
              "kind": "phrase", "split": split, "extra": {"engine": "espeak", "rate": 165}}
    return Utterance(**{**fields, **kw})


def test_round_trip_and_relative_paths(tmp_path):
    corpus = tmp_path / "corpus"
    utts = [_utt(corpus, "a"), _utt(corpus, "b", speaker="spk2", split="dev", extra={})]
    manifest = corpus / "lists" / "train.jsonl"
    write_manifest(manifest, utts)
    stored = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert stored[0]["path"] == "../audio/a.flac"  # relative to the manifest's folder
    back = read_manifest(manifest)
    assert back == utts
    assert os.path.isabs(back[0].path)

    # The corpus folder can be moved: paths follow the manifest.
    corpus.rename(tmp_path / "moved")
    moved = read_manifest(tmp_path / "moved" / "lists" / "train.jsonl")
    assert moved[0].path == str(tmp_path / "moved" / "audio" / "a.flac")


def test_write_is_atomic(tmp_path, monkeypatch):
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [_utt(tmp_path, "a")])
    before = manifest.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_manifest(manifest, [_utt(tmp_path, "a"), _utt(tmp_path, "b")])
    assert manifest.read_text() == before  # old file intact
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []  # no temp file left


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "bad JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"id": "x"}', "missing field(s) duration, kind, path, phonemes, speaker, split, text"),
        (('{"id": "x", "path": "a.flac", "duration": "1.0", "text": "t", "phonemes": ["T"], "speaker": "s",'
          ' "kind": "phrase", "split": "train"}'), "field 'duration' has the wrong type"),
        (('{"id": "x", "path": "a.flac", "duration": 1.0, "text": "t", "phonemes": ["T"], "speaker": "s",'
          ' "kind": "phrase", "split": "train", "engine": "piper"}'), "unknown field(s) engine"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path, line, message):
    manifest = tmp_path / "bad.jsonl"
    good = json.dumps({"id": "ok", "path": "a.flac", "duration": 1, "text": "t", "phonemes": ["T"],
                       "speaker": "s", "kind": "phrase", "split": "train"})
    manifest.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(ValueError) as e:
        read_manifest(manifest)
    assert f"{manifest}:3" in str(e.value)
    assert message in str(e.value)


def test_valid_manifest_has_no_problems(tmp_path):
    utts = [_utt(tmp_path, "a"), _utt(tmp_path, "b", speaker="spk2", split="test")]
    assert validate_manifest(utts) == []
    check_manifest(utts)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda u: replace(u, path=u.path + ".missing"), "audio file not found"),
        (lambda u: replace(u, duration=0.0), "duration must be a finite number > 0"),
        (lambda u: replace(u, duration=float("nan")), "duration must be a finite number > 0"),
        (lambda u: replace(u, phonemes=["T", "ER", "XX"]), "phonemes outside the inventory: ER XX"),
        (lambda u: replace(u, phonemes=[]), "no phonemes"),
        (lambda u: replace(u, split="valid"), "split must be one of train/dev/test"),
        (lambda u: replace(u, id="a"), "a: duplicate id"),
        (lambda u: replace(u, speaker="spk1"), "speaker 'spk1' is in several splits: dev, train"),
    ],
)
def test_validator_catches_each_problem(tmp_path, change, message):
    utts = [_utt(tmp_path, "a"), change(_utt(tmp_path, "b", speaker="spk2", split="dev"))]
    problems = validate_manifest(utts)
    assert len(problems) == 1 and message in problems[0], problems
    with pytest.raises(ValueError, match="1 problem"):
        check_manifest(utts, name="corpus/train.jsonl")


def test_check_manifest_lists_problems_briefly(tmp_path):
    utts = [_utt(tmp_path, f"u{i}", duration=-1.0) for i in range(30)]
    with pytest.raises(ValueError) as e:
        check_manifest(utts, name="big.jsonl")
    text = str(e.value)
    assert text.startswith("big.jsonl: 30 problem(s)") and "... and 10 more" in text
