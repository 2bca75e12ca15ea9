"""Name registries with a decorator and a factory that forwards keyword arguments."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from fiq_env.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of object.

    Args:
        kind: what the registry contains, for messages ("catalog", "simulator").
        builtin_modules: name to the module that registers it when imported.
            :meth:`get` imports the module on first use of the name, and an
            unknown-name error lists these names before any is imported.

    Example::

        CATALOGS = Registry("catalog")

        @CATALOGS.register("synthetic")
        class SyntheticCatalog(Catalog): ...

        catalog = CATALOGS.make("synthetic", category="dress")
    """

    def __init__(self, kind: str, builtin_modules: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._builtin_modules = dict(builtin_modules or {})

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Return a decorator that registers a factory under ``name``."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} name {name!r} is already registered to {self._factories[name]!r}")
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory registered as ``name``; unknown names list the known ones."""
        module = self._builtin_modules.get(name)
        if module is not None and name not in self._factories:
            importlib.import_module(module)
        try:
            return self._factories[name]
        except KeyError:
            known = sorted(set(self._factories) | set(self._builtin_modules))
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {', '.join(known) or '(none)'}.{hint}"
            ) from None

    def make(self, name: str, /, **kwargs: object) -> T:
        """Create the object registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
