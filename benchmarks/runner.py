"""The fiq-bench pipeline: catalogs, features, simulators and agents in, tables and plots out."""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

from benchmarks import components
from benchmarks.config import BenchConfig
from benchmarks.evaluation import EpisodeRanks, run_episodes
from benchmarks.report import plot_recall, summarize_ranks, write_markdown, write_results, write_tensorboard
from benchmarks.start_pairs import load_or_draw
from fiq_env.io import write_json

logger = logging.getLogger(__name__)


def run_benchmark(config: BenchConfig) -> dict[str, dict]:
    """Run every configured agent on every category and write the outputs; return results per category."""
    started = time.perf_counter()
    output = config.output_path
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "config.json", config.to_dict())

    results_by_category: dict[str, dict] = {}
    for category in config.categories:
        results_by_category[category] = run_category(config, category, output)

    total = time.perf_counter() - started
    for results in results_by_category.values():
        results["timing"]["total_run_seconds"] = round(total, 2)
        results["timing"]["peak_memory_mb"] = round(peak_memory_mb(), 1)
        write_results(output / f"results_{results['category']}.json", results)
    write_markdown(output / "results.md", results_by_category)
    plot_recall(output / "recall.png", results_by_category)
    write_tensorboard(output / "tensorboard", results_by_category)
    logger.info("benchmark finished in %.1f s; outputs in %s", total, output)
    return results_by_category


def run_category(config: BenchConfig, category: str, output: Path) -> dict:
    """Benchmark every agent on one category and return its results in the results-JSON layout."""
    started = time.perf_counter()
    catalog = components.build_catalog(config, category)
    logger.info("catalog %s", catalog)
    if catalog.report.num_excluded or catalog.report.warnings:
        logger.warning("catalog problems:\n%s", catalog.report.summary())
    if config.gallery == "catalog":
        from benchmarks.gallery import WholeCatalogGallery

        catalog = WholeCatalogGallery(catalog, config.split)
    features = components.build_features(catalog, config)

    scoring = components.build_simulator(config.simulator, catalog, features, config, decoding=config.decoding)
    if config.training_simulator == config.simulator and config.decoding == "greedy":
        training = scoring
    else:
        training = components.build_simulator(config.training_simulator, catalog, features, config, decoding="greedy")

    pairs_path = Path(config.start_pairs) if config.start_pairs else output / f"start_pairs_{category}.json"
    if config.start_pairs and len(config.categories) > 1:
        pairs_path = pairs_path.with_name(f"{pairs_path.stem}_{category}{pairs_path.suffix}")
    pairs = load_or_draw(pairs_path, catalog, config.split, config.episodes, config.seed, strict=bool(config.start_pairs))
    gallery_size = len(catalog.indices(config.split))

    agent_results, env_steps, episode_seconds = {}, 0, 0.0
    for name in config.agents:
        agent = components.build_agent(name, catalog, features, training, config.training_simulator, config)
        simulator = scoring
        vocabulary = getattr(agent, "vocabulary", None)
        if vocabulary is not None and vocabulary.words != scoring.vocabulary.words:
            simulator = components.VocabularyAdapter(scoring, vocabulary)
        if hasattr(agent, "rank_episodes"):
            sb3_started = time.perf_counter()
            ranks = agent.rank_episodes(catalog, features, simulator, pairs, config.split, config.turns, config.seed)
            episodes = EpisodeRanks(ranks, int(ranks.size), time.perf_counter() - sb3_started)
        else:
            episodes = run_episodes(
                agent, catalog, features, simulator, pairs, config.split, config.turns, config.seed,
                description=f"{category}/{name}",
            )
        summary = summarize_ranks(episodes.ranks, gallery_size)
        agent_results[name] = summary
        env_steps += episodes.env_steps
        episode_seconds += episodes.seconds
        logger.info(
            "%s / %s: R@10 per turn %s",
            category,
            name,
            ", ".join(f"{value:.1f}" for value in summary["recall@10"]),
        )

    return {
        "catalog": config.catalog,
        "category": category,
        "split": config.split,
        "simulator": _simulator_label(config.simulator, config.decoding),
        "train_simulator": _simulator_label(config.training_simulator, "greedy"),
        "gallery": "whole catalog" if config.gallery == "catalog" else f"whole {config.split} split",
        "gallery_size": gallery_size,
        "turns": config.turns,
        "episodes": len(pairs),
        "seed": config.seed,
        "preset": config.preset,
        "catalog_fingerprint": catalog.fingerprint(),
        "encoder": features.encoder_key,
        "agents": agent_results,
        "timing": {
            "seconds": round(time.perf_counter() - started, 2),
            "env_steps_per_second": round(env_steps / episode_seconds, 1) if episode_seconds else 0.0,
        },
    }


def _simulator_label(name: str, decoding: str) -> str:
    return f"{name} ({decoding})" if name in ("transformer", "rnn") else name


def peak_memory_mb() -> float:
    """Return this process's peak resident memory in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
