"""LibriPhrase building: alignment import, phrase extraction, clips, pairs, official test loader."""
import csv
import logging
import os
import random

import numpy as np
import pytest
import soundfile as sf

from data_prep.alignments import (
    import_libriphrase_csv,
    import_textgrids,
    read_textgrid,
    read_word_alignments,
    write_word_alignments,
)
from data_prep.libriphrase import (
    EASY_NEG,
    HARD_NEG,
    OFFICIAL_ROWS,
    PAIR_COLUMNS,
    POSITIVE,
    PhraseSegment,
    build_pairs,
    cut_official_test,
    cut_phrase_clips,
    edit_distances,
    extract_phrases,
    load_official_test,
    max_hard_distance,
    nearest_texts,
    read_pairs,
    write_pairs,
)
from openkws.data.manifest import Utterance, check_manifest
from openkws.metrics import edit_distance
from openkws.text import strip_stress

SR = 16000


def _utt(uid, text="", speaker="1", path="x.flac", phonemes=None, kind="sentence", duration=1.0,
         split="train"):
    return Utterance(id=uid, path=path, duration=duration, text=text, phonemes=phonemes or [],
                     speaker=speaker, kind=kind, split=split)


def _tone(seconds, sr=SR, freq=440.0):
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --------------------------------------------------------------------------- alignments

TEXTGRID_LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 2.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 2.5
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.4
            text = ""
        intervals [2]:
            xmin = 0.4
            xmax = 1.1
            text = "CHAPTER"
        intervals [3]:
            xmin = 1.1
            xmax = 1.5
            text = "<unk>"
        intervals [4]:
            xmin = 1.5
            xmax = 2.5
            text = "one"
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 2.5
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 2.5
            text = "sil"
'''

TEXTGRID_SHORT = '''File type = "ooTextFile"
Object class = "TextGrid"

0
1.0
<exists>
1
"IntervalTier"
"words"
0
1.0
2
0
0.25
"sil"
0.25
1.0
"say ""hi"""
'''


def test_textgrid_long_and_short_formats(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "20-205-0000.TextGrid").write_text(TEXTGRID_LONG)
    (tmp_path / "a" / "20-205-0001.TextGrid").write_bytes(TEXTGRID_SHORT.encode("utf-16"))
    ali = import_textgrids(tmp_path)
    assert ali["20-205-0000"] == [("", 0.0, 0.4), ("chapter", 0.4, 1.1), ("<unk>", 1.1, 1.5), ("one", 1.5, 2.5)]
    assert ali["20-205-0001"] == [("", 0.0, 0.25), ('say "hi"', 0.25, 1.0)]
    assert read_textgrid(tmp_path / "a" / "b" / "20-205-0000.TextGrid", tier="phones") == [("", 0.0, 2.5)]
    with pytest.raises(ValueError, match="no interval tier named 'syllables'.*words, phones"):
        read_textgrid(tmp_path / "a" / "b" / "20-205-0000.TextGrid", tier="syllables")
    bad = tmp_path / "bad.TextGrid"
    bad.write_text(TEXTGRID_LONG[:400])
    with pytest.raises(ValueError, match="bad.TextGrid.*truncated"):
        read_textgrid(bad)


def test_libriphrase_csv_and_jsonl_roundtrip(tmp_path):
    src = tmp_path / "librispeech_other_train_500h_all_utt.csv"
    src.write_text("audio_filename,start,end,text\n"
                   "train-other-500/train-other-500/20/205/20-205-0000.wav,0.0,0.3,\n"
                   "train-other-500/train-other-500/20/205/20-205-0000.wav,0.61,0.9,carriage\n"
                   "train-other-500/train-other-500/20/205/20-205-0000.wav,0.3,0.61,the\n"
                   "train-other-500/train-other-500/20/205/20-205-0001.wav,0.0,0.5,<unk>\n")
    ali = import_libriphrase_csv(src)
    assert ali == {"20-205-0000": [("", 0.0, 0.3), ("the", 0.3, 0.61), ("carriage", 0.61, 0.9)],
                   "20-205-0001": [("<unk>", 0.0, 0.5)]}
    out = tmp_path / "ali.jsonl"
    write_word_alignments(out, ali)
    assert read_word_alignments(out) == ali
    out.write_text('{"id": "u1", "words": [["a", 0.5, 0.2]]}\n')
    with pytest.raises(ValueError, match="ali.jsonl:1: bad word entry"):
        read_word_alignments(out)
    src.write_text("file,start,end,text\n")
    with pytest.raises(ValueError, match="missing column.*audio_filename"):
        import_libriphrase_csv(src)


# --------------------------------------------------------------------------- phrases

def test_extract_phrases_rules(caplog):
    ali = {
        "1-2-0001": [("", 0.0, 0.3), ("alpha", 0.3, 0.6), ("beta", 0.6, 1.0), ("", 1.0, 1.2),
                     ("gamma", 1.2, 1.8), ("<unk>", 1.8, 2.0), ("delta", 2.0, 2.3), ("epsilon", 2.3, 2.5),
                     ("zeta", 2.5, 3.6), ("eta", 3.6, 4.7)],
        # six 0.15 s words: only 4-word runs reach 0.5 s, and 5 words are never taken
        "1-2-0002": [(w, 0.15 * i, 0.15 * (i + 1)) for i, w in enumerate("a b c d e f".split())],
    }
    utts = [_utt("1-2-0001"), _utt("1-2-0002"), _utt("1-2-0003")]
    with caplog.at_level(logging.WARNING):
        segs = extract_phrases(utts, ali)
    assert "1 of 3 utterances have no word alignment" in caplog.text
    by_utt = {}
    for s in segs:
        by_utt.setdefault(s.utt_id, []).append(s)
    assert {s.text for s in by_utt["1-2-0001"]} == {
        "alpha beta", "gamma", "delta epsilon", "delta epsilon zeta", "epsilon zeta", "zeta", "eta"}
    assert [s.text for s in by_utt["1-2-0002"]] == ["a b c d", "b c d e", "c d e f"]
    s = next(s for s in segs if s.text == "delta epsilon zeta")
    assert (s.start, s.end, s.word_dur) == (2.0, 3.6, pytest.approx(1.6))
    assert [s.id for s in by_utt["1-2-0001"]] == [f"1-2-0001_{k}" for k in range(7)]
    for s in segs:
        assert 0.5 - 1e-9 <= s.word_dur <= 2.0 + 1e-9 and 1 <= len(s.text.split()) <= 4


def test_extract_phrases_max_gap():
    ali = {"u": [("one", 0.0, 0.3), ("two", 0.8, 1.1)]}  # a pause that the aligner left unmarked
    assert [s.text for s in extract_phrases([_utt("u")], ali)] == ["one two"]
    assert extract_phrases([_utt("u")], ali, max_gap=0.2) == []


def test_cut_phrase_clips_resumable_and_resampled(tmp_path):
    src16, src8 = tmp_path / "a.flac", tmp_path / "b.flac"
    sf.write(src16, _tone(3.0), SR)
    sf.write(src8, _tone(3.0, sr=8000), 8000)
    segs = [PhraseSegment("a_0", "a", str(src16), 0.5, 1.25, "hello there", "spk:1+x", "train", 0.7),
            PhraseSegment("a_1", "a", str(src16), 2.5, 3.2, "world", "spk:1+x", "train", 0.6),
            PhraseSegment("b_0", "b", str(src8), 1.0, 1.6, "world", "7", "dev", 0.6)]
    utts = cut_phrase_clips(segs, tmp_path / "clips")
    assert [u.id for u in utts] == ["a_0", "a_1", "b_0"]
    for u, s in zip(utts, segs):
        info = sf.info(u.path)
        assert info.samplerate == SR and info.format == "FLAC"
        want = min(s.end, 3.0) - s.start  # a segment running past the end is clipped to the audio
        assert u.duration == pytest.approx(want, abs=1 / SR)
        assert u.kind == "phrase" and u.extra["source"] == s.utt_id and u.speaker == s.speaker
        assert u.phonemes and u.split == s.split
    check_manifest(utts)
    stamp = os.stat(utts[0].path).st_mtime_ns
    again = cut_phrase_clips(segs, tmp_path / "clips")  # resumed: nothing is rewritten
    assert os.stat(again[0].path).st_mtime_ns == stamp and again == utts
    with pytest.raises(ValueError, match="outside the 3.00 s of audio"):
        cut_phrase_clips([PhraseSegment("a_9", "a", str(src16), 3.5, 4.0, "late", "1", "train", 0.5)],
                         tmp_path / "clips")


# --------------------------------------------------------------------------- pairs

# Controlled pronunciations: "cat" has four neighbours at distance 1 (the three first by text
# order are its hard negatives), a homophone "kat", and far words.
LEXICON = {
    "cat": "K AE1 T", "kat": "K AE1 T", "bat": "B AE1 T", "cap": "K AE1 P", "coat": "K OW1 T",
    "cut": "K AH1 T", "dog": "D AO1 G", "kitten": "K IH1 T AH0 N", "sun": "S AH1 N",
    "red": "R EH1 D", "blue": "B L UW1",
}


def _phrase_corpus(n_speakers=5, texts=None):
    texts = texts or [*LEXICON, "red cat", "red bat", "blue dog", "blue cat", "red sun"]
    utts = []
    for s in range(n_speakers):
        for t in texts:
            phon = [p for w in t.split() for p in LEXICON[w].split()]
            utts.append(_utt(f"s{s}_{t.replace(' ', '-')}", t, f"s{s}", phonemes=phon, kind="phrase",
                             duration=0.5 + 0.1 * len(t)))
    return utts


def _stripped(text):
    return [strip_stress(p) for w in text.split() for p in LEXICON[w].split()]


def test_build_pairs_rules():
    utts = _phrase_corpus()
    rows = build_pairs(utts, seed=1)
    assert rows and all(list(r) == list(PAIR_COLUMNS) for r in rows)
    texts_by_class = {}
    for u in utts:
        texts_by_class.setdefault(len(u.text.split()), set()).add(u.text)
    for r in rows:
        n = r["class"]
        assert len(r["anchor_text"].split()) == n == len(r["comparison_text"].split())
        assert r["target"] == int(r["type"] == POSITIVE)
        d = edit_distance(_stripped(r["anchor_text"]), _stripped(r["comparison_text"]))
        if r["type"] == POSITIVE:
            assert r["anchor_spk"] != r["comparison_spk"] and r["anchor_text"] == r["comparison_text"]
        elif r["type"] == EASY_NEG:
            assert r["anchor_text"] != r["comparison_text"] and d > 0  # homophones are not negatives
        else:
            assert 0 < d <= max_hard_distance(n)
    # hard negatives of an anchor text are its nearest texts (ties by text order), same class
    for text in texts_by_class[1] | texts_by_class[2]:
        got = {r["comparison_text"] for r in rows if r["type"] == HARD_NEG and r["anchor_text"] == text}
        cands = sorted((edit_distance(_stripped(text), _stripped(t)), t)
                       for t in texts_by_class[len(text.split())])
        want = [t for d, t in cands if 0 < d <= max_hard_distance(len(text.split()))][:3]
        assert got == set(want), text
    assert {r["comparison_text"] for r in rows if r["type"] == HARD_NEG and r["anchor_text"] == "cat"} \
        == {"bat", "cap", "coat"}
    # one clip per speaker and phrase: 1 anchor x 3 positives, 3 easy and 3 hard negatives each
    episode = [r for r in rows if r["anchor_spk"] == "s0" and r["anchor_text"] == "dog"]
    assert sorted(r["type"] for r in episode) == sorted([POSITIVE] * 3 + [EASY_NEG] * 3 + [HARD_NEG] * 3)
    assert len({r["comparison_spk"] for r in episode if r["type"] == POSITIVE}) == 3


def test_build_pairs_deterministic_and_thresholds():
    utts = _phrase_corpus()
    rows = build_pairs(utts, seed=3)
    shuffled = utts[:]
    random.Random(0).shuffle(shuffled)
    assert build_pairs(shuffled, seed=3) == rows
    assert build_pairs(utts, seed=4) != rows
    # the original rule: 2 clips of the speaker wanted; only s0 said "dog" twice
    extra = _utt("s0_dog-again", "dog", "s0", phonemes=LEXICON["dog"].split(), kind="phrase")
    rows2 = build_pairs([*utts, extra], seed=0, min_anchor_clips=2)
    assert {(r["anchor_spk"], r["anchor_text"]) for r in rows2} == {("s0", "dog")}
    assert sum(r["type"] == POSITIVE for r in rows2) == 2 * 3  # 2 anchors x 3 other speakers
    # too few other speakers: no episodes
    assert build_pairs(_phrase_corpus(n_speakers=3), seed=0) == []
    assert build_pairs(_phrase_corpus(n_speakers=3), seed=0, num_pos=2)


def test_build_pairs_input_checks(caplog):
    with pytest.raises(ValueError, match="no kind='phrase' utterances among the 1 given.*sentence"):
        build_pairs([_utt("u", "cat")])
    with caplog.at_level(logging.INFO):
        rows = build_pairs([*_phrase_corpus(), _utt("u", "cat")])
    assert "ignoring 1 utterances that are not phrases" in caplog.text and rows


def test_pairs_csv_roundtrip(tmp_path):
    rows = build_pairs(_phrase_corpus(), seed=0)
    write_pairs(tmp_path / "pairs.csv", rows)
    assert read_pairs(tmp_path / "pairs.csv") == rows
    (tmp_path / "bad.csv").write_text(",".join(PAIR_COLUMNS) + "\na,1,x,0.5,b,2,y,0.5,diffspk_positive,0,1\n")
    with pytest.raises(ValueError, match="bad.csv:2: type 'diffspk_positive' with target 0"):
        read_pairs(tmp_path / "bad.csv")


def test_edit_distances_and_nearest_texts_match_brute_force():
    rng = np.random.default_rng(0)
    for m in range(5):
        for n in range(5):
            a, b = rng.integers(0, 3, (4, m)), rng.integers(0, 3, (6, n))
            ref = [[edit_distance(list(x), list(y)) for y in b] for x in a]
            assert edit_distances(a, b).tolist() == ref
    phon = {f"t{i:02d}": tuple(rng.choice(["A", "B", "C"], rng.integers(1, 6))) for i in range(40)}
    texts = sorted(phon)
    got = nearest_texts(texts[:10], texts, phon, k=3, max_dist=2)
    for a in texts[:10]:
        cands = sorted((edit_distance(phon[a], phon[t]), t) for t in texts)
        assert got[a] == [t for d, t in cands if 0 < d <= 2][:3]


# --------------------------------------------------------------------------- official test set

OFFICIAL_SAMPLE = [  # (class, anchor clip, spk, text, comparison clip, spk, text, type)
    (1, "1006/135212/1006-135212-0068_0", "1006", "carriage", "2541/185493/2541-185493-0021_0", "2541",
     "recognized", EASY_NEG),
    (1, "1006/135212/1006-135212-0068_0", "1006", "carriage", "4705/94462/4705-94462-0028_1", "4705",
     "carriage", POSITIVE),
    (2, "978/125137/978-125137-0067_3", "978", "the cause", "102/1/102-1-0001_0", "102", "the car", HARD_NEG),
]


def _write_official(csv_dir, sample=OFFICIAL_SAMPLE, classes=(1, 2, 3, 4)):
    csv_dir.mkdir(parents=True, exist_ok=True)
    for n in classes:
        with open(csv_dir / f"libriphrase_diffspk_all_{n}word.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(PAIR_COLUMNS)
            for cls, a, aspk, at, c, cspk, ct, kind in sample:
                if cls == n:
                    w.writerow([f"train-other-500/train-other-500/{a}.wav", aspk, at, 0.6,
                                f"train-other-500/train-other-500/{c}.wav", cspk, ct, 0.7, kind,
                                int(kind == POSITIVE), cls])


def test_load_official_test(tmp_path):
    _write_official(tmp_path / "csv")
    audio_root = tmp_path / "audio"
    clips = {x for row in OFFICIAL_SAMPLE for x in (row[1], row[4])}
    for rel in clips:  # unzipping adds a wrapper folder; the loader looks one level down
        path = audio_root / "LibriPhrase_evalset" / "train-other-500" / "train-other-500" / f"{rel}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _tone(0.7), SR)
    with pytest.warns(UserWarning) as record:
        rows, utts = load_official_test(tmp_path / "csv", audio_root)
    messages = " ".join(str(w.message) for w in record)
    for n in (1, 2, 3, 4):
        assert f"official {n}-word file has {OFFICIAL_ROWS[n]}" in messages
    assert len(rows) == 3 and rows[0]["anchor"] == "1006-135212-0068_0" and rows[0]["target"] == 0
    by_id = {u.id: u for u in utts}
    assert len(by_id) == len(utts) == len(clips)
    for r in rows:
        for side in ("anchor", "comparison"):
            u = by_id[r[side]]
            assert os.path.isfile(u.path) and u.text == r[f"{side}_text"] and u.speaker == r[f"{side}_spk"]
    assert by_id["978-125137-0067_3"].phonemes[:2] == ["DH", "AH0"]
    check_manifest(utts)

    os.remove(by_id["102-1-0001_0"].path)
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="1 of 5 LibriPhrase clips are missing"):
        load_official_test(tmp_path / "csv", audio_root)


def test_load_official_test_missing_files_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_official_test(tmp_path / "csv", tmp_path)
    msg = str(e.value)
    assert "libriphrase_diffspk_all_1word.csv" in msg and "drive.google.com" in msg
    assert "charsiu/libriphrase" in msg and "E4rris/LibriPhrase_evalset" in msg
    _write_official(tmp_path / "csv")
    with pytest.raises(FileNotFoundError, match="audio folder not found(.|\n)*LibriPhrase_evalset.zip"):
        load_official_test(tmp_path / "csv", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="not found(.|\n)*huggingface"):
        load_official_test(tmp_path / "csv", tmp_path / "empty")


@pytest.mark.filterwarnings("ignore:.*rows, but the official")
def test_cut_official_test_from_librispeech(tmp_path):
    sample = [(1, "7/8/7-8-0001_0", "7", "carriage", "9/8/9-8-0002_4", "9", "carriage", POSITIVE),
              (1, "7/8/7-8-0001_0", "7", "carriage", "9/8/9-8-0002_5", "9", "horse", EASY_NEG)]
    _write_official(tmp_path / "csv", sample, classes=(1,))
    sources, ali = [], {}
    for uid in ("7-8-0001", "9-8-0002"):
        path = tmp_path / "LibriSpeech" / "train-other-500" / f"{uid}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _tone(4.0), SR)
        sources.append(_utt(uid, "x", uid.split("-")[0], str(path), ["AH0"], duration=4.0, split="test"))
    # "carriage" occurs twice in 9-8-0002: the occurrence whose duration is nearest the CSV's 0.7 wins
    ali["7-8-0001"] = [("the", 0.2, 0.5), ("carriage", 0.5, 1.1)]
    ali["9-8-0002"] = [("carriage", 0.1, 0.5), ("", 0.5, 1.0), ("carriage", 1.0, 1.72), ("horse", 2.0, 2.7)]
    rows, utts = cut_official_test(tmp_path / "csv", sources, ali, tmp_path / "clips", classes=(1,))
    by_id = {u.id: u for u in utts}
    assert set(by_id) == {"7-8-0001_0", "9-8-0002_4", "9-8-0002_5"}
    assert by_id["9-8-0002_4"].extra["start"] == 1.0 and by_id["9-8-0002_4"].duration == pytest.approx(0.72)
    assert by_id["9-8-0002_5"].extra["official_path"] == "train-other-500/train-other-500/9/8/9-8-0002_5.wav"
    assert [r["comparison"] for r in rows] == ["9-8-0002_4", "9-8-0002_5"]

    del ali["9-8-0002"][3]  # "horse" can no longer be found
    with pytest.raises(ValueError, match="1 of 3 LibriPhrase clips cannot be cut(.|\n)*'horse'"):
        cut_official_test(tmp_path / "csv", sources, ali, tmp_path / "clips", classes=(1,))
    with pytest.warns(UserWarning, match="dropping 1 of 2 rows"):
        rows, _ = cut_official_test(tmp_path / "csv", sources, ali, tmp_path / "clips", classes=(1,),
                                    allow_missing=True)
    assert [r["type"] for r in rows] == [POSITIVE]
