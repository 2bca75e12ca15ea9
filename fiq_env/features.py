"""Per-item image features and predicted attributes, as the encoder produced them.

:class:`CatalogFeatures` is what the environment, the simulators and the agents
share about a catalog's pixels: they never run the image encoder themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fiq_env.errors import ConfigError


@dataclass
class CatalogFeatures:
    """Encoder outputs for every item of one catalog.

    Attributes:
        features: ``(num_items, dim)`` float32 image features, L2-normalized,
            so every component lies in ``[-1, 1]``.
        attribute_scores: ``(num_items, num_attributes)`` float32 logits of
            the attribute model.
        top_attributes: ``(num_items, top_n)`` int64 attribute indices with
            the highest scores, best first.
        attribute_names: the attribute vocabulary the scores refer to.
        catalog_fingerprint: :meth:`Catalog.fingerprint` of the encoded catalog.
        encoder_key: identifies the encoder configuration (used in cache keys).
    """

    features: np.ndarray
    attribute_scores: np.ndarray
    top_attributes: np.ndarray
    attribute_names: tuple[str, ...]
    catalog_fingerprint: str
    encoder_key: str

    def __post_init__(self) -> None:
        num_items = self.features.shape[0]
        if self.features.ndim != 2:
            raise ConfigError(f"features must have shape (num_items, dim), got {self.features.shape}")
        if self.attribute_scores.shape[0] != num_items or self.top_attributes.shape[0] != num_items:
            raise ConfigError(
                f"features ({self.features.shape}), attribute_scores ({self.attribute_scores.shape}) and "
                f"top_attributes ({self.top_attributes.shape}) must have the same number of rows"
            )
        if self.attribute_scores.shape[1] != len(self.attribute_names):
            raise ConfigError(
                f"attribute_scores has {self.attribute_scores.shape[1]} columns but there are "
                f"{len(self.attribute_names)} attribute names"
            )
        if not np.isfinite(self.features).all():
            raise ConfigError("features contain NaN or inf; recompute them (delete the cache entry)")

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def top_n(self) -> int:
        return int(self.top_attributes.shape[1])

    @classmethod
    def from_arrays(
        cls,
        features: np.ndarray,
        attribute_scores: np.ndarray,
        attribute_names: tuple[str, ...],
        top_n: int = 8,
        catalog_fingerprint: str = "",
        encoder_key: str = "",
    ) -> CatalogFeatures:
        """Build from raw arrays: L2-normalizes features and ranks the top ``top_n`` attributes."""
        features = np.asarray(features, dtype=np.float32)
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        features = features / np.maximum(norms, 1e-12)
        scores = np.asarray(attribute_scores, dtype=np.float32)
        top_n = min(top_n, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :top_n].astype(np.int64)
        return cls(features, scores, top, tuple(attribute_names), catalog_fingerprint, encoder_key)
