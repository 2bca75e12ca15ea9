"""Tests for the rule-based template simulator: truth, forms, determinism, vocabulary, speed."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping

import numpy as np
import pytest

import simulators
from fiq_env.catalog import UNKNOWN, AttributeGroup, Catalog, CatalogReport, labels_from_groups
from fiq_env.errors import ConfigError
from fiq_env.text import tokenize
from simulators.template import (
    _PATTERN_ADJECTIVES,
    _SYNONYMS,
    DIFFERENT_ITEM_CAPTION,
    SAME_ITEM_CAPTION,
    CaptionWithFacts,
    TemplateConfig,
    TemplateSimulator,
    verify_facts,
)

# Hand-made groups covering every kind the simulator handles: unordered, ordered
# without a noun, ordered with a noun ("has" verb), an absent value written as
# "no belt", an absent value written through the noun ("no straps"), multi-word values.
GROUPS = (
    AttributeGroup("color", "color", ("black", "white", "red", "gray", "blue")),
    AttributeGroup("lightness", "color", ("dark", "medium", "light"), ordered=True, more="lighter", less="darker"),
    AttributeGroup("pattern", "texture", ("solid", "stripes", "floral", "graphic print")),
    AttributeGroup(
        "sleeve_length",
        "part",
        ("sleeveless", "short", "long"),
        ordered=True,
        more="longer",
        less="shorter",
        noun="sleeves",
        verb="has",
    ),
    AttributeGroup("length", "shape", ("mini", "knee length", "maxi"), ordered=True, more="longer", less="shorter"),
    AttributeGroup("belt", "part", ("no belt", "belt"), absent="no belt", verb="has"),
    AttributeGroup("straps", "part", ("none", "thin", "wide"), absent="none", noun="straps", verb="has"),
    AttributeGroup("fabric", "fabric", ("cotton", "lace", "denim")),
)


class HandMadeCatalog(Catalog):
    """A catalog with given group values and no images."""

    source = "hand_made"

    def __init__(
        self, groups: tuple[AttributeGroup, ...], values: Mapping[str, np.ndarray], category: str = "dress"
    ) -> None:
        num_items = len(next(iter(values.values()))) if values else 0
        self.category = category
        self.item_ids = [f"item{i}" for i in range(num_items)]
        self.split_codes = np.zeros(num_items, dtype=np.int8)
        self.groups = groups
        self.group_values = {name: np.asarray(v, dtype=np.int16) for name, v in values.items()}
        self.attribute_names, self.attribute_types, self.labels = labels_from_groups(
            groups, self.group_values, num_items
        )
        self.label_mask = np.ones(num_items, dtype=bool)
        self.titles = None
        self.caption_pairs = []
        self.report = CatalogReport()

    def load_image(self, index: int):
        raise NotImplementedError("the hand-made test catalog has no images")

    def fingerprint_payload(self) -> dict:
        return {name: values.tolist() for name, values in self.group_values.items()}


def random_catalog(num_items: int = 300, unknown: float = 0.1, seed: int = 0) -> HandMadeCatalog:
    """Draw every group value uniformly, with a share ``unknown`` of UNKNOWN values."""
    rng = np.random.default_rng(seed)
    values = {}
    for group in GROUPS:
        codes = rng.integers(0, len(group.values), num_items)
        codes[rng.random(num_items) < unknown] = UNKNOWN
        values[group.name] = codes
    return HandMadeCatalog(GROUPS, values)


def all_different_catalog(num_pairs: int, seed: int = 0) -> HandMadeCatalog:
    """Items 2k and 2k+1 differ in every group, so every pair supports every caption form."""
    rng = np.random.default_rng(seed)
    values = {}
    for group in GROUPS:
        size = len(group.values)
        reference = rng.integers(0, size, num_pairs)
        target = (reference + rng.integers(1, size, num_pairs)) % size
        values[group.name] = np.stack([reference, target], axis=1).reshape(-1)
    return HandMadeCatalog(GROUPS, values)


def garment_catalog(category: str, num_items: int = 500) -> Catalog:
    """The synthetic catalog's groups and value sampler; skips until that module exists."""
    if importlib.util.find_spec("fiq_env.catalog.synthetic") is not None:
        from fiq_env.catalog import make_catalog

        return make_catalog("synthetic", category=category, num_items=num_items, seed=0)
    garments = pytest.importorskip("fiq_env.catalog.garments")
    groups = garments.groups_for(category)
    values = garments.sample_group_values(category, num_items, np.random.default_rng(0))
    return HandMadeCatalog(groups, values, category=category)


def random_pairs(catalog: Catalog, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, len(catalog), count), rng.integers(0, len(catalog), count)


def fact_words(simulator: TemplateSimulator, caption: CaptionWithFacts) -> list[set[str]]:
    """For each fact, the words of which at least one must appear in the caption."""
    catalog = simulator.catalog
    expected = []
    for fact in caption.facts:
        group = catalog.group(fact.group)
        if fact.relation in ("more", "less"):
            expected.append({group.more if fact.relation == "more" else group.less})
        else:
            value = group.values[fact.value]
            spellings = (value, *_SYNONYMS.get(value, ()), _PATTERN_ADJECTIVES.get(value, value))
            expected.append({w for s in spellings for w in tokenize(s)} - {"no"} or {group.noun})
    return expected


# --------------------------------------------------------------------- truth


@pytest.mark.parametrize("unknown", [0.0, 0.3])
def test_captions_true_hand_made(unknown: float) -> None:
    catalog = random_catalog(unknown=unknown)
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 4000, seed=1)
    captions = simulator.describe_with_facts(reference, target, np.random.default_rng(2))
    problems = [p for c, r, t in zip(captions, reference, target) for p in verify_facts(catalog, r, t, c.facts)]
    assert problems == []


@pytest.mark.parametrize("category", ["dress", "shirt", "toptee"])
def test_captions_true_garments(category: str) -> None:
    catalog = garment_catalog(category)
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 3000, seed=1)
    captions = simulator.describe_with_facts(reference, target, np.random.default_rng(2))
    problems = [p for c, r, t in zip(captions, reference, target) for p in verify_facts(catalog, r, t, c.facts)]
    assert problems == []


def test_text_names_every_fact() -> None:
    catalog = random_catalog()
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 2000, seed=3)
    missing = []
    for caption in simulator.describe_with_facts(reference, target, np.random.default_rng(4)):
        words = set(caption.text.split())
        for fact, expected in zip(caption.facts, fact_words(simulator, caption)):
            if not words & expected:
                missing.append((caption.text, fact))
    assert missing == []


def test_comparisons_only_ordered_known() -> None:
    catalog = random_catalog(unknown=0.3)
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 2000, seed=5)
    captions = simulator.describe_with_facts(reference, target, np.random.default_rng(6))
    compared = {f.group for c in captions for f in c.facts if f.relation in ("more", "less")}
    assert compared <= {"lightness", "sleeve_length", "length"}


def test_verify_facts_detects_false_fact() -> None:
    catalog = all_different_catalog(1)
    simulator = TemplateSimulator(catalog)
    caption = simulator.describe_with_facts([0], [1], np.random.default_rng(0))[0]
    swapped = verify_facts(catalog, 1, 0, [f for f in caption.facts if f.relation != "is"] or caption.facts)
    assert swapped != []


# --------------------------------------------------------------------- forms


def test_form_shares_match_config() -> None:
    catalog = all_different_catalog(5000)
    simulator = TemplateSimulator(catalog)
    reference = np.arange(0, 10000, 2)
    captions = simulator.describe_with_facts(reference, reference + 1, np.random.default_rng(7))
    count = len(captions)
    forms = [c.form for c in captions]
    assert abs(forms.count("direct") / count - 0.49) < 0.03
    assert abs(forms.count("comparison") / count - 0.32) < 0.03
    assert abs(forms.count("both") / count - 0.19) < 0.03
    assert abs(sum(len(c.facts) == 1 for c in captions) / count - 0.305) < 0.03
    assert abs(sum(c.negation for c in captions) / count - 0.035) < 0.012


def test_form_shares_follow_config_fields() -> None:
    catalog = all_different_catalog(2000)
    config = TemplateConfig(direct=0.0, comparison=1.0, both=0.0, single=1.0, negation=0.0)
    simulator = TemplateSimulator(catalog, config)
    reference = np.arange(0, 4000, 2)
    captions = simulator.describe_with_facts(reference, reference + 1, np.random.default_rng(8))
    assert all(c.form == "comparison" for c in captions)
    assert all(len(c.facts) == 1 for c in captions)


def test_both_form_compares_and_states() -> None:
    catalog = all_different_catalog(500)
    config = TemplateConfig(direct=0.0, comparison=0.0, both=1.0, single=0.0, negation=0.0)
    simulator = TemplateSimulator(catalog, config)
    reference = np.arange(0, 1000, 2)
    for caption in simulator.describe_with_facts(reference, reference + 1, np.random.default_rng(9)):
        relations = {f.relation for f in caption.facts}
        assert "is" in relations
        assert relations & {"more", "less"}


def test_negation_phrased_as_negation() -> None:
    catalog = all_different_catalog(1000)
    config = TemplateConfig(direct=1.0, comparison=0.0, both=0.0, negation=1.0)
    simulator = TemplateSimulator(catalog, config)
    reference = np.arange(0, 2000, 2)
    captions = simulator.describe_with_facts(reference, reference + 1, np.random.default_rng(10))
    assert all(c.negation for c in captions)
    assert all({"no", "not", "without"} & set(c.text.split()) for c in captions)


# --------------------------------------------------------------- determinism


def test_same_seed_same_captions() -> None:
    catalog = random_catalog()
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 200, seed=11)
    first = simulator.describe(reference, target, np.random.default_rng(12))
    second = simulator.describe(reference, target, np.random.default_rng(12))
    assert first == second


def test_other_seed_other_captions() -> None:
    catalog = random_catalog()
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 200, seed=11)
    first = simulator.describe(reference, target, np.random.default_rng(12))
    second = simulator.describe(reference, target, np.random.default_rng(13))
    assert first != second


def test_describe_matches_with_facts() -> None:
    catalog = random_catalog()
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 200, seed=14)
    texts = simulator.describe(reference, target, np.random.default_rng(15))
    detailed = simulator.describe_with_facts(reference, target, np.random.default_rng(15))
    assert texts == [c.text for c in detailed]


# ------------------------------------------------------------ identical items


def test_identical_items_true_caption() -> None:
    catalog = random_catalog(unknown=0.0)
    simulator = TemplateSimulator(catalog)
    items = np.arange(len(catalog))
    captions = simulator.describe_with_facts(items, items, np.random.default_rng(16))
    assert all(c.text for c in captions)
    assert all(c.facts for c in captions)
    assert all(not verify_facts(catalog, i, i, c.facts) for i, c in zip(items, captions))


def test_unlabelled_items_fixed_caption() -> None:
    values = {g.name: np.full(2, UNKNOWN) for g in GROUPS}
    simulator = TemplateSimulator(HandMadeCatalog(GROUPS, values))
    captions = simulator.describe([0, 0], [0, 1], np.random.default_rng(0))
    assert captions == [SAME_ITEM_CAPTION, DIFFERENT_ITEM_CAPTION]


def test_catalog_without_groups() -> None:
    catalog = HandMadeCatalog((), {})
    catalog.item_ids = ["a", "b"]
    catalog.split_codes = np.zeros(2, dtype=np.int8)
    simulator = TemplateSimulator(catalog)
    assert simulator.describe([0], [1], np.random.default_rng(0)) == [DIFFERENT_ITEM_CAPTION]


# ----------------------------------------------------------------- vocabulary


def test_every_word_in_vocabulary() -> None:
    catalog = random_catalog(unknown=0.2)
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 3000, seed=17)
    words = {w for text in simulator.describe(reference, target, np.random.default_rng(18)) for w in tokenize(text)}
    assert words - set(simulator.vocabulary.words) == set()


def test_garment_words_in_vocabulary() -> None:
    catalog = garment_catalog("dress")
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 3000, seed=19)
    words = {w for text in simulator.describe(reference, target, np.random.default_rng(20)) for w in tokenize(text)}
    assert words - set(simulator.vocabulary.words) == set()


def test_vocabulary_deterministic() -> None:
    first = TemplateSimulator(random_catalog(seed=1)).vocabulary.words
    second = TemplateSimulator(random_catalog(seed=2)).vocabulary.words
    assert first == second


def test_captions_short() -> None:
    catalog = garment_catalog("dress")
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 3000, seed=21)
    lengths = [len(text.split()) for text in simulator.describe(reference, target, np.random.default_rng(22))]
    assert 3.0 <= float(np.mean(lengths)) <= 7.0
    assert float(np.mean(np.array(lengths) > simulator.config.max_words)) < 0.05


def test_captions_use_normalized_words() -> None:
    catalog = random_catalog()
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 500, seed=23)
    texts = simulator.describe(reference, target, np.random.default_rng(24))
    assert all(" ".join(tokenize(text)) == text for text in texts)


# -------------------------------------------------------------- config, misuse


def test_registry_creates_template() -> None:
    simulator = simulators.make("template", catalog=random_catalog(), config="paper")
    assert isinstance(simulator, TemplateSimulator)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"direct": 0.5, "comparison": 0.5, "both": 0.5}, "sum to 1"),
        ({"negation": -0.1}, "share in"),
        ({"single": 0.9}, "single"),
        ({"max_words": 1}, "max_words"),
    ],
    ids=["shares", "negative", "single", "max_words"],
)
def test_config_rejects_bad_values(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TemplateConfig(**fields)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="preset"):
        TemplateConfig.preset("gpu")


def test_rejects_index_outside_catalog() -> None:
    simulator = TemplateSimulator(random_catalog(num_items=10))
    with pytest.raises(ConfigError, match="outside the catalog"):
        simulator.describe_with_facts([0], [10], np.random.default_rng(0))


def test_rejects_legacy_random_state() -> None:
    simulator = TemplateSimulator(random_catalog(num_items=10))
    with pytest.raises(ConfigError, match="numpy.random.Generator"):
        simulator.describe([0], [1], np.random.RandomState(0))


# ---------------------------------------------------------------------- speed


def test_batched_describe_fast() -> None:
    catalog = random_catalog(num_items=1000)
    simulator = TemplateSimulator(catalog)
    rng = np.random.default_rng(25)
    reference, target = random_pairs(catalog, 64, seed=26)
    simulator.describe(reference, target, rng)
    start = time.perf_counter()
    for _ in range(20):
        simulator.describe(reference, target, rng)
    per_caption = (time.perf_counter() - start) / (20 * 64)
    # Generous bound: the measured cost is tens of microseconds, on a shared machine.
    assert per_caption < 1e-3


# -------------------------------------------------------------------- realism


def test_token_coverage_counts_tokens() -> None:
    from simulators.realism import token_coverage

    coverage = token_coverage(["is red", "is Blue."], ["is", "red"])
    assert (coverage.covered, coverage.total) == (3, 4)
    assert coverage.missing == (("blue", 1),)


def test_length_stats_histogram() -> None:
    from simulators.realism import length_stats

    stats = length_stats(["is red", "is red and long", "is blue"])
    assert stats.histogram == {2: 2, 4: 1}
    assert stats.max == 4
    assert stats.median == 2.0


@pytest.mark.real_data
def test_template_covers_real_words(fashion_iq_root) -> None:
    from simulators.realism import load_real_captions, token_coverage

    real = load_real_captions(fashion_iq_root, ["dress"])
    coverage = token_coverage(real, TemplateSimulator(garment_catalog("dress")).vocabulary)
    assert coverage.share >= 0.6


def test_describe_rows_matches_single_calls() -> None:
    catalog = random_catalog()
    simulator = TemplateSimulator(catalog)
    reference, target = random_pairs(catalog, 6, seed=27)
    batched_rngs = [np.random.default_rng(seed) for seed in range(6)]
    single_rngs = [np.random.default_rng(seed) for seed in range(6)]
    batched = simulator.describe_rows(reference, target, batched_rngs)
    singles = [simulator.describe(reference[i : i + 1], target[i : i + 1], single_rngs[i])[0] for i in range(6)]
    assert batched == singles
    assert [r.random() for r in batched_rngs] == [r.random() for r in single_rngs]
