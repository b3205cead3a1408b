"""`ivr bench`: the load benchmark of whole calls (the code is in bench/ of the source tree)."""

from __future__ import annotations

import argparse
import sys

from ivr.settings import ROOT


def _bench_module():
    if not (ROOT / "bench" / "run.py").exists():
        raise RuntimeError(f"the benchmark lives in a source checkout ({ROOT / 'bench'} is missing)")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench import run
    return run


def cmd_bench(args: argparse.Namespace) -> int:
    return _bench_module().run(args)


def add_commands(subparsers) -> None:
    """Called by ivr/cli/main.py: adds `ivr bench`."""
    p = subparsers.add_parser(
        "bench", help="load benchmark: many simultaneous simulated calls against gunicorn, Redis and the SDU stub",
        description="Starts redis-server, the SDU stub, the system (the Procfile's web: line) and a minimal "
                    "floor app on loopback ports, drives simultaneous signed calls along bench/paths.py, and "
                    "prints and writes (bench/results/*.json) throughput, latency per webhook kind, the ratio "
                    "to the floor, each path against the floor doing the same outside work (the per-path "
                    "speed targets), and Redis memory per active call. About 6 minutes by default; --quick "
                    "for a smoke run; --capacity for the most human-paced calls one host holds.")
    try:
        _bench_module().add_arguments(p)
    except RuntimeError as exc:
        message = f"ivr bench: {exc}"
        p.set_defaults(func=lambda args: print(message) or 2)
        return
    p.set_defaults(func=cmd_bench)
