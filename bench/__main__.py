"""`python -m bench` (what `make bench` runs): every benchmark, or those named, each printing
its figures beside the baseline measured in the same run.

    python -m bench                      # all of them
    python -m bench ballots --seconds 20  # one, longer
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench import ballots
from bench import batches as batches_bench
from bench import decisions as decisions_bench
from bench import replay as replay_bench
from bench import supports as supports_bench
from bench import tally as tally_bench
from bench.harness import Figure

Benchmark = Callable[[float], Coroutine[Any, Any, list[Figure]]]

BENCHMARKS: dict[str, Benchmark] = {
    "ballots": ballots.proposal_ballots,
    "budget-ballots": ballots.budget_ballots,
    "ballot-batches": batches_bench.ballot_batches,
    "tally": tally_bench.tally,
    "replay": replay_bench.replay,
    "supports": supports_bench.supports,
    "decisions": decisions_bench.decisions,
    "live-cases": decisions_bench.live_cases,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"which to run (default all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="load per measurement")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; there are: {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    for name in names:
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        figures = asyncio.run(BENCHMARKS[name](args.seconds))
        for figure in figures:
            print(figure.render(), flush=True)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
