"""Tests of FashionDialogVectorEnv: agreement with SyncVectorEnv, batching, autoreset and misuse."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import fiq_env
from fiq_env.errors import ConfigError, EnvUsageError
from fiq_env.vector_env import FashionDialogVectorEnv
from env_fixtures import PlainSimulator, make_env_kwargs

NUM_ENVS = 4


def make_pair(num_envs: int = NUM_ENVS, **overrides) -> tuple[gym.vector.VectorEnv, gym.vector.VectorEnv]:
    """Return a native and a sync vector env over the same shared components."""
    kwargs = make_env_kwargs(**overrides)
    native = gym.make_vec(fiq_env.ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(fiq_env.ENV_ID, num_envs=num_envs, vectorization_mode="sync", **kwargs)
    return native, sync


def assert_batches_equal(native: dict, sync: dict) -> None:
    assert native.keys() == sync.keys()
    for key in native:
        assert native[key].dtype == sync[key].dtype, key
        assert np.array_equal(native[key], sync[key]), key


def random_actions(envs: gym.vector.VectorEnv, rng: np.random.Generator, action_type: str) -> np.ndarray:
    if action_type == "topk":
        return rng.integers(envs.single_action_space.n, size=envs.num_envs)
    return rng.normal(size=envs.action_space.shape).astype(np.float32)


@pytest.mark.parametrize(
    "action_type, simulator_kind",
    [("query", "rowwise"), ("topk", "rowwise"), ("query", "plain")],
)
def test_matches_sync_vector_env(action_type, simulator_kind):
    overrides = {"action_type": action_type, "top_k": 3, "max_turns": 3, "num_items": 25}
    kwargs = make_env_kwargs(**overrides)
    if simulator_kind == "plain":
        kwargs["simulator"] = PlainSimulator(kwargs["catalog"])
    native = gym.make_vec(fiq_env.ENV_ID, num_envs=NUM_ENVS, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(fiq_env.ENV_ID, num_envs=NUM_ENVS, vectorization_mode="sync", **kwargs)
    rng = np.random.default_rng(0)

    native_observation, native_info = native.reset(seed=7)
    sync_observation, sync_info = sync.reset(seed=7)
    assert_batches_equal(native_observation, sync_observation)
    assert_batches_equal(native_info, sync_info)

    episodes_ended = 0
    for _ in range(30):
        actions = random_actions(native, rng, action_type)
        native_result = native.step(actions)
        sync_result = sync.step(actions)
        assert_batches_equal(native_result[0], sync_result[0])
        for native_array, sync_array in zip(native_result[1:4], sync_result[1:4]):
            assert native_array.dtype == sync_array.dtype
            assert np.array_equal(native_array, sync_array)
        assert_batches_equal(native_result[4], sync_result[4])
        episodes_ended += int((native_result[2] | native_result[3]).sum())
    assert episodes_ended >= 2 * NUM_ENVS


def test_success_and_autoreset_match_sync():
    kwargs = make_env_kwargs(max_turns=3, num_items=25, reveal_target=True)
    native = gym.make_vec(fiq_env.ENV_ID, num_envs=NUM_ENVS, vectorization_mode="vector_entry_point", **kwargs)
    sync = gym.make_vec(fiq_env.ENV_ID, num_envs=NUM_ENVS, vectorization_mode="sync", **kwargs)
    features = kwargs["features"].features
    _, infos = native.reset(seed=1)
    sync.reset(seed=1)
    successes = 0
    for _ in range(12):
        # Query the targets themselves: every running episode ends in success.
        actions = features[[kwargs["catalog"].index_of(item) for item in infos["target_id"]]]
        native_result = native.step(actions)
        sync_result = sync.step(actions)
        assert_batches_equal(native_result[0], sync_result[0])
        assert np.array_equal(native_result[1], sync_result[1])
        assert np.array_equal(native_result[2], sync_result[2])
        infos = native_result[4]
        successes += int(native_result[2].sum())
    assert successes == 6 * NUM_ENVS


def test_make_vec_uses_native_class():
    native, _ = make_pair()
    assert isinstance(native.unwrapped, FashionDialogVectorEnv)


def test_autoreset_mode_metadata():
    native, _ = make_pair()
    assert native.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


def test_batched_spaces_match_sync():
    native, sync = make_pair(action_type="topk")
    assert native.single_observation_space == sync.single_observation_space
    assert native.observation_space == sync.observation_space
    assert native.action_space == sync.action_space


def test_one_simulator_call_per_step():
    native, _ = make_pair(num_envs=8)
    simulator = native.unwrapped.simulator
    native.reset(seed=0)
    calls_before = simulator.calls
    rng = np.random.default_rng(1)
    for _ in range(10):
        native.step(random_actions(native, rng, "query"))
    assert simulator.calls - calls_before <= 10


def test_observations_in_space():
    native, _ = make_pair(action_type="topk")
    observation, _ = native.reset(seed=2)
    assert native.observation_space.contains(observation)
    rng = np.random.default_rng(3)
    for _ in range(15):
        observation, *_ = native.step(random_actions(native, rng, "topk"))
        assert native.observation_space.contains(observation)


def test_seed_list_matches_int_seed():
    first, _ = make_pair()
    second, _ = make_pair()
    observation_int, _ = first.reset(seed=5)
    observation_list, _ = second.reset(seed=[5, 6, 7, 8])
    assert_batches_equal(observation_int, observation_list)


def test_reset_mask_resets_marked_rows():
    native, sync = make_pair()
    native.reset(seed=0)
    sync.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = random_actions(native, rng, "query")
    native.step(actions)
    sync.step(actions)
    mask = np.array([True, False, True, False])
    native_observation, native_info = native.reset(options={"reset_mask": mask})
    sync_observation, sync_info = sync.reset(options={"reset_mask": mask.copy()})
    assert_batches_equal(native_observation, sync_observation)
    assert np.array_equal(native_info["_caption"], mask)


def test_reset_options_shared_by_rows():
    native, _ = make_pair(reveal_target=True)
    _, infos = native.reset(seed=0, options={"target": "item00003"})
    assert list(infos["target_id"]) == ["item00003"] * NUM_ENVS


def test_render_ansi_per_row():
    native, _ = make_pair(render_mode="ansi")
    native.reset(seed=0)
    transcripts = native.render()
    assert len(transcripts) == NUM_ENVS
    assert all(text.startswith("target: ") for text in transcripts)


def test_step_before_reset():
    native, _ = make_pair()
    with pytest.raises(EnvUsageError, match="before reset"):
        native.step(np.zeros((NUM_ENVS, 16), dtype=np.float32))


VECTOR_MISUSE = [
    ("wrong_rows", np.zeros((3, 16), np.float32), "leading axis of num_envs=4"),
    ("wrong_dim", np.zeros((4, 15), np.float32), "shape (4, 16), got shape (4, 15)"),
    ("nan_row", np.where(np.arange(4)[:, None] == 2, np.nan, np.zeros((4, 16))), "of sub-environment 2"),
]


@pytest.mark.parametrize("actions, fragment", [case[1:] for case in VECTOR_MISUSE], ids=[case[0] for case in VECTOR_MISUSE])
def test_step_misuse(actions, fragment):
    native, _ = make_pair()
    native.reset(seed=0)
    with pytest.raises(ConfigError) as caught:
        native.step(actions)
    assert fragment in str(caught.value)


def test_reset_options_must_be_dict():
    native, _ = make_pair()
    with pytest.raises(ConfigError, match="reset options must be a dict"):
        native.reset(seed=0, options=["target"])


def test_seed_list_length_checked():
    native, _ = make_pair()
    with pytest.raises(ConfigError, match="needs num_envs=4 entries, got 2"):
        native.reset(seed=[1, 2])


def test_num_envs_checked():
    with pytest.raises(ConfigError, match="num_envs must be a positive integer"):
        FashionDialogVectorEnv(0, **make_env_kwargs())


def test_sync_vector_env_class_used_for_sync_mode():
    _, sync = make_pair()
    assert isinstance(sync, SyncVectorEnv)
