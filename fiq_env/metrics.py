"""Retrieval metrics: target rank, ranking percentile, recall at K, confidence intervals.

Ranks are 0-based here: rank 0 means the target is the nearest item. The
Fashion IQ paper defines the ranking percentile as P = mean(1 - r/N) with r
the target's rank among N candidates; with 0-based ranks a target ranked first
scores exactly 1.0 and the last one scores 1/N.
"""

from __future__ import annotations

import math

import numpy as np


def target_ranks(distances: np.ndarray, target_columns: np.ndarray) -> np.ndarray:
    """Return, for each row, how many items are strictly closer than the target.

    Args:
        distances: ``(batch, items)`` distances from each query to every item.
        target_columns: ``(batch,)`` column of each row's target.

    Ties are resolved in the target's favour, so a query equidistant to the
    target and another item still ranks the target first.
    """
    rows = np.arange(distances.shape[0])
    target_distance = distances[rows, target_columns]
    return (distances < target_distance[:, None]).sum(axis=1)


def ranking_percentile(ranks: np.ndarray, num_items: int) -> np.ndarray:
    """Return ``1 - rank / num_items`` for 0-based ranks, in ``(0, 1]``."""
    return 1.0 - np.asarray(ranks, dtype=np.float64) / float(num_items)


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Return 1.0 where the target is among the ``k`` nearest items, else 0.0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def mean_confidence_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Return the mean and a normal-approximation confidence interval ``(mean, low, high)``.

    Uses the standard error of the mean with the normal quantile (1.96 for
    95%); with fewer than two values the interval collapses to the mean.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean()) if values.size else math.nan
    if values.size < 2:
        return mean, mean, mean
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    half_width = z * float(values.std(ddof=1)) / math.sqrt(values.size)
    return mean, mean - half_width, mean + half_width
