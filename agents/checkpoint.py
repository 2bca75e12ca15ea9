"""Saving and loading retrievers and training state as safetensors plus JSON, never pickle.

A saved retriever is a folder::

    weights.safetensors   the module's state dict
    config.json           the class's import path, its config and the vocabulary

A training checkpoint adds ``optimizer.safetensors`` (the optimizer's tensors)
and ``training.json`` (step, optimizer hyperparameters, random generator
states and the trainer's config). Loading imports the module named in
``config.json`` and accepts only :class:`~agents.base.Retriever` subclasses, so
a checkpoint cannot name arbitrary code to run, but the module itself is
imported: load checkpoints that name only modules you trust.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from agents.base import Retriever
from fiq_env.errors import CheckpointError, ConfigError, DataError
from fiq_env.io import atomic_write, read_json, write_json
from fiq_env.text import Vocabulary

logger = logging.getLogger(__name__)

FORMAT = "fiq-env-retriever"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINING_FILE = "training.json"


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to a safetensors file atomically (copies make shared or strided tensors safe)."""
    prepared = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()}
    payload = save_safetensors_bytes(prepared, metadata=metadata)
    with atomic_write(path, "wb") as handle:
        handle.write(payload)


def load_tensors(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or corrupt file raises :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found; save the model first or check the path")
    try:
        tensors = load_safetensors_bytes(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a valid safetensors file ({error}); delete it and save again") from error
    return {name: tensor.to(map_location) for name, tensor in tensors.items()}


def class_path(obj: type) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _import_retriever_class(path: str) -> type[Retriever]:
    module_name, _, attribute = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise CheckpointError(f"checkpoint names class {path!r}, which cannot be imported ({error})") from error
    if not (isinstance(cls, type) and issubclass(cls, Retriever)):
        raise CheckpointError(f"checkpoint names {path!r}, which is not an agents.base.Retriever subclass")
    return cls


def save_retriever(agent: Retriever, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``agent``'s weights and config into ``folder`` (created if needed) and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / WEIGHTS_FILE, dict(agent.state_dict()))
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": class_path(type(agent)),
        "config": agent.config.to_dict(),
        "vocabulary": agent.vocabulary.to_json() if agent.vocabulary is not None else None,
        "extra": extra or {},
    }
    write_json(folder / CONFIG_FILE, document)
    return folder


def read_retriever_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a saved retriever's ``config.json``."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} not found; {folder} is not a folder written by Retriever.save")
    try:
        document = read_json(path)
    except DataError as error:
        raise CheckpointError(str(error)) from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a retriever config (expected format {FORMAT!r})")
    if document.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {document.get('format_version')!r}; this library reads version {FORMAT_VERSION}"
        )
    return document


def load_retriever(folder: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Retriever:
    """Rebuild a retriever from a folder written by :func:`save_retriever`."""
    document = read_retriever_config(folder)
    cls = _import_retriever_class(str(document.get("class", "")))
    try:
        config = cls.config_class.from_dict(document["config"])
    except (ConfigError, KeyError, TypeError) as error:
        raise CheckpointError(f"{folder}: config does not fit {cls.__name__} ({error})") from error

    agent = cls(config)
    state = load_tensors(Path(folder) / WEIGHTS_FILE, map_location)
    try:
        agent.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{folder}: weights do not match {cls.__name__} with its saved config ({error})") from error
    if document.get("vocabulary") is not None:
        agent.vocabulary = Vocabulary.from_json(document["vocabulary"])
    return agent.to(map_location)


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (for safetensors) and JSON-ready values."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for param_id, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            name = f"{param_id}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            else:
                scalars[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_files(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> None:
    """Restore an optimizer from the output of :func:`optimizer_to_files`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *document.get("scalars", {}).items()]:
        param_id, _, key = name.partition(".")
        state.setdefault(int(param_id), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": document["param_groups"]})
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"optimizer state does not match the model's parameters ({error})") from error


def save_training_checkpoint(
    folder: str | os.PathLike[str],
    agent: Retriever,
    optimizer: torch.optim.Optimizer,
    step: int,
    training: dict[str, Any],
) -> Path:
    """Write a resumable checkpoint into ``folder`` atomically: complete or absent, never half written.

    The files go into a temporary sibling folder that is renamed when
    everything is on disk; an existing folder of the same name is replaced.
    """
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    save_retriever(agent, staging)
    tensors, optimizer_document = optimizer_to_files(optimizer)
    save_tensors(staging / OPTIMIZER_FILE, tensors)
    write_json(staging / TRAINING_FILE, {"step": int(step), "optimizer": optimizer_document, **training})
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder


def load_training_checkpoint(
    folder: str | os.PathLike[str], agent: Retriever, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Load weights and optimizer state saved by :func:`save_training_checkpoint` in place; return training.json."""
    folder = Path(folder)
    document = read_retriever_config(folder)
    if document["class"] != class_path(type(agent)):
        raise CheckpointError(
            f"{folder} contains a {document['class']}, but the trainer's agent is {class_path(type(agent))}; "
            "resume with the same agent or start in a new run folder"
        )
    # Compare through from_dict, so a config saved before a field existed gets that field's old value.
    saved = type(agent.config).from_dict(document["config"]).to_dict()
    current = agent.config.to_dict()
    if saved != current:
        differing = sorted(name for name in current if saved.get(name) != current[name])
        details = ", ".join(f"{name}: saved {saved.get(name)!r}, now {current[name]!r}" for name in differing)
        raise CheckpointError(
            f"{folder} was saved with another agent config ({details}); resume with the same agent config "
            "or start in a new run folder"
        )
    try:
        agent.load_state_dict(load_tensors(folder / WEIGHTS_FILE, agent.device), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{folder}: weights do not match the agent ({error})") from error
    training = read_json(folder / TRAINING_FILE)
    optimizer_from_files(optimizer, load_tensors(folder / OPTIMIZER_FILE), training["optimizer"])
    return training
