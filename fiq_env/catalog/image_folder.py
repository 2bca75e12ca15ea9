"""The ``image_folder`` catalog source: a folder of real photos laid out as ``<split>/<class>/<file>``.

Attributes come from the class folder and from the pixels (see
:mod:`fiq_env.catalog.color`): the dominant garment color name, its
lightness and solid versus patterned. Every photo is decoded and analysed
once when the catalog is first indexed. The results are cached by file path,
size and mtime, so later catalogs over the same folder start quickly.

A category is a named group of classes. :data:`CLOTHING_SMALL_GROUPS` is the
default grouping, written for the ten classes of the clothing-small photo
set and named after the Fashion IQ categories where they match:

==============  ==================================
category        classes
==============  ==================================
``dress``       dress, skirt
``shirt``       shirt, longsleeve, outwear
``toptee``      t-shirt
``bottoms``     pants, shorts
``accessories`` hat, shoes
``all``         every class folder found
==============  ==================================

A single class folder name also works as a category when no group has that
name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from fiq_env.catalog import CATALOGS
from fiq_env.catalog.base import SPLITS, Catalog, CatalogReport, labels_from_groups
from fiq_env.catalog.color import (
    COLOR_NAMER_VERSION,
    DEFAULT_CONFIG,
    LIGHTNESS_LEVELS,
    PATTERN_VALUES,
    ColorNamerConfig,
    PixelAttributes,
    describe_pixels,
)
from fiq_env.catalog.colors import COLOR_NAMES
from fiq_env.catalog.image_checks import IMAGE_SUFFIXES, ImageCheckResult, cache_name_for, check_images, warn_about_exclusions
from fiq_env.catalog.schema import UNKNOWN, AttributeGroup
from fiq_env.errors import ConfigError, DataError, UnknownNameError

logger = logging.getLogger(__name__)

CLOTHING_SMALL_GROUPS: dict[str, tuple[str, ...]] = {
    "dress": ("dress", "skirt"),
    "shirt": ("shirt", "longsleeve", "outwear"),
    "toptee": ("t-shirt",),
    "bottoms": ("pants", "shorts"),
    "accessories": ("hat", "shoes"),
}
"""Default category groups, written for the clothing-small photo set."""

DEFAULT_SPLIT_DIRS: dict[str, str] = {"train": "train", "val": "validation", "test": "test"}

COLOR_GROUP = AttributeGroup("color", "color", COLOR_NAMES)
LIGHTNESS_GROUP = AttributeGroup("lightness", "color", LIGHTNESS_LEVELS, ordered=True, more="lighter", less="darker")
PATTERN_GROUP = AttributeGroup("pattern", "texture", PATTERN_VALUES)


def _pixel_analysis(config: ColorNamerConfig):
    """Return the per-image analysis run by the integrity check, and the key that identifies it."""

    def analyze(image: Image.Image) -> dict:
        return describe_pixels(image, config=config).to_dict()

    settings = json.dumps(asdict(config), sort_keys=True)
    key = f"pixels-v{COLOR_NAMER_VERSION}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"
    return analyze, key


@CATALOGS.register("image_folder")
class ImageFolderCatalog(Catalog):
    """Photos in ``<root>/<split folder>/<class>/<file>`` with class and pixel attributes.

    Items are ordered by split (train, val, test), then class name, then file
    name. Split folders that do not exist are skipped, so a data set without
    a test folder loads with an empty test split. Photos that are empty,
    corrupt or byte-identical placeholders are excluded and listed in
    :attr:`report`.

    Attribute groups: ``class`` (type style, the catalog's class names),
    ``color`` (the fifteen names of :mod:`fiq_env.catalog.colors`),
    ``lightness`` (dark < medium < light) and ``pattern`` (solid or
    patterned, type texture). The last three are measured on the pixels and
    can be wrong (see :mod:`fiq_env.catalog.color`).

    Args:
        root: the folder holding the split folders.
        category: ``"all"``, a key of ``class_groups`` or a class folder name.
        classes: optional subset of the category's classes to keep.
        split_dirs: split name to folder name under ``root``.
        class_groups: category name to its classes; defaults to
            :data:`CLOTHING_SMALL_GROUPS`.
        image_size: :meth:`load_image` resizes photos so their short side has
            this many pixels.
        max_items_per_class: keep at most this many files (the first by
            name) of each class in each split; None keeps all.
        placeholder_min_copies: number of byte-identical photos from which
            they all count as placeholders; 0 turns the test off.
        color_config: settings of the pixel color namer.
    """

    source = "image_folder"

    def __init__(
        self,
        root: str | Path,
        category: str = "all",
        classes: Sequence[str] | None = None,
        split_dirs: Mapping[str, str] | None = None,
        class_groups: Mapping[str, Sequence[str]] | None = None,
        image_size: int = 128,
        max_items_per_class: int | None = None,
        placeholder_min_copies: int = 3,
        color_config: ColorNamerConfig = DEFAULT_CONFIG,
    ) -> None:
        self.root = Path(root)
        self.category = category
        self.split_dirs = dict(DEFAULT_SPLIT_DIRS if split_dirs is None else split_dirs)
        self.image_size = image_size
        self.max_items_per_class = max_items_per_class
        self.placeholder_min_copies = placeholder_min_copies
        self.color_config = color_config
        self._validate_arguments()
        self.report = CatalogReport()

        self._folders = self._split_folders()
        found_classes = self._find_classes()
        self.classes = self._resolve_classes(found_classes, class_groups, classes)
        files, splits = self._list_files()

        analyze, analysis_key = _pixel_analysis(color_config)
        self._analysis_key = analysis_key
        self.image_checks: ImageCheckResult = check_images(
            files,
            cache_name_for(self.root),
            analyze=analyze,
            analysis_key=analysis_key,
            draft_size=2 * color_config.analysis_size,
            placeholder_min_copies=placeholder_min_copies,
            description=f"analysing {self.root.name} photos",
        )
        self.report.excluded.update(self.image_checks.excluded)
        warn_about_exclusions(self.image_checks.excluded, f"image_folder {self.root}")

        excluded = self.image_checks.excluded_ids
        self.item_ids = [item for item in files if item not in excluded]
        self._drop_empty_classes()
        self._paths = {item: Path(files[item]) for item in self.item_ids}
        self.split_codes = np.array([SPLITS.index(splits[item]) for item in self.item_ids], dtype=np.int8)
        self._build_attributes()
        self.titles = None
        self.caption_pairs = []
        logger.info("loaded %r from %s", self, self.root)

    # Folder scanning ------------------------------------------------------------------

    def _validate_arguments(self) -> None:
        unknown = sorted(set(self.split_dirs) - set(SPLITS))
        if unknown:
            raise ConfigError(f"split_dirs has unknown split name(s) {unknown}; use keys among {SPLITS}")
        if self.image_size < 1:
            raise ConfigError(f"image_size must be a positive number of pixels, got {self.image_size}")
        if self.max_items_per_class is not None and self.max_items_per_class < 1:
            raise ConfigError(f"max_items_per_class must be positive or None, got {self.max_items_per_class}")
        if self.root.exists() and not self.root.is_dir():
            raise DataError(f"image folder root {self.root} is not a folder; pass the folder that contains the split folders")
        if not self.root.is_dir():
            raise DataError(f"image folder root {self.root} not found")

    def _split_folders(self) -> dict[str, Path]:
        folders = {}
        for split, name in self.split_dirs.items():
            folder = self.root / name
            if folder.is_dir():
                folders[split] = folder
            else:
                logger.info("%s: no %s folder at %s; the %s split is empty", self.root, split, folder, split)
        if not folders:
            expected = ", ".join(str(self.root / name) for name in self.split_dirs.values())
            raise DataError(f"{self.root} has none of the split folders {expected}; set split_dirs to its layout")
        return folders

    def _find_classes(self) -> list[str]:
        names = {entry.name for folder in self._folders.values() for entry in folder.iterdir() if entry.is_dir()}
        if not names:
            raise DataError(f"{self.root}: the split folders contain no class folders (expected <split>/<class>/<file>)")
        return sorted(names)

    def _resolve_classes(
        self,
        found: list[str],
        class_groups: Mapping[str, Sequence[str]] | None,
        classes: Sequence[str] | None,
    ) -> list[str]:
        """Return the sorted class names of this catalog's category, restricted to ``classes``."""
        groups = CLOTHING_SMALL_GROUPS if class_groups is None else class_groups
        if self.category == "all":
            chosen = list(found)
        elif self.category in groups:
            chosen = [name for name in groups[self.category] if name in found]
            if not chosen:
                raise DataError(
                    f"category {self.category!r} groups classes {list(groups[self.category])}, none of which is "
                    f"a folder under {self.root} (found {found}); pass class_groups for this folder"
                )
        elif self.category in found:
            chosen = [self.category]
        else:
            choices = ["all", *sorted(set(groups) | set(found))]
            raise UnknownNameError(f"unknown image_folder category {self.category!r}; choose one of {choices}")

        if classes is not None:
            missing = sorted(set(classes) - set(chosen))
            if missing:
                raise ConfigError(f"classes {missing} are not in category {self.category!r} (its classes: {chosen})")
            chosen = [name for name in chosen if name in set(classes)]
        return sorted(chosen)

    def _list_files(self) -> tuple[dict[str, Path], dict[str, str]]:
        """Return item id to file and item id to split; ids are ``<split folder>/<class>/<file name>``."""
        files: dict[str, Path] = {}
        splits: dict[str, str] = {}
        folders = self._folders
        for split in SPLITS:
            if split not in folders:
                continue
            for name in self.classes:
                class_folder = folders[split] / name
                if not class_folder.is_dir():
                    continue
                paths = sorted(p for p in class_folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
                if self.max_items_per_class is not None:
                    paths = paths[: self.max_items_per_class]
                for path in paths:
                    item = f"{folders[split].name}/{name}/{path.name}"
                    files[item] = path
                    splits[item] = split
        if not files:
            raise DataError(f"{self.root}: no .jpg, .jpeg or .png files in the class folders {self.classes}")
        return files, splits

    def _drop_empty_classes(self) -> None:
        """Remove classes left without a usable photo, so no attribute names a class with no item."""
        used = {item.split("/")[-2] for item in self.item_ids}
        empty = [name for name in self.classes if name not in used]
        if not empty:
            return
        self.classes = [name for name in self.classes if name in used]
        self.report.warnings["empty_classes"] = empty
        logger.warning(
            "image_folder %s: left out %d class folder(s) with no usable photo in any split: %s",
            self.root,
            len(empty),
            ", ".join(empty),
        )

    # Attributes -----------------------------------------------------------------------

    def _build_attributes(self) -> None:
        class_group = AttributeGroup("class", "style", tuple(self.classes))
        self.groups = (class_group, COLOR_GROUP, LIGHTNESS_GROUP, PATTERN_GROUP)
        num_items = len(self.item_ids)
        values = {group.name: np.full(num_items, UNKNOWN, dtype=np.int16) for group in self.groups}

        for index, item in enumerate(self.item_ids):
            values["class"][index] = self.classes.index(item.split("/")[-2])
            pixels = PixelAttributes.from_dict(self.image_checks.checks[item].analysis)
            values["color"][index] = COLOR_GROUP.values.index(pixels.color)
            values["lightness"][index] = LIGHTNESS_GROUP.values.index(pixels.lightness)
            values["pattern"][index] = PATTERN_GROUP.values.index("patterned" if pixels.patterned else "solid")

        self.group_values = values
        self.attribute_names, self.attribute_types, self.labels = labels_from_groups(self.groups, values, num_items)
        self.label_mask = np.ones(num_items, dtype=bool)

    # Catalog interface ----------------------------------------------------------------

    def load_image(self, index: int) -> Image.Image:
        """Return photo ``index`` as RGB with its short side resized to ``image_size``.

        Raises:
            DataError: when the file changed since indexing and no longer decodes.
        """
        path = self._paths[self.item_ids[index]]
        try:
            with Image.open(path) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (self.image_size, self.image_size))
                rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"photo {path} no longer decodes ({error}); re-create the catalog") from error
        scale = self.image_size / min(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        return rgb.resize(size, Image.Resampling.BILINEAR)

    def fingerprint_payload(self) -> dict:
        return {
            "classes": self.classes,
            "split_dirs": self.split_dirs,
            "max_items_per_class": self.max_items_per_class,
            "placeholder_min_copies": self.placeholder_min_copies,
            "images": self.image_checks.fingerprint_payload(),
            "pixel_analysis": self._analysis_key,
            "image_size": self.image_size,
        }


__all__ = ["CLOTHING_SMALL_GROUPS", "DEFAULT_SPLIT_DIRS", "ImageFolderCatalog"]
