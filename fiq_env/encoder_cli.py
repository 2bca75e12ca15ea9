"""``fiq-train-encoder``: train a catalog's image encoder and cache its features.

Example::

    fiq-train-encoder --catalog synthetic --category dress --num-items 2000
    fiq-train-encoder --catalog fashion_iq --root data/fashion-iq --image-dir data/images --preset paper

A second run with the same catalog and settings loads the cached features
instead of training again, and prints that it did.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

from fiq_env.catalog import Catalog, make_catalog
from fiq_env.encoder import EncoderConfig, build_catalog_features
from fiq_env.errors import FiqError

# Short spellings kept for the flags people type most.
_FLAG_ALIASES = {"model_name": ["--model"], "weights_path": ["--weights"]}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per EncoderConfig field, with the field's help line; unset flags keep the preset's value."""
    group = parser.add_argument_group("encoder settings (override the preset)")
    for config_field in dataclasses.fields(EncoderConfig):
        flags = [f"--{config_field.name.replace('_', '-')}", *_FLAG_ALIASES.get(config_field.name, [])]
        help_text = config_field.metadata.get("help", "")
        default = config_field.default
        if isinstance(default, bool):
            group.add_argument(*flags, dest=config_field.name, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        value_type = type(default) if default is not None else str
        group.add_argument(*flags, dest=config_field.name, type=value_type, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiq-train-encoder",
        description="Train the image encoder and attribute model of a catalog and cache the features of every item.",
    )
    parser.add_argument(
        "--catalog", default="synthetic", choices=["synthetic", "fashion_iq", "image_folder"], help="catalog source"
    )
    parser.add_argument("--category", default=None, help="garment category (dress, shirt, toptee for two sources)")
    parser.add_argument("--num-items", type=int, default=None, help="items of a synthetic catalog")
    parser.add_argument("--catalog-seed", type=int, default=None, help="seed of a synthetic catalog")
    parser.add_argument("--root", default=None, help="data set folder (fashion_iq and image_folder)")
    parser.add_argument("--image-dir", default=None, help="folder of <ASIN>.jpg images (fashion_iq)")
    parser.add_argument("--preset", default="cpu", choices=sorted(EncoderConfig.PRESETS), help="encoder preset")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="cache root, as for fiq-bench, with features under its encoders/ folder "
        "(default: $FIQ_CACHE_DIR or ~/.cache/fiq_env)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    _add_config_flags(parser)
    return parser


def _catalog_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    if args.catalog in ("fashion_iq", "image_folder") and args.root is None:
        parser.error(f"--catalog {args.catalog} needs --root, the folder of the data set")
    if args.catalog == "fashion_iq" and args.category is None:
        parser.error("--catalog fashion_iq needs --category (dress, shirt or toptee)")
    if args.catalog != "synthetic" and (args.num_items is not None or args.catalog_seed is not None):
        parser.error("--num-items and --catalog-seed apply to --catalog synthetic only")
    if args.catalog != "fashion_iq" and args.image_dir is not None:
        parser.error("--image-dir applies to --catalog fashion_iq only")

    provided = {
        "category": args.category,
        "num_items": args.num_items,
        "seed": args.catalog_seed,
        "root": args.root,
        "image_dir": args.image_dir,
    }
    return {name: value for name, value in provided.items() if value is not None}


def _describe_validation(metadata: dict[str, Any]) -> str:
    validation = metadata.get("validation")
    if not validation or validation.get("mean_auc") is None:
        return "val mean ROC-AUC: not measured (no labelled validation items)"
    per_type = ", ".join(f"{kind} {auc:.3f}" for kind, auc in validation["per_type"].items())
    return f"val mean ROC-AUC: {validation['mean_auc']:.3f} over {validation['num_attributes_scored']} attributes ({per_type})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(EncoderConfig) if getattr(args, f.name) is not None}
    try:
        config = EncoderConfig.preset(args.preset, **overrides)
        catalog: Catalog = make_catalog(args.catalog, **_catalog_arguments(args, parser))
        start = time.perf_counter()
        encoders_dir = Path(args.cache_dir).expanduser() / "encoders" if args.cache_dir else None
        result = build_catalog_features(catalog, config, encoders_dir, progress=not args.no_progress)
    except FiqError as error:
        print(f"fiq-train-encoder: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # a full disk or a folder removed while writing
        print(f"fiq-train-encoder: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # The feature cache publishes an entry only when it is complete, so nothing partial is left.
        print("fiq-train-encoder: interrupted; no features were cached, run the command again", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - start

    metadata = result.metadata
    features = result.features
    if result.from_cache:
        print(f"loaded features from cache {result.cache_path}")
    else:
        print(f"trained the encoder and cached the features in {result.cache_path}")
    print(f"catalog: {catalog!r}, fingerprint {catalog.fingerprint()}")
    print(f"encoder: {config.model_name} at {config.image_size} px, key {features.encoder_key}")
    print(f"features: {features.features.shape[0]} items x {features.dim}, top {features.top_n} attributes")
    print(_describe_validation(metadata))
    print(
        f"time: {elapsed:.1f} s this run; when computed: training {metadata['training_seconds']:.1f} s, "
        f"encoding {metadata['encode_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
