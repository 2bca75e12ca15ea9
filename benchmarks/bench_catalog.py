"""Measure the synthetic catalog: attribute build speed, render speed and memory.

Run ``python -m benchmarks.bench_catalog`` to print a Markdown table.
``--contact-sheets DIR`` also saves ``synthetic_<category>.png`` grids of
renders with their attribute words, for checking by eye that every
attribute shows in the pixels.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from fiq_env.catalog import make_catalog
from fiq_env.catalog.render import contact_sheet
from fiq_env.catalog.synthetic import CATEGORIES, SyntheticCatalog
from fiq_env.io import atomic_write

BUILD_SIZES = (1_000, 100_000, 1_000_000)


def _rss_bytes() -> int | None:
    """Return the resident set size of this process from /proc, or None where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            resident_pages = int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def measure_build(num_items: int, category: str, repeats: int) -> float:
    """Return the best items per second of building a catalog's attributes over ``repeats`` runs."""
    best = float("inf")
    for repeat in range(repeats):
        start = time.perf_counter()
        make_catalog("synthetic", category=category, num_items=num_items, seed=repeat)
        best = min(best, time.perf_counter() - start)
    return num_items / best


def measure_render(category: str, image_size: int, count: int, batch: int) -> tuple[float, float, float]:
    """Return images per second of ``render_batch``, per CPU second of it, and of uncached ``load_image`` calls.

    The CPU-second figure uses ``time.process_time`` and so stays close to the
    single-core speed when other processes share the cores.
    """
    catalog = SyntheticCatalog(category=category, num_items=max(count, 100), seed=0, image_size=image_size, cache_size=0)
    catalog.render_batch(np.arange(min(batch, count)))  # warm-up

    start, cpu_start = time.perf_counter(), time.process_time()
    for first in range(0, count, batch):
        catalog.render_batch(np.arange(first, min(first + batch, count)))
    batched = count / (time.perf_counter() - start)
    per_cpu_second = count / (time.process_time() - cpu_start)

    singles = min(count, 500)
    start = time.perf_counter()
    for index in range(singles):
        catalog.load_image(index)
    single = singles / (time.perf_counter() - start)
    return batched, per_cpu_second, single


def measure_memory(num_items: int) -> tuple[float, str]:
    """Return the memory growth in MiB of building one catalog without images, and how it was measured."""
    gc.collect()
    before = _rss_bytes()
    if before is not None:
        catalog = make_catalog("synthetic", category="dress", num_items=num_items, seed=0)
        growth = _rss_bytes() - before
        del catalog
        return growth / 2**20, "RSS growth from /proc/self/statm"
    tracemalloc.start()
    catalog = make_catalog("synthetic", category="dress", num_items=num_items, seed=0)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del catalog
    return current / 2**20, "tracemalloc (numpy and Python allocations)"


def save_contact_sheets(folder: Path, count: int = 32) -> list[Path]:
    """Save one grid of ``count`` renders with their attribute words per category."""
    paths = []
    for category in CATEGORIES:
        catalog = SyntheticCatalog(category=category, num_items=200, seed=0)
        indices = np.arange(count)
        captions = [_caption_lines(catalog, int(i)) for i in indices]
        sheet = contact_sheet(catalog.render_batch(indices), captions)
        path = folder / f"synthetic_{category}.png"
        with atomic_write(path) as handle:
            sheet.save(handle, format="PNG", optimize=True)
        paths.append(path)
    return paths


def _caption_lines(catalog: SyntheticCatalog, index: int) -> list[str]:
    def word(name: str) -> str:
        if name not in catalog.group_values:
            return ""
        value = catalog.group_value(name, index)
        return "-" if value is None else value

    parts = [word(n) for n in ("straps", "collar", "buttons", "belt") if word(n) and not word(n).startswith("no ")]
    return [
        f"{word('lightness')} {word('color')}",
        f"{word('pattern')} {word('fabric')}",
        f"{word('length')}, {word('fit')}",
        f"{word('sleeve_length')}",
        f"{word('neckline')}",
        " ".join(p for p in parts if p != "-") or "-",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", default="dress", choices=CATEGORIES, help="garment category to measure")
    parser.add_argument("--repeats", type=int, default=3, help="build runs per size (the fastest one is reported)")
    parser.add_argument("--render-count", type=int, default=4096, help="images rendered for the speed figure")
    parser.add_argument("--batch", type=int, default=256, help="images per render_batch call")
    parser.add_argument("--contact-sheets", type=Path, help="folder to save synthetic_<category>.png grids into")
    args = parser.parse_args()

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

    if args.contact_sheets is not None:
        for path in save_contact_sheets(args.contact_sheets):
            print(f"saved {path}")

    rows = []
    for size in BUILD_SIZES:
        rate = measure_build(size, args.category, args.repeats)
        rows.append((f"build attributes, {size:,} {args.category} items", f"{rate:,.0f} items/s"))
    batched, per_cpu_second, single = measure_render(args.category, 64, args.render_count, args.batch)
    rows.append((f"render 64 px, render_batch of {args.batch}", f"{batched:,.0f} images/s"))
    rows.append((f"render 64 px, render_batch of {args.batch}, per CPU second", f"{per_cpu_second:,.0f} images/s"))
    rows.append(("render 64 px, load_image one at a time (no cache)", f"{single:,.0f} images/s"))
    memory, method = measure_memory(1_000_000)
    rows.append((f"memory of a 1,000,000-item catalog without images ({method})", f"{memory:,.0f} MiB"))

    print(f"Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}\n")
    print("| measurement | result |")
    print("| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
