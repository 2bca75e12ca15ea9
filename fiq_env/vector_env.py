"""``FashionDialogVectorEnv``: many retrieval dialogs stepped as one batch.

The vector environment keeps ``num_envs`` rows of one
:class:`~fiq_env.dialog.DialogCore`, so a step makes one simulator call and
one distance computation (a matrix product) for every sub-environment.

It reproduces ``SyncVectorEnv`` over :class:`~fiq_env.env.FashionDialogEnv`
exactly: observations, rewards, terminations, truncations and infos. The
``tests/test_vector_env.py`` suite compares them step by step.

* Seeds. ``reset(seed=s)`` gives sub-environment ``i`` the generator
  ``gymnasium.utils.seeding.np_random(s + i)``, as ``SyncVectorEnv`` seeds
  its ``i``-th environment with ``s + i``; a list of seeds is used as given.
  Each row draws its start pairs and captions only from its own generator
  (see :mod:`fiq_env.dialog` for the simulator call and the float rounding).
* Autoreset. Gymnasium's next-step mode (``AutoresetMode.NEXT_STEP``): after
  a sub-environment terminates or truncates, the next ``step`` ignores its
  action, starts a new episode from its generator and returns the new first
  observation with reward 0, ``terminated=False`` and ``truncated=False``.
  Rows that reset and rows that step share that step's simulator call.
* Options. ``reset(options=...)`` passes the same ``target``/``initial``
  options to every sub-environment; ``options["reset_mask"]`` (a boolean
  array) resets only the marked ones, as in ``SyncVectorEnv``. After such a
  partial reset the ``_key`` masks of ``info`` agree with ``SyncVectorEnv``,
  but unmarked rows keep their previous info values where it has zeros.

NOTE: in ``"topk"`` mode the agreement also needs a ``candidate_policy``
whose output row does not depend on the other rows of its batch. A torch
model can differ in the last bits between batch sizes, which can reorder
near-tied candidates.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from fiq_env.catalog import Catalog
from fiq_env.dialog import CandidatePolicy, action_space, observation_space
from fiq_env.env import RENDER_MODES, build_config, build_dialog_parts, check_render_mode
from fiq_env.env_config import EnvConfig
from fiq_env.errors import ConfigError, EnvUsageError
from fiq_env.features import CatalogFeatures
from fiq_env.protocols import UserSimulator
from fiq_env.render import render_picture, render_transcript


class FashionDialogVectorEnv(VectorEnv):
    """``num_envs`` dialogs of :class:`~fiq_env.env.FashionDialogEnv` stepped together.

    Takes ``num_envs`` and the keyword arguments of
    :class:`~fiq_env.env.FashionDialogEnv`. The catalog, features and
    simulator are built once and shared by every row. Observations are
    batched with a leading ``num_envs`` axis (``"turn"`` becomes a
    ``MultiDiscrete``); ``info`` uses gymnasium's vector layout, each key
    with a ``_key`` mask. In ``"topk"`` mode, ``candidate_policy`` receives
    the observations of all rows that need candidates in one batch.

    Example:
        >>> envs = gym.make_vec("FashionIQ/Dialog-v0", num_envs=64,
        ...                     vectorization_mode="vector_entry_point")  # doctest: +SKIP
        >>> observations, infos = envs.reset(seed=0)  # doctest: +SKIP
        >>> observations["tokens"].shape  # doctest: +SKIP
        (64, 5, 8)
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 1, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        catalog: Catalog | str = "synthetic",
        category: str | None = None,
        split: str | None = None,
        simulator: UserSimulator | str = "template",
        features: CatalogFeatures | None = None,
        max_turns: int | None = None,
        action_type: str | None = None,
        top_k: int | None = None,
        caption_length: int | None = None,
        render_mode: str | None = None,
        candidate_policy: CandidatePolicy | None = None,
        reveal_target: bool | None = None,
        catalog_kwargs: dict[str, Any] | None = None,
        simulator_kwargs: dict[str, Any] | None = None,
        config: EnvConfig | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.config = build_config(
            config,
            split=split,
            max_turns=max_turns,
            action_type=action_type,
            top_k=top_k,
            caption_length=caption_length,
            reveal_target=reveal_target,
        )
        check_render_mode(render_mode)
        self.render_mode = render_mode
        self.num_envs = num_envs
        self.metadata = dict(type(self).metadata)

        parts = build_dialog_parts(
            self.config, catalog, category, features, simulator, catalog_kwargs, simulator_kwargs,
            batch_size=num_envs, candidate_policy=candidate_policy, record_history=render_mode is not None,
        )
        self.catalog, self.catalog_features, self.simulator, tables, self._core = parts

        self.single_observation_space = observation_space(self.config, tables, self._core.vocabulary_size)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.single_action_space = action_space(self.config, tables)
        self.action_space = batch_space(self.single_action_space, num_envs)

        self._rngs: list[np.random.Generator | None] = [None] * num_envs
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._all_rows = np.arange(num_envs, dtype=np.int64)

    # -------------------------------------------------------------- gymnasium

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        seeds = self._expand_seeds(seed)
        if options is not None and not isinstance(options, dict):
            raise ConfigError(
                f"reset options must be a dict with the keys 'target', 'initial' and 'reset_mask' (all optional), "
                f"got {type(options).__name__}: {options!r}"
            )
        options = dict(options) if options else {}
        reset_mask = options.pop("reset_mask", None)
        if reset_mask is None:
            rows = self._all_rows
        else:
            rows = self._rows_of_mask(reset_mask)

        for row in rows:
            if seeds[row] is not None or self._rngs[row] is None:
                self._rngs[row], _ = seeding.np_random(seeds[row])
        request = self._core.parse_options(options)
        self._core.advance(self._rngs, self._all_rows[:0], None, rows, [request] * len(rows))
        self._needs_reset[rows] = False
        infos = self._core.batched_info(self.config.reveal_target, None if reset_mask is None else rows)
        return self._core.observation_rows(slice(None)), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        core = self._core
        if not core.started.all():
            raise EnvUsageError("step() was called before reset(); call envs.reset() first")

        actions = np.asarray(actions)
        if actions.shape[:1] != (self.num_envs,):
            raise ConfigError(
                f"actions must have a leading axis of num_envs={self.num_envs}, got shape {actions.shape}; "
                f"pass one action per sub-environment"
            )
        step_rows = self._all_rows[~self._needs_reset]
        reset_rows = self._all_rows[self._needs_reset]
        validated = core.validate_actions(actions[step_rows], step_rows, row_label=True)

        rewards, terminated, truncated = core.advance(self._rngs, step_rows, validated, reset_rows)
        self._needs_reset = terminated | truncated
        observations = core.observation_rows(slice(None))
        return observations, rewards, terminated, truncated, core.batched_info(self.config.reveal_target)

    def render(self) -> tuple[Any, ...] | None:
        """Return one rendering per sub-environment (a transcript or a picture), like ``SyncVectorEnv``."""
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        core = self._core
        if not core.started.all():
            raise EnvUsageError("render() was called before reset(); call envs.reset() first")
        tables = core.tables
        renderings = []
        for row in range(self.num_envs):
            if self.render_mode == "ansi":
                renderings.append(render_transcript(core.history[row], tables.item_ids[int(core.targets[row])]))
                continue
            renderings.append(
                render_picture(
                    self.catalog,
                    shown_index=int(tables.catalog_indices[core.last_shown[row]]),
                    target_index=int(tables.catalog_indices[core.targets[row]]),
                    caption=core.history[row][-1]["caption"] if core.history[row] else "",
                    turn=int(core.num_shown[row]) - 1,
                    target_rank=int(core.last_rank[row]),
                )
            )
        return tuple(renderings)

    # ----------------------------------------------------------------- extras

    @property
    def np_random_generators(self) -> tuple[np.random.Generator | None, ...]:
        """Generator of each sub-environment (None before its first reset)."""
        return tuple(self._rngs)

    def candidate_ids(self, row: int) -> list[str]:
        """Ids of sub-environment ``row``'s current ``"topk"`` candidates, in action order."""
        if self.config.action_type != "topk":
            return []
        return self._core.candidate_ids(row)

    def _expand_seeds(self, seed: int | list[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ConfigError(f"a list of seeds needs num_envs={self.num_envs} entries, got {len(seeds)}")
        return seeds

    def _rows_of_mask(self, reset_mask: Any) -> np.ndarray:
        mask = np.asarray(reset_mask)
        if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
            raise ConfigError(
                f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), "
                f"got shape {mask.shape} and dtype {mask.dtype}"
            )
        if not mask.any():
            raise ConfigError("options['reset_mask'] marks no sub-environment; mark at least one")
        return self._all_rows[mask]
