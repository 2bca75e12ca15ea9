"""Train and score the learned captioners on a synthetic catalog; prints a Markdown table.

Run::

    python -m benchmarks.bench_captioners                 # 2,000 dresses, cpu presets
    python -m benchmarks.bench_captioners --steps 300     # quick check

The captioners learn the ``template`` simulator's captions of random training
pairs (features from ``fiq_env.encoder.encode_catalog`` with its cpu preset)
and are scored on validation pairs against several template captions per
pair: BLEU-4, ROUGE-L, CIDEr and attribute accuracy, with beam search of
width 5 as in the Fashion IQ paper's evaluation, plus greedy decoding. The
second table gives caption throughput of the cpu transformer in batches of 64
pairs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import simulators
from fiq_env.catalog import make_catalog
from fiq_env.encoder import encode_catalog
from simulators.captioner import LearnedCaptioner
from simulators.decoding import DecodingConfig
from simulators.rnn_captioner import RNNCaptionerConfig
from simulators.training import (
    VALIDATION_SEED_OFFSET,
    SimulatorCaptions,
    TrainingConfig,
    build_model,
    evaluate_captioner,
    train_captioner,
)
from simulators.transformer_captioner import TransformerCaptionerConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-items", type=int, default=2000, help="items of the synthetic dress catalog")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the cpu preset's)")
    parser.add_argument("--val-pairs", type=int, default=500, help="validation pairs scored")
    parser.add_argument("--throughput-pairs", type=int, default=640, help="pairs captioned per throughput measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-ablation", action="store_true", help="skip the transformer without attributes")
    parser.add_argument("--out", default=None, help="folder for the run directories (default: a temporary folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    catalog = make_catalog("synthetic", category="dress", num_items=args.num_items, seed=0)
    features = encode_catalog(catalog, progress=False)
    teacher = simulators.make("template", catalog=catalog)
    source = SimulatorCaptions(catalog, teacher)
    overrides = {"val_pairs": args.val_pairs} if args.steps is None else {"steps": args.steps, "val_pairs": args.val_pairs}
    training = TrainingConfig.preset("cpu", **overrides)
    validation = source.validation_set(
        np.random.default_rng([training.seed, VALIDATION_SEED_OFFSET]), training.val_pairs, training.references_per_pair
    )

    variants = [
        ("rnn (Guo et al.)", "rnn", RNNCaptionerConfig.preset("cpu")),
        ("transformer + attributes", "transformer", TransformerCaptionerConfig.preset("cpu")),
    ]
    if not args.no_ablation:
        variants.append(("transformer, no attributes", "transformer",
                         TransformerCaptionerConfig.preset("cpu", use_attributes=False)))

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_captioners_"))
    beam = DecodingConfig(strategy="beam", beam_width=5)
    rows = []
    trained = {}
    for label, name, config in variants:
        model = build_model(name, config, source.vocabulary, features, training.seed)
        run_dir = out / label.split()[0] / ("attr" if getattr(config, "use_attributes", False) else "plain")
        result = train_captioner(model, features, source, training, run_dir, catalog=catalog, resume=False,
                                 progress=False, tensorboard=False)
        parameters = sum(p.numel() for p in model.parameters())
        for decoding_label, decoding in (("beam 5", beam), ("greedy", "greedy")):
            metrics = evaluate_captioner(model, source.vocabulary, features, validation, catalog=catalog,
                                         decoding=decoding)
            rows.append((label, decoding_label, metrics, result.seconds, parameters))
        trained[label] = model

    print(f"Captioners on synthetic dress ({args.num_items} items), {training.steps} steps of batch "
          f"{training.batch_size}, {len(validation.reference)} val pairs x {training.references_per_pair} "
          f"template references, {args.threads} thread(s)\n")
    print("| captioner | decoding | BLEU-4 | ROUGE-L | CIDEr | attribute accuracy (%) | val loss | parameters | training (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, decoding_label, metrics, seconds, parameters in rows:
        print(f"| {label} | {decoding_label} | {metrics['bleu4']:.1f} | {metrics['rouge_l']:.1f} | "
              f"{metrics['cider']:.1f} | {metrics['attribute_accuracy']:.1f} | {metrics['loss']:.3f} | "
              f"{parameters:,} | {seconds:.0f} |")

    simulator_model = trained["transformer + attributes"]
    rng = np.random.default_rng(0)
    items = catalog.indices("test")
    reference = rng.choice(items, args.throughput_pairs)
    target = rng.choice(items, args.throughput_pairs)
    print("\n| cpu transformer | batch | captions per second |")
    print("| --- | --- | --- |")
    for decoding_label, decoding in (("greedy", "greedy"), ("beam 5", beam)):
        simulator = LearnedCaptioner(catalog, features, simulator_model, source.vocabulary, decoding, batch_size=64)
        simulator.describe(reference[:64], target[:64], rng)  # warm-up
        start = time.perf_counter()
        for batch in range(0, args.throughput_pairs, 64):
            simulator.describe(reference[batch : batch + 64], target[batch : batch + 64], rng)
        rate = args.throughput_pairs / (time.perf_counter() - start)
        print(f"| {decoding_label} | 64 | {rate:.0f} |")

    samples = LearnedCaptioner(catalog, features, simulator_model, source.vocabulary, beam).describe(
        validation.reference[:3], validation.target[:3], rng)
    print("\nExamples (beam 5 vs template references):")
    for caption, references in zip(samples, validation.references[:3]):
        print(f"- {caption!r} vs {references[:2]}")


if __name__ == "__main__":
    main()
