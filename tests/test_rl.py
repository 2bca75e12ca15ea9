"""Tests of PPO over a supervised retriever: the vec-env adapter, the features extractor, training and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("fiq_env.vector_env", reason="the vector environment module fiq_env.vector_env is not written yet")

import gymnasium as gym
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.utils import obs_as_tensor

import agents
from agent_helpers import agent_sizes, make_data, one_torch_thread  # noqa: F401 (autouse fixture)
from agents.rl import (
    DialogFeaturesExtractor,
    GymnasiumVecEnv,
    PPOConfig,
    build_ppo,
    evaluate_topk,
    load_policy_into,
    make_topk_env,
    restore_retriever_weights,
    train_ppo,
)
from fiq_env.errors import CheckpointError, ConfigError

DATA = make_data(num_items=60)
SIZES = agent_sizes(DATA)
TOP_K = 4
ENV_KWARGS = {"catalog": DATA.catalog, "features": DATA.features, "simulator": DATA.simulator}


@pytest.fixture(scope="module")
def retriever_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    agent = agents.make("transformer", preset="tiny", **SIZES)
    agent.vocabulary = DATA.vocabulary
    folder = tmp_path_factory.mktemp("retriever") / "agent"
    agent.save(folder)
    return str(folder)


def topk_env(retriever_path: str, num_envs: int) -> gym.vector.VectorEnv:
    return make_topk_env(retriever_path, num_envs, TOP_K, **ENV_KWARGS)


@pytest.mark.parametrize("num_envs", [1, 4])
def test_extractor_output_shape(retriever_path: str, num_envs: int) -> None:
    venv = topk_env(retriever_path, num_envs)
    observations, _ = venv.reset(seed=0)
    extractor = DialogFeaturesExtractor(venv.single_observation_space, retriever_path)
    tensors = preprocess_obs(obs_as_tensor(observations, torch.device("cpu")), venv.single_observation_space)
    output = extractor(tensors)
    assert output.shape == (num_envs, extractor.features_dim)
    assert extractor.features_dim == 32 + TOP_K


def test_extractor_scores_match_retriever(retriever_path: str) -> None:
    venv = topk_env(retriever_path, 2)
    observations, _ = venv.reset(seed=1)
    extractor = DialogFeaturesExtractor(venv.single_observation_space, retriever_path).eval()
    tensors = preprocess_obs(obs_as_tensor(observations, torch.device("cpu")), venv.single_observation_space)
    scores = extractor(tensors)[:, -TOP_K:]
    query = agents.load(retriever_path).act(observations)
    expected = np.einsum("bkd,bd->bk", observations["candidates"], query)
    assert np.allclose(scores.detach().numpy(), expected, atol=1e-5)


def test_extractor_frozen_by_default(retriever_path: str) -> None:
    venv = topk_env(retriever_path, 1)
    extractor = DialogFeaturesExtractor(venv.single_observation_space, retriever_path)
    assert not any(parameter.requires_grad for parameter in extractor.parameters())


def test_frozen_extractor_ignores_training_mode(tmp_path) -> None:
    # stable-baselines3 calls train() before its updates, and a frozen transformer's dropout must stay off.
    torch.manual_seed(0)
    agent = agents.make("transformer", preset="cpu", **SIZES)
    assert agent.config.dropout > 0
    agent.vocabulary = DATA.vocabulary
    agent.save(tmp_path / "agent")

    venv = topk_env(str(tmp_path / "agent"), 2)
    observations, _ = venv.reset(seed=0)
    tensors = preprocess_obs(obs_as_tensor(observations, torch.device("cpu")), venv.single_observation_space)
    extractor = DialogFeaturesExtractor(venv.single_observation_space, str(tmp_path / "agent")).train()
    assert not extractor.retriever.training
    assert torch.equal(extractor(tensors), extractor(tensors))

    trainable = DialogFeaturesExtractor(venv.single_observation_space, str(tmp_path / "agent"), train_encoder=True)
    assert trainable.train().retriever.training


def test_extractor_rejects_rnn(tmp_path) -> None:
    agents.make("rnn", preset="tiny", **SIZES).save(tmp_path / "rnn")
    space = gym.spaces.Dict({"candidates": gym.spaces.Box(-1, 1, (TOP_K, SIZES["feature_dim"]))})
    with pytest.raises(ConfigError, match="needs a transformer"):
        DialogFeaturesExtractor(space, str(tmp_path / "rnn"))


def test_adapter_resets_finished_rows(retriever_path: str) -> None:
    env = GymnasiumVecEnv(topk_env(retriever_path, 3))
    env.seed(0)
    env.reset()
    finished = []
    ever_done = np.zeros(3, dtype=bool)
    for _ in range(SIZES["max_turns"]):
        observations, rewards, dones, infos = env.step(np.zeros(3, dtype=np.int64))
        finished.extend(info for info, done in zip(infos, dones) if done)
        ever_done |= dones
        # A finished row is reset within the same step, so it starts over at turn 1.
        assert (observations["turn"][dones] == 1).all()
    assert ever_done.all()
    assert all("terminal_observation" in info for info in finished)


def test_ppo_learns_and_resumes(retriever_path: str, tmp_path) -> None:
    config = PPOConfig.from_preset("tiny", top_k=TOP_K)
    model, _ = train_ppo(retriever_path, tmp_path, config, **ENV_KWARGS)
    assert model.num_timesteps == 64
    assert (tmp_path / "policy" / "policy.safetensors").is_file()

    resumed, _ = train_ppo(retriever_path, tmp_path, PPOConfig.from_preset("tiny", top_k=TOP_K, total_timesteps=128), **ENV_KWARGS)
    assert resumed.num_timesteps == 128


def test_ppo_resume_rejects_changed_retriever(retriever_path: str, tmp_path) -> None:
    config = PPOConfig.from_preset("tiny", top_k=TOP_K)
    train_ppo(retriever_path, tmp_path / "ppo", config, **ENV_KWARGS)

    other = agents.load(retriever_path)
    with torch.no_grad():
        other.query_head.bias.add_(0.1)
    other.save(tmp_path / "other")
    longer = PPOConfig.from_preset("tiny", top_k=TOP_K, total_timesteps=128)
    with pytest.raises(CheckpointError, match="different retriever"):
        train_ppo(str(tmp_path / "other"), tmp_path / "ppo", longer, **ENV_KWARGS)


def test_ppo_resume_rejects_changed_config(retriever_path: str, tmp_path) -> None:
    train_ppo(retriever_path, tmp_path, PPOConfig.from_preset("tiny", top_k=TOP_K), **ENV_KWARGS)
    changed = PPOConfig.from_preset("tiny", top_k=TOP_K, total_timesteps=128, gamma=0.5)
    with pytest.raises(CheckpointError, match="gamma was 0.9, now 0.5"):
        train_ppo(retriever_path, tmp_path, changed, **ENV_KWARGS)
    other_k = PPOConfig.from_preset("tiny", top_k=TOP_K + 1, total_timesteps=128)
    with pytest.raises(CheckpointError, match=f"top_k was {TOP_K}, now {TOP_K + 1}"):
        train_ppo(retriever_path, tmp_path, other_k, **ENV_KWARGS)


def test_policy_round_trip(retriever_path: str, tmp_path) -> None:
    config = PPOConfig.from_preset("tiny", top_k=TOP_K)
    model, _ = train_ppo(retriever_path, tmp_path, config, **ENV_KWARGS)
    fresh = build_ppo(GymnasiumVecEnv(topk_env(retriever_path, config.num_envs)), retriever_path, config)
    load_policy_into(fresh, tmp_path / "policy")
    for name, tensor in model.policy.state_dict().items():
        assert torch.equal(tensor, fresh.policy.state_dict()[name]), name


def assert_retriever_weights(extractor: DialogFeaturesExtractor, retriever_path: str) -> None:
    trained = agents.load(retriever_path).state_dict()
    for name, tensor in extractor.retriever.state_dict().items():
        assert torch.equal(tensor, trained[name]), name


def test_build_ppo_keeps_supervised_weights(retriever_path: str) -> None:
    # SB3's orthogonal initialization must not overwrite the trained transformer.
    config = PPOConfig.from_preset("tiny", top_k=TOP_K)
    model = build_ppo(GymnasiumVecEnv(topk_env(retriever_path, 2)), retriever_path, config)
    assert_retriever_weights(model.policy.features_extractor, retriever_path)


def test_restore_weights_unshared_extractors(retriever_path: str) -> None:
    from stable_baselines3 import PPO

    policy_kwargs = {
        "features_extractor_class": DialogFeaturesExtractor,
        "features_extractor_kwargs": {"retriever_path": retriever_path},
        "share_features_extractor": False,
    }
    env = GymnasiumVecEnv(topk_env(retriever_path, 2))
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, policy_kwargs=policy_kwargs, device="cpu")
    projection = model.policy.pi_features_extractor.retriever.history_encoder.image_projection.weight
    trained = agents.load(retriever_path).history_encoder.image_projection.weight
    assert not torch.equal(projection, trained)  # what ortho_init did

    restore_retriever_weights(model, retriever_path)
    assert_retriever_weights(model.policy.pi_features_extractor, retriever_path)
    assert_retriever_weights(model.policy.vf_features_extractor, retriever_path)


def test_top1_bias_prefers_supervised_choice(retriever_path: str) -> None:
    config = PPOConfig.from_preset("tiny", top_k=TOP_K, top1_bias=10.0)
    env = GymnasiumVecEnv(topk_env(retriever_path, 4))
    model = build_ppo(env, retriever_path, config)
    actions, _ = model.predict(env.reset(), deterministic=True)
    assert (actions == 0).all()


def test_load_policy_missing(retriever_path: str, tmp_path) -> None:
    config = PPOConfig.from_preset("tiny", top_k=TOP_K)
    model = build_ppo(GymnasiumVecEnv(topk_env(retriever_path, config.num_envs)), retriever_path, config)
    with pytest.raises(CheckpointError, match="ppo.json is missing"):
        load_policy_into(model, tmp_path)


def test_evaluate_topk_start_pairs(retriever_path: str) -> None:
    venv = topk_env(retriever_path, 3)
    targets, initial = DATA.sample_start_pairs(5, np.random.default_rng(0))
    ranks = evaluate_topk(lambda obs: np.zeros(3, dtype=np.int64), venv, targets.tolist(), initial.tolist())
    assert ranks.shape == (5, SIZES["max_turns"])
    assert (ranks >= 0).all()
    assert (ranks < DATA.gallery.size).all()
