"""The library's exception hierarchy.

Every error raised on purpose by ``fiq_env``, ``simulators``, ``agents`` and
``benchmarks`` derives from :class:`FiqError`, so callers can catch the
library's errors without catching unrelated ones. Each class also derives from
the built-in exception a Python user would expect (``ValueError``,
``KeyError``, ...), so existing ``except ValueError`` blocks keep working.
"""

from __future__ import annotations


class FiqError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(FiqError, ValueError):
    """An argument or configuration value is invalid."""


class UnknownNameError(FiqError, KeyError):
    """A name (catalog, simulator, agent, encoder) is not registered."""

    def __str__(self) -> str:
        # KeyError quotes its message; show it as plain text instead.
        return str(self.args[0]) if self.args else ""


class DataError(FiqError, ValueError):
    """Input data (a caption file, an image, a cache) is malformed or missing."""


class CheckpointError(FiqError, ValueError):
    """A checkpoint or weights file is missing, corrupt or does not match the model."""


class EnvUsageError(FiqError, RuntimeError):
    """The environment was used out of order (for example ``step`` before ``reset``)."""
