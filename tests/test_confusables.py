"""Seeded hard-negative generators (openkws.text.confusables)."""

import random

import pytest
import torch

from openkws.text import (
    REAL_PHONEMES,
    concatenate_keyword,
    is_homophone,
    mutate_phonemes,
    nearest_keywords,
    strip_stress,
    substitute_characters,
    to_phonemes,
)

KEYWORDS = {
    "turn on lights": "T ER1 N AA1 N L AY1 T S".split(),
    "hey": ["HH", "EY1"],
    "a": ["AH0"],
    "aha": ["AA2", "HH", "AA1"],
}


def levenshtein(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_is_homophone_ignores_stress_only():
    assert is_homophone(["R", "EH1", "D"], ["R", "EH0", "D"])
    assert is_homophone(["UW"], ["UW1"])
    assert not is_homophone(["R", "EH1", "D"], ["R", "IY1", "D"])
    assert not is_homophone(["R", "EH1"], ["R", "EH1", "D"])


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_mutations_are_1_to_3_edits_and_never_homophones(keyword):
    positive = KEYWORDS[keyword]
    distances = set()
    for seed in range(500):
        out = mutate_phonemes(positive, seed)
        assert not is_homophone(out, positive)
        assert set(out) <= set(REAL_PHONEMES)
        assert len(out) >= len(positive)  # replace or insert, never delete
        d = levenshtein(out, positive)
        assert 1 <= d <= min(3, len(positive))
        distances.add(d)
    assert distances == set(range(1, min(3, len(positive)) + 1))


def _check_single_edit(positive, out):
    """The one edit of a max_edits=1 mutation obeys the neighbour rule (on stress-free bases)."""
    base = [strip_stress(p) for p in positive]
    if len(out) == len(positive):  # replace at u
        (u,) = [i for i, (a, b) in enumerate(zip(positive, out)) if a != b]
    else:  # insert before u
        (u,) = {i for i in range(len(out)) if out[:i] + out[i + 1 :] == positive}
    assert strip_stress(out[u]) not in base[max(u - 1, 0) : u + 2], (positive, out, u)


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_neighbour_rule_and_no_stress_only_swaps(keyword):
    positive = KEYWORDS[keyword]
    for seed in range(300):
        _check_single_edit(positive, mutate_phonemes(positive, seed, max_edits=1))
    # A lone vowel can never turn into another stress of itself.
    outs = {tuple(mutate_phonemes(["AH0"], seed)) for seed in range(300)}
    assert not outs & {("AH1",), ("AH2",), ("AH0",)}


def test_mutation_is_deterministic_by_seed():
    positive = KEYWORDS["turn on lights"]
    assert mutate_phonemes(positive, 7) == mutate_phonemes(positive, random.Random(7))
    assert len({tuple(mutate_phonemes(positive, s)) for s in range(50)}) > 40
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert [mutate_phonemes(positive, rng_a) for _ in range(5)] == [
        mutate_phonemes(positive, rng_b) for _ in range(5)
    ]


def test_mutation_rejects_bad_input():
    with pytest.raises(ValueError):
        mutate_phonemes([], 0)
    with pytest.raises(ValueError, match="'XX'"):
        mutate_phonemes(["T", "XX"], 0)
    with pytest.raises(ValueError, match="max_edits"):
        mutate_phonemes(["T"], 0, max_edits=0)
    with pytest.raises(TypeError):
        mutate_phonemes(["T"], None)


@pytest.mark.parametrize("text", ["turn on lights", "cat", "see", "zorblax"])
def test_character_substitution_never_sounds_the_same(text):
    positive = to_phonemes(text)
    for seed in range(40):
        new_text, phonemes = substitute_characters(text, seed)
        assert new_text != " ".join(text.split())
        assert len(new_text) == len(text)  # letters swapped one for one
        assert phonemes == to_phonemes(new_text)
        assert not is_homophone(phonemes, positive)
    assert substitute_characters(text, 5) == substitute_characters(text, random.Random(5))


def test_character_substitution_normalises_first_and_uses_the_lexicon():
    new_text, _ = substitute_characters("Turn on 3 lights!", 1)
    assert new_text.count(" ") == 3 and "3" not in new_text
    lexicon = {"lights": "L AY1 T Z"}
    for seed in range(20):
        new_text, phonemes = substitute_characters("lights on", seed, lexicon=lexicon)
        assert not is_homophone(phonemes, ["L", "AY1", "T", "Z", "AA1", "N"])


def test_character_substitution_impossible():
    with pytest.raises(ValueError, match="no letter"):
        substitute_characters("hhh", 0)
    with pytest.raises(ValueError, match="nothing to pronounce"):
        substitute_characters("!!!", 0)


def test_concatenation_contains_the_keyword_as_prefix_or_suffix():
    positive, other = ["K", "AE1", "T"], ["D", "AO1", "G"]
    outs = {tuple(concatenate_keyword(positive, other, seed)) for seed in range(20)}
    assert outs == {tuple(positive + other), tuple(other + positive)}
    assert concatenate_keyword(positive, other, 4) == concatenate_keyword(
        positive, other, random.Random(4)
    )
    with pytest.raises(ValueError):
        concatenate_keyword(positive, [], 0)
    with pytest.raises(ValueError):
        concatenate_keyword([], other, 0)


def test_nearest_keywords_by_cosine_excluding_itself():
    table = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    assert nearest_keywords(table[0], table, 2).tolist() == [1, 3]
    # Scale does not matter (cosine), and a batch of queries gives one row each.
    assert nearest_keywords(table[:3] * 5, table, 1).tolist() == [[1], [0], [3]]
    assert nearest_keywords(table[0], table, 2, exclude=[1]).tolist() == [3, 2]
    mask = torch.tensor([False, False, False, True, False])
    assert nearest_keywords(table[0], table, 2, exclude=mask).tolist() == [1, 2]


def test_nearest_keywords_skips_identical_embeddings_and_checks_k():
    table = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # rows 0, 1: same direction
    assert nearest_keywords(table[0], table, 1).tolist() == [2]
    with pytest.raises(ValueError, match="only 1"):
        nearest_keywords(table[0], table, 2)
    with pytest.raises(ValueError, match="expected query"):
        nearest_keywords(torch.zeros(3), table, 1)
