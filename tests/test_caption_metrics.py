"""Attribute accuracy of captions: value words, comparatives against the reference, negations."""

from __future__ import annotations

import math

import numpy as np
import pytest

import simulators
from fiq_env.catalog import UNKNOWN, AttributeGroup, Catalog, CatalogReport, labels_from_groups, make_catalog
from fiq_env.errors import ConfigError
from simulators.caption_metrics import AttributeLexicon, attribute_accuracy

COLOR = AttributeGroup("color", "color", ("red", "blue"))
LIGHTNESS = AttributeGroup("lightness", "color", ("dark", "medium", "light"), ordered=True, more="lighter", less="darker")
LENGTH = AttributeGroup("length", "shape", ("mini", "knee length", "maxi"), ordered=True, more="longer", less="shorter")
SLEEVES = AttributeGroup(
    "sleeve_length", "part", ("sleeveless", "short sleeves", "long sleeves"),
    ordered=True, more="longer", less="shorter", noun="sleeves", verb="has",
)
NECKLINE = AttributeGroup(
    "neckline", "part", ("high neck", "v-neck"), ordered=True, more="lower", less="higher", noun="neckline", verb="has"
)
BELT = AttributeGroup("belt", "part", ("no belt", "belt"), absent="no belt", verb="has")
STYLE = AttributeGroup("style", "style", ("casual", "elegant"))

# One row per item: color, lightness, length, sleeve_length, neckline, belt, style.
ITEM_VALUES = np.array(
    [
        [0, 0, 0, 2, 0, 0, 0],  # 0: red, dark, mini, long sleeves, high neck, no belt, casual
        [1, 2, 2, 0, 1, 1, 1],  # 1: blue, light, maxi, sleeveless, v-neck, belt, elegant
        [UNKNOWN, 1, 1, UNKNOWN, 0, 1, 0],  # 2: color and sleeves unknown, medium, knee length
    ],
    dtype=np.int16,
)


class OrderedCatalog(Catalog):
    """Three hand-made dresses with four ordered groups, two of which share "longer" and "shorter"."""

    source = "hand-made"

    def __init__(self) -> None:
        num_items = len(ITEM_VALUES)
        self.category = "dress"
        self.item_ids = [f"item{i}" for i in range(num_items)]
        self.split_codes = np.zeros(num_items, dtype=np.int8)
        self.groups = (COLOR, LIGHTNESS, LENGTH, SLEEVES, NECKLINE, BELT, STYLE)
        self.group_values = {group.name: ITEM_VALUES[:, column].copy() for column, group in enumerate(self.groups)}
        self.attribute_names, self.attribute_types, self.labels = labels_from_groups(
            self.groups, self.group_values, num_items
        )
        self.label_mask = np.ones(num_items, dtype=bool)
        self.titles = None
        self.caption_pairs = []
        self.report = CatalogReport()

    def load_image(self, index: int):
        raise NotImplementedError("the hand-made catalog has no images")

    def fingerprint_payload(self) -> dict:
        return {"items": len(self.item_ids)}


@pytest.fixture(scope="module")
def catalog() -> OrderedCatalog:
    return OrderedCatalog()


def score(catalog: Catalog, caption: str, reference: int, target: int):
    return attribute_accuracy(catalog, [caption], [target], reference=[reference])


def test_comparative_true_and_false(catalog: OrderedCatalog) -> None:
    # Item 1 is longer, lighter and has a lower neckline than item 0.
    true = score(catalog, "is longer and lighter with a lower neckline", reference=0, target=1)
    false = score(catalog, "is longer and lighter with a lower neckline", reference=1, target=0)

    assert (true.comparative.correct, true.comparative.checked) == (3, 3)
    assert (false.comparative.correct, false.comparative.checked) == (0, 3)
    assert true.direct.checked == 0
    assert true.accuracy == 1.0
    assert false.accuracy == 0.0


def test_comparative_equal_levels_false(catalog: OrderedCatalog) -> None:
    result = score(catalog, "is darker", reference=0, target=0)

    assert (result.comparative.correct, result.comparative.checked) == (0, 1)


def test_comparative_noun_picks_group(catalog: OrderedCatalog) -> None:
    # From item 0 to item 1 the dress gets longer but the sleeves get shorter.
    cases = {
        "has shorter sleeves": 1,
        "is a dress with shorter sleeves": 1,
        "is shorter": 0,
        "is a shorter dress": 0,
        "is shorter in length": 0,
        "is longer": 1,
        "has longer sleeves": 0,
        "is longer in length with shorter sleeves": 2,
    }
    for caption, correct in cases.items():
        result = score(catalog, caption, reference=0, target=1)
        assert result.comparative.correct == correct, caption


def test_comparative_noun_beyond_two_words(catalog: OrderedCatalog) -> None:
    lexicon = AttributeLexicon(catalog)

    near = lexicon.claims("is shorter in sleeves")
    far = lexicon.claims("is shorter and has sleeves")

    assert near[0].meanings == (("sleeve_length", "less"),)
    assert far[0].meanings == (("length", "less"),)


def test_comparative_unknown_reference_value(catalog: OrderedCatalog) -> None:
    result = score(catalog, "has longer sleeves", reference=2, target=0)

    assert result.comparative.checked == 0
    assert result.comparative.unchecked == 1
    assert math.isnan(result.accuracy)


def test_negations_checked(catalog: OrderedCatalog) -> None:
    cases = {
        "has no belt": (1, 1),
        "is without a belt": (1, 1),
        "is not red": (0, 1),
        "is not blue": (1, 1),
        "is less casual": (0, 1),
        "is less elegant": (1, 1),
        "is not darker": (0, 1),
        "is not lighter": (1, 1),
    }
    for caption, (correct, checked) in cases.items():
        result = score(catalog, caption, reference=1, target=0)
        assert result.negated.checked == checked, caption
        assert result.negated.correct == correct, caption
        assert result.direct.checked + result.comparative.checked == 0, caption


def test_negation_false_of_target(catalog: OrderedCatalog) -> None:
    result = score(catalog, "has no belt", reference=0, target=1)

    assert (result.negated.correct, result.negated.checked) == (0, 1)


def test_direct_claims_and_variants(catalog: OrderedCatalog) -> None:
    result = score(catalog, "is a red dress with long sleeves and a high neck", reference=1, target=0)
    variant = score(catalog, "is long sleeved and mini", reference=1, target=0)
    wrong = score(catalog, "is blue and sleeveless with a belt", reference=1, target=0)

    assert (result.direct.correct, result.direct.checked) == (3, 3)
    assert (variant.direct.correct, variant.direct.checked) == (2, 2)
    assert (wrong.direct.correct, wrong.direct.checked) == (0, 3)


def test_claim_kinds_counted_apart(catalog: OrderedCatalog) -> None:
    result = score(catalog, "is red and darker with shorter sleeves and no belt", reference=1, target=0)

    assert (result.direct.correct, result.direct.checked) == (1, 1)
    # Item 0 is darker but its sleeves are longer than item 1's.
    assert (result.comparative.correct, result.comparative.checked) == (1, 2)
    assert (result.negated.correct, result.negated.checked) == (1, 1)
    assert (result.correct, result.checked) == (3, 4)
    assert result.accuracy == pytest.approx(0.75)


def test_no_checkable_claim(catalog: OrderedCatalog) -> None:
    result = attribute_accuracy(
        catalog, ["is a different one", "", "is prettier"], [0, 1, 2], reference=[1, 2, 0]
    )

    assert result.checked == 0
    assert result.unchecked == 0
    assert math.isnan(result.accuracy)
    for counts in result.by_kind().values():
        assert math.isnan(counts.accuracy)


def test_unknown_target_value_unchecked(catalog: OrderedCatalog) -> None:
    result = score(catalog, "is red with long sleeves", reference=0, target=2)

    assert result.direct.checked == 0
    assert result.direct.unchecked == 2


def test_without_reference_skips_comparatives(catalog: OrderedCatalog) -> None:
    result = attribute_accuracy(catalog, ["is red and longer with no belt"], [0])

    assert (result.direct.correct, result.direct.checked) == (1, 1)
    assert (result.negated.correct, result.negated.checked) == (1, 1)
    assert result.comparative.checked == 0
    assert result.comparative.unchecked == 0


def test_reference_length_mismatch(catalog: OrderedCatalog) -> None:
    with pytest.raises(ConfigError, match="references"):
        attribute_accuracy(catalog, ["is longer", "is red"], [0, 1], reference=[1])


@pytest.mark.parametrize("category", ["dress", "shirt"])
def test_template_captions_all_true(category: str) -> None:
    catalog = make_catalog("synthetic", category=category, num_items=300, seed=0)
    template = simulators.make("template", catalog=catalog)
    rng = np.random.default_rng(0)
    reference = rng.integers(len(catalog), size=800)
    target = rng.integers(len(catalog), size=800)

    captions = template.describe_with_facts(reference, target, np.random.default_rng(1))
    result = attribute_accuracy(catalog, [c.text for c in captions], target, reference=reference)
    facts = sum(len(c.facts) for c in captions)

    assert result.accuracy == 1.0
    assert result.unchecked == 0
    assert 0.98 * facts <= result.checked <= facts
    assert result.comparative.checked > 0.3 * facts
    assert result.negated.checked > 0
