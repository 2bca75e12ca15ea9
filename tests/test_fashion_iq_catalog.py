"""Tests of the fashion_iq catalog source on a generated layout and on the real annotation files."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fiq_env.catalog.image_checks as image_checks
from fiq_env.catalog import make_catalog
from fiq_env.errors import DataError

TRAIN_IDS = ["GOODJPG", "GOODPNG", "MISSING", "EMPTY", "TRUNC", "NOTIMAGE", "PH1", "PH2", "PH3", "TWICE"]
VAL_IDS = ["VALA", "VALB", "TWICE"]
TEST_IDS = ["TESTA", "TESTB"]

# Caption pairs of the fake root; the comment gives the reason each one is kept or dropped.
TRAIN_PAIRS = [
    ("GOODJPG", "GOODPNG"),  # kept
    ("MISSING", "GOODJPG"),  # dropped: missing reference
    ("GOODPNG", "EMPTY"),  # dropped: empty target
    ("TRUNC", "NOTIMAGE"),  # dropped: both corrupt
    ("PH1", "GOODJPG"),  # dropped: placeholder
    ("TWICE", "UNLISTED"),  # kept; UNLISTED is in no split file
]
VAL_PAIRS = [("VALA", "VALB")]
TEST_CANDIDATES = ["TESTA", "TESTB"]


def noise_image(seed: int, size: tuple[int, int] = (24, 32)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def build_root(root: Path) -> tuple[Path, Path]:
    """Write a fake Fashion IQ root and image folder; return ``(root, image_dir)``."""
    for split, ids in (("train", TRAIN_IDS), ("val", VAL_IDS), ("test", TEST_IDS)):
        write_json(root / "image_splits" / f"split.dress.{split}.json", ids)
    write_json(
        root / "captions" / "cap.dress.train.json",
        [{"target": t, "candidate": c, "captions": [f"{c} to {t}", "is darker"]} for c, t in TRAIN_PAIRS],
    )
    write_json(
        root / "captions" / "cap.dress.val.json",
        [{"target": t, "candidate": c, "captions": ["is red", "is longer"]} for c, t in VAL_PAIRS],
    )
    write_json(
        root / "captions" / "cap.dress.test.json",
        [{"candidate": c, "captions": ["has straps", "is blue"]} for c in TEST_CANDIDATES],
    )

    images = root / "images"
    images.mkdir()
    good = ["GOODJPG", "TWICE", "VALA", "VALB", "TESTA", "TESTB", "UNLISTED"]
    for seed, item in enumerate(good):
        (images / f"{item}.jpg").write_bytes(encode(noise_image(seed), "JPEG"))
    (images / "GOODPNG.png").write_bytes(encode(noise_image(100), "PNG"))
    (images / "EMPTY.jpg").write_bytes(b"")
    jpeg = encode(noise_image(200, (64, 64)), "JPEG")
    (images / "TRUNC.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (images / "NOTIMAGE.jpg").write_text("<html>404 not found</html>")
    placeholder = encode(Image.new("RGB", (16, 16), (200, 200, 200)), "PNG")
    for item in ("PH1", "PH2", "PH3"):
        (images / f"{item}.png").write_bytes(placeholder)
    return root, images


@pytest.fixture
def fake_root(tmp_path: Path) -> tuple[Path, Path]:
    return build_root(tmp_path / "fiq")


@pytest.fixture
def catalog(fake_root):
    root, images = fake_root
    return make_catalog("fashion_iq", root=root, category="dress", image_dir=images)


@pytest.mark.parametrize(
    ("problem", "item"),
    [
        ("missing", "MISSING"),
        ("empty", "EMPTY"),
        ("corrupt", "TRUNC"),
        ("corrupt", "NOTIMAGE"),
        ("placeholder", "PH1"),
        ("placeholder", "PH2"),
        ("placeholder", "PH3"),
    ],
)
def test_bad_image_reported(catalog, problem, item):
    assert item in catalog.report.excluded[problem]


@pytest.mark.parametrize("item", ["MISSING", "EMPTY", "TRUNC", "NOTIMAGE", "PH1", "PH2", "PH3"])
def test_bad_image_excluded(catalog, item):
    assert item not in catalog.item_ids


def test_excluded_count(catalog):
    assert catalog.report.num_excluded == 7


def test_summary_names_problem(catalog):
    assert "placeholder: 3 item(s)" in catalog.report.summary()


def test_pairs_with_bad_images_dropped(catalog):
    assert catalog.report.dropped_pairs == 4


def test_kept_pairs_use_kept_items(catalog):
    kept = set(catalog.item_ids)
    used = {p.reference for p in catalog.caption_pairs} | {p.target for p in catalog.caption_pairs if p.target}
    assert used <= kept


def test_kept_pair_count(catalog):
    assert len(catalog.caption_pairs) == 2 + len(VAL_PAIRS) + len(TEST_CANDIDATES)


@pytest.mark.parametrize("item", ["GOODJPG", "GOODPNG"])
def test_load_good_image(catalog, item):
    image = catalog.load_image(catalog.index_of(item))
    assert image.mode == "RGB"


def test_load_image_resized(fake_root):
    root, images = fake_root
    catalog = make_catalog("fashion_iq", root=root, category="dress", image_dir=images, image_size=12)
    assert min(catalog.load_image(0).size) == 12


def test_test_captions_without_target(catalog):
    test_pairs = [p for p in catalog.caption_pairs if p.split == "test"]
    assert all(p.target is None for p in test_pairs)


def test_id_in_two_splits_reported(catalog):
    assert catalog.report.warnings["in_several_splits"] == ["TWICE"]


def test_id_in_two_splits_kept_in_first(catalog):
    assert catalog.split_codes[catalog.index_of("TWICE")] == 0


def test_unlisted_caption_id_reported(catalog):
    assert catalog.report.warnings["missing_from_split_files"] == ["UNLISTED"]


def test_unlisted_caption_id_added(catalog):
    assert "UNLISTED" in catalog.item_ids


def test_split_sizes(catalog):
    assert [len(catalog.indices(s)) for s in ("train", "val", "test")] == [4, 2, 2]


def test_without_image_dir_loads_annotations(fake_root):
    root, _ = fake_root
    catalog = make_catalog("fashion_iq", root=root, category="dress")
    # TWICE counts once; UNLISTED joins from the captions.
    assert len(catalog) == len(TRAIN_IDS) + 2 + len(TEST_IDS) + 1


def test_without_image_dir_load_image_raises(fake_root):
    root, _ = fake_root
    catalog = make_catalog("fashion_iq", root=root, category="dress")
    with pytest.raises(DataError, match="image_dir"):
        catalog.load_image(0)


def test_no_attribute_file_empty_vocabulary(catalog):
    assert catalog.labels.shape == (len(catalog), 0)


def test_no_attribute_file_mask_false(catalog):
    assert not catalog.label_mask.any()


def test_malformed_caption_json(fake_root):
    root, _ = fake_root
    (root / "captions" / "cap.dress.val.json").write_text('[{"target": "VALA", ')
    with pytest.raises(DataError, match="cap.dress.val.json"):
        make_catalog("fashion_iq", root=root, category="dress")


def test_missing_key_names_entry(fake_root):
    root, _ = fake_root
    entries = [{"target": "VALA", "candidate": "VALB", "captions": ["a", "b"]}, {"target": "VALA", "captions": ["a"]}]
    write_json(root / "captions" / "cap.dress.val.json", entries)
    with pytest.raises(DataError, match="entry 1 has no 'candidate'"):
        make_catalog("fashion_iq", root=root, category="dress")


def test_train_caption_without_target(fake_root):
    root, _ = fake_root
    write_json(root / "captions" / "cap.dress.train.json", [{"candidate": "GOODJPG", "captions": ["a", "b"]}])
    with pytest.raises(DataError, match="entry 0 has no 'target'"):
        make_catalog("fashion_iq", root=root, category="dress")


def test_split_file_with_number(fake_root):
    root, _ = fake_root
    write_json(root / "image_splits" / "split.dress.test.json", ["TESTA", 7])
    with pytest.raises(DataError, match="entry 1"):
        make_catalog("fashion_iq", root=root, category="dress")


def test_missing_split_file(fake_root):
    root, _ = fake_root
    os.remove(root / "image_splits" / "split.dress.val.json")
    with pytest.raises(DataError, match="split.dress.val.json not found"):
        make_catalog("fashion_iq", root=root, category="dress")


def test_second_index_uses_cache(fake_root, monkeypatch):
    root, images = fake_root
    make_catalog("fashion_iq", root=root, category="dress", image_dir=images)

    def fail(*args, **kwargs):
        raise AssertionError("image decoded again although its check is cached")

    monkeypatch.setattr(image_checks, "check_image_file", fail)
    catalog = make_catalog("fashion_iq", root=root, category="dress", image_dir=images)
    assert catalog.report.num_excluded == 7


def test_changed_file_checked_again(fake_root, monkeypatch):
    root, images = fake_root
    make_catalog("fashion_iq", root=root, category="dress", image_dir=images)
    (images / "EMPTY.jpg").write_bytes(encode(noise_image(300), "JPEG"))
    catalog = make_catalog("fashion_iq", root=root, category="dress", image_dir=images)
    assert "EMPTY" in catalog.item_ids


def test_fingerprint_follows_captions(fake_root):
    root, _ = fake_root
    before = make_catalog("fashion_iq", root=root, category="dress").fingerprint()
    write_json(root / "captions" / "cap.dress.val.json", [])
    after = make_catalog("fashion_iq", root=root, category="dress").fingerprint()
    assert before != after


def test_fingerprint_follows_images(fake_root):
    root, images = fake_root
    before = make_catalog("fashion_iq", root=root, category="dress", image_dir=images).fingerprint()
    (images / "VALA.jpg").write_bytes(encode(noise_image(400), "JPEG"))
    after = make_catalog("fashion_iq", root=root, category="dress", image_dir=images).fingerprint()
    assert before != after


@pytest.fixture
def attribute_catalog(fake_root, tmp_path):
    root, _ = fake_root
    path = tmp_path / "attributes.json"
    write_json(
        path,
        {
            "items": {"GOODJPG": ["floral", "red"], "VALA": ["red"], "OTHERCATEGORY": ["denim"]},
            "types": {"floral": "texture", "red": "color"},
        },
    )
    return make_catalog("fashion_iq", root=root, category="dress", attribute_file=path)


def test_attribute_vocabulary(attribute_catalog):
    assert attribute_catalog.attribute_names == ("floral", "red")


def test_attribute_types(attribute_catalog):
    assert attribute_catalog.attribute_types == ("texture", "color")


def test_attribute_labels(attribute_catalog):
    assert attribute_catalog.attribute_words(attribute_catalog.index_of("GOODJPG")) == ["floral", "red"]


def test_attribute_mask_count(attribute_catalog):
    assert attribute_catalog.label_mask.sum() == 2


def test_attribute_mask_false_without_entry(attribute_catalog):
    assert not attribute_catalog.label_mask[attribute_catalog.index_of("TESTA")]


def test_attribute_bad_type(fake_root, tmp_path):
    root, _ = fake_root
    path = tmp_path / "attributes.json"
    write_json(path, {"items": {"GOODJPG": ["red"]}, "types": {"red": "hue"}})
    with pytest.raises(DataError, match="'hue'"):
        make_catalog("fashion_iq", root=root, category="dress", attribute_file=path)


# Pairs and images per split, as published with Fashion IQ.
REAL_COUNTS = {
    "dress": ((5985, 2017, 2024), (11452, 3817, 3818)),
    "shirt": ((5988, 2038, 2038), (19036, 6346, 6346)),
    "toptee": ((6027, 1961, 2056), (16121, 5373, 5374)),
}


@pytest.mark.real_data
@pytest.mark.parametrize("category", sorted(REAL_COUNTS))
def test_real_counts(fashion_iq_root, category):
    catalog = make_catalog("fashion_iq", root=fashion_iq_root, category=category)
    pairs, images = REAL_COUNTS[category]
    measured_pairs = tuple(sum(p.split == s for p in catalog.caption_pairs) for s in ("train", "val", "test"))
    measured_images = tuple(len(catalog.indices(s)) for s in ("train", "val", "test"))
    assert (measured_pairs, measured_images) == (pairs, images)


@pytest.mark.real_data
def test_real_test_targets_hidden(fashion_iq_root):
    catalog = make_catalog("fashion_iq", root=fashion_iq_root, category="dress")
    assert all(p.target is None for p in catalog.caption_pairs if p.split == "test")


def test_root_that_is_a_file(tmp_path):
    root = tmp_path / "fashion-iq.zip"
    root.write_bytes(b"not a folder")
    with pytest.raises(DataError, match="cannot read .*split.dress.train.json"):
        make_catalog("fashion_iq", root=root, category="dress")
