"""Garment catalogs: one interface over synthetic, Fashion IQ and image-folder sources."""

from __future__ import annotations

import importlib

from fiq_env.catalog.base import SPLITS, CaptionPair, Catalog, CatalogReport, labels_from_groups
from fiq_env.catalog.schema import ATTRIBUTE_TYPES, UNKNOWN, AttributeGroup
from fiq_env.registry import Registry

# Modules that register a source in CATALOGS when imported. They are imported
# on first use so that importing fiq_env stays fast.
_SOURCE_MODULES = {
    "synthetic": "fiq_env.catalog.synthetic",
    "fashion_iq": "fiq_env.catalog.fashion_iq",
    "image_folder": "fiq_env.catalog.image_folder",
}

CATALOGS: Registry[Catalog] = Registry("catalog", builtin_modules=_SOURCE_MODULES)


def make_catalog(source: str, /, **kwargs: object) -> Catalog:
    """Create a catalog from a registered source name.

    Example::

        catalog = make_catalog("synthetic", category="dress", num_items=1000, seed=0)
    """
    module = _SOURCE_MODULES.get(source)
    if module is not None:
        importlib.import_module(module)
    return CATALOGS.make(source, **kwargs)


def catalog_sources() -> list[str]:
    """Return the names of every catalog source, built-in and user-registered."""
    for module in _SOURCE_MODULES.values():
        importlib.import_module(module)
    return CATALOGS.names()


__all__ = [
    "ATTRIBUTE_TYPES",
    "CATALOGS",
    "SPLITS",
    "UNKNOWN",
    "AttributeGroup",
    "CaptionPair",
    "Catalog",
    "CatalogReport",
    "catalog_sources",
    "labels_from_groups",
    "make_catalog",
]
