"""`ivr report`: what callers did on the lines over a period, from the hourly call figures (docs/interface.md)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timedelta

from ivr.domain import callreport

DEFAULT_DAYS = 7


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="call analytics: calls, outcomes, transfers, where callers give up")
    p.add_argument("--since", help="first day, YYYY-MM-DD, Connecticut time (default: 6 days before --until)")
    p.add_argument("--until", help="last day, included (default: today)")
    p.add_argument("--line", help="one line: " + ", ".join(callreport.LINES) + " (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object of integer counts")
    p.set_defaults(func=cmd_report)


def _day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        if len(value) != 10:
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise Problem(f"{flag} must be a date like 2026-11-24, not {value[:40]!r}") from None


class Problem(Exception):
    """Something about the command's arguments or environment: one line for the person."""


def cmd_report(args: argparse.Namespace) -> int:
    from ivr import settings, store

    try:
        until = _day(args.until, "--until") or datetime.now(callreport.ZONE).date()
        since = _day(args.since, "--since") or until - timedelta(days=DEFAULT_DAYS - 1)
        if since > until:
            raise Problem(f"--since {since} is after --until {until}")
        if args.line is not None and args.line not in callreport.LINES:
            raise Problem(f"--line must be one of {', '.join(callreport.LINES)}, not {args.line[:40]!r}")
        config = settings.from_env()
        client = store.for_command(config["REDIS_URL"])
    except (Problem, settings.ConfigError, store.Unreachable) as exc:
        print(f"ivr report: {exc}", file=sys.stderr)
        return 2
    report = callreport.build(callreport.read(client, since, until), line=args.line)
    if args.json:
        print(json.dumps(report, indent=None, separators=(",", ":")))
    else:
        print(callreport.text(report, since, until, args.line))
    return 0
