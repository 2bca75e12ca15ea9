"""Tests of triplet-loss training: the loss, learning, collapse warnings, checkpoints and resume."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import agents
from agent_helpers import agent_sizes, make_data, one_torch_thread  # noqa: F401 (autouse fixture)
from agents.base import Retriever
from agents.triplet import (
    CollapseMonitor,
    EmbeddingCollapseWarning,
    TripletConfig,
    TripletTrainer,
    query_spread,
    triplet_loss,
)
from fiq_env.errors import CheckpointError, ConfigError

DATA = make_data(num_items=80)
SIZES = agent_sizes(DATA)


class ConstantQuery(Retriever):
    """A collapsed retriever: one learned vector, whatever the dialog."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.query = nn.Parameter(torch.full((self.config.feature_dim,), 0.25))

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        return self.query.expand(obs["tokens"].shape[0], -1)


def tiny_config(**overrides) -> TripletConfig:
    return TripletConfig.from_preset("tiny", **overrides)


def test_loss_hand_computed() -> None:
    queries = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])  # (batch 1, turns 2, dim 2)
    positive = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    # turn 1: ||q-p||^2 = 1, ||q-n||^2 = 1 -> max(0, 1 - 1 + 0.5) = 0.5
    # turn 2: ||q-p||^2 = 0, ||q-n||^2 = 1 -> max(0, 0 - 1 + 0.5) = 0
    loss = triplet_loss(queries, positive, negatives, margin=0.5)
    assert loss.item() == pytest.approx(0.5)


def test_loss_sums_turns_and_averages_dialogs() -> None:
    queries = torch.zeros(2, 3, 2)
    positives = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    negatives = torch.zeros(2, 3, 2)
    # dialog 1: each turn max(0, 4 - 0 + 1) = 5, three turns = 15; dialog 2: each turn 1, sum 3.
    loss = triplet_loss(queries, positives, negatives, margin=1.0)
    assert loss.item() == pytest.approx((15 + 3) / 2)


def test_loss_mask_drops_turns() -> None:
    queries = torch.zeros(1, 3, 2)
    positives = torch.tensor([[1.0, 0.0]])
    negatives = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, False, False]])
    loss = triplet_loss(queries, positives, negatives, margin=0.5, mask=mask)
    assert loss.item() == pytest.approx(1.5)


def test_query_spread_values() -> None:
    assert query_spread(torch.ones(4, 3)) == pytest.approx(0.0)
    assert query_spread(torch.eye(4)) > 0.5


@pytest.mark.slow
def test_training_reduces_loss() -> None:
    torch.manual_seed(0)
    agent = agents.make("transformer", preset="tiny", **SIZES)
    config = tiny_config(steps=60, batch_size=32, learning_rate=3e-3, warmup_steps=5)
    result = TripletTrainer(agent, DATA, config=config).train()
    assert np.mean(result.losses[-10:]) < 0.6 * np.mean(result.losses[:10])


@pytest.mark.slow
def test_trained_agent_beats_random() -> None:
    torch.manual_seed(0)
    agent = agents.make("rnn", preset="tiny", **SIZES)
    config = tiny_config(steps=60, batch_size=32, learning_rate=3e-3, warmup_steps=5, eval_episodes=120)
    trainer = TripletTrainer(agent, DATA, DATA, config)
    trained = trainer.train().evaluation
    baseline = agents.make("random", **SIZES)
    trainer.agent = baseline
    untrained = trainer.evaluate()
    assert trained["percentile"][-1] > untrained["percentile"][-1] + 5


def test_collapse_warning_fires() -> None:
    agent = ConstantQuery(**SIZES)
    config = tiny_config(steps=6, collapse_window=3)
    with pytest.warns(EmbeddingCollapseWarning, match="nearly identical"):
        TripletTrainer(agent, DATA, config=config).train()


def test_no_collapse_warning_when_healthy() -> None:
    torch.manual_seed(0)
    agent = agents.make("transformer", preset="tiny", **SIZES)
    config = tiny_config(steps=8, collapse_window=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmbeddingCollapseWarning)
        TripletTrainer(agent, DATA, config=config).train()


def test_collapse_monitor_margin_rule() -> None:
    monitor = CollapseMonitor(margin=0.2, window=3, tolerance=0.01, min_spread=1e-3)
    with pytest.warns(EmbeddingCollapseWarning, match="stuck at the margin"):
        fired = [monitor.update(0.2, spread=0.5, step=step) for step in range(5)]
    assert fired == [False, False, True, False, False]


def test_collapse_monitor_resets() -> None:
    monitor = CollapseMonitor(margin=0.2, window=2, tolerance=0.01, min_spread=1e-3)
    monitor.update(0.2, spread=0.5, step=1)
    monitor.update(0.9, spread=0.5, step=2)
    assert monitor.update(0.2, spread=0.5, step=3) is False


def test_resume_continues_global_step(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    config = tiny_config(steps=4, log_every=1, checkpoint_every=2)
    first = TripletTrainer(agents.make("transformer", preset="tiny", **SIZES), DATA, config=config, run_dir=tmp_path)
    first.train()

    resumed_agent = agents.make("transformer", preset="tiny", **SIZES)
    second = TripletTrainer(resumed_agent, DATA, config=tiny_config(steps=7, log_every=1), run_dir=tmp_path)
    result = second.train()
    assert result.step == 7
    assert len(result.losses) == 3
    assert second.optimizer.state_dict()["state"][0]["step"].item() == 7

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/triplet_loss")]
    assert sorted(set(steps)) == [1, 2, 3, 4, 5, 6, 7]


def test_resume_restores_weights(tmp_path) -> None:
    torch.manual_seed(0)
    config = tiny_config(steps=3)
    trainer = TripletTrainer(agents.make("rnn", preset="tiny", **SIZES), DATA, config=config, run_dir=tmp_path)
    trainer.train()

    fresh = TripletTrainer(agents.make("rnn", preset="tiny", **SIZES), DATA, config=config, run_dir=tmp_path)
    assert fresh.resume() is True
    for name, tensor in trainer.agent.state_dict().items():
        assert torch.equal(tensor, fresh.agent.state_dict()[name]), name
    assert fresh.step == 3


def test_final_agent_loads(tmp_path) -> None:
    torch.manual_seed(0)
    TripletTrainer(agents.make("transformer_attr", preset="tiny", **SIZES), DATA, config=tiny_config(steps=2), run_dir=tmp_path).train()
    loaded = agents.load(tmp_path / "agent")
    assert loaded.config.use_attributes is True
    assert loaded.vocabulary.words == DATA.vocabulary.words


def test_resume_rejects_other_agent(tmp_path) -> None:
    TripletTrainer(agents.make("rnn", preset="tiny", **SIZES), DATA, config=tiny_config(steps=2), run_dir=tmp_path).train()
    other = TripletTrainer(agents.make("transformer", preset="tiny", **SIZES), DATA, config=tiny_config(steps=4), run_dir=tmp_path)
    with pytest.raises(CheckpointError, match="contains a agents.rnn"):
        other.train()


def test_resume_names_changed_field(tmp_path) -> None:
    TripletTrainer(agents.make("transformer", preset="tiny", **SIZES), DATA, config=tiny_config(steps=2), run_dir=tmp_path).train()
    changed = agents.make("transformer", preset="tiny", pooling="mean", **SIZES)
    with pytest.raises(CheckpointError, match="pooling: saved 'query_token', now 'mean'"):
        TripletTrainer(changed, DATA, config=tiny_config(steps=4), run_dir=tmp_path).train()


def test_resume_checkpoint_without_new_field(tmp_path) -> None:
    # A plain transformer saved before attribute_fusion existed must still resume.
    TripletTrainer(agents.make("transformer", preset="tiny", **SIZES), DATA, config=tiny_config(steps=2), run_dir=tmp_path).train()
    edited = 0
    for path in tmp_path.rglob("*.json"):
        document = json.loads(path.read_text())
        for config in (document.get("config"), document.get("agent")):
            if isinstance(config, dict) and config.pop("attribute_fusion", None) is not None:
                edited += 1
        path.write_text(json.dumps(document))
    assert edited > 0

    trainer = TripletTrainer(agents.make("transformer", preset="tiny", **SIZES), DATA, config=tiny_config(steps=4), run_dir=tmp_path)
    assert trainer.train().step == 4


def test_agent_without_parameters_rejected() -> None:
    with pytest.raises(ConfigError, match="no trainable parameters"):
        TripletTrainer(agents.make("last_image", **SIZES), DATA, config=tiny_config())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
@pytest.mark.parametrize(("device", "message"), [("cuda", "no CUDA device"), ("gpu0", "invalid TripletConfig.device")])
def test_unavailable_device_rejected(device: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TripletTrainer(agents.make("rnn", preset="tiny", **SIZES), DATA, config=tiny_config(device=device))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"margin": 0.0}, "margin"), ({"batch_size": 0}, "batch_size"), ({"turns": 9}, "max_turns")],
)
def test_bad_trainer_config(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TripletTrainer(agents.make("random", **SIZES), DATA, config=tiny_config(**overrides))
