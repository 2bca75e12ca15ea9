"""Captioner checkpoints: safetensors weights plus a JSON description, never pickle.

A checkpoint is a folder with two kinds of file:

- ``captioner-<step>.safetensors``: the model's parameters (``model.*``),
  the optimizer's tensor state (``optimizer.<param>.<name>``) and the torch
  random state (``rng.torch``) when training saved them;
- ``captioner.json``: the model name, configuration and dimensions, the
  vocabulary, the attribute names of the features, the catalog fingerprint,
  the encoder key, the training configuration, the step count, the
  optimizer's non-tensor state, the name of the weights file and its SHA-256.

The JSON file is written last and names its weights file, so an interrupted
save leaves the previous checkpoint usable; a weights file that does not
match its hash is reported as corrupt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor

from fiq_env.errors import CheckpointError, UnknownNameError
from fiq_env.io import atomic_write, write_json
from fiq_env.text import Vocabulary
from simulators.captioner import CaptionModel, ModelDims, caption_model_class

logger = logging.getLogger(__name__)

FORMAT = "fiq-captioner"
FORMAT_VERSION = 1
CONFIG_NAME = "captioner.json"


@dataclass
class CaptionerCheckpoint:
    """A checkpoint read from disk.

    Attributes:
        path: the JSON file.
        model: the rebuilt model with its weights, in evaluation mode.
        vocabulary: the caption vocabulary.
        info: the whole JSON description.
        tensors: every tensor of the weights file (model, optimizer, random state).
    """

    path: Path
    model: CaptionModel
    vocabulary: Vocabulary
    info: dict[str, Any]
    tensors: dict[str, Tensor]

    @property
    def step(self) -> int:
        return int(self.info.get("step", 0))


def config_path(path: str | Path) -> Path:
    """Return the JSON file of a checkpoint given its folder, JSON file or weights file."""
    path = Path(path)
    if path.is_dir():
        return path / CONFIG_NAME
    if path.suffix == ".safetensors":
        return path.parent / CONFIG_NAME
    return path


def save_checkpoint(
    directory: str | Path,
    model: CaptionModel,
    vocabulary: Vocabulary,
    info: dict[str, Any],
    *,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    rng_state: Tensor | None = None,
) -> Path:
    """Write a checkpoint into ``directory`` and return its JSON path.

    Args:
        directory: checkpoint folder (created when missing).
        model: the model whose parameters are saved.
        vocabulary: the caption vocabulary.
        info: extra JSON-ready fields (catalog fingerprint, encoder key,
            attribute names, training configuration, metrics).
        step: optimizer steps taken so far.
        optimizer: saved for resuming when given.
        rng_state: ``torch.get_rng_state()`` for exact resumption when given.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    previous = _weights_file_of(directory / CONFIG_NAME)

    tensors = {f"model.{name}": value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    optimizer_info = None
    if optimizer is not None:
        optimizer_tensors, optimizer_info = _split_optimizer_state(optimizer.state_dict())
        tensors.update(optimizer_tensors)
    if rng_state is not None:
        tensors["rng.torch"] = rng_state.clone()
    payload = save_safetensors_bytes(tensors)

    weights_name = f"captioner-{step:08d}.safetensors"
    with atomic_write(directory / weights_name, "wb") as handle:
        handle.write(payload)
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **model.export_config(),
        **info,
        "vocabulary": vocabulary.to_json(),
        "step": step,
        "optimizer": optimizer_info,
        "weights_file": weights_name,
        "weights_sha256": hashlib.sha256(payload).hexdigest(),
    }
    write_json(directory / CONFIG_NAME, description)

    if previous is not None and previous != weights_name:
        (directory / previous).unlink(missing_ok=True)
    logger.debug("saved captioner checkpoint at step %d to %s", step, directory)
    return directory / CONFIG_NAME


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> CaptionerCheckpoint:
    """Read a checkpoint folder (or its JSON or weights file) and rebuild the model.

    Raises:
        CheckpointError: naming the file, when a file is missing, corrupt,
            of another format, or its tensors do not fit the described model.
    """
    json_path = config_path(path)
    if not json_path.is_file():
        raise CheckpointError(f"captioner checkpoint {json_path} not found; train one with fiq-train-captioner")
    try:
        info = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{json_path} is not valid JSON ({error}); delete the checkpoint and train again") from error
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not a captioner checkpoint (expected format {FORMAT!r})")
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path} has format version {info.get('format_version')}, this library reads {FORMAT_VERSION}"
        )

    weights_path = json_path.parent / str(info.get("weights_file", ""))
    tensors = _read_weights(weights_path, info.get("weights_sha256"))
    try:
        model_class = caption_model_class(str(info["model"]))
        config = model_class.config_class(**info["config"])
        dims = ModelDims(**info["dims"])
        vocabulary = Vocabulary.from_json(info["vocabulary"])
    except (KeyError, TypeError, ValueError, UnknownNameError) as error:
        raise CheckpointError(f"{json_path} describes an invalid model or vocabulary: {error}") from error

    model = model_class(config, dims)
    weights = {name[len("model."):]: value for name, value in tensors.items() if name.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{weights_path} does not match the model described in {json_path}: {error}") from error
    model.to(device).eval()
    return CaptionerCheckpoint(json_path, model, vocabulary, info, tensors)


def restore_optimizer(checkpoint: CaptionerCheckpoint, optimizer: torch.optim.Optimizer) -> None:
    """Load the optimizer state saved in ``checkpoint`` into ``optimizer``."""
    saved = checkpoint.info.get("optimizer")
    if saved is None:
        raise CheckpointError(f"{checkpoint.path} contains no optimizer state, so training cannot resume from it; start a new run folder")
    state: dict[int, dict[str, Any]] = {}
    for key, value in saved["scalars"].items():
        param, name = key.split("/", 1)
        state.setdefault(int(param), {})[name] = value
    for key, value in checkpoint.tensors.items():
        if key.startswith("optimizer."):
            _, param, name = key.split(".", 2)
            state.setdefault(int(param), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"optimizer state in {checkpoint.path} does not fit this model: {error}") from error


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-ready values."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for param, values in state_dict["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param}/{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _read_weights(weights_path: Path, expected_sha256: str | None) -> dict[str, Tensor]:
    try:
        payload = weights_path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"captioner weights {weights_path} cannot be read ({error}); train the captioner again") from error
    if expected_sha256 is not None and hashlib.sha256(payload).hexdigest() != expected_sha256:
        raise CheckpointError(
            f"{weights_path} does not match the SHA-256 recorded in {CONFIG_NAME} (corrupt or replaced); "
            f"delete the checkpoint folder and train again"
        )
    try:
        return load_safetensors_bytes(payload)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({error})") from error


def _weights_file_of(json_path: Path) -> str | None:
    """Return the weights file named by an existing checkpoint JSON, or None."""
    try:
        return str(json.loads(json_path.read_text(encoding="utf-8")).get("weights_file")) or None
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
