"""The base class of user simulators."""

from __future__ import annotations

import abc

import numpy as np

from fiq_env.catalog import Catalog
from fiq_env.errors import ConfigError
from fiq_env.text import Vocabulary


class UserSimulator(abc.ABC):
    """The shopper side of the dialog, bound to one catalog.

    Subclasses implement :meth:`_describe` and :attr:`vocabulary`; the public
    :meth:`describe` validates the inputs first. A simulator must draw every
    random number from the ``rng`` it is given, so that the environment's seed
    fixes the captions.
    """

    name: str = "base"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @property
    @abc.abstractmethod
    def vocabulary(self) -> Vocabulary:
        """Every word this simulator can write."""

    @abc.abstractmethod
    def _describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        """Write one caption per (reference, target) pair; inputs are already validated."""

    def describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        """Return one relative caption per pair: how ``target[i]`` differs from ``reference[i]``.

        Args:
            reference: ``(batch,)`` item indices of the images on screen.
            target: ``(batch,)`` item indices of the wanted images.
            rng: the generator every random choice is drawn from.
        """
        reference = np.asarray(reference, dtype=np.int64).reshape(-1)
        target = np.asarray(target, dtype=np.int64).reshape(-1)
        if reference.shape != target.shape:
            raise ConfigError(f"reference and target must have the same length, got {reference.shape} and {target.shape}")
        num_items = len(self.catalog)
        for label, indices in (("reference", reference), ("target", target)):
            if indices.size and (indices.min() < 0 or indices.max() >= num_items):
                bad = indices[(indices < 0) | (indices >= num_items)][0]
                raise ConfigError(f"{label} item index {bad} is outside the catalog (0..{num_items - 1})")
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}; pass env.np_random")
        return self._describe(reference, target, rng)
