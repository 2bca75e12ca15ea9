"""The retriever contract: a torch module that maps dialog histories to query vectors.

A retriever reads the environment's observation, the dialog history padded to
``max_turns`` turns, and returns one query per dialog in image-feature space.
The environment then shows the nearest item (Euclidean distance) that the
dialog has not shown yet.

Observation keys, with ``T`` turns, ``L`` caption tokens, ``D`` feature
dimensions and ``N`` top attributes (a leading batch dimension in batches):

``tokens``      ``(T, L)`` int64 caption token ids per turn, 0 (PAD) for turns not reached.
``features``    ``(T, D)`` float32 L2-normalized features of the image shown at each turn.
``attributes``  ``(T, N)`` int64 top attribute index + 1 of each shown image, 0 for padding.
``turn``        int, the number of captions received so far (1 right after reset).

Writing a new agent takes a config dataclass and a ``forward``::

    @dataclass
    class MeanImageConfig(RetrieverConfig):
        pass

    @agents.register("mean_image")
    class MeanImage(Retriever):
        config_class = MeanImageConfig

        def forward(self, obs):
            valid = turn_mask(obs["turn"], self.config.max_turns)           # (batch, turns)
            summed = (obs["features"] * valid[..., None]).sum(dim=1)        # (batch, dim)
            return summed / valid.sum(dim=1, keepdim=True)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from fiq_env.errors import ConfigError
from fiq_env.text import UNK_ID, Vocabulary, tokenize

OBSERVATION_KEYS = ("tokens", "features", "attributes", "turn")

_INTEGER_KEYS = ("tokens", "attributes", "turn")

ConfigT = TypeVar("ConfigT", bound="RetrieverConfig")


@dataclass
class RetrieverConfig:
    """Observation sizes every retriever needs; subclasses add their model's fields.

    Class attribute ``PRESETS`` maps a preset name to field overrides; every
    config has at least ``tiny`` (tests), ``cpu`` and ``paper``.
    """

    feature_dim: int = field(default=64, metadata={"help": "dimension D of image features and of the query"})
    vocab_size: int = field(default=64, metadata={"help": "number of caption token ids, special tokens included"})
    num_attributes: int = field(default=0, metadata={"help": "size A of the attribute vocabulary (0: no attributes)"})
    max_turns: int = field(default=5, metadata={"help": "turns T of dialog history in the observation"})
    caption_length: int = field(default=8, metadata={"help": "tokens L per caption"})
    top_n: int = field(default=8, metadata={"help": "top attributes N per shown image (0: no attribute labels)"})
    attribute_word_ids: list[list[int]] | None = field(
        default=None,
        metadata={
            "help": "caption token ids of each attribute's name, one list per attribute "
            "(see attribute_word_ids()); None when unknown"
        },
    )

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}, "cpu": {}, "paper": {}}

    def __post_init__(self) -> None:
        for name in ("feature_dim", "vocab_size", "max_turns", "caption_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{type(self).__name__}.{name} must be a positive integer, got {value!r}")
        # A catalog without attribute labels has no attributes and 0 top attributes per image.
        for name in ("num_attributes", "top_n"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"{type(self).__name__}.{name} must be 0 or a positive integer, got {value!r}")
        if self.attribute_word_ids is not None:
            self.attribute_word_ids = self._checked_attribute_word_ids(self.attribute_word_ids)

    def _checked_attribute_word_ids(self, rows: Any) -> list[list[int]]:
        """Return ``rows`` as a list of lists of ints after checking its length and token ids."""
        name = f"{type(self).__name__}.attribute_word_ids"
        rows = [[int(token) for token in row] for row in rows]
        if len(rows) != self.num_attributes:
            raise ConfigError(
                f"{name} has {len(rows)} rows but num_attributes is {self.num_attributes}; "
                "build it from the same attribute names with agents.base.attribute_word_ids()"
            )
        for index, row in enumerate(rows):
            if not row or min(row) < 0 or max(row) >= self.vocab_size:
                raise ConfigError(
                    f"{name}[{index}] = {row} must be a non-empty list of token ids below vocab_size={self.vocab_size}; "
                    "build it with the simulator's vocabulary"
                )
        return rows

    @classmethod
    def from_preset(cls: type[ConfigT], preset: str = "cpu", **overrides: Any) -> ConfigT:
        """Build the config of ``preset`` with ``overrides`` applied on top."""
        if preset not in cls.PRESETS:
            raise ConfigError(f"unknown {cls.__name__} preset {preset!r}; choose one of {sorted(cls.PRESETS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; valid fields: {sorted(known)}")
        return cls(**{**cls.PRESETS[preset], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
        """Rebuild a config saved with :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"saved {cls.__name__} has unknown field(s) {unknown}; it was written by another version")
        return cls(**dict(data))


def attribute_word_ids(attribute_names: Sequence[str], vocabulary: Vocabulary) -> list[list[int]]:
    """Return the caption token ids of each attribute name, tokenized like captions.

    ``"short sleeves"`` becomes the ids of ``short`` and ``sleeves``. A word
    the vocabulary lacks becomes ``<unk>``, and a name without words becomes
    ``[<unk>]``, so every row has at least one id.
    """
    rows = []
    for name in attribute_names:
        ids = [vocabulary.id_of(word) for word in tokenize(name)]
        rows.append(ids or [UNK_ID])
    return rows


def observation_sizes(
    features: Any, vocabulary: Vocabulary, max_turns: int = 5, caption_length: int = 8
) -> dict[str, Any]:
    """Return the size fields of :class:`RetrieverConfig` for a catalog's features and a vocabulary.

    ``attribute_word_ids`` is included, so the attribute-aware transformer can
    embed attributes with the caption word embeddings.

    Args:
        features: a :class:`fiq_env.features.CatalogFeatures`.
        vocabulary: the simulator's vocabulary (the ids the captions use).
        max_turns: dialog turns in the observation.
        caption_length: tokens per caption.
    """
    return {
        "feature_dim": int(features.dim),
        "vocab_size": len(vocabulary),
        "num_attributes": len(features.attribute_names),
        "max_turns": int(max_turns),
        "caption_length": int(caption_length),
        "top_n": int(features.top_n),
        "attribute_word_ids": attribute_word_ids(features.attribute_names, vocabulary),
    }


def turn_mask(turn: Tensor, max_turns: int) -> Tensor:
    """Return a ``(batch, max_turns)`` float mask, 1.0 for the turns a dialog has reached.

    ``turn`` is clamped to at least 1, so a malformed all-padding observation
    still yields one valid turn rather than an empty (NaN-producing) history.
    """
    turn = turn.reshape(-1, 1).clamp(min=1)
    positions = torch.arange(max_turns, device=turn.device).unsqueeze(0)
    return (positions < turn).float()


def observation_to_tensors(obs: Mapping[str, Any], device: torch.device | str = "cpu") -> tuple[dict[str, Tensor], bool]:
    """Convert a numpy observation, single or batched, to a batched dict of tensors.

    Returns the tensors and whether the input was a single observation (no
    batch dimension). Only the keys of :data:`OBSERVATION_KEYS` and
    ``candidates`` are converted; other keys are dropped.
    """
    if "tokens" not in obs:
        raise ConfigError(f"observation has no 'tokens' key; got keys {sorted(obs)}")
    single = np.ndim(obs["tokens"]) == 2
    tensors: dict[str, Tensor] = {}
    for key in (*OBSERVATION_KEYS, "candidates"):
        if key not in obs:
            continue
        value = np.asarray(obs[key])
        dtype = torch.long if key in _INTEGER_KEYS else torch.float32
        tensor = torch.as_tensor(value, dtype=dtype, device=device)
        if single:
            tensor = tensor.unsqueeze(0)
        tensors[key] = tensor.reshape(-1) if key == "turn" else tensor
    return tensors, single


class Retriever(nn.Module):
    """Base class of retriever agents.

    The contract is small:

    * ``forward(obs) -> Tensor``: ``obs`` contains batched tensors (see the
      module docstring); the result is a ``(batch, feature_dim)`` query. It
      must ignore history rows at or after ``turn``, so padding never leaks.
    * ``act(obs) -> np.ndarray``: the same for numpy observations, single or
      batched, without gradients.
    * ``reset()``: called at the start of each episode; a no-op for models
      that read the whole history from the observation.

    Subclasses set ``config_class`` and build their layers from
    ``self.config`` in ``__init__``. Constructor keyword arguments are config
    fields; ``preset`` picks the starting values.

    Attributes:
        config: the model's configuration, saved with its weights.
        vocabulary: the caption vocabulary the token ids refer to, when known;
            saved with checkpoints so a loaded agent can check it against the
            simulator it is paired with.
    """

    config_class: ClassVar[type[RetrieverConfig]] = RetrieverConfig

    def __init__(self, config: RetrieverConfig | None = None, *, preset: str = "cpu", **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = self.config_class.from_preset(preset, **overrides)
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.vocabulary: Vocabulary | None = None

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(obs) -> (batch, feature_dim)")

    def reset(self) -> None:
        """Forget per-episode state; models that read the whole history keep none."""

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Return the query for a numpy observation: ``(D,)`` for one, ``(batch, D)`` for a batch."""
        tensors, single = observation_to_tensors(obs, self.device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                query = self(tensors)
        finally:
            self.train(was_training)
        array = query.detach().cpu().numpy().astype(np.float32)
        return array[0] if single else array

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write weights (safetensors) and config (JSON) into the folder ``path``."""
        from agents.checkpoint import save_retriever

        save_retriever(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Retriever:
        """Load a retriever saved with :meth:`save`; it must be an instance of this class."""
        from agents.checkpoint import load_retriever

        agent = load_retriever(path, map_location=map_location)
        if not isinstance(agent, cls):
            raise ConfigError(f"{path} contains a {type(agent).__name__}, not a {cls.__name__}; use agents.load(path)")
        return agent

    def extra_repr(self) -> str:
        return f"config={self.config}"
