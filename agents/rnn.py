"""The hierarchical recurrent retriever of Guo et al. (NeurIPS 2018, "Dialog-based interactive image retrieval").

A response encoder turns each turn's (shown image, caption) pair into one
vector: the projected image features and the last GRU state over the caption
words are concatenated and fused by a linear layer. A state tracker, a GRU
over turns, folds the responses into a dialog state, and a linear layer maps
the state after the latest turn to the query. Unlike the transformer, the whole
history must pass through one low-dimensional state vector.

NOTE: Guo et al. encode the shown image with a CNN trained jointly; here the
image enters as the catalog's precomputed features, like every agent of this
library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents import register
from agents.base import Retriever, RetrieverConfig
from fiq_env.text import PAD_ID


@dataclass
class RNNConfig(RetrieverConfig):
    """Sizes of :class:`HierarchicalRNNRetriever`."""

    word_dim: int = field(default=64, metadata={"help": "word embedding size"})
    hidden_dim: int = field(default=128, metadata={"help": "size of the caption GRU, the fused response and the state"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the fused response"})
    normalize_query: bool = field(default=True, metadata={"help": "L2-normalize the query"})

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"word_dim": 16, "hidden_dim": 32, "dropout": 0.0},
        "cpu": {"word_dim": 64, "hidden_dim": 128},
        "paper": {"word_dim": 256, "hidden_dim": 512},
    }


@register("rnn")
class HierarchicalRNNRetriever(Retriever):
    """Response encoder plus GRU state tracker over turns (Guo et al. 2018)."""

    config_class = RNNConfig

    def __init__(self, config: RNNConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        config = self.config
        self.word_embedding = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=PAD_ID)
        self.caption_gru = nn.GRU(config.word_dim, config.hidden_dim, batch_first=True)
        self.image_projection = nn.Linear(config.feature_dim, config.hidden_dim)
        self.fuse = nn.Sequential(
            nn.Linear(2 * config.hidden_dim, config.hidden_dim), nn.ReLU(), nn.Dropout(config.dropout)
        )
        self.state_tracker = nn.GRU(config.hidden_dim, config.hidden_dim, batch_first=True)
        self.query_head = nn.Linear(config.hidden_dim, config.feature_dim)

    def encode_responses(self, obs: Mapping[str, Tensor]) -> Tensor:
        """Return one fused (image, caption) vector per turn, ``(batch, turns, hidden_dim)``."""
        tokens = obs["tokens"].long()  # (batch, turns, words)
        batch, turns, words = tokens.shape

        # Caption encoding: the GRU state after each caption's last real word.
        flat_tokens = tokens.reshape(batch * turns, words).clamp(0, self.config.vocab_size - 1)
        outputs, _ = self.caption_gru(self.word_embedding(flat_tokens))  # (batch * turns, words, hidden)
        lengths = (flat_tokens != PAD_ID).sum(dim=1)
        last = (lengths - 1).clamp(min=0)
        caption = outputs[torch.arange(batch * turns, device=tokens.device), last]
        caption = caption * (lengths > 0).unsqueeze(-1).float()  # an empty caption encodes as zeros
        caption = caption.view(batch, turns, -1)

        image = torch.relu(self.image_projection(obs["features"].float()))  # (batch, turns, hidden)
        return self.fuse(torch.cat([image, caption], dim=-1))

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        responses = self.encode_responses(obs)
        states, _ = self.state_tracker(responses)  # (batch, turns, hidden), causal over turns

        # The state after the latest turn; later (padding) turns never reach it.
        latest = (obs["turn"].reshape(-1).long().clamp(1, responses.shape[1]) - 1).to(states.device)
        state = states[torch.arange(states.shape[0], device=states.device), latest]
        query = self.query_head(state)
        return F.normalize(query, dim=-1) if self.config.normalize_query else query
