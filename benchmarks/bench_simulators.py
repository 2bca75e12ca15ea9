"""Measure the template and replay simulators: realism against real shoppers, and speed.

Run ``python -m benchmarks.bench_simulators`` to print Markdown tables of

- token coverage of the real Fashion IQ val captions (all three categories,
  both captions per pair) by the template vocabulary on the synthetic catalog
  of each category, with the most frequent real words still missing;
- caption lengths of template captions against the real ones;
- template captions per second, batched, on a 1,000-item synthetic catalog;
- replay captions per second on the real Fashion IQ pairs.

The real captions are read from ``--fashion-iq``, by default the
``shared/data/fashion-iq`` folder beside the repository. When that folder is
absent, the realism and replay tables are skipped with a message.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import simulators
from fiq_env.catalog import make_catalog
from simulators.realism import LengthStats, length_stats, load_real_captions, token_coverage

CATEGORIES = ("dress", "shirt", "toptee")
DEFAULT_FASHION_IQ = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-iq"


def template_captions(category: str, num_items: int, count: int, seed: int) -> tuple[simulators.UserSimulator, list[str]]:
    """Build a template simulator on a synthetic catalog and caption ``count`` random pairs."""
    catalog = make_catalog("synthetic", category=category, num_items=num_items, seed=seed)
    simulator = simulators.make("template", catalog=catalog)
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, num_items, count)
    target = rng.integers(0, num_items, count)
    return simulator, simulator.describe(reference, target, rng)


def captions_per_second(simulator: simulators.UserSimulator, batch: int, seconds: float, seed: int) -> float:
    """Return the captions per second of repeated batched ``describe`` calls over about ``seconds``."""
    rng = np.random.default_rng(seed)
    num_items = len(simulator.catalog)
    reference = rng.integers(0, num_items, batch)
    target = rng.integers(0, num_items, batch)
    simulator.describe(reference, target, rng)  # warm-up

    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        simulator.describe(reference, target, rng)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def _histogram_row(stats: LengthStats, max_length: int) -> str:
    shares = [100.0 * stats.histogram.get(n, 0) / stats.count for n in range(1, max_length + 1)]
    longer = 100.0 * sum(c for n, c in stats.histogram.items() if n > max_length) / stats.count
    return " | ".join(f"{s:.1f}" for s in shares) + f" | {longer:.1f}"


def realism_tables(fashion_iq: Path, num_items: int, count: int, seed: int) -> str:
    """Return the coverage, missing-word and length tables as Markdown."""
    lines = ["### Token coverage of real val captions by the template vocabulary", ""]
    lines += ["| category | real tokens | covered | coverage | template vocabulary |", "| --- | ---: | ---: | ---: | ---: |"]
    all_real: list[str] = []
    all_template: list[str] = []
    vocabulary_words: set[str] = set()
    for category in CATEGORIES:
        real = load_real_captions(fashion_iq, [category])
        simulator, captions = template_captions(category, num_items, count, seed)
        coverage = token_coverage(real, simulator.vocabulary)
        lines.append(
            f"| {category} | {coverage.total} | {coverage.covered} | {100 * coverage.share:.1f}% | "
            f"{len(simulator.vocabulary) - 4} words |"
        )
        all_real += real
        all_template += captions
        vocabulary_words |= set(simulator.vocabulary.words)
    overall = token_coverage(all_real, vocabulary_words)
    lines.append(
        f"| all (union of the three vocabularies) | {overall.total} | {overall.covered} | {100 * overall.share:.1f}% | "
        f"{len(vocabulary_words) - 4} words |"
    )

    lines += ["", "### The 20 most frequent real words missing from every template vocabulary", ""]
    lines += ["| word | real tokens | share of all tokens |", "| --- | ---: | ---: |"]
    for word, tokens in overall.missing[:20]:
        lines.append(f"| {word} | {tokens} | {100 * tokens / overall.total:.2f}% |")

    real_stats = length_stats(all_real)
    template_stats = length_stats(all_template)
    max_length = 12
    header = " | ".join(str(n) for n in range(1, max_length + 1))
    lines += ["", "### Caption length in words", ""]
    lines += ["| captions | count | mean | median | max |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, stats in (("real (val, 3 categories)", real_stats), ("template (synthetic, 3 categories)", template_stats)):
        lines.append(f"| {name} | {stats.count} | {stats.mean:.2f} | {stats.median:.0f} | {stats.max} |")
    lines += ["", "Share of captions (%) by length in words:", ""]
    lines += [f"| captions | {header} | >{max_length} |", "| --- |" + " ---: |" * (max_length + 1)]
    lines.append(f"| real | {_histogram_row(real_stats, max_length)} |")
    lines.append(f"| template | {_histogram_row(template_stats, max_length)} |")
    return "\n".join(lines)


def throughput_table(fashion_iq: Path | None, num_items: int, seconds: float, seed: int) -> str:
    """Return the captions-per-second table as Markdown."""
    lines = ["### Simulator throughput", ""]
    lines += ["| simulator | catalog | batch | captions/s | microseconds/caption |", "| --- | --- | ---: | ---: | ---: |"]
    catalog = make_catalog("synthetic", category="dress", num_items=num_items, seed=seed)
    template = simulators.make("template", catalog=catalog)
    for batch in (1, 64, 1024):
        rate = captions_per_second(template, batch, seconds, seed)
        lines.append(f"| template | synthetic dress, {num_items} items | {batch} | {rate:,.0f} | {1e6 / rate:.1f} |")
    if fashion_iq is not None:
        real = make_catalog("fashion_iq", root=fashion_iq, category="dress")
        replay = simulators.make("replay", catalog=real)
        rng = np.random.default_rng(seed)
        pairs = [p for p in real.caption_pairs if p.target is not None]
        chosen = rng.choice(len(pairs), 1024)
        reference = np.array([real.index_of(pairs[i].reference) for i in chosen])
        target = np.array([real.index_of(pairs[i].target) for i in chosen])
        replay.describe(reference, target, rng)
        calls = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            replay.describe(reference, target, rng)
            calls += 1
        rate = calls * 1024 / (time.perf_counter() - start)
        lines.append(f"| replay (human pairs) | Fashion IQ dress | 1024 | {rate:,.0f} | {1e6 / rate:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-iq", type=Path, default=DEFAULT_FASHION_IQ, help="Fashion IQ root with captions/")
    parser.add_argument("--num-items", type=int, default=1000, help="items in each synthetic catalog")
    parser.add_argument("--captions", type=int, default=12000, help="template captions per category for the length table")
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent on each throughput measurement")
    parser.add_argument("--seed", type=int, default=0, help="seed of the catalogs and the caption draws")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    has_real = (args.fashion_iq / "captions").is_dir()
    if has_real:
        print(realism_tables(args.fashion_iq, args.num_items, args.captions, args.seed))
        print()
    else:
        print(f"Fashion IQ captions not found under {args.fashion_iq}; skipping the realism tables.\n")
    print(throughput_table(args.fashion_iq if has_real else None, args.num_items, args.seconds, args.seed))


if __name__ == "__main__":
    main()
