"""Environment throughput: env steps per second of the single, sync-vector and native vector envs.

Run ``python -m benchmarks.bench_env``; it prints a Markdown table. Each
row steps one environment kind with random query actions for about
``--seconds`` seconds (after a short warm-up) and reports env steps per
second, counting every sub-environment step.

Catalogs are synthetic dress catalogs. Catalogs of at most
``--max-encoded`` items get encoder features, trained and cached on first
use. Larger ones get random unit-norm features of the same dimension,
because encoding 100,000 rendered images takes far longer than the
measurement itself. The search cost depends only on the number of items and
the feature dimension, not on where the features came from.

The ``constant`` rows use a simulator that returns one fixed caption at no
cost, so they measure the environment alone. The ``transformer`` rows use
the cpu-preset captioner trained for a single
step (its decoding cost does not depend on the weights, and an untrained
model rarely stops before the maximum caption length, so the figure is a
lower bound for a trained one).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable

import numpy as np
import torch

logger = logging.getLogger(__name__)

ENV_KINDS = ("single", "sync", "native")


def build_features(catalog, max_encoded: int, dim: int):
    """Return encoder features for small catalogs and random unit-norm features for large ones."""
    from fiq_env.features import CatalogFeatures

    if len(catalog) <= max_encoded:
        from fiq_env.encoder import encode_catalog

        return encode_catalog(catalog, progress=False), "encoder"
    rng = np.random.default_rng(0)
    scores = catalog.labels.astype(np.float32) + rng.normal(0.0, 0.5, catalog.labels.shape).astype(np.float32)
    features = CatalogFeatures.from_arrays(
        rng.normal(size=(len(catalog), dim)).astype(np.float32),
        scores,
        tuple(catalog.attribute_names),
        catalog_fingerprint=catalog.fingerprint(),
        encoder_key="random",
    )
    return features, "random"


class ConstantSimulator:
    """A simulator that writes the same caption for every pair and draws no random numbers."""

    CAPTION = "is darker with longer sleeves"

    def __init__(self) -> None:
        from fiq_env.text import Vocabulary

        self.vocabulary = Vocabulary.build([self.CAPTION])

    def describe(self, reference: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[str]:
        return [self.CAPTION] * len(target)

    def describe_rows(self, reference: np.ndarray, target: np.ndarray, rngs: list) -> list[str]:
        return [self.CAPTION] * len(target)


def build_simulator(name: str, catalog, features):
    """Create simulator ``name``; the transformer captioner is trained for one step only."""
    import simulators

    if name == "constant":
        return ConstantSimulator()
    if name == "transformer":
        from simulators.training import TrainingConfig

        training = TrainingConfig(steps=1, warmup_steps=0, eval_every=1, checkpoint_every=1)
        return simulators.make(name, catalog=catalog, features=features, training=training, progress=False)
    return simulators.make(name, catalog=catalog)


def make_env(kind: str, num_envs: int, components: dict):
    """Create one environment of ``kind``: ``single``, ``sync`` (SyncVectorEnv) or ``native``."""
    import gymnasium as gym

    import fiq_env

    if kind == "single":
        return gym.make(fiq_env.ENV_ID, **components)
    mode = "sync" if kind == "sync" else "vector_entry_point"
    return gym.make_vec(fiq_env.ENV_ID, num_envs=num_envs, vectorization_mode=mode, **components)


def measure(env, kind: str, num_envs: int, dim: int, seconds: float) -> tuple[float, float]:
    """Return env steps per second of wall-clock time and of process CPU time, over about ``seconds``.

    The CPU-time rate leaves out the time the process waited for a core, so
    it varies less when other jobs share the machine.
    """
    rng = np.random.default_rng(0)
    batch = 1 if kind == "single" else num_envs
    actions = rng.normal(size=(64, batch, dim)).astype(np.float32)
    env.reset(seed=0)

    def step(i: int) -> None:
        action = actions[i % len(actions)]
        if kind == "single":
            _, _, terminated, truncated, _ = env.step(action[0])
            if terminated or truncated:
                env.reset()
        else:
            env.step(action)

    for i in range(3):
        step(i)
    steps = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    while time.perf_counter() - start < seconds:
        step(steps)
        steps += 1
    elapsed = time.perf_counter() - start
    cpu_elapsed = time.process_time() - cpu_start
    return steps * batch / elapsed, steps * batch / cpu_elapsed


def run(sizes: list[int], simulator_names: list[str], num_envs: int, seconds: float, max_encoded: int, dim: int) -> list[dict]:
    """Measure every (size, simulator, env kind) combination; failures become rows with the reason."""
    from fiq_env.catalog import make_catalog

    rows = []
    for size in sizes:
        catalog = make_catalog("synthetic", category="dress", num_items=size)
        features, feature_source = build_features(catalog, max_encoded, dim)
        dim = features.dim
        for simulator_name in simulator_names:
            try:
                simulator = build_simulator(simulator_name, catalog, features)
            except Exception as error:  # noqa: BLE001 - a missing simulator becomes a table row
                logger.warning("simulator %s unavailable: %s", simulator_name, error)
                for kind in ENV_KINDS:
                    rows.append(_row(size, feature_source, dim, simulator_name, kind, num_envs, None, None, f"not measured: {error}"))
                continue
            components = {"catalog": catalog, "features": features, "simulator": simulator}
            for kind in ENV_KINDS:
                env = make_env(kind, num_envs, components)
                rate, cpu_rate = measure(env, kind, num_envs, dim, seconds)
                env.close()
                logger.info("%s items, %s, %s: %.0f steps/s (%.0f per CPU second)", size, simulator_name, kind, rate, cpu_rate)
                rows.append(_row(size, feature_source, dim, simulator_name, kind, num_envs, rate, cpu_rate, ""))
    return rows


def _row(size, feature_source, dim, simulator, kind, num_envs, rate, cpu_rate, note) -> dict:
    label = {"single": "single env", "sync": f"SyncVectorEnv x{num_envs}", "native": f"native vector env x{num_envs}"}[kind]
    return {
        "items": size,
        "features": f"{feature_source}, dim {dim}",
        "simulator": simulator,
        "env": label,
        "rate": rate,
        "cpu_rate": cpu_rate,
        "note": note,
    }


def to_markdown(rows: list[dict]) -> str:
    """Return the rows as a Markdown table, with the native env's speed-up over SyncVectorEnv."""
    sync_rows = {(r["items"], r["simulator"]): r for r in rows if r["env"].startswith("Sync")}
    lines = [
        "| items | features | simulator | environment | env steps/s (wall) | vs sync | env steps per CPU second | vs sync |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        prefix = f"| {row['items']:,} | {row['features']} | {row['simulator']} | {row['env']} |"
        if row["note"]:
            lines.append(f"{prefix} {row['note']} | | | |")
            continue
        sync = sync_rows.get((row["items"], row["simulator"]))
        cells = []
        for key in ("rate", "cpu_rate"):
            ratio = f"{row[key] / sync[key]:.1f}x" if sync and sync[key] else ""
            cells.append(f" {row[key]:,.0f} | {ratio} |")
        lines.append(prefix + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000", help="comma-separated catalog sizes (items)")
    parser.add_argument("--simulators", default="constant,template,transformer", help="comma-separated simulator names")
    parser.add_argument("--num-envs", type=int, default=64, help="sub-environments of the vector envs")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per row")
    parser.add_argument("--max-encoded", type=int, default=1000, help="largest catalog given encoder features")
    parser.add_argument("--dim", type=int, default=512, help="dimension of random features when no catalog is encoded")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    sizes = [int(size) for size in args.sizes.split(",")]
    rows = run(sizes, args.simulators.split(","), args.num_envs, args.seconds, args.max_encoded, args.dim)
    print(to_markdown(rows))


if __name__ == "__main__":
    main()
