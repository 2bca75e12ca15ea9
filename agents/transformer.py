"""The multimodal dialog transformer retriever of Fashion IQ (Wu et al., CVPR 2021).

Every turn of the history becomes a group of tokens: the caption's word
embeddings and one projected image-feature token. With ``use_attributes`` the
shown image's top attributes join in, either added as their mean embedding to
the image token (``attribute_fusion="image"``, the default) or as one token
each (``"tokens"``). Each token gets a turn embedding and a modality embedding
added. One transformer encoder attends over the tokens of every turn reached
so far. Padding words and padding attributes are masked out, and turns not
reached are left out. The outputs are pooled and linearly projected to a
query in image-feature space.

Design choices beyond the paper's description, measured with
``benchmarks/bench_agents.py`` (results in ``docs/benchmarks.md``, section
"Retriever agents"):

* Turn and modality embeddings start at standard deviation 0.02. With torch's
  N(0, 1) default they drowned the image token, and after the ``cpu`` budget
  of 300 steps the model reached 27% mean recall@10 against the hierarchical
  RNN's 35-37%. With the small start it reached 40-43%.
* ``turn_position="recency"`` numbers turns backwards from the latest (0), so
  the latest feedback has the same embedding at every turn.
* ``pooling="query_token"`` reads the output of a learned extra token that
  attends to the history. ``"mean"`` averages every valid token, where eight
  attribute tokens per turn can outweigh the caption words (``transformer_attr``
  with ``attribute_fusion="tokens"`` measured 17.6% with the mean and 25.2%
  with the query token).
* ``residual_query`` adds the predicted vector to the latest shown image's
  features, since a relative caption describes an edit of that image. It did
  not raise recall here, so it is off by default.
* ``attribute_fusion="image"`` adds the mean of the top attributes' vectors
  to the image token, so attributes cost no extra tokens. One attribute token
  per attribute (``"tokens"``) made the history 85 tokens long instead of 45,
  doubled the training time and lowered mean recall@10 from 42.9% to 25.2%
  (one seed). With the image fusion, ``transformer_attr`` and ``transformer``
  tie: 42.3% against 42.6% over five seeds, each with a spread of about 1.
* With ``attribute_word_ids`` set, an attribute's vector is the mean of the
  caption word embeddings of the attribute's name. The attribute "red" and
  the word "red" then share one vector. (The paper embeds attributes with its
  word encoder f_W.)

The paper's model uses 6 layers, 256 hidden units and 8 heads and GloVe word
vectors. NOTE: here the word embeddings start random and train end to end,
because no pretrained word vectors are available offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agents import register
from agents.base import Retriever, RetrieverConfig, turn_mask
from fiq_env.errors import ConfigError
from fiq_env.text import PAD_ID

WORD, IMAGE, ATTRIBUTE = range(3)
"""Modality ids of the three token kinds."""

TURN_POSITIONS = ("recency", "absolute")
POOLINGS = ("query_token", "mean")
ATTRIBUTE_FUSIONS = ("image", "tokens")


@dataclass
class TransformerConfig(RetrieverConfig):
    """Sizes and design switches of :class:`TransformerRetriever`."""

    hidden_dim: int = field(default=64, metadata={"help": "transformer width"})
    num_layers: int = field(default=2, metadata={"help": "transformer encoder layers"})
    num_heads: int = field(default=4, metadata={"help": "attention heads (must divide hidden_dim)"})
    feedforward_dim: int = field(default=128, metadata={"help": "width of each layer's feed-forward block"})
    dropout: float = field(default=0.1, metadata={"help": "dropout inside the encoder"})
    use_attributes: bool = field(default=False, metadata={"help": "add the shown images' top attributes (see attribute_fusion)"})
    normalize_query: bool = field(
        default=True, metadata={"help": "L2-normalize the query, like the image features it is compared with"}
    )
    turn_position: str = field(
        default="recency", metadata={"help": "turn embedding: 'recency' (turns ago, latest = 0) or 'absolute' (turn index)"}
    )
    pooling: str = field(
        default="query_token", metadata={"help": "'query_token' (output of a learned extra token) or 'mean' (over valid tokens)"}
    )
    residual_query: bool = field(
        default=False, metadata={"help": "predict an edit added to the latest shown image's features"}
    )
    attribute_fusion: str = field(
        default="image",
        metadata={
            "help": "with use_attributes: 'image' adds the mean attribute vector to the image token; "
            "'tokens' adds one token per attribute"
        },
    )

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"hidden_dim": 32, "num_layers": 1, "num_heads": 2, "feedforward_dim": 64, "dropout": 0.0},
        "cpu": {"hidden_dim": 64, "num_layers": 2, "num_heads": 4, "feedforward_dim": 128},
        "paper": {"hidden_dim": 256, "num_layers": 6, "num_heads": 8, "feedforward_dim": 1024},
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_dim % self.num_heads:
            raise ConfigError(f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.use_attributes and (self.num_attributes < 1 or self.top_n < 1):
            raise ConfigError(
                f"use_attributes=True needs num_attributes >= 1 and top_n >= 1, got {self.num_attributes} and "
                f"{self.top_n}; pass len(features.attribute_names) and features.top_n, or use_attributes=False "
                "for a catalog without attribute labels"
            )
        if self.turn_position not in TURN_POSITIONS:
            raise ConfigError(f"turn_position must be one of {TURN_POSITIONS}, got {self.turn_position!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.attribute_fusion not in ATTRIBUTE_FUSIONS:
            raise ConfigError(f"attribute_fusion must be one of {ATTRIBUTE_FUSIONS}, got {self.attribute_fusion!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransformerConfig:
        """Rebuild a saved config, giving the old design to fields it was saved without.

        A config saved before ``turn_position``, ``pooling`` or
        ``attribute_fusion`` existed was trained with absolute turns, mean
        pooling and attribute tokens.

        Without attributes the fusion does nothing, so such a config keeps the
        current default and still equals a new plain transformer's config.
        """
        old_design = {"turn_position": "absolute", "pooling": "mean"}
        if data.get("use_attributes"):
            old_design["attribute_fusion"] = "tokens"
        return super().from_dict({**old_design, **data})


class DialogHistoryEncoder(nn.Module):
    """Embeds the padded dialog history and encodes it with self-attention.

    Returns the pooled encoder output, shape ``(batch, hidden_dim)``: the
    output of the query token, or the mean over the valid tokens. Shared by
    the retriever and the reinforcement learning features extractor.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dim

        self.word_embedding = nn.Embedding(config.vocab_size, hidden, padding_idx=PAD_ID)
        self.image_projection = nn.Linear(config.feature_dim, hidden)
        if config.use_attributes:
            self._build_attribute_embedding(config)
        self.turn_embedding = nn.Embedding(config.max_turns, hidden)
        self.modality_embedding = nn.Embedding(3, hidden)
        # With torch's default N(0, 1) init, the turn and modality vectors (norm about
        # sqrt(hidden)) swamp the projected image features (norm below 1) in the image
        # token, so the model starts blind to the shown images.
        nn.init.normal_(self.turn_embedding.weight, std=0.02)
        nn.init.normal_(self.modality_embedding.weight, std=0.02)
        if config.pooling == "query_token":
            self.query_token = nn.Parameter(torch.zeros(hidden))
            nn.init.normal_(self.query_token, std=0.02)
        self.input_norm = nn.LayerNorm(hidden)

        layer = nn.TransformerEncoderLayer(
            d_model=hidden,
            nhead=config.num_heads,
            dim_feedforward=config.feedforward_dim,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors would change the numerics of masked rows between
        # train and eval mode; the sequences are short, so they gain nothing.
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.output_norm = nn.LayerNorm(hidden)

    def _build_attribute_embedding(self, config: TransformerConfig) -> None:
        if config.attribute_word_ids is None:
            # Index 0 is the padding attribute; attribute a is stored as a + 1.
            self.attribute_embedding = nn.Embedding(config.num_attributes + 1, config.hidden_dim, padding_idx=0)
            return
        # Each attribute is the mean of its name's word embeddings, shared with the captions,
        # so the attribute "red" and the word "red" start as one vector. Row 0 is padding.
        width = max(len(row) for row in config.attribute_word_ids)
        words = torch.full((config.num_attributes + 1, width), PAD_ID, dtype=torch.long)
        for index, row in enumerate(config.attribute_word_ids, start=1):
            words[index, : len(row)] = torch.tensor(row)
        self.register_buffer("attribute_words", words, persistent=False)

    def attribute_vectors(self, attributes: Tensor) -> Tensor:
        """Embed attribute ids (index + 1, 0 for padding) into ``(*attributes.shape, hidden_dim)``."""
        if self.config.attribute_word_ids is None:
            return self.attribute_embedding(attributes)
        words = self.attribute_words  # (attributes + 1, name words)
        word_valid = (words != PAD_ID).unsqueeze(-1).float()
        table = (self.word_embedding(words) * word_valid).sum(dim=1) / word_valid.sum(dim=1).clamp(min=1.0)
        return table[attributes]  # row 0 has no words, so padding embeds as zeros

    def tokens_per_turn(self) -> int:
        attribute_tokens = self.config.use_attributes and self.config.attribute_fusion == "tokens"
        return self.config.caption_length + 1 + (self.config.top_n if attribute_tokens else 0)

    def turn_positions(self, turn: Tensor, turns: int) -> Tensor:
        """Return ``(batch, turns)`` indices into the turn embedding: turns ago, or the turn index."""
        positions = torch.arange(turns, device=turn.device).unsqueeze(0)
        if self.config.turn_position == "absolute":
            return positions.expand(turn.shape[0], -1)
        latest = turn.reshape(-1, 1).long().clamp(1, turns) - 1
        # Turns after the latest are masked out, so clamping their negative distance to 0 is harmless.
        return (latest - positions).clamp(min=0)

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        config = self.config
        tokens = obs["tokens"].long()  # (batch, turns, words)
        batch, turns, words = tokens.shape
        if turns != config.max_turns or words != config.caption_length:
            raise ConfigError(
                f"tokens have shape (turns, words) = ({turns}, {words}) but the model was built for "
                f"({config.max_turns}, {config.caption_length}); rebuild it with matching max_turns/caption_length"
            )
        turn = obs["turn"].reshape(-1).to(tokens.device).long().clamp(1, turns)

        # Turns after a dialog's latest would be masked anyway, so each group of dialogs at the
        # same turn is encoded over only the turns it reached. The result is the same, and a
        # training batch, which mixes all turns, skips about half its tokens.
        # NOTE: the groups depend on the turn values, so torch.jit.trace records only the
        # example batch's groups and gives wrong queries for other turn mixes.
        if batch == 0:  # torch's attention cannot reshape an empty batch in training mode
            return self.input_norm.weight.new_zeros((0, config.hidden_dim))
        reached = torch.unique(turn).tolist()
        if len(reached) == 1:
            return self._encode(obs, reached[0], turn)
        rows_of = [(turn == count).nonzero().squeeze(1) for count in reached]
        parts = [
            self._encode({key: obs[key][rows] for key in ("tokens", "features", "attributes") if key in obs}, count, turn[rows])
            for count, rows in zip(reached, rows_of)
        ]
        return torch.cat(parts)[torch.argsort(torch.cat(rows_of))]

    def _encode(self, obs: Mapping[str, Tensor], turns: int, turn: Tensor) -> Tensor:
        """Encode dialogs that all reached ``turns`` turns, reading only those turns of the history."""
        config = self.config
        tokens = obs["tokens"][:, :turns].long()
        batch = tokens.shape[0]
        valid_turns = turn_mask(turn, turns).bool()  # (batch, turns)

        # Token groups per turn, each (batch, turns, group_size, hidden) with a validity mask.
        word_vectors = self.word_embedding(tokens.clamp(0, config.vocab_size - 1))
        word_valid = tokens != PAD_ID
        groups = [(word_vectors, word_valid, WORD)]

        image_vectors = self.image_projection(obs["features"][:, :turns].float()).unsqueeze(2)
        image_valid = torch.ones(batch, turns, 1, dtype=torch.bool, device=tokens.device)

        if config.use_attributes:
            attributes = obs["attributes"][:, :turns].long()[..., : config.top_n].clamp(0, config.num_attributes)
            attribute_vectors = self.attribute_vectors(attributes)  # (batch, turns, top_n, hidden)
            attribute_valid = attributes != 0
            if config.attribute_fusion == "image":
                weights = attribute_valid.unsqueeze(-1).float()
                mean = (attribute_vectors * weights).sum(dim=2) / weights.sum(dim=2).clamp(min=1.0)
                image_vectors = image_vectors + mean.unsqueeze(2)
            else:
                groups.append((attribute_vectors, attribute_valid, ATTRIBUTE))
        groups.insert(1, (image_vectors, image_valid, IMAGE))

        embedded, valid = [], []
        turn_vectors = self.turn_embedding(self.turn_positions(turn, turns)).unsqueeze(2)  # (batch, turns, 1, hidden)
        for vectors, group_valid, modality in groups:
            embedded.append(vectors + turn_vectors + self.modality_embedding.weight[modality])
            valid.append(group_valid)
        sequence = torch.cat(embedded, dim=2).flatten(1, 2)  # (batch, turns * tokens_per_turn, hidden)
        valid_tokens = (torch.cat(valid, dim=2) & valid_turns.unsqueeze(2)).flatten(1, 2)

        if config.pooling == "query_token":
            query_token = self.query_token.view(1, 1, -1).expand(batch, 1, -1)
            sequence = torch.cat([query_token, sequence], dim=1)
            always = torch.ones(batch, 1, dtype=torch.bool, device=tokens.device)
            valid_tokens = torch.cat([always, valid_tokens], dim=1)

        encoded = self.encoder(self.input_norm(sequence), src_key_padding_mask=~valid_tokens)
        encoded = self.output_norm(encoded)

        if config.pooling == "query_token":
            return encoded[:, 0]
        # Mean over valid tokens; the image token of turn 1 is always valid, so the count is >= 1.
        weights = valid_tokens.unsqueeze(-1).float()
        return (encoded * weights).sum(dim=1) / weights.sum(dim=1)


@register("transformer")
class TransformerRetriever(Retriever):
    """Transformer over the whole multimodal dialog history (the paper's "Ours").

    With ``use_attributes=True`` (registered as ``transformer_attr``) it is the
    attribute-aware variant ("Ours+Attr"): the same model, with the shown
    images' top attributes added to the history.
    ``normalize_query`` (default True) L2-normalizes the query. The squared
    Euclidean distance to the unit-norm features is then ``2 - 2 cos``, so the
    triplet loss cannot shrink by scaling the query. In one 150-step run of
    each on the synthetic dress catalog with the template simulator, turn-5
    recall@10 on the val split was 29.7% with the normalized query and 13.3%
    without it (``cpu`` preset, batch 64, learning rate 1e-3, 512-dimensional
    features of an earlier encoder version).
    """

    config_class = TransformerConfig

    def __init__(self, config: TransformerConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.history_encoder = DialogHistoryEncoder(self.config)
        self.query_head = nn.Linear(self.config.hidden_dim, self.config.feature_dim)
        if self.config.residual_query:
            # A small edit at first, so the untrained model queries near the latest image.
            with torch.no_grad():
                self.query_head.weight.mul_(0.1)
                self.query_head.bias.zero_()

    def encode(self, obs: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Return the pooled history ``(batch, hidden_dim)`` and the query ``(batch, feature_dim)``.

        Code that needs both (a features extractor) should call this rather than
        ``query_head`` on the pooled vector, which would miss ``residual_query``.
        """
        pooled = self.history_encoder(obs)
        query = self.query_head(pooled)
        if self.config.residual_query:
            features = obs["features"].float()  # (batch, turns, dim)
            latest = obs["turn"].reshape(-1).long().clamp(1, features.shape[1]).to(features.device) - 1
            query = features[torch.arange(features.shape[0], device=features.device), latest] + query
        return pooled, (F.normalize(query, dim=-1) if self.config.normalize_query else query)

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        return self.encode(obs)[1]


@register("transformer_attr")
def make_transformer_attr(config: TransformerConfig | None = None, **kwargs: Any) -> TransformerRetriever:
    """Create the attribute-aware transformer: :class:`TransformerRetriever` with ``use_attributes=True``.

    NOTE: on the synthetic benchmark with the ``cpu`` budget it only ties the
    plain transformer (42.3% against 42.6% mean recall@10 over five seeds).
    Its attributes come from a linear head over the same image features, so
    they carry no new information about the shown image.
    """
    kwargs.setdefault("use_attributes", True)
    return TransformerRetriever(config, **kwargs)
