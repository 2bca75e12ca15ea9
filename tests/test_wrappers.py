"""Tests of the TextObservation and FlatDialogObservation wrappers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from env_fixtures import make_env_kwargs

import fiq_env
from fiq_env.errors import ConfigError
from fiq_env.wrappers import FlatDialogObservation, TextObservation


def make_text_env(**overrides) -> TextObservation:
    return TextObservation(gym.make(fiq_env.ENV_ID, **make_env_kwargs(**overrides)))


def test_text_observation_in_space():
    env = make_text_env()
    observation, _ = env.reset(seed=0)
    assert env.observation_space.contains(observation)


def test_text_has_first_caption():
    env = make_text_env()
    observation, info = env.reset(seed=0)
    assert info["caption"] in observation["text"]
    assert info["shown_id"] in observation["text"]


def test_text_grows_one_line_per_turn():
    env = make_text_env()
    env.reset(seed=0)
    observation, _, _, _, info = env.step(np.zeros(16, dtype=np.float32))
    lines = observation["text"].splitlines()
    assert len(lines) == 2
    assert info["caption"] in lines[1]


def test_text_includes_titles():
    env = make_text_env()
    observation, info = env.reset(seed=0)
    catalog = env.unwrapped.catalog
    assert catalog.titles[catalog.index_of(info["shown_id"])] in observation["text"]


def test_text_topk_lists_candidates():
    env = make_text_env(action_type="topk", top_k=3)
    observation, _ = env.reset(seed=0)
    candidate_lines = observation["text"].split("candidates:\n")[1].splitlines()
    assert len(candidate_lines) == 3
    assert env.unwrapped.candidate_ids[2] in candidate_lines[2]


def test_text_rollout_in_space():
    env = make_text_env(action_type="topk", top_k=3)
    env.reset(seed=1)
    for _ in range(12):
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(observation)
        if terminated or truncated:
            env.reset()


def test_text_keeps_arrays_when_asked():
    env = TextObservation(gym.make(fiq_env.ENV_ID, **make_env_kwargs()), include_arrays=True)
    observation, _ = env.reset(seed=0)
    assert set(observation) == {"text", "turn", "tokens", "features", "attributes"}


def test_text_rejects_other_envs():
    with pytest.raises(ConfigError, match="wraps a FashionDialogEnv"):
        TextObservation(gym.make("CartPole-v1"))


def test_flat_observation_shapes():
    env = FlatDialogObservation(gym.make(fiq_env.ENV_ID, action_type="topk", top_k=3, **make_env_kwargs()))
    observation, _ = env.reset(seed=0)
    assert observation["tokens"].shape == (5 * 8,)
    assert observation["candidates"].shape == (3 * 16,)
    assert env.observation_space.contains(observation)


def test_flat_observation_keeps_rows_in_order():
    base = gym.make(fiq_env.ENV_ID, **make_env_kwargs())
    flat = FlatDialogObservation(gym.make(fiq_env.ENV_ID, **make_env_kwargs()))
    observation, _ = base.reset(seed=4)
    flat_observation, _ = flat.reset(seed=4)
    assert np.array_equal(flat_observation["features"], observation["features"].reshape(-1))
