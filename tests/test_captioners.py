"""Transformer and RNN captioners: shapes, learning, checkpoints, resumption, metrics and loading by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import simulators
from fiq_env.catalog import AttributeGroup, CaptionPair, Catalog, CatalogReport, labels_from_groups
from fiq_env.errors import CheckpointError, ConfigError
from fiq_env.features import CatalogFeatures
from fiq_env.text import Vocabulary
from simulators.base import UserSimulator
from simulators.caption_metrics import attribute_accuracy, caption_scores
from simulators.captioner import (
    CaptionInputs,
    LearnedCaptioner,
    attribute_word_ids,
    generate_captions,
    teacher_forcing_tensors,
)
from simulators.captioner_checkpoint import load_checkpoint, save_checkpoint
from simulators.rnn_captioner import RNNCaptionerConfig
from simulators.training import (
    HumanCaptions,
    SimulatorCaptions,
    TrainingConfig,
    build_model,
    train_captioner,
)
from simulators.transformer_captioner import TransformerCaptioner, TransformerCaptionerConfig

COLOR = AttributeGroup("color", "color", ("red", "blue", "green", "black"))
LENGTH = AttributeGroup("length", "shape", ("mini", "knee length", "maxi"), ordered=True, more="longer", less="shorter")
MODEL_NAMES = ("transformer", "rnn")


class ToyCatalog(Catalog):
    """Items with a color and a length; the first two thirds are the training split."""

    source = "toy"

    def __init__(self, num_items: int = 60, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.category = "dress"
        self.item_ids = [f"item{i}" for i in range(num_items)]
        self.split_codes = np.where(np.arange(num_items) < num_items * 2 // 3, 0, 1).astype(np.int8)
        self.groups = (COLOR, LENGTH)
        self.group_values = {
            "color": rng.integers(len(COLOR.values), size=num_items).astype(np.int16),
            "length": rng.integers(len(LENGTH.values), size=num_items).astype(np.int16),
        }
        self.attribute_names, self.attribute_types, self.labels = labels_from_groups(
            self.groups, self.group_values, num_items
        )
        self.label_mask = np.ones(num_items, dtype=bool)
        self.titles = None
        self.caption_pairs = []
        self.report = CatalogReport()
        self.seed = seed

    def load_image(self, index: int):
        raise NotImplementedError("the toy catalog has no images")

    def fingerprint_payload(self) -> dict:
        return {"items": len(self.item_ids), "seed": self.seed}


class ToyTeacher(UserSimulator):
    """Deterministic captions naming the target's color and length."""

    name = "toy"

    @property
    def vocabulary(self) -> Vocabulary:
        return Vocabulary.build(["is and"] + list(COLOR.values) + list(LENGTH.values))

    def _describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        catalog = self.catalog
        return [f"is {catalog.group_value('color', t)} and {catalog.group_value('length', t)}" for t in target]


def tiny_config(name: str):
    if name == "transformer":
        return TransformerCaptionerConfig(
            d_model=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1, feedforward_dim=64, dropout=0.0
        )
    return RNNCaptionerConfig(hidden_size=32, embedding_dim=16, dropout=0.0)


def tiny_training(**overrides) -> TrainingConfig:
    settings = dict(steps=10, batch_size=16, learning_rate=3e-3, warmup_steps=2, eval_every=5, checkpoint_every=5,
                    val_pairs=12, references_per_pair=2)
    return TrainingConfig(**{**settings, **overrides})


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run these tiny models on one thread: a second thread only adds contention on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def catalog() -> ToyCatalog:
    return ToyCatalog()


@pytest.fixture(scope="module")
def features(catalog: ToyCatalog) -> CatalogFeatures:
    rng = np.random.default_rng(1)
    scores = catalog.labels * 4.0 + rng.normal(size=catalog.labels.shape) * 0.1
    return CatalogFeatures.from_arrays(
        rng.normal(size=(len(catalog), 16)), scores, catalog.attribute_names,
        catalog_fingerprint=catalog.fingerprint(), encoder_key="toy-encoder",
    )


@pytest.fixture(scope="module")
def source(catalog: ToyCatalog) -> SimulatorCaptions:
    return SimulatorCaptions(catalog, ToyTeacher(catalog))


def pair_inputs(features: CatalogFeatures, batch: int = 3) -> CaptionInputs:
    return CaptionInputs.from_features(features, np.arange(batch), np.arange(batch) + 20)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_logits_shape(name: str, features: CatalogFeatures, source: SimulatorCaptions) -> None:
    model = build_model(name, tiny_config(name), source.vocabulary, features)
    tokens = torch.randint(4, len(source.vocabulary), (3, 5))

    logits = model.logits(model.encode(pair_inputs(features)), tokens)

    assert logits.shape == (3, 5, len(source.vocabulary))


def test_transformer_memory_tokens(features: CatalogFeatures, source: SimulatorCaptions) -> None:
    with_attributes = build_model("transformer", tiny_config("transformer"), source.vocabulary, features)
    config = tiny_config("transformer")
    config.use_attributes = False
    without = build_model("transformer", config, source.vocabulary, features)

    assert with_attributes.memory_tokens(pair_inputs(features)).shape[1] == 3 + 2 * features.top_n
    assert without.memory_tokens(pair_inputs(features)).shape[1] == 3


def test_transformer_causal_prefix(features: CatalogFeatures, source: SimulatorCaptions) -> None:
    model = build_model("transformer", tiny_config("transformer"), source.vocabulary, features).eval()
    memory = model.encode(pair_inputs(features))
    tokens = torch.randint(4, len(source.vocabulary), (3, 6))

    full = model.logits(memory, tokens)
    prefix = model.logits(memory, tokens[:, :3])

    assert torch.allclose(full[:, :3], prefix, atol=1e-5)


def test_paper_preset_size() -> None:
    config = TransformerCaptionerConfig.preset("paper")

    assert (config.num_encoder_layers, config.num_decoder_layers, config.d_model, config.num_heads) == (6, 6, 256, 8)


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (TransformerCaptionerConfig, {"d_model": 30, "num_heads": 4}, "multiple"),
        (TransformerCaptionerConfig, {"dropout": 1.5}, "dropout"),
        (TransformerCaptionerConfig.preset, {"name": "huge"}, "preset"),
        (RNNCaptionerConfig, {"cell": "transformer"}, "cell"),
        (TrainingConfig, {"steps": 0}, "steps"),
    ],
)
def test_config_rejects(factory, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        factory(**kwargs)


def test_teacher_forcing_tensors() -> None:
    vocabulary = Vocabulary.build(["is red and long"])

    inputs, targets = teacher_forcing_tensors(vocabulary, ["is red", "is red and long"], max_words=3)

    assert inputs[0].tolist() == [1, vocabulary.id_of("is"), vocabulary.id_of("red"), 0]
    assert targets[0].tolist() == [vocabulary.id_of("is"), vocabulary.id_of("red"), 2, 0]
    assert targets[1].tolist()[-1] == 2


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_untrained_captions_valid(name: str, strategy: str, catalog, features, source) -> None:
    model = build_model(name, tiny_config(name), source.vocabulary, features)
    simulator = LearnedCaptioner(catalog, features, model, source.vocabulary, strategy)

    captions = simulator.describe(np.arange(6), np.arange(6) + 30, np.random.default_rng(0))

    assert len(captions) == 6
    for caption in captions:
        assert len(caption.split()) <= model.max_words
        assert all(word in source.vocabulary for word in caption.split())
        assert "<" not in caption


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_describe_ignores_rng(strategy: str, catalog, features, source) -> None:
    model = build_model("transformer", tiny_config("transformer"), source.vocabulary, features)
    simulator = LearnedCaptioner(catalog, features, model, source.vocabulary, strategy)
    reference, target = np.arange(8), np.arange(8) + 25

    first = simulator.describe(reference, target, np.random.default_rng(0))
    second = simulator.describe(reference, target, np.random.default_rng(99))

    assert first == second


def test_sample_decoding_follows_rng(catalog, features, source) -> None:
    model = build_model("transformer", tiny_config("transformer"), source.vocabulary, features)
    simulator = LearnedCaptioner(catalog, features, model, source.vocabulary, "sample")
    reference, target = np.arange(8), np.arange(8) + 25

    first = simulator.describe(reference, target, np.random.default_rng(5))
    second = simulator.describe(reference, target, np.random.default_rng(5))

    assert first == second


def generator_states(rngs: list[np.random.Generator]) -> list[dict]:
    return [rng.bit_generator.state for rng in rngs]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize(
    ("strategy", "pairs"),
    [
        ("greedy", 32),
        ("beam", 16),
        pytest.param("greedy", 200, marks=pytest.mark.slow),
        pytest.param("beam", 100, marks=pytest.mark.slow),
    ],
)
def test_describe_rows_matches_one_pair_calls(name: str, strategy: str, pairs: int, catalog, features, source) -> None:
    # The cpu preset's real sizes: batched matrix products round differently
    # from one-row products, and this checks that no caption changes.
    config = TransformerCaptionerConfig.preset("cpu") if name == "transformer" else RNNCaptionerConfig.preset("cpu")
    model = build_model(name, config, source.vocabulary, features, seed=3)
    simulator = LearnedCaptioner(catalog, features, model, source.vocabulary, strategy)
    pair_rng = np.random.default_rng(11)
    reference = pair_rng.integers(len(catalog), size=pairs)
    target = pair_rng.integers(len(catalog), size=pairs)
    rngs = [np.random.default_rng(row) for row in range(pairs)]
    before = generator_states(rngs)

    batched = simulator.describe_rows(reference, target, rngs)
    one_pair = [simulator.describe(reference[i : i + 1], target[i : i + 1], np.random.default_rng(i))[0]
                for i in range(pairs)]

    mismatches = [i for i in range(pairs) if batched[i] != one_pair[i]]
    assert mismatches == []
    assert generator_states(rngs) == before


def test_describe_rows_sample_uses_each_rng(catalog, features, source) -> None:
    model = build_model("transformer", tiny_config("transformer"), source.vocabulary, features)
    simulator = LearnedCaptioner(catalog, features, model, source.vocabulary, "sample")
    reference, target = np.arange(6), np.arange(6) + 30
    rngs = [np.random.default_rng(row) for row in range(6)]
    copies = [np.random.default_rng(row) for row in range(6)]

    batched = simulator.describe_rows(reference, target, rngs)
    one_pair = [simulator.describe(reference[i : i + 1], target[i : i + 1], copies[i])[0] for i in range(6)]

    assert batched == one_pair
    assert generator_states(rngs) == generator_states(copies)


def test_describe_rows_rejects_bad_inputs(catalog, features, source) -> None:
    model = build_model("rnn", tiny_config("rnn"), source.vocabulary, features)
    simulator = LearnedCaptioner(catalog, features, model, source.vocabulary, "greedy")

    with pytest.raises(ConfigError, match="one generator per pair"):
        simulator.describe_rows(np.arange(3), np.arange(3) + 5, [np.random.default_rng(0)])
    with pytest.raises(ConfigError, match="outside the catalog"):
        simulator.describe_rows(np.array([0, len(catalog)]), np.array([1, 2]), [np.random.default_rng(0)] * 2)


def test_transformer_learns_toy_mapping(tmp_path: Path, catalog, features, source) -> None:
    model = build_model("transformer", tiny_config("transformer"), source.vocabulary, features)
    config = tiny_training(steps=150, batch_size=32, warmup_steps=5, eval_every=150, checkpoint_every=150, val_pairs=20)

    result = train_captioner(model, features, source, config, tmp_path, catalog=catalog, progress=False)

    assert result.losses[-1] < 0.2 * result.losses[0]
    assert result.metrics["attribute_accuracy"] > 80.0
    assert result.metrics["attribute_claims"] >= 20


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_checkpoint_round_trip(name: str, tmp_path: Path, catalog, features, source) -> None:
    model = build_model(name, tiny_config(name), source.vocabulary, features)
    train_captioner(model, features, source, tiny_training(steps=3), tmp_path, progress=False, tensorboard=False)
    reference, target = np.arange(10), np.arange(10) + 30

    loaded = load_checkpoint(tmp_path)

    assert loaded.step == 3
    assert generate_captions(loaded.model, loaded.vocabulary, features, reference, target, "beam") == \
        generate_captions(model, source.vocabulary, features, reference, target, "beam")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


class InterruptingSource(SimulatorCaptions):
    """Raises KeyboardInterrupt when asked for the batch of step ``stop_at``."""

    def __init__(self, catalog, teacher, stop_at: int) -> None:
        super().__init__(catalog, teacher)
        self.calls = 0
        self.stop_at = stop_at

    def train_batch(self, rng, batch_size):
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        return super().train_batch(rng, batch_size)


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def test_resume_matches_uninterrupted(tmp_path: Path, catalog, features) -> None:
    config = tiny_training(steps=10, checkpoint_every=5)
    config_tiny = tiny_config("transformer")
    config_tiny.dropout = 0.1  # dropout draws random numbers, so the saved random state matters
    teacher = ToyTeacher(catalog)

    straight = build_model("transformer", config_tiny, teacher.vocabulary, features)
    train_captioner(straight, features, SimulatorCaptions(catalog, teacher), config, tmp_path / "a", progress=False)

    interrupted = build_model("transformer", config_tiny, teacher.vocabulary, features)
    with pytest.raises(KeyboardInterrupt):
        train_captioner(interrupted, features, InterruptingSource(catalog, teacher, stop_at=7), config,
                        tmp_path / "b", progress=False)
    resumed = build_model("transformer", config_tiny, teacher.vocabulary, features, seed=123)
    result = train_captioner(resumed, features, SimulatorCaptions(catalog, teacher), config, tmp_path / "b",
                             progress=False)

    assert result.step == 10
    assert len(result.losses) == 5
    for key, value in straight.state_dict().items():
        assert torch.allclose(resumed.state_dict()[key], value, atol=1e-6), key
    assert scalar_steps(tmp_path / "b", "train/loss") == list(range(1, 11))


def test_resume_rejects_other_model(tmp_path: Path, features, source) -> None:
    model = build_model("rnn", tiny_config("rnn"), source.vocabulary, features)
    train_captioner(model, features, source, tiny_training(steps=2), tmp_path, progress=False, tensorboard=False)
    other = build_model("transformer", tiny_config("transformer"), source.vocabulary, features)

    with pytest.raises(CheckpointError, match="different model"):
        train_captioner(other, features, source, tiny_training(steps=4), tmp_path, progress=False, tensorboard=False)


def corrupt_weights(run_dir: Path) -> None:
    weights = next(run_dir.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))


def truncate_weights_unhashed(run_dir: Path) -> None:
    info = json.loads((run_dir / "captioner.json").read_text())
    info.pop("weights_sha256")
    (run_dir / "captioner.json").write_text(json.dumps(info))
    weights = next(run_dir.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])


def change_vocab_size(run_dir: Path) -> None:
    info = json.loads((run_dir / "captioner.json").read_text())
    info["dims"]["vocab_size"] += 1
    info["vocabulary"].append("extra")
    (run_dir / "captioner.json").write_text(json.dumps(info))


def break_json(run_dir: Path) -> None:
    (run_dir / "captioner.json").write_text("{not json")


def delete_weights(run_dir: Path) -> None:
    next(run_dir.glob("*.safetensors")).unlink()


@pytest.mark.parametrize(
    ("damage", "named_file"),
    [
        (corrupt_weights, ".safetensors"),
        (truncate_weights_unhashed, ".safetensors"),
        (change_vocab_size, "captioner.json"),
        (break_json, "captioner.json"),
        (delete_weights, ".safetensors"),
    ],
)
def test_damaged_checkpoint_rejected(damage, named_file: str, tmp_path: Path, features, source) -> None:
    model = build_model("rnn", tiny_config("rnn"), source.vocabulary, features)
    train_captioner(model, features, source, tiny_training(steps=2), tmp_path, progress=False, tensorboard=False)
    damage(tmp_path)

    with pytest.raises(CheckpointError, match=named_file):
        load_checkpoint(tmp_path)


def test_missing_checkpoint_rejected(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")


def test_save_keeps_one_weights_file(tmp_path: Path, features, source) -> None:
    model = build_model("rnn", tiny_config("rnn"), source.vocabulary, features)

    save_checkpoint(tmp_path, model, source.vocabulary, {}, step=1)
    save_checkpoint(tmp_path, model, source.vocabulary, {}, step=2)

    assert [p.name for p in tmp_path.glob("*.safetensors")] == ["captioner-00000002.safetensors"]


def test_make_loads_checkpoint(tmp_path: Path, catalog, features, source) -> None:
    model = build_model("transformer", tiny_config("transformer"), source.vocabulary, features)
    train_captioner(model, features, source, tiny_training(steps=2), tmp_path, progress=False, tensorboard=False)

    simulator = simulators.make("transformer", catalog=catalog, features=features, checkpoint=tmp_path,
                                decoding="beam")

    assert isinstance(simulator.model, TransformerCaptioner)
    assert simulator.describe([0, 1], [30, 31], np.random.default_rng(0)) == \
        generate_captions(model, source.vocabulary, features, np.array([0, 1]), np.array([30, 31]), "beam")


def test_make_rejects_other_model(tmp_path: Path, catalog, features, source) -> None:
    model = build_model("rnn", tiny_config("rnn"), source.vocabulary, features)
    train_captioner(model, features, source, tiny_training(steps=1), tmp_path, progress=False, tensorboard=False)

    with pytest.raises(CheckpointError, match="rnn"):
        simulators.make("transformer", catalog=catalog, features=features, checkpoint=tmp_path)


def test_make_trains_then_caches(catalog, features) -> None:
    settings = dict(catalog=catalog, features=features, model_config=tiny_config("rnn"),
                    training=tiny_training(steps=3), teacher=ToyTeacher(catalog), progress=False)

    trained = simulators.make("rnn", **settings)
    cached = simulators.make("rnn", **settings)

    assert trained.metadata["checkpoint"] == cached.metadata["checkpoint"]
    assert "metrics" in trained.metadata
    assert "metrics" not in cached.metadata
    assert trained.describe([0, 1], [30, 31], np.random.default_rng(0)) == \
        cached.describe([0, 1], [30, 31], np.random.default_rng(0))


def test_human_captions_source() -> None:
    catalog = ToyCatalog(num_items=30)
    catalog.caption_pairs = [
        CaptionPair("item0", "item1", ("is red", "is darker"), "train"),
        CaptionPair("item2", None, ("hidden target",), "test"),
        CaptionPair("item25", "item26", ("is blue", "is longer"), "val"),
    ]

    source = HumanCaptions(catalog)
    reference, target, captions = source.train_batch(np.random.default_rng(0), 4)
    validation = source.validation_set(np.random.default_rng(0), 10, 5)

    assert set(captions) <= {"is red", "is darker"}
    assert reference.tolist() == [0] * 4
    assert "hidden" not in source.vocabulary
    assert validation.references == [["is blue", "is longer"]]


def test_caption_scores_perfect_beats_wrong() -> None:
    references = [["is red and long", "is red"], ["has short sleeves", "is shorter"]]

    perfect = caption_scores(["is red and long", "has short sleeves"], references)
    wrong = caption_scores(["is blue", "has a belt"], references)

    assert perfect["bleu4"] > wrong["bleu4"]
    assert perfect["rouge_l"] > wrong["rouge_l"]
    assert perfect["cider"] > wrong["cider"]


def test_caption_scores_length_mismatch() -> None:
    with pytest.raises(ConfigError, match="reference"):
        caption_scores(["is red"], [])


def test_attribute_accuracy_cases(catalog: ToyCatalog) -> None:
    target = int(np.flatnonzero((catalog.group_values["color"] == 0) & (catalog.group_values["length"] == 1))[0])

    right = attribute_accuracy(catalog, ["is red and knee length"], [target])
    wrong = attribute_accuracy(catalog, ["is blue and maxi"], [target])
    negated = attribute_accuracy(catalog, ["is not red", "is not blue"], [target, target])
    none = attribute_accuracy(catalog, ["is darker"], [target])

    assert (right.correct, right.checked) == (2, 2)
    assert (wrong.correct, wrong.checked) == (0, 2)
    assert (negated.correct, negated.checked) == (1, 2)
    assert none.checked == 0


def test_cli_flags_from_configs() -> None:
    from simulators.train_cli import build_parser, field_help

    args = build_parser("rnn").parse_args(["--model", "rnn", "--steps", "7", "--cell", "lstm"])
    helps = field_help(TrainingConfig)

    assert args.steps == 7
    assert args.cell == "lstm"
    assert args.batch_size is None
    assert set(helps) == set(TrainingConfig.__dataclass_fields__)


def test_attribute_word_ids_table() -> None:
    vocabulary = Vocabulary.build(["is red with knee length"])

    table = attribute_word_ids(("red", "length:knee length", "purple"), vocabulary)

    assert table.shape == (3, 2)
    assert table[0].tolist() == [vocabulary.id_of("red"), 0]
    assert table[1].tolist() == [vocabulary.id_of("knee"), vocabulary.id_of("length")]
    assert table[2].tolist() == [0, 0]
