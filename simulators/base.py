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
        reference, target = self.validate_pairs(reference, target, rng)
        return self._describe(reference, target, rng)

    def describe_rows(
        self, reference: np.ndarray, target: np.ndarray, rngs: list[np.random.Generator]
    ) -> list[str]:
        """Return one caption per pair, drawing row ``i``'s random numbers only from ``rngs[i]``.

        The native vector environment calls this once per step for all its
        sub-environments, each with its own generator. Row ``i`` must get the
        caption that ``describe(reference[i:i+1], target[i:i+1], rngs[i])``
        returns and leave ``rngs[i]`` in the same state. This default calls
        :meth:`_describe` once per row; override it with a batched version
        (for example, draw each row's numbers with ``rngs[i].random(width)``
        and stack them) to make vector environments fast.
        """
        if len(rngs) != len(np.asarray(target).reshape(-1)):
            raise ConfigError(f"describe_rows needs one generator per pair, got {len(rngs)} for {len(target)} pairs")
        captions = []
        for row, rng in enumerate(rngs):
            ref_row, target_row = self.validate_pairs(reference[row : row + 1], target[row : row + 1], rng)
            captions.extend(self._describe(ref_row, target_row, rng))
        return captions

    def validate_pairs(
        self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Check a batch of pairs and the generator; return the indices as flat int64 arrays.

        Raises:
            ConfigError: the arrays differ in length, an index is outside the
                catalog, or ``rng`` is not a ``numpy.random.Generator``.
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
        return reference, target
