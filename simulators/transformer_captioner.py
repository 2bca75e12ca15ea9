"""The relative captioning transformer of Fashion IQ (Wu et al., CVPR 2021), registered as ``"transformer"``.

The encoder reads a short sequence of memory tokens built from the two images:

- the projected feature difference ``f_I(I_r) - f_I(I_t)``,
- optionally the projected features of both images,
- the embeddings ``f_W`` of the top-N attributes of the reference and of the
  target (N = 8 in the paper), each with a segment embedding that marks whose
  attribute it is and a rank embedding for its position in the top-N list.

A standard transformer decoder then writes the caption word by word under a
causal mask. The paper's captioner has 6 encoder and 6 decoder layers; the
``paper`` preset uses those with ``d_model`` 256 and 8 heads, the ``cpu``
preset 2 + 2 layers of width 128. ``use_attributes=False`` drops the
attribute tokens (the paper's "Ours" ablation; with them it is "Ours+Attr").
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

# Segment ids of the memory tokens.
_DIFFERENCE, _REFERENCE_IMAGE, _TARGET_IMAGE, _REFERENCE_ATTRIBUTES, _TARGET_ATTRIBUTES = range(5)


@dataclass
class TransformerCaptionerConfig:
    """Size and inputs of the relative captioning transformer.

    Attributes:
        d_model: width of every token representation.
        num_heads: attention heads per layer (must divide ``d_model``).
        num_encoder_layers: transformer encoder layers over the memory tokens.
        num_decoder_layers: transformer decoder layers over the caption.
        feedforward_dim: hidden width of each layer's feed-forward block.
        dropout: dropout rate inside the layers and on embeddings.
        use_attributes: feed the top-N attributes of both images ("Ours+Attr").
        include_image_features: add the two images' own features as memory
            tokens next to their difference.
        max_words: maximum caption length in words; decoding adds one step for EOS.
    """

    d_model: int = 128
    num_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    feedforward_dim: int = 256
    dropout: float = 0.1
    use_attributes: bool = True
    include_image_features: bool = True
    max_words: int = 8

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of num_heads ({self.num_heads})")
        for name in ("d_model", "num_heads", "num_encoder_layers", "num_decoder_layers", "feedforward_dim", "max_words"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TransformerCaptionerConfig:
        """Return preset ``"cpu"`` (trains in minutes on 2 cores) or ``"paper"`` (6 + 6 layers, width 256)."""
        presets = {
            "cpu": {},
            "paper": {"d_model": 256, "num_heads": 8, "num_encoder_layers": 6, "num_decoder_layers": 6,
                      "feedforward_dim": 1024},
        }
        if name not in presets:
            raise ConfigError(f"unknown transformer captioner preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})


@CAPTION_MODELS.register("transformer")
class TransformerCaptioner(CaptionModel):
    """Encoder-decoder transformer over image-difference and attribute tokens."""

    name = "transformer"
    config_class = TransformerCaptionerConfig

    def __init__(self, config: TransformerCaptionerConfig, dims: ModelDims) -> None:
        super().__init__(config, dims)
        width = config.d_model

        self.difference_projection = nn.Linear(dims.feature_dim, width)
        self.image_projection = nn.Linear(dims.feature_dim, width) if config.include_image_features else None
        self.attribute_embedding = nn.Embedding(dims.num_attributes, width) if config.use_attributes else None
        self.rank_embedding = nn.Embedding(dims.top_n, width) if config.use_attributes else None
        self.segment_embedding = nn.Embedding(5, width)
        self.memory_dropout = nn.Dropout(config.dropout)

        encoder_layer = nn.TransformerEncoderLayer(
            width, config.num_heads, config.feedforward_dim, config.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            encoder_layer, config.num_encoder_layers, norm=nn.LayerNorm(width), enable_nested_tensor=False
        )

        self.word_embedding = nn.Embedding(dims.vocab_size, width, padding_idx=PAD_ID)
        # f_W: an attribute is also embedded through the caption words of its
        # name, so attribute tokens lie in the same space as the words the decoder writes.
        if config.use_attributes and dims.attribute_words:
            self.register_buffer(
                "attribute_word_ids", torch.full((dims.num_attributes, dims.attribute_words), PAD_ID, dtype=torch.long)
            )
        else:
            self.attribute_word_ids = None
        self.position_embedding = nn.Embedding(config.max_words + 1, width)
        self.word_dropout = nn.Dropout(config.dropout)
        decoder_layer = nn.TransformerDecoderLayer(
            width, config.num_heads, config.feedforward_dim, config.dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(decoder_layer, config.num_decoder_layers, norm=nn.LayerNorm(width))
        self.output = nn.Linear(width, dims.vocab_size)

    def set_attribute_words(self, word_ids: Tensor) -> None:
        if self.attribute_word_ids is not None:
            self.attribute_word_ids.copy_(word_ids)

    def embed_attributes(self, attributes: Tensor) -> Tensor:
        """Embed attribute indices ``(batch, top_n)`` as ``(batch, top_n, d_model)``."""
        assert self.attribute_embedding is not None
        embedded = self.attribute_embedding(attributes)
        if self.attribute_word_ids is not None:
            # (batch, top_n, words) -> mean of the known words' embeddings (padding embeds to zero)
            word_ids = self.attribute_word_ids[attributes]
            counts = (word_ids != PAD_ID).sum(dim=-1, keepdim=True).clamp(min=1)
            embedded = embedded + self.word_embedding(word_ids).sum(dim=2) / counts
        return embedded

    def memory_tokens(self, inputs: CaptionInputs) -> Tensor:
        """Return the encoder input ``(batch, tokens, d_model)`` before self-attention."""
        batch = len(inputs)
        device = inputs.reference_features.device

        def segment(index: int, count: int = 1) -> Tensor:
            return self.segment_embedding(torch.full((batch, count), index, dtype=torch.long, device=device))

        difference = inputs.reference_features - inputs.target_features
        tokens = [self.difference_projection(difference)[:, None] + segment(_DIFFERENCE)]
        if self.image_projection is not None:
            tokens.append(self.image_projection(inputs.reference_features)[:, None] + segment(_REFERENCE_IMAGE))
            tokens.append(self.image_projection(inputs.target_features)[:, None] + segment(_TARGET_IMAGE))
        if self.attribute_embedding is not None and self.rank_embedding is not None:
            top_n = inputs.reference_attributes.shape[1]
            ranks = self.rank_embedding(torch.arange(top_n, device=device))[None]
            tokens.append(self.embed_attributes(inputs.reference_attributes) + ranks
                          + segment(_REFERENCE_ATTRIBUTES, top_n))
            tokens.append(self.embed_attributes(inputs.target_attributes) + ranks
                          + segment(_TARGET_ATTRIBUTES, top_n))
        return torch.cat(tokens, dim=1)

    def encode(self, inputs: CaptionInputs) -> Tensor:
        """Return encoded memory ``(batch, memory_tokens, d_model)``."""
        return self.encoder(self.memory_dropout(self.memory_tokens(inputs)))

    def logits(self, memory: Tensor, tokens: Tensor) -> Tensor:
        length = tokens.shape[1]
        if length > self.config.max_words + 1:
            raise ConfigError(f"prefix of {length} tokens exceeds max_words + 1 = {self.config.max_words + 1}")
        positions = torch.arange(length, device=tokens.device)
        words = self.word_dropout(self.word_embedding(tokens) + self.position_embedding(positions)[None])
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        # (batch, length, d_model) -> (batch, length, vocab)
        hidden = self.decoder(words, memory, tgt_mask=causal, tgt_is_causal=True)
        return self.output(hidden)


@register("transformer")
def make_transformer_simulator(
    *,
    catalog: Catalog,
    features: CatalogFeatures | None = None,
    checkpoint: str | Path | None = None,
    preset: str = "cpu",
    decoding: DecodingConfig | str = "greedy",
    **kwargs: Any,
) -> LearnedCaptioner:
    """Create the transformer captioner simulator from ``checkpoint``, the cache, or by training it first.

    Other keyword arguments (``model_config``, ``training``, ``teacher``,
    ``device``, ``progress``, ``cache_dir``) go to :func:`simulators.training.load_or_train_captioner`.
    """
    from simulators.training import load_or_train_captioner

    return load_or_train_captioner(
        "transformer", catalog=catalog, features=features, checkpoint=checkpoint, preset=preset, decoding=decoding, **kwargs
    )
