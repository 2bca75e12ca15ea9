"""Structural interfaces the environment relies on, without importing their implementations."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from fiq_env.text import Vocabulary


@runtime_checkable
class UserSimulator(Protocol):
    """The shopper side of the dialog: writes relative captions for (reference, target) pairs.

    A simulator is bound to one catalog when it is created. The environment
    freezes it and passes its own random generator on every call, so that the
    whole episode, captions included, is reproducible from ``reset(seed=...)``.
    """

    @property
    def vocabulary(self) -> Vocabulary:
        """Every word the simulator can write (captions are encoded with it)."""
        ...

    def describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        """Return one caption per pair: how item ``target[i]`` differs from item ``reference[i]``.

        Args:
            reference: ``(batch,)`` item indices of the shown images.
            target: ``(batch,)`` item indices of the wanted images.
            rng: the only source of randomness the simulator may use.
        """
        ...


@runtime_checkable
class RowwiseUserSimulator(UserSimulator, Protocol):
    """A simulator that can caption a batch whose rows each have their own generator.

    The native vector environment uses :meth:`describe_rows` when a simulator
    has it, so one call serves every sub-environment while each row's
    captions stay those of a single environment seeded the same way.
    """

    def describe_rows(
        self, reference: np.ndarray, target: np.ndarray, rngs: list[np.random.Generator]
    ) -> list[str]:
        """Return one caption per pair; row ``i`` draws only from ``rngs[i]``.

        Row ``i``'s caption and the state ``rngs[i]`` is left in must equal
        those of ``describe(reference[i:i+1], target[i:i+1], rngs[i])``.
        """
        ...
