"""Tests for the replay simulator of human captions and its fallback."""

from __future__ import annotations

import numpy as np
import pytest

import simulators
from fiq_env.catalog import AttributeGroup, CaptionPair, Catalog, CatalogReport, labels_from_groups
from fiq_env.errors import ConfigError
from fiq_env.text import Vocabulary, normalize_caption
from simulators.base import UserSimulator
from simulators.replay import ReplaySimulator
from simulators.template import TemplateSimulator

COLOR = AttributeGroup("color", "color", ("black", "white", "red"))


class PairCatalog(Catalog):
    """Five items with a color each and a few hand-written caption pairs."""

    source = "pairs"

    def __init__(self, pairs: list[CaptionPair]) -> None:
        self.category = "dress"
        self.item_ids = ["a", "b", "c", "d", "e"]
        self.split_codes = np.array([0, 0, 0, 1, 1], dtype=np.int8)
        self.groups = (COLOR,)
        self.group_values = {"color": np.array([0, 1, 2, 0, 1], dtype=np.int16)}
        self.attribute_names, self.attribute_types, self.labels = labels_from_groups(
            self.groups, self.group_values, 5
        )
        self.label_mask = np.ones(5, dtype=bool)
        self.titles = None
        self.caption_pairs = pairs
        self.report = CatalogReport()

    def load_image(self, index: int):
        raise NotImplementedError("the test catalog has no images")

    def fingerprint_payload(self) -> dict:
        return {"pairs": len(self.caption_pairs)}


PAIRS = [
    CaptionPair("a", "b", ("Is White.", "has  lighter color"), "train"),
    CaptionPair("b", "c", ("  ", "is RED"), "train"),
    CaptionPair("c", "a", ("", "..."), "train"),
    CaptionPair("d", "e", ("is beige clair\u00e9", "is white"), "val"),
    CaptionPair("e", None, ("is darker", "is black"), "test"),
    CaptionPair("zz", "a", ("is black", "is darker"), "train"),
]


class FixedSimulator(UserSimulator):
    """Writes "fallback" for every pair and records how often it was asked."""

    name = "fixed"

    def __init__(self, catalog: Catalog) -> None:
        super().__init__(catalog)
        self.calls = 0

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary.build(["fallback"])

    def _describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        self.calls += len(target)
        return ["fallback"] * len(target)


@pytest.fixture
def catalog() -> PairCatalog:
    return PairCatalog(PAIRS)


def test_human_caption_for_known_pair(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog)
    caption = simulator.describe([0], [1], np.random.default_rng(0))[0]
    assert caption in {"is white", "has lighter color"}


def test_sample_uses_both_annotators(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog)
    rng = np.random.default_rng(0)
    seen = {simulator.describe([0], [1], rng)[0] for _ in range(50)}
    assert seen == {"is white", "has lighter color"}


def test_join_mode(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog, mode="join")
    assert simulator.describe([0], [1], np.random.default_rng(0)) == ["is white and has lighter color"]


def test_val_pair_normalized(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog, mode="join")
    assert simulator.describe([3], [4], np.random.default_rng(0)) == ["is beige claire and is white"]


def test_empty_caption_uses_other(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog)
    rng = np.random.default_rng(0)
    assert {simulator.describe([1], [2], rng)[0] for _ in range(20)} == {"is red"}


def test_all_empty_captions_fall_back(catalog: PairCatalog) -> None:
    fallback = FixedSimulator(catalog)
    simulator = ReplaySimulator(catalog, fallback=fallback)
    assert simulator.describe([2], [0], np.random.default_rng(0)) == ["fallback"]


def test_unknown_pair_falls_back(catalog: PairCatalog) -> None:
    fallback = FixedSimulator(catalog)
    simulator = ReplaySimulator(catalog, mode="join", fallback=fallback)
    captions = simulator.describe([0, 1, 4], [1, 0, 3], np.random.default_rng(0))
    assert captions == ["is white and has lighter color", "fallback", "fallback"]
    assert fallback.calls == 2


def test_template_fallback_by_name(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog, fallback="template")
    assert isinstance(simulator.fallback, TemplateSimulator)
    assert simulator.describe([1], [0], np.random.default_rng(0))[0] != ""


def test_no_fallback_raises(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog, fallback=None)
    with pytest.raises(ConfigError, match="no human caption"):
        simulator.describe([1], [0], np.random.default_rng(0))


def test_test_pairs_and_unknown_ids_skipped(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog)
    assert simulator.num_pairs == 3


def test_has_human_caption_mask(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog)
    assert simulator.has_human_caption([0, 1, 2, 4], [1, 2, 0, 3]).tolist() == [True, True, False, False]


def test_same_seed_same_captions(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog)
    reference, target = np.array([0, 1, 0, 4, 0] * 10), np.array([1, 2, 1, 3, 1] * 10)
    first = simulator.describe(reference, target, np.random.default_rng(1))
    second = simulator.describe(reference, target, np.random.default_rng(1))
    assert first == second


def test_other_seed_other_captions(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog)
    reference, target = np.zeros(40, dtype=int), np.ones(40, dtype=int)
    first = simulator.describe(reference, target, np.random.default_rng(1))
    second = simulator.describe(reference, target, np.random.default_rng(2))
    assert first != second


def test_vocabulary_train_and_fallback(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog, fallback="template")
    template_words = set(simulator.fallback.vocabulary.words)
    assert "lighter" in simulator.vocabulary
    assert "claire" not in simulator.vocabulary
    assert template_words <= set(simulator.vocabulary.words)


def test_vocabulary_min_count(catalog: PairCatalog) -> None:
    simulator = ReplaySimulator(catalog, fallback=FixedSimulator(catalog), min_count=2)
    assert "is" in simulator.vocabulary
    assert "lighter" not in simulator.vocabulary


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "concat"}, "unknown replay mode"),
        ({"min_count": 0}, "min_count"),
        ({"fallback": "replay"}, "its own fallback"),
        ({"fallback": 3}, "fallback must be"),
    ],
    ids=["mode", "min_count", "self", "type"],
)
def test_rejects_bad_arguments(catalog: PairCatalog, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReplaySimulator(catalog, **kwargs)


def test_rejects_fallback_of_other_catalog(catalog: PairCatalog) -> None:
    other = PairCatalog(PAIRS)
    other.item_ids = ["v", "w", "x", "y", "z"]
    with pytest.raises(ConfigError, match="same catalog"):
        ReplaySimulator(catalog, fallback=FixedSimulator(other))


def test_registry_creates_replay(catalog: PairCatalog) -> None:
    assert isinstance(simulators.make("replay", catalog=catalog, mode="join"), ReplaySimulator)


@pytest.mark.real_data
def test_fashion_iq_pairs_replayed(fashion_iq_root) -> None:
    from fiq_env.catalog import make_catalog

    catalog = make_catalog("fashion_iq", root=fashion_iq_root, category="dress")
    simulator = ReplaySimulator(catalog, mode="join")
    pair = next(p for p in catalog.caption_pairs if p.split == "val" and all(normalize_caption(c) for c in p.captions))
    reference, target = catalog.index_of(pair.reference), catalog.index_of(pair.target)
    expected = " and ".join(normalize_caption(c) for c in pair.captions)
    caption = simulator.describe([reference], [target], np.random.default_rng(0))[0]
    assert caption.startswith(expected)


@pytest.mark.real_data
def test_fashion_iq_vocabulary_size(fashion_iq_root) -> None:
    from fiq_env.catalog import make_catalog

    catalog = make_catalog("fashion_iq", root=fashion_iq_root, category="dress")
    simulator = ReplaySimulator(catalog, min_count=1)
    # The dress training captions use about 1,540 distinct words.
    assert 1000 < len(simulator.vocabulary) < 2500
