"""Tests of the retriever agents, their registry, checkpoints and batched dialog rollouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import agents
from agent_helpers import agent_sizes, make_data, one_torch_thread  # noqa: F401 (autouse fixture)
from agents.base import Retriever, RetrieverConfig, attribute_word_ids, observation_sizes, turn_mask
from agents.rollout import DialogBatch, run_dialogs
from agents.transformer import TransformerConfig, TransformerRetriever
from fiq_env.errors import CheckpointError, ConfigError, UnknownNameError
from fiq_env.text import UNK_ID, Vocabulary

DATA = make_data(num_items=40)
SIZES = agent_sizes(DATA)


def random_observation(batch: int, turn: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    turns, length, dim, top_n = SIZES["max_turns"], SIZES["caption_length"], SIZES["feature_dim"], SIZES["top_n"]
    return {
        "tokens": torch.randint(0, SIZES["vocab_size"], (batch, turns, length), generator=generator),
        "features": torch.nn.functional.normalize(torch.randn(batch, turns, dim, generator=generator), dim=-1),
        "attributes": torch.randint(0, SIZES["num_attributes"] + 1, (batch, turns, top_n), generator=generator),
        "turn": torch.full((batch,), turn, dtype=torch.long),
    }


def make_agent(name: str) -> Retriever:
    torch.manual_seed(0)
    return agents.make(name, preset="tiny", **SIZES).eval()


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("name", agents.names())
def test_forward_shape(name: str, batch: int) -> None:
    agent = make_agent(name)
    query = agent(random_observation(batch, turn=3))
    assert query.shape == (batch, SIZES["feature_dim"])
    assert torch.isfinite(query).all()


@pytest.mark.parametrize("name", agents.names())
def test_act_single_and_batched(name: str) -> None:
    agent = make_agent(name)
    batched = {key: value.numpy() for key, value in random_observation(3, turn=2).items()}
    single = {key: value[0] for key, value in batched.items()}
    assert agent.act(batched).shape == (3, SIZES["feature_dim"])
    assert agent.act(single).shape == (SIZES["feature_dim"],)
    assert agent.act(single).dtype == np.float32


@pytest.mark.parametrize("name", ["transformer", "transformer_attr", "rnn", "last_image"])
@pytest.mark.parametrize("turn", [1, 3])
def test_future_turns_ignored(name: str, turn: int) -> None:
    agent = make_agent(name)
    obs = random_observation(4, turn=turn, seed=1)
    changed = {key: value.clone() for key, value in obs.items()}
    other = random_observation(4, turn=turn, seed=2)
    for key in ("tokens", "features", "attributes"):
        changed[key][:, turn:] = other[key][:, turn:]
    with torch.no_grad():
        assert torch.allclose(agent(obs), agent(changed), atol=1e-5)


@pytest.mark.parametrize("name", ["transformer", "transformer_attr", "rnn"])
def test_past_turns_used(name: str) -> None:
    agent = make_agent(name)
    obs = random_observation(4, turn=3, seed=1)
    changed = {key: value.clone() for key, value in obs.items()}
    changed["tokens"][:, 0] = random_observation(4, turn=3, seed=2)["tokens"][:, 0]
    with torch.no_grad():
        assert not torch.allclose(agent(obs), agent(changed), atol=1e-5)


def test_attributes_only_reach_attr_variant() -> None:
    obs = random_observation(4, turn=3, seed=1)
    changed = {**obs, "attributes": random_observation(4, turn=3, seed=2)["attributes"]}
    plain, with_attributes = make_agent("transformer"), make_agent("transformer_attr")
    with torch.no_grad():
        assert torch.allclose(plain(obs), plain(changed))
        assert not torch.allclose(with_attributes(obs), with_attributes(changed), atol=1e-5)


def test_transformer_attr_is_flag() -> None:
    agent = make_agent("transformer_attr")
    assert type(agent) is TransformerRetriever
    assert agent.config.use_attributes is True


def test_transformer_attr_flag_overridable() -> None:
    agent = agents.make("transformer_attr", preset="tiny", use_attributes=False, **SIZES)
    assert agent.config.use_attributes is False


def test_make_by_import_path() -> None:
    agent = agents.make("agents.transformer:TransformerRetriever", preset="tiny", **SIZES)
    assert isinstance(agent, TransformerRetriever)


@pytest.mark.parametrize(
    ("name", "message"),
    [("transfomer", "Did you mean 'transformer'"), ("agents.transformer:Nope", "no callable 'Nope'"), ("no_such_module:X", "cannot import")],
)
def test_unknown_names(name: str, message: str) -> None:
    with pytest.raises(UnknownNameError, match=message):
        agents.make(name, **SIZES)


def test_register_new_agent() -> None:
    @agents.register("test_mean_image")
    class MeanImage(Retriever):
        def forward(self, obs):
            valid = turn_mask(obs["turn"], self.config.max_turns)
            return (obs["features"] * valid[..., None]).sum(dim=1) / valid.sum(dim=1, keepdim=True)

    agent = agents.make("test_mean_image", **SIZES)
    assert agent(random_observation(2, turn=2)).shape == (2, SIZES["feature_dim"])
    assert "test_mean_image" in agents.names()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"preset": "huge"}, "unknown TransformerConfig preset"),
        ({"hidden_size": 8}, "no field"),
        ({"hidden_dim": 30, "num_heads": 4}, "divisible"),
        ({"use_attributes": True, "num_attributes": 0}, "num_attributes"),
        ({"turn_position": "sinusoidal"}, "turn_position must be one of"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"feature_dim": 0}, "positive integer"),
    ],
)
def test_bad_config(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TransformerRetriever(**{**SIZES, **overrides})


@pytest.mark.parametrize("name", [name for name in agents.names() if name != "transformer_attr"])
def test_catalog_without_attributes(name: str) -> None:
    torch.manual_seed(0)
    agent = agents.make(name, preset="tiny", **{**SIZES, "num_attributes": 0, "top_n": 0}).eval()
    obs = random_observation(2, turn=2)
    obs["attributes"] = torch.zeros(2, SIZES["max_turns"], 0, dtype=torch.long)
    query = agent(obs)
    assert query.shape == (2, SIZES["feature_dim"])
    assert torch.isfinite(query).all()


@pytest.mark.parametrize("overrides", [{"top_n": 0}, {"num_attributes": 0}])
def test_attr_variant_needs_attributes(overrides: dict) -> None:
    with pytest.raises(ConfigError, match="use_attributes=False"):
        agents.make("transformer_attr", preset="tiny", **{**SIZES, **overrides})


@pytest.mark.parametrize(("field", "value"), [("top_n", -1), ("num_attributes", -2), ("top_n", 1.5)])
def test_negative_attribute_sizes_rejected(field: str, value) -> None:
    with pytest.raises(ConfigError, match=f"{field} must be 0 or a positive integer"):
        RetrieverConfig(**{**SIZES, field: value})


def test_attribute_word_ids_tokenize_names() -> None:
    vocabulary = Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>", "short", "sleeves", "v-neck"])
    rows = attribute_word_ids(["short sleeves", "V-neck", "polka dot", "!"], vocabulary)
    assert rows[0] == [4, 5]
    assert rows[1] == [6]
    assert rows[2] == [UNK_ID, UNK_ID]
    assert rows[3] == [UNK_ID]


def test_observation_sizes_include_attribute_words() -> None:
    sizes = observation_sizes(DATA.features, DATA.vocabulary)
    assert len(sizes["attribute_word_ids"]) == sizes["num_attributes"]
    assert TransformerConfig(**sizes).attribute_word_ids == sizes["attribute_word_ids"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [([[4]], "has 1 rows but num_attributes is 12"), ([[4]] * 11 + [[]], r"\[11\] = \[\] must be"), ([[999]] * 12, "below vocab_size")],
)
def test_bad_attribute_word_ids(rows: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RetrieverConfig(**{**SIZES, "attribute_word_ids": rows})


def attribute_words_agent() -> TransformerRetriever:
    """Return a transformer_attr whose attribute a is named by caption token 4 + a, except the last (two words)."""
    rows = [[4 + a] for a in range(SIZES["num_attributes"] - 1)] + [[4, 5]]
    torch.manual_seed(0)
    return agents.make("transformer_attr", preset="tiny", **SIZES, attribute_word_ids=rows).eval()


def test_attributes_share_word_embeddings() -> None:
    encoder = attribute_words_agent().history_encoder
    words = encoder.word_embedding.weight
    vectors = encoder.attribute_vectors(torch.tensor([0, 1, 2, SIZES["num_attributes"]]))
    assert torch.equal(vectors[0], torch.zeros_like(vectors[0]))
    assert torch.allclose(vectors[1], words[4])
    assert torch.allclose(vectors[2], words[5])
    assert torch.allclose(vectors[3], (words[4] + words[5]) / 2)
    assert not hasattr(encoder, "attribute_embedding")


def test_attribute_words_round_trip(tmp_path) -> None:
    agent = attribute_words_agent()
    agent.save(tmp_path / "agent")
    loaded = agents.load(tmp_path / "agent").eval()
    obs = random_observation(3, turn=4)
    assert loaded.config.attribute_word_ids == agent.config.attribute_word_ids
    with torch.no_grad():
        assert torch.equal(agent(obs), loaded(obs))


def test_recency_positions_count_back_from_latest() -> None:
    encoder = make_agent("transformer").history_encoder
    positions = encoder.turn_positions(torch.tensor([1, 3, 5]), 5)
    assert positions[:, :1].tolist() == [[0], [2], [4]]
    assert positions[1, :3].tolist() == [2, 1, 0]
    assert positions[2].tolist() == [4, 3, 2, 1, 0]


def test_old_config_keeps_absolute_positions() -> None:
    saved = TransformerConfig(**SIZES).to_dict()
    del saved["turn_position"], saved["pooling"]
    loaded = TransformerConfig.from_dict(saved)
    assert loaded.turn_position == "absolute"
    assert loaded.pooling == "mean"


def test_old_config_keeps_attribute_tokens() -> None:
    saved = TransformerConfig(**SIZES, use_attributes=True).to_dict()
    del saved["attribute_fusion"]
    assert TransformerConfig.from_dict(saved).attribute_fusion == "tokens"


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"pooling": "mean", "turn_position": "absolute"},
        {"use_attributes": True},
        {"use_attributes": True, "attribute_fusion": "tokens", "pooling": "mean"},
    ],
)
def test_mixed_turn_batch_matches_full_history(overrides: dict) -> None:
    # A batch mixing turns is encoded per turn group, over the turns each group reached.
    # The result must equal encoding the whole padded history, and each dialog alone.
    torch.manual_seed(0)
    agent = agents.make("transformer", preset="tiny", **SIZES, **overrides).eval()
    obs = random_observation(6, turn=1, seed=3)
    obs["turn"] = torch.tensor([3, 1, 5, 3, 2, 5])
    encoder = agent.history_encoder
    with torch.no_grad():
        grouped = encoder(obs)
        padded = encoder._encode(obs, SIZES["max_turns"], obs["turn"])
        alone = torch.cat([encoder({key: value[i : i + 1] for key, value in obs.items()}) for i in range(6)])
    assert torch.allclose(grouped, padded, atol=1e-5)
    assert torch.allclose(grouped, alone, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name", ["transformer", "transformer_attr"])
def test_empty_batch_gives_empty_queries(name: str, training: bool) -> None:
    obs = {key: value[:0] for key, value in random_observation(2, turn=2).items()}
    agent = agents.make(name, preset="cpu", **SIZES).train(training)
    assert agent(obs).shape == (0, SIZES["feature_dim"])


@pytest.mark.parametrize(("fusion", "extra_tokens"), [("image", 0), ("tokens", SIZES["top_n"])])
def test_attribute_fusion_sets_sequence_length(fusion: str, extra_tokens: int) -> None:
    torch.manual_seed(0)
    agent = agents.make("transformer_attr", preset="tiny", attribute_fusion=fusion, **SIZES)
    assert agent.history_encoder.tokens_per_turn() == SIZES["caption_length"] + 1 + extra_tokens


def test_absolute_positions_are_turn_indices() -> None:
    torch.manual_seed(0)
    agent = agents.make("transformer", preset="tiny", turn_position="absolute", **SIZES)
    positions = agent.history_encoder.turn_positions(torch.tensor([1, 3]), 5)
    assert positions.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("pooling", ["query_token", "mean"])
def test_residual_query_starts_from_latest_image(pooling: str) -> None:
    agent = agents.make("transformer", preset="tiny", pooling=pooling, residual_query=True, **SIZES).eval()
    torch.nn.init.zeros_(agent.query_head.weight)
    obs = random_observation(2, turn=3)
    with torch.no_grad():
        assert torch.allclose(agent(obs), obs["features"][:, 2], atol=1e-6)


@pytest.mark.parametrize("pooling", ["query_token", "mean"])
def test_turn_order_changes_query(pooling: str) -> None:
    # The same two turns in the other order must give another query.
    torch.manual_seed(0)
    agent = agents.make("transformer", preset="tiny", pooling=pooling, **SIZES).eval()
    obs = random_observation(1, turn=2)
    swapped = {key: value.clone() for key, value in obs.items()}
    for key in ("tokens", "features", "attributes"):
        swapped[key][:, [0, 1]] = obs[key][:, [1, 0]]
    with torch.no_grad():
        assert not torch.allclose(agent(obs), agent(swapped), atol=1e-5)


def test_wrong_history_shape() -> None:
    agent = make_agent("transformer")
    obs = random_observation(2, turn=1)
    obs["tokens"] = obs["tokens"][:, :, :4]
    with pytest.raises(ConfigError, match="caption_length"):
        agent(obs)


@pytest.mark.parametrize("name", agents.names())
def test_checkpoint_round_trip(name: str, tmp_path) -> None:
    agent = make_agent(name)
    agent.vocabulary = DATA.vocabulary
    agent.save(tmp_path / "agent")
    loaded = agents.load(tmp_path / "agent").eval()
    obs = random_observation(3, turn=4)
    assert type(loaded) is type(agent)
    assert loaded.config == agent.config
    assert loaded.vocabulary.words == DATA.vocabulary.words
    if name != "random":
        with torch.no_grad():
            assert torch.equal(agent(obs), loaded(obs))


def test_load_checks_class(tmp_path) -> None:
    make_agent("rnn").save(tmp_path / "rnn")
    with pytest.raises(ConfigError, match="not a TransformerRetriever"):
        TransformerRetriever.load(tmp_path / "rnn")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("weights", "not a valid safetensors"),
        ("class", "not an agents.base.Retriever subclass"),
        ("config", "does not fit"),
        ("shape", "do not match"),
    ],
)
def test_load_damaged_checkpoint(damage: str, message: str, tmp_path) -> None:
    folder = tmp_path / "agent"
    make_agent("transformer").save(folder)
    document = json.loads((folder / "config.json").read_text())
    if damage == "weights":
        (folder / "weights.safetensors").write_bytes(b"not a tensor file")
    elif damage == "class":
        document["class"] = "json:JSONDecoder"
    elif damage == "config":
        document["config"]["unknown_field"] = 1
    elif damage == "shape":
        document["config"]["hidden_dim"] = 64
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=message):
        agents.load(folder)


def test_random_agent_seeding() -> None:
    obs = random_observation(3, turn=1)
    first, second, other = (agents.make("random", seed=s, **SIZES) for s in (5, 5, 6))
    query = first(obs)
    assert torch.equal(query, second(obs))
    assert not torch.equal(query, other(obs))
    assert torch.allclose(query.norm(dim=-1), torch.ones(3))


def test_last_image_returns_latest_features() -> None:
    obs = random_observation(2, turn=3)
    query = make_agent("last_image")(obs)
    assert torch.equal(query, obs["features"][:, 2])


def test_turn_mask_values() -> None:
    mask = turn_mask(torch.tensor([0, 2, 5]), 5)
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float32)
    assert torch.equal(mask, expected)


def test_config_round_trip() -> None:
    config = TransformerConfig.from_preset("paper", **SIZES)
    assert TransformerConfig.from_dict(config.to_dict()) == config
    assert config.num_layers == 6
    with pytest.raises(ConfigError, match="unknown field"):
        RetrieverConfig.from_dict({"bogus": 1})


# Rollouts ------------------------------------------------------------------


def test_rollout_never_repeats_items() -> None:
    targets, initial = DATA.sample_start_pairs(8, np.random.default_rng(0))
    rollout = run_dialogs(make_agent("random"), DATA, targets, initial, np.random.default_rng(0))
    for row, items in enumerate(rollout.shown_items):
        shown = items[: int(rollout.active[row].sum()) + 1]
        assert len(set(shown.tolist())) == len(shown)


def test_rollout_ranks_match_brute_force() -> None:
    targets, initial = DATA.sample_start_pairs(6, np.random.default_rng(1))
    rollout = run_dialogs(make_agent("transformer"), DATA, targets, initial, np.random.default_rng(0))
    features = DATA.features.features
    for row in range(len(targets)):
        for turn in range(DATA.max_turns):
            if not rollout.active[row, turn]:
                continue
            distances = ((features - rollout.queries[row, turn].numpy()) ** 2).sum(axis=1)
            expected = int((distances < distances[targets[row]] - 1e-6).sum())
            assert abs(int(rollout.ranks[row, turn]) - expected) <= 1


def test_rollout_observation_layout() -> None:
    targets, initial = DATA.sample_start_pairs(3, np.random.default_rng(2))
    rollout = run_dialogs(make_agent("last_image"), DATA, targets, initial, np.random.default_rng(0))
    first, third = rollout.observations[0], rollout.observations[2]
    assert first["turn"].tolist() == [1, 1, 1]
    assert torch.equal(first["features"][:, 0], torch.from_numpy(DATA.features.features[initial]))
    assert (first["tokens"][:, 1:] == 0).all()
    assert third["turn"].tolist() == [3, 3, 3]


def test_dialog_ends_when_target_shown() -> None:
    targets, initial = DATA.sample_start_pairs(2, np.random.default_rng(3))
    dialogs = DialogBatch(DATA, targets, initial, np.random.default_rng(0))
    exact = torch.from_numpy(DATA.features.features[targets])
    first_ranks = dialogs.step(exact)
    later_ranks = dialogs.step(torch.zeros_like(exact))
    assert first_ranks.tolist() == [0, 0]
    assert dialogs.done.tolist() == [True, True]
    assert later_ranks.tolist() == [0, 0]
    assert dialogs.turn.tolist() == [1, 1]


def test_rollout_rejects_items_outside_split() -> None:
    with pytest.raises(ConfigError, match="not in the 'train' split"):
        DialogBatch(DATA, np.array([1000]), np.array([0]), np.random.default_rng(0))
