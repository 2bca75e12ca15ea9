"""The ``replay`` user simulator: human captions where the data set has the pair.

Fashion IQ gives each (reference, target) pair two captions written by
different annotators. For a pair found in ``catalog.caption_pairs`` the
simulator returns a human caption. Any other pair goes to a fallback
simulator, by default the ``template`` simulator.

Captions are normalized with :func:`fiq_env.text.normalize_caption`. A
caption that normalizes to the empty string is dropped, so the pair uses its
other annotator's caption, and a pair left with no caption goes to the
fallback like a pair that is not in the data.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from fiq_env.catalog import Catalog
from fiq_env.errors import ConfigError, UnknownNameError
from fiq_env.text import Vocabulary, normalize_caption
from simulators import SIMULATORS, make, register
from simulators.base import UserSimulator

logger = logging.getLogger(__name__)

MODES = ("sample", "join")


@register("replay")
class ReplaySimulator(UserSimulator):
    """Replays human captions of known pairs and falls back to another simulator for the rest.

    Args:
        catalog: the catalog whose ``caption_pairs`` hold the human captions.
        mode: ``"sample"`` returns one of the pair's captions, drawn from
            ``rng`` on every call. ``"join"`` returns all of them joined with
            " and " in file order ("is red and has long sleeves").
        fallback: a simulator name (created with ``catalog=catalog``), a
            simulator bound to the same catalog, or None to raise
            :class:`~fiq_env.errors.ConfigError` on a pair with no caption.
        fallback_kwargs: keyword arguments for a fallback given by name.
        min_count: a word of the train-split captions enters the vocabulary
            when it occurs at least this many times.

    Pairs whose reference or target id is not in the catalog (for example an
    item excluded for a broken image) are skipped and counted in the log.
    When the same pair occurs more than once, its captions are pooled.
    """

    name = "replay"

    def __init__(
        self,
        catalog: Catalog,
        mode: str = "sample",
        fallback: str | UserSimulator | None = "template",
        fallback_kwargs: dict | None = None,
        min_count: int = 1,
    ) -> None:
        super().__init__(catalog)
        if mode not in MODES:
            raise ConfigError(f"unknown replay mode {mode!r}; expected one of {MODES}")
        if min_count < 1:
            raise ConfigError(f"min_count must be at least 1, got {min_count}")
        self.mode = mode
        self.min_count = min_count
        self.fallback = self._resolve_fallback(fallback, fallback_kwargs or {})

        self._captions, train_captions = self._index_pairs()
        extra = self.fallback.vocabulary.words if self.fallback is not None else ()
        self._vocabulary = Vocabulary.build(train_captions, min_count=min_count, extra_words=extra)

    def _resolve_fallback(self, fallback: str | UserSimulator | None, kwargs: dict) -> UserSimulator | None:
        if fallback is None:
            return None
        if isinstance(fallback, str):
            if fallback == self.name:
                raise ConfigError("the replay simulator cannot be its own fallback; use 'template' or another simulator")
            return make(fallback, catalog=self.catalog, **kwargs)
        if not isinstance(fallback, UserSimulator):
            raise ConfigError(
                f"fallback must be a simulator name ({', '.join(SIMULATORS.names())}), a UserSimulator or None, "
                f"got {type(fallback).__name__}"
            )
        same_items = fallback.catalog is self.catalog or list(fallback.catalog.item_ids) == list(self.catalog.item_ids)
        if not same_items:
            raise ConfigError(
                f"the fallback simulator is bound to {fallback.catalog!r}, not to {self.catalog!r}; "
                "create it with the same catalog"
            )
        return fallback

    def _index_pairs(self) -> tuple[dict[tuple[int, int], tuple[str, ...]], list[str]]:
        """Map (reference, target) item indices to their normalized non-empty captions."""
        pooled: dict[tuple[int, int], list[str]] = defaultdict(list)
        train_captions: list[str] = []
        unknown_ids = 0
        empty = 0
        for pair in self.catalog.caption_pairs:
            if pair.split == "train":
                train_captions.extend(pair.captions)
            if pair.target is None:
                continue  # Test pairs hide their target.
            try:
                key = (self.catalog.index_of(pair.reference), self.catalog.index_of(pair.target))
            except UnknownNameError:
                unknown_ids += 1
                continue
            for caption in pair.captions:
                normalized = normalize_caption(caption)
                if normalized:
                    pooled[key].append(normalized)
                else:
                    empty += 1
        if unknown_ids:
            logger.warning("skipped %d caption pair(s) whose reference or target is not in %r", unknown_ids, self.catalog)
        if empty:
            logger.info("dropped %d empty caption(s) of %r; their pairs use the other captions", empty, self.catalog)
        return {key: tuple(captions) for key, captions in pooled.items() if captions}, train_captions

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def num_pairs(self) -> int:
        """Number of (reference, target) pairs with at least one human caption."""
        return len(self._captions)

    def has_human_caption(self, reference: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Return a ``(batch,)`` bool mask of the pairs that get a human caption."""
        reference = np.asarray(reference, dtype=np.int64).reshape(-1)
        target = np.asarray(target, dtype=np.int64).reshape(-1)
        return np.array([(int(r), int(t)) in self._captions for r, t in zip(reference, target)], dtype=bool)

    def _describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        # Draw the caption choices first and the fallback's numbers second, so a
        # generator state always gives the same captions.
        choices = rng.random(len(target))
        captions: list[str | None] = []
        missing: list[int] = []
        for i, key in enumerate(zip(reference.tolist(), target.tolist())):
            human = self._captions.get(key)
            if human is None:
                captions.append(None)
                missing.append(i)
            elif self.mode == "join":
                captions.append(" and ".join(human))
            else:
                captions.append(human[int(choices[i] * len(human))])

        if missing:
            if self.fallback is None:
                i = missing[0]
                raise ConfigError(
                    f"no human caption for reference {self.catalog.item_ids[reference[i]]!r} and target "
                    f"{self.catalog.item_ids[target[i]]!r} ({len(missing)} such pair(s) in the batch); "
                    "pass fallback='template' to caption them"
                )
            filled = self.fallback.describe(reference[missing], target[missing], rng)
            for i, caption in zip(missing, filled):
                captions[i] = caption
        return captions  # type: ignore[return-value]


__all__ = ["MODES", "ReplaySimulator"]
