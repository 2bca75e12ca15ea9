"""Reinforcement learning over a supervised retriever with stable-baselines3 PPO.

The environment runs in ``topk`` mode: a supervised retriever (trained with
:mod:`agents.triplet`) proposes the K unseen items nearest to its query as
candidates, and PPO learns which candidate to show. The policy's features
extractor, :class:`DialogFeaturesExtractor`, is the same dialog transformer,
initialized from the supervised weights. It outputs the pooled history
encoding and the similarity of its query to each candidate. The action head
starts biased towards candidate 0 (the supervised retriever's own choice), so
PPO starts close to the retriever it fine-tunes.

Training uses the native vector environment through :class:`GymnasiumVecEnv`,
an adapter to stable-baselines3's ``VecEnv`` interface.

Saved runs hold the policy as safetensors plus JSON (``policy/``), which
:func:`load_ppo` and resuming read without pickle. ``PPO.save`` ``.zip`` files
are pickle-based: load them only from sources you trust. This module writes
one only when ``save_zip=True``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv

from agents.checkpoint import WEIGHTS_FILE, load_tensors, optimizer_from_files, optimizer_to_files, save_tensors
from agents.transformer import TransformerRetriever
from fiq_env.errors import CheckpointError, ConfigError
from fiq_env.io import file_sha256, read_json, write_json

logger = logging.getLogger(__name__)

POLICY_FOLDER = "policy"


class GymnasiumVecEnv(VecEnv):
    """Presents a gymnasium vector env with next-step autoreset as a stable-baselines3 ``VecEnv``.

    stable-baselines3 expects a finished sub-environment to be reset within
    the same ``step``, with its last observation in
    ``info["terminal_observation"]``. This adapter resets finished rows at
    once through the vector env's ``reset_mask`` option and moves the last
    observation into the info.
    """

    def __init__(self, venv: gym.vector.VectorEnv) -> None:
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> dict[str, np.ndarray]:
        seeds = self._seeds if any(seed is not None for seed in self._seeds) else None
        observations, _ = self.venv.reset(seed=seeds)
        self._reset_seeds()
        self._reset_options()
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict[str, Any]]]:
        observations, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for row in range(self.num_envs):
            infos[row]["is_success"] = bool(info["is_success"][row])
            infos[row]["target_rank"] = int(info["target_rank"][row])
        if dones.any():
            for row in np.flatnonzero(dones):
                infos[row]["terminal_observation"] = {key: value[row].copy() for key, value in observations.items()}
                infos[row]["TimeLimit.truncated"] = bool(truncated[row] and not terminated[row])
            observations, _ = self.venv.reset(options={"reset_mask": dones})
        return observations, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.venv, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))


def _decode_observation(observations: dict[str, torch.Tensor], max_turns: int) -> dict[str, torch.Tensor]:
    """Undo stable-baselines3's preprocessing: Box values arrive as floats, ``Discrete`` turns one-hot."""
    turn = observations["turn"]
    if turn.dim() >= 2 and turn.shape[-1] == max_turns + 1:
        turn = turn.argmax(dim=-1)  # one-hot over 0..max_turns, (batch, 1, T + 1) or (batch, T + 1)
    decoded = {
        "tokens": observations["tokens"].round().long(),
        "features": observations["features"].float(),
        "attributes": observations["attributes"].round().long(),
        "turn": turn.reshape(-1).round().long(),
    }
    return decoded


class DialogFeaturesExtractor(BaseFeaturesExtractor):
    """stable-baselines3 features extractor built on the supervised dialog transformer.

    Output, per observation: the pooled history encoding ``(hidden_dim,)``
    followed by the dot product of the retriever's query with each
    candidate's features ``(K,)``.

    Args:
        observation_space: the ``topk`` environment's ``Dict`` space.
        retriever_path: folder of a saved :class:`TransformerRetriever`
            whose config and weights initialize the extractor.
        train_encoder: let PPO update the transformer (False freezes it, so
            only the policy and value heads learn).
    """

    def __init__(self, observation_space: spaces.Dict, retriever_path: str, train_encoder: bool = False) -> None:
        import agents

        retriever = agents.load(retriever_path)
        if not isinstance(retriever, TransformerRetriever):
            raise ConfigError(
                f"{retriever_path} contains a {type(retriever).__name__}, but the PPO features extractor needs a "
                "transformer or transformer_attr retriever"
            )
        if "candidates" not in observation_space.spaces:
            raise ConfigError("the observation has no 'candidates'; create the environment with action_type='topk'")
        num_candidates = int(observation_space["candidates"].shape[0])
        super().__init__(observation_space, features_dim=retriever.config.hidden_dim + num_candidates)
        self.retriever = retriever
        self.retriever.requires_grad_(train_encoder)
        self.train_encoder = train_encoder
        self.train(self.training)

    def train(self, mode: bool = True) -> DialogFeaturesExtractor:
        """Set training mode; a frozen transformer stays in eval mode, so its dropout never fires.

        stable-baselines3 switches the policy to training mode for its
        updates. Without this, a frozen transformer would compute other
        features in the updates than in the rollouts.
        """
        super().train(mode)
        if not self.train_encoder:
            self.retriever.eval()
        return self

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        obs = _decode_observation(observations, self.retriever.config.max_turns)
        pooled, query = self.retriever.encode(obs)  # (batch, hidden), (batch, dim)
        scores = torch.einsum("bkd,bd->bk", observations["candidates"].float(), query)  # (batch, K)
        return torch.cat([pooled, scores], dim=1)


@dataclass
class PPOConfig:
    """Settings of :func:`train_ppo`; ``from_preset`` gives ``tiny``, ``cpu`` and ``paper``."""

    total_timesteps: int = field(default=20000, metadata={"help": "environment steps in all (a resumed run continues up to it)"})
    num_envs: int = field(default=16, metadata={"help": "sub-environments of the vector env"})
    n_steps: int = field(default=64, metadata={"help": "steps per sub-environment per PPO update"})
    batch_size: int = field(default=256, metadata={"help": "PPO minibatch size"})
    n_epochs: int = field(default=4, metadata={"help": "PPO epochs per update"})
    learning_rate: float = field(default=3e-4, metadata={"help": "Adam learning rate"})
    gamma: float = field(default=0.9, metadata={"help": "discount factor"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus"})
    top_k: int = field(default=8, metadata={"help": "candidates per turn"})
    train_encoder: bool = field(default=False, metadata={"help": "fine-tune the transformer too (else frozen)"})
    top1_bias: float = field(default=2.0, metadata={"help": "initial logit bonus of candidate 0, the supervised choice"})
    hidden_units: int = field(default=64, metadata={"help": "width of the policy and value MLP"})
    seed: int = field(default=0, metadata={"help": "seed of PPO and the environments"})
    device: str = field(default="cpu", metadata={"help": "torch device"})

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"total_timesteps": 64, "num_envs": 4, "n_steps": 16, "batch_size": 32, "n_epochs": 1},
        "cpu": {},
        "paper": {"total_timesteps": 200000, "num_envs": 32, "n_steps": 128, "batch_size": 512},
    }

    def __post_init__(self) -> None:
        for name in ("total_timesteps", "num_envs", "n_steps", "batch_size", "n_epochs", "top_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"PPOConfig.{name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_preset(cls, preset: str = "cpu", **overrides: Any) -> PPOConfig:
        if preset not in cls.PRESETS:
            raise ConfigError(f"unknown PPOConfig preset {preset!r}; choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[preset], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_topk_env(
    retriever_path: str | Path, num_envs: int, top_k: int, split: str = "train", **env_kwargs: Any
) -> gym.vector.VectorEnv:
    """Create the native vector env in ``topk`` mode whose candidates come from the saved retriever.

    ``env_kwargs`` go to the environment (``catalog``, ``features``,
    ``simulator``, ...). The candidate retriever is loaded separately from the
    policy's copy and never trained.
    """
    import agents

    candidate_retriever = agents.load(retriever_path).eval()
    return gym.make_vec(
        "FashionIQ/Dialog-v0",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        split=split,
        action_type="topk",
        top_k=top_k,
        candidate_policy=candidate_retriever.act,
        **env_kwargs,
    )


def build_ppo(env: VecEnv, retriever_path: str | Path, config: PPOConfig, tensorboard_dir: str | None = None) -> Any:
    """Create a PPO model with :class:`DialogFeaturesExtractor` and the top-1 action bias."""
    from stable_baselines3 import PPO

    policy_kwargs = {
        "features_extractor_class": DialogFeaturesExtractor,
        "features_extractor_kwargs": {"retriever_path": str(retriever_path), "train_encoder": config.train_encoder},
        "net_arch": {"pi": [config.hidden_units], "vf": [config.hidden_units]},
    }
    model = PPO(
        "MultiInputPolicy",
        env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        ent_coef=config.ent_coef,
        policy_kwargs=policy_kwargs,
        tensorboard_log=tensorboard_dir,
        seed=config.seed,
        device=config.device,
        verbose=0,
    )
    restore_retriever_weights(model, retriever_path)
    with torch.no_grad():
        model.policy.action_net.bias[0] += config.top1_bias
    return model


def restore_retriever_weights(model: Any, retriever_path: str | Path) -> None:
    """Load the saved retriever's weights into every :class:`DialogFeaturesExtractor` of a PPO model.

    SB3's orthogonal initialization (``ortho_init``, on by default) resets
    every linear layer of the features extractor when the policy is built,
    which replaces the supervised transformer with random weights. Call this
    after building the model; the policy and value heads keep SB3's
    initialization.
    """
    import agents

    trained = agents.load(retriever_path).state_dict()
    policy = model.policy
    if policy.share_features_extractor:
        extractors = [policy.features_extractor]
    else:
        extractors = [policy.pi_features_extractor, policy.vf_features_extractor]
    for extractor in extractors:
        extractor.retriever.load_state_dict(trained)


def save_policy(model: Any, folder: str | Path, config: PPOConfig, retriever_path: str | Path) -> Path:
    """Write the PPO policy and its optimizer as safetensors plus JSON (no pickle) into ``folder``."""
    folder = Path(folder)
    save_tensors(folder / "policy.safetensors", dict(model.policy.state_dict()))
    tensors, optimizer_document = optimizer_to_files(model.policy.optimizer)
    save_tensors(folder / "optimizer.safetensors", tensors)
    write_json(
        folder / "ppo.json",
        {
            "format": "fiq-env-ppo-policy",
            "format_version": 1,
            "config": config.to_dict(),
            "retriever_path": str(retriever_path),
            "retriever_sha256": retriever_digest(retriever_path),
            "num_timesteps": int(model.num_timesteps),
            "optimizer": optimizer_document,
        },
    )
    return folder


def retriever_digest(retriever_path: str | Path) -> str:
    """Return the SHA-256 of a saved retriever's weights file, which identifies the weights PPO started from."""
    return file_sha256(Path(retriever_path) / WEIGHTS_FILE)


def load_policy_into(model: Any, folder: str | Path, retriever_path: str | Path | None = None) -> dict[str, Any]:
    """Load weights, optimizer state and step count saved by :func:`save_policy` into ``model``.

    With ``retriever_path``, the saved retriever must be the one the policy
    was trained from: a policy whose features came from other transformer
    weights would resume against candidates it never saw.
    """
    folder = Path(folder)
    document = read_json(folder / "ppo.json") if (folder / "ppo.json").is_file() else None
    if not document or document.get("format") != "fiq-env-ppo-policy":
        raise CheckpointError(f"{folder}/ppo.json is missing; the folder has no policy written by agents.rl.save_policy")
    recorded = document.get("retriever_sha256")
    if retriever_path is not None and recorded is not None and recorded != retriever_digest(retriever_path):
        raise CheckpointError(
            f"{folder} contains a PPO policy trained from a different retriever than {retriever_path}; "
            "use a new PPO run folder for this retriever, or delete the old policy folder"
        )
    try:
        model.policy.load_state_dict(load_tensors(folder / "policy.safetensors", model.device), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{folder}: the policy weights do not match this model ({error})") from error
    optimizer_from_files(model.policy.optimizer, load_tensors(folder / "optimizer.safetensors"), document["optimizer"])
    model.num_timesteps = int(document["num_timesteps"])
    return document


RESUMABLE_CHANGES = ("total_timesteps", "device")
"""PPOConfig fields a resumed run may change. Any other change would mix two trainings in one policy."""


def _check_resumed_config(saved: dict[str, Any], config: PPOConfig, folder: Path) -> None:
    current = config.to_dict()
    differing = sorted(
        name for name in current if name not in RESUMABLE_CHANGES and name in saved and saved[name] != current[name]
    )
    if differing:
        details = "; ".join(f"{name} was {saved[name]!r}, now {current[name]!r}" for name in differing)
        raise CheckpointError(
            f"{folder} was trained with another PPO config ({details}); resume with the saved values "
            "or use a new run folder"
        )


def train_ppo(
    retriever_path: str | Path,
    run_dir: str | Path,
    config: PPOConfig | None = None,
    save_zip: bool = False,
    **env_kwargs: Any,
) -> tuple[Any, float]:
    """Fine-tune a saved transformer retriever with PPO on the ``topk`` vector env; resumable.

    When ``run_dir/policy`` exists, training resumes from it and continues
    the TensorBoard step count up to ``config.total_timesteps``.

    Returns:
        The PPO model and the seconds this call spent.
    """
    from stable_baselines3.common.vec_env import VecMonitor

    config = config or PPOConfig()
    run_dir = Path(run_dir)
    started = time.perf_counter()
    venv = make_topk_env(retriever_path, config.num_envs, config.top_k, **env_kwargs)
    env = VecMonitor(GymnasiumVecEnv(venv))
    env.seed(config.seed)
    model = build_ppo(env, retriever_path, config, tensorboard_dir=str(run_dir / "tensorboard"))

    policy_folder = run_dir / POLICY_FOLDER
    resumed = (policy_folder / "ppo.json").is_file()
    if resumed:
        # Check the config first: a changed top_k would otherwise fail on tensor shapes.
        _check_resumed_config(read_json(policy_folder / "ppo.json").get("config", {}), config, policy_folder)
        load_policy_into(model, policy_folder, retriever_path)
        logger.info("resumed PPO from %s at %d steps", policy_folder, model.num_timesteps)
    remaining = config.total_timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, reset_num_timesteps=not resumed, tb_log_name="ppo")
    save_policy(model, policy_folder, config, retriever_path)
    if save_zip:
        model.save(run_dir / "ppo_model.zip")  # pickle-based; see the module docstring
    return model, time.perf_counter() - started


def evaluate_topk(
    choose: Callable[[dict[str, np.ndarray]], np.ndarray],
    venv: gym.vector.VectorEnv,
    targets: list[Any],
    initial: list[Any],
) -> np.ndarray:
    """Run one ``topk`` episode per start pair and return the ``(episodes, turns)`` target ranks.

    ``choose`` maps a batch of observations to candidate indices. Episodes run
    ``num_envs`` at a time; rows whose episode ended keep rank 0 (found).
    """
    num_envs = venv.num_envs
    turns = venv.unwrapped.config.max_turns if hasattr(venv.unwrapped, "config") else 5
    all_ranks = []
    for start in range(0, len(targets), num_envs):
        pairs = list(zip(targets[start : start + num_envs], initial[start : start + num_envs]))
        venv.reset(seed=start)
        for row, (target, first) in enumerate(pairs):
            mask = np.zeros(num_envs, dtype=bool)
            mask[row] = True
            observations, _ = venv.reset(options={"reset_mask": mask, "target": target, "initial": first})
        ranks = np.zeros((num_envs, turns), dtype=np.int64)
        running = np.ones(num_envs, dtype=bool)
        for turn in range(turns):
            actions = np.asarray(choose(observations), dtype=np.int64).reshape(num_envs)
            observations, _, terminated, truncated, info = venv.step(actions)
            ranks[running, turn] = info["target_rank"][running]
            running &= ~(terminated | truncated)
        all_ranks.append(ranks[: len(pairs)])
    return np.concatenate(all_ranks, axis=0)
