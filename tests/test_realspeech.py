"""Real speech pack: importer, source rebuild, trial reader, continuous truth, evaluation (tiny, offline)."""

import csv
import json
import logging
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import toy_wave
from data_prep import realspeech as prep
from evaluation import realspeech as rs
from openkws.data.manifest import read_manifest
from openkws.model import KWSModel
from openkws.models.acoustic import AcousticConfig, AcousticModel
from openkws.models.conformer import ConformerConfig
from openkws.models.heads import build_head
from openkws.models.p2v import P2V
from openkws.spotter import Detection
from openkws.text import NUM_PHONEMES

TOY = ["AA1", "B", "K", "S", "IY1", "M"]


def _row(utt_id, corpus, split, speaker, text, source="human", logprob=None, ext="ogg"):
    return {"id": utt_id, "path": f"audio/{corpus}/{utt_id.removeprefix(corpus + '_')}.{ext}", "text": text,
            "text_original": text.upper(), "speaker": speaker, "corpus": corpus, "split": split,
            "transcript_source": source, "licence": "test", "sample_rate_original": 16000, "avg_logprob": logprob}


PACK_ROWS = [
    _row("an4_an1-aaa-b", "an4", "train", "an4_aaa", "b a d one"),
    _row("an4_an2-bbb-b", "an4", "dev", "an4_bbb", "enter two"),
    _row("ljspeech_LJ001-0001", "ljspeech", "train", "ljspeech_lj", "printing in the only sense", ext="wav"),
    _row("picovoice_s2i_x1", "picovoice_s2i", "train", "unknown", "a light roast coffee", "whisper-base", -0.3),
    _row("picovoice_s2i_x2", "picovoice_s2i", "train", "unknown", "twelve ounce", "whisper-base", -0.9),
    _row("mycroft_precise_bad", "mycroft_precise", "train", "unknown", "--"),  # nothing to pronounce
    _row("commonvoice_c1", "commonvoice", "dev", "commonvoice_s1", "please turn on the kitchen lights"),
    _row("commonvoice_c2", "commonvoice", "dev", "commonvoice_s2", "the weather is lovely today"),
    _row("commonvoice_c3", "commonvoice", "dev", "commonvoice_s3", "open the window"),
]


def write_pack(root, rows=PACK_ROWS, seed=0):
    """A stand-in pack: toy audio (tones) per row, manifest.jsonl, dev_trials.csv."""
    rng = np.random.default_rng(seed)
    out = []
    for r in sorted(rows, key=lambda r: r["id"]):
        wave = toy_wave(list(rng.choice(TOY, size=6)), rng)
        (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / r["path"], wave, 16000)
        out.append({**r, "duration": round(len(wave) / 16000, 4)})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    trials = [("c1", "pos1", "kitchen", 1, "", ""), ("c1", "pos2", "kitchen lights", 1, "", ""),
              ("c1", "easy", "weather", 0, "", ""), ("c1", "hard", "kitten", 0, "kitchen", 1),
              ("c2", "pos1", "weather", 1, "", ""), ("c2", "pos2", "lovely today", 1, "", ""),
              ("c2", "easy", "kitchen", 0, "", ""), ("c2", "hard", "whether", 0, "weather", 1),
              ("c3", "pos1", "window", 1, "", ""), ("c3", "easy", "lovely", 0, "", ""),
              ("c3", "hard", "windy", 0, "window", 2)]
    with open(root / "dev_trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "kind", "text", "label", "anchor", "phone_dist"])
        w.writerows([(f"audio/commonvoice/{c}.ogg", *rest) for c, *rest in trials])
    return root


@pytest.fixture
def pack(tmp_path):
    return write_pack(tmp_path / "pack")


# ------------------------------------------------------------------------------------ importer

def test_import_keeps_fields_pronounces_letters_and_reports_unpronounceable(pack, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="data_prep.realspeech"):
        utts, summary = prep.load_pack(pack)
    by_id = {u.id: u for u in utts}
    assert "mycroft_precise_bad" not in by_id and len(utts) == len(PACK_ROWS) - 1
    (bad_id, reason), = summary.unpronounceable
    assert bad_id == "mycroft_precise_bad" and "nothing to pronounce" in reason
    assert "mycroft_precise_bad" in caplog.text
    assert "skipped, text cannot be pronounced: 1" in summary.format()
    assert summary.kept == {"train": 4, "dev": 4}
    # AN4 spells: "a" is the letter A (EY1), not the article (AH0); elsewhere "a" is the article.
    assert by_id["an4_an1-aaa-b"].phonemes == ["B", "IY1", "EY1", "D", "IY1", "W", "AH1", "N"]
    assert by_id["picovoice_s2i_x1"].phonemes[0] == "AH0"
    u = by_id["picovoice_s2i_x1"]
    assert (u.speaker, u.split, u.kind) == ("unknown", "train", "sentence")
    assert u.extra["corpus"] == "picovoice_s2i" and u.extra["transcript_source"] == "whisper-base"
    assert u.extra["avg_logprob"] == -0.3 and u.path == str(pack / "audio/picovoice_s2i/x1.ogg")

    paths = prep.write_manifests(utts, tmp_path / "out")
    assert set(paths) == {"train", "dev"}
    first = json.loads(paths["dev"].read_text().splitlines()[0])
    assert first["path"].startswith("/")  # absolute in the file
    back = read_manifest(paths["dev"]) + read_manifest(paths["train"])
    assert sorted(b.id for b in back) == sorted(by_id) and all(b.extra == by_id[b.id].extra for b in back)


def test_import_filters(pack):
    utts, s = prep.load_pack(pack, corpora="an4,commonvoice")
    assert {u.extra["corpus"] for u in utts} == {"an4", "commonvoice"} and s.excluded_corpus == 4
    utts, s = prep.load_pack(pack, exclude=["mycroft_precise", "ljspeech"])
    assert not s.unpronounceable and s.excluded_corpus == 2
    utts, s = prep.load_pack(pack, whisper=False)
    assert s.excluded_whisper == 2 and all(u.extra["transcript_source"] == "human" for u in utts)
    utts, s = prep.load_pack(pack, min_logprob=-0.55)
    assert s.excluded_logprob == 1 and "picovoice_s2i_x1" in {u.id for u in utts}
    utts, s = prep.load_pack(pack, splits=("dev",))
    assert {u.split for u in utts} == {"dev"} and s.excluded_split == 5
    with pytest.raises(ValueError, match="unknown corpus name.*nope.*the pack has an4"):
        prep.load_pack(pack, corpora="an4,nope")


def test_import_errors(pack, tmp_path):
    (pack / "audio/ljspeech/LJ001-0001.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)1 audio file\(s\) not found.*ljspeech_LJ001-0001: .*0001.wav"):
        prep.load_pack(pack)
    assert prep.load_pack(pack, exclude="ljspeech")[0]  # fine without that corpus

    bad = write_pack(tmp_path / "bad", PACK_ROWS + [_row("an4_an3-aaa-b", "an4", "dev", "an4_aaa", "yes")])
    with pytest.raises(ValueError, match="speaker 'an4_aaa' is in several splits: dev, train"):
        prep.load_pack(bad)
    lines = (pack / "manifest.jsonl").read_text().splitlines()
    (pack / "manifest.jsonl").write_text("\n".join(lines[:2] + [lines[2].replace('"split": "dev"', '"split": "x"')]))
    with pytest.raises(ValueError, match=r"manifest.jsonl:3: split must be one of train/dev"):
        prep.read_pack(pack)
    with pytest.raises(FileNotFoundError, match="manifest.jsonl not found"):
        prep.read_pack(tmp_path / "nowhere")


def test_cli_writes_train_and_dev(pack, tmp_path, capsys):
    assert prep.main(["--pack", str(pack), "--out", str(tmp_path / "m"), "--no-whisper"]) == 0
    assert len(read_manifest(tmp_path / "m" / "train.jsonl")) == 2
    assert len(read_manifest(tmp_path / "m" / "dev.jsonl")) == 4
    out = capsys.readouterr().out
    assert "2 Whisper-labelled" in out and "cannot be pronounced: 1" in out and "mycroft_precise_bad" in out
    with pytest.raises(SystemExit):
        prep.main(["--pack", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")])


def _tar(src_dir, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src_dir, arcname=f"repo-abc123/{src_dir.name}")
    return archive


def test_rebuild_from_a_stand_in_source_tree(tmp_path):
    rng = np.random.default_rng(0)
    an4 = tmp_path / "src" / "an4"
    (an4 / "etc").mkdir(parents=True)
    clips = {"an4_clstk/mabc/an1-mabc-b": "ERASE B A ONE", "an4test_clstk/fxyz/an9-fxyz-b": "YES",
             "an4test_clstk/fxyz/an10-fxyz-b": None}  # no transcript: skipped
    for part, prefix in (("train", "an4_clstk"), ("test", "an4test_clstk")):
        ids = [i for i in clips if i.startswith(prefix + "/")]
        (an4 / "etc" / f"an4_{part}.fileids").write_text("".join(i + "\n" for i in ids))
        (an4 / "etc" / f"an4_{part}.transcription").write_text(
            "".join(f"<s> {clips[i]} </s> ({i.rsplit('/', 1)[1]})\n" for i in ids if clips[i]))
        for i in ids:
            (an4 / "wav" / i).parent.mkdir(parents=True, exist_ok=True)
            sf.write(an4 / "wav" / f"{i}.wav", toy_wave(["AA1", "B", "S"], rng), 16000)
    lj = tmp_path / "src" / "LJSpeech-1.1"
    (lj / "wavs").mkdir(parents=True)
    (lj / "metadata.csv").write_text("LJ001-0001|Printing, in 1990.|Printing, in nineteen ninety.\n"
                                     "LJ001-0002|Not here.|Not here.\n")  # only the first has audio
    sf.write(lj / "wavs" / "LJ001-0001.wav", soxr_22k(toy_wave(["K", "IY1"], rng)), 22050)
    sources = {"an4": prep.Source(_tar(an4, tmp_path / "an4.tar.gz").as_uri(), "*/an4"),
               "ljspeech": prep.Source(_tar(lj, tmp_path / "lj.tar.gz").as_uri(), "*/LJSpeech-1.1")}

    new = prep.rebuild_from_sources(tmp_path / "dl", tmp_path / "pack", ["an4", "ljspeech"], sources)
    rows = prep.read_pack(new)
    assert [r["id"] for r in rows] == ["an4_an1-mabc-b", "an4_an9-fxyz-b", "ljspeech_LJ001-0001"]
    an4_row, lj_row = rows[0], rows[2]
    assert (an4_row["text"], an4_row["speaker"], an4_row["split"]) == ("erase b a one", "an4_mabc", "train")
    assert rows[1]["split"] == "dev" and lj_row["text"] == "printing in nineteen ninety"
    assert lj_row["sample_rate_original"] == 22050 and lj_row["path"] == str(new / "audio/ljspeech/LJ001-0001.ogg")
    assert '"path": "audio/ljspeech/LJ001-0001.ogg"' in (new / "manifest.jsonl").read_text()  # relative, as the pack's
    audio, rate = sf.read(lj_row["path"])
    assert rate == 16000 and audio.ndim == 1 and abs(len(audio) / rate - lj_row["duration"]) < 0.01
    recorded = next((tmp_path / "dl" / "an4").glob("*.md5"))  # no published checksum: recorded, then checked
    assert len(recorded.read_text().strip()) == 32
    prep.rebuild_from_sources(tmp_path / "dl", tmp_path / "pack", ["an4"], sources)  # reuses the download
    utts, _ = prep.load_pack(new)
    assert {u.split for u in utts} == {"train", "dev"}
    with pytest.raises(ValueError, match="refusing to overwrite"):  # a pack not rebuilt here is left alone
        prep.write_pack([], write_pack(tmp_path / "other"))
    with pytest.raises(ValueError, match="cannot rebuild asterisk"):
        prep.rebuild_from_sources(tmp_path / "dl", tmp_path / "pack", ["asterisk"], sources)


def soxr_22k(wave):
    import soxr

    return soxr.resample(wave, 16000, 22050)


# ------------------------------------------------------------------------------------ trials

def test_read_trials(pack, tmp_path):
    trials = rs.read_trials(pack / "dev_trials.csv")
    assert len(trials) == 11 and trials[3] == rs.Trial(pack / "audio/commonvoice/c1.ogg", "hard", "kitten", 0,
                                                         "kitchen", 1)
    header = "path,kind,text,label,anchor,phone_dist\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "a.ogg,pos1,word,1,,\na.ogg,easy,other,yes,,\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: label must be 0 or 1, got 'yes'"):
        rs.read_trials(bad)
    bad.write_text(header + "a.ogg,easy,other,1,,\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: label 1 contradicts kind 'easy'"):
        rs.read_trials(bad)
    bad.write_text("path,kind,text\na.ogg,pos1,word\n")
    with pytest.raises(ValueError, match=r"bad.csv:1: missing column\(s\) label"):
        rs.read_trials(bad)
    bad.write_text(header + "a.ogg,pos3,word,1,,\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: kind 'pos3'"):
        rs.read_trials(bad)


# ------------------------------------------------------------------------------------ continuous

def _seg(i, start, end, text, phones):
    return rs.Segment(f"u{i}", start, end, tuple(text.split()), tuple(phones.split()))


def test_negative_regions_hits_and_false_alarms():
    segments = [_seg(0, 0.0, 3.0, "turn on the light", "T ER N AA N DH AH L AY T"),
                _seg(1, 3.0, 6.0, "good morning", "G UH D M AO R N IH NG"),
                _seg(2, 6.0, 8.0, "turn on turn on", "T ER N AA N T ER N AA N"),
                _seg(3, 8.0, 10.0, "returnon", "R IH T ER N AA N")]  # the phones, not the words
    truth = rs.keyword_truth("turn on", ["T", "ER1", "N", "AA1", "N"], segments)
    assert truth.occurrences == {0: 1, 2: 2} and truth.negative == (1,) and truth.ignored == (3,)
    assert truth.negative_seconds(segments) == 3.0

    def det(centre):
        return Detection("turn on", 0.9, centre - 0.5, centre + 0.5)

    dets = [det(1.0),  # hit in u0
            det(2.0),  # u0 again: its one occurrence is claimed, ignored
            det(3.3),  # in u1 but within the tolerance of u0: ignored (u0 all claimed)
            det(4.5),  # u1: a false alarm
            det(6.5), det(7.5),  # u2's two occurrences
            det(7.9),  # u2 a third time: ignored
            det(9.0),  # u3, ignored region
            det(11.0)]  # past the stream
    assert rs.count_region_hits(dets, truth, segments) == (3, 1)
    assert rs.count_region_hits([det(5.8)], truth, segments) == (1, 0)  # u1 near u2's start: u2's hit


def test_stream_joins_utterances_in_order(pack):
    utts, _ = prep.load_pack(pack, splits=("dev",))
    audio = rs.AudioCache()
    stream, segments = rs.build_stream(utts, audio)
    assert len(stream) / 16000 == pytest.approx(sum(u.duration for u in utts), abs=1e-3)
    assert [s.id for s in segments] == [u.id for u in utts] and segments[0].start == 0.0
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
    assert audio(utts[0].path) is audio(utts[0].path)  # decoded once


# ------------------------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory):
    torch.manual_seed(0)
    enc = ConformerConfig(d_model=32, num_layers=1, num_heads=2, ffn_dim=64, subsampling_channels=8, dropout=0.0)
    acoustic = AcousticModel(AcousticConfig(encoder=enc))
    p2v = P2V(torch.randn(NUM_PHONEMES, 32), torch.ones(NUM_PHONEMES), {})
    heads = {h: build_head(h, None, 32) for h in ("ced", "clad")}
    path = tmp_path_factory.mktemp("rs_model") / "tiny.pt"
    KWSModel(acoustic, p2v, heads, "ced", {"ced": 0.5, "clad": 0.5}).save(path)
    return path


def _write_fsdd(root):
    rng = np.random.default_rng(1)
    (root / "audio").mkdir(parents=True)
    rows = []
    for i, digit in enumerate(("zero", "one", "two", "three")):
        for spk in ("ann", "bob"):
            sf.write(root / "audio" / f"{i}_{spk}.wav", toy_wave(TOY[: 2 + i], rng), 16000)
            rows.append({"path": f"audio/{i}_{spk}.wav", "text": digit, "speaker": spk, "sample_rate": 16000,
                         "duration_s": 0.5})
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_evaluation_end_to_end(tiny_model_path, pack, tmp_path):
    fsdd = _write_fsdd(tmp_path / "fsdd")
    out = tmp_path / "out"
    result = rs.evaluate_realspeech(tiny_model_path, None, pack, fsdd, out=out)
    assert set(result["heads"]) == {"ced", "clad"}
    for r in result["heads"].values():
        assert r["easy"]["n_trials"] == 8 and r["hard"]["n_trials"] == 8 and r["hard_1word"]["n_trials"] == 6
        assert all(0 <= r[c]["auc"] <= 1 and 0 <= r[c]["eer"] <= 1 for c in rs.CONDITIONS)
        assert r["fsdd"]["n_trials"] == 80 and 0 <= r["fsdd"]["top1"] <= 1
        c = r["continuous"]
        assert c["n_occurrences"] == 5 and c["n_keywords"] == 5
        assert c["hours"] == pytest.approx(sum(u.duration for u in prep.load_pack(pack, splits=("dev",))[0]) / 3600,
                                           rel=1e-3)
        assert 0 <= c["recall_at_1fa_per_h"] <= 1 and c["negative_keyword_hours"] > 0
    assert result["per"]["n_utts"] == 4 and result["per"]["by_corpus"]["an4"]["n_utts"] == 1
    assert set(result["timing_s"]) >= {"load", "trials", "fsdd_load_and_score", "per", "continuous", "total"}
    saved = json.loads((out / "realspeech.json").read_text())
    assert saved["heads"]["clad"]["easy"] == result["heads"]["clad"]["easy"]
    md = (out / "realspeech.md").read_text()
    assert "| ced |" in md and "PER" in md and "keyword-hours" in md
    assert (out / "roc_ced.png").is_file() and (out / "det_clad.png").is_file()

    # The whole clip scored in one piece differs from the spotter's best window only in how.
    model = KWSModel.load(tiny_model_path)
    trials = rs.read_trials(pack / "dev_trials.csv")
    whole = rs.score_trials(model, trials, "ced", rs.AudioCache(), "whole")
    assert whole.shape == (11,) and np.all((0 <= whole) & (whole <= 1))


def test_cli_skips_parts_and_bounds_fsdd(tiny_model_path, pack, tmp_path, capsys):
    fsdd = _write_fsdd(tmp_path / "fsdd")
    out = tmp_path / "cli"
    assert rs.main(["--model", str(tiny_model_path), "--heads", "clad", "--pack", str(pack), "--fsdd", str(fsdd),
                    "--skip", "continuous,per", "--max-fsdd", "3", "--out", str(out), "--no-plots"]) == 0
    saved = json.loads((out / "realspeech.json").read_text())
    assert list(saved["heads"]) == ["clad"] and "continuous" not in saved["heads"]["clad"] and "per" not in saved
    assert saved["heads"]["clad"]["fsdd"]["n_clips"] == 3 and saved["fsdd_clips"] == {"scored": 3, "of": 8}
    assert "| clad |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        rs.main(["--model", str(tiny_model_path), "--pack", str(pack), "--skip", "nothing", "--out", str(out)])
    assert "unknown part(s) to skip nothing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        rs.main(["--model", str(tiny_model_path), "--heads", "nohead", "--pack", str(pack), "--out", str(out)])
