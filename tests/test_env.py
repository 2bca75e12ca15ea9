"""Tests of FashionDialogEnv: spaces, checkers, dialog rules, seeding, misuse and rendering."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import fiq_env
from fiq_env.env import FashionDialogEnv
from fiq_env.errors import ConfigError, DataError, EnvUsageError
from fiq_env.metrics import ranking_percentile
from fiq_env.metrics import target_ranks as reference_target_ranks
from fiq_env.wrappers import FlatDialogObservation
from env_fixtures import PlainSimulator, TinyCatalog, make_env_kwargs, make_features

MODES = ("query", "topk")


def make_env(**overrides) -> FashionDialogEnv:
    return FashionDialogEnv(**make_env_kwargs(**overrides))


def assert_observations_equal(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert np.asarray(first[key]).dtype == np.asarray(second[key]).dtype, key
        assert np.array_equal(first[key], second[key]), key


def split_features(env: FashionDialogEnv) -> np.ndarray:
    return env.catalog_features.features[env.catalog.indices(env.config.split)]


# ----------------------------------------------------------------------------- spaces and checkers


def test_observation_space_keys():
    env = make_env()
    assert set(env.observation_space.spaces) == {"tokens", "features", "attributes", "turn"}


def test_observation_space_shapes():
    env = make_env(max_turns=4, caption_length=6)
    space = env.observation_space
    assert space["tokens"].shape == (4, 6)
    assert space["features"].shape == (4, 16)
    assert space["attributes"].shape == (4, 3)
    assert space["turn"].n == 5


def test_observation_space_bounds():
    env = make_env()
    space = env.observation_space
    assert space["tokens"].high.max() == len(env.simulator.vocabulary) - 1
    assert space["attributes"].high.max() == len(env.catalog.attribute_names)
    assert space["tokens"].dtype == np.int64
    assert space["features"].dtype == np.float32


def test_topk_spaces():
    env = make_env(action_type="topk", top_k=4)
    assert env.observation_space["candidates"].shape == (4, 16)
    assert env.action_space == gym.spaces.Discrete(4)


@pytest.mark.parametrize("action_type", MODES)
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_gymnasium_checker(action_type, render_mode):
    env = gym.make(fiq_env.ENV_ID, action_type=action_type, render_mode=render_mode, **make_env_kwargs())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("action_type", MODES)
def test_sb3_checker_flat(action_type):
    env = FlatDialogObservation(gym.make(fiq_env.ENV_ID, action_type=action_type, **make_env_kwargs()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(env)


def test_sb3_checker_raw_shape_warnings_only():
    # SB3 2.x warns about Box spaces that are neither 1-D nor images; dtypes raise no warning.
    env = make_env(action_type="topk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 4
    assert all("unconventional shape" in message for message in messages)


@pytest.mark.parametrize("action_type", MODES)
def test_rollout_observations_in_space(action_type):
    env = make_env(action_type=action_type)
    observation, _ = env.reset(seed=3)
    assert env.observation_space.contains(observation)
    for _ in range(40):
        observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(observation)
        assert 0.0 < reward <= 1.0
        if terminated or truncated:
            observation, _ = env.reset()
            assert env.observation_space.contains(observation)


@pytest.mark.parametrize("action_type", MODES)
def test_ppo_learns_a_few_steps(action_type):
    from stable_baselines3 import PPO

    env = make_env(action_type=action_type)
    model = PPO("MultiInputPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    assert model.num_timesteps == 32


# ----------------------------------------------------------------------------- dialog rules


def test_reset_observation_first_turn():
    env = make_env()
    observation, info = env.reset(seed=0)
    assert observation["turn"] == 1
    assert np.array_equal(observation["tokens"][0], env.simulator.vocabulary.encode(info["caption"], 8))
    assert not observation["tokens"][1:].any()
    assert not observation["features"][1:].any()


def test_reset_features_of_first_image():
    env = make_env()
    observation, info = env.reset(seed=0)
    expected = env.catalog_features.features[info["shown_index"]]
    assert np.allclose(observation["features"][0], expected)
    assert np.array_equal(observation["attributes"][0], env.catalog_features.top_attributes[info["shown_index"]] + 1)


def test_reset_pair_is_distinct_and_in_split():
    env = make_env(reveal_target=True)
    train_ids = {env.catalog.item_ids[i] for i in env.catalog.indices("train")}
    for seed in range(20):
        _, info = env.reset(seed=seed)
        assert info["target_id"] != info["shown_id"]
        assert info["target_id"] in train_ids
        assert info["shown_id"] in train_ids


def test_target_id_hidden_by_default():
    _, info = make_env().reset(seed=0)
    assert "target_id" not in info


def test_reward_is_ranking_percentile():
    env = make_env(reveal_target=True)
    _, info = env.reset(seed=1)
    query = np.random.default_rng(0).normal(size=16).astype(np.float32)
    _, reward, _, _, info = env.step(query)

    features = split_features(env)
    distances = np.linalg.norm(features - query, axis=1)[None, :]
    target_column = env.catalog.indices("train").tolist().index(env.catalog.index_of(info["target_id"]))
    rank = reference_target_ranks(distances, np.array([target_column]))[0]
    assert info["target_rank"] == rank
    assert reward == pytest.approx(ranking_percentile(np.array([rank]), len(features))[0])


def test_shows_nearest_unshown_item():
    env = make_env()
    env.reset(seed=2)
    query = np.random.default_rng(1).normal(size=16).astype(np.float32)
    features = split_features(env)
    ids = [env.catalog.item_ids[i] for i in env.catalog.indices("train")]
    order = np.argsort(np.linalg.norm(features - query, axis=1), kind="stable")
    for _ in range(3):
        shown_before = set(env.shown_ids)
        _, _, terminated, truncated, info = env.step(query)
        expected = next(ids[i] for i in order if ids[i] not in shown_before)
        assert info["shown_id"] == expected
        if terminated or truncated:
            break


def test_success_terminates():
    env = make_env()
    catalog = env.catalog
    train = catalog.indices("train")
    env.reset(seed=0, options={"target": catalog.item_ids[train[5]], "initial": catalog.item_ids[train[9]]})
    observation_before = env._observation()
    observation, reward, terminated, truncated, info = env.step(env.catalog_features.features[train[5]])
    assert terminated
    assert not truncated
    assert reward == 1.0
    assert info["is_success"]
    assert info["caption"] == ""
    assert_observations_equal(observation, observation_before)


def test_truncates_after_max_turns():
    env = make_env(max_turns=3, reveal_target=True)
    _, info = env.reset(seed=4)
    target = env.catalog_features.features[env.catalog.index_of(info["target_id"])]
    steps = 0
    truncated = False
    while not truncated:
        # Point away from the target so it is never found.
        _, _, terminated, truncated, _ = env.step(-target)
        assert not terminated
        steps += 1
    assert steps == 3


def test_turn_counts_captions():
    env = make_env(max_turns=3)
    observation, _ = env.reset(seed=5, options={"target": env.catalog.item_ids[0]})
    turns = [int(observation["turn"])]
    query = -env.catalog_features.features[0]
    for _ in range(3):
        observation, *_ = env.step(query)
        turns.append(int(observation["turn"]))
    assert turns == [1, 2, 3, 3]


def test_query_outside_box_accepted():
    env = make_env()
    env.reset(seed=0)
    _, reward, *_ = env.step(np.full(16, 7.5, dtype=np.float64))
    assert 0.0 < reward <= 1.0


def test_huge_query_matches_float64_reference():
    env = make_env(reveal_target=True)
    _, info = env.reset(seed=6)
    query = np.random.default_rng(2).normal(size=16).astype(np.float32) * np.float32(1e30)
    _, _, _, _, info = env.step(query)
    # Exact rational arithmetic: |x|^2 - 2 q.x orders items like the Euclidean distance to q.
    distances = np.array(
        [[float(sum(Fraction(float(x)) * (Fraction(float(x)) - 2 * Fraction(float(q))) for x, q in zip(row, query)))
          for row in split_features(env)]]
    )
    target_column = env.catalog.indices("train").tolist().index(env.catalog.index_of(info["target_id"]))
    assert info["target_rank"] == reference_target_ranks(distances, np.array([target_column]))[0]


def test_topk_candidates_are_nearest_unshown():
    env = make_env(action_type="topk", top_k=4)
    observation, info = env.reset(seed=0)
    features = split_features(env)
    shown_feature = env.catalog_features.features[info["shown_index"]]
    order = np.argsort(np.linalg.norm(features - shown_feature, axis=1), kind="stable")
    ids = [env.catalog.item_ids[i] for i in env.catalog.indices("train")]
    expected = [ids[i] for i in order if ids[i] != info["shown_id"]][:4]
    assert env.candidate_ids == expected
    assert np.allclose(observation["candidates"][0], features[order[1]])


def test_topk_action_shows_candidate():
    env = make_env(action_type="topk", top_k=4)
    env.reset(seed=0)
    chosen = env.candidate_ids[2]
    _, _, _, _, info = env.step(2)
    assert info["shown_id"] == chosen


def test_topk_candidate_policy_query():
    catalog_kwargs = make_env_kwargs()
    features = catalog_kwargs["features"]
    fixed_query = features.features[0]
    seen_batches = []

    def policy(observations):
        seen_batches.append(observations["tokens"].shape)
        return np.repeat(fixed_query[None, :], len(observations["turn"]), axis=0)

    env = FashionDialogEnv(action_type="topk", top_k=3, candidate_policy=policy, **catalog_kwargs)
    env.reset(seed=0)
    train = env.catalog.indices("train")
    order = np.argsort(np.linalg.norm(features.features[train] - fixed_query, axis=1), kind="stable")
    shown = set(env.shown_ids)
    expected = [env.catalog.item_ids[train[i]] for i in order if env.catalog.item_ids[train[i]] not in shown][:3]
    assert env.candidate_ids == expected
    assert seen_batches == [(1, 5, 8)]


# ----------------------------------------------------------------------------- options and seeding


def test_options_by_id():
    env = make_env(reveal_target=True)
    ids = [env.catalog.item_ids[i] for i in env.catalog.indices("train")]
    _, info = env.reset(seed=0, options={"target": ids[3], "initial": ids[7]})
    assert info["target_id"] == ids[3]
    assert info["shown_id"] == ids[7]


def test_options_by_catalog_index():
    env = make_env(split="val", reveal_target=True)
    val = env.catalog.indices("val")
    _, info = env.reset(seed=0, options={"target": int(val[1]), "initial": int(val[0])})
    assert info["target_id"] == env.catalog.item_ids[val[1]]
    assert info["shown_index"] == val[0]


def test_options_target_only():
    env = make_env(reveal_target=True)
    target = env.catalog.item_ids[env.catalog.indices("train")[0]]
    for seed in range(10):
        _, info = env.reset(seed=seed, options={"target": target})
        assert info["target_id"] == target
        assert info["shown_id"] != target


def test_seeded_reset_repeats_episodes():
    env = make_env()
    first = [env.reset(seed=0)[1]["shown_id"]] + [env.reset()[1]["shown_id"] for _ in range(5)]
    second = [env.reset(seed=0)[1]["shown_id"]] + [env.reset()[1]["shown_id"] for _ in range(5)]
    assert first == second


@pytest.mark.parametrize("action_type", MODES)
def test_two_envs_side_by_side(action_type):
    first, second = make_env(action_type=action_type), make_env(action_type=action_type)
    actions = np.random.default_rng(0)
    observation_a, info_a = first.reset(seed=11)
    observation_b, info_b = second.reset(seed=11)
    assert_observations_equal(observation_a, observation_b)
    for _ in range(30):
        action = first.action_space.sample() if action_type == "query" else int(actions.integers(5))
        if action_type == "query":
            action = actions.normal(size=16).astype(np.float32)
        result_a = first.step(action)
        result_b = second.step(action)
        assert_observations_equal(result_a[0], result_b[0])
        assert result_a[1:] == result_b[1:]
        if result_a[2] or result_a[3]:
            assert_observations_equal(first.reset()[0], second.reset()[0])


def test_different_seeds_differ():
    env = make_env()
    assert env.reset(seed=0)[1] != env.reset(seed=1)[1]


def test_fallback_simulator_same_episodes():
    kwargs = make_env_kwargs()
    plain = FashionDialogEnv(**{**kwargs, "simulator": PlainSimulator(kwargs["catalog"])})
    seeded = FashionDialogEnv(**kwargs)
    assert plain.reset(seed=3)[1] == seeded.reset(seed=3)[1]


# ----------------------------------------------------------------------------- misuse


def started_env(**overrides) -> FashionDialogEnv:
    env = make_env(**overrides)
    env.reset(seed=0)
    return env


def ended_env() -> FashionDialogEnv:
    env = make_env(max_turns=1)
    env.reset(seed=0)
    env.step(np.zeros(16, dtype=np.float32))
    return env


STEP_MISUSE = [
    ("before_reset", lambda: make_env(), np.zeros(16, np.float32), EnvUsageError, "before reset()"),
    ("after_end", ended_env, np.zeros(16, np.float32), EnvUsageError, "after the episode ended"),
    ("short_query", started_env, np.zeros(15, np.float32), ConfigError, "shape (16,), got shape (15,)"),
    ("matrix_query", started_env, np.zeros((2, 16), np.float32), ConfigError, "got shape (2, 16)"),
    ("nan_query", started_env, np.r_[np.zeros(15), np.nan].astype(np.float32), ConfigError, "non-finite value nan at index 15"),
    ("inf_query", started_env, np.r_[np.inf, np.zeros(15)], ConfigError, "non-finite value inf at index 0"),
    ("float32_overflow", started_env, np.r_[np.zeros(15), 1e300], ConfigError, "outside the float32 range"),
    ("text_query", started_env, np.array(["a"] * 16), ConfigError, "numeric array"),
    ("complex_query", started_env, np.ones(16, dtype=complex), ConfigError, "real-valued numeric array"),
    ("topk_out_of_range", lambda: started_env(action_type="topk", top_k=3), 3, ConfigError, "outside [0, 3)"),
    ("topk_float", lambda: started_env(action_type="topk", top_k=3), 1.5, ConfigError, "candidate index"),
]


@pytest.mark.parametrize(
    "make, action, error, fragment", [case[1:] for case in STEP_MISUSE], ids=[case[0] for case in STEP_MISUSE]
)
def test_step_misuse(make, action, error, fragment):
    env = make()
    with pytest.raises(error, match=None) as caught:
        env.step(action)
    assert fragment in str(caught.value)


RESET_MISUSE = [
    ("unknown_id", {"target": "nope"}, ConfigError, "'nope' is not an item id"),
    ("id_in_other_split", {"initial": "item00059"}, ConfigError, "not an item id of the 'train' split"),
    ("index_in_other_split", {"target": 59}, ConfigError, "not the catalog index"),
    ("same_pair", {"target": "item00001", "initial": "item00001"}, ConfigError, "same item"),
    ("unknown_key", {"goal": "item00001"}, ConfigError, "unknown reset option(s) ['goal']"),
    ("float_id", {"target": 1.0}, ConfigError, "must be an item id (str) or a catalog index (int)"),
    ("options_list", ["target"], ConfigError, "reset options must be a dict"),
]


@pytest.mark.parametrize(
    "options, error, fragment", [case[1:] for case in RESET_MISUSE], ids=[case[0] for case in RESET_MISUSE]
)
def test_reset_misuse(options, error, fragment):
    env = make_env()
    with pytest.raises(error) as caught:
        env.reset(seed=0, options=options)
    assert fragment in str(caught.value)


def empty_split_catalog() -> TinyCatalog:
    return TinyCatalog(num_items=30, splits=(0.0, 0.5))


CONSTRUCTION_MISUSE = [
    ("empty_split", lambda: {"catalog": (c := empty_split_catalog()), "features": make_features(c)}, DataError, "has no items"),
    ("split_too_small", lambda: {"max_turns": 40}, ConfigError, "needs at least 41"),
    ("topk_split_too_small", lambda: {"action_type": "topk", "top_k": 34}, ConfigError, "needs at least 39"),
    ("bad_action_type", lambda: {"action_type": "vector"}, ConfigError, "action_type must be one of"),
    ("bad_split", lambda: {"split": "dev"}, ConfigError, "split must be one of"),
    ("zero_turns", lambda: {"max_turns": 0}, ConfigError, "max_turns must be a positive integer"),
    ("bad_render_mode", lambda: {"render_mode": "human"}, ConfigError, "render_mode must be None or one of"),
    ("wrong_category", lambda: {"category": "shirt"}, ConfigError, "is a 'dress' catalog"),
    ("features_rows", lambda: {"features": make_features(TinyCatalog(20))}, ConfigError, "has 20 rows"),
    ("simulator_object", lambda: {"simulator": object()}, ConfigError, "simulator must be a simulator name"),
]


@pytest.mark.parametrize(
    "overrides, error, fragment", [case[1:] for case in CONSTRUCTION_MISUSE], ids=[case[0] for case in CONSTRUCTION_MISUSE]
)
def test_construction_misuse(overrides, error, fragment):
    kwargs = make_env_kwargs()
    extra = overrides()
    if "catalog" in extra:
        kwargs["simulator"] = PlainSimulator(extra["catalog"])
    with pytest.raises(error) as caught:
        FashionDialogEnv(**{**kwargs, **extra})
    assert fragment in str(caught.value)


# ----------------------------------------------------------------------------- rendering and registration


def test_render_ansi_transcript():
    env = make_env(render_mode="ansi")
    _, info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(np.zeros(16, dtype=np.float32))
    lines = env.render().splitlines()
    assert len(lines) == 3
    assert info["caption"] in lines[1]
    assert step_info["shown_id"] in lines[2]
    assert f"target rank {step_info['target_rank']}" in lines[2]


def test_render_rgb_array():
    env = make_env(render_mode="rgb_array")
    env.reset(seed=0)
    picture = env.render()
    assert picture.dtype == np.uint8
    assert picture.ndim == 3
    assert picture.shape[2] == 3


def test_render_without_mode_warns():
    env = make_env()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None


def test_registered_on_import():
    assert fiq_env.ENV_ID in gym.registry


def test_make_from_fresh_interpreter(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import gymnasium as gym
        sys.path.insert(0, "tests")
        from env_fixtures import make_env_kwargs
        env = gym.make("fiq_env:FashionIQ/Dialog-v0", max_turns=2, **make_env_kwargs())
        observation, info = env.reset(seed=0)
        print(type(env.unwrapped).__name__, int(observation["turn"]))
        """
    )
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["FashionDialogEnv", "1"]


@pytest.mark.slow
def test_default_components_integration():
    synthetic = pytest.importorskip("fiq_env.catalog.synthetic", reason="the synthetic catalog is not written yet")
    encoder = pytest.importorskip("fiq_env.encoder", reason="the image encoder is not written yet")
    pytest.importorskip("simulators.template", reason="the template simulator is not written yet")

    catalog = synthetic.SyntheticCatalog(category="dress", num_items=120, seed=0, image_size=32)
    config = encoder.EncoderConfig.preset("cpu", epochs=1, image_size=32, batch_size=64)
    features = encoder.encode_catalog(catalog, config, progress=False)
    env = gym.make("FashionIQ/Dialog-v0", catalog=catalog, features=features, simulator="template")
    observation, info = env.reset(seed=0)
    assert env.observation_space.contains(observation)
    assert info["caption"]
    observation, reward, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(observation)
    assert 0.0 < reward <= 1.0


def test_token_cache_matches_vocabulary():
    env = make_env()
    core = env._core
    vocabulary = env.simulator.vocabulary
    for caption in ["Is more RED, and darker.", "is  more\tblue", "is more floral and lighter and not striped sleeves", ""]:
        assert np.array_equal(core._encode(caption), vocabulary.encode(caption, 8)), caption
