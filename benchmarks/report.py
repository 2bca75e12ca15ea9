"""Turning per-episode target ranks into the results JSON, a Markdown table, a plot and TensorBoard scalars."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fiq_env.io import atomic_write, write_json
from fiq_env.metrics import mean_confidence_interval, ranking_percentile, recall_at_k

logger = logging.getLogger(__name__)

METRICS = ("percentile", "recall@10", "recall@50")


def summarize_ranks(ranks: np.ndarray, gallery_size: int) -> dict:
    """Return per-turn metrics (0-100, as in the Fashion IQ paper's tables) with 95% confidence intervals.

    Args:
        ranks: ``(episodes, turns)`` 0-based target ranks. An episode that
            found its target before the last turn carries rank 0 forward,
            because the shopper has what they wanted.
        gallery_size: number of items the ranks are over.
    """
    if ranks.ndim != 2:
        raise ValueError(f"ranks must have shape (episodes, turns), got {ranks.shape}")
    per_episode = {
        "percentile": ranking_percentile(ranks, gallery_size) * 100.0,
        "recall@10": recall_at_k(ranks, 10) * 100.0,
        "recall@50": recall_at_k(ranks, 50) * 100.0,
    }
    summary: dict = {}
    intervals_by_metric: dict = {}
    for metric, values in per_episode.items():
        means, intervals = [], []
        for turn in range(ranks.shape[1]):
            mean, low, high = mean_confidence_interval(values[:, turn])
            means.append(round(mean, 4))
            intervals.append([round(low, 4), round(high, 4)])
        summary[metric] = means
        intervals_by_metric[metric] = intervals
    summary["ci95"] = intervals_by_metric
    return summary


def write_results(path: Path, results: dict) -> None:
    """Write one category's results JSON atomically."""
    write_json(path, results)
    logger.info("wrote results to %s", path)


def _cell(summary: Mapping, metric: str, turn: int) -> str:
    mean = summary[metric][turn]
    low, high = summary["ci95"][metric][turn]
    return f"{mean:.2f} ± {(high - low) / 2:.2f}"


def markdown_table(results_by_category: Mapping[str, dict], turns: Sequence[int] = (1, 5)) -> str:
    """Render the shape of Table 3 of Fashion IQ (Wu et al., CVPR 2021): per category and agent, P, R@10 and R@50 at the given turns.

    Cells read ``mean ± half-width of the 95% confidence interval``.
    """
    header = "| category | agent | " + " | ".join(f"{m} (turn {t})" for t in turns for m in ("P", "R@10", "R@50")) + " |"
    lines = [header, "|" + " --- |" * (2 + 3 * len(turns))]
    for category, results in results_by_category.items():
        last_turn = results["turns"]
        for name, summary in results["agents"].items():
            cells = []
            for turn in turns:
                if turn > last_turn:
                    cells += ["n/a"] * 3
                    continue
                cells += [_cell(summary, metric, turn - 1) for metric in METRICS]
            lines.append(f"| {category} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, results_by_category: Mapping[str, dict]) -> None:
    """Write the table with a line naming the catalog, split, simulators and gallery."""
    first = next(iter(results_by_category.values()))
    sizes = ", ".join(f"{category}: {r.get('gallery_size', '?')} items" for category, r in results_by_category.items())
    intro = (
        f"Catalog `{first['catalog']}`, split `{first['split']}`, {first['episodes']} episodes per category, "
        f"{first['turns']} turns. Scored with the `{first['simulator']}` simulator; agents trained against "
        f"`{first.get('train_simulator', first['simulator'])}`. Ranks are over {first.get('gallery', 'the split')} "
        f"({sizes}). "
        "Cells: mean ± half-width of the 95% confidence interval, in percent.\n\n"
    )
    with atomic_write(path, "w") as handle:
        handle.write(intro + markdown_table(results_by_category))
    logger.info("wrote table to %s", path)


def plot_recall(path: Path, results_by_category: Mapping[str, dict]) -> None:
    """Plot R@10 and R@50 against turn for every agent, one column per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = list(results_by_category)
    figure, axes = plt.subplots(2, len(categories), figsize=(4.2 * len(categories), 6.5), squeeze=False)
    for column, category in enumerate(categories):
        results = results_by_category[category]
        turns = np.arange(1, results["turns"] + 1)
        for row, metric in enumerate(("recall@10", "recall@50")):
            axis = axes[row][column]
            for name, summary in results["agents"].items():
                means = np.asarray(summary[metric])
                bounds = np.asarray(summary["ci95"][metric])
                axis.plot(turns, means, marker="o", label=name)
                axis.fill_between(turns, bounds[:, 0], bounds[:, 1], alpha=0.15)
            axis.set_title(f"{category}: {metric.replace('recall', 'R')}")
            axis.set_xlabel("turn")
            axis.set_ylabel("%")
            axis.set_xticks(turns)
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110)
    plt.close(figure)
    logger.info("wrote plot to %s", path)


def write_tensorboard(log_dir: Path, results_by_category: Mapping[str, dict]) -> None:
    """Log every metric per turn as ``eval/<category>/<agent>/<metric>`` with the turn as step."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        for category, results in results_by_category.items():
            for name, summary in results["agents"].items():
                for metric in METRICS:
                    for turn, value in enumerate(summary[metric], start=1):
                        writer.add_scalar(f"eval/{category}/{name}/{metric}", value, global_step=turn)
    finally:
        writer.close()
    logger.info("wrote TensorBoard scalars to %s", log_dir)
