"""Shared parts of the learned captioners: model inputs, the model interface and the simulator wrapper.

A learned captioner is a torch module with two methods: :meth:`CaptionModel.encode`
turns a batch of (reference, target) pairs into a batch-first memory tensor,
and :meth:`CaptionModel.logits` scores the next word of every prefix given
that memory. Training (:mod:`simulators.training`) and decoding
(:mod:`simulators.decoding`) use nothing else, so the transformer and the RNN
captioner share one training loop, one checkpoint format and one decoder.

:class:`LearnedCaptioner` wraps a trained model as a
:class:`~simulators.base.UserSimulator` bound to a catalog and its encoder
features.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from fiq_env.catalog import Catalog
from fiq_env.errors import ConfigError
from fiq_env.features import CatalogFeatures
from fiq_env.registry import Registry
from fiq_env.text import BOS_ID, EOS_ID, PAD_ID, Vocabulary, tokenize
from simulators.base import UserSimulator
from simulators.decoding import DecodingConfig, StepFunction, decode

logger = logging.getLogger(__name__)

CAPTION_MODELS: Registry[type[CaptionModel]] = Registry("caption model")
"""Model classes by name (``"transformer"``, ``"rnn"``), used to rebuild a model from a checkpoint."""

# Modules that register a caption model class when imported.
_MODEL_MODULES = {"transformer": "simulators.transformer_captioner", "rnn": "simulators.rnn_captioner"}


def caption_model_class(name: str) -> type[CaptionModel]:
    """Return the caption model class registered as ``name``, importing built-in ones on demand."""
    import importlib

    module = _MODEL_MODULES.get(name)
    if module is not None:
        importlib.import_module(module)
    return CAPTION_MODELS.get(name)


@dataclass(frozen=True)
class ModelDims:
    """Sizes a caption model takes from its data rather than from its configuration.

    Attributes:
        vocab_size: words in the caption vocabulary, special tokens included.
        feature_dim: length of an image feature vector.
        num_attributes: size of the attribute vocabulary of the features.
        top_n: attributes per image fed to the model.
        attribute_words: maximum words in one attribute name (0 when the
            model does not embed attributes through their words).
    """

    vocab_size: int
    feature_dim: int
    num_attributes: int
    top_n: int
    attribute_words: int = 0


@dataclass
class CaptionInputs:
    """Model inputs for a batch of (reference, target) pairs.

    Attributes:
        reference_features: ``(batch, feature_dim)`` image features of the shown items.
        target_features: ``(batch, feature_dim)`` image features of the wanted items.
        reference_attributes: ``(batch, top_n)`` top attribute indices of the shown items.
        target_attributes: ``(batch, top_n)`` top attribute indices of the wanted items.
    """

    reference_features: Tensor
    target_features: Tensor
    reference_attributes: Tensor
    target_attributes: Tensor

    @classmethod
    def from_features(
        cls, features: CatalogFeatures, reference: np.ndarray, target: np.ndarray, device: torch.device | str = "cpu"
    ) -> CaptionInputs:
        """Gather the inputs of item pairs ``(reference[i], target[i])`` from encoder outputs."""
        reference = np.asarray(reference, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)

        def gather(array: np.ndarray, rows: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(array[rows])).to(device)

        return cls(
            reference_features=gather(features.features, reference).float(),
            target_features=gather(features.features, target).float(),
            reference_attributes=gather(features.top_attributes, reference).long(),
            target_attributes=gather(features.top_attributes, target).long(),
        )

    def __len__(self) -> int:
        return int(self.reference_features.shape[0])


class CaptionModel(nn.Module, abc.ABC):
    """A relative captioner: memory from an image pair, next-word logits from memory and prefix.

    Subclasses set :attr:`name` and :attr:`config_class` and register
    themselves in :data:`CAPTION_MODELS`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]

    def __init__(self, config: Any, dims: ModelDims) -> None:
        super().__init__()
        self.config = config
        self.dims = dims

    @property
    def max_words(self) -> int:
        """Maximum caption length in words (EOS not counted)."""
        return int(self.config.max_words)

    @abc.abstractmethod
    def encode(self, inputs: CaptionInputs) -> Tensor:
        """Return the memory of each pair, batch first: ``(batch, ...)``."""

    @abc.abstractmethod
    def logits(self, memory: Tensor, tokens: Tensor) -> Tensor:
        """Return next-word logits ``(batch, length, vocab)`` for prefixes ``tokens`` ``(batch, length)``.

        Position ``i`` of the output scores the token that follows
        ``tokens[:, : i + 1]``; ``tokens[:, 0]`` is BOS.
        """

    def step_function(self, memory: Tensor) -> StepFunction:
        """Return a decoding step over ``memory``: rows pick their pair's memory by batch index."""

        def step(tokens: Tensor, batch_index: Tensor) -> Tensor:
            rows_memory = memory.index_select(0, batch_index)
            return torch.log_softmax(self.logits(rows_memory, tokens)[:, -1], dim=-1)

        return step

    def generate(
        self, inputs: CaptionInputs, decoding: DecodingConfig, generator: torch.Generator | None = None
    ) -> Tensor:
        """Decode one caption per pair; returns ``(batch, max_words + 1)`` token ids without BOS."""
        memory = self.encode(inputs)
        device = memory.device
        return decode(
            self.step_function(memory), len(inputs), self.max_words + 1, decoding, generator=generator, device=device
        )

    def set_attribute_words(self, word_ids: Tensor) -> None:
        """Store the caption-vocabulary ids of each attribute's words (see :func:`attribute_word_ids`).

        Models that do not read attributes ignore it.
        """

    def export_config(self) -> dict[str, Any]:
        """Return the JSON-ready model configuration and dimensions stored in checkpoints."""
        return {"model": self.name, "config": dataclasses.asdict(self.config), "dims": dataclasses.asdict(self.dims)}


def attribute_word_ids(attribute_names: tuple[str, ...] | list[str], vocabulary: Vocabulary) -> Tensor:
    """Return ``(num_attributes, max_words)`` caption-vocabulary ids of each attribute name's words.

    A group prefix (``"length:long"``) is dropped, and words missing from the
    vocabulary and unused positions are ``PAD_ID``.
    """
    words = [tokenize(name.split(":")[-1]) for name in attribute_names]
    table = torch.full((len(words), max((len(w) for w in words), default=1) or 1), PAD_ID, dtype=torch.long)
    for row, attribute in enumerate(words):
        for column, word in enumerate(attribute):
            if word in vocabulary:
                table[row, column] = vocabulary.id_of(word)
    return table


def teacher_forcing_tensors(vocabulary: Vocabulary, captions: list[str], max_words: int) -> tuple[Tensor, Tensor]:
    """Encode captions for teacher forcing.

    Returns ``(inputs, targets)``, both ``(batch, max_words + 1)``: ``inputs``
    is BOS followed by the words and ``targets`` is the words followed by EOS,
    each padded with ``PAD_ID``. Captions longer than ``max_words`` are cut
    (and still end with EOS).
    """
    words = vocabulary.encode_batch(captions, max_words, add_eos=False)
    batch = len(captions)
    lengths = (words != 0).sum(axis=1)
    inputs = np.zeros((batch, max_words + 1), dtype=np.int64)
    targets = np.zeros((batch, max_words + 1), dtype=np.int64)
    inputs[:, 0] = BOS_ID
    inputs[:, 1:] = words
    targets[:, :max_words] = words
    targets[np.arange(batch), lengths] = EOS_ID
    # Inputs after the caption's last word are padding, so EOS is never a model input.
    return torch.from_numpy(inputs), torch.from_numpy(targets)


class LearnedCaptioner(UserSimulator):
    """A trained caption model used as a user simulator.

    The model runs in evaluation mode under ``torch.inference_mode``. Greedy
    and beam decoding ignore ``rng``, so the same pair always gets the same
    caption; the ``sample`` strategy seeds a torch generator from ``rng``.
    Captions never exceed the model's ``max_words`` words.

    Args:
        catalog: the catalog whose item indices :meth:`describe` receives.
        features: encoder outputs of that catalog.
        model: a trained :class:`CaptionModel`.
        vocabulary: the vocabulary the model was trained with.
        decoding: a :class:`DecodingConfig` or a strategy name.
        batch_size: pairs decoded at once (bounds memory use).
        metadata: checkpoint information kept for reference (path, step, metrics).
    """

    def __init__(
        self,
        catalog: Catalog,
        features: CatalogFeatures,
        model: CaptionModel,
        vocabulary: Vocabulary,
        decoding: DecodingConfig | str = "greedy",
        batch_size: int = 256,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(catalog)
        if features.features.shape[0] != len(catalog):
            raise ConfigError(
                f"features have {features.features.shape[0]} rows but the catalog has {len(catalog)} items; "
                f"encode this catalog (fiq_env.encoder.encode_catalog) and pass its features"
            )
        if model.dims.vocab_size != len(vocabulary):
            raise ConfigError(f"model vocabulary size {model.dims.vocab_size} != vocabulary length {len(vocabulary)}")
        if model.dims.feature_dim != features.dim:
            raise ConfigError(
                f"model expects {model.dims.feature_dim}-dimensional features but the catalog features have "
                f"{features.dim}; train the captioner on features of this encoder"
            )
        self.name = model.name
        self.features = features
        self.model = model.eval()
        self._vocabulary = vocabulary
        self.decoding = DecodingConfig.from_name(decoding)
        self.batch_size = batch_size
        self.metadata = metadata or {}

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def _describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        generator = None
        if self.decoding.strategy == "sample":
            generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        device = next(self.model.parameters()).device

        return generate_captions(
            self.model, self._vocabulary, self.features, reference, target, self.decoding,
            generator=generator, batch_size=self.batch_size, device=device,
        )

    def describe_rows(
        self, reference: np.ndarray, target: np.ndarray, rngs: list[np.random.Generator]
    ) -> list[str]:
        """Return one caption per pair; only the ``sample`` strategy draws from ``rngs[i]``.

        Greedy and beam decoding use no random numbers, so all rows are
        decoded in one batched call and every generator is left untouched, as
        a one-pair :meth:`describe` leaves it. The ``sample`` strategy
        decodes row by row, seeding row ``i``'s torch generator from ``rngs[i]``.

        NOTE: a batched forward pass is not bit-identical to a one-row pass
        (matrix products are blocked differently, and on CPU the logits differ
        by up to about 1e-6). A row therefore gets a different caption than a
        one-pair call only where two candidate scores are that close. The
        tests compare both paths on 300 pairs per model (untrained cpu-preset
        weights, greedy and beam) and find them equal, which is evidence, not proof.
        """
        if self.decoding.strategy == "sample":
            return super().describe_rows(reference, target, rngs)
        if len(rngs) != len(np.asarray(target).reshape(-1)):
            raise ConfigError(f"describe_rows needs one generator per pair, got {len(rngs)} for {len(target)} pairs")
        for rng in rngs:
            reference, target = self.validate_pairs(reference, target, rng)
        if not rngs:
            return []
        return self._describe(reference, target, rngs[0])


def generate_captions(
    model: CaptionModel,
    vocabulary: Vocabulary,
    features: CatalogFeatures,
    reference: np.ndarray,
    target: np.ndarray,
    decoding: DecodingConfig | str = "greedy",
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> list[str]:
    """Caption item pairs with ``model`` in evaluation mode; each caption has at most ``max_words`` words.

    The model's training mode is restored afterwards.
    """
    decoding = DecodingConfig.from_name(decoding)
    was_training = model.training
    model.eval()
    captions: list[str] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(reference), batch_size):
                chunk = slice(start, start + batch_size)
                inputs = CaptionInputs.from_features(features, reference[chunk], target[chunk], device)
                tokens = model.generate(inputs, decoding, generator)
                captions.extend(tokens_to_text(vocabulary, tokens, model.max_words))
    finally:
        model.train(was_training)
    return captions


def tokens_to_text(vocabulary: Vocabulary, tokens: Tensor, max_words: int) -> list[str]:
    """Turn decoded ids ``(batch, length)`` into captions of at most ``max_words`` words."""
    return [" ".join(vocabulary.decode(row.tolist()).split()[:max_words]) for row in tokens.cpu()]
