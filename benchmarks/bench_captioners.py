"""Train and score the learned captioners on a synthetic catalog; prints a Markdown table.

Run::

    python -m benchmarks.bench_captioners                 # 2,000 dresses, cpu presets
    python -m benchmarks.bench_captioners --steps 300     # quick check

The captioners learn the ``template`` simulator's captions of random training
pairs (features from ``fiq_env.encoder.encode_catalog`` with its cpu preset)
and are scored on validation pairs against several template captions per
pair: BLEU-4, ROUGE-L, CIDEr and attribute accuracy (value words,
comparatives and negations, also shown per kind), with beam search of
width 5 as in the Fashion IQ paper's evaluation, plus greedy decoding. The
beam's length penalty is chosen once for all captioners: the value with the
best mean CIDEr on separate tuning pairs of the validation split. With
several ``--seeds`` each cell shows the mean and the standard deviation over
seeds. The last table gives caption throughput of the cpu transformer in
batches of 64 pairs: one ``describe`` call, one batched ``describe_rows``
call (the native vector environment's path) and the row-by-row loop that
``describe_rows`` replaces.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import simulators
from fiq_env.catalog import make_catalog
from fiq_env.encoder import encode_catalog
from simulators.base import UserSimulator
from simulators.caption_metrics import CLAIM_KINDS
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


TUNING_SEED = 1
"""Seed of the tuning pairs, which choose the beam length penalty (the scored pairs use seed 0)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-items", type=int, default=2000, help="items of the synthetic dress catalog")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the cpu preset's)")
    parser.add_argument("--val-pairs", type=int, default=500, help="validation pairs scored")
    parser.add_argument("--throughput-pairs", type=int, default=640, help="pairs captioned per throughput measurement")
    parser.add_argument("--tune-pairs", type=int, default=300, help="validation-split pairs that choose the length penalty")
    parser.add_argument("--length-penalties", default="0,0.5,1,1.5,2",
                        help="comma-separated beam length penalties to choose from")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (model initialization and batches)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-ablation", action="store_true", help="skip the transformer without attributes")
    parser.add_argument("--out", default=None, help="folder for the run directories (default: a temporary folder)")
    return parser.parse_args(argv)


def spread(values: list[float], digits: int = 1) -> str:
    """Format the mean of ``values`` and, for several values, their standard deviation."""
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    # A NaN (no attribute named in any caption) makes the cell NaN rather than failing.
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


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
    seeds = [int(seed) for seed in args.seeds.split(",")]
    penalties = [float(value) for value in args.length_penalties.split(",")]
    # Tuning pairs come from the validation split too, drawn with another seed than the scored pairs.
    tuning = source.validation_set(
        np.random.default_rng([TUNING_SEED, VALIDATION_SEED_OFFSET]), args.tune_pairs, training.references_per_pair
    )

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_captioners_"))
    trained = []
    for seed in seeds:
        seed_training = dataclasses.replace(training, seed=seed)
        for label, name, config in variants:
            model = build_model(name, config, source.vocabulary, features, seed)
            run_dir = out / f"seed{seed}" / label.split()[0] / ("attr" if getattr(config, "use_attributes", False) else "plain")
            result = train_captioner(model, features, source, seed_training, run_dir, catalog=catalog, resume=False,
                                     progress=False, tensorboard=False)
            trained.append((label, seed, model, result.seconds))

    tuning_cider = {penalty: [] for penalty in penalties}
    for _, _, model, _ in trained:
        for penalty in penalties:
            beam = DecodingConfig(strategy="beam", beam_width=5, length_penalty=penalty)
            metrics = evaluate_captioner(model, source.vocabulary, features, tuning, catalog=catalog, decoding=beam)
            tuning_cider[penalty].append(metrics["cider"])
    chosen = max(penalties, key=lambda penalty: statistics.fmean(tuning_cider[penalty]))
    beam = DecodingConfig(strategy="beam", beam_width=5, length_penalty=chosen)

    cells: dict[tuple[str, str], dict[str, list[float]]] = {}
    parameters: dict[str, int] = {}
    for label, _, model, seconds in trained:
        parameters[label] = sum(p.numel() for p in model.parameters())
        for decoding_label, decoding in ((f"beam 5, alpha {chosen:g}", beam), ("greedy", "greedy")):
            metrics = evaluate_captioner(model, source.vocabulary, features, validation, catalog=catalog,
                                         decoding=decoding)
            cell = cells.setdefault((label, decoding_label), {})
            for key, value in {**metrics, "seconds": seconds}.items():
                cell.setdefault(key, []).append(value)

    print(f"Captioners on synthetic dress ({args.num_items} items), {training.steps} steps of batch "
          f"{training.batch_size}, {len(validation.reference)} val pairs x {training.references_per_pair} "
          f"template references, seeds {seeds}, {args.threads} thread(s)\n")
    print(f"Beam length penalty chosen on {len(tuning.reference)} tuning pairs (mean CIDEr over all captioners):")
    print(", ".join(f"alpha {penalty:g}: {statistics.fmean(tuning_cider[penalty]):.1f}" for penalty in penalties))
    print("\n| captioner | decoding | BLEU-4 | ROUGE-L | CIDEr | attribute accuracy (%) | claims checked | val loss | parameters | training (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (label, decoding_label), cell in cells.items():
        print(f"| {label} | {decoding_label} | {spread(cell['bleu4'])} | {spread(cell['rouge_l'])} | "
              f"{spread(cell['cider'])} | {spread(cell['attribute_accuracy'])} | {spread(cell['attribute_claims'], 0)} | "
              f"{spread(cell['loss'], 3)} | "
              f"{parameters[label]:,} | {statistics.fmean(cell['seconds']):.0f} |")

    print("\nAttribute accuracy (%) and checked claims per kind of claim:\n")
    print("| captioner | decoding | " + " | ".join(f"{kind} (%) | {kind} claims" for kind in CLAIM_KINDS) + " |")
    print("| --- | --- |" + " --- | --- |" * len(CLAIM_KINDS))
    for (label, decoding_label), cell in cells.items():
        kinds = " | ".join(
            f"{spread(cell[f'attribute_accuracy_{kind}'])} | {spread(cell[f'attribute_claims_{kind}'], 0)}"
            for kind in CLAIM_KINDS
        )
        print(f"| {label} | {decoding_label} | {kinds} |")

    print("\nPer seed (CIDEr, attribute accuracy (%) and checked claims, overall and per kind of claim):\n")
    print("| seed | captioner | decoding | CIDEr | attribute accuracy | claims | "
          + " | ".join(f"{kind} (%) | {kind} claims" for kind in CLAIM_KINDS) + " |")
    print("| --- | --- | --- | --- | --- | --- |" + " --- | --- |" * len(CLAIM_KINDS))
    for index, seed in enumerate(seeds):
        for (label, decoding_label), cell in cells.items():
            kinds = " | ".join(
                f"{cell[f'attribute_accuracy_{kind}'][index]:.1f} | {cell[f'attribute_claims_{kind}'][index]:.0f}"
                for kind in CLAIM_KINDS
            )
            print(f"| {seed} | {label} | {decoding_label} | {cell['cider'][index]:.1f} | "
                  f"{cell['attribute_accuracy'][index]:.1f} | {cell['attribute_claims'][index]:.0f} | {kinds} |")

    simulator_model = next(model for label, _, model, _ in trained if label == "transformer + attributes")
    rng = np.random.default_rng(0)
    items = catalog.indices("test")
    reference = rng.choice(items, args.throughput_pairs)
    target = rng.choice(items, args.throughput_pairs)
    print("\n| cpu transformer | call | batch | captions per second |")
    print("| --- | --- | --- | --- |")
    for decoding_label, decoding in (("greedy", "greedy"), ("beam 5", beam)):
        simulator = LearnedCaptioner(catalog, features, simulator_model, source.vocabulary, decoding, batch_size=64)
        calls = {
            "describe": lambda ref, tgt: simulator.describe(ref, tgt, rng),
            "describe_rows": lambda ref, tgt: simulator.describe_rows(ref, tgt, [rng] * len(tgt)),
            "row by row": lambda ref, tgt: UserSimulator.describe_rows(simulator, ref, tgt, [rng] * len(tgt)),
        }
        for call_label, call in calls.items():
            call(reference[:64], target[:64])  # warm-up
            start = time.perf_counter()
            for batch in range(0, args.throughput_pairs, 64):
                call(reference[batch : batch + 64], target[batch : batch + 64])
            rate = args.throughput_pairs / (time.perf_counter() - start)
            print(f"| {decoding_label} | {call_label} | 64 | {rate:.0f} |")

    samples = LearnedCaptioner(catalog, features, simulator_model, source.vocabulary, beam).describe(
        validation.reference[:3], validation.target[:3], rng)
    print("\nExamples (beam 5 vs template references):")
    for caption, references in zip(samples, validation.references[:3]):
        print(f"- {caption!r} vs {references[:2]}")


if __name__ == "__main__":
    main()
