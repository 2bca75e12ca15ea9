"""Registers the environment ids with gymnasium; runs when ``fiq_env`` is imported."""

from __future__ import annotations

import gymnasium as gym

ENV_ID = "FashionIQ/Dialog-v0"


def register_envs() -> None:
    """Register :data:`ENV_ID` with its single and native vector entry points (idempotent)."""
    if ENV_ID in gym.registry:
        return
    gym.register(
        id=ENV_ID,
        entry_point="fiq_env.env:FashionDialogEnv",
        vector_entry_point="fiq_env.vector_env:FashionDialogVectorEnv",
    )
