"""Retriever quality and training time on the synthetic catalog; prints Markdown tables.

Trains ``transformer``, ``transformer_attr`` and ``rnn`` with the triplet loss
against the simulator on the train split, once per training seed. Evaluates
every agent on the same fixed (target, first image) pairs of the val split
over 5-turn dialogs, and compares the learned agents over the seeds. Then
fine-tunes the transformer with PPO on the ``topk`` environment and compares
the PPO policy with two fixed choices: always the supervised retriever's first
candidate, and a uniformly random candidate.

Run with ``python -m benchmarks.bench_agents`` (options: ``--help``). Trained
agents and PPO policies are kept under ``--output-dir``; a second run reuses
them and reports the training time measured the first time.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

TRAINED_AGENTS = ("transformer", "transformer_attr", "rnn")
BASELINES = ("last_image", "random")


@dataclass
class AgentBenchConfig:
    """Options of this benchmark."""

    category: str = field(default="dress", metadata={"help": "synthetic garment category"})
    num_items: int = field(default=1500, metadata={"help": "items of the synthetic catalog"})
    simulator: str = field(default="template", metadata={"help": "user simulator for training and evaluation"})
    episodes: int = field(default=1000, metadata={"help": "evaluation dialogs (fixed val start pairs)"})
    steps: int = field(default=300, metadata={"help": "triplet training steps per agent (the cpu preset's value)"})
    ppo_timesteps: int = field(default=4096, metadata={"help": "PPO environment steps"})
    seed: int = field(default=0, metadata={"help": "seed of catalog, start pairs, captions and the first training run"})
    training_seeds: int = field(
        default=3, metadata={"help": "training runs per learned agent, with seeds seed, seed + 1, ..."}
    )
    output_dir: str = field(default="runs/bench_agents", metadata={"help": "folder for trained agents and PPO runs"})


def _mean_recall(ranks: np.ndarray, k: int = 10) -> tuple[float, float, float]:
    from fiq_env.metrics import mean_confidence_interval, recall_at_k

    per_episode = recall_at_k(ranks, k).mean(axis=1) * 100.0  # mean over the turns of each dialog
    return mean_confidence_interval(per_episode)


def _train(
    name: str, config: AgentBenchConfig, train_data: Any, sizes: dict[str, int], seed: int
) -> tuple[Any, float]:
    """Train ``name`` with ``seed`` (or reuse a finished run) and return the agent and its training seconds."""
    import agents
    from agents.triplet import TripletConfig, TripletTrainer
    from fiq_env.io import read_json, write_json

    run_dir = _run_dir(config, name, seed)
    timing_file = run_dir / "timing.json"
    # What the saved agent was trained on; any difference means training again.
    setting = {
        "category": config.category, "num_items": config.num_items, "catalog_seed": config.seed,
        "simulator": config.simulator, "steps": config.steps, "seed": seed,
        "agent_config": agents.make(name, preset="cpu", **sizes).config.to_dict(),
    }  # fmt: skip
    if timing_file.is_file() and (run_dir / "agent").is_dir():
        timing = read_json(timing_file)
        if timing.get("setting") == setting:
            return agents.load(run_dir / "agent"), float(timing["seconds"])
        logger.info("the saved %s in %s was trained with other settings; training it again", name, run_dir)

    torch.manual_seed(seed)
    agent = agents.make(name, preset="cpu", **sizes)
    trainer_config = TripletConfig.from_preset("cpu", steps=config.steps, eval_every=0, seed=seed)
    result = TripletTrainer(agent, train_data, None, trainer_config, run_dir=run_dir).train(resume=False)
    write_json(timing_file, {"seconds": result.seconds, "steps": result.step, "setting": setting})
    return agent, result.seconds


def _run_dir(config: AgentBenchConfig, name: str, seed: int) -> Path:
    return Path(config.output_dir) / name / f"seed_{seed}"


def _seeds(config: AgentBenchConfig) -> list[int]:
    return [config.seed + offset for offset in range(config.training_seeds)]


def train_agents(config: AgentBenchConfig, names: tuple[str, ...] = TRAINED_AGENTS) -> dict[str, list[float]]:
    """Train ``names`` once per training seed (or reuse finished runs) and return their training seconds."""
    catalog, features, simulator = _components(config)
    from agents.base import observation_sizes
    from agents.rollout import DialogData

    train_data = DialogData(catalog, features, simulator, "train")
    sizes = observation_sizes(features, simulator.vocabulary)
    return {name: [_train(name, config, train_data, sizes, seed)[1] for seed in _seeds(config)] for name in names}


def _components(config: AgentBenchConfig) -> tuple[Any, Any, Any]:
    from fiq_env.catalog import make_catalog
    from fiq_env.encoder import encode_catalog
    from fiq_env.env_config import resolve_simulator

    catalog = make_catalog("synthetic", category=config.category, num_items=config.num_items, seed=config.seed)
    features = encode_catalog(catalog)
    return catalog, features, resolve_simulator(config.simulator, catalog, features, None)


def run(config: AgentBenchConfig) -> str:
    """Run the benchmark and return the Markdown report."""
    import agents
    from agents.base import observation_sizes
    from agents.rl import PPOConfig, evaluate_topk, make_topk_env, retriever_digest, train_ppo
    from agents.rollout import DialogData, evaluate
    from fiq_env.metrics import mean_confidence_interval, ranking_percentile, recall_at_k

    catalog, features, simulator = _components(config)
    train_data = DialogData(catalog, features, simulator, "train")
    val_data = DialogData(catalog, features, simulator, "val")
    sizes = observation_sizes(features, simulator.vocabulary)
    targets, initial = val_data.sample_start_pairs(config.episodes, np.random.default_rng([config.seed, 2]))

    # Query mode: every agent on the same start pairs and the same caption seed.
    rows, per_seed = [], {}
    for name in (*TRAINED_AGENTS, *BASELINES):
        for seed in _seeds(config) if name in TRAINED_AGENTS else [None]:
            if seed is not None:
                agent, seconds = _train(name, config, train_data, sizes, seed)
                label, train_time = f"{name} (seed {seed})", f"{seconds:.0f}"
            else:
                agent = agents.make(name, seed=config.seed, **sizes) if name == "random" else agents.make(name, **sizes)
                label, train_time = name, "-"
            metrics = evaluate(agent, val_data, targets, initial, seed=config.seed)
            mean, low, high = _mean_recall(metrics["ranks"])
            per_seed.setdefault(name, []).append(mean)
            recalls = " | ".join(f"{value:.1f}" for value in metrics["recall@10"])
            rows.append(
                f"| {label} | {train_time} | {recalls} | {mean:.1f} [{low:.1f}, {high:.1f}] | "
                f"{metrics['percentile'][0]:.1f} | {metrics['percentile'][-1]:.1f} |"
            )
            logger.info("%s: recall@10 per turn %s", label, recalls)

    lines = [
        f"Val split of a {config.num_items}-item synthetic {config.category} catalog ({val_data.gallery.size} val items), "
        f"{config.simulator} simulator, {config.episodes} dialogs of 5 turns from the same start pairs.",
        "",
        "| agent | train s | R@10 t1 | t2 | t3 | t4 | t5 | mean R@10 [95% CI] | P t1 | P t5 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Mean R@10 over the {config.training_seeds} training seeds (the spread is the sample standard deviation "
        "over seeds):",
        "",
        "| agent | mean R@10 per seed | mean over seeds | spread |",
        "| --- | --- | --- | --- |",
    ]
    for name, means in per_seed.items():
        spread = f"{np.std(means, ddof=1):.1f}" if len(means) > 1 else "-"
        lines.append(f"| {name} | {', '.join(f'{m:.1f}' for m in means)} | {np.mean(means):.1f} | {spread} |")
    lines.append("")

    # PPO on the topk env over the trained transformer.
    retriever_path = _run_dir(config, "transformer", config.seed) / "agent"
    ppo_config = PPOConfig.from_preset("cpu", total_timesteps=config.ppo_timesteps, seed=config.seed)
    started = time.perf_counter()
    # One PPO folder per retriever, so a retrained transformer starts a new PPO run.
    ppo_dir = Path(config.output_dir) / "ppo" / retriever_digest(retriever_path)[:12]
    model, ppo_seconds = train_ppo(
        retriever_path, ppo_dir, ppo_config, catalog=catalog, features=features, simulator=simulator
    )
    env_kwargs = {"catalog": catalog, "features": features, "simulator": simulator}
    venv = make_topk_env(retriever_path, 16, ppo_config.top_k, split="val", **env_kwargs)
    choice_rng = np.random.default_rng(config.seed)
    policies = {
        "PPO": lambda obs: model.predict(obs, deterministic=True)[0],
        "supervised top-1 (candidate 0)": lambda obs: np.zeros(len(obs["turn"]), dtype=np.int64),
        "random candidate": lambda obs: choice_rng.integers(0, ppo_config.top_k, size=len(obs["turn"])),
    }
    lines += [
        f"PPO on the topk env (K={ppo_config.top_k} candidates around the trained transformer's query, "
        f"{model.num_timesteps} training steps, {ppo_seconds:.0f} s; total with evaluation below "
        "in the timing line), same val start pairs:",
        "",
        "| policy | R@10 t1 | t2 | t3 | t4 | t5 | mean R@10 [95% CI] | mean P |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, choose in policies.items():
        ranks = evaluate_topk(choose, venv, targets.tolist(), initial.tolist())
        recalls = " | ".join(f"{100 * value:.1f}" for value in recall_at_k(ranks, 10).mean(axis=0))
        mean, low, high = _mean_recall(ranks)
        percentile = mean_confidence_interval(100 * ranking_percentile(ranks, val_data.gallery.size).mean(axis=1))[0]
        lines.append(f"| {label} | {recalls} | {mean:.1f} [{low:.1f}, {high:.1f}] | {percentile:.1f} |")
    lines.append("")
    lines.append(f"PPO training and topk evaluation took {time.perf_counter() - started:.0f} s.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_agents", description=__doc__.splitlines()[0])
    defaults = AgentBenchConfig()
    for spec in dataclasses.fields(AgentBenchConfig):
        default = getattr(defaults, spec.name)
        parser.add_argument(
            "--" + spec.name.replace("_", "-"), type=type(default), default=default, help=f"{spec.metadata['help']} (default: {default})"
        )
    parser.add_argument(
        "--train-only",
        choices=TRAINED_AGENTS,
        default=None,
        help="only train this agent and exit (to train the agents in parallel processes before a full run)",
    )
    args = vars(parser.parse_args(argv))
    train_only = args.pop("train_only")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    config = AgentBenchConfig(**args)
    for name in ("num_items", "episodes", "steps", "ppo_timesteps", "training_seeds"):
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    if train_only is not None:
        seconds = train_agents(config, (train_only,))[train_only]
        print(f"| {train_only} | {config.steps} steps | {', '.join(f'{value:.0f} s' for value in seconds)} |")
        return 0
    print(run(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
