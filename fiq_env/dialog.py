"""The batched dialog core shared by :class:`~fiq_env.env.FashionDialogEnv` and the vector env.

:class:`DialogCore` stores the state of ``batch_size`` dialogs (one row per
sub-environment; the single environment is a batch of one) and advances any
subset of rows by one step. Both environments call the same
:meth:`DialogCore.advance`, so a vector step and ``num_envs`` single steps
run the same code.

Two rules make a batch of rows behave exactly like separate single
environments seeded the same way:

* Randomness. Each row draws only from its own generator: the start pair
  with ``rng.integers`` and the captions through the simulator. With more
  than one row the core calls ``simulator.describe_rows(reference, target,
  rngs)`` once (see :class:`~fiq_env.protocols.RowwiseUserSimulator`), which
  must give row ``i`` the caption of ``describe(..., rngs[i])``; simulators
  without it are called once per row. A batch of one always uses
  ``describe``.
* Distances. Matrix products in float32 give results that depend on the
  batch shape (BLAS picks other kernels and summation orders), which could
  change a rank or a nearest item between a batch of 64 and a batch of one.
  The search therefore uses the float32 product only to sort out clear cases:
  items whose float32 distance lies within a proven rounding bound of the
  deciding value are compared again with distances recomputed per item in
  float64 (``sum(x * (x - 2 q))``, the squared distance less ``|q|^2``),
  which do not depend on the batch. Ties in
  those distances go to the lower item index. On the 1,000-item synthetic
  dress catalog with 512-dimensional encoder features, 2 to 5 items per row
  and step were recomputed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from fiq_env.catalog import Catalog
from fiq_env.env_config import EnvConfig
from fiq_env.errors import ConfigError, DataError
from fiq_env.features import CatalogFeatures
from fiq_env.protocols import UserSimulator
from fiq_env.text import tokenize

logger = logging.getLogger(__name__)

CandidatePolicy = Callable[[dict[str, np.ndarray]], np.ndarray]
"""Maps a batch of observations (arrays with a leading batch axis) to ``(batch, dim)`` queries."""

_FLOAT32_EPS = float(np.finfo(np.float32).eps)

# Above this query norm the float32 product could overflow; such batches are scored in float64.
_FLOAT32_SAFE_NORM = 1e15

# Split tables shared by environments built from the same objects: key -> (catalog ref, features ref, tables).
_TABLES_CACHE: dict[tuple[int, int, str], tuple[weakref.ref, weakref.ref, SplitTables]] = {}
_TABLES_CACHE_SIZE = 8

# Captions kept in the token cache before it is cleared, which bounds its memory.
_TOKEN_CACHE_LIMIT = 200_000


@dataclass
class SplitTables:
    """The arrays of one catalog split that the search and the observations read.

    Attributes:
        catalog_indices: ``(items,)`` catalog index of each split position.
        item_ids: string id of each split position.
        features: ``(items, dim)`` float32 features, clipped to ``[-1, 1]``.
        squared_norms: ``(items,)`` float32 squared feature norms.
        max_norm: largest feature norm, used in the rounding bound.
        attributes: ``(items, top_n)`` int64 top attribute indices plus one.
        num_attributes: size of the attribute vocabulary.
    """

    catalog_indices: np.ndarray
    item_ids: list[str]
    features: np.ndarray
    squared_norms: np.ndarray
    max_norm: float
    attributes: np.ndarray
    num_attributes: int

    @classmethod
    def build(cls, catalog: Catalog, features: CatalogFeatures, split: str) -> SplitTables:
        """Gather ``split``'s rows, or return the tables already built from the same objects.

        Environments built from the same catalog and features objects (the
        sub-environments of a ``SyncVectorEnv``, say) share one copy, so
        memory does not grow with their number. An empty split raises
        :class:`DataError`.
        """
        dead = [key for key, (catalog_ref, features_ref, _) in _TABLES_CACHE.items() if None in (catalog_ref(), features_ref())]
        for key in dead:
            del _TABLES_CACHE[key]
        key = (id(catalog), id(features), split)
        cached = _TABLES_CACHE.get(key)
        if cached is not None and cached[0]() is catalog and cached[1]() is features:
            return cached[2]
        tables = cls._gather(catalog, features, split)
        if len(_TABLES_CACHE) >= _TABLES_CACHE_SIZE:
            _TABLES_CACHE.pop(next(iter(_TABLES_CACHE)))
        _TABLES_CACHE[key] = (weakref.ref(catalog), weakref.ref(features), tables)
        return tables

    @classmethod
    def _gather(cls, catalog: Catalog, features: CatalogFeatures, split: str) -> SplitTables:
        indices = catalog.indices(split).astype(np.int64)
        if indices.size == 0:
            raise DataError(f"the {split!r} split of {catalog!r} has no items; choose another split")

        split_features = np.clip(features.features[indices], -1.0, 1.0).astype(np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", split_features, split_features, dtype=np.float64))
        return cls(
            catalog_indices=indices,
            item_ids=[str(catalog.item_ids[i]) for i in indices],
            features=np.ascontiguousarray(split_features),
            squared_norms=(norms * norms).astype(np.float32),
            max_norm=float(norms.max()),
            attributes=features.top_attributes[indices].astype(np.int64) + 1,
            num_attributes=len(features.attribute_names),
        )

    def __len__(self) -> int:
        return len(self.catalog_indices)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def top_n(self) -> int:
        return int(self.attributes.shape[1])


def observation_space(config: EnvConfig, tables: SplitTables, vocabulary_size: int) -> spaces.Dict:
    """Return the observation space of one dialog (see :class:`~fiq_env.env.FashionDialogEnv`)."""
    turns, length = config.max_turns, config.caption_length
    subspaces: dict[str, spaces.Space] = {
        "tokens": spaces.Box(0, vocabulary_size - 1, (turns, length), np.int64),
        "features": spaces.Box(-1.0, 1.0, (turns, tables.dim), np.float32),
        "attributes": spaces.Box(0, tables.num_attributes, (turns, tables.top_n), np.int64),
        "turn": spaces.Discrete(turns + 1),
    }
    if config.action_type == "topk":
        subspaces["candidates"] = spaces.Box(-1.0, 1.0, (config.top_k, tables.dim), np.float32)
    return spaces.Dict(subspaces)


def action_space(config: EnvConfig, tables: SplitTables) -> spaces.Space:
    """Return the action space of one dialog: a query vector or a candidate index."""
    if config.action_type == "topk":
        return spaces.Discrete(config.top_k)
    return spaces.Box(-1.0, 1.0, (tables.dim,), np.float32)


# ----------------------------------------------------------------------------- search


@functools.cache
def _blas_pools() -> object:
    """Return threadpoolctl's handle on the BLAS libraries loaded now (created once, it scans them)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def _blas_threads(threads: int | None) -> Iterator[None]:
    """Limit BLAS to ``threads`` threads inside the block; None leaves it as configured."""
    if threads is None:
        yield
        return
    with _blas_pools().limit(limits=threads):
        yield


def _score(
    tables: SplitTables, queries: np.ndarray, blas_threads: int | None = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return fast distances, their error bound and the float64 queries.

    The fast distance ``|x|^2 - 2 q.x`` (shape ``(batch, items)``) omits the
    ``|q|^2`` term shared by a row, so it ranks items like the Euclidean
    distance. ``bound`` (shape ``(batch,)``) caps its rounding error: the
    standard ``dim * eps`` bound of a float32 dot product times ``|q| |x|``,
    plus the rounding of the norm and of the subtraction, doubled for margin.
    """
    queries64 = queries.astype(np.float64)
    query_norms = np.sqrt((queries64 * queries64).sum(axis=1))
    scale = query_norms * tables.max_norm

    with _blas_threads(blas_threads):
        if query_norms.max(initial=0.0) < _FLOAT32_SAFE_NORM:
            dots = queries @ tables.features.T  # (batch, items)
            fast = tables.squared_norms[None, :] - 2.0 * dots
            eps = _FLOAT32_EPS
        else:
            dots = queries64 @ tables.features.astype(np.float64).T
            fast = tables.squared_norms[None, :].astype(np.float64) - 2.0 * dots
            eps = float(np.finfo(np.float64).eps)

    dim = tables.dim
    bound = 2.0 * eps * (2.2 * (dim + 2) * scale + 4.0 * (tables.max_norm**2 + scale) + 1.0) + 1e-12 * (1.0 + scale)
    return fast, bound.astype(fast.dtype), queries64


def _exact_distances(tables: SplitTables, queries64: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Return ``|x|^2 - 2 q.x`` in float64 for the given (row, item) pairs, each computed on its own.

    Leaving out ``|q|^2`` keeps the differences between items even for
    queries far larger than the unit-norm features.
    """
    items = tables.features[columns].astype(np.float64)  # (pairs, dim)
    return (items * (items - 2.0 * queries64[rows])).sum(axis=1)


def target_ranks(
    tables: SplitTables, fast: np.ndarray, bound: np.ndarray, queries64: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Return how many split items are strictly closer to each query than its target (0-based rank)."""
    batch = fast.shape[0]
    rows = np.arange(batch)
    target_fast = fast[rows, targets]
    margin = 2.0 * bound

    difference = fast - target_fast[:, None]  # (batch, items)
    clearly_closer = difference < -margin[:, None]
    ranks = clearly_closer.sum(axis=1)
    not_clearly_farther = difference <= margin[:, None]
    # Items within the margin of the target, the target itself excluded.
    unclear_counts = not_clearly_farther.sum(axis=1) - ranks - 1
    needed = np.flatnonzero(unclear_counts > 0)
    if needed.size:
        unclear = not_clearly_farther[needed] & ~clearly_closer[needed]
        unclear[np.arange(needed.size), targets[needed]] = False
        slots, unclear_columns = np.nonzero(unclear)
        unclear_rows = needed[slots]
        exact = _exact_distances(tables, queries64, unclear_rows, unclear_columns)
        exact_target = np.zeros(batch)
        exact_target[needed] = _exact_distances(tables, queries64, needed, targets[needed])
        closer = exact < exact_target[unclear_rows]
        ranks = ranks + np.bincount(unclear_rows[closer], minlength=batch)
    return ranks.astype(np.int64)


def nearest_unshown(
    tables: SplitTables, fast: np.ndarray, bound: np.ndarray, queries64: np.ndarray, shown: np.ndarray, k: int
) -> np.ndarray:
    """Return the ``(batch, k)`` split positions nearest to each query, nearest first, skipping ``shown``.

    ``shown`` is ``(batch, s)`` split positions to skip; ``fast`` is
    overwritten there with infinity. Every row must have at least ``k``
    items that are not shown.
    """
    batch = fast.shape[0]
    rows = np.arange(batch)
    fast[rows[:, None], shown] = np.inf

    if k == 1:
        kth = fast.min(axis=1)
    else:
        kth = np.partition(fast, k - 1, axis=1)[:, k - 1]

    # Every item that could be among the true k nearest, given the rounding bound.
    possible_rows, possible_columns = np.nonzero(fast <= (kth + 2.0 * bound)[:, None])
    exact = _exact_distances(tables, queries64, possible_rows, possible_columns)
    order = np.lexsort((possible_columns, exact, possible_rows))
    sorted_rows = possible_rows[order]
    sorted_columns = possible_columns[order]
    starts = np.searchsorted(sorted_rows, rows)
    return sorted_columns[starts[:, None] + np.arange(k)[None, :]]


# ----------------------------------------------------------------------------- dialog state


@dataclass
class StartRequest:
    """A requested start pair for one row: split positions, or None to draw at random."""

    target: int | None = None
    initial: int | None = None


class DialogCore:
    """State and step logic of ``batch_size`` dialogs over one catalog split.

    Args:
        tables: the split's arrays.
        simulator: writes the captions; frozen, called with the rows' generators.
        config: turns, caption length, action type.
        batch_size: number of dialogs (1 for the single environment).
        candidate_policy: base query of the ``"topk"`` candidates; None uses
            the features of the image shown last.
        record_history: keep a per-row transcript for rendering.

    Observation buffers have a leading batch axis and are updated in place;
    callers copy what they return.
    """

    def __init__(
        self,
        tables: SplitTables,
        simulator: UserSimulator,
        config: EnvConfig,
        batch_size: int,
        candidate_policy: CandidatePolicy | None = None,
        record_history: bool = False,
    ) -> None:
        if len(tables) < config.min_split_size():
            raise ConfigError(
                f"the {config.split!r} split has {len(tables)} items but max_turns={config.max_turns}"
                + (f" with top_k={config.top_k}" if config.action_type == "topk" else "")
                + f" needs at least {config.min_split_size()}; use a larger catalog or fewer turns"
            )
        vocabulary_size = len(simulator.vocabulary)
        self.tables = tables
        self.simulator = simulator
        self.config = config
        self.batch_size = batch_size
        self.candidate_policy = candidate_policy
        self.record_history = record_history
        self.vocabulary_size = vocabulary_size
        self._token_cache: dict[str, np.ndarray] = {}
        self._chunk_cache: dict[str, list[int]] = {}

        turns, length, dim = config.max_turns, config.caption_length, tables.dim
        # Observation buffers: (batch, turns, ...) plus the candidates of "topk" mode.
        self.tokens = np.zeros((batch_size, turns, length), dtype=np.int64)
        self.features = np.zeros((batch_size, turns, dim), dtype=np.float32)
        self.attributes = np.zeros((batch_size, turns, tables.top_n), dtype=np.int64)
        self.turn = np.zeros(batch_size, dtype=np.int64)
        self.candidates = np.zeros((batch_size, config.top_k, dim), dtype=np.float32)
        self.candidate_positions = np.zeros((batch_size, config.top_k), dtype=np.int64)

        # Episode state; positions index the split tables.
        self.targets = np.zeros(batch_size, dtype=np.int64)
        self.shown = np.zeros((batch_size, turns + 1), dtype=np.int64)
        self.num_shown = np.zeros(batch_size, dtype=np.int64)
        self.running = np.zeros(batch_size, dtype=bool)
        self.started = np.zeros(batch_size, dtype=bool)

        # What the last reset or step of each row produced, for info and rendering.
        self.last_caption = np.full(batch_size, "", dtype=object)
        self.last_shown = np.zeros(batch_size, dtype=np.int64)
        self.last_rank = np.zeros(batch_size, dtype=np.int64)
        self.last_success = np.zeros(batch_size, dtype=bool)
        self.history: list[list[dict]] = [[] for _ in range(batch_size)]

    # ------------------------------------------------------------------ public

    def observation_rows(self, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
        """Return copies of the observation buffers for ``rows`` (leading batch axis kept)."""
        observation = {
            "tokens": self.tokens[rows].copy(),
            "features": self.features[rows].copy(),
            "attributes": self.attributes[rows].copy(),
            "turn": self.turn[rows].copy(),
        }
        if self.config.action_type == "topk":
            observation["candidates"] = self.candidates[rows].copy()
        return observation

    def position_of(self, item: str | int | np.integer, role: str) -> int:
        """Return the split position of an item given by string id or catalog index."""
        tables = self.tables
        if isinstance(item, str):
            lookup = getattr(self, "_id_lookup", None)
            if lookup is None:
                lookup = {item_id: position for position, item_id in enumerate(tables.item_ids)}
                self._id_lookup = lookup
            if item not in lookup:
                raise ConfigError(
                    f"options[{role!r}]={item!r} is not an item id of the {self.config.split!r} split; "
                    f"use an id from that split (or a catalog index as an int)"
                )
            return lookup[item]
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            position = int(np.searchsorted(tables.catalog_indices, item))
            if position >= len(tables) or tables.catalog_indices[position] != item:
                raise ConfigError(
                    f"options[{role!r}]={item} is not the catalog index of an item in the {self.config.split!r} "
                    f"split; use catalog.indices({self.config.split!r}) or an item id string"
                )
            return position
        raise ConfigError(f"options[{role!r}] must be an item id (str) or a catalog index (int), got {item!r}")

    def parse_options(self, options: dict | None) -> StartRequest:
        """Turn ``reset`` options into a :class:`StartRequest`; unknown keys raise :class:`ConfigError`."""
        if options is None:
            return StartRequest()
        if not isinstance(options, dict):
            raise ConfigError(
                f"reset options must be a dict with the keys 'target' and 'initial' (both optional), "
                f"got {type(options).__name__}: {options!r}"
            )
        unknown = sorted(set(options) - {"target", "initial"})
        if unknown:
            raise ConfigError(f"unknown reset option(s) {unknown}; supported options are 'target' and 'initial'")
        request = StartRequest()
        if options.get("target") is not None:
            request.target = self.position_of(options["target"], "target")
        if options.get("initial") is not None:
            request.initial = self.position_of(options["initial"], "initial")
        if request.target is not None and request.target == request.initial:
            raise ConfigError(
                f"options target and initial are the same item ({options['target']!r}); an episode that starts "
                f"at its target is already solved, so pass two different items"
            )
        return request

    def validate_actions(self, actions: np.ndarray, rows: np.ndarray, row_label: bool) -> np.ndarray:
        """Check and convert the actions of ``rows``: ``(rows, dim)`` queries or ``(rows,)`` indices."""
        where = (lambda row: f" of sub-environment {row}") if row_label else (lambda row: "")
        if self.config.action_type == "topk":
            indices = np.asarray(actions)
            if indices.shape != (len(rows),) or not np.issubdtype(indices.dtype, np.integer):
                raise ConfigError(
                    f"topk actions must be integers of shape {(len(rows),) if row_label else ()}, got "
                    f"{np.asarray(actions)!r}; pass a candidate index in [0, {self.config.top_k})"
                )
            bad = np.flatnonzero((indices < 0) | (indices >= self.config.top_k))
            if bad.size:
                raise ConfigError(
                    f"candidate index {indices[bad[0]]}{where(rows[bad[0]])} is outside [0, {self.config.top_k})"
                )
            return indices.astype(np.int64)

        queries = np.asarray(actions)
        expected = (len(rows), self.tables.dim)
        # Complex queries are rejected too: casting them to float32 would drop the imaginary part.
        real = np.issubdtype(queries.dtype, np.integer) or np.issubdtype(queries.dtype, np.floating)
        if queries.shape != expected or not real:
            shown_shape = expected if row_label else expected[1:]
            raise ConfigError(
                f"query must be a real-valued numeric array of shape {shown_shape}, got shape "
                f"{queries.shape if row_label else queries.shape[1:]} (dtype {queries.dtype}); "
                f"pass a vector in the {self.tables.dim}-dimensional feature space"
            )
        finite = np.isfinite(queries)
        if not finite.all():
            row, column = np.argwhere(~finite)[0]
            raise ConfigError(
                f"query{where(rows[row])} has the non-finite value {queries[row, column]} at index {column}; "
                f"queries must be finite"
            )
        with np.errstate(over="ignore"):
            converted = queries.astype(np.float32)
        overflow = ~np.isfinite(converted)
        if overflow.any():
            row, column = np.argwhere(overflow)[0]
            raise ConfigError(
                f"query{where(rows[row])} has the value {queries[row, column]} at index {column}, outside the "
                f"float32 range the search uses; scale the query down"
            )
        return converted

    def advance(
        self,
        rngs: Sequence[np.random.Generator],
        step_rows: np.ndarray,
        actions: np.ndarray | None,
        reset_rows: np.ndarray,
        requests: Sequence[StartRequest] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step ``step_rows`` with validated ``actions`` and start new episodes in ``reset_rows``.

        Args:
            rngs: one generator per row of the batch (all rows, not only those advanced).
            step_rows: ascending rows to step; their episodes must be running.
            actions: validated actions of ``step_rows`` (see :meth:`validate_actions`).
            reset_rows: ascending rows that start a new episode, disjoint from ``step_rows``.
            requests: start pairs of ``reset_rows``; None draws every pair.

        Returns:
            ``(rewards, terminated, truncated)`` of shape ``(batch,)``; rows not
            stepped get 0, False, False.
        """
        batch = self.batch_size
        rewards = np.zeros(batch, dtype=np.float64)
        terminated = np.zeros(batch, dtype=bool)
        truncated = np.zeros(batch, dtype=bool)
        num_items = len(self.tables)

        # 1. Start pairs of the rows that reset, each drawn from the row's own generator.
        if len(reset_rows):
            self._start_rows(reset_rows, requests, rngs)

        # 2. One query per row: the action (or chosen candidate), or the first image after a reset.
        rows = np.concatenate([step_rows, reset_rows]).astype(np.int64)
        num_steps = len(step_rows)
        queries = np.empty((len(rows), self.tables.dim), dtype=np.float32)
        chosen = None
        if num_steps:
            if self.config.action_type == "topk":
                chosen = self.candidate_positions[step_rows, actions]
                queries[:num_steps] = self.tables.features[chosen]
            else:
                queries[:num_steps] = actions
        queries[num_steps:] = self.tables.features[self.shown[reset_rows, 0]]

        # 3. One search for all rows: the target's rank, then the nearest unseen items.
        fast, bound, queries64 = _score(self.tables, queries, self.config.blas_threads)
        ranks = target_ranks(self.tables, fast, bound, queries64, self.targets[rows])
        self.last_rank[rows] = ranks
        if num_steps and chosen is None:
            shown = self._padded_shown(step_rows)
            chosen = nearest_unshown(
                self.tables, fast[:num_steps], bound[:num_steps], queries64[:num_steps], shown, 1
            )[:, 0]

        # 4. Outcomes of the stepped rows.
        if num_steps:
            self.shown[step_rows, self.num_shown[step_rows]] = chosen
            self.num_shown[step_rows] += 1
            success = chosen == self.targets[step_rows]
            rewards[step_rows] = 1.0 - ranks[:num_steps] / num_items
            terminated[step_rows] = success
            truncated[step_rows] = ~success & (self.num_shown[step_rows] > self.config.max_turns)
            self.last_shown[step_rows] = chosen
            self.last_success[step_rows] = success
            self.last_caption[step_rows] = ""
            self.running[step_rows] = ~(terminated[step_rows] | truncated[step_rows])
        self.last_success[reset_rows] = False
        self.last_shown[reset_rows] = self.shown[reset_rows, 0]

        # 5. One simulator call for every row whose dialog goes on, in row order.
        captioned = np.sort(rows[self.running[rows]])
        if captioned.size:
            self._caption_rows(captioned, rngs)
        if self.record_history:
            for row in rows:
                self._record(int(row))
        return rewards, terminated, truncated

    # ----------------------------------------------------------------- helpers

    def _start_rows(
        self, rows: np.ndarray, requests: Sequence[StartRequest] | None, rngs: Sequence[np.random.Generator]
    ) -> None:
        """Draw or take the start pair of each row and clear its episode state and buffers."""
        num_items = len(self.tables)
        targets = np.empty(len(rows), dtype=np.int64)
        initials = np.empty(len(rows), dtype=np.int64)
        for slot, row in enumerate(rows):
            request = requests[slot] if requests is not None else StartRequest()
            rng = rngs[row]
            target, initial = request.target, request.initial
            if target is None:
                target = int(rng.integers(num_items)) if initial is None else _draw_other(rng, num_items, initial)
            if initial is None:
                initial = _draw_other(rng, num_items, target)
            targets[slot] = target
            initials[slot] = initial
            self.history[row] = []

        self.targets[rows] = targets
        self.shown[rows] = 0
        self.shown[rows, 0] = initials
        self.num_shown[rows] = 1
        self.tokens[rows] = 0
        self.features[rows] = 0.0
        self.attributes[rows] = 0
        self.turn[rows] = 0
        self.running[rows] = True
        self.started[rows] = True

    def _caption_rows(self, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> None:
        """Write the caption, features and attributes of each row's newest image into the buffers."""
        tables = self.tables
        shown = self.shown[rows, self.num_shown[rows] - 1]
        reference = tables.catalog_indices[shown]
        target = tables.catalog_indices[self.targets[rows]]
        captions = self._describe(reference, target, [rngs[row] for row in rows])

        slot = self.num_shown[rows] - 1
        self.tokens[rows, slot] = np.stack([self._encode(caption) for caption in captions])
        self.features[rows, slot] = tables.features[shown]
        self.attributes[rows, slot] = tables.attributes[shown]
        self.turn[rows] = slot + 1
        self.last_caption[rows] = captions

        if self.config.action_type == "topk":
            self._list_candidates(rows)

    def _describe(self, reference: np.ndarray, target: np.ndarray, rngs: list[np.random.Generator]) -> list[str]:
        if len(rngs) == 1:
            captions = self.simulator.describe(reference, target, rngs[0])
        elif hasattr(self.simulator, "describe_rows"):
            captions = self.simulator.describe_rows(reference, target, rngs)
        else:
            captions = [
                self.simulator.describe(reference[i : i + 1], target[i : i + 1], rng)[0] for i, rng in enumerate(rngs)
            ]
        if len(captions) != len(target):
            raise DataError(f"the simulator returned {len(captions)} captions for {len(target)} pairs")
        return list(captions)

    def _encode(self, caption: str) -> np.ndarray:
        """Return the caption's token ids, as ``vocabulary.encode`` gives them, from two caches.

        Whole captions are cached; a new caption is assembled from cached
        whitespace-separated chunks, because normalization never joins words
        across whitespace.
        """
        tokens = self._token_cache.get(caption)
        if tokens is not None:
            return tokens
        if len(self._token_cache) >= _TOKEN_CACHE_LIMIT:
            self._token_cache.clear()
            self._chunk_cache.clear()

        ids: list[int] = []
        for chunk in caption.split():
            chunk_ids = self._chunk_cache.get(chunk)
            if chunk_ids is None:
                vocabulary = self.simulator.vocabulary
                chunk_ids = [vocabulary.id_of(word) for word in tokenize(chunk)]
                self._chunk_cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        tokens = np.zeros(self.config.caption_length, dtype=np.int64)
        ids = ids[: self.config.caption_length]
        tokens[: len(ids)] = ids
        if ids and (max(ids) >= self.vocabulary_size or min(ids) < 0):
            raise DataError(f"caption {caption!r} encodes to token ids outside the simulator's vocabulary")
        self._token_cache[caption] = tokens
        return tokens

    def _list_candidates(self, rows: np.ndarray) -> None:
        """Fill the ``top_k`` unseen candidates of ``rows`` around the candidate policy's query."""
        if self.candidate_policy is None:
            queries = self.tables.features[self.shown[rows, self.num_shown[rows] - 1]]
        else:
            observation = self.observation_rows(rows)
            del observation["candidates"]
            queries = np.asarray(self.candidate_policy(observation), dtype=np.float32)
            if queries.shape != (len(rows), self.tables.dim) or not np.isfinite(queries).all():
                raise ConfigError(
                    f"candidate_policy must return finite queries of shape {(len(rows), self.tables.dim)}, "
                    f"got shape {queries.shape}"
                )
        shown = self._padded_shown(rows)
        fast, bound, queries64 = _score(self.tables, queries, self.config.blas_threads)
        positions = nearest_unshown(self.tables, fast, bound, queries64, shown, self.config.top_k)
        self.candidate_positions[rows] = positions
        self.candidates[rows] = self.tables.features[positions]

    def _padded_shown(self, rows: np.ndarray) -> np.ndarray:
        """Return ``(rows, max_turns + 1)`` shown positions, unused slots filled with the row's first image."""
        used = np.arange(self.shown.shape[1])[None, :] < self.num_shown[rows][:, None]
        return np.where(used, self.shown[rows], self.shown[rows, :1])

    def _record(self, row: int) -> None:
        self.history[row].append(
            {
                "turn": int(self.num_shown[row]) - 1,
                "shown_id": self.tables.item_ids[self.last_shown[row]],
                "caption": str(self.last_caption[row]),
                "target_rank": int(self.last_rank[row]),
                "is_success": bool(self.last_success[row]),
            }
        )

    def info(self, row: int, reveal_target: bool) -> dict:
        """Return the ``info`` dict of one row after its last reset or step."""
        shown = int(self.last_shown[row])
        info = {
            "caption": str(self.last_caption[row]),
            "shown_id": self.tables.item_ids[shown],
            "shown_index": int(self.tables.catalog_indices[shown]),
            "target_rank": int(self.last_rank[row]),
            "is_success": bool(self.last_success[row]),
        }
        if reveal_target:
            info["target_id"] = self.tables.item_ids[int(self.targets[row])]
        return info

    def batched_info(self, reveal_target: bool, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Return the infos in gymnasium's vector layout: each ``key`` with a ``_key`` mask of ``rows`` (all when None)."""
        tables = self.tables
        item_ids = np.asarray(tables.item_ids, dtype=object)
        info: dict[str, np.ndarray] = {
            "caption": self.last_caption.copy(),
            "shown_id": item_ids[self.last_shown],
            "shown_index": tables.catalog_indices[self.last_shown].astype(np.int64),
            "target_rank": self.last_rank.copy(),
            "is_success": self.last_success.copy(),
        }
        if reveal_target:
            info["target_id"] = item_ids[self.targets]
        present = np.ones(self.batch_size, dtype=bool) if rows is None else np.isin(np.arange(self.batch_size), rows)
        for key in list(info):
            info[f"_{key}"] = present.copy()
        return info

    def candidate_ids(self, row: int) -> list[str]:
        """Return the ids of row ``row``'s current ``"topk"`` candidates, in action order."""
        return [self.tables.item_ids[p] for p in self.candidate_positions[row]]


def _draw_other(rng: np.random.Generator, num_items: int, excluded: int) -> int:
    """Draw a position uniformly from ``range(num_items)`` without ``excluded``, with one draw."""
    value = int(rng.integers(num_items - 1))
    return value + 1 if value >= excluded else value
