"""Reference agents without learned parameters: ``random`` and ``last_image``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from agents import register
from agents.base import Retriever, RetrieverConfig


@dataclass
class RandomConfig(RetrieverConfig):
    """Settings of :class:`RandomRetriever`."""

    seed: int = field(default=0, metadata={"help": "seed of the agent's own random generator"})

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "cpu": {}, "paper": {}}


@register("random")
class RandomRetriever(Retriever):
    """Returns a random unit vector per dialog, ignoring the observation.

    Draws come from a ``torch.Generator`` owned by the agent (seeded with
    ``config.seed``) or one passed to the constructor, never from the global
    generator, so two agents with the same seed make the same queries.
    ``reset(seed)`` reseeds it.
    """

    config_class = RandomConfig

    def __init__(self, config: RandomConfig | None = None, generator: torch.Generator | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        if generator is None:
            generator = torch.Generator().manual_seed(self.config.seed)
        self.generator = generator

    def reset(self, seed: int | None = None) -> None:
        """Reseed the generator when ``seed`` is given; otherwise keep drawing from it."""
        if seed is not None:
            self.generator.manual_seed(seed)

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        batch = obs["tokens"].shape[0]
        # Gaussian draws normalized to length 1 are uniform on the unit sphere.
        draws = torch.randn(batch, self.config.feature_dim, generator=self.generator)
        return F.normalize(draws, dim=-1).to(obs["features"].device)


@dataclass
class LastImageConfig(RetrieverConfig):
    """Settings of :class:`LastImageRetriever` (only the observation sizes)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "cpu": {}, "paper": {}}


@register("last_image")
class LastImageRetriever(Retriever):
    """Queries with the features of the most recently shown image and ignores the captions.

    Since the environment never shows an item twice, this walks to the
    nearest unseen neighbour of the last image: a measure of how much the
    feature space alone, without feedback, leads towards the target.
    """

    config_class = LastImageConfig

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        features = obs["features"].float()  # (batch, turns, dim)
        latest = obs["turn"].reshape(-1).long().clamp(1, features.shape[1]) - 1
        return features[torch.arange(features.shape[0], device=features.device), latest.to(features.device)]
