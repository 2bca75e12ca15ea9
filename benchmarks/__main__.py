"""``fiq-bench`` / ``python -m benchmarks``: benchmark retriever agents over 5-turn dialogs."""

from __future__ import annotations

import logging
import sys

from benchmarks.config import build_parser, config_from_args
from fiq_env.errors import FiqError


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the benchmark and print the Markdown table."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        config = config_from_args(args)
        from benchmarks.runner import run_benchmark

        run_benchmark(config)
    except FiqError as error:
        print(f"fiq-bench: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable cache or output folder, or a full disk
        print(f"fiq-bench: error: {error}; check that the cache and output folders are writable", file=sys.stderr)
        return 2
    print((config.output_path / "results.md").read_text(encoding="utf-8"))
    print(f"Results, plot and TensorBoard logs are in {config.output_path}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
