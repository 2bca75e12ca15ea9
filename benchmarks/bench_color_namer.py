"""Measure the pixel color namer on synthetic renders (known colors) and on a real photo folder.

Run as ``python -m benchmarks.bench_color_namer``. It prints Markdown tables:

1. color-name accuracy per synthetic category and overall, with the
   confusion of the errors (true name -> predicted name);
2. agreement of the solid/patterned call with the synthetic pattern;
3. with ``--photos ROOT``: the time to index an image folder without a
   cache and with it, and the distribution of the predicted color names.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter

import numpy as np
import torch

from fiq_env.catalog import make_catalog
from fiq_env.catalog.color import describe_pixels


def _measure_synthetic(categories: list[str], num_items: int, image_size: int, seed: int) -> None:
    print(f"### Synthetic renders ({num_items} items per category, {image_size} px, seed {seed})\n")
    print("| category | items | color accuracy | patterned agreement | ms per image |")
    print("| --- | ---: | ---: | ---: | ---: |")
    errors: Counter[tuple[str, str]] = Counter()
    correct_total = 0
    total = 0
    for category in categories:
        catalog = make_catalog("synthetic", category=category, num_items=num_items, seed=seed, image_size=image_size)
        images = catalog.render_batch(np.arange(len(catalog)))
        correct = 0
        pattern_agree = 0
        start = time.perf_counter()
        for index in range(len(catalog)):
            measured = describe_pixels(images[index])
            truth = catalog.group_value("color", index)
            if measured.color == truth:
                correct += 1
            else:
                errors[(truth, measured.color)] += 1
            pattern_agree += measured.patterned == (catalog.group_value("pattern", index) != "solid")
        elapsed = time.perf_counter() - start
        correct_total += correct
        total += len(catalog)
        print(
            f"| {category} | {len(catalog)} | {100 * correct / len(catalog):.1f}% | "
            f"{100 * pattern_agree / len(catalog):.1f}% | {1000 * elapsed / len(catalog):.1f} |"
        )
    print(f"| all | {total} | {100 * correct_total / total:.1f}% | | |\n")

    print("| true color | predicted | count |")
    print("| --- | --- | ---: |")
    for (truth, predicted), count in errors.most_common():
        print(f"| {truth} | {predicted} | {count} |")
    print()


def _measure_photos(root: str) -> None:
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FIQ_CACHE_DIR"] = cache
        start = time.perf_counter()
        catalog = make_catalog("image_folder", root=root, category="all")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        make_catalog("image_folder", root=root, category="all")
        warm = time.perf_counter() - start

    print(f"### Photo folder {os.path.basename(os.path.normpath(root))} ({len(catalog)} photos)\n")
    print("| indexing | seconds |")
    print("| --- | ---: |")
    print(f"| first time (decode, check, analyse) | {cold:.1f} |")
    print(f"| again, from the cache | {warm:.2f} |\n")

    for group in ("color", "lightness", "pattern"):
        counts = Counter(catalog.group_value(group, i) for i in range(len(catalog)))
        print(f"| {group} | photos | share |")
        print("| --- | ---: | ---: |")
        for value, count in counts.most_common():
            print(f"| {value} | {count} | {100 * count / len(catalog):.1f}% |")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000, help="synthetic items per category")
    parser.add_argument("--image-size", type=int, default=64, help="side of the synthetic renders in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic catalogs")
    parser.add_argument("--categories", nargs="+", default=["dress", "shirt", "toptee"], help="synthetic categories")
    parser.add_argument("--photos", default=None, help="optional image-folder root (<split>/<class>/<file>) to index")
    args = parser.parse_args()

    torch.set_num_threads(1)
    _measure_synthetic(args.categories, args.items, args.image_size, args.seed)
    if args.photos:
        _measure_photos(args.photos)


if __name__ == "__main__":
    main()
