"""The benchmark's configuration: one dataclass, its presets, and the command line built from it."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiq_env.catalog import SPLITS
from fiq_env.errors import ConfigError

DEFAULT_AGENTS = ("transformer", "transformer_attr", "rnn", "last_image", "random")

PATH_FIELDS = ("root", "image_dir", "start_pairs", "output_dir", "cache_dir")
"""Options that name files or folders. A leading ~ in them is expanded."""
CATEGORIES = ("dress", "shirt", "toptee")


@dataclass
class BenchConfig:
    """Everything one ``fiq-bench`` run depends on; saved beside its results."""

    catalog: str = field(default="synthetic", metadata={"help": "catalog source: synthetic, fashion_iq or image_folder"})
    root: str | None = field(default=None, metadata={"help": "data root of a fashion_iq or image_folder catalog"})
    image_dir: str | None = field(default=None, metadata={"help": "folder of <ASIN>.jpg|png images (fashion_iq only)"})
    categories: tuple[str, ...] = field(default=CATEGORIES, metadata={"help": "categories to benchmark, one table block each"})
    split: str = field(default="val", metadata={"help": "split the episodes are drawn from (train, val, test)"})
    num_items: int = field(default=1500, metadata={"help": "items per synthetic catalog"})
    simulator: str = field(default="transformer", metadata={"help": "simulator that scores the agents: template, transformer, rnn or replay"})
    # Training against the rule-based simulator keeps the default run within
    # its time budget, because a learned captioner in the training loop would
    # write hundreds of thousands of captions. Scoring with the learned
    # captioner also means no agent is scored by the simulator it trained with.
    train_simulator: str | None = field(
        default="template",
        metadata={"help": "simulator the agents are trained against; 'same' uses the scoring simulator"},
    )
    decoding: str = field(default="beam", metadata={"help": "caption decoding of learned simulators at evaluation: beam or greedy"})
    agents: tuple[str, ...] = field(
        default=DEFAULT_AGENTS,
        metadata={"help": "agents by registered name, import path 'module:Class', or path to a saved SB3 model (.zip)"},
    )
    episodes: int = field(default=300, metadata={"help": "episodes per category, one per saved start pair"})
    turns: int = field(default=5, metadata={"help": "dialog turns per episode"})
    seed: int = field(default=0, metadata={"help": "seed of catalogs, start pairs, training and episodes"})
    preset: str = field(default="cpu", metadata={"help": "model sizes and training budgets: tiny, cpu or paper"})
    gallery: str = field(default="split", metadata={"help": "items ranks are computed over: 'split' (whole split) or 'catalog'"})
    start_pairs: str | None = field(default=None, metadata={"help": "JSON file of start pairs to reuse (written when absent)"})
    output_dir: str = field(default="runs/fiq-bench", metadata={"help": "folder for results JSON, table, plot and TensorBoard"})
    cache_dir: str | None = field(default=None, metadata={"help": "cache folder (default: $FIQ_CACHE_DIR or ~/.cache/fiq_env)"})

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise ConfigError(f"turns must be at least 1, got {self.turns}")
        if self.episodes < 1:
            raise ConfigError(f"episodes must be at least 1, got {self.episodes}")
        if self.split not in SPLITS:
            raise ConfigError(f"unknown split {self.split!r}; expected one of {', '.join(SPLITS)}")
        if self.gallery not in ("split", "catalog"):
            raise ConfigError(f"gallery must be 'split' or 'catalog', got {self.gallery!r}")
        if self.decoding not in ("beam", "greedy"):
            raise ConfigError(f"decoding must be 'beam' or 'greedy', got {self.decoding!r}")
        if self.catalog in ("fashion_iq", "image_folder") and not self.root:
            raise ConfigError(f"catalog {self.catalog!r} needs --root, the folder that contains its data")

    @property
    def training_simulator(self) -> str:
        if self.train_simulator in (None, "same"):
            return self.simulator
        return self.train_simulator

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``fiq-bench`` argument parser from the fields of :class:`BenchConfig`."""
    parser = argparse.ArgumentParser(
        prog="fiq-bench",
        description="Benchmark retriever agents over 5-turn dialogs with a frozen user simulator.",
    )
    defaults = BenchConfig()
    for spec in dataclasses.fields(BenchConfig):
        flag = "--" + spec.name.replace("_", "-")
        default = getattr(defaults, spec.name)
        help_text = f"{spec.metadata['help']} (default: {', '.join(default) if isinstance(default, tuple) else default})"
        if isinstance(default, tuple):
            parser.add_argument(flag, nargs="+", default=None, help=help_text)
        elif isinstance(default, int) and not isinstance(default, bool):
            parser.add_argument(flag, type=int, default=None, help=help_text)
        else:
            parser.add_argument(flag, default=None, help=help_text)
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Turn parsed arguments into a config; options left out keep the preset's defaults."""
    overrides: dict[str, Any] = {}
    for spec in dataclasses.fields(BenchConfig):
        value = getattr(args, spec.name)
        if value is None:
            continue
        if spec.name in PATH_FIELDS:
            value = os.path.expanduser(value)  # "--output-dir=~/x" reaches us unexpanded by the shell
        overrides[spec.name] = tuple(value) if isinstance(value, list) else value
    return BenchConfig(**overrides)
