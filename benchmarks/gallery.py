"""A catalog view whose one split contains every item, for ranking over the whole catalog."""

from __future__ import annotations

import numpy as np
from PIL import Image

from fiq_env.catalog import SPLITS, Catalog


class WholeCatalogGallery(Catalog):
    """Every item of ``catalog`` placed in ``split``, so ranks, shown items and start pairs range over all of them.

    Training still reads the ``train`` split of the wrapped catalog through
    the benchmark's own components; only the evaluated split changes.
    """

    def __init__(self, catalog: Catalog, split: str) -> None:
        self.wrapped = catalog
        self.source = catalog.source
        self.category = catalog.category
        self.item_ids = catalog.item_ids
        self.split_codes = np.full(len(catalog), SPLITS.index(split), dtype=np.int8)
        train_code = SPLITS.index("train")
        if split != "train":
            # Keep the training items available under their own split for agent training.
            self.split_codes = np.where(catalog.split_codes == train_code, train_code, self.split_codes).astype(np.int8)
        self.groups = catalog.groups
        self.group_values = catalog.group_values
        self.attribute_names = catalog.attribute_names
        self.attribute_types = catalog.attribute_types
        self.labels = catalog.labels
        self.label_mask = catalog.label_mask
        self.titles = catalog.titles
        self.caption_pairs = catalog.caption_pairs
        self.report = catalog.report
        self._split = split

    def indices(self, split: str) -> np.ndarray:
        if split == self._split:
            return np.arange(len(self.wrapped))
        return super().indices(split)

    def load_image(self, index: int) -> Image.Image:
        return self.wrapped.load_image(index)

    def fingerprint_payload(self) -> dict:
        return self.wrapped.fingerprint_payload()

    def fingerprint(self) -> str:
        # The items and images are the wrapped catalog's, so cached features stay valid.
        return self.wrapped.fingerprint()
