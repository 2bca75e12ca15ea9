"""Batched dialogs between a retriever and a frozen user simulator, for training and evaluation.

The dialogs run on the environment's own core (:class:`fiq_env.dialog.DialogCore`),
so the rules are those of ``FashionIQ/Dialog-v0``: a dialog starts from a
(target, first image) pair, and the first observation already contains the
simulator's caption of the first image. At each turn the agent's query ranks
the target among the split's items by Euclidean distance, the nearest item the
dialog has not shown yet is shown next, and the simulator describes how the
target differs from it. Showing the target ends the dialog; here later turns
then count the target as found (rank 0).

Unlike the vector environment, which gives every dialog its own generator,
all dialogs of a batch share one generator here, so the simulator captions the
whole batch in one ``describe`` call per turn. Captions therefore differ from
an environment seeded the same way, but the rules do not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.base import Retriever
from fiq_env.dialog import DialogCore, SplitTables, StartRequest
from fiq_env.env_config import EnvConfig
from fiq_env.errors import ConfigError
from fiq_env.features import CatalogFeatures
from fiq_env.metrics import mean_confidence_interval, ranking_percentile, recall_at_k
from fiq_env.text import Vocabulary

logger = logging.getLogger(__name__)


class _SharedGeneratorSimulator:
    """Presents a simulator to :class:`DialogCore` so that a whole batch is captioned in one call.

    ``describe_rows`` ignores the per-row generators and draws from the one
    shared generator instead.
    """

    def __init__(self, simulator: Any, rng: np.random.Generator) -> None:
        self.simulator = simulator
        self.rng = rng

    @property
    def vocabulary(self) -> Vocabulary:
        return self.simulator.vocabulary

    def describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        return self.simulator.describe(reference, target, self.rng)

    def describe_rows(self, reference: np.ndarray, target: np.ndarray, rngs: list[np.random.Generator]) -> list[str]:
        return self.simulator.describe(reference, target, self.rng)


@dataclass
class DialogData:
    """Everything a dialog runs on: one split of a catalog, its features and the simulator.

    Attributes:
        catalog: the catalog (any object with ``indices(split)`` and ``item_ids``).
        features: encoder outputs for every catalog item.
        simulator: the frozen user simulator (``vocabulary`` and ``describe(reference, target, rng)``).
        split: the split whose items are ranked, shown and used as start pairs.
        max_turns: turns per dialog (T).
        caption_length: tokens per encoded caption (L).
    """

    catalog: Any
    features: CatalogFeatures
    simulator: Any
    split: str = "train"
    max_turns: int = 5
    caption_length: int = 8
    tables: SplitTables = field(init=False, repr=False)
    env_config: EnvConfig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.features.features.shape[0] != len(self.catalog):
            raise ConfigError(
                f"features cover {self.features.features.shape[0]} items but the catalog has {len(self.catalog)}; "
                "encode this catalog (fiq_env.encoder.encode_catalog)"
            )
        self.tables = SplitTables.build(self.catalog, self.features, self.split)
        self.env_config = EnvConfig(split=self.split, max_turns=self.max_turns, caption_length=self.caption_length)
        if len(self.tables) < self.env_config.min_split_size():
            raise ConfigError(
                f"the {self.split!r} split has {len(self.tables)} items; a {self.max_turns}-turn dialog needs at "
                f"least {self.env_config.min_split_size()} (use a larger catalog or split)"
            )

    @property
    def vocabulary(self) -> Vocabulary:
        return self.simulator.vocabulary

    @property
    def gallery(self) -> np.ndarray:
        """``(items,)`` catalog indices of the split's items, ascending."""
        return self.tables.catalog_indices

    def positions(self, items: np.ndarray) -> np.ndarray:
        """Return each catalog item's position in the split; items outside the split raise ConfigError."""
        items = np.asarray(items, dtype=np.int64)
        positions = np.searchsorted(self.gallery, items).clip(0, self.gallery.size - 1)
        outside = self.gallery[positions] != items
        if outside.any():
            raise ConfigError(
                f"item {items[outside][0]} is not in the {self.split!r} split; pick targets and first images "
                "from data.gallery"
            )
        return positions

    def sample_start_pairs(self, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``count`` (target, first image) pairs of distinct split items, as catalog indices."""
        size = self.gallery.size
        targets = rng.integers(0, size, size=count)
        offsets = rng.integers(1, size, size=count)  # never 0, so first image != target
        return self.gallery[targets], self.gallery[(targets + offsets) % size]


class DialogBatch:
    """A batch of dialogs in lockstep; advance it with :meth:`step`.

    Args:
        data: what the dialogs run on.
        targets: ``(batch,)`` catalog indices of the wanted items.
        initial: ``(batch,)`` catalog indices of the first shown images.
        rng: the generator every simulator call draws from.
    """

    def __init__(self, data: DialogData, targets: np.ndarray, initial: np.ndarray, rng: np.random.Generator) -> None:
        targets = np.asarray(targets, dtype=np.int64)
        initial = np.asarray(initial, dtype=np.int64)
        if targets.shape != initial.shape or targets.ndim != 1:
            raise ConfigError(f"targets {targets.shape} and initial {initial.shape} must be equal-length 1-D arrays")
        if (targets == initial).any():
            raise ConfigError("a start pair has the same item as target and first image; pass two different items")
        self.data = data
        self.targets = targets
        batch = targets.size
        self.core = DialogCore(data.tables, _SharedGeneratorSimulator(data.simulator, rng), data.env_config, batch)
        self._rngs = [rng] * batch

        requests = [StartRequest(int(t), int(i)) for t, i in zip(data.positions(targets), data.positions(initial))]
        self.core.advance(self._rngs, np.zeros(0, dtype=np.int64), None, np.arange(batch), requests)

    @property
    def done(self) -> np.ndarray:
        """``(batch,)`` True for dialogs that ended (target shown or turns used up)."""
        return ~self.core.running

    @property
    def turn(self) -> np.ndarray:
        return self.core.turn

    @property
    def shown_items(self) -> np.ndarray:
        """``(batch, turns + 1)`` catalog indices of the shown items, -1 where none was shown yet."""
        columns = np.arange(self.core.shown.shape[1])[None, :]
        items = self.data.gallery[self.core.shown]
        return np.where(columns < self.core.num_shown[:, None], items, -1)

    def observation(self, device: torch.device | str = "cpu") -> dict[str, Tensor]:
        """Return the batched observation, in the environment's layout, as tensors."""
        arrays = self.core.observation_rows(slice(None))
        return {key: torch.from_numpy(value).to(device) for key, value in arrays.items()}

    def step(self, queries: Tensor) -> np.ndarray:
        """Rank the targets under ``queries`` ``(batch, dim)``, show the next items, return the ranks.

        Dialogs already done get rank 0 and are left unchanged.
        """
        running = np.flatnonzero(self.core.running)
        ranks = np.zeros(self.targets.size, dtype=np.int64)
        if running.size:
            actions = self.core.validate_actions(queries.detach().cpu().float().numpy()[running], running, True)
            self.core.advance(self._rngs, running, actions, np.zeros(0, dtype=np.int64))
            ranks[running] = self.core.last_rank[running]
        return ranks


@dataclass
class DialogRollout:
    """Record of a batch of dialogs, returned by :func:`run_dialogs`.

    Attributes:
        observations: one batched observation per turn (the input of each query).
        queries: ``(batch, turns, dim)`` the agent's queries.
        ranks: ``(batch, turns)`` 0-based rank of the target under each query.
        active: ``(batch, turns)`` False for turns after the target was shown.
        shown_items: ``(batch, turns + 1)`` catalog indices of the shown items, the first image
            first, -1 after the dialog ended.
        targets: ``(batch,)`` target items.
    """

    observations: list[dict[str, Tensor]]
    queries: Tensor
    ranks: np.ndarray
    active: np.ndarray
    shown_items: np.ndarray
    targets: np.ndarray


def run_dialogs(
    agent: Retriever,
    data: DialogData,
    targets: np.ndarray,
    initial: np.ndarray,
    rng: np.random.Generator,
    turns: int | None = None,
) -> DialogRollout:
    """Run a batch of dialogs in lockstep without gradients (agent in eval mode) and record them.

    To train through the queries, forward the recorded observations again
    with gradients (see :func:`stack_observations`): the shown images are an
    arg-min over the gallery, so no gradient flows through them anyway.
    """
    turns = data.max_turns if turns is None else turns
    if not 1 <= turns <= data.max_turns:
        raise ConfigError(f"turns must be between 1 and max_turns={data.max_turns}, got {turns}")
    dialogs = DialogBatch(data, targets, initial, rng)
    agent.reset()
    was_training = agent.training
    agent.eval()
    observations, queries, ranks, active = [], [], [], []
    try:
        with torch.no_grad():
            for _ in range(turns):
                obs = dialogs.observation(agent.device)
                active.append(~dialogs.done)
                query = agent(obs)
                observations.append(obs)
                queries.append(query)
                ranks.append(dialogs.step(query))
    finally:
        agent.train(was_training)
    return DialogRollout(
        observations=observations,
        queries=torch.stack(queries, dim=1),
        ranks=np.stack(ranks, axis=1),
        active=np.stack(active, axis=1),
        shown_items=dialogs.shown_items,
        targets=dialogs.targets,
    )


def stack_observations(observations: list[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Concatenate per-turn batched observations into one batch, turn-major: ``(turns * batch, ...)``."""
    return {key: torch.cat([obs[key] for obs in observations], dim=0) for key in observations[0]}


def evaluate(
    agent: Retriever,
    data: DialogData,
    targets: np.ndarray,
    initial: np.ndarray,
    seed: int = 0,
    batch_size: int = 256,
    recall_ks: tuple[int, ...] = (10, 50),
) -> dict[str, Any]:
    """Run every start pair once and return per-turn metrics in percent, with 95% intervals.

    Returns a dict with ``percentile``, ``recall@K`` for each K, for each of
    those a ``<metric>/ci95`` list of ``(low, high)`` pairs, one per turn, and
    ``ranks``, the ``(episodes, turns)`` array of 0-based target ranks.
    """
    rng = np.random.default_rng(seed)
    ranks = []
    for start in range(0, len(targets), batch_size):
        stop = start + batch_size
        ranks.append(run_dialogs(agent, data, targets[start:stop], initial[start:stop], rng).ranks)
    all_ranks = np.concatenate(ranks, axis=0)  # (episodes, turns)

    per_episode = {"percentile": ranking_percentile(all_ranks, data.gallery.size)}
    for k in recall_ks:
        per_episode[f"recall@{k}"] = recall_at_k(all_ranks, k)
    results: dict[str, Any] = {}
    for name, values in per_episode.items():
        stats = [mean_confidence_interval(100.0 * values[:, turn]) for turn in range(values.shape[1])]
        results[name] = [mean for mean, _, _ in stats]
        results[f"{name}/ci95"] = [(low, high) for _, low, high in stats]
    results["ranks"] = all_ranks
    return results
