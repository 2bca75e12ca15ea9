"""Supervised training of retrievers with the triplet loss, the frozen simulator in the loop.

Each step first runs a batch of dialogs with the current agent and no
gradients, so the simulator describes the images the agent itself retrieved.
It then forwards the recorded histories again with gradients and minimizes the
triplet loss summed over the dialog turns (Wu et al., CVPR 2021, after Guo et
al., NeurIPS 2018):

    sum_j max(0, ||q_j - f(I_t)||^2 - ||q_j - f(I_n)||^2 + m)

with ``q_j`` the query at turn ``j``, ``I_t`` the target, ``I_n`` a random
item of the training split and ``m`` the margin. Turns after the target was
shown do not count.

A run folder contains ``tensorboard/`` (one global step across resumed runs),
``checkpoints/step_XXXXXXXX/`` (safetensors plus JSON), ``checkpoints/latest.json``
and, at the end, ``agent/`` (the trained retriever, loadable with
``agents.load``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from agents.base import Retriever
from agents.checkpoint import load_training_checkpoint, save_training_checkpoint
from agents.rollout import DialogData, evaluate, run_dialogs, stack_observations
from fiq_env.devices import resolve_device
from fiq_env.errors import CheckpointError, ConfigError
from fiq_env.io import read_json, write_json

logger = logging.getLogger(__name__)


class EmbeddingCollapseWarning(UserWarning):
    """The retriever's queries stopped carrying information (constant queries or a loss stuck at the margin)."""


@dataclass
class TripletConfig:
    """Settings of :class:`TripletTrainer`; ``from_preset`` gives ``tiny``, ``cpu`` and ``paper``."""

    steps: int = field(default=300, metadata={"help": "total optimizer steps (a resumed run continues up to it)"})
    batch_size: int = field(default=64, metadata={"help": "dialogs per step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=20, metadata={"help": "steps of linear learning-rate warm-up, then cosine decay"})
    margin: float = field(default=0.2, metadata={"help": "triplet margin m, in squared feature distance"})
    grad_clip: float = field(default=1.0, metadata={"help": "maximum gradient norm (0 disables clipping)"})
    turns: int = field(default=5, metadata={"help": "dialog turns per training dialog"})
    log_every: int = field(default=10, metadata={"help": "steps between TensorBoard training scalars"})
    eval_every: int = field(default=100, metadata={"help": "steps between evaluations (0: only at the end)"})
    eval_episodes: int = field(default=300, metadata={"help": "fixed evaluation dialogs"})
    checkpoint_every: int = field(default=100, metadata={"help": "steps between checkpoints (0: only at the end)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "newest checkpoints kept on disk"})
    collapse_window: int = field(default=50, metadata={"help": "consecutive collapsed steps before a warning"})
    collapse_tolerance: float = field(
        default=0.01, metadata={"help": "loss per turn within this fraction of the margin counts as stuck"}
    )
    min_query_spread: float = field(
        default=1e-3, metadata={"help": "query variance over the batch, relative to the mean squared norm, below which queries count as constant"}
    )
    seed: int = field(default=0, metadata={"help": "seed of start pairs, negatives, captions and initialization"})
    device: str = field(default="cpu", metadata={"help": "torch device"})

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"steps": 20, "batch_size": 16, "warmup_steps": 2, "eval_every": 0, "eval_episodes": 32, "checkpoint_every": 0},
        "cpu": {},
        "paper": {"steps": 20000, "batch_size": 256, "learning_rate": 3e-4, "warmup_steps": 1000, "eval_every": 1000, "eval_episodes": 1000, "checkpoint_every": 1000},
    }

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "turns", "log_every", "eval_episodes", "collapse_window", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TripletConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.margin <= 0:
            raise ConfigError(f"TripletConfig.margin must be positive, got {self.margin}")
        if self.learning_rate <= 0:
            raise ConfigError(f"TripletConfig.learning_rate must be positive, got {self.learning_rate}")

    @classmethod
    def from_preset(cls, preset: str = "cpu", **overrides: Any) -> TripletConfig:
        if preset not in cls.PRESETS:
            raise ConfigError(f"unknown TripletConfig preset {preset!r}; choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[preset], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def triplet_loss(
    queries: Tensor, positives: Tensor, negatives: Tensor, margin: float, mask: Tensor | None = None
) -> Tensor:
    """Return the triplet loss summed over turns and averaged over dialogs.

    Args:
        queries: ``(batch, turns, dim)``.
        positives: ``(batch, dim)`` target features, or ``(batch, turns, dim)``.
        negatives: ``(batch, turns, dim)`` negative features, or ``(batch, dim)``.
        margin: the margin m (squared-distance units).
        mask: optional ``(batch, turns)``; turns where it is 0 add nothing.
    """
    if positives.dim() == 2:
        positives = positives.unsqueeze(1)
    if negatives.dim() == 2:
        negatives = negatives.unsqueeze(1)
    positive_distance = (queries - positives).pow(2).sum(dim=-1)  # (batch, turns)
    negative_distance = (queries - negatives).pow(2).sum(dim=-1)
    hinge = torch.relu(positive_distance - negative_distance + margin)
    if mask is not None:
        hinge = hinge * mask.to(hinge.dtype)
    return hinge.sum(dim=1).mean()


def query_spread(queries: Tensor) -> float:
    """Return the queries' total variance over the batch divided by their mean squared norm (0 when all equal)."""
    flat = queries.detach().reshape(-1, queries.shape[-1]).float()
    total_variance = flat.var(dim=0, unbiased=False).sum()
    return float(total_variance / flat.pow(2).sum(dim=1).mean().clamp_min(1e-12))


class CollapseMonitor:
    """Warns when training has collapsed for ``window`` consecutive steps.

    A step counts as collapsed when the loss per active turn is within
    ``tolerance * margin`` of the margin (query equidistant from target and
    negative) or the query spread (:func:`query_spread`) is below
    ``min_spread``. The warning is issued once per collapse episode: again
    only after a healthy step.
    """

    def __init__(self, margin: float, window: int, tolerance: float, min_spread: float) -> None:
        self.margin = margin
        self.window = window
        self.tolerance = tolerance
        self.min_spread = min_spread
        self.collapsed_steps = 0
        self.warned = False

    def update(self, loss_per_turn: float, spread: float, step: int) -> bool:
        """Record one step; return True when this step issues the warning."""
        stuck = abs(loss_per_turn - self.margin) <= self.tolerance * self.margin
        constant = spread < self.min_spread
        if not (stuck or constant):
            self.collapsed_steps = 0
            self.warned = False
            return False
        self.collapsed_steps += 1
        if self.collapsed_steps < self.window or self.warned:
            return False
        self.warned = True
        reason = "queries are nearly identical across dialogs" if constant else "the loss is stuck at the margin"
        message = (
            f"embedding collapse at step {step}: {reason} for {self.collapsed_steps} steps "
            f"(loss per turn {loss_per_turn:.4f}, margin {self.margin}, query spread {spread:.2e}); "
            "lower the learning rate, check that captions reach the agent, or use a smaller margin"
        )
        logger.warning(message)
        warnings.warn(message, EmbeddingCollapseWarning, stacklevel=2)
        return True


@dataclass
class TrainingResult:
    """Outcome of :meth:`TripletTrainer.train`.

    Attributes:
        step: the global step reached.
        losses: the triplet loss of each step run in this call.
        evaluation: the last evaluation's per-turn metrics (empty if none ran).
        seconds: wall-clock seconds of this call.
    """

    step: int
    losses: list[float]
    evaluation: dict[str, Any]
    seconds: float


class TripletTrainer:
    """Trains a retriever with the triplet loss over simulated dialogs; resumable.

    Args:
        agent: the retriever to train (in place).
        train_data: dialogs for training (usually the train split).
        eval_data: dialogs for evaluation (usually the val split); None skips evaluation.
        config: training settings.
        run_dir: folder for TensorBoard logs, checkpoints and the final agent;
            None trains without writing anything.
    """

    def __init__(
        self,
        agent: Retriever,
        train_data: DialogData,
        eval_data: DialogData | None = None,
        config: TripletConfig | None = None,
        run_dir: str | Path | None = None,
    ) -> None:
        self.config = config or TripletConfig()
        if self.config.turns > train_data.max_turns:
            raise ConfigError(f"TripletConfig.turns={self.config.turns} exceeds the data's max_turns={train_data.max_turns}")
        if not any(parameter.requires_grad for parameter in agent.parameters()):
            raise ConfigError(
                f"{type(agent).__name__} has no trainable parameters, so there is nothing to train; "
                "evaluate it directly with agents.rollout.evaluate"
            )
        self.agent = agent.to(resolve_device(self.config.device, "TripletConfig.device"))
        self.agent.vocabulary = train_data.vocabulary
        self.train_data = train_data
        self.eval_data = eval_data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.optimizer = torch.optim.AdamW(
            agent.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.monitor = CollapseMonitor(
            self.config.margin, self.config.collapse_window, self.config.collapse_tolerance, self.config.min_query_spread
        )
        self.step = 0
        self.rng = np.random.default_rng(self.config.seed)
        self._writer = None

        if eval_data is not None:
            eval_rng = np.random.default_rng([self.config.seed, 1])
            self.eval_targets, self.eval_initial = eval_data.sample_start_pairs(self.config.eval_episodes, eval_rng)

    # Checkpoints -----------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.run_dir / "checkpoints" if self.run_dir is not None else None

    def save_checkpoint(self) -> Path:
        """Write a resumable checkpoint of the current step and point ``latest.json`` at it."""
        if self.checkpoint_dir is None:
            raise ConfigError("this trainer has no run_dir; pass run_dir=... to save checkpoints")
        folder = self.checkpoint_dir / f"step_{self.step:08d}"
        training = {"config": self.config.to_dict(), "rng_state": self.rng.bit_generator.state}
        save_training_checkpoint(folder, self.agent, self.optimizer, self.step, training)
        write_json(self.checkpoint_dir / "latest.json", {"step": self.step, "folder": folder.name})
        self._prune_checkpoints()
        logger.info("saved checkpoint %s", folder)
        return folder

    def _prune_checkpoints(self) -> None:
        folders = sorted(p for p in self.checkpoint_dir.glob("step_*") if p.is_dir() and not p.name.endswith(".partial"))
        for old in folders[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def resume(self) -> bool:
        """Load the newest checkpoint of ``run_dir`` if there is one; return whether it did."""
        if self.checkpoint_dir is None or not (self.checkpoint_dir / "latest.json").is_file():
            return False
        pointer = read_json(self.checkpoint_dir / "latest.json")
        folder = self.checkpoint_dir / str(pointer.get("folder", ""))
        if not folder.is_dir():
            raise CheckpointError(f"{self.checkpoint_dir / 'latest.json'} points to {folder}, which does not exist")
        training = load_training_checkpoint(folder, self.agent, self.optimizer)
        self.step = int(training["step"])
        self.rng.bit_generator.state = training["rng_state"]
        logger.info("resumed from %s at step %d", folder, self.step)
        return True

    # Logging ---------------------------------------------------------------

    def _scalar(self, tag: str, value: float) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, value, self.step)

    def _open_writer(self) -> None:
        if self.run_dir is None:
            return
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events that an interrupted run logged after its last checkpoint.
        self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1 if self.step else None)

    # Training --------------------------------------------------------------

    def learning_rate_at(self, step: int) -> float:
        """Linear warm-up to the peak rate, then cosine decay to a tenth of it at ``config.steps``."""
        config = self.config
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    def train_step(self) -> tuple[float, float, float]:
        """Run one batch of dialogs and one optimizer step; return (loss, loss per active turn, query spread)."""
        config, data = self.config, self.train_data
        targets, initial = data.sample_start_pairs(config.batch_size, self.rng)
        rollout = run_dialogs(self.agent, data, targets, initial, self.rng, turns=config.turns)

        # Forward the recorded histories again, with gradients: (turns * batch, dim) -> (batch, turns, dim).
        self.agent.train()
        stacked = stack_observations(rollout.observations)
        queries = self.agent(stacked).view(config.turns, config.batch_size, -1).transpose(0, 1)

        item_features = torch.from_numpy(data.features.features).to(queries.device)
        # Random negatives from the split; a draw that hit the target moves to the next item.
        negative_positions = self.rng.integers(0, data.gallery.size, size=(config.batch_size, config.turns))
        hit_target = negative_positions == data.positions(rollout.targets)[:, None]
        negative_positions[hit_target] = (negative_positions[hit_target] + 1) % data.gallery.size
        negatives = data.gallery[negative_positions]
        mask = torch.from_numpy(rollout.active).to(queries.device)
        loss = triplet_loss(
            queries, item_features[rollout.targets], item_features[negatives], config.margin, mask
        )

        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.agent.parameters(), config.grad_clip)
        self.optimizer.step()
        self.step += 1

        active_turns = float(rollout.active.sum()) / config.batch_size
        loss_value = float(loss.detach())
        spread = query_spread(queries)
        if self.step % config.log_every == 0:
            self._scalar("train/triplet_loss", loss_value)
            self._scalar("train/query_spread", spread)
            self._scalar("train/learning_rate", self.optimizer.param_groups[0]["lr"])
            self._scalar("train/recall@10/last_turn", float((rollout.ranks[:, -1] < 10).mean()))
        return loss_value, loss_value / max(active_turns, 1e-9), spread

    def evaluate(self) -> dict[str, Any]:
        """Evaluate on the fixed start pairs of ``eval_data`` and log ``eval/<metric>/turn_<j>``."""
        if self.eval_data is None:
            return {}
        metrics = evaluate(self.agent, self.eval_data, self.eval_targets, self.eval_initial, seed=self.config.seed)
        for name in ("percentile", "recall@10", "recall@50"):
            for turn, value in enumerate(metrics[name], start=1):
                self._scalar(f"eval/{name}/turn_{turn}", value)
        logger.info(
            "step %d: eval recall@10 per turn %s", self.step, ", ".join(f"{v:.1f}" for v in metrics["recall@10"])
        )
        return metrics

    def train(self, resume: bool = True) -> TrainingResult:
        """Train up to ``config.steps`` global steps, resuming from ``run_dir`` when ``resume``."""
        config = self.config
        started = time.perf_counter()
        if not (resume and self.resume()):
            torch.manual_seed(config.seed)
        else:
            # Dropout draws from torch's global generator; reseed it per resumed step for repeatability.
            torch.manual_seed(config.seed + self.step)
        self._open_writer()
        if self.run_dir is not None:
            write_json(self.run_dir / "triplet_config.json", {"trainer": config.to_dict(), "agent": self.agent.config.to_dict()})

        losses: list[float] = []
        evaluation: dict[str, Any] = {}
        progress = tqdm(total=config.steps, initial=self.step, desc="triplet", leave=False, disable=None)
        try:
            while self.step < config.steps:
                loss, loss_per_turn, spread = self.train_step()
                losses.append(loss)
                self.monitor.update(loss_per_turn, spread, self.step)
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.3f}")
                if config.eval_every and self.step % config.eval_every == 0 and self.step < config.steps:
                    evaluation = self.evaluate()
                if config.checkpoint_every and self.step % config.checkpoint_every == 0 and self.run_dir is not None:
                    self.save_checkpoint()
            if self.eval_data is not None:
                evaluation = self.evaluate()
            if self.run_dir is not None:
                self.save_checkpoint()
                self.agent.save(self.run_dir / "agent")
        finally:
            progress.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        seconds = time.perf_counter() - started
        return TrainingResult(self.step, losses, evaluation, seconds)
