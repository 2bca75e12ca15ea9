"""``fiq-train-captioner``: train a transformer or RNN relative captioner on a catalog.

Example::

    fiq-train-captioner --model transformer --catalog synthetic --category dress --num-items 2000
    fiq-train-captioner --model rnn --catalog fashion_iq --root data/fashion-iq --image-dir data/images \\
        --category dress --steps 20000

Without ``--out`` the captioner goes to the cache folder that
``simulators.make("transformer", catalog=...)`` reads, so the environment
finds it. A run interrupted by Ctrl-C resumes from its last checkpoint when
started again with the same arguments. The last lines printed are the
validation metrics with greedy decoding and with beam search.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fiq_env.catalog import Catalog, make_catalog
from fiq_env.errors import FiqError
from simulators.captioner import caption_model_class
from simulators.decoding import DecodingConfig
from simulators.training import (
    VALIDATION_SEED_OFFSET,
    TrainingConfig,
    build_model,
    cache_directory,
    default_caption_source,
    evaluate_captioner,
    train_captioner,
)

MODELS = ("transformer", "rnn")


def field_help(cls: type) -> dict[str, str]:
    """Return each field's help line from the ``Attributes:`` section of a dataclass docstring."""
    doc = cls.__doc__ or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    helps: dict[str, str] = {}
    current = None
    for line in section.splitlines():
        match = re.match(r"\s{4,8}(\w+): (.*)", line)
        if match and match.group(1) in {f.name for f in dataclasses.fields(cls)}:
            current = match.group(1)
            helps[current] = match.group(2).strip()
        elif current and line.strip():
            helps[current] += " " + line.strip()
    return helps


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """Add one ``--flag`` per field of ``cls``; flags left unset keep the preset's value."""
    group = parser.add_argument_group(title)
    helps = field_help(cls)
    for config_field in dataclasses.fields(cls):
        flag = f"--{config_field.name.replace('_', '-')}"
        help_text = helps.get(config_field.name, "")
        if isinstance(config_field.default, bool):
            group.add_argument(flag, dest=config_field.name, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            group.add_argument(flag, dest=config_field.name, type=type(config_field.default), help=help_text)


def build_parser(model: str = "transformer") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiq-train-captioner",
        description="Train a relative captioner (user simulator) on a catalog's training pairs and score it "
        "on validation pairs.",
    )
    parser.add_argument("--model", default="transformer", choices=MODELS, help="captioner architecture")
    parser.add_argument("--catalog", default="synthetic", choices=["synthetic", "fashion_iq", "image_folder"],
                        help="catalog source")
    parser.add_argument("--category", default=None, help="garment category (dress, shirt, toptee)")
    parser.add_argument("--num-items", type=int, default=None, help="items of a synthetic catalog")
    parser.add_argument("--catalog-seed", type=int, default=None, help="seed of a synthetic catalog")
    parser.add_argument("--root", default=None, help="data set folder (fashion_iq and image_folder)")
    parser.add_argument("--image-dir", default=None, help="folder of <ASIN>.jpg images (fashion_iq)")
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"],
                        help="model and training preset; the flags below override single fields")
    parser.add_argument("--teacher", default=None,
                        help="caption source: 'human', a simulator name such as 'template', or unset for human "
                        "captions where the catalog has them and 'template' otherwise")
    parser.add_argument("--out", default=None, help="run folder (default: the captioner cache folder)")
    parser.add_argument("--no-resume", action="store_true", help="start over instead of resuming a checkpoint in the run folder")
    parser.add_argument("--beam-width", type=int, default=5, help="beam width of the final evaluation")
    parser.add_argument("--device", default="cpu", help="torch device, for example cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    add_dataclass_flags(parser, caption_model_class(model).config_class, f"{model} model settings (override the preset)")
    add_dataclass_flags(parser, TrainingConfig, "training settings (override the preset)")
    return parser


def _catalog_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if args.catalog in ("fashion_iq", "image_folder") and args.root is None:
        parser.error(f"--catalog {args.catalog} needs --root, the folder of the data set")
    if args.catalog != "synthetic" and (args.num_items is not None or args.catalog_seed is not None):
        parser.error("--num-items and --catalog-seed apply to --catalog synthetic only")
    given = {"category": args.category, "num_items": args.num_items, "seed": args.catalog_seed,
             "root": args.root, "image_dir": args.image_dir}
    return {name: value for name, value in given.items() if value is not None}


def _overrides(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def main(argv: list[str] | None = None) -> int:
    # The model settings flags depend on --model, so read it first.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="transformer", choices=MODELS)
    model_name = pre.parse_known_args(argv)[0].model
    parser = build_parser(model_name)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    model_class = caption_model_class(args.model)
    try:
        model_config = model_class.config_class.preset(args.preset, **_overrides(args, model_class.config_class))
        training = TrainingConfig.preset(args.preset, **_overrides(args, TrainingConfig))
        catalog: Catalog = make_catalog(args.catalog, **_catalog_arguments(args, parser))
        from fiq_env.encoder import encode_catalog

        features = encode_catalog(catalog, progress=not args.no_progress)
        source = default_caption_source(catalog, args.teacher)
        run_dir = Path(args.out) if args.out else cache_directory(args.model, model_config, training, source.name, features)
        model = build_model(args.model, model_config, source.vocabulary, features, training.seed).to(args.device)
        result = train_captioner(model, features, source, training, run_dir, catalog=catalog,
                                 resume=not args.no_resume, progress=not args.no_progress)

        start = time.perf_counter()
        validation = source.validation_set(
            np.random.default_rng([training.seed, VALIDATION_SEED_OFFSET]), training.val_pairs,
            training.references_per_pair,
        )
        beam = DecodingConfig(strategy="beam", beam_width=args.beam_width)
        scores = {
            "greedy": evaluate_captioner(model, source.vocabulary, features, validation, catalog=catalog),
            f"beam {args.beam_width}": evaluate_captioner(model, source.vocabulary, features, validation,
                                                         catalog=catalog, decoding=beam),
        }
    except FiqError as error:
        print(f"fiq-train-captioner: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fiq-train-captioner: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130

    print(f"{args.model} captioner: {result.step} steps, checkpoint {result.checkpoint}")
    print(f"catalog: {catalog!r}; captions from {source.name}; training time this run {result.seconds:.1f} s; "
          f"evaluation {time.perf_counter() - start:.1f} s")
    for decoding, metrics in scores.items():
        line = ", ".join(f"{name} {value:.2f}" for name, value in metrics.items())
        print(f"val ({len(validation.reference)} pairs, {decoding}): {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
