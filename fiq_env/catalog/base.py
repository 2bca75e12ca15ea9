"""The catalog interface shared by every source (synthetic, Fashion IQ, image folder).

A catalog is one garment category's items: ids, split membership, attribute
labels, optional titles and caption pairs, and lazily loaded images. Items are
addressed by their position (an ``int`` index) everywhere inside the library;
string ids are for files and people.
"""

from __future__ import annotations

import abc
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from fiq_env.catalog.schema import UNKNOWN, AttributeGroup
from fiq_env.errors import ConfigError, UnknownNameError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CaptionPair:
    """A human-written relative caption pair from a data set.

    Attributes:
        reference: id of the image shown to the annotator (Fashion IQ's "candidate").
        target: id of the wanted image, or None where the data set hides it (test split).
        captions: the captions, each completing "Unlike this one, the one I want ...".
        split: one of :data:`SPLITS`.
    """

    reference: str
    target: str | None
    captions: tuple[str, ...]
    split: str


@dataclass
class CatalogReport:
    """Problems found while indexing a catalog: each entry maps a problem to the ids involved.

    Attributes:
        excluded: problem name (``"missing"``, ``"empty"``, ``"corrupt"``,
            ``"placeholder"``, ...) to the ids excluded for it.
        warnings: problem name to ids that were kept but look wrong
            (for example ``"in_several_splits"``).
        dropped_pairs: caption pairs dropped because an image was excluded.
    """

    excluded: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    dropped_pairs: int = 0

    def summary(self) -> str:
        """Return one line per problem with the count and the first ids."""
        lines = []
        for kind, table in (("excluded", self.excluded), ("warning", self.warnings)):
            for problem, ids in sorted(table.items()):
                shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
                lines.append(f"{kind}: {problem}: {len(ids)} item(s): {shown}")
        if self.dropped_pairs:
            lines.append(f"excluded: {self.dropped_pairs} caption pair(s) that use an excluded image")
        return "\n".join(lines) if lines else "no problems found"

    @property
    def num_excluded(self) -> int:
        return sum(len(ids) for ids in self.excluded.values())


class Catalog(abc.ABC):
    """One category's items with their side information.

    Subclasses fill the attributes below in ``__init__`` and implement
    :meth:`load_image` and :meth:`fingerprint_payload`.

    Attributes:
        source: registry name of the source (``"synthetic"``, ...).
        category: garment category, for example ``"dress"``.
        item_ids: string id of each item; position ``i`` is item index ``i``.
        split_codes: ``(num_items,)`` int8, index into :data:`SPLITS`.
        groups: attribute groups with one value per item (may be empty when
            the source has only attribute words).
        group_values: group name to ``(num_items,)`` int16 value index, or
            :data:`~fiq_env.catalog.schema.UNKNOWN`.
        attribute_names: the multi-hot label vocabulary.
        attribute_types: type of each attribute (see ``ATTRIBUTE_TYPES``).
        labels: ``(num_items, num_attributes)`` bool multi-hot labels.
        label_mask: ``(num_items,)`` bool, False for items with no labels.
        titles: product title of each item, or None.
        caption_pairs: human caption pairs where the source has them.
        report: problems found while indexing.
    """

    source: str
    category: str
    item_ids: Sequence[str]
    split_codes: np.ndarray
    groups: tuple[AttributeGroup, ...]
    group_values: dict[str, np.ndarray]
    attribute_names: tuple[str, ...]
    attribute_types: tuple[str, ...]
    labels: np.ndarray
    label_mask: np.ndarray
    titles: Sequence[str] | None
    caption_pairs: list[CaptionPair]
    report: CatalogReport

    @abc.abstractmethod
    def load_image(self, index: int) -> Image.Image:
        """Return item ``index``'s image as an RGB PIL image."""

    @abc.abstractmethod
    def fingerprint_payload(self) -> dict:
        """Return JSON-serializable data that changes whenever the items or their images change."""

    def __len__(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(self.indices(s))}" for s in SPLITS)
        return f"{type(self).__name__}(category={self.category!r}, items={len(self)}, {counts})"

    def fingerprint(self) -> str:
        """Return a short hash that identifies this catalog's content, for cache keys."""
        payload = {"source": self.source, "category": self.category, **self.fingerprint_payload()}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8"))
        return digest.hexdigest()[:16]

    def indices(self, split: str) -> np.ndarray:
        """Return the item indices of ``split`` in ascending order."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; expected one of {SPLITS}")
        return np.flatnonzero(self.split_codes == SPLITS.index(split))

    def index_of(self, item_id: str) -> int:
        """Return the index of ``item_id``; unknown ids raise :class:`UnknownNameError`."""
        lookup = getattr(self, "_id_lookup", None)
        if lookup is None:
            lookup = {item: i for i, item in enumerate(self.item_ids)}
            self._id_lookup = lookup
        try:
            return lookup[item_id]
        except KeyError:
            raise UnknownNameError(
                f"item id {item_id!r} is not in the {self.category} catalog ({len(self)} items); "
                f"use one of catalog.item_ids"
            ) from None

    def group(self, name: str) -> AttributeGroup:
        """Return the attribute group called ``name``."""
        for group in self.groups:
            if group.name == name:
                return group
        raise UnknownNameError(f"attribute group {name!r} not in catalog; groups: {[g.name for g in self.groups]}")

    def attribute_words(self, index: int) -> list[str]:
        """Return the attribute words labelled on item ``index``."""
        return [self.attribute_names[a] for a in np.flatnonzero(self.labels[index])]

    def group_value(self, name: str, index: int) -> str | None:
        """Return item ``index``'s value word in group ``name``, or None when unknown."""
        code = int(self.group_values[name][index])
        return None if code == UNKNOWN else self.group(name).values[code]


def labels_from_groups(
    groups: Sequence[AttributeGroup], group_values: dict[str, np.ndarray], num_items: int
) -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """Build the attribute vocabulary and multi-hot labels implied by group values.

    Returns ``(attribute_names, attribute_types, labels)``; every value except a
    group's ``absent`` value becomes one attribute. A word used by two groups
    (say "short" for length and for sleeves) is prefixed with its group name to
    keep attribute names unique.
    """
    words = [w for g in groups for w in g.attribute_words()]
    repeated = {w for w in words if words.count(w) > 1}
    names: list[str] = []
    types: list[str] = []
    columns: list[tuple[str, int]] = []
    for group in groups:
        for code, word in enumerate(group.values):
            if word == group.absent:
                continue
            names.append(f"{group.name}:{word}" if word in repeated else word)
            types.append(group.type)
            columns.append((group.name, code))
    labels = np.zeros((num_items, len(names)), dtype=bool)
    for column, (group_name, code) in enumerate(columns):
        labels[:, column] = group_values[group_name] == code
    return tuple(names), tuple(types), labels
