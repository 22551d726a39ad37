"""End to end: the recipe's smoke config on the embedded synthetic corpus, and on a tiny tree in
LibriSpeech's layout (TTS speech) with a tiny official-format LibriPhrase test CSV."""

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "recipes" / "libriphrase" / "run.sh"
HEADS = {"ctc", "ced", "clad"}

pytestmark = pytest.mark.slow


def _run(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(["bash", str(RUN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _check_results(path: Path, corpus: str):
    results = json.loads(path.read_text())
    assert results["corpus"] == corpus and set(results["heads"]) == HEADS
    for head in HEADS:
        for split in ("easy", "hard"):
            r = results["heads"][head][split]
            assert 0.0 <= r["auc"] <= 1.0 and 0.0 <= r["eer"] <= 1.0 and r["n_trials"] > 0
    return results


def test_smoke_recipe_on_synthetic_corpus_and_a_real_pack(tmp_path):
    from test_realspeech import write_pack

    pack = write_pack(tmp_path / "pack")
    _run(["--config", "smoke", "--real-pack", str(pack)], tmp_path)
    exp = tmp_path / "exp" / "synth_smoke"
    results = _check_results(exp / "results.json", "synth")
    assert results["acoustic_init"] == "hama"  # the synthetic default fine-tunes the pretrained model
    # the real pack's train split was trained on, its dev trials calibrated and scored the model
    assert "data/realspeech/train.jsonl" in (exp / "ctc" / "config.yaml").read_text()
    assert set(results["realspeech"]["heads"]) == HEADS
    assert results["realspeech"]["heads"]["ctc"]["easy"]["n_trials"] > 0
    from openkws.model import KWSModel
    model = KWSModel.load(exp / "model.pt")
    assert "calibration" in model.info and model.default_head in HEADS
    assert "Real-speech" in (exp / "results.md").read_text()
    # every stage left its marker, so a re-run skips them all
    proc = _run(["--config", "smoke", "--real-pack", str(pack)], tmp_path)
    assert proc.stdout.count("done earlier, skipping") == 8


def test_without_a_real_pack_the_recipe_says_so(tmp_path):
    proc = _run(["--config", "smoke", "--stop-stage", "1", "--real-pack", str(tmp_path / "nowhere")], tmp_path)
    assert "synthetic speech only" in proc.stdout


# A tiny LibriSpeech: three subsets, three TTS speakers each, sentences that share phrases.
SENTENCES = ["turn on the kitchen lights now", "please play some music for me",
             "open the garage door slowly", "the kitchen lights are very bright"]


def _librispeech_tree(root: Path) -> list[str]:
    from data_prep.tts import available_voices, synthesize
    from openkws.audio import load_audio

    voices = [v for v in available_voices() if v.engine == "espeak"][::17][:9]
    assert len(voices) == 9, "needs the espeakng-loader voices"
    speakers = []
    for s, (subset, voice) in enumerate(zip(["train-clean-100"] * 3 + ["dev-clean"] * 3 + ["train-other-500"] * 3,
                                            voices)):
        spk, chapter = str(100 + s), "7"
        folder = root / "LibriSpeech" / subset / spk / chapter
        folder.mkdir(parents=True)
        lines = []
        for u, text in enumerate(SENTENCES):
            audio, sr = synthesize(voice, text)
            utt = f"{spk}-{chapter}-{u:04d}"
            sf.write(folder / f"{utt}.flac", load_audio(audio, sr), 16000)
            lines.append(f"{utt} {text.upper()}")
        (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
        speakers.append((subset, spk))
    return [spk for subset, spk in speakers if subset == "train-other-500"]


def _official_csv(folder: Path, test_speakers: list[str]) -> None:
    """1-word and 2-word official-format files over the train-other-500 speakers."""
    a, b, c = test_speakers

    def clip(spk, utt):
        return f"train-other-500/train-other-500/{spk}/7/{spk}-7-{utt:04d}_0.wav"

    cols = ["anchor", "anchor_spk", "anchor_text", "anchor_dur", "comparison", "comparison_spk",
            "comparison_text", "comparison_dur", "type", "target", "class"]
    rows = {1: [(a, 0, "kitchen", b, 3, "kitchen", "diffspk_positive", 1),
                (a, 0, "kitchen", c, 1, "music", "diffspk_easyneg", 0),
                (a, 0, "kitchen", b, 2, "garage", "diffspk_hardneg", 0)],
            2: [(a, 0, "kitchen lights", c, 3, "kitchen lights", "diffspk_positive", 1),
                (a, 0, "kitchen lights", b, 1, "some music", "diffspk_easyneg", 0),
                (a, 0, "kitchen lights", c, 2, "garage door", "diffspk_hardneg", 0)],
            3: [(a, 0, "the kitchen lights", b, 3, "the kitchen lights", "diffspk_positive", 1),
                (a, 0, "the kitchen lights", c, 1, "play some music", "diffspk_easyneg", 0),
                (a, 0, "the kitchen lights", b, 2, "open the garage", "diffspk_hardneg", 0)],
            4: [(a, 0, "turn on the kitchen", b, 0, "turn on the kitchen", "diffspk_positive", 1),
                (a, 0, "turn on the kitchen", c, 1, "please play some music", "diffspk_easyneg", 0),
                (a, 0, "turn on the kitchen", c, 3, "the kitchen lights are", "diffspk_hardneg", 0)]}
    for n, items in rows.items():
        with open(folder / f"libriphrase_diffspk_all_{n}word.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for s1, u1, t1, s2, u2, t2, kind, target in items:
                w.writerow([clip(s1, u1), s1, t1, 0.5, clip(s2, u2), s2, t2, 0.5, kind, target, n])


def test_librispeech_path_on_a_tiny_tree(tmp_path):
    test_speakers = _librispeech_tree(tmp_path / "corpus")
    official = tmp_path / "libriphrase"
    official.mkdir()
    _official_csv(official, test_speakers)
    _run(["--config", "smoke", "--corpus", "librispeech", "--data-root", str(tmp_path / "corpus"),
          "--libriphrase-csv", str(official)], tmp_path)
    exp = tmp_path / "exp" / "librispeech_smoke"
    results = _check_results(exp / "results.json", "librispeech")
    # the official rows were re-cut from train-other-500 with our own CTC word alignments
    phrases = [json.loads(line) for line in (exp / "phrases" / "test.jsonl").read_text().splitlines()]
    assert {p["text"] for p in phrases} <= {"kitchen", "music", "garage", "kitchen lights", "some music",
                                            "garage door", "the kitchen lights", "play some music",
                                            "open the garage", "turn on the kitchen", "please play some music",
                                            "the kitchen lights are"}
    assert results["heads"]["ced"]["easy"]["n_trials"] > 0

