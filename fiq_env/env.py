"""``FashionDialogEnv``: one interactive retrieval dialog as a gymnasium environment."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from fiq_env.catalog import Catalog
from fiq_env.dialog import CandidatePolicy, DialogCore, SplitTables, action_space, observation_space
from fiq_env.env_config import EnvConfig, resolve_catalog, resolve_features, resolve_simulator
from fiq_env.errors import ConfigError, EnvUsageError
from fiq_env.features import CatalogFeatures
from fiq_env.protocols import UserSimulator
from fiq_env.render import render_picture, render_transcript

RENDER_MODES = ("ansi", "rgb_array")


class FashionDialogEnv(gym.Env):
    """Dialog-based image retrieval with a simulated shopper (Wu et al., Fashion IQ, CVPR 2021).

    ## Description

    A shopper wants a target garment of a catalog split. The environment
    shows a first image; the user simulator describes how the target differs
    from it ("is darker with longer sleeves"). Each action retrieves a new
    image, which the shopper describes in turn, for up to ``max_turns``
    retrievals, as in the five-turn dialogs of the Fashion IQ paper.

    ## Action space

    * ``action_type="query"`` (default): ``Box(-1, 1, (D,), float32)``, a
      query vector in image-feature space. Any finite vector of shape ``(D,)``
      is accepted, also outside ``[-1, 1]``. The environment shows the
      nearest item of the split (Euclidean distance) not shown before in the
      episode, ties going to the lower catalog index.
    * ``action_type="topk"``: ``Discrete(K)`` with ``K = top_k``, the index of
      one of the candidates listed in ``observation["candidates"]``. The
      candidates are the K unseen items nearest to a base query, nearest
      first: ``candidate_policy(observation)`` when a policy is given (for
      example a supervised retriever), else the features of the image shown
      last. The chosen candidate is shown and its features are the query
      the reward is computed for.

    ## Observation space

    A ``Dict`` (T = ``max_turns``, L = ``caption_length``, D = feature
    dimension, N = top attributes per item, V = simulator vocabulary size,
    A = number of attribute names):

    * ``"tokens"``: ``Box(0, V-1, (T, L), int64)``; row t contains the caption
      about the image shown at turn t, padded with 0.
    * ``"features"``: ``Box(-1, 1, (T, D), float32)``; L2-normalized features
      of the image shown at turn t.
    * ``"attributes"``: ``Box(0, A, (T, N), int64)``; the image's top-N
      attribute indices plus one (0 pads).
    * ``"turn"``: ``Discrete(T + 1)``; captions received so far (1 after reset).
    * ``"candidates"`` (``"topk"`` only): ``Box(-1, 1, (K, D), float32)``.

    Rows of turns not reached yet are 0.

    ## Rewards

    The target's ranking percentile under the query over every item of the
    split, ``1 - rank / N`` with the 0-based rank of
    :func:`fiq_env.metrics.target_ranks` (ties count for the target), so 1.0
    when the target ranks first.

    ## Starting state

    ``reset`` picks a target and a different first image uniformly from the
    split, or takes them from ``options={"target": ..., "initial": ...}``
    (item id strings, or catalog indices as ints; either key may be left out).
    The first observation already carries the caption of the first image.
    Every random draw, the simulator's included, comes from ``self.np_random``.

    ## Episode end

    Terminated when the shown item is the target; truncated after
    ``max_turns`` actions. The step that ends an episode asks for no caption:
    its observation repeats the previous one and ``info["caption"]`` is ``""``.

    ## Info

    ``"caption"`` (the new caption text), ``"shown_id"``, ``"shown_index"``
    (catalog index), ``"target_rank"`` (0-based rank under the query; after
    ``reset``, under the first image's features) and ``"is_success"``.
    ``"target_id"`` is added only with ``reveal_target=True``, so an agent
    that reads ``info`` cannot see the answer by default.

    ## Arguments

    Args:
        catalog: a :class:`~fiq_env.catalog.Catalog` or a source name
            (``"synthetic"``, ``"fashion_iq"``, ...), built with ``catalog_kwargs``.
        category: garment category of a catalog built by name (``"dress"``
            when None); must match a catalog object when given.
        split: split the targets, first images and search come from.
        simulator: a :class:`~fiq_env.protocols.UserSimulator` or a name
            resolved through ``simulators.make``.
        features: the catalog's :class:`~fiq_env.features.CatalogFeatures`;
            None encodes the catalog (trained and cached on first use).
        max_turns: retrieval actions per episode.
        action_type: ``"query"`` or ``"topk"``.
        top_k: number of candidates in ``"topk"`` mode.
        caption_length: token ids per caption.
        render_mode: None, ``"ansi"`` or ``"rgb_array"``.
        candidate_policy: base query of the ``"topk"`` candidates, a callable
            mapping a batch of observations (leading batch axis, without
            ``"candidates"``) to ``(batch, D)`` queries.
        reveal_target: add ``"target_id"`` to ``info``.
        catalog_kwargs: keyword arguments of a catalog built by name.
        simulator_kwargs: keyword arguments of a simulator built by name.
        config: an :class:`~fiq_env.env_config.EnvConfig` whose fields the
            explicit arguments above override (``synthetic_items`` sets the
            default synthetic catalog size).

    ## Version History

    * v0: initial version.

    Example:
        >>> import gymnasium as gym, fiq_env  # doctest: +SKIP
        >>> env = gym.make("FashionIQ/Dialog-v0")  # doctest: +SKIP
        >>> observation, info = env.reset(seed=0)  # doctest: +SKIP
        >>> int(observation["turn"])  # doctest: +SKIP
        1
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(
        self,
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

        parts = build_dialog_parts(
            self.config, catalog, category, features, simulator, catalog_kwargs, simulator_kwargs,
            batch_size=1, candidate_policy=candidate_policy, record_history=render_mode is not None,
        )
        self.catalog, self.catalog_features, self.simulator, tables, self._core = parts

        self.observation_space = observation_space(self.config, tables, self._core.vocabulary_size)
        self.action_space = action_space(self.config, tables)
        self._rows = np.zeros(1, dtype=np.int64)
        self._no_rows = np.zeros(0, dtype=np.int64)

    # -------------------------------------------------------------- gymnasium

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        request = self._core.parse_options(options)
        self._core.advance([self.np_random], self._no_rows, None, self._rows, [request])
        return self._observation(), self._core.info(0, self.config.reveal_target)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        core = self._core
        if not core.started[0]:
            raise EnvUsageError("step() was called before reset(); call env.reset() first")
        if not core.running[0]:
            raise EnvUsageError("step() was called after the episode ended (terminated or truncated); call env.reset()")

        actions = core.validate_actions(np.asarray(action)[None, ...], self._rows, row_label=False)
        rewards, terminated, truncated = core.advance([self.np_random], self._rows, actions, self._no_rows)
        info = core.info(0, self.config.reveal_target)
        return self._observation(), float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; pass render_mode='ansi' or 'rgb_array'")
            return None
        core = self._core
        if not core.started[0]:
            raise EnvUsageError("render() was called before reset(); call env.reset() first")
        if self.render_mode == "ansi":
            return render_transcript(core.history[0], core.tables.item_ids[int(core.targets[0])])
        tables = core.tables
        return render_picture(
            self.catalog,
            shown_index=int(tables.catalog_indices[core.last_shown[0]]),
            target_index=int(tables.catalog_indices[core.targets[0]]),
            caption=core.history[0][-1]["caption"] if core.history[0] else "",
            turn=int(core.num_shown[0]) - 1,
            target_rank=int(core.last_rank[0]),
        )

    # ----------------------------------------------------------------- extras

    @property
    def candidate_ids(self) -> list[str]:
        """Ids of the current ``"topk"`` candidates in action order (empty in ``"query"`` mode)."""
        if self.config.action_type != "topk" or not self._core.started[0]:
            return []
        return self._core.candidate_ids(0)

    @property
    def shown_ids(self) -> list[str]:
        """Ids of the images shown so far in the current episode, first image first."""
        core = self._core
        return [core.tables.item_ids[p] for p in core.shown[0, : core.num_shown[0]]]

    def _observation(self) -> dict[str, Any]:
        observation = self._core.observation_rows(slice(0, 1))
        single = {key: value[0] for key, value in observation.items()}
        single["turn"] = np.int64(single["turn"])
        return single


def build_dialog_parts(
    config: EnvConfig,
    catalog: Catalog | str,
    category: str | None,
    features: CatalogFeatures | None,
    simulator: UserSimulator | str,
    catalog_kwargs: dict[str, Any] | None,
    simulator_kwargs: dict[str, Any] | None,
    batch_size: int,
    candidate_policy: CandidatePolicy | None,
    record_history: bool,
) -> tuple[Catalog, CatalogFeatures, UserSimulator, SplitTables, DialogCore]:
    """Resolve the catalog, features and simulator and build the dialog core of ``batch_size`` rows.

    Shared by the single and the vector environment, so both set themselves up the same way.
    """
    resolved_catalog = resolve_catalog(catalog, category, catalog_kwargs, config)
    resolved_features = resolve_features(resolved_catalog, features)
    resolved_simulator = resolve_simulator(simulator, resolved_catalog, resolved_features, simulator_kwargs)
    tables = SplitTables.build(resolved_catalog, resolved_features, config.split)
    core = DialogCore(
        tables,
        resolved_simulator,
        config,
        batch_size=batch_size,
        candidate_policy=candidate_policy,
        record_history=record_history,
    )
    return resolved_catalog, resolved_features, resolved_simulator, tables, core


def build_config(config: EnvConfig | None, **overrides: Any) -> EnvConfig:
    """Return ``config`` (or the default) with every override that is not None applied."""
    from dataclasses import replace

    base = config if config is not None else EnvConfig()
    if not isinstance(base, EnvConfig):
        raise ConfigError(f"config must be an EnvConfig, got {type(base).__name__}")
    return replace(base, **{key: value for key, value in overrides.items() if value is not None})


def check_render_mode(render_mode: str | None) -> None:
    """Raise :class:`ConfigError` unless ``render_mode`` is None or a supported mode."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ConfigError(f"render_mode must be None or one of {RENDER_MODES}, got {render_mode!r}")
