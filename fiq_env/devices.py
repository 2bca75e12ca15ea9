"""Resolving a config's ``device`` setting to a torch device, with errors that name the setting."""

from __future__ import annotations

import torch

from fiq_env.errors import ConfigError


def resolve_device(name: str, setting: str = "device") -> torch.device:
    """Return the torch device for ``name`` (``"auto"``: cuda when available, else cpu).

    Raises:
        ConfigError: naming ``setting`` when ``name`` is not a torch device, or
            requests CUDA on a machine where torch finds none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"invalid {setting} {name!r}: {error}; use 'auto', 'cpu' or 'cuda'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting} is {name!r} but torch finds no CUDA device; use 'cpu' or 'auto'")
    return device
