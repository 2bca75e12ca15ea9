"""Realism measures: a simulator's words and caption lengths against real shoppers' captions.

Two measurements against the human captions of Fashion IQ:

- token coverage: the share of word tokens in the real captions whose word
  is in the simulator's vocabulary (every occurrence counts, so frequent
  words such as "is" weigh more than rare ones);
- caption lengths: mean, median, maximum and histogram of words per caption.

The real captions average 5.3 words and the longest has 17 (measured by the
Fashion IQ authors on the whole data set).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fiq_env.errors import DataError
from fiq_env.text import Vocabulary, tokenize


@dataclass(frozen=True)
class Coverage:
    """Token coverage of real captions by a vocabulary.

    Attributes:
        covered: real tokens whose word is in the vocabulary.
        total: real tokens.
        missing: real words outside the vocabulary with their counts, most frequent first.
    """

    covered: int
    total: int
    missing: tuple[tuple[str, int], ...]

    @property
    def share(self) -> float:
        """Covered tokens as a fraction of all tokens (0 when there are none)."""
        return self.covered / self.total if self.total else 0.0


@dataclass(frozen=True)
class LengthStats:
    """Words per caption.

    Attributes:
        count: number of captions.
        mean: mean words per caption.
        median: median words per caption.
        max: maximum words per caption.
        histogram: words per caption to number of captions, in ascending length.
    """

    count: int
    mean: float
    median: float
    max: int
    histogram: dict[int, int]


def load_real_captions(root: str | Path, categories: Sequence[str] = ("dress", "shirt", "toptee"), split: str = "val") -> list[str]:
    """Read both captions of every pair in ``captions/cap.<category>.<split>.json``, normalized.

    Captions that normalize to the empty string are left out.

    Raises:
        DataError: a caption file is missing or is not a list of pairs.
    """
    captions = []
    for category in categories:
        path = Path(root) / "captions" / f"cap.{category}.{split}.json"
        if not path.is_file():
            raise DataError(f"caption file {path} not found; pass the Fashion IQ root that contains captions/")
        with open(path, encoding="utf-8") as handle:
            pairs = json.load(handle)
        if not isinstance(pairs, list):
            raise DataError(f"{path} must contain a list of caption pairs, got {type(pairs).__name__}")
        for pair in pairs:
            for caption in pair.get("captions", ()):
                words = tokenize(caption)
                if words:
                    captions.append(" ".join(words))
    return captions


def token_coverage(captions: Iterable[str], vocabulary: Vocabulary | Iterable[str]) -> Coverage:
    """Measure the share of the captions' word tokens that ``vocabulary`` contains."""
    known = set(vocabulary.words) if isinstance(vocabulary, Vocabulary) else set(vocabulary)
    counts = Counter(word for caption in captions for word in tokenize(caption))
    covered = sum(n for word, n in counts.items() if word in known)
    missing = sorted(((w, n) for w, n in counts.items() if w not in known), key=lambda item: (-item[1], item[0]))
    return Coverage(covered=covered, total=sum(counts.values()), missing=tuple(missing))


def length_stats(captions: Iterable[str]) -> LengthStats:
    """Compute the word-count statistics of ``captions``."""
    lengths = np.array([len(tokenize(caption)) for caption in captions], dtype=np.int64)
    if lengths.size == 0:
        return LengthStats(count=0, mean=0.0, median=0.0, max=0, histogram={})
    values, counts = np.unique(lengths, return_counts=True)
    return LengthStats(
        count=int(lengths.size),
        mean=float(lengths.mean()),
        median=float(np.median(lengths)),
        max=int(lengths.max()),
        histogram={int(v): int(n) for v, n in zip(values, counts)},
    )


__all__ = ["Coverage", "LengthStats", "length_stats", "load_real_captions", "token_coverage"]
