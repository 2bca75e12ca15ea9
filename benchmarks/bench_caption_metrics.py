"""Check the caption attribute-accuracy reader against template captions, whose facts are known.

Run as ``python -m benchmarks.bench_caption_metrics``. For each category it
describes random (reference, target) pairs of a synthetic catalog with the
template simulator, which records the attribute facts behind every caption.
It then reads the claims back with :class:`simulators.caption_metrics.AttributeLexicon`
and prints a Markdown table: captions, facts stated, claims read, and the
captions where the claims differ in number from the facts or a claim is false.
A correct reader finds exactly the stated facts, all true. Up to five such
captions per category are printed below the table.
"""

from __future__ import annotations

import argparse

import numpy as np

import simulators
from fiq_env.catalog import make_catalog
from simulators.caption_metrics import AttributeLexicon, attribute_accuracy


def measure(category: str, num_items: int, captions: int, seed: int) -> tuple[str, list[str]]:
    """Return one table row for ``category`` and up to five captions the reader got wrong."""
    catalog = make_catalog("synthetic", category=category, num_items=num_items, seed=seed)
    template = simulators.make("template", catalog=catalog)
    rng = np.random.default_rng([seed, 1])
    references = rng.integers(len(catalog), size=captions)
    targets = rng.integers(len(catalog), size=captions)
    described = template.describe_with_facts(references, targets, np.random.default_rng([seed, 2]))

    lexicon = AttributeLexicon(catalog)
    mismatched: list[str] = []
    for caption, reference, target in zip(described, references, targets):
        claims = lexicon.claims(caption.text)
        verdicts = [lexicon.check(claim, int(target), int(reference)) for claim in claims]
        if len(claims) != len(caption.facts) or not all(verdicts):
            mismatched.append(f"{caption.text!r}: facts {caption.facts}, claims {claims}, verdicts {verdicts}")

    accuracy = attribute_accuracy(catalog, [caption.text for caption in described], targets, reference=references)
    facts = sum(len(caption.facts) for caption in described)
    row = (
        f"| {category} | {captions} | {facts} | {accuracy.checked} | {100 * accuracy.accuracy:.2f} | {len(mismatched)} |"
    )
    return row, mismatched[:5]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_caption_metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--categories", nargs="+", default=["dress", "shirt"], help="synthetic categories")
    parser.add_argument("--num-items", type=int, default=400, help="items per synthetic catalog")
    parser.add_argument("--captions", type=int, default=3000, help="template captions per category")
    parser.add_argument("--seed", type=int, default=0, help="seed of the catalog and the pairs")
    args = parser.parse_args(argv)
    for name in ("num_items", "captions"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")

    print("| category | captions | facts stated | claims checked | attribute accuracy (%) | captions misread |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    examples: list[str] = []
    for category in args.categories:
        row, mismatched = measure(category, args.num_items, args.captions, args.seed)
        print(row)
        examples += [f"- {category}: {text}" for text in mismatched]
    if examples:
        print("\nMisread captions:\n")
        print("\n".join(examples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
