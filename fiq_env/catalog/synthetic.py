"""The ``synthetic`` catalog: procedurally drawn garments with exact attributes.

Attributes are sampled with numpy from the seed, so a million items take
about a second. Images are drawn on demand by :mod:`fiq_env.catalog.render`
and kept in a small in-memory LRU cache. Nothing is read from or written to
disk.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
import numbers
from collections.abc import Callable, Sequence
from typing import overload

import numpy as np
from PIL import Image

from fiq_env.catalog import CATALOGS
from fiq_env.catalog.base import SPLITS, Catalog, CatalogReport, labels_from_groups
from fiq_env.catalog.garments import CATEGORIES, check_category, groups_for, make_title, sample_group_values
from fiq_env.catalog.render import GENERATOR_VERSION, render_garments
from fiq_env.errors import ConfigError, UnknownNameError

logger = logging.getLogger(__name__)

MIN_ITEMS = 100
MAX_ITEMS = 1_000_000
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
"""Share of items in the train, val and test splits."""

__all__ = ["CATEGORIES", "GENERATOR_VERSION", "SyntheticCatalog"]


class _LazyStrings(Sequence[str]):
    """A read-only sequence whose items are built on access, so a million ids cost no memory."""

    def __init__(self, length: int, build: Callable[[int], str]) -> None:
        self._length = length
        self._build = build

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self._build(i) for i in range(*index.indices(self._length))]
        position = int(index)
        if position < 0:
            position += self._length
        if not 0 <= position < self._length:
            raise IndexError(f"index {index} is out of range for {self._length} items")
        return self._build(position)


@CATALOGS.register("synthetic")
class SyntheticCatalog(Catalog):
    """Procedurally drawn garments of one category with exact attribute labels.

    Every item has a value in each attribute group of its category (see
    :mod:`fiq_env.catalog.garments`), a product title written from those
    values, and an image drawn on demand. The catalog is a pure function of
    ``(category, num_items, seed, image_size)``: two catalogs built with the
    same arguments have identical labels and identical pixels.

    Args:
        category: "dress", "shirt" or "toptee".
        num_items: number of items, from 100 to 1,000,000.
        seed: non-negative integer that fixes attributes, splits and images.
        image_size: side of the square images in pixels, from 16 to 1024.
        cache_size: number of rendered images kept in memory by :meth:`load_image`
            (0 disables the cache).

    Example::

        catalog = make_catalog("synthetic", category="dress", num_items=1000, seed=0)
        image = catalog.load_image(0)
    """

    source = "synthetic"

    def __init__(
        self,
        category: str = "dress",
        num_items: int = 1000,
        seed: int = 0,
        image_size: int = 64,
        cache_size: int = 2048,
    ) -> None:
        _check_arguments(category, num_items, seed, image_size, cache_size)
        self.category = category
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[int, Image.Image] = OrderedDict()

        # Attributes and splits come from one generator, in a fixed order.
        rng = np.random.default_rng([self.seed, CATEGORIES.index(category)])
        self.groups = groups_for(category)
        self.group_values = sample_group_values(category, num_items, rng)
        self.split_codes = _split_codes(num_items, rng)
        self.attribute_names, self.attribute_types, self.labels = labels_from_groups(
            self.groups, self.group_values, num_items
        )
        self.label_mask = np.ones(num_items, dtype=bool)

        self.item_ids = _LazyStrings(num_items, self._item_id)
        self.titles = _LazyStrings(num_items, self._title)
        self.caption_pairs = []
        self.report = CatalogReport()
        logger.debug("built synthetic %s catalog: %d items, seed %d", category, num_items, seed)

    # --- identity -----------------------------------------------------------

    def _item_id(self, index: int) -> str:
        return f"syn-{self.category}-{index:06d}"

    def index_of(self, item_id: str) -> int:
        """Return the index of ``item_id`` by parsing it, without building a lookup table.

        Raises:
            UnknownNameError: ``item_id`` is not an id of this catalog.
        """
        prefix = f"syn-{self.category}-"
        digits = item_id[len(prefix) :] if item_id.startswith(prefix) else ""
        if digits.isdigit() and int(digits) < len(self) and self._item_id(int(digits)) == item_id:
            return int(digits)
        raise UnknownNameError(
            f"item id {item_id!r} is not in the synthetic {self.category} catalog ({len(self)} items); "
            f"ids look like {self._item_id(0)!r}"
        )

    def _title(self, index: int) -> str:
        words = {group.name: self.group_value(group.name, index) for group in self.groups}
        return make_title(self.category, words)

    def fingerprint_payload(self) -> dict:
        """Return every argument that changes items or pixels, plus :data:`GENERATOR_VERSION`."""
        return {
            "seed": self.seed,
            "num_items": len(self),
            "image_size": self.image_size,
            "category": self.category,
            "generator_version": GENERATOR_VERSION,
        }

    # --- images -------------------------------------------------------------

    def render_batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Draw items ``indices`` without touching the cache.

        Returns:
            ``(batch, image_size, image_size, 3)`` uint8 RGB array. Row ``k``
            equals ``np.asarray(load_image(indices[k]))``.
        """
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            bad = positions[(positions < 0) | (positions >= len(self))][0]
            raise ConfigError(f"item index {bad} is outside the catalog (0..{len(self) - 1})")
        values = {name: codes[positions] for name, codes in self.group_values.items()}
        return render_garments(self.category, values, positions, self.seed, self.image_size)

    def load_image(self, index: int) -> Image.Image:
        """Return item ``index``'s image as an RGB PIL image, drawn on first use and cached.

        The cached image is shared between calls, so copy it before drawing on it.
        """
        index = int(index)
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        image = Image.fromarray(self.render_batch([index])[0], mode="RGB")
        if self.cache_size > 0:
            self._cache[index] = image
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return image


def _check_arguments(category: str, num_items: int, seed: int, image_size: int, cache_size: int) -> None:
    check_category(category)
    for name, value in (("num_items", num_items), ("seed", seed), ("image_size", image_size), ("cache_size", cache_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if not MIN_ITEMS <= num_items <= MAX_ITEMS:
        raise ConfigError(
            f"num_items={num_items} is out of range; a synthetic catalog has {MIN_ITEMS:,} to {MAX_ITEMS:,} items"
        )
    if seed < 0:
        raise ConfigError(f"seed={seed} is negative; pass a non-negative integer")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(
            f"image_size={image_size} is out of range; use {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels"
        )
    if cache_size < 0:
        raise ConfigError(f"cache_size={cache_size} is negative; pass 0 to disable the image cache")


def _split_codes(num_items: int, rng: np.random.Generator) -> np.ndarray:
    """Return split codes with exactly :data:`SPLIT_FRACTIONS` of the items in each split, shuffled."""
    num_train = round(num_items * SPLIT_FRACTIONS[0])
    num_val = round(num_items * SPLIT_FRACTIONS[1])
    codes = np.full(num_items, SPLITS.index("test"), dtype=np.int8)
    codes[:num_train] = SPLITS.index("train")
    codes[num_train : num_train + num_val] = SPLITS.index("val")
    return codes[rng.permutation(num_items)]
