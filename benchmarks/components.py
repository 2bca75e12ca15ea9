"""Building, training and caching what a benchmark run needs: catalogs, features, simulators, agents.

Each function logs whether it loaded a cached result or trained a new one.
The ``tiny`` preset exists for the test suite: it shrinks every model and
training budget so a whole run takes seconds; its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.config import BenchConfig
from fiq_env.catalog import Catalog, make_catalog
from fiq_env.errors import ConfigError
from fiq_env.features import CatalogFeatures
from fiq_env.io import cache_root
from fiq_env.text import Vocabulary

logger = logging.getLogger(__name__)

PRESETS = ("tiny", "cpu", "paper")


@dataclass(frozen=True)
class PresetPlan:
    """The component presets and budget overrides one benchmark preset stands for."""

    encoder_preset: str
    encoder_overrides: dict[str, Any]
    captioner_preset: str
    captioner_training_overrides: dict[str, Any]
    agent_preset: str
    triplet_preset: str


_PLANS = {
    "tiny": PresetPlan(
        encoder_preset="cpu",
        encoder_overrides={"epochs": 1, "image_size": 32, "batch_size": 32},
        captioner_preset="cpu",
        captioner_training_overrides={
            "steps": 30, "warmup_steps": 5, "eval_every": 30, "checkpoint_every": 30, "val_pairs": 16,
            "references_per_pair": 2,
        },
        agent_preset="tiny",
        triplet_preset="tiny",
    ),
    "cpu": PresetPlan("cpu", {}, "cpu", {}, "cpu", "cpu"),
    "paper": PresetPlan("paper", {}, "paper", {}, "paper", "paper"),
}


def preset_plan(preset: str) -> PresetPlan:
    """Return the component presets behind a benchmark preset name."""
    if preset not in _PLANS:
        raise ConfigError(f"unknown benchmark preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return _PLANS[preset]


def build_catalog(config: BenchConfig, category: str) -> Catalog:
    """Create the catalog of ``category`` from the configured source."""
    if config.catalog == "synthetic":
        return make_catalog("synthetic", category=category, num_items=config.num_items, seed=config.seed)
    if config.catalog == "fashion_iq":
        return make_catalog("fashion_iq", root=config.root, category=category, image_dir=config.image_dir)
    if config.catalog == "image_folder":
        return make_catalog("image_folder", root=config.root, category=category)
    return make_catalog(config.catalog, category=category)


def build_features(catalog: Catalog, config: BenchConfig) -> CatalogFeatures:
    """Encode the catalog with the preset's encoder, from the cache when it is there."""
    from fiq_env.encoder import EncoderConfig, encode_catalog

    plan = preset_plan(config.preset)
    encoder_config = EncoderConfig.preset(plan.encoder_preset, **plan.encoder_overrides)
    return encode_catalog(catalog, encoder_config, cache_dir=_subdir(config, "encoders"))


def build_simulator(name: str, catalog: Catalog, features: CatalogFeatures, config: BenchConfig, decoding: str) -> Any:
    """Create simulator ``name``; learned captioners load from the cache or train first."""
    import simulators

    if name in ("transformer", "rnn"):
        from simulators.training import TrainingConfig

        plan = preset_plan(config.preset)
        training = TrainingConfig.preset(plan.captioner_preset, **plan.captioner_training_overrides)
        return simulators.make(
            name, catalog=catalog, features=features, preset=plan.captioner_preset, decoding=decoding, training=training,
            cache_dir=_subdir(config, "captioners"),
        )
    return simulators.make(name, catalog=catalog)


class VocabularyAdapter:
    """Presents a simulator's captions in another vocabulary (the one an agent was trained with).

    Words the agent never saw become ``<unk>`` when the environment encodes
    them, which is what cross-simulator evaluation should measure.
    """

    def __init__(self, simulator: Any, vocabulary: Vocabulary) -> None:
        self.simulator = simulator
        self._vocabulary = vocabulary

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        return self.simulator.describe(reference, target, rng)


def agent_cache_dir(
    name: str,
    agent_config: dict[str, Any],
    triplet_config: dict[str, Any],
    catalog: Catalog,
    features: CatalogFeatures,
    simulator_name: str,
    config: BenchConfig,
) -> Path:
    """Return the cache folder of one trained agent; the key covers everything its weights depend on."""
    plan = preset_plan(config.preset)
    payload = {
        "agent": name,
        "agent_config": agent_config,
        "triplet_config": triplet_config,
        "catalog": catalog.fingerprint(),
        "encoder": features.encoder_key,
        "simulator": simulator_name,
        "captioner_preset": plan.captioner_preset,
        "captioner_training": plan.captioner_training_overrides,
        "seed": config.seed,
        "turns": config.turns,
        "init_seeded": True,  # agents built before init was seeded started from whatever RNG state came before
    }
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    safe_name = name.replace(":", "_").replace("/", "_").replace(".", "_")
    return _subdir(config, "agents") / f"{safe_name}-{catalog.category}-{key}"


def build_agent(
    name: str,
    catalog: Catalog,
    features: CatalogFeatures,
    train_simulator: Any,
    train_simulator_name: str,
    config: BenchConfig,
) -> Any:
    """Create agent ``name``; agents with trainable weights load from the cache or train with the triplet loss.

    A path to a saved stable-baselines3 model (``.zip``) returns a
    :class:`~benchmarks.sb3_agent.SB3Agent`.
    """
    import agents
    from agents.base import observation_sizes

    if name.endswith(".zip"):
        from benchmarks.sb3_agent import SB3Agent

        return SB3Agent.load(name)

    plan = preset_plan(config.preset)
    sizes = observation_sizes(features, train_simulator.vocabulary, max_turns=config.turns)
    # Every agent starts from the same seed, so its weights do not depend on which
    # agents, encoders or captioners ran before it in this process.
    torch.manual_seed(config.seed)
    agent = agents.make(name, preset=plan.agent_preset, **sizes)
    agent.vocabulary = train_simulator.vocabulary
    if not any(p.requires_grad for p in agent.parameters()):
        logger.info("agent %s has no trainable weights; nothing to train", name)
        return agent

    from agents.triplet import TripletConfig, TripletTrainer

    triplet = TripletConfig.from_preset(plan.triplet_preset, seed=config.seed, turns=config.turns)
    triplet = dataclasses.replace(triplet, eval_every=0)
    run_dir = agent_cache_dir(
        name, agent.config.to_dict(), triplet.to_dict(), catalog, features, train_simulator_name, config
    )
    saved = run_dir / "agent"
    if saved.is_dir() and any(saved.glob("*.json")):
        logger.info("loaded agent %s from cache %s", name, saved)
        return agents.load(saved)

    from agents.rollout import DialogData

    logger.info("training agent %s against the %s simulator (cache %s)", name, train_simulator_name, run_dir)
    train_data = DialogData(catalog, features, train_simulator, split="train", max_turns=config.turns)
    trainer = TripletTrainer(agent, train_data, eval_data=None, config=triplet, run_dir=run_dir)
    result = trainer.train(resume=True)
    logger.info("trained agent %s: %d steps in %.1f s", name, result.step, result.seconds)
    return agent


def _subdir(config: BenchConfig, name: str) -> Path:
    root = Path(config.cache_dir).expanduser() if config.cache_dir else cache_root()
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    return path
