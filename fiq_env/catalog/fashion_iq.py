"""The ``fashion_iq`` catalog source: the real Fashion IQ files of one category.

Layout under ``root`` (the public release of Wu et al., CVPR 2021)::

    captions/cap.{category}.{split}.json       [{"target", "candidate", "captions": [str, str]}, ...]
    image_splits/split.{category}.{split}.json [ASIN, ...]

with ``split`` in ``train``, ``val``, ``test``. Test caption files have no
``target`` (the challenge hides it). The product images are not part of the
release; users download them into a folder of ``<ASIN>.jpg`` or
``<ASIN>.png`` and pass it as ``image_dir``.

Attribute file (optional, JSON)::

    {
      "items": {"B00ABC1234": ["floral", "red", "sleeveless"], ...},
      "types": {"floral": "texture", "red": "color", ...}
    }

``items`` maps an item id to its attribute words and is required. ``types``
is optional and maps a word to one of
:data:`fiq_env.catalog.schema.ATTRIBUTE_TYPES`; words it does not list get
``default_attribute_type``. The vocabulary is the sorted set of words used by
this catalog's items, so one file can serve all three categories. Items
without an entry have an all-False label row and ``label_mask`` False.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fiq_env.catalog import CATALOGS
from fiq_env.catalog.base import SPLITS, CaptionPair, Catalog, CatalogReport
from fiq_env.catalog.image_checks import (
    IMAGE_SUFFIXES,
    ImageCheckResult,
    cache_name_for,
    check_images,
    warn_about_exclusions,
)
from fiq_env.catalog.schema import ATTRIBUTE_TYPES
from fiq_env.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

FASHION_IQ_CATEGORIES = ("dress", "shirt", "toptee")


def _read_json_file(path: Path) -> tuple[object, str]:
    """Return the parsed content of ``path`` and the SHA-256 of its bytes."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} not found; check the Fashion IQ root folder") from None
    except OSError as error:
        # For example a root that is a file (NotADirectoryError) or an unreadable file.
        raise DataError(f"cannot read {path} ({error}); check the Fashion IQ root folder") from error
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error}); download the file again") from error
    return data, hashlib.sha256(content).hexdigest()


def _parse_split_file(path: Path, data: object) -> list[str]:
    if not isinstance(data, list):
        raise DataError(f"{path} must contain a JSON list of item ids, found {type(data).__name__}")
    for position, item in enumerate(data):
        if not isinstance(item, str) or not item:
            raise DataError(f"{path}: entry {position} must be a non-empty item id string, found {item!r}")
    return data


def _parse_caption_file(path: Path, data: object, split: str) -> list[CaptionPair]:
    if not isinstance(data, list):
        raise DataError(f"{path} must contain a JSON list of caption entries, found {type(data).__name__}")
    pairs = []
    for position, entry in enumerate(data):
        where = f"{path}: entry {position}"
        if not isinstance(entry, dict):
            raise DataError(f"{where} must be an object with 'candidate' and 'captions', found {entry!r}")
        if not isinstance(entry.get("candidate"), str):
            raise DataError(f"{where} has no 'candidate' item id string (keys: {sorted(entry)})")
        captions = entry.get("captions")
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise DataError(f"{where} needs 'captions' as a list of strings, found {captions!r}")
        target = entry.get("target")
        if target is None and split != "test":
            raise DataError(f"{where} has no 'target' item id; only test caption files may omit it")
        if target is not None and not isinstance(target, str):
            raise DataError(f"{where} has a 'target' that is not a string: {target!r}")
        pairs.append(CaptionPair(entry["candidate"], target, tuple(captions), split))
    return pairs


def _find_image_files(image_dir: Path) -> dict[str, Path]:
    """Map each file stem in ``image_dir`` with an image suffix to its path (.jpg before .png)."""
    if not image_dir.is_dir():
        raise DataError(f"image folder {image_dir} not found; pass image_dir=None to load captions and splits only")
    found: dict[str, Path] = {}
    for entry in sorted(image_dir.iterdir()):
        suffix = entry.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            continue
        previous = found.get(entry.stem)
        if previous is None or IMAGE_SUFFIXES.index(suffix) < IMAGE_SUFFIXES.index(previous.suffix.lower()):
            found[entry.stem] = entry
    return found


@CATALOGS.register("fashion_iq")
class FashionIQCatalog(Catalog):
    """The real Fashion IQ items, splits and caption pairs of one category.

    Items are the ids of the three split files, in file order (train, then
    val, then test), followed by caption ids that no split file lists (kept
    in the split of their caption file and reported as
    ``missing_from_split_files``). An id listed in several split files is
    kept in the first of train, val, test and reported as
    ``in_several_splits``.

    With ``image_dir``, every image is decoded once at indexing, and the
    results are cached by path, size and mtime. Items whose image is missing,
    empty, corrupt or a placeholder are excluded, together with every caption
    pair that uses them, and listed in :attr:`report`.

    Args:
        root: folder with ``captions/`` and ``image_splits/``.
        category: ``"dress"``, ``"shirt"`` or ``"toptee"`` (other names work
            when their files exist).
        image_dir: folder of ``<ASIN>.jpg|png`` product images, or None to
            load captions and splits only (then :meth:`load_image` raises).
        attribute_file: optional JSON attribute file (format in the module
            docstring).
        image_size: if given, :meth:`load_image` resizes images so their
            short side has this many pixels.
        placeholder_min_copies: number of byte-identical images from which
            they all count as dead-link placeholders; 0 turns the test off.
        default_attribute_type: type of attribute words the file's
            ``types`` does not list.
    """

    source = "fashion_iq"

    def __init__(
        self,
        root: str | Path,
        category: str,
        image_dir: str | Path | None = None,
        attribute_file: str | Path | None = None,
        image_size: int | None = None,
        placeholder_min_copies: int = 3,
        default_attribute_type: str = "style",
    ) -> None:
        self.root = Path(root)
        self.category = category
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.image_size = image_size
        self.placeholder_min_copies = placeholder_min_copies
        if default_attribute_type not in ATTRIBUTE_TYPES:
            raise ConfigError(
                f"default_attribute_type {default_attribute_type!r} is not one of {ATTRIBUTE_TYPES}"
            )
        if image_size is not None and image_size < 1:
            raise ConfigError(f"image_size must be a positive number of pixels or None, got {image_size}")
        self.report = CatalogReport()

        item_splits, pairs = self._load_annotations()
        self._image_paths: dict[str, Path] = {}
        self.image_checks: ImageCheckResult | None = None
        if self.image_dir is not None:
            item_splits, pairs = self._check_images(item_splits, pairs)

        self.item_ids = list(item_splits)
        self.split_codes = np.array([SPLITS.index(s) for s in item_splits.values()], dtype=np.int8)
        self.caption_pairs = pairs
        self.titles = None
        self.groups = ()
        self.group_values = {}

        self._attribute_file_hash: str | None = None
        self._load_attributes(Path(attribute_file) if attribute_file is not None else None, default_attribute_type)
        logger.info("loaded %r with %d caption pairs", self, len(self.caption_pairs))

    # Annotation files -----------------------------------------------------------------

    def _load_annotations(self) -> tuple[dict[str, str], list[CaptionPair]]:
        """Read the split and caption files; return item id to split, and the caption pairs."""
        self._file_hashes: dict[str, str] = {}
        item_splits: dict[str, str] = {}
        in_several: list[str] = []
        pairs: list[CaptionPair] = []

        for split in SPLITS:
            path = self.root / "image_splits" / f"split.{self.category}.{split}.json"
            data, self._file_hashes[path.name] = _read_json_file(path)
            for item in _parse_split_file(path, data):
                if item not in item_splits:
                    item_splits[item] = split
                elif item_splits[item] != split:
                    in_several.append(item)

        for split in SPLITS:
            path = self.root / "captions" / f"cap.{self.category}.{split}.json"
            data, self._file_hashes[path.name] = _read_json_file(path)
            pairs.extend(_parse_caption_file(path, data, split))

        unlisted: list[str] = []
        for pair in pairs:
            for item in (pair.reference, pair.target):
                if item is not None and item not in item_splits:
                    item_splits[item] = pair.split
                    unlisted.append(item)

        if in_several:
            self.report.warnings["in_several_splits"] = in_several
            logger.warning("%s: %d item id(s) appear in several split files; kept in the first", self.category, len(in_several))
        if unlisted:
            self.report.warnings["missing_from_split_files"] = unlisted
            logger.warning("%s: %d caption item id(s) are in no split file; added to their caption's split", self.category, len(unlisted))
        return item_splits, pairs

    # Images ---------------------------------------------------------------------------

    def _check_images(
        self, item_splits: dict[str, str], pairs: list[CaptionPair]
    ) -> tuple[dict[str, str], list[CaptionPair]]:
        """Check every image; drop excluded items and the caption pairs that use them."""
        assert self.image_dir is not None
        found = _find_image_files(self.image_dir)
        files = {item: found.get(item) for item in item_splits}
        self.image_checks = check_images(
            files,
            cache_name_for(self.image_dir),
            placeholder_min_copies=self.placeholder_min_copies,
            description=f"checking {self.category} images",
        )
        excluded = self.image_checks.excluded_ids
        self.report.excluded.update(self.image_checks.excluded)
        warn_about_exclusions(self.image_checks.excluded, f"fashion_iq {self.category}")

        kept_pairs = [p for p in pairs if p.reference not in excluded and p.target not in excluded]
        self.report.dropped_pairs = len(pairs) - len(kept_pairs)
        if self.report.dropped_pairs:
            logger.warning("%s: dropped %d caption pair(s) that use an excluded image", self.category, self.report.dropped_pairs)

        kept_items = {item: split for item, split in item_splits.items() if item not in excluded}
        self._image_paths = {item: files[item] for item in kept_items}
        return kept_items, kept_pairs

    def load_image(self, index: int) -> Image.Image:
        """Return item ``index``'s product image as RGB, resized when ``image_size`` is set.

        Raises:
            DataError: when the catalog has no image folder, or the file
                changed since indexing and no longer decodes.
        """
        item = self.item_ids[index]
        if self.image_dir is None:
            raise DataError(
                f"the fashion_iq {self.category} catalog has no image folder, so item {item!r} has no image; "
                "download the product images from the URL lists published with Fashion IQ, save them as "
                "<folder>/<ASIN>.jpg (or .png) and pass image_dir=<folder>"
            )
        path = self._image_paths[item]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"image {path} of item {item!r} no longer decodes ({error}); re-create the catalog") from error
        if self.image_size is not None:
            scale = self.image_size / min(rgb.size)
            rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.Resampling.BILINEAR)
        return rgb

    # Attributes -----------------------------------------------------------------------

    def _load_attributes(self, path: Path | None, default_type: str) -> None:
        num_items = len(self.item_ids)
        if path is None:
            self.attribute_names = ()
            self.attribute_types = ()
            self.labels = np.zeros((num_items, 0), dtype=bool)
            self.label_mask = np.zeros(num_items, dtype=bool)
            return

        data, self._attribute_file_hash = _read_json_file(path)
        if not isinstance(data, dict) or not isinstance(data.get("items"), dict):
            raise DataError(f"attribute file {path} must be an object with an 'items' mapping of id to words")
        types = data.get("types", {})
        if not isinstance(types, dict):
            raise DataError(f"attribute file {path}: 'types' must map words to attribute types, found {types!r}")
        for word, word_type in types.items():
            if word_type not in ATTRIBUTE_TYPES:
                raise DataError(f"attribute file {path}: word {word!r} has type {word_type!r}; expected one of {ATTRIBUTE_TYPES}")

        entries: dict[int, Sequence[str]] = {}
        for item, words in data["items"].items():
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise DataError(f"attribute file {path}: item {item!r} must map to a list of words, found {words!r}")
            index = self._lookup().get(item)
            if index is not None:
                entries[index] = words

        names = tuple(sorted({w for words in entries.values() for w in words}))
        column = {word: position for position, word in enumerate(names)}
        labels = np.zeros((num_items, len(names)), dtype=bool)
        for index, words in entries.items():
            labels[index, [column[w] for w in words]] = True
        mask = np.zeros(num_items, dtype=bool)
        mask[list(entries)] = True

        self.attribute_names = names
        self.attribute_types = tuple(types.get(word, default_type) for word in names)
        self.labels = labels
        self.label_mask = mask
        logger.info("%s: attribute labels for %d of %d items, %d words", self.category, len(entries), num_items, len(names))

    def _lookup(self) -> dict[str, int]:
        lookup = getattr(self, "_id_lookup", None)
        if lookup is None:
            lookup = {item: i for i, item in enumerate(self.item_ids)}
            self._id_lookup = lookup
        return lookup

    def fingerprint_payload(self) -> dict:
        return {
            "files": dict(sorted(self._file_hashes.items())),
            "images": self.image_checks.fingerprint_payload() if self.image_checks is not None else None,
            "placeholder_min_copies": self.placeholder_min_copies,
            "attribute_file": self._attribute_file_hash,
        }


__all__ = ["FASHION_IQ_CATEGORIES", "FashionIQCatalog"]
