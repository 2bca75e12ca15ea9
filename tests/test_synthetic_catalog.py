"""Tests of the synthetic catalog: sizes, determinism, labels and what the pixels show."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fiq_env.catalog import UNKNOWN, make_catalog
from fiq_env.catalog.colors import COLOR_NAMES, COLOR_RGB
from fiq_env.catalog.garments import CATEGORIES, groups_for
from fiq_env.catalog.render import SHADES, render_garments
from fiq_env.catalog.synthetic import GENERATOR_VERSION, SyntheticCatalog
from fiq_env.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="module")
def dress_catalog() -> SyntheticCatalog:
    return SyntheticCatalog(category="dress", num_items=2000, seed=0)


@pytest.fixture(scope="module", params=CATEGORIES)
def catalog(request: pytest.FixtureRequest) -> SyntheticCatalog:
    return SyntheticCatalog(category=request.param, num_items=2000, seed=3)


# --- construction ------------------------------------------------------------


def test_make_catalog_builds_synthetic() -> None:
    catalog = make_catalog("synthetic", category="toptee", num_items=100, seed=1)
    assert isinstance(catalog, SyntheticCatalog)
    assert catalog.category == "toptee"
    assert len(catalog) == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_items": 99}, "num_items=99"),
        ({"num_items": 1_000_001}, "num_items=1000001"),
        ({"num_items": 500.0}, "num_items must be an integer"),
        ({"seed": -1}, "seed=-1"),
        ({"image_size": 8}, "image_size=8"),
        ({"image_size": 2048}, "image_size=2048"),
        ({"cache_size": -5}, "cache_size=-5"),
        ({"category": "skirt"}, "'dress', 'shirt', 'toptee'"),
    ],
    ids=["too-few", "too-many", "float-size", "negative-seed", "tiny-image", "huge-image", "cache", "category"],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SyntheticCatalog(**{"num_items": 100, **kwargs})


def test_size_bounds_accepted() -> None:
    assert len(SyntheticCatalog(num_items=100)) == 100


def test_million_items_build() -> None:
    catalog = SyntheticCatalog(category="shirt", num_items=1_000_000, seed=0)
    assert catalog.labels.shape[0] == 1_000_000
    assert catalog.item_ids[-1] == "syn-shirt-999999"
    assert catalog.index_of("syn-shirt-999999") == 999_999


# --- determinism -------------------------------------------------------------


def test_same_seed_same_labels() -> None:
    first = SyntheticCatalog(category="shirt", num_items=300, seed=7)
    second = SyntheticCatalog(category="shirt", num_items=300, seed=7)
    assert np.array_equal(first.labels, second.labels)
    assert np.array_equal(first.split_codes, second.split_codes)
    assert list(first.titles[:20]) == list(second.titles[:20])


def test_same_seed_same_pixels() -> None:
    first = SyntheticCatalog(category="dress", num_items=300, seed=7)
    second = SyntheticCatalog(category="dress", num_items=300, seed=7)
    indices = np.arange(0, 300, 13)
    assert np.array_equal(first.render_batch(indices), second.render_batch(indices))


def test_other_seed_differs() -> None:
    first = SyntheticCatalog(category="dress", num_items=300, seed=7)
    second = SyntheticCatalog(category="dress", num_items=300, seed=8)
    assert not np.array_equal(first.labels, second.labels)
    assert not np.array_equal(first.render_batch([0, 1, 2]), second.render_batch([0, 1, 2]))


def test_render_independent_of_order(dress_catalog: SyntheticCatalog) -> None:
    indices = np.array([17, 3, 1999, 256, 3])
    batch = dress_catalog.render_batch(indices)
    reversed_batch = dress_catalog.render_batch(indices[::-1])
    fresh = SyntheticCatalog(category="dress", num_items=2000, seed=0, cache_size=0)
    for row, index in enumerate(indices):
        assert np.array_equal(batch[row], np.asarray(fresh.load_image(int(index))))
    assert np.array_equal(batch, reversed_batch[::-1])


def test_fingerprint_tracks_arguments() -> None:
    base = SyntheticCatalog(num_items=100, seed=0)
    payload = base.fingerprint_payload()
    assert payload["generator_version"] == GENERATOR_VERSION
    assert base.fingerprint() == SyntheticCatalog(num_items=100, seed=0).fingerprint()
    assert base.fingerprint() != SyntheticCatalog(num_items=100, seed=1).fingerprint()
    assert base.fingerprint() != SyntheticCatalog(num_items=100, seed=0, image_size=32).fingerprint()
    assert base.fingerprint() != SyntheticCatalog(num_items=101, seed=0).fingerprint()


# --- splits, ids, titles -----------------------------------------------------


@pytest.mark.parametrize("num_items", [100, 1000, 1234])
def test_split_proportions(num_items: int) -> None:
    catalog = SyntheticCatalog(num_items=num_items, seed=2)
    counts = {split: len(catalog.indices(split)) for split in ("train", "val", "test")}
    assert counts["train"] == round(0.6 * num_items)
    assert counts["val"] == round(0.2 * num_items)
    assert sum(counts.values()) == num_items


def test_splits_are_shuffled(dress_catalog: SyntheticCatalog) -> None:
    first_hundred = dress_catalog.split_codes[:100]
    assert len(np.unique(first_hundred)) == 3


def test_item_ids_round_trip(dress_catalog: SyntheticCatalog) -> None:
    assert dress_catalog.item_ids[123] == "syn-dress-000123"
    assert dress_catalog.index_of("syn-dress-000123") == 123
    assert dress_catalog.item_ids[-1] == "syn-dress-001999"
    assert len(dress_catalog.item_ids[:5]) == 5


@pytest.mark.parametrize("bad_id", ["syn-dress-002000", "syn-shirt-000001", "syn-dress-12", "B00XYZ"])
def test_unknown_item_id_raises(dress_catalog: SyntheticCatalog, bad_id: str) -> None:
    with pytest.raises(UnknownNameError, match=bad_id):
        dress_catalog.index_of(bad_id)


def test_item_ids_index_error(dress_catalog: SyntheticCatalog) -> None:
    with pytest.raises(IndexError):
        dress_catalog.item_ids[2000]


def test_titles_name_attributes(catalog: SyntheticCatalog) -> None:
    for index in range(0, 2000, 97):
        title = catalog.titles[index]
        assert catalog.group_value("color", index) in title
        assert catalog.group_value("length", index) in title
        assert catalog.group_value("fabric", index) in title


def test_titles_sleeve_words(dress_catalog: SyntheticCatalog) -> None:
    sleeveless = int(np.flatnonzero(dress_catalog.group_values["sleeve_length"] == 0)[0])
    long_sleeved = int(np.flatnonzero(dress_catalog.group_values["sleeve_length"] == 3)[0])
    assert "long sleeves" in dress_catalog.titles[long_sleeved]
    assert "sleeves" not in dress_catalog.titles[sleeveless]


# --- labels ------------------------------------------------------------------


def test_every_value_occurs(catalog: SyntheticCatalog) -> None:
    for group in catalog.groups:
        codes = catalog.group_values[group.name]
        counts = np.bincount(codes[codes != UNKNOWN], minlength=len(group.values))
        assert counts.min() > 0, f"{group.name}: counts {counts.tolist()} for {group.values}"


def test_group_values_dtype(catalog: SyntheticCatalog) -> None:
    for name, codes in catalog.group_values.items():
        assert codes.dtype == np.int16, name
        assert codes.shape == (len(catalog),), name


def test_labels_match_group_values(catalog: SyntheticCatalog) -> None:
    column = {name: k for k, name in enumerate(catalog.attribute_names)}
    for group in catalog.groups:
        for code, word in enumerate(group.values):
            if word == group.absent:
                assert word not in column
                continue
            name = word if word in column else f"{group.name}:{word}"
            expected = catalog.group_values[group.name] == code
            assert np.array_equal(catalog.labels[:, column[name]], expected), name


def test_label_mask_all_true(catalog: SyntheticCatalog) -> None:
    assert catalog.label_mask.all()
    assert catalog.labels.shape == (len(catalog), len(catalog.attribute_names))
    assert len(catalog.attribute_types) == len(catalog.attribute_names)


def test_straps_only_when_sleeveless(catalog: SyntheticCatalog) -> None:
    if "straps" not in catalog.group_values:
        pytest.skip(f"{catalog.category} has no straps group")
    sleeveless = catalog.group_values["sleeve_length"] == catalog.group("sleeve_length").values.index("sleeveless")
    has_straps_value = catalog.group_values["straps"] != UNKNOWN
    assert np.array_equal(sleeveless, has_straps_value)


def test_strapless_has_no_neckline(catalog: SyntheticCatalog) -> None:
    if "straps" not in catalog.group_values:
        pytest.skip(f"{catalog.category} has no straps group")
    strapless = catalog.group_values["straps"] == catalog.group("straps").values.index("strapless")
    assert (catalog.group_values["neckline"][strapless] == UNKNOWN).all()


def test_denim_colors(dress_catalog: SyntheticCatalog) -> None:
    denim = dress_catalog.group_values["fabric"] == dress_catalog.group("fabric").values.index("denim")
    colors = {dress_catalog.group("color").values[c] for c in dress_catalog.group_values["color"][denim]}
    assert colors <= {"blue", "navy", "black", "gray", "white"}


def test_style_follows_fabric(dress_catalog: SyntheticCatalog) -> None:
    fabric = dress_catalog.group("fabric").values
    shiny = dress_catalog.group_values["fabric"] == fabric.index("shiny")
    elegant = dress_catalog.group("style").values.index("elegant")
    assert (dress_catalog.group_values["style"][shiny] == elegant).all()


def test_ordered_groups_have_comparatives(catalog: SyntheticCatalog) -> None:
    ordered = {g.name for g in catalog.groups if g.ordered}
    assert ordered == {"lightness", "length", "fit", "sleeve_length", "neckline"}


# --- images ------------------------------------------------------------------


def test_load_image_format(dress_catalog: SyntheticCatalog) -> None:
    image = dress_catalog.load_image(5)
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert image.size == (64, 64)


def test_image_size_argument() -> None:
    catalog = SyntheticCatalog(num_items=100, image_size=40)
    assert catalog.render_batch([0, 1]).shape == (2, 40, 40, 3)


def test_image_cache_bounded() -> None:
    catalog = SyntheticCatalog(num_items=100, cache_size=3)
    first = catalog.load_image(0)
    assert catalog.load_image(0) is first
    for index in range(1, 5):
        catalog.load_image(index)
    assert len(catalog._cache) == 3
    assert catalog.load_image(0) is not first


def test_render_batch_rejects_bad_index(dress_catalog: SyntheticCatalog) -> None:
    with pytest.raises(ConfigError, match="2000"):
        dress_catalog.render_batch([0, 2000])


def test_shades_keep_color_names() -> None:
    reference = np.array([COLOR_RGB[n] for n in COLOR_NAMES], dtype=np.float64)
    for color_index, name in enumerate(COLOR_NAMES):
        for level in range(3):
            distances = ((reference - SHADES[color_index, level]) ** 2).sum(axis=1)
            assert int(np.argmin(distances)) == color_index, f"{name} at lightness {level}"


def test_background_differs_from_garment(catalog: SyntheticCatalog) -> None:
    images = catalog.render_batch(np.arange(200)).astype(np.float64)
    corners = images[:, :3, :3].reshape(200, -1, 3).mean(axis=1)
    shades = SHADES[catalog.group_values["color"][:200], catalog.group_values["lightness"][:200]]
    distance = np.linalg.norm(corners - shades, axis=1)
    assert distance.min() > 50


# --- attributes visible in pixels ----------------------------------------------
#
# Each check renders one item twice with a single attribute changed. The item
# index (and so pose, background and noise) stays the same, so any pixel
# difference comes from the attribute.

_PLAIN = {"color": "red", "lightness": "medium", "pattern": "solid", "fabric": "cotton", "fit": "regular fit"}


def _render(category: str, **words: str | None) -> np.ndarray:
    """Render item 11 of seed 0 from group value words (None for UNKNOWN)."""
    catalog_groups = {g.name: g for g in groups_for(category)}
    defaults = {
        **_PLAIN,
        "length": catalog_groups["length"].values[1],
        "sleeve_length": "short sleeves",
        "neckline": "crew neck",
        "straps": None,
        "belt": "no belt",
        "collar": "no collar",
        "buttons": "no buttons",
        "style": "casual",
    }
    merged = {**defaults, **words}
    values = {}
    for name, group in catalog_groups.items():
        word = merged[name]
        values[name] = np.array([UNKNOWN if word is None else group.values.index(word)], dtype=np.int16)
    return render_garments(category, values, np.array([11]), seed=0, image_size=64)[0].astype(np.float64)


def _garment_pixels(image: np.ndarray, rgb: tuple[int, int, int] = COLOR_RGB["red"], tolerance: float = 45.0) -> np.ndarray:
    return np.linalg.norm(image - np.array(rgb, dtype=np.float64), axis=-1) < tolerance


@pytest.mark.parametrize("category", CATEGORIES)
def test_sleeves_add_garment_area(category: str) -> None:
    straps = {"straps": "wide straps"} if category != "shirt" else {}
    sleeveless = _garment_pixels(_render(category, sleeve_length="sleeveless", **straps)).sum()
    areas = [_garment_pixels(_render(category, sleeve_length=w)).sum() for w in ("short sleeves", "elbow sleeves", "long sleeves")]
    assert sleeveless < areas[0]
    assert areas[0] < areas[1] < areas[2]


@pytest.mark.parametrize("category", CATEGORIES)
def test_length_adds_garment_area(category: str) -> None:
    group = next(g for g in groups_for(category) if g.name == "length")
    areas = [_garment_pixels(_render(category, length=word)).sum() for word in group.values]
    assert all(a < b for a, b in zip(areas, areas[1:])), areas


def test_fit_adds_garment_area() -> None:
    areas = [_garment_pixels(_render("dress", fit=word)).sum() for word in ("fitted", "regular fit", "loose")]
    assert areas[0] < areas[1] < areas[2]


def test_lightness_orders_brightness() -> None:
    means = []
    for level in ("dark", "medium", "light"):
        image = _render("dress", lightness=level)
        mask = _garment_pixels(image, tolerance=60.0)
        means.append(image[mask].mean())
    assert means[0] < means[1] < means[2]


@pytest.mark.parametrize("pattern", ["striped", "polka dot", "floral", "plaid", "graphic print"])
def test_pattern_raises_variance(pattern: str) -> None:
    solid = _render("dress", pattern="solid")
    region = _garment_pixels(solid)
    patterned = _render("dress", pattern=pattern)
    assert patterned[region].std(axis=0).mean() > 3 * solid[region].std(axis=0).mean()


@pytest.mark.parametrize("fabric", ["shiny", "denim", "lace", "knit"])
def test_fabric_changes_texture(fabric: str) -> None:
    plain = _render("dress", fabric="cotton")
    region = _garment_pixels(plain)
    textured = _render("dress", fabric=fabric)
    strongest_channel_change = np.abs(textured[region] - plain[region]).mean(axis=0).max()
    assert strongest_channel_change > 8


def test_necklines_all_differ() -> None:
    words = ("high neck", "crew neck", "scoop neck", "v-neck")
    images = {w: _render("toptee", neckline=w) for w in words}
    for k, first in enumerate(words):
        for second in words[k + 1 :]:
            changed = (np.abs(images[first] - images[second]).max(axis=-1) > 40).sum()
            assert changed >= 8, f"{first} vs {second}: {changed} pixels differ"


def test_deeper_neckline_shows_less_garment() -> None:
    areas = [_garment_pixels(_render("dress", neckline=w)).sum() for w in ("crew neck", "scoop neck", "v-neck")]
    assert areas[0] > areas[1]
    assert areas[0] > areas[2]


def test_straps_visible() -> None:
    words = ("strapless", "spaghetti straps", "wide straps")
    areas = [_garment_pixels(_render("dress", sleeve_length="sleeveless", straps=w, neckline="scoop neck")).sum() for w in words]
    assert areas[0] < areas[1] < areas[2]


@pytest.mark.parametrize(("category", "group", "present"), [("dress", "belt", "belt"), ("shirt", "collar", "collar"), ("shirt", "buttons", "buttons")])
def test_parts_visible(category: str, group: str, present: str) -> None:
    without = _render(category, **{group: f"no {present}"})
    with_part = _render(category, **{group: present})
    changed = (np.abs(with_part - without).max(axis=-1) > 40).sum()
    assert changed >= 10


def test_unknown_source_lists_builtins() -> None:
    with pytest.raises(UnknownNameError) as caught:
        make_catalog("synthtic", category="dress")
    message = str(caught.value)
    for source in ("synthetic", "fashion_iq", "image_folder"):
        assert source in message
    assert "Did you mean 'synthetic'?" in message


def test_registry_imports_builtin_on_first_use() -> None:
    from fiq_env.registry import Registry

    registry = Registry("catalog", builtin_modules={"image_folder": "fiq_env.catalog.image_folder"})
    with pytest.raises(UnknownNameError, match="registered catalogs: image_folder"):
        registry.get("image_foldr")
