"""Small stand-ins for the agent tests: random features and a deterministic rule-based simulator.

For the few feature dimensions where the target differs most from the shown
image, the simulator writes the dimension and the sign of the difference
("up3 down7"). Its captions therefore carry real information about the target,
and a retriever learns from them within a few steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.rollout import DialogData
from fiq_env.catalog import SPLITS, Catalog, CatalogReport
from fiq_env.features import CatalogFeatures
from fiq_env.text import SPECIAL_TOKENS, Vocabulary

FEATURE_DIM = 16


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each test on one torch thread, then restore the session's setting.

    The agent tests use models of a few thousand parameters, which gain
    nothing from a second thread. On a busy two-core machine, training with
    two threads measured about 13 times slower than with one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
NUM_ATTRIBUTES = 12


class StubCatalog(Catalog):
    """A catalog of ``num_items`` items without images: ids, splits and nothing else."""

    source = "stub"

    def __init__(self, num_items: int, split_codes: np.ndarray | None = None) -> None:
        self.category = "dress"
        self.item_ids = [f"item{i:05d}" for i in range(num_items)]
        self.split_codes = np.zeros(num_items, dtype=np.int8) if split_codes is None else split_codes.astype(np.int8)
        self.groups = ()
        self.group_values = {}
        self.attribute_names = ()
        self.attribute_types = ()
        self.labels = np.zeros((num_items, 0), dtype=bool)
        self.label_mask = np.zeros(num_items, dtype=bool)
        self.titles = None
        self.caption_pairs = []
        self.report = CatalogReport()

    def load_image(self, index: int):
        raise NotImplementedError("the stub catalog has no images")

    def fingerprint_payload(self) -> dict:
        return {"items": len(self.item_ids)}


class SignSimulator:
    """Deterministic fake simulator: words name the largest feature differences and their signs."""

    def __init__(self, features: CatalogFeatures, words_per_caption: int = 4) -> None:
        self.features = features.features
        self.words_per_caption = words_per_caption
        dims = range(features.dim)
        self._vocabulary = Vocabulary(list(SPECIAL_TOKENS) + [f"up{d}" for d in dims] + [f"down{d}" for d in dims])

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        difference = self.features[np.asarray(target)] - self.features[np.asarray(reference)]
        order = np.argsort(-np.abs(difference), axis=1)[:, : self.words_per_caption]
        captions = []
        for row, dims in enumerate(order):
            captions.append(" ".join(("up" if difference[row, d] > 0 else "down") + str(d) for d in dims))
        return captions


def make_features(num_items: int = 60, seed: int = 0) -> CatalogFeatures:
    """Return random unit-norm features and attribute scores for ``num_items`` items."""
    rng = np.random.default_rng(seed)
    names = tuple(f"attribute{i}" for i in range(NUM_ATTRIBUTES))
    return CatalogFeatures.from_arrays(
        rng.normal(size=(num_items, FEATURE_DIM)), rng.normal(size=(num_items, NUM_ATTRIBUTES)), names
    )


def make_data(num_items: int = 60, seed: int = 0, split: str = "train") -> DialogData:
    """Return dialog data over a random catalog with :class:`SignSimulator`.

    With ``split="train"`` every item is in the train split; with ``"val"``
    the items alternate between the train and val splits.
    """
    features = make_features(num_items, seed)
    codes = None if split == "train" else np.arange(num_items) % 2 * SPLITS.index(split)
    return DialogData(StubCatalog(num_items, codes), features, SignSimulator(features), split=split)


def agent_sizes(data: DialogData) -> dict[str, int]:
    """Return the observation-size config fields that fit ``data``."""
    return {
        "feature_dim": data.features.dim,
        "vocab_size": len(data.vocabulary),
        "num_attributes": NUM_ATTRIBUTES,
        "max_turns": data.max_turns,
        "caption_length": data.caption_length,
        "top_n": data.features.top_n,
    }
