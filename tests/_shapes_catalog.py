"""A tiny catalog of colored shapes with known labels, for fast encoder and feature-cache tests."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from fiq_env.catalog import SPLITS, AttributeGroup, Catalog, CatalogReport, labels_from_groups

SHAPE_GROUPS = (
    AttributeGroup("color", "color", ("red", "green", "blue")),
    AttributeGroup("shape", "shape", ("circle", "square")),
    AttributeGroup("pattern", "texture", ("plain", "striped"), absent="plain"),
)

_RGB = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220)}


class ShapesCatalog(Catalog):
    """Colored circles and squares, some striped, on a gray background.

    Args:
        num_items: number of items; every fifth is in val, every fifth after
            that in test, the rest in train.
        seed: seed of the attribute draws, so two seeds give different catalogs.
        image_size: side of the square images, in pixels.
        labelled: False marks every item as unlabelled (``label_mask`` all False).
    """

    source = "shapes"

    def __init__(self, num_items: int = 64, seed: int = 0, image_size: int = 32, labelled: bool = True) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.image_size = image_size
        self.category = "shapes"
        self.item_ids = [f"shape{seed}_{i:04d}" for i in range(num_items)]
        self.split_codes = np.zeros(num_items, dtype=np.int8)
        self.split_codes[1::5] = SPLITS.index("val")
        self.split_codes[3::5] = SPLITS.index("test")
        self.groups = SHAPE_GROUPS
        self.group_values = {g.name: rng.integers(0, len(g.values), num_items).astype(np.int16) for g in SHAPE_GROUPS}
        self.attribute_names, self.attribute_types, self.labels = labels_from_groups(
            SHAPE_GROUPS, self.group_values, num_items
        )
        self.label_mask = np.full(num_items, labelled)
        self.titles = None
        self.caption_pairs = []
        self.report = CatalogReport()

    def load_image(self, index: int) -> Image.Image:
        size = self.image_size
        image = Image.new("RGB", (size, size), (128, 128, 128))
        draw = ImageDraw.Draw(image)
        color = _RGB[self.group_value("color", index)]
        box = (size // 6, size // 6, size - size // 6, size - size // 6)
        if self.group_value("shape", index) == "circle":
            draw.ellipse(box, fill=color)
        else:
            draw.rectangle(box, fill=color)
        if self.group_value("pattern", index) == "striped":
            for y in range(0, size, 4):
                draw.line((0, y, size, y), fill=(255, 255, 255), width=1)
        return image

    def fingerprint_payload(self) -> dict:
        return {"seed": self.seed, "num_items": len(self), "image_size": self.image_size, "labelled": bool(self.label_mask.any())}
