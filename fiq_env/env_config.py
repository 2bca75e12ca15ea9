"""Options of the dialog environments and the resolution of their components.

:class:`EnvConfig` contains the plain options (split, turns, action type,
...) that the single and the vector environment share. The ``resolve_*``
functions turn the ``catalog``, ``features`` and ``simulator`` constructor
arguments, which may be objects or names, into objects. The simulator and encoder
packages are imported inside that function, never when this module loads.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, replace
from typing import Any

from fiq_env.catalog import SPLITS, Catalog, make_catalog
from fiq_env.errors import ConfigError
from fiq_env.features import CatalogFeatures
from fiq_env.protocols import UserSimulator

logger = logging.getLogger(__name__)

ACTION_TYPES = ("query", "topk")


@dataclass(frozen=True)
class EnvConfig:
    """Options of one dialog environment.

    Attributes:
        split: catalog split the targets, first images and search come from.
        max_turns: number of retrieval actions per episode, and of caption
            rows in the observation.
        action_type: ``"query"`` (a feature-space vector) or ``"topk"`` (an
            index into ``top_k`` listed candidates).
        top_k: number of candidates in ``"topk"`` mode.
        caption_length: token ids per caption (longer captions are truncated).
        reveal_target: put the target's id in ``info["target_id"]``.
        synthetic_items: catalog size used when ``catalog`` is the name
            ``"synthetic"`` and ``catalog_kwargs`` gives no ``num_items``.
        blas_threads: BLAS threads of the per-step distance product; None
            keeps the process setting. One thread is the default because a
            step's product is small and multi-threaded BLAS slows down by an
            order of magnitude when other processes share the cores.
    """

    split: str = "train"
    max_turns: int = 5
    action_type: str = "query"
    top_k: int = 10
    caption_length: int = 8
    reveal_target: bool = False
    synthetic_items: int = 1000
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.action_type not in ACTION_TYPES:
            raise ConfigError(f"action_type must be one of {ACTION_TYPES}, got {self.action_type!r}")
        for name in ("max_turns", "top_k", "caption_length", "synthetic_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.blas_threads is not None and (not isinstance(self.blas_threads, int) or self.blas_threads < 1):
            raise ConfigError(f"blas_threads must be None or a positive integer, got {self.blas_threads!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> EnvConfig:
        """Return a preset: ``"cpu"`` (1,000 synthetic items) or ``"paper"`` (Fashion IQ's dress size).

        Both use the Fashion IQ dialog: five turns and captions of 8 tokens.
        ``"paper"`` sizes the synthetic catalog like the Fashion IQ dress
        category, whose three splits hold 19,087 images in all.
        """
        presets = {
            "cpu": cls(),
            "paper": cls(synthetic_items=19087),
        }
        if name not in presets:
            raise ConfigError(f"unknown environment preset {name!r}; use one of {sorted(presets)}")
        return replace(presets[name], **overrides)

    def min_split_size(self) -> int:
        """Return how many items the split needs so that no episode runs out of unseen items.

        A full dialog shows ``max_turns + 1`` distinct images; ``"topk"`` mode
        also lists ``top_k`` unseen candidates before the last action.
        """
        if self.action_type == "topk":
            return self.max_turns + self.top_k
        return self.max_turns + 1


def resolve_catalog(
    catalog: Catalog | str, category: str | None, catalog_kwargs: dict[str, Any] | None, config: EnvConfig
) -> Catalog:
    """Return ``catalog`` itself, or build it from a source name.

    Raises:
        ConfigError: ``category`` contradicts the given catalog object, or
            ``catalog`` is neither a :class:`Catalog` nor a string.
    """
    if isinstance(catalog, Catalog):
        if category is not None and category != catalog.category:
            raise ConfigError(
                f"category={category!r} but the catalog passed is a {catalog.category!r} catalog; "
                f"drop the category argument or pass a {category!r} catalog"
            )
        return catalog
    if not isinstance(catalog, str):
        raise ConfigError(f"catalog must be a Catalog or a source name, got {type(catalog).__name__}")

    kwargs = dict(catalog_kwargs or {})
    kwargs.setdefault("category", category or "dress")
    if catalog == "synthetic":
        kwargs.setdefault("num_items", config.synthetic_items)
    logger.info("building the %s catalog with %s", catalog, kwargs)
    return make_catalog(catalog, **kwargs)


def resolve_features(catalog: Catalog, features: CatalogFeatures | None) -> CatalogFeatures:
    """Return ``features`` after checking it matches ``catalog``, or encode the catalog.

    Encoding trains the catalog's encoder on first use and caches the result.
    """
    if features is None:
        from fiq_env.encoder import encode_catalog

        logger.info("encoding %r (trained and cached on first use)", catalog)
        return encode_catalog(catalog)

    if not isinstance(features, CatalogFeatures):
        raise ConfigError(f"features must be a CatalogFeatures or None, got {type(features).__name__}")
    if features.features.shape[0] != len(catalog):
        raise ConfigError(
            f"features has {features.features.shape[0]} rows but the catalog has {len(catalog)} items; "
            f"encode this catalog (features=None) or pass its own features"
        )
    if features.catalog_fingerprint and features.catalog_fingerprint != catalog.fingerprint():
        raise ConfigError(
            f"features were computed for catalog {features.catalog_fingerprint}, not for this catalog "
            f"({catalog.fingerprint()}); pass features=None to encode it"
        )
    return features


def resolve_simulator(
    simulator: UserSimulator | str,
    catalog: Catalog,
    features: CatalogFeatures,
    simulator_kwargs: dict[str, Any] | None,
) -> UserSimulator:
    """Return ``simulator`` itself, or create it by name from the ``simulators`` package.

    The factory receives ``catalog=``, ``features=`` (only when its signature
    accepts it) and ``simulator_kwargs``.
    """
    if isinstance(simulator, str):
        simulators = importlib.import_module("simulators")
        kwargs = dict(simulator_kwargs or {})
        # Import a built-in simulator's module first so its factory signature can be read.
        builtin_module = getattr(simulators, "_BUILTIN_MODULES", {}).get(simulator)
        if builtin_module is not None:
            importlib.import_module(builtin_module)
        factory = simulators.SIMULATORS.get(simulator)
        if _accepts_keyword(factory, "features"):
            kwargs.setdefault("features", features)
        return simulators.make(simulator, catalog=catalog, **kwargs)

    if not isinstance(simulator, UserSimulator):
        raise ConfigError(
            f"simulator must be a simulator name or an object with 'vocabulary' and 'describe', "
            f"got {type(simulator).__name__}"
        )
    return simulator


def _accepts_keyword(factory: Any, name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
