"""Fixed lists of (target, first image) start pairs, so that every agent faces the same dialogs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fiq_env.catalog import Catalog
from fiq_env.errors import DataError
from fiq_env.io import read_json, write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class StartPairs:
    """Start pairs of one catalog split: item ids of each episode's target and first shown image."""

    catalog_fingerprint: str
    category: str
    split: str
    targets: tuple[str, ...]
    initials: tuple[str, ...]
    seed: int | None = None

    def __len__(self) -> int:
        return len(self.targets)

    def to_json(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "catalog_fingerprint": self.catalog_fingerprint,
            "category": self.category,
            "split": self.split,
            "seed": self.seed,
            "pairs": [{"target": t, "initial": i} for t, i in zip(self.targets, self.initials)],
        }

    @classmethod
    def from_json(cls, data: dict, source: str) -> StartPairs:
        if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
            raise DataError(f"{source} is not a start-pair file: expected a JSON object with a 'pairs' list")
        try:
            pairs = data["pairs"]
            return cls(
                catalog_fingerprint=str(data["catalog_fingerprint"]),
                category=str(data["category"]),
                split=str(data["split"]),
                targets=tuple(str(p["target"]) for p in pairs),
                initials=tuple(str(p["initial"]) for p in pairs),
                seed=data.get("seed"),
            )
        except (KeyError, TypeError) as error:
            raise DataError(f"{source} is not a start-pair file (missing {error}); delete it to draw new pairs") from error


def draw_start_pairs(catalog: Catalog, split: str, count: int, seed: int) -> StartPairs:
    """Draw ``count`` (target, first image) pairs of distinct items of ``split``, uniformly at random."""
    indices = catalog.indices(split)
    if len(indices) < 2:
        raise DataError(f"split {split!r} of the {catalog.category} catalog has {len(indices)} item(s); need at least 2")
    rng = np.random.default_rng(seed)
    targets = rng.choice(indices, size=count, replace=True)
    initials = rng.choice(indices, size=count, replace=True)
    same = targets == initials
    while same.any():
        initials[same] = rng.choice(indices, size=int(same.sum()), replace=True)
        same = targets == initials
    return StartPairs(
        catalog_fingerprint=catalog.fingerprint(),
        category=catalog.category,
        split=split,
        targets=tuple(catalog.item_ids[int(i)] for i in targets),
        initials=tuple(catalog.item_ids[int(i)] for i in initials),
        seed=seed,
    )


def load_or_draw(path: Path, catalog: Catalog, split: str, count: int, seed: int, strict: bool = True) -> StartPairs:
    """Reuse the start pairs saved at ``path`` when they fit this run, else draw and save new ones.

    With ``strict`` (a file the user named), a list for another catalog or
    split, or one shorter than ``count``, raises :class:`DataError` rather
    than silently comparing runs on different dialogs. Without it (the file a
    previous run left in its output folder), such a list is replaced and the
    replacement is logged.
    """
    if path.exists():
        pairs = StartPairs.from_json(read_json(path), str(path))
        problem = None
        if pairs.catalog_fingerprint != catalog.fingerprint() or pairs.split != split:
            problem = (
                f"start pairs in {path} were drawn for catalog {pairs.catalog_fingerprint} split {pairs.split!r}, "
                f"not catalog {catalog.fingerprint()} split {split!r}"
            )
        elif len(pairs) < count:
            problem = f"{path} holds {len(pairs)} start pairs but {count} episodes were requested"
        elif not strict and pairs.seed != seed:
            problem = f"start pairs in {path} were drawn with seed {pairs.seed}, not {seed}"
        if problem is None:
            logger.info("reusing %d start pairs from %s", count, path)
            return StartPairs(
                pairs.catalog_fingerprint, pairs.category, pairs.split, pairs.targets[:count], pairs.initials[:count], pairs.seed
            )
        if strict:
            raise DataError(f"{problem}; pass a start-pair file drawn for this catalog and split, or lower --episodes")
        logger.warning("%s; drawing new start pairs", problem)

    pairs = draw_start_pairs(catalog, split, count, seed)
    write_json(path, pairs.to_json())
    logger.info("drew %d start pairs and saved them to %s", count, path)
    return pairs
