"""``fiq-train-agent``: train a retriever with the triplet loss, or fine-tune one with PPO.

Examples::

    fiq-train-agent triplet --agent transformer --run-dir runs/transformer
    fiq-train-agent ppo --retriever runs/transformer/agent --run-dir runs/transformer-ppo

Options of each algorithm are generated from its config dataclass
(:class:`~agents.triplet.TripletConfig`, :class:`~agents.rl.PPOConfig`);
options left out keep the preset's values. Running the same command again
resumes from the run folder's latest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from fiq_env.errors import FiqError

logger = logging.getLogger(__name__)


def _add_config_options(parser: argparse.ArgumentParser, config_class: type) -> None:
    """Add one ``--field-name`` option per field of ``config_class`` (default None: keep the preset)."""
    group = parser.add_argument_group(f"{config_class.__name__} fields (default: the preset's value)")
    for spec in dataclasses.fields(config_class):
        flag = "--" + spec.name.replace("_", "-")
        help_text = spec.metadata.get("help", "")
        if spec.type in ("bool", bool):
            group.add_argument(flag, type=_parse_bool, default=None, metavar="{true,false}", help=help_text)
        elif spec.type in ("int", int):
            group.add_argument(flag, type=int, default=None, help=help_text)
        elif spec.type in ("float", float):
            group.add_argument(flag, type=float, default=None, help=help_text)
        else:
            group.add_argument(flag, default=None, help=help_text)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _overrides(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    return {
        spec.name: getattr(args, spec.name)
        for spec in dataclasses.fields(config_class)
        if getattr(args, spec.name, None) is not None
    }


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--catalog", default="synthetic", help="catalog source: synthetic, fashion_iq or image_folder")
    group.add_argument("--category", default="dress", help="garment category")
    group.add_argument("--num-items", type=int, default=1500, help="items of a synthetic catalog")
    group.add_argument("--catalog-seed", type=int, default=0, help="seed of a synthetic catalog")
    group.add_argument("--root", default=None, help="data root of a fashion_iq or image_folder catalog")
    group.add_argument("--simulator", default="template", help="user simulator name (template, transformer, ...)")
    group.add_argument("--run-dir", required=True, help="folder for TensorBoard logs, checkpoints and the trained agent")
    group.add_argument("--preset", default="cpu", help="preset of the model and training configs: tiny, cpu or paper")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per training algorithm."""
    from agents.rl import PPOConfig
    from agents.triplet import TripletConfig

    parser = argparse.ArgumentParser(prog="fiq-train-agent", description="Train retriever agents for fiq-env dialogs.")
    parser.add_argument("--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    triplet = commands.add_parser("triplet", help="supervised training with the triplet loss, simulator in the loop")
    triplet.add_argument("--agent", default="transformer", help="registered agent name or 'module:Class' import path")
    _add_data_options(triplet)
    _add_config_options(triplet, TripletConfig)

    ppo = commands.add_parser("ppo", help="PPO fine-tuning of a saved transformer retriever on the topk env")
    ppo.add_argument("--retriever", required=True, help="folder of the supervised retriever (a triplet run's agent/)")
    ppo.add_argument(
        "--save-zip", action="store_true",
        help="also write RUN_DIR/ppo_model.zip, the stable-baselines3 file fiq-bench --agents accepts (pickle-based)",
    )
    _add_data_options(ppo)
    _add_config_options(ppo, PPOConfig)
    return parser


def _load_components(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from fiq_env.catalog import make_catalog
    from fiq_env.encoder import encode_catalog
    from fiq_env.env_config import resolve_simulator

    kwargs: dict[str, Any] = {"category": args.category}
    if args.catalog == "synthetic":
        kwargs.update(num_items=args.num_items, seed=args.catalog_seed)
    if args.root is not None:
        kwargs["root"] = args.root
    catalog = make_catalog(args.catalog, **kwargs)
    features = encode_catalog(catalog)
    simulator = resolve_simulator(args.simulator, catalog, features, None)
    return catalog, features, simulator


def run_triplet(args: argparse.Namespace) -> str:
    import agents
    from agents.base import observation_sizes
    from agents.rollout import DialogData
    from agents.triplet import TripletConfig, TripletTrainer

    catalog, features, simulator = _load_components(args)
    config = TripletConfig.from_preset(args.preset, **_overrides(args, TripletConfig))
    train_data = DialogData(catalog, features, simulator, "train")
    eval_data = DialogData(catalog, features, simulator, "val")
    agent = agents.make(args.agent, preset=args.preset, **observation_sizes(features, simulator.vocabulary))
    result = TripletTrainer(agent, train_data, eval_data, config, run_dir=args.run_dir).train()
    recalls = ", ".join(f"{value:.1f}" for value in result.evaluation.get("recall@10", []))
    return f"trained {args.agent} to step {result.step} in {result.seconds:.0f} s; val recall@10 per turn: {recalls}; agent saved to {Path(args.run_dir) / 'agent'}"


def run_ppo(args: argparse.Namespace) -> str:
    from agents.rl import PPOConfig, train_ppo

    catalog, features, simulator = _load_components(args)
    config = PPOConfig.from_preset(args.preset, **_overrides(args, PPOConfig))
    model, seconds = train_ppo(
        args.retriever, args.run_dir, config, save_zip=args.save_zip, catalog=catalog, features=features, simulator=simulator
    )
    saved = f"{Path(args.run_dir) / 'policy'}" + (f" and {Path(args.run_dir) / 'ppo_model.zip'}" if args.save_zip else "")
    return f"PPO reached {model.num_timesteps} steps in {seconds:.0f} s; policy saved to {saved}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run_triplet(args) if args.command == "triplet" else run_ppo(args)
    except FiqError as error:
        logger.error("%s", error)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
