"""Tests of resolving a config's device setting."""

from __future__ import annotations

import pytest
import torch

from fiq_env.devices import resolve_device
from fiq_env.errors import ConfigError


def test_auto_picks_available_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_invalid_name_names_setting() -> None:
    with pytest.raises(ConfigError, match="invalid EncoderConfig.device 'gpu0'"):
        resolve_device("gpu0", "EncoderConfig.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_absent_cuda_rejected() -> None:
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda:0")
