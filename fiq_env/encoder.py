"""The image encoder f_I and the attribute model f_A: configuration, model, training, evaluation.

Following the Fashion IQ paper (Wu et al., CVPR 2021), one timm backbone
produces both: its global-pool output is the image feature f_I, and a linear
layer on top of it scores the attribute vocabulary (f_A), of which the top
N = 8 attributes are kept. The backbone and head are trained together with a
multi-label binary cross-entropy on the catalog's labelled training items.

:func:`encode_catalog` is the entry point the rest of the library uses: it
returns :class:`~fiq_env.features.CatalogFeatures` for every item, from the
on-disk cache when an entry for this catalog and configuration exists, and by
training and encoding (then caching) otherwise.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import logging
import math
import platform
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from safetensors import SafetensorError
from safetensors.torch import load_file as load_torch_file
from torch import nn
from tqdm.auto import tqdm

from fiq_env.catalog.base import SPLITS, Catalog
from fiq_env.devices import resolve_device
from fiq_env.errors import CheckpointError, ConfigError, DataError, UnknownNameError
from fiq_env.feature_cache import WEIGHTS_FILE, FeatureCache, entry_name
from fiq_env.features import CatalogFeatures
from fiq_env.io import file_sha256, read_json

logger = logging.getLogger(__name__)

TRAINING_VERSION = 1
"""Part of every cache key; bump it when a change to training alters the features."""

# =============================================================================================
# Configuration
# =============================================================================================


@dataclass
class EncoderConfig:
    """How to build and train the encoder. Create one with :meth:`preset` and override fields.

    Every field except ``top_n``, ``num_workers``, ``device`` and
    ``preload_max_mb`` changes the features, so it is part of :meth:`cache_key`.
    """

    model_name: str = field(default="test_resnet", metadata={"help": "timm model name (see timm.list_models())"})
    image_size: int = field(default=64, metadata={"help": "side of the square input image, in pixels"})
    pretrained: bool = field(
        default=False,
        metadata={"help": "start from timm's hub weights (downloads them; ignored when weights_path is set)"},
    )
    weights_path: str | None = field(
        default=None,
        metadata={"help": "local backbone weights (.safetensors, or a timm .pth/.bin state dict) used instead of the hub"},
    )
    freeze_backbone: bool = field(
        default=False,
        metadata={"help": "train only the attribute head and keep the backbone as loaded (Fashion IQ's f_A)"},
    )
    epochs: int = field(default=12, metadata={"help": "passes over the labelled training items"})
    batch_size: int = field(default=32, metadata={"help": "images per optimizer step and per encoding batch"})
    lr: float = field(default=3e-3, metadata={"help": "peak AdamW learning rate (linear warm-up, then cosine decay)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    top_n: int = field(default=8, metadata={"help": "attributes kept per item in CatalogFeatures.top_attributes"})
    seed: int = field(default=0, metadata={"help": "seed of weight initialization, shuffling and augmentation"})
    augmentation: bool = field(
        default=True, metadata={"help": "random horizontal flips and small shifts of training images"}
    )
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes that decode images"})
    device: str = field(default="auto", metadata={"help": "torch device; 'auto' picks cuda when available"})
    preload_max_mb: int = field(
        default=2048,
        metadata={"help": "keep all resized images in memory (uint8) when they fit in this many MiB"},
    )

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # timm's "test_resnet" is a 0.4M-parameter ResNet. On 64 px synthetic garments it
        # matched resnet10t's validation AUC in less than half the CPU time, and it beat
        # mobilenetv3_small_100, test_efficientnet and test_convnext (benchmarks/bench_encoder.py,
        # numbers in docs/benchmarks.md). NOTE: timm registers test_* models for its own
        # tests, so a future timm release could change this architecture.
        "cpu": {"model_name": "test_resnet", "image_size": 64, "epochs": 12, "batch_size": 32, "lr": 3e-3},
        # Fashion IQ's backbone (EfficientNet-B7) at its native resolution. Only the
        # head is trained, as Fashion IQ did for f_A; a full fine-tune needs a GPU.
        "paper": {
            "model_name": "efficientnet_b7",
            "image_size": 600,
            "pretrained": True,
            "freeze_backbone": True,
            "epochs": 10,
            "batch_size": 32,
            "lr": 1e-3,
        },
    }

    # Fields that change how fast the result is computed, never the result.
    _RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"top_n", "num_workers", "device", "preload_max_mb"})

    def __post_init__(self) -> None:
        # The model name is checked when a model is built (check_model_name), because importing
        # timm takes seconds and a cache hit never needs it.
        positive = {"image_size": self.image_size, "batch_size": self.batch_size, "lr": self.lr}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"EncoderConfig.{name} must be positive, got {value!r}")
        non_negative = {
            "epochs": self.epochs,
            "weight_decay": self.weight_decay,
            "top_n": self.top_n,
            "num_workers": self.num_workers,
            "preload_max_mb": self.preload_max_mb,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"EncoderConfig.{name} must be 0 or more, got {value!r}")
        if self.pretrained and self.weights_path is not None:
            warnings.warn(
                f"pretrained=True is ignored because weights_path={self.weights_path!r} is set",
                UserWarning,
                stacklevel=3,
            )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> EncoderConfig:
        """Return the preset called ``name`` (``"cpu"`` or ``"paper"``) with ``overrides`` applied."""
        if name not in cls.PRESETS:
            raise ConfigError(f"unknown encoder preset {name!r}; presets: {', '.join(sorted(cls.PRESETS))}")
        return cls(**{**cls.PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown EncoderConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serializable dict."""
        return dataclasses.asdict(self)

    def check_model_name(self) -> None:
        """Raise :class:`UnknownNameError`, with the closest names, when timm has no ``model_name``."""
        import timm

        if not timm.is_model(self.model_name):
            close = difflib.get_close_matches(self.model_name, timm.list_models(), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(f"timm has no model called {self.model_name!r}.{hint}")

    def cache_key(self) -> str:
        """Return a 12-hex-digit hash of every field that changes the features.

        A local weights file enters the hash by its contents, not its path.
        Raises :class:`CheckpointError` when ``weights_path`` does not exist.
        """
        payload = {name: value for name, value in self.to_dict().items() if name not in self._RUNTIME_FIELDS}
        if self.weights_path is not None:
            payload["weights_path"] = file_sha256(_existing_weights_file(self.weights_path))
            payload["pretrained"] = False
        payload["training_version"] = TRAINING_VERSION
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# =============================================================================================
# Model
# =============================================================================================


class ImageEncoder(nn.Module):
    """A timm backbone (global-pool features, f_I) with a linear attribute head (f_A).

    Args:
        config: which backbone to build and where its starting weights come from.
        num_attributes: size of the attribute vocabulary; 0 builds no head,
            and the logits then have shape ``(batch, 0)``.

    ``forward`` expects images already normalized with the backbone's mean
    and std; :meth:`preprocess` does that for uint8 images.
    """

    def __init__(self, config: EncoderConfig, num_attributes: int) -> None:
        import timm

        super().__init__()
        config.check_model_name()
        self.config = config
        self.num_attributes = num_attributes

        use_hub_weights = config.pretrained and config.weights_path is None
        self.backbone = timm.create_model(config.model_name, pretrained=use_hub_weights, num_classes=0)
        if config.weights_path is not None:
            load_backbone_weights(self.backbone, config.weights_path)

        self.head = nn.Linear(self.feature_dim, num_attributes) if num_attributes > 0 else None

        data_config = timm.data.resolve_data_config(model=self.backbone)
        self.register_buffer("mean", torch.tensor(data_config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(data_config["std"]).view(1, 3, 1, 1), persistent=False)

    @property
    def feature_dim(self) -> int:
        """Width of the pooled features; timm calls it ``head_hidden_size`` where a model adds a
        pre-logits layer after pooling (MobileNetV3), else ``num_features``."""
        return int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Turn ``(batch, 3, height, width)`` uint8 RGB images into normalized float images."""
        return (images.to(self.mean.device, torch.float32) / 255.0 - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(features, logits)``: ``(batch, feature_dim)`` and ``(batch, num_attributes)``."""
        features = self.backbone(images)
        if self.head is None:
            logits = features.new_zeros((features.shape[0], 0))
        else:
            logits = self.head(features)
        return features, logits


def _existing_weights_file(path: str | Path) -> Path:
    weights_file = Path(path).expanduser()
    if not weights_file.is_file():
        raise CheckpointError(
            f"encoder weights file {weights_file} does not exist; fix EncoderConfig.weights_path or set it to None"
        )
    return weights_file


def _read_state_dict(weights_file: Path) -> dict[str, torch.Tensor]:
    try:
        if weights_file.suffix == ".safetensors":
            state = load_torch_file(str(weights_file))
        else:
            # weights_only=True restricts unpickling to tensors and plain containers.
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, SafetensorError, ValueError) as error:
        raise CheckpointError(f"cannot read encoder weights file {weights_file}: {error}") from error

    # timm and training scripts often nest the weights one level down.
    for nested_key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(nested_key), dict):
            state = state[nested_key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"encoder weights file {weights_file} does not contain a state dict of tensors")
    return state


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local weights file into a timm backbone built with ``num_classes=0``.

    Accepts a plain timm state dict (its classifier keys are dropped) or the
    weights of an :class:`ImageEncoder` (keys under ``backbone.``; the
    attribute head is ignored). ``module.`` prefixes from data-parallel
    training are removed.

    Raises:
        CheckpointError: the file is missing or unreadable, or its keys or
            shapes differ from the backbone's. The message names the file and
            the first differing keys.
    """
    weights_file = _existing_weights_file(path)
    state = {key.removeprefix("module."): value for key, value in _read_state_dict(weights_file).items()}
    if any(key.startswith("backbone.") for key in state):
        state = {key.removeprefix("backbone."): value for key, value in state.items() if key.startswith("backbone.")}

    expected = backbone.state_dict()
    classifier = backbone.pretrained_cfg.get("classifier") if hasattr(backbone, "pretrained_cfg") else None
    classifier_names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    state = {
        key: value
        for key, value in state.items()
        if key in expected or not any(key.startswith(f"{name}.") for name in classifier_names)
    }

    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                problems.append(f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}")
        raise CheckpointError(
            f"encoder weights file {weights_file} does not match timm model "
            f"{type(backbone).__name__}: {'; '.join(problems)}. Use weights saved from the same architecture."
        )

    backbone.load_state_dict(state, strict=True)
    logger.info("loaded backbone weights from %s", weights_file)


def load_encoder(entry_path: str | Path, device: str = "cpu") -> ImageEncoder:
    """Rebuild a trained :class:`ImageEncoder` from a feature cache entry folder.

    Raises:
        CheckpointError: the folder has no weights file, or its weights do
            not fit the configuration recorded beside them.
    """
    entry_path = Path(entry_path)
    weights_file = entry_path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CheckpointError(f"{entry_path} has no {WEIGHTS_FILE}; run encode_catalog to create the entry")
    metadata = read_json(entry_path / "metadata.json")
    config = EncoderConfig.from_dict({**metadata["config"], "pretrained": False, "weights_path": None})
    model = ImageEncoder(config, int(metadata["num_attributes"]))

    state = load_torch_file(str(weights_file))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"weights in {weights_file} do not fit the recorded encoder config: {error}") from error
    return model.to(device).eval()


# =============================================================================================
# Images
# =============================================================================================


def image_to_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """Return a ``(3, image_size, image_size)`` uint8 tensor: the image center-cropped to a square and resized."""
    square = ImageOps.fit(image.convert("RGB"), (image_size, image_size), method=Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(square, dtype=np.uint8).copy()).permute(2, 0, 1)


class _ItemImages(torch.utils.data.Dataset):
    """Catalog items as uint8 tensors, decoded on each access."""

    def __init__(self, catalog: Catalog, indices: np.ndarray, image_size: int) -> None:
        self.catalog = catalog
        self.indices = indices
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor]:
        index = int(self.indices[position])
        return index, image_to_tensor(self.catalog.load_image(index), self.image_size)


class ImageSource:
    """Serves batches of a catalog's images as uint8 tensors.

    When every item fits in ``preload_max_mb`` the images are decoded once,
    on first use, and kept in memory, so later epochs do not decode again.
    Otherwise each batch is decoded again when it is needed. Catalogs with a
    ``render_batch(indices)`` method returning ``(batch, height, width, 3)``
    uint8 pixels are rendered through it; others go through ``load_image``
    in a DataLoader with ``num_workers`` processes.
    """

    def __init__(
        self, catalog: Catalog, image_size: int, preload_max_mb: int, num_workers: int = 0, progress: bool = True
    ) -> None:
        self.catalog = catalog
        self.image_size = image_size
        self.num_workers = num_workers
        self.progress = progress
        self.load_seconds = 0.0
        needed_mb = len(catalog) * 3 * image_size * image_size / 2**20
        self.preload = needed_mb <= preload_max_mb
        self._images: torch.Tensor | None = None
        if not self.preload:
            logger.info(
                "images need %.0f MiB (more than preload_max_mb=%d); decoding them from the catalog every epoch",
                needed_mb,
                preload_max_mb,
            )

    def _preloaded(self) -> torch.Tensor:
        if self._images is None:
            start = time.perf_counter()
            images = torch.empty((len(self.catalog), 3, self.image_size, self.image_size), dtype=torch.uint8)
            everything = np.arange(len(self.catalog))
            for indices, batch in self._decode(everything, batch_size=256, description="loading images"):
                images[indices] = batch
            self._images = images
            self.load_seconds = time.perf_counter() - start
            logger.info("loaded %d images in %.1f s", len(self.catalog), self.load_seconds)
        return self._images

    def _decode(
        self, indices: np.ndarray, batch_size: int, description: str | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        show = bool(self.progress and description)
        render_batch = getattr(self.catalog, "render_batch", None)
        if not callable(render_batch):
            loader = torch.utils.data.DataLoader(
                _ItemImages(self.catalog, indices, self.image_size), batch_size=batch_size, num_workers=self.num_workers
            )
            yield from tqdm(loader, desc=description, disable=not show, leave=False)
            return

        # Catalogs that draw images (the synthetic one) render a whole batch at once, much faster than one by one.
        starts = range(0, len(indices), batch_size)
        for start in tqdm(starts, desc=description, disable=not show, leave=False):
            chunk = np.asarray(indices[start : start + batch_size], dtype=np.int64)
            yield torch.from_numpy(chunk), self._render(render_batch, chunk)

    def _render(self, render_batch: Any, indices: np.ndarray) -> torch.Tensor:
        pixels = np.asarray(render_batch(indices), dtype=np.uint8)  # (batch, height, width, 3)
        if pixels.shape[1:] == (self.image_size, self.image_size, 3):
            return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).contiguous()
        return torch.stack([image_to_tensor(Image.fromarray(row), self.image_size) for row in pixels])

    def batches(
        self, indices: np.ndarray, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(item_indices, images)`` pairs: ``(batch,)`` int64 and ``(batch, 3, size, size)`` uint8."""
        # Both paths shuffle the same way, so a seed gives the same batches whether or not images are preloaded.
        order = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        if shuffle:
            order = order[torch.randperm(len(order), generator=generator)]
        if not self.preload:
            yield from self._decode(order.numpy(), batch_size)
            return

        images = self._preloaded()
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            yield chunk, images[chunk]


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip half of a ``(batch, 3, size, size)`` float batch and shift each image by up to size/16 pixels."""
    batch, _, size, _ = images.shape
    flip = (torch.rand(batch, generator=generator) < 0.5).to(images.device)
    images = torch.where(flip[:, None, None, None], images.flip(3), images)

    pad = max(1, size // 16)
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator).tolist()
    shifted = [padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(offsets)]
    return torch.stack(shifted)


# =============================================================================================
# Training and evaluation
# =============================================================================================


@dataclass
class TrainingResult:
    """Measurements from one :func:`train_encoder` run.

    Attributes:
        epoch_losses: mean binary cross-entropy of each epoch.
        seconds: wall-clock training time, excluding the first image decoding.
        num_train_items: labelled training items used.
    """

    epoch_losses: list[float]
    seconds: float
    num_train_items: int


def labelled_indices(catalog: Catalog, split: str) -> np.ndarray:
    """Return the indices of ``split`` whose attribute labels are known."""
    indices = catalog.indices(split)
    if catalog.labels.shape[1] == 0:
        return indices[:0]
    return indices[np.asarray(catalog.label_mask, dtype=bool)[indices]]


def _warmup_cosine(total_steps: int) -> Any:
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_encoder(
    catalog: Catalog,
    config: EncoderConfig | None = None,
    progress: bool = True,
    images: ImageSource | None = None,
) -> tuple[ImageEncoder, TrainingResult]:
    """Train an encoder on the labelled items of the catalog's train split.

    Args:
        catalog: supplies images, ``labels`` and ``label_mask``.
        config: None uses the ``cpu`` preset.
        progress: show a tqdm progress bar.
        images: a shared :class:`ImageSource`, so a caller that encodes
            afterwards decodes each image once.

    Returns:
        The model in eval mode, and the per-epoch losses and time.

    Raises:
        DataError: the train split has no labelled item.
    """
    config = config or EncoderConfig.preset("cpu")
    device = resolve_device(config.device, "EncoderConfig.device")
    train_indices = labelled_indices(catalog, "train")
    if len(train_indices) == 0:
        raise DataError(
            f"the {catalog.category} catalog has no labelled items in its train split, so there is nothing to "
            f"train the attribute model on; encode_catalog uses the backbone unchanged in that case"
        )
    images = images or ImageSource(catalog, config.image_size, config.preload_max_mb, config.num_workers, progress)

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = ImageEncoder(config, len(catalog.attribute_names)).to(device)
    if config.freeze_backbone:
        model.backbone.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train_indices) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.epochs * steps_per_epoch))
    targets = torch.from_numpy(np.asarray(catalog.labels, dtype=np.float32))

    # Decode before starting the clock, so the time measures training alone.
    if images.preload:
        images._preloaded()
    start = time.perf_counter()
    epoch_losses: list[float] = []
    bar = tqdm(total=config.epochs * steps_per_epoch, desc="training encoder", disable=not progress, leave=False)
    for epoch in range(config.epochs):
        model.train()
        if config.freeze_backbone:
            model.backbone.eval()
        loss_sum, seen = 0.0, 0
        for item_indices, batch in images.batches(train_indices, config.batch_size, True, generator):
            if len(item_indices) < 2 and len(train_indices) > 1:
                # Batch normalization cannot train on a single image; that item is
                # seen again in the next epoch's shuffle.
                bar.update(1)
                continue
            inputs = model.preprocess(batch.to(device))
            if config.augmentation:
                inputs = _augment(inputs, generator)
            _, logits = model(inputs)
            loss = F.binary_cross_entropy_with_logits(logits, targets[item_indices].to(device))

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()

            loss_sum += loss.item() * len(item_indices)
            seen += len(item_indices)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
        epoch_losses.append(loss_sum / max(seen, 1))
        logger.info("encoder epoch %d/%d: mean BCE loss %.4f", epoch + 1, config.epochs, epoch_losses[-1])
    bar.close()

    seconds = time.perf_counter() - start
    return model.eval(), TrainingResult(epoch_losses, seconds, len(train_indices))


@torch.no_grad()
def predict(
    model: ImageEncoder,
    images: ImageSource,
    indices: np.ndarray,
    batch_size: int = 256,
    progress: bool = False,
    description: str = "encoding",
) -> tuple[np.ndarray, np.ndarray]:
    """Return raw features ``(len(indices), feature_dim)`` and logits ``(len(indices), num_attributes)``."""
    model.eval()
    device = model.mean.device
    features = np.empty((len(indices), model.feature_dim), dtype=np.float32)
    logits = np.empty((len(indices), model.num_attributes), dtype=np.float32)
    position = 0
    with tqdm(total=len(indices), desc=description, disable=not progress, leave=False) as bar:
        for _, batch in images.batches(indices, batch_size):
            batch_features, batch_logits = model(model.preprocess(batch.to(device)))
            end = position + len(batch)
            features[position:end] = batch_features.float().cpu().numpy()
            logits[position:end] = batch_logits.float().cpu().numpy()
            position = end
            bar.update(len(batch))
    return features, logits


def attribute_auc(
    logits: np.ndarray, labels: np.ndarray, attribute_names: Sequence[str], attribute_types: Sequence[str]
) -> dict[str, Any]:
    """Score attribute logits against labels with ROC-AUC.

    Returns a dict with ``mean_auc`` (mean over the attributes that have
    positive and negative items), ``per_type`` (the same mean within each
    attribute type), ``per_attribute`` and ``num_attributes_scored``. Means
    over no attribute are None.
    """
    from sklearn.metrics import roc_auc_score

    per_attribute: dict[str, float] = {}
    by_type: dict[str, list[float]] = {}
    for column, (name, kind) in enumerate(zip(attribute_names, attribute_types, strict=True)):
        truth = labels[:, column]
        if truth.all() or not truth.any():
            continue
        auc = float(roc_auc_score(truth, logits[:, column]))
        per_attribute[name] = auc
        by_type.setdefault(kind, []).append(auc)

    return {
        "mean_auc": float(np.mean(list(per_attribute.values()))) if per_attribute else None,
        "per_type": {kind: float(np.mean(values)) for kind, values in sorted(by_type.items())},
        "per_attribute": per_attribute,
        "num_attributes_scored": len(per_attribute),
    }


def evaluate_attributes(
    model: ImageEncoder,
    catalog: Catalog,
    split: str = "val",
    images: ImageSource | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Measure the attribute model's ROC-AUC on the labelled items of ``split``.

    Returns the dict of :func:`attribute_auc` plus ``split`` and
    ``num_items``. Attributes present on every item or on none are skipped,
    because ROC-AUC needs both classes.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of {SPLITS}")
    images = images or ImageSource(catalog, model.config.image_size, model.config.preload_max_mb, progress=False)
    indices = labelled_indices(catalog, split)
    if len(indices) == 0 or model.num_attributes == 0:
        scores = attribute_auc(np.zeros((0, 0)), np.zeros((0, 0), dtype=bool), (), ())
    else:
        _, logits = predict(model, images, indices, batch_size)
        labels = np.asarray(catalog.labels, dtype=bool)[indices]
        scores = attribute_auc(logits, labels, catalog.attribute_names, catalog.attribute_types)
    return {"split": split, "num_items": int(len(indices)), **scores}


# =============================================================================================
# Catalog features, through the cache
# =============================================================================================


@dataclass
class EncodingResult:
    """The outcome of :func:`build_catalog_features`.

    Attributes:
        features: the catalog's features and top attributes.
        cache_path: the cache entry folder that contains them.
        from_cache: True when the entry existed and nothing was computed.
        metadata: the entry's ``metadata.json`` (config, validation AUC, timings, versions).
    """

    features: CatalogFeatures
    cache_path: Path
    from_cache: bool
    metadata: dict[str, Any]


def encode_catalog(
    catalog: Catalog,
    config: EncoderConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    train_if_missing: bool = True,
) -> CatalogFeatures:
    """Return features and top attributes of every item, from the cache or by training first.

    Args:
        catalog: the catalog to encode (every split).
        config: None uses ``EncoderConfig.preset("cpu")``.
        cache_dir: cache folder; None uses ``encoders/`` under ``$FIQ_CACHE_DIR``
            (default ``~/.cache/fiq_env``).
        progress: show tqdm progress bars while computing.
        train_if_missing: on a cache miss, train and encode; when False a miss
            raises :class:`DataError` instead.

    On a miss the encoder is trained on the labelled train items, scored on
    the validation split, and run on every item. The result is then written
    to the cache atomically. A catalog without attribute labels skips training and
    gets features from the backbone as loaded, with an empty attribute axis.
    """
    return build_catalog_features(catalog, config, cache_dir, progress, train_if_missing).features


def build_catalog_features(
    catalog: Catalog,
    config: EncoderConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    train_if_missing: bool = True,
) -> EncodingResult:
    """Do what :func:`encode_catalog` does and also report the cache entry and its metadata."""
    config = config or EncoderConfig.preset("cpu")
    encoder_key = config.cache_key()
    fingerprint = catalog.fingerprint()
    cache = FeatureCache(Path(cache_dir) if cache_dir is not None else None)
    name = entry_name(catalog.source, catalog.category, fingerprint, encoder_key)

    entry = cache.load(name, fingerprint, encoder_key, len(catalog))
    if entry is not None:
        logger.info("loaded features from cache %s", entry.path)
        features = _catalog_features(entry.features, entry.attribute_scores, entry.metadata, config)
        return EncodingResult(features, entry.path, True, entry.metadata)

    if not train_if_missing:
        raise DataError(
            f"no cached encoder features for the {catalog.category} catalog (fingerprint {fingerprint}, "
            f"encoder key {encoder_key}) under {cache.root}; run fiq-train-encoder or pass train_if_missing=True"
        )

    cache.check_writable()
    logger.info("no cached features for %r with encoder key %s; computing them", catalog, encoder_key)
    raw_features, scores, metadata, weights = _compute_features(catalog, config, progress)
    path = cache.save(name, raw_features, scores, metadata, weights)
    logger.info("wrote features to cache %s", path)
    saved = {**metadata, "num_attributes": int(scores.shape[1])}
    return EncodingResult(_catalog_features(raw_features, scores, saved, config), path, False, saved)


def _catalog_features(
    raw_features: np.ndarray, scores: np.ndarray, metadata: dict[str, Any], config: EncoderConfig
) -> CatalogFeatures:
    return CatalogFeatures.from_arrays(
        raw_features,
        scores,
        tuple(metadata["attribute_names"]),
        top_n=config.top_n,
        catalog_fingerprint=metadata["catalog_fingerprint"],
        encoder_key=metadata["encoder_key"],
    )


def _compute_features(
    catalog: Catalog, config: EncoderConfig, progress: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, torch.Tensor]]:
    """Train (where labels exist), evaluate and encode every item; return arrays, metadata and weights."""
    import timm

    images = ImageSource(catalog, config.image_size, config.preload_max_mb, config.num_workers, progress)
    has_labels = len(labelled_indices(catalog, "train")) > 0

    if has_labels:
        model, training = train_encoder(catalog, config, progress, images)
        validation = evaluate_attributes(model, catalog, "val", images, config.batch_size)
        logger.info("encoder validation mean ROC-AUC: %s", validation["mean_auc"])
        attribute_names = tuple(catalog.attribute_names)
    else:
        if not config.pretrained and config.weights_path is None:
            warnings.warn(
                f"the {catalog.category} catalog has no attribute labels to train on and the encoder has neither "
                f"pretrained=True nor weights_path, so its features come from random weights and are meaningless "
                f"for retrieval; set pretrained=True (needs a network) or weights_path",
                UserWarning,
                stacklevel=4,
            )
        torch.manual_seed(config.seed)
        model = ImageEncoder(config, 0).to(resolve_device(config.device, "EncoderConfig.device")).eval()
        training, validation, attribute_names = None, None, ()

    start = time.perf_counter()
    everything = np.arange(len(catalog))
    raw_features, scores = predict(model, images, everything, config.batch_size, progress, "encoding catalog")
    encode_seconds = time.perf_counter() - start

    metadata = {
        "config": config.to_dict(),
        "catalog_fingerprint": catalog.fingerprint(),
        "encoder_key": config.cache_key(),
        "catalog": {"source": catalog.source, "category": catalog.category, "num_items": len(catalog)},
        "attribute_names": list(attribute_names),
        "validation": validation,
        "val_mean_auc": validation["mean_auc"] if validation else None,
        "train_epoch_losses": training.epoch_losses if training else [],
        "num_train_items": training.num_train_items if training else 0,
        "image_load_seconds": images.load_seconds,
        "training_seconds": training.seconds if training else 0.0,
        "encode_seconds": encode_seconds,
        "device": str(model.mean.device),
        "versions": {
            "torch": torch.__version__,
            "timm": timm.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    return raw_features, scores, metadata, model.state_dict()
