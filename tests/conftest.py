"""Shared pytest fixtures: an isolated cache folder per test session and the real-data root."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# One thread: on two cores, intra-op threads of small test models mostly add contention.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point FIQ_CACHE_DIR at a fresh folder so tests never read a developer's cache.

    SB3_LOGDIR gets one too: stable-baselines3 creates a log folder for every
    ``learn`` without a TensorBoard folder, in the system temp folder by default.
    """
    import os

    os.environ["FIQ_CACHE_DIR"] = str(tmp_path_factory.mktemp("fiq_cache"))
    os.environ["SB3_LOGDIR"] = str(tmp_path_factory.mktemp("sb3_logs"))


@pytest.fixture(scope="session")
def fashion_iq_root() -> Path:
    """Root of the real Fashion IQ caption and split files; skips when absent."""
    root = SHARED_DATA / "fashion-iq"
    if not (root / "captions").is_dir():
        pytest.skip(f"real Fashion IQ files not found at {root} (they sit beside the repository in ../shared/data)")
    return root


@pytest.fixture(scope="session")
def clothing_small_root() -> Path:
    """Root of the real clothing photos; skips when absent."""
    root = SHARED_DATA / "clothing-small"
    if not (root / "train").is_dir():
        pytest.skip(f"real clothing photos not found at {root} (they sit beside the repository in ../shared/data)")
    return root
