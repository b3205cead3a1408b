"""What `ivr requests` and `ivr callbacks` share: their common subcommands, error handling and printing.

Both kinds of staff work item (ivr/domain/workitems.py) have `list`, `show REF`, `export` and `take` / `done
REF --by ID`; each command module keeps what its own kind shows and allows (holds, attempts, call now).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

import redis

from ivr.domain.workitems import AuditEntry, write_csv
from ivr.store import Unreachable


def add_common(sub, statuses: Sequence[str], helps: Mapping[str, str], by_help: str,
               commands: Mapping[str, Callable[[argparse.Namespace], int]]) -> None:
    """`list [--all]`, `show REF`, `export [--status S] [-o FILE]`, `take REF --by ID`, `done REF --by ID`:
    `helps` says each (and `--all`), `commands` runs `list`, `show`, `export` and `change` (take, done)."""
    s = sub.add_parser("list", help=helps["list"])
    s.add_argument("--all", action="store_true", help=helps["--all"])
    s.set_defaults(func=commands["list"])
    s = sub.add_parser("show", help=helps["show"])
    s.add_argument("ref")
    s.set_defaults(func=commands["show"])
    s = sub.add_parser("export", help=helps["export"])
    s.add_argument("--status", choices=[*statuses, "all"], default="all")
    s.add_argument("--output", "-o", help="write to this file instead of standard output")
    s.set_defaults(func=commands["export"])
    for name in ("take", "done"):
        add_change(sub, name, helps[name], by_help, commands["change"])


def add_change(sub, name: str, text: str, by_help: str, func: Callable[[argparse.Namespace], int]):
    """A change staff make to one item: `NAME REF --by ID`; returns the parser, for more arguments."""
    s = sub.add_parser(name, help=text)
    s.add_argument("ref")
    s.add_argument("--by", required=True, help=by_help)
    s.set_defaults(func=func, change=name)
    return s


def run(command: str, open_store: Callable[[], object], errors: tuple[type[Exception], ...], fn) -> int:
    """`fn(store)`'s exit code; a problem is one line on standard error and exit 1 (one of `errors`: bad
    input) or 2 (Redis unreachable or failing)."""
    try:
        return fn(open_store())
    except Unreachable as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 2
    except errors as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"{command}: Redis error: {exc}", file=sys.stderr)
        return 2


def print_item(rows: Iterable[tuple[str, str]], width: int, history: Iterable[AuditEntry],
               when: Callable[[str], str], who: Callable[[str], str] = str, who_width: int = 10) -> None:
    """`show`: one `label: value` a line, then the history, one entry a line."""
    for label, value in rows:
        print(f"{label + ':':{width}} {value}")
    print("history:")
    for entry in history:
        detail = f": {entry.detail}" if entry.detail else ""
        print(f"  {when(entry.at)}  {who(entry.by):{who_width}} {entry.action}{detail}")


def export(output: str | None, fields: Sequence[str], rows: Iterable[Mapping[str, str]]) -> int:
    """`export`: CSV to the file `output`, or to standard output (no cell a spreadsheet runs as a formula)."""
    out = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout
    try:
        write_csv(out, fields, rows)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0
