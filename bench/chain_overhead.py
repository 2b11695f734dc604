"""Per-step overhead of the chain runner against bare subprocess calls.

A 100-step chain whose every step runs `true`, through the real
`chains.runner.run_chain` (rows, heartbeats, counters, log handler and all),
against 100 bare `subprocess.run(["true"])` calls, measured side by side in
the same run, interleaved, median of --repeats rounds.

Target: per-step overhead = (chain total - bare total) / steps <= 5 ms.

Run from the project root:  .venv/bin/python bench/chain_overhead.py
Uses its own scratch SQLite database in a temp directory, removed at the end.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from _django import parse_args, profile, rounds, scratch_dir, setup_django

STEPS = 100
TARGET_MS = 5.0


def make_chain() -> Any:
    from chains.models import Chain, Workflow

    Workflow.objects.create(slug="bench-true", name="true", command=["true"])
    return Chain.objects.create_with_steps("bench-chain", "bench chain", ["bench-true"] * STEPS)


def time_chain(chain: Any) -> float:
    from chains.models import RunStatus
    from chains.runner import run_chain

    start = time.perf_counter()
    chain_run = run_chain(chain)
    elapsed = time.perf_counter() - start
    steps_run = chain_run.workflow_runs.filter(status=RunStatus.SUCCESS).count()
    if chain_run.status != RunStatus.SUCCESS or steps_run != STEPS:
        raise SystemExit(f"chain run failed: {chain_run.status} ({steps_run} steps ok): {chain_run.error}")
    return elapsed


def time_bare() -> float:
    start = time.perf_counter()
    for _ in range(STEPS):
        subprocess.run(["true"], check=True)
    return time.perf_counter() - start


def main() -> int:
    args = parse_args(
        __doc__,
        repeats=3,
        repeats_help="interleaved rounds (median reported)",
        profile_help="also cProfile one extra chain run",
    )

    with scratch_dir("chain") as scratch:
        setup_django(scratch, scratch / "bench.sqlite3")
        chain = make_chain()
        time_chain(chain)  # warm-up: imports, caches, first connection
        time_bare()
        chain_times: list[float] = []
        bare_times: list[float] = []
        for _ in range(args.repeats):
            chain_times.append(time_chain(chain))
            bare_times.append(time_bare())
        report(chain_times, bare_times)
        if args.profile:
            profile(f"one {STEPS}-step chain run", lambda: time_chain(chain), 30)
        overhead_ms = (statistics.median(chain_times) - statistics.median(bare_times)) / STEPS * 1000
        return 0 if overhead_ms <= TARGET_MS else 1


def report(chain_times: list[float], bare_times: list[float]) -> None:
    chain_s, bare_s = statistics.median(chain_times), statistics.median(bare_times)
    overhead_ms = (chain_s - bare_s) / STEPS * 1000
    print(f"chain overhead: {STEPS} steps of `true`, {len(chain_times)} interleaved rounds (median)")
    print(f"  rounds chain/bare s:      {rounds(chain_times, bare_times)}")
    print(f"  run_chain total:          {chain_s:.3f} s  ({chain_s / STEPS * 1000:.2f} ms/step)")
    print(f"  bare subprocess.run:      {bare_s:.3f} s  ({bare_s / STEPS * 1000:.2f} ms/step)")
    print(f"  per-step overhead:        {overhead_ms:.2f} ms  (ratio chain/bare {chain_s / bare_s:.2f}x)")
    verdict = "PASS" if overhead_ms <= TARGET_MS else "FAIL"
    print(f"  target per-step overhead <= {TARGET_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
