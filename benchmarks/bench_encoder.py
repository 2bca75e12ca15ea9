"""Measure the image encoder on synthetic catalogs: validation ROC-AUC, training and encoding time.

Run as ``python -m benchmarks.bench_encoder``; prints one Markdown table row
per (category, model). Every run trains from scratch in a fresh temporary
cache unless ``--cache-dir`` names a folder.

Example::

    python -m benchmarks.bench_encoder --categories dress --num-items 5000
    python -m benchmarks.bench_encoder --models resnet10t mobilenetv3_small_100 --epochs 4
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import torch

from fiq_env.catalog import make_catalog
from fiq_env.encoder import EncoderConfig, build_catalog_features

ATTRIBUTE_TYPES_SHOWN = ("color", "texture", "fabric", "shape", "part", "style")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="+", default=["dress"], help="synthetic categories to encode")
    parser.add_argument("--num-items", type=int, default=5000, help="items per synthetic catalog")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogs")
    parser.add_argument("--preset", default="cpu", help="encoder preset the overrides apply to")
    parser.add_argument("--models", nargs="+", default=None, help="timm model names (default: the preset's)")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    parser.add_argument("--image-size", type=int, default=None, help="override the preset's image size, in pixels")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default: a fresh temporary one)")
    parser.add_argument("--per-attribute", action="store_true", help="also print every attribute's AUC")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "lr", "batch_size", "image_size")
        if getattr(args, key) is not None
    }
    base = EncoderConfig.preset(args.preset, **overrides)
    models = args.models or [base.model_name]

    header = ["category", "model", "items", "epochs", "batch", "train s", "encode s", "val AUC", *ATTRIBUTE_TYPES_SHOWN]
    print("| " + " | ".join(header) + " |", flush=True)
    print("|" + "---|" * len(header), flush=True)
    low_attributes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_encoder_") as scratch:
        cache_dir = args.cache_dir or scratch
        for category in args.categories:
            catalog = make_catalog("synthetic", category=category, num_items=args.num_items, seed=args.seed)
            for model_name in models:
                config = EncoderConfig.from_dict({**base.to_dict(), "model_name": model_name})
                start = time.perf_counter()
                result = build_catalog_features(catalog, config, cache_dir, progress=False)
                total = time.perf_counter() - start
                meta = result.metadata
                validation = meta["validation"] or {"per_type": {}, "per_attribute": {}}
                per_type = [f"{validation['per_type'].get(kind, float('nan')):.3f}" for kind in ATTRIBUTE_TYPES_SHOWN]
                row = [
                    category,
                    model_name,
                    str(len(catalog)),
                    str(config.epochs),
                    str(config.batch_size),
                    f"{meta['training_seconds']:.0f}",
                    f"{meta['encode_seconds']:.1f}",
                    f"{meta['val_mean_auc']:.3f}",
                    *per_type,
                ]
                print("| " + " | ".join(row) + " |", flush=True)
                for name, auc in sorted(validation["per_attribute"].items(), key=lambda item: item[1]):
                    if args.per_attribute or auc < 0.75:
                        low_attributes.append(f"{category}/{model_name}: {name} {auc:.3f}")
                logging.getLogger(__name__).warning("%s %s done in %.0f s", category, model_name, total)

    if low_attributes:
        print("\nAttribute AUCs" + (":" if args.per_attribute else " below 0.75:"))
        for line in low_attributes:
            print(f"- {line}")


if __name__ == "__main__":
    main()
