"""Tests of the image_folder catalog source on a generated photo tree and on clothing-small."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

import fiq_env.catalog.image_folder as image_folder
from fiq_env.catalog import make_catalog
from fiq_env.catalog.colors import COLOR_RGB
from fiq_env.catalog.image_folder import CLOTHING_SMALL_GROUPS
from fiq_env.errors import ConfigError, DataError, UnknownNameError

# (split folder, class, file stem, garment color)
PHOTOS = [
    ("train", "dress", "a", "red"),
    ("train", "dress", "b", "navy"),
    ("train", "dress", "c", "black"),
    ("train", "skirt", "d", "green"),
    ("train", "t-shirt", "e", "yellow"),
    ("train", "t-shirt", "f", "white"),
    ("validation", "dress", "g", "blue"),
    ("validation", "t-shirt", "h", "pink"),
]


def photo(color: str, size: tuple[int, int] = (90, 120)) -> bytes:
    """Encode a JPEG of a garment-like shape in ``color`` on a plain background."""
    background = (70, 72, 80) if color in ("white", "yellow", "pink") else (228, 226, 220)
    image = Image.new("RGB", size, background)
    width, height = size
    outline = [(0.35 * width, 0.12 * height), (0.65 * width, 0.12 * height), (0.85 * width, 0.9 * height), (0.15 * width, 0.9 * height)]
    ImageDraw.Draw(image).polygon(outline, fill=COLOR_RGB[color])
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def build_tree(root: Path) -> Path:
    for split, name, stem, color in PHOTOS:
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.jpg").write_bytes(photo(color))
    broken = photo("red")
    (root / "train" / "dress" / "truncated.jpg").write_bytes(broken[: len(broken) // 2])
    (root / "train" / "dress" / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo tree shared by the tests that only read it."""
    return build_tree(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def fresh_tree(tmp_path: Path) -> Path:
    """A photo tree of this test's own, for tests that change files."""
    return build_tree(tmp_path / "photos")


@pytest.fixture(scope="module")
def catalog(tree):
    return make_catalog("image_folder", root=tree, category="all")


def test_all_classes(catalog):
    assert catalog.classes == ["dress", "skirt", "t-shirt"]


def test_item_count(catalog):
    assert len(catalog) == len(PHOTOS)


def test_split_counts(catalog):
    assert [len(catalog.indices(s)) for s in ("train", "val", "test")] == [6, 2, 0]


@pytest.mark.parametrize(("split", "name", "stem", "color"), PHOTOS)
def test_pixel_color(catalog, split, name, stem, color):
    index = catalog.index_of(f"{split}/{name}/{stem}.jpg")
    assert catalog.group_value("color", index) == color


@pytest.mark.parametrize(("split", "name", "stem", "color"), PHOTOS)
def test_class_value(catalog, split, name, stem, color):
    index = catalog.index_of(f"{split}/{name}/{stem}.jpg")
    assert catalog.group_value("class", index) == name


@pytest.mark.parametrize(("stem", "level"), [("c", "dark"), ("f", "light")])
def test_lightness(catalog, stem, level):
    index = next(i for i, item in enumerate(catalog.item_ids) if item.endswith(f"/{stem}.jpg"))
    assert catalog.group_value("lightness", index) == level


def test_solid_photos_not_patterned(catalog):
    assert all(catalog.group_value("pattern", i) == "solid" for i in range(len(catalog)))


def test_truncated_reported(catalog):
    assert catalog.report.excluded["corrupt"] == ["train/dress/truncated.jpg"]


def test_truncated_excluded(catalog):
    assert "train/dress/truncated.jpg" not in catalog.item_ids


def test_labels_follow_groups(catalog):
    red = catalog.attribute_names.index("red")
    assert catalog.labels[:, red].sum() == 1


def test_attribute_types(catalog):
    assert catalog.attribute_types[catalog.attribute_names.index("patterned")] == "texture"


def test_lightness_group_ordered(catalog):
    group = catalog.group("lightness")
    assert (group.ordered, group.more, group.less) == (True, "lighter", "darker")


def test_label_mask_all_true(catalog):
    assert catalog.label_mask.all()


def test_load_image_short_side(tree):
    catalog = make_catalog("image_folder", root=tree, image_size=32)
    assert min(catalog.load_image(0).size) == 32


def test_load_image_rgb(catalog):
    assert catalog.load_image(0).mode == "RGB"


def test_group_category(tree):
    catalog = make_catalog("image_folder", root=tree, category="dress")
    assert catalog.classes == list(CLOTHING_SMALL_GROUPS["dress"])


def test_class_name_category(tree):
    catalog = make_catalog("image_folder", root=tree, category="skirt")
    assert len(catalog) == 1


def test_classes_subset(tree):
    catalog = make_catalog("image_folder", root=tree, category="dress", classes=["skirt"])
    assert catalog.classes == ["skirt"]


def test_max_items_per_class(tree):
    catalog = make_catalog("image_folder", root=tree, max_items_per_class=1)
    assert len(catalog) == 5


def test_unknown_category(tree):
    with pytest.raises(UnknownNameError, match="'coat'"):
        make_catalog("image_folder", root=tree, category="coat")


def test_class_outside_category(tree):
    with pytest.raises(ConfigError, match="not in category"):
        make_catalog("image_folder", root=tree, category="dress", classes=["t-shirt"])


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="not found"):
        make_catalog("image_folder", root=tmp_path / "absent")


def test_root_that_is_a_file(tmp_path):
    root = tmp_path / "photos.zip"
    root.write_bytes(b"not a folder")
    with pytest.raises(DataError, match="is not a folder"):
        make_catalog("image_folder", root=root)


def test_unknown_category_choices_unique(tree):
    with pytest.raises(UnknownNameError) as caught:
        make_catalog("image_folder", root=tree, category="coat")
    choices = str(caught.value).split("choose one of ")[1]
    assert choices.count("'dress'") == 1


def test_empty_class_folder_left_out(fresh_tree):
    (fresh_tree / "train" / "pants").mkdir()
    catalog = make_catalog("image_folder", root=fresh_tree, category="all")
    assert "pants" not in catalog.classes
    assert catalog.report.warnings["empty_classes"] == ["pants"]
    assert "pants" not in catalog.attribute_names


def test_no_split_folders(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="split_dirs"):
        make_catalog("image_folder", root=tmp_path)


def test_custom_split_dirs(tree):
    catalog = make_catalog("image_folder", root=tree, split_dirs={"train": "validation"})
    assert len(catalog.indices("train")) == 2


def test_pixel_attributes_cached(fresh_tree, monkeypatch):
    make_catalog("image_folder", root=fresh_tree)

    def fail(*args, **kwargs):
        raise AssertionError("photo analysed again although its attributes are cached")

    monkeypatch.setattr(image_folder, "describe_pixels", fail)
    catalog = make_catalog("image_folder", root=fresh_tree)
    assert len(catalog) == len(PHOTOS)


def test_fingerprint_follows_photos(fresh_tree):
    before = make_catalog("image_folder", root=fresh_tree).fingerprint()
    (fresh_tree / "train" / "dress" / "a.jpg").write_bytes(photo("blue"))
    after = make_catalog("image_folder", root=fresh_tree).fingerprint()
    assert before != after


@pytest.mark.real_data
def test_clothing_small_subset(clothing_small_root):
    catalog = make_catalog("image_folder", root=clothing_small_root, category="all", max_items_per_class=4)
    # 4 photos of each of the 10 classes in train and in validation; there is no test folder.
    assert [len(catalog.indices(s)) for s in ("train", "val", "test")] == [40, 40, 0]


@pytest.mark.real_data
def test_clothing_small_groups_exist(clothing_small_root):
    catalog = make_catalog("image_folder", root=clothing_small_root, category="all", max_items_per_class=1)
    grouped = {name for classes in CLOTHING_SMALL_GROUPS.values() for name in classes}
    assert grouped == set(catalog.classes)


@pytest.mark.real_data
def test_clothing_small_image_size(clothing_small_root):
    catalog = make_catalog("image_folder", root=clothing_small_root, category="toptee", max_items_per_class=1)
    assert min(catalog.load_image(0).size) == 128
