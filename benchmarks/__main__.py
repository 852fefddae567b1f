"""Run one benchmark: `python -m benchmarks <name> [--size N]`."""

import argparse
import importlib

BENCHMARKS = ("ingest", "reads", "sdk_overhead")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("name", choices=BENCHMARKS)
    parser.add_argument("--size", type=int, default=None, help="how many operations")
    args = parser.parse_args()
    module = importlib.import_module(f"benchmarks.{args.name}")
    module.run(args.size)


if __name__ == "__main__":
    main()
