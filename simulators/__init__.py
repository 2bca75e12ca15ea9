"""User simulators: relative captioners that play the shopper.

Create one by name::

    import simulators
    sim = simulators.make("template", catalog=catalog)
    sim.describe(reference=[0, 1], target=[5, 7], rng=np.random.default_rng(0))
"""

from __future__ import annotations

import importlib

from fiq_env.registry import Registry
from simulators.base import UserSimulator

# Modules that register built-in simulators when imported, loaded on first use.
_BUILTIN_MODULES = {
    "template": "simulators.template",
    "replay": "simulators.replay",
    "transformer": "simulators.transformer_captioner",
    "rnn": "simulators.rnn_captioner",
}

SIMULATORS: Registry[UserSimulator] = Registry("simulator", builtin_modules=_BUILTIN_MODULES)


def make(name: str, /, **kwargs: object) -> UserSimulator:
    """Create the simulator registered as ``name`` (built-in or user-registered)."""
    module = _BUILTIN_MODULES.get(name)
    if module is not None:
        importlib.import_module(module)
    return SIMULATORS.make(name, **kwargs)


def register(name: str):
    """Decorator that registers a :class:`UserSimulator` subclass or factory under ``name``."""
    return SIMULATORS.register(name)


__all__ = ["SIMULATORS", "UserSimulator", "make", "register"]
