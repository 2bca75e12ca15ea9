"""fiq_env: a gymnasium environment for interactive image retrieval with relative captions.

Importing this package registers ``FashionIQ/Dialog-v0`` with gymnasium.
"""

from __future__ import annotations

from fiq_env.catalog import Catalog, make_catalog
from fiq_env.errors import CheckpointError, ConfigError, DataError, EnvUsageError, FiqError, UnknownNameError
from fiq_env.features import CatalogFeatures
from fiq_env.registration import ENV_ID, register_envs
from fiq_env.text import Vocabulary

register_envs()

__version__ = "0.1.0"

__all__ = [
    "ENV_ID",
    "Catalog",
    "CatalogFeatures",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "EnvUsageError",
    "FiqError",
    "UnknownNameError",
    "Vocabulary",
    "make_catalog",
]
