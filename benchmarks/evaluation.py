"""Running agents over a fixed list of start pairs and collecting the target's rank at every turn."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from benchmarks.start_pairs import StartPairs
from fiq_env.catalog import Catalog

logger = logging.getLogger(__name__)


@dataclass
class EpisodeRanks:
    """Ranks of one agent over all start pairs.

    Attributes:
        ranks: ``(episodes, turns)`` 0-based target rank under each turn's
            query; rank 0 after the target was shown.
        env_steps: agent queries processed (dialogs still running at each turn).
        seconds: wall-clock seconds of the episodes.
    """

    ranks: np.ndarray
    env_steps: int
    seconds: float


def run_episodes(
    agent,
    catalog: Catalog,
    features,
    simulator,
    pairs: StartPairs,
    split: str,
    turns: int,
    seed: int,
    batch_size: int = 100,
    description: str = "episodes",
) -> EpisodeRanks:
    """Play every start pair for ``turns`` turns with ``agent`` and return the ranks.

    Dialogs run in batches on the environment's own core (through
    :func:`agents.rollout.run_dialogs`), so the rules are those of
    ``FashionIQ/Dialog-v0``. Batch ``b`` draws its captions from a generator
    seeded with ``(seed, b)``, the same for every agent.
    """
    from agents.rollout import DialogData, run_dialogs

    data = DialogData(catalog, features, simulator, split=split, max_turns=turns)
    targets = np.array([catalog.index_of(item) for item in pairs.targets], dtype=np.int64)
    initial = np.array([catalog.index_of(item) for item in pairs.initials], dtype=np.int64)

    ranks, env_steps = [], 0
    started = time.perf_counter()
    for batch, start in enumerate(tqdm(range(0, len(pairs), batch_size), desc=description, leave=False, disable=None)):
        stop = min(start + batch_size, len(pairs))
        rng = np.random.default_rng([seed, batch])
        rollout = run_dialogs(agent, data, targets[start:stop], initial[start:stop], rng, turns=turns)
        ranks.append(rollout.ranks)
        env_steps += int(rollout.active.sum())
    seconds = time.perf_counter() - started
    return EpisodeRanks(np.concatenate(ranks, axis=0), env_steps, seconds)
