"""Benchmarking a stable-baselines3 policy trained on the ``topk`` environment (see :mod:`agents.rl`).

Such a policy chooses one of the K unseen items nearest to a supervised
retriever's query. It is scored on the same start pairs as every other agent,
in the ``topk`` vector environment. There the target's rank is taken under the
chosen candidate's features, which is the rank a query equal to those
features gets in ``query`` mode.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fiq_env.errors import CheckpointError

logger = logging.getLogger(__name__)


class SB3Agent:
    """A saved PPO run: its policy and the path of the supervised retriever that lists candidates.

    Attributes:
        model: the stable-baselines3 PPO model.
        retriever_path: folder of the saved candidate retriever.
        top_k: candidates per turn the policy was trained with.
    """

    vocabulary = None

    def __init__(self, model: Any, retriever_path: str, top_k: int) -> None:
        self.model = model
        self.retriever_path = retriever_path
        self.top_k = top_k

    @classmethod
    def load(cls, path: str | Path) -> SB3Agent:
        """Load a PPO ``.zip`` (pickle-based: trusted files only), as written by ``fiq-train-agent ppo --save-zip``."""
        from stable_baselines3 import PPO

        path = Path(path)
        if path.suffix == ".zip":
            if not path.is_file():
                raise CheckpointError(f"stable-baselines3 model {path} not found")
            logger.warning("loading %s with pickle (stable-baselines3 .zip); only load files you trust", path)
            model = PPO.load(path, device="cpu")
            extractor = model.policy_kwargs.get("features_extractor_kwargs", {})
            retriever_path = extractor.get("retriever_path")
            if retriever_path is None:
                raise CheckpointError(f"{path} was not trained by agents.rl (no retriever_path in its policy_kwargs)")
            top_k = int(model.action_space.n)
            return cls(model, retriever_path, top_k)
        raise CheckpointError(
            f"{path} is not a stable-baselines3 .zip file; write one with fiq-train-agent ppo --save-zip "
            "(or agents.rl.train_ppo(..., save_zip=True))"
        )

    def rank_episodes(self, catalog: Any, features: Any, simulator: Any, pairs: Any, split: str, turns: int, seed: int) -> np.ndarray:
        """Play every start pair in the ``topk`` vector env and return the ``(episodes, turns)`` ranks."""
        from agents.rl import evaluate_topk, make_topk_env

        venv = make_topk_env(
            self.retriever_path,
            num_envs=min(32, len(pairs)),
            top_k=self.top_k,
            split=split,
            catalog=catalog,
            features=features,
            simulator=simulator,
            max_turns=turns,
        )
        try:
            venv.reset(seed=seed)

            def choose(observations: dict[str, np.ndarray]) -> np.ndarray:
                actions, _ = self.model.predict(observations, deterministic=True)
                return actions

            return evaluate_topk(choose, venv, list(pairs.targets), list(pairs.initials))
        finally:
            venv.close()
