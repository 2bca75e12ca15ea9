"""Tests for caption normalization, tokenization and the vocabulary in fiq_env.text."""

from __future__ import annotations

import numpy as np
import pytest

from fiq_env.errors import ConfigError
from fiq_env.text import EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Vocabulary, normalize_caption, tokenize

NORMALIZATION_CASES = [
    ("is darker", "is darker"),
    ("  is   darker\twith\nstraps ", "is darker with straps"),
    ("Is DARKER", "is darker"),
    ("is darker.", "is darker"),
    ("is darker!!!", "is darker"),
    ("is red, with straps;", "is red with straps"),
    ("beige clair\u00e9", "beige claire"),
    ("na\u00efve caf\u00e9", "naive cafe"),
    ("stra\u00dfe", "strasse"),
    ("has a v-neck", "has a v-neck"),
    ("doesn't have sleeves", "doesn't have sleeves"),
    ("doesn\u2019t have sleeves", "doesn't have sleeves"),
    ("longer\u2014and darker", "longer and darker"),
    ("has 3/4 sleeves", "has 3 4 sleeves"),
    ("'cute' top", "cute top"),
    ("\u2764 red", "red"),
    ("", ""),
    ("   ", ""),
    ("...", ""),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZATION_CASES, ids=[repr(raw) for raw, _ in NORMALIZATION_CASES])
def test_normalize_caption_table(raw: str, expected: str) -> None:
    assert normalize_caption(raw) == expected


def test_normalize_caption_idempotent() -> None:
    for raw, _ in NORMALIZATION_CASES:
        once = normalize_caption(raw)
        assert normalize_caption(once) == once


def test_tokenize_empty_caption() -> None:
    assert tokenize("  .  ") == []


def test_tokenize_splits_words() -> None:
    assert tokenize("Is Darker, with LONG sleeves.") == ["is", "darker", "with", "long", "sleeves"]


def test_vocabulary_build_order() -> None:
    vocabulary = Vocabulary.build(["red dress", "red top", "blue top", "red"])
    assert vocabulary.words[len(SPECIAL_TOKENS) :] == ["red", "top", "blue", "dress"]


def test_vocabulary_min_count() -> None:
    vocabulary = Vocabulary.build(["red dress", "red top"], min_count=2)
    assert "dress" not in vocabulary


def test_vocabulary_extra_words_kept() -> None:
    vocabulary = Vocabulary.build(["red dress"], min_count=5, extra_words=["sleeves"])
    assert "sleeves" in vocabulary


def test_vocabulary_rejects_duplicates() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        Vocabulary([*SPECIAL_TOKENS, "red", "red"])


def test_vocabulary_rejects_missing_specials() -> None:
    with pytest.raises(ConfigError, match="must start with"):
        Vocabulary(["red", "blue"])


def test_encode_pads_and_truncates() -> None:
    vocabulary = Vocabulary.build(["is red with long sleeves"])
    short = vocabulary.encode("is red", length=4)
    long = vocabulary.encode("is red with long sleeves", length=3)
    assert short[2:].tolist() == [PAD_ID, PAD_ID]
    assert long.tolist() == [vocabulary.id_of("is"), vocabulary.id_of("red"), vocabulary.id_of("with")]


def test_encode_unknown_word() -> None:
    vocabulary = Vocabulary.build(["is red"])
    assert vocabulary.encode("is purple", length=2).tolist() == [vocabulary.id_of("is"), UNK_ID]


def test_encode_batch_shape() -> None:
    vocabulary = Vocabulary.build(["is red"])
    assert vocabulary.encode_batch(["is red", "red", ""], length=5).shape == (3, 5)


def test_decode_roundtrip() -> None:
    vocabulary = Vocabulary.build(["is red with long sleeves"])
    ids = vocabulary.encode("Is red, with long sleeves.", length=8, add_eos=True)
    assert vocabulary.decode(ids) == "is red with long sleeves"


def test_decode_stops_at_eos() -> None:
    vocabulary = Vocabulary.build(["is red"])
    ids = np.array([vocabulary.id_of("is"), EOS_ID, vocabulary.id_of("red")])
    assert vocabulary.decode(ids) == "is"


def test_vocabulary_json_roundtrip() -> None:
    vocabulary = Vocabulary.build(["is red", "is blue"])
    assert Vocabulary.from_json(vocabulary.to_json()).words == vocabulary.words
