"""Retriever agents: create them by name, save and load them.

Example::

    import agents
    agent = agents.make("transformer", preset="cpu", feature_dim=64, vocab_size=120)
    query = agent.act(observation)
    agent.save("runs/transformer")
    same = agents.load("runs/transformer")

A name is either a registered name (see :func:`names`) or an import path
``"package.module:ClassName"`` of a :class:`~agents.base.Retriever` subclass
or factory, so a benchmark can run an agent defined outside this package.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from fiq_env.errors import ConfigError, UnknownNameError
from fiq_env.registry import Registry

AGENTS: Registry[Any] = Registry("agent")

# Modules that register the built-in agents when imported, loaded on first use
# so that importing this package does not import the models.
_BUILTIN_MODULES = ("agents.transformer", "agents.rnn", "agents.baselines")


def register(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return a decorator that registers a :class:`Retriever` subclass or factory under ``name``."""
    return AGENTS.register(name)


def _import_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def resolve(name: str) -> Callable[..., Any]:
    """Return the factory for a registered name or a ``"module:attribute"`` import path."""
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise UnknownNameError(f"cannot import module {module_name!r} of agent {name!r}: {error}") from error
        factory = getattr(module, attribute, None)
        if factory is None or not callable(factory):
            raise UnknownNameError(f"module {module_name!r} has no callable {attribute!r} (agent {name!r})")
        return factory
    _import_builtins()
    return AGENTS.get(name)


def make(name: str, /, **kwargs: Any) -> Any:
    """Create an agent by registered name or import path, forwarding ``kwargs`` (config fields, ``preset``).

    Raises:
        UnknownNameError: the name is neither registered nor importable; the
            message lists the registered names and the closest match.
        ConfigError: the factory did not return a :class:`Retriever`.
    """
    from agents.base import Retriever

    agent = resolve(name)(**kwargs)
    if not isinstance(agent, Retriever):
        raise ConfigError(f"agent {name!r} created a {type(agent).__name__}, not an agents.base.Retriever")
    return agent


def names() -> list[str]:
    """Return every registered agent name, built-in and user-registered."""
    _import_builtins()
    return AGENTS.names()


def load(path: str | os.PathLike[str], map_location: str = "cpu") -> Any:
    """Load a retriever saved with ``agent.save(path)`` (safetensors weights plus JSON config)."""
    from agents.checkpoint import load_retriever

    return load_retriever(path, map_location=map_location)


__all__ = ["AGENTS", "load", "make", "names", "register", "resolve"]
