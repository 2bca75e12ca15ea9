"""The RNN relative captioner baseline after Guo et al. (NeurIPS 2018), registered as ``"rnn"``.

Guo et al. ("Dialog-based interactive image retrieval") trained their user
simulator as a recurrent captioner conditioned on the features of both
images, without attributes. Here an MLP maps ``[f_r, f_t, f_r - f_t]`` to a
context vector that sets the initial hidden state of a GRU or LSTM and is
also fed beside every input word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fiq_env.catalog import Catalog
from fiq_env.errors import ConfigError
from fiq_env.features import CatalogFeatures
from fiq_env.text import PAD_ID
from simulators import register
from simulators.captioner import CAPTION_MODELS, CaptionInputs, CaptionModel, LearnedCaptioner, ModelDims
from simulators.decoding import DecodingConfig

CELLS = ("gru", "lstm")


@dataclass
class RNNCaptionerConfig:
    """Size of the RNN captioner.

    Attributes:
        cell: recurrent cell, ``"gru"`` or ``"lstm"``.
        hidden_size: width of the recurrent state and of the image context.
        embedding_dim: width of the word embeddings.
        num_layers: stacked recurrent layers.
        dropout: dropout rate on embeddings, between layers and before the output.
        max_words: maximum caption length in words; decoding adds one step for EOS.
    """

    cell: str = "gru"
    hidden_size: int = 256
    embedding_dim: int = 128
    num_layers: int = 1
    dropout: float = 0.1
    max_words: int = 8

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError(f"unknown RNN cell {self.cell!r}; expected one of {CELLS}")
        for name in ("hidden_size", "embedding_dim", "num_layers", "max_words"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RNNCaptionerConfig:
        """Return preset ``"cpu"`` (one GRU layer of 256) or ``"paper"`` (two LSTM layers of 512).

        NOTE: the ``paper`` sizes are this library's choice for a larger
        baseline; they are not taken from Guo et al.
        """
        presets = {
            "cpu": {},
            "paper": {"cell": "lstm", "hidden_size": 512, "embedding_dim": 256, "num_layers": 2},
        }
        if name not in presets:
            raise ConfigError(f"unknown RNN captioner preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


@CAPTION_MODELS.register("rnn")
class RNNCaptioner(CaptionModel):
    """GRU/LSTM decoder whose state starts from an MLP of both images' features."""

    name = "rnn"
    config_class = RNNCaptionerConfig

    def __init__(self, config: RNNCaptionerConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        hidden = config.hidden_size

        self.context = nn.Sequential(
            nn.Linear(3 * dims.feature_dim, hidden), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(hidden, hidden)
        )
        self.initial_state = nn.Linear(hidden, config.num_layers * hidden)
        self.word_embedding = nn.Embedding(dims.vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(config.dropout)
        recurrent = nn.GRU if config.cell == "gru" else nn.LSTM
        self.rnn = recurrent(
            config.embedding_dim + hidden, hidden, config.num_layers, batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.output = nn.Linear(hidden, dims.vocab_size)

    def encode(self, inputs: CaptionInputs) -> Tensor:
        """Return the image context ``(batch, hidden_size)``."""
        reference, target = inputs.reference_features, inputs.target_features
        return self.context(torch.cat([reference, target, reference - target], dim=1))

    def logits(self, memory: Tensor, tokens: Tensor) -> Tensor:
        batch, length = tokens.shape
        layers, hidden = self.config.num_layers, self.config.hidden_size

        # (batch, layers * hidden) -> (layers, batch, hidden)
        state = torch.tanh(self.initial_state(memory)).reshape(batch, layers, hidden).transpose(0, 1).contiguous()
        if self.config.cell == "lstm":
            state = (state, torch.zeros_like(state))

        words = self.dropout(self.word_embedding(tokens))
        context = memory[:, None].expand(batch, length, hidden)
        outputs, _ = self.rnn(torch.cat([words, context], dim=2), state)
        return self.output(self.dropout(outputs))


@register("rnn")
def make_rnn_simulator(
    *,
    catalog: Catalog,
    features: CatalogFeatures | None = None,
    checkpoint: str | Path | None = None,
    preset: str = "cpu",
    decoding: DecodingConfig | str = "greedy",
    **kwargs: Any,
) -> LearnedCaptioner:
    """Create the rnn captioner simulator from ``checkpoint``, the cache, or by training it first.

    Other keyword arguments (``model_config``, ``training``, ``teacher``,
    ``device``, ``progress``, ``cache_dir``) go to :func:`simulators.training.load_or_train_captioner`.
    """
    from simulators.training import load_or_train_captioner

    return load_or_train_captioner(
        "rnn", catalog=catalog, features=features, checkpoint=checkpoint, preset=preset, decoding=decoding, **kwargs
    )
