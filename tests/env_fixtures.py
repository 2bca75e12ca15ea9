"""Small stand-ins for the environment tests: a tiny catalog, random features and a seeded simulator.

They implement the catalog interface and the simulator protocol directly, so
the environment tests do not depend on the synthetic catalog, the encoder or
the template simulator.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from fiq_env.catalog import Catalog, CatalogReport
from fiq_env.features import CatalogFeatures
from fiq_env.text import Vocabulary

COLORS = ("red", "blue", "green", "black", "white", "pink")
SHAPES = ("long", "short", "floral", "striped")
FILLERS = ("is", "more", "less", "and", "not", "has", "darker", "lighter", "sleeves")


class TinyCatalog(Catalog):
    """A catalog of ``num_items`` items with one color and one shape each and solid-color images."""

    def __init__(self, num_items: int = 60, seed: int = 0, splits: tuple[float, float] = (0.6, 0.8)) -> None:
        rng = np.random.default_rng(seed)
        self.source = "tiny"
        self.category = "dress"
        self.item_ids = [f"item{i:05d}" for i in range(num_items)]
        position = np.arange(num_items) / num_items
        self.split_codes = np.where(position < splits[0], 0, np.where(position < splits[1], 1, 2)).astype(np.int8)
        self.groups = ()
        self.group_values = {}
        self.attribute_names = COLORS + SHAPES
        self.attribute_types = ("color",) * len(COLORS) + ("shape",) * len(SHAPES)
        labels = np.zeros((num_items, len(self.attribute_names)), dtype=bool)
        labels[np.arange(num_items), rng.integers(len(COLORS), size=num_items)] = True
        labels[np.arange(num_items), len(COLORS) + rng.integers(len(SHAPES), size=num_items)] = True
        self.labels = labels
        self.label_mask = np.ones(num_items, dtype=bool)
        self.titles = [f"{' '.join(self.attribute_words(i))} dress" for i in range(num_items)]
        self.caption_pairs = []
        self.report = CatalogReport()
        self._seed = seed

    def load_image(self, index: int) -> Image.Image:
        shade = (37 * index) % 256
        return Image.new("RGB", (32, 40), (shade, 255 - shade, 128))

    def fingerprint_payload(self) -> dict:
        return {"items": len(self.item_ids), "seed": self._seed}


def make_features(catalog: Catalog, dim: int = 16, top_n: int = 3, seed: int = 0) -> CatalogFeatures:
    """Return random L2-normalized features whose attribute scores follow the catalog's labels."""
    rng = np.random.default_rng(seed)
    scores = catalog.labels.astype(np.float32) * 2.0 + rng.normal(0.0, 0.3, catalog.labels.shape).astype(np.float32)
    return CatalogFeatures.from_arrays(
        rng.normal(size=(len(catalog), dim)).astype(np.float32),
        scores,
        tuple(catalog.attribute_names),
        top_n=top_n,
        catalog_fingerprint=catalog.fingerprint(),
        encoder_key="random",
    )


class PlainSimulator:
    """A protocol-level simulator: names one attribute of the target, chosen with the given generator.

    It has no ``describe_rows``, so a batch with several generators falls
    back to one ``describe`` call per row.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._vocabulary = Vocabulary.build([], extra_words=COLORS + SHAPES + FILLERS)
        self.calls = 0

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        self.calls += 1
        return [self._caption(int(t), rng.random(2)) for t in np.asarray(target).reshape(-1)]

    def _caption(self, target: int, draws: np.ndarray) -> str:
        words = self.catalog.attribute_words(target)
        word = words[int(draws[0] * len(words))]
        comparison = "darker" if draws[1] < 0.5 else "lighter"
        return f"is more {word} and {comparison}"


class SeededSimulator(PlainSimulator):
    """:class:`PlainSimulator` plus ``describe_rows``, which draws row ``i``'s numbers from ``rngs[i]``."""

    def describe_rows(self, reference: np.ndarray, target: np.ndarray, rngs: list[np.random.Generator]) -> list[str]:
        self.calls += 1
        return [self._caption(int(t), rng.random(2)) for t, rng in zip(np.asarray(target).reshape(-1), rngs)]


def make_env_kwargs(num_items: int = 60, dim: int = 16, **overrides) -> dict:
    """Return ``gym.make`` keyword arguments for a tiny catalog with random features and a seeded simulator."""
    catalog = TinyCatalog(num_items)
    kwargs = {
        "catalog": catalog,
        "features": make_features(catalog, dim=dim),
        "simulator": SeededSimulator(catalog),
    }
    kwargs.update(overrides)
    return kwargs
