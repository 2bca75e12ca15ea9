"""Training of the learned captioners: caption sources, the training loop, evaluation and the cache.

One loop trains every :class:`~simulators.captioner.CaptionModel` with
cross-entropy under teacher forcing and AdamW. Captions come from a
:class:`CaptionSource`: the human captions of a data set (Fashion IQ) or
another simulator (``template`` on synthetic and photo catalogs).

Every batch is drawn from a generator seeded by ``(seed, step)``, and
checkpoints store the optimizer state and the torch random state, so a run
resumed from its last checkpoint takes the same steps as an uninterrupted
one. TensorBoard scalars (``train/loss``, ``train/lr``, ``val/loss``,
``val/bleu4``, ``val/rouge_l``, ``val/cider``, ``val/attribute_accuracy``,
``val/attribute_claims`` and their per-kind variants) share one global step, the count of optimizer
steps, across resumed runs.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fiq_env.catalog import Catalog
from fiq_env.errors import CheckpointError, ConfigError, DataError
from fiq_env.features import CatalogFeatures
from fiq_env.io import cache_root
from fiq_env.text import PAD_ID, Vocabulary
from simulators.base import UserSimulator
from simulators.caption_metrics import attribute_accuracy, caption_scores
from simulators.captioner import (
    CaptionInputs,
    CaptionModel,
    LearnedCaptioner,
    ModelDims,
    attribute_word_ids,
    caption_model_class,
    generate_captions,
    teacher_forcing_tensors,
)
from simulators.captioner_checkpoint import (
    CONFIG_NAME,
    CaptionerCheckpoint,
    load_checkpoint,
    restore_optimizer,
    save_checkpoint,
)
from simulators.decoding import DecodingConfig

logger = logging.getLogger(__name__)

VALIDATION_SEED_OFFSET = 1 << 20
"""Validation pairs are drawn with seed ``(config.seed, VALIDATION_SEED_OFFSET)``, apart from every batch seed."""


@dataclass
class TrainingConfig:
    """Optimization settings of a captioner training run.

    Attributes:
        steps: optimizer steps in total (a resumed run stops at the same count).
        batch_size: (pair, caption) examples per step.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        warmup_steps: steps of linear warm-up before the cosine decay.
        min_lr_ratio: learning rate at the last step, as a share of the peak.
        grad_clip: maximum gradient norm (0 disables clipping).
        label_smoothing: cross-entropy label smoothing.
        eval_every: steps between validation runs (the last step always validates).
        checkpoint_every: steps between checkpoints (the last step always saves).
        val_pairs: held-out pairs scored at validation.
        references_per_pair: captions per validation pair drawn from a
            simulator source (human sources use the captions they have).
        seed: seeds the batches, the validation pairs and the initialization.
    """

    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    label_smoothing: float = 0.0
    eval_every: int = 500
    checkpoint_every: int = 500
    val_pairs: int = 500
    references_per_pair: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "checkpoint_every", "val_pairs", "references_per_pair"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training {name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainingConfig:
        """Return preset ``"cpu"`` (minutes on 2 cores) or ``"paper"`` (longer, larger batches, lower rate)."""
        presets = {
            "cpu": {},
            "paper": {"steps": 30000, "batch_size": 128, "learning_rate": 3e-4, "warmup_steps": 2000,
                      "eval_every": 2000, "checkpoint_every": 1000, "val_pairs": 2000},
        }
        if name not in presets:
            raise ConfigError(f"unknown training preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})

    def learning_rate_at(self, step: int) -> float:
        """Return the learning rate of 0-based step ``step``: linear warm-up, then cosine decay."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.learning_rate * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)


@dataclass
class ValidationSet:
    """Held-out pairs with their reference captions.

    Attributes:
        reference: ``(pairs,)`` item indices of the shown images.
        target: ``(pairs,)`` item indices of the wanted images.
        references: the reference captions of each pair.
    """

    reference: np.ndarray
    target: np.ndarray
    references: list[list[str]]


class CaptionSource(abc.ABC):
    """A provider of training and validation captions.

    Attributes:
        name: identifies the source in checkpoints and cache keys.
    """

    name: str

    @property
    @abc.abstractmethod
    def vocabulary(self) -> Vocabulary:
        """Vocabulary of the captions, which becomes the captioner's vocabulary."""

    @abc.abstractmethod
    def train_batch(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Return ``(reference, target, captions)`` for ``batch_size`` training examples drawn with ``rng``."""

    @abc.abstractmethod
    def validation_set(self, rng: np.random.Generator, num_pairs: int, references_per_pair: int) -> ValidationSet:
        """Return up to ``num_pairs`` held-out pairs with their reference captions."""


class SimulatorCaptions(CaptionSource):
    """Captions written by another simulator for random pairs of a split.

    Training pairs are two different items drawn uniformly from the training
    split, each step with fresh captions; validation pairs come from the
    validation split with ``references_per_pair`` captions drawn with
    different random choices as multiple references.
    """

    def __init__(self, catalog: Catalog, teacher: UserSimulator, train_split: str = "train", val_split: str = "val") -> None:
        self.catalog = catalog
        self.teacher = teacher
        self.name = str(getattr(teacher, "name", type(teacher).__name__))
        self.train_items = catalog.indices(train_split)
        self.val_items = catalog.indices(val_split)
        for split, items in ((train_split, self.train_items), (val_split, self.val_items)):
            if len(items) < 2:
                raise DataError(f"the {split} split of {catalog!r} has {len(items)} item(s); captioner training needs at least 2")

    @property
    def vocabulary(self) -> Vocabulary:
        return self.teacher.vocabulary

    def train_batch(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        reference, target = _distinct_pairs(rng, self.train_items, batch_size)
        return reference, target, self.teacher.describe(reference, target, rng)

    def validation_set(self, rng: np.random.Generator, num_pairs: int, references_per_pair: int) -> ValidationSet:
        reference, target = _distinct_pairs(rng, self.val_items, num_pairs)
        draws = [self.teacher.describe(reference, target, rng) for _ in range(references_per_pair)]
        return ValidationSet(reference, target, [list(captions) for captions in zip(*draws)])


class HumanCaptions(CaptionSource):
    """The human relative captions of a data set (``catalog.caption_pairs``).

    Each caption of a training pair is one example. The vocabulary holds the
    training captions' words seen at least ``min_word_count`` times. Pairs of
    the hidden-target test split are never used.
    """

    name = "human"

    def __init__(self, catalog: Catalog, min_word_count: int = 1) -> None:
        self.catalog = catalog
        train_reference, train_target, self.train_captions = self._examples("train", per_caption=True)
        self.train_reference = np.asarray(train_reference, dtype=np.int64)
        self.train_target = np.asarray(train_target, dtype=np.int64)
        if not self.train_captions:
            raise DataError(
                f"{catalog!r} has no training caption pairs with a target; use a simulator source "
                f"(teacher='template') for catalogs without human captions"
            )
        self._vocabulary = Vocabulary.build(self.train_captions, min_count=min_word_count)

    def _examples(self, split: str, per_caption: bool) -> tuple[list[int], list[int], list]:
        references, targets, captions = [], [], []
        for pair in self.catalog.caption_pairs:
            if pair.split != split or pair.target is None or not pair.captions:
                continue
            reference, target = self.catalog.index_of(pair.reference), self.catalog.index_of(pair.target)
            entries = list(pair.captions) if per_caption else [list(pair.captions)]
            for entry in entries:
                references.append(reference)
                targets.append(target)
                captions.append(entry)
        return references, targets, captions

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    def train_batch(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        rows = rng.integers(len(self.train_captions), size=batch_size)
        return self.train_reference[rows], self.train_target[rows], [self.train_captions[i] for i in rows]

    def validation_set(self, rng: np.random.Generator, num_pairs: int, references_per_pair: int) -> ValidationSet:
        reference, target, captions = self._examples("val", per_caption=False)
        if not captions:
            raise DataError(f"{self.catalog!r} has no validation caption pairs with a target")
        keep = np.sort(rng.permutation(len(captions))[:num_pairs])
        return ValidationSet(
            np.asarray(reference, dtype=np.int64)[keep], np.asarray(target, dtype=np.int64)[keep],
            [captions[i] for i in keep],
        )


def _distinct_pairs(rng: np.random.Generator, items: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` pairs of two different items of ``items``."""
    reference = rng.integers(len(items), size=count)
    # Shifting by 1..len-1 positions never lands on the same item.
    target = (reference + rng.integers(1, len(items), size=count)) % len(items)
    return items[reference], items[target]


def default_caption_source(catalog: Catalog, teacher: str | UserSimulator | None = None) -> CaptionSource:
    """Pick the captions to learn from: the catalog's human captions, else the ``template`` simulator.

    Args:
        catalog: the catalog to train on.
        teacher: ``"human"``, a simulator name, a simulator object, or None
            for human captions where the catalog has training pairs with
            targets and ``template`` otherwise.
    """
    if isinstance(teacher, UserSimulator):
        return SimulatorCaptions(catalog, teacher)
    has_human = any(p.split == "train" and p.target is not None for p in catalog.caption_pairs)
    if teacher == "human" or (teacher is None and has_human):
        return HumanCaptions(catalog)
    import simulators

    return SimulatorCaptions(catalog, simulators.make(teacher or "template", catalog=catalog))


@dataclass
class TrainingResult:
    """Outcome of :func:`train_captioner`.

    Attributes:
        checkpoint: JSON path of the final checkpoint.
        step: optimizer steps taken in total, earlier runs included.
        losses: training loss of each step run by this call.
        metrics: the last validation metrics.
        seconds: wall-clock time of this call.
    """

    checkpoint: Path
    step: int
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def build_model(
    name: str, model_config: Any, vocabulary: Vocabulary, features: CatalogFeatures, seed: int = 0
) -> CaptionModel:
    """Create caption model ``name`` sized for ``vocabulary`` and ``features``, initialized from ``seed``."""
    model_class = caption_model_class(name)
    word_ids = attribute_word_ids(features.attribute_names, vocabulary)
    dims = ModelDims(
        vocab_size=len(vocabulary), feature_dim=features.dim,
        num_attributes=len(features.attribute_names), top_n=features.top_n, attribute_words=word_ids.shape[1],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(model_config, dims)
    model.set_attribute_words(word_ids)
    return model


def train_captioner(
    model: CaptionModel,
    features: CatalogFeatures,
    source: CaptionSource,
    config: TrainingConfig,
    run_dir: str | Path,
    *,
    catalog: Catalog | None = None,
    resume: bool = True,
    progress: bool = True,
    tensorboard: bool = True,
) -> TrainingResult:
    """Train ``model`` on ``source`` until ``config.steps`` steps, checkpointing into ``run_dir``.

    When ``run_dir`` already contains a checkpoint and ``resume`` is true,
    training continues from it: weights, optimizer state, random state and
    step count come from the checkpoint. The model's vocabulary is
    ``source.vocabulary``.

    Args:
        model: a fresh model (or the one to continue), sized for ``source.vocabulary``.
        features: encoder outputs of the catalog the source draws items from.
        source: training and validation captions.
        config: optimization settings.
        run_dir: folder of the checkpoint and the ``tensorboard`` logs.
        catalog: enables attribute accuracy at validation when given.
        resume: continue from a checkpoint in ``run_dir``; when false an
            existing checkpoint is overwritten.
        progress: show a tqdm progress bar.
        tensorboard: write TensorBoard scalars under ``run_dir / "tensorboard"``.

    Raises:
        CheckpointError: when the checkpoint in ``run_dir`` belongs to a different model.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    vocabulary = source.vocabulary
    if model.dims.vocab_size != len(vocabulary):
        raise ConfigError(f"model vocabulary size {model.dims.vocab_size} != source vocabulary length {len(vocabulary)}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    start_step = 0
    rng_state = None
    if resume and (run_dir / CONFIG_NAME).is_file():
        checkpoint = load_checkpoint(run_dir)
        _check_resumable(checkpoint, model, vocabulary)
        model.load_state_dict(checkpoint.model.state_dict())
        restore_optimizer(checkpoint, optimizer)
        start_step = checkpoint.step
        rng_state = checkpoint.tensors.get("rng.torch")
        logger.info("resuming captioner training from step %d in %s", start_step, run_dir)

    validation = source.validation_set(
        np.random.default_rng([config.seed, VALIDATION_SEED_OFFSET]), config.val_pairs, config.references_per_pair
    )
    writer = _summary_writer(run_dir, start_step) if tensorboard else None
    info = {
        "attribute_names": list(features.attribute_names),
        "catalog_fingerprint": features.catalog_fingerprint,
        "encoder_key": features.encoder_key,
        "source": source.name,
        "training": dataclasses.asdict(config),
    }

    losses: list[float] = []
    metrics: dict[str, float] = {}
    checkpoint_path = run_dir / CONFIG_NAME
    model.train()
    with torch.random.fork_rng(devices=[]):
        if rng_state is not None:
            torch.set_rng_state(rng_state)
        else:
            torch.manual_seed(config.seed)
        bar = tqdm(range(start_step, config.steps), desc=f"train {model.name} captioner", disable=not progress,
                   initial=start_step, total=config.steps)
        for step in bar:
            loss = _training_step(model, optimizer, features, source, config, vocabulary, step)
            losses.append(loss)
            done = step + 1
            if writer is not None:
                writer.add_scalar("train/loss", loss, done)
                writer.add_scalar("train/lr", config.learning_rate_at(step), done)
            bar.set_postfix(loss=f"{loss:.3f}")

            if done % config.eval_every == 0 or done == config.steps:
                metrics = evaluate_captioner(model, vocabulary, features, validation, catalog=catalog)
                model.train()
                logger.info("captioner step %d: %s", done, _format_metrics(metrics))
                if writer is not None:
                    for name, value in metrics.items():
                        writer.add_scalar(f"val/{name}", value, done)
            if done % config.checkpoint_every == 0 or done == config.steps:
                checkpoint_path = save_checkpoint(
                    run_dir, model, vocabulary, {**info, "metrics": metrics},
                    step=done, optimizer=optimizer, rng_state=torch.get_rng_state(),
                )
    if writer is not None:
        writer.close()
    model.eval()
    return TrainingResult(checkpoint_path, max(start_step, config.steps), losses, metrics, time.perf_counter() - started)


def _training_step(
    model: CaptionModel,
    optimizer: torch.optim.Optimizer,
    features: CatalogFeatures,
    source: CaptionSource,
    config: TrainingConfig,
    vocabulary: Vocabulary,
    step: int,
) -> float:
    """Run optimizer step ``step`` (0-based) on its own batch and return the loss."""
    rng = np.random.default_rng([config.seed, step])
    reference, target, captions = source.train_batch(rng, config.batch_size)
    device = next(model.parameters()).device
    inputs = CaptionInputs.from_features(features, reference, target, device)
    words_in, words_out = teacher_forcing_tensors(vocabulary, captions, model.max_words)

    for group in optimizer.param_groups:
        group["lr"] = config.learning_rate_at(step)
    # (batch, max_words + 1, vocab)
    logits = model.logits(model.encode(inputs), words_in.to(device))
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), words_out.to(device).reshape(-1),
        ignore_index=PAD_ID, label_smoothing=config.label_smoothing,
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return float(loss.detach())


def evaluate_captioner(
    model: CaptionModel,
    vocabulary: Vocabulary,
    features: CatalogFeatures,
    validation: ValidationSet,
    *,
    catalog: Catalog | None = None,
    decoding: DecodingConfig | str = "greedy",
) -> dict[str, float]:
    """Score ``model`` on held-out pairs.

    Returns ``loss`` (teacher-forced cross-entropy on each pair's first
    reference), ``bleu4``, ``rouge_l`` and ``cider`` (0-100) of the decoded
    captions against all references. When ``catalog`` is given it adds
    ``attribute_accuracy``: the share (0-100, NaN when no claim could be
    checked) of attribute claims that are true of the target. Claims are
    value words, comparatives against the reference item and negations.
    ``attribute_claims`` is the number of checked claims behind it. Per kind
    of claim (``direct``, ``comparative``, ``negated``) the same two figures
    are ``attribute_accuracy_<kind>`` and ``attribute_claims_<kind>``.
    """
    captions = generate_captions(model, vocabulary, features, validation.reference, validation.target, decoding)
    metrics = {"loss": validation_loss(model, vocabulary, features, validation)}
    metrics.update(caption_scores(captions, validation.references))
    if catalog is not None:
        accuracy = attribute_accuracy(catalog, captions, validation.target, reference=validation.reference)
        metrics["attribute_accuracy"] = 100.0 * accuracy.accuracy
        metrics["attribute_claims"] = float(accuracy.checked)
        for kind, counts in accuracy.by_kind().items():
            metrics[f"attribute_accuracy_{kind}"] = 100.0 * counts.accuracy
            metrics[f"attribute_claims_{kind}"] = float(counts.checked)
    return metrics


def validation_loss(
    model: CaptionModel, vocabulary: Vocabulary, features: CatalogFeatures, validation: ValidationSet, batch_size: int = 256
) -> float:
    """Return the mean teacher-forced cross-entropy per word on each pair's first reference caption."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, words = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(validation.reference), batch_size):
            chunk = slice(start, start + batch_size)
            inputs = CaptionInputs.from_features(features, validation.reference[chunk], validation.target[chunk], device)
            captions = [refs[0] for refs in validation.references[chunk]]
            words_in, words_out = teacher_forcing_tensors(vocabulary, captions, model.max_words)
            logits = model.logits(model.encode(inputs), words_in.to(device))
            total += float(F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), words_out.to(device).reshape(-1),
                ignore_index=PAD_ID, reduction="sum",
            ))
            words += int((words_out != PAD_ID).sum())
    model.train(was_training)
    return total / max(words, 1)


def _check_resumable(checkpoint: CaptionerCheckpoint, model: CaptionModel, vocabulary: Vocabulary) -> None:
    saved = {key: checkpoint.info.get(key) for key in ("model", "config", "dims")}
    if saved != json.loads(json.dumps(model.export_config())):
        raise CheckpointError(
            f"{checkpoint.path} was written for a different model ({saved['model']}, {saved['config']}); "
            f"pass a new run directory or resume=False"
        )
    if checkpoint.vocabulary.words != vocabulary.words:
        raise CheckpointError(f"{checkpoint.path} uses a different vocabulary; pass a new run directory or resume=False")


def _summary_writer(run_dir: Path, start_step: int):
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events logged after the checkpoint by an interrupted run.
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)


def _format_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in metrics.items())


def cache_directory(model_name: str, model_config: Any, training: TrainingConfig, source_name: str,
                    features: CatalogFeatures, cache_dir: str | Path | None = None) -> Path:
    """Return the cache folder of a captioner trained with these settings on these features.

    ``cache_dir`` is the folder of captioner entries; None means
    ``cache_root() / "captioners"``.
    """
    key = json.dumps(
        {"model": model_name, "config": dataclasses.asdict(model_config), "training": dataclasses.asdict(training),
         "source": source_name, "encoder": features.encoder_key, "catalog": features.catalog_fingerprint},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "captioners"
    return folder / f"{model_name}-{features.catalog_fingerprint or 'catalog'}-{digest}"


def load_or_train_captioner(
    model_name: str,
    *,
    catalog: Catalog,
    features: CatalogFeatures | None = None,
    checkpoint: str | Path | None = None,
    preset: str = "cpu",
    decoding: DecodingConfig | str = "greedy",
    model_config: Any = None,
    training: TrainingConfig | None = None,
    teacher: str | UserSimulator | None = None,
    device: str = "cpu",
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> LearnedCaptioner:
    """Return captioner ``model_name`` as a simulator: from ``checkpoint``, from the cache, or trained now.

    Without ``checkpoint`` the captioner is looked up in ``cache_dir``
    (default ``cache_root() / "captioners"``) under a key made of the catalog
    fingerprint, the encoder key, the model and training configurations and
    the caption source. When absent it is trained there first (logged, with a
    progress bar); an interrupted training resumes on the next call.

    Args:
        model_name: ``"transformer"`` or ``"rnn"``.
        catalog: the catalog whose items the simulator captions.
        features: encoder outputs of ``catalog``; computed with
            ``fiq_env.encoder.encode_catalog`` when omitted.
        checkpoint: a checkpoint folder or its JSON file; skips the cache.
        preset: ``"cpu"`` or ``"paper"``, for the model and training settings not given.
        decoding: ``"greedy"`` (agent training), ``"beam"`` (evaluation) or a :class:`DecodingConfig`.
        model_config: overrides the preset's model configuration.
        training: overrides the preset's training configuration.
        teacher: caption source, see :func:`default_caption_source`.
        device: torch device of the model.
        progress: show a progress bar while training.
        cache_dir: folder of cached captioners, see above.
    """
    if features is None:
        features = _encode(catalog)

    if checkpoint is not None:
        loaded = load_checkpoint(checkpoint, device)
        if loaded.info.get("model") != model_name:
            raise CheckpointError(f"{loaded.path} contains a {loaded.info.get('model')!r} captioner, not {model_name!r}; pass a {model_name} checkpoint")
        _check_features(loaded, features, catalog)
        return LearnedCaptioner(catalog, features, loaded.model, loaded.vocabulary, decoding,
                                metadata={"checkpoint": str(loaded.path), "step": loaded.step})

    model_class = caption_model_class(model_name)
    model_config = model_config if model_config is not None else model_class.config_class.preset(preset)
    training = training if training is not None else TrainingConfig.preset(preset)
    source = default_caption_source(catalog, teacher)
    directory = cache_directory(model_name, model_config, training, source.name, features, cache_dir)

    json_path = directory / CONFIG_NAME
    if json_path.is_file():
        loaded = load_checkpoint(directory, device)
        if loaded.step >= training.steps:
            logger.info("loaded %s captioner from cache %s", model_name, directory)
            return LearnedCaptioner(catalog, features, loaded.model, loaded.vocabulary, decoding,
                                    metadata={"checkpoint": str(loaded.path), "step": loaded.step})

    logger.info("training %s captioner (%s preset, %d steps) into %s", model_name, preset, training.steps, directory)
    model = build_model(model_name, model_config, source.vocabulary, features, training.seed).to(device)
    result = train_captioner(model, features, source, training, directory, catalog=catalog, progress=progress)
    return LearnedCaptioner(catalog, features, model, source.vocabulary, decoding,
                            metadata={"checkpoint": str(result.checkpoint), "step": result.step,
                                      "metrics": result.metrics})


def _encode(catalog: Catalog) -> CatalogFeatures:
    try:
        from fiq_env.encoder import encode_catalog
    except ImportError as error:
        raise ConfigError(
            f"no features given and the image encoder is unavailable ({error}); pass features=CatalogFeatures(...)"
        ) from error
    return encode_catalog(catalog)


def _check_features(loaded: CaptionerCheckpoint, features: CatalogFeatures, catalog: Catalog) -> None:
    """Reject features the model cannot read; warn when they come from another catalog or encoder."""
    dims = loaded.model.dims
    if dims.feature_dim != features.dim or dims.num_attributes != len(features.attribute_names):
        raise CheckpointError(
            f"{loaded.path} expects {dims.feature_dim}-dimensional features over {dims.num_attributes} attributes, "
            f"got {features.dim} over {len(features.attribute_names)}; use a captioner trained on this encoder"
        )
    if loaded.info.get("attribute_names") not in (None, list(features.attribute_names)):
        raise CheckpointError(f"{loaded.path} was trained with a different attribute vocabulary than these features")
    saved_key = loaded.info.get("encoder_key")
    if saved_key and features.encoder_key and saved_key != features.encoder_key:
        warnings.warn(
            f"captioner {loaded.path} was trained on features of encoder {saved_key!r}, "
            f"these come from {features.encoder_key!r}; its captions may be poor",
            stacklevel=3,
        )
    saved_catalog = loaded.info.get("catalog_fingerprint")
    if saved_catalog and saved_catalog != catalog.fingerprint():
        logger.info("captioner %s was trained on catalog %s and now captions catalog %s",
                    loaded.path, saved_catalog, catalog.fingerprint())
