"""Run one benchmark: `python -m benchmarks <name> [--size N] [--shape S ...] [--db D ...]`."""

import argparse
import importlib

BENCHMARKS = ("ingest", "reads", "sdk_overhead", "events", "retention", "storage")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("name", choices=BENCHMARKS)
    parser.add_argument("--size", type=int, default=None, help="how many operations")
    parser.add_argument(
        "--shape", action="append", help="ingest, storage: traffic shapes (default all)"
    )
    parser.add_argument(
        "--db",
        action="append",
        help="ingest, events, storage: sqlite, postgresql (default both); reads: (default sqlite)",
    )
    parser.add_argument(
        "--replicas",
        help="ingest: through nginx in front of this many servers on PostgreSQL, e.g. 1,2,3",
    )
    args = parser.parse_args()
    module = importlib.import_module(f"benchmarks.{args.name}")
    if args.name == "ingest" and args.replicas:
        counts = [int(n) for n in args.replicas.split(",")]
        module.run_replicas(args.size, counts, shapes=args.shape)
    elif args.name in ("ingest", "storage"):
        module.run(args.size, shapes=args.shape, databases=args.db)
    elif args.name in ("events", "reads"):
        module.run(args.size, databases=args.db)
    else:
        module.run(args.size)


if __name__ == "__main__":
    main()
