"""`ivr purge`: delete what is past its retention period now (the worker does it once an hour)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

import redis

from ivr.jobs import retention


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("purge", help="delete what is past its retention period (counts only)",
                              description="Delete what is past its retention period (IVR_RETAIN_*_DAYS): "
                              "done requests and their history, callers' messages, unused prompt audio, "
                              "dead letters, closed callbacks and their messages, text records. Prints how "
                              "many of each, never what. The worker does this once an hour.")
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
    p.set_defaults(func=cmd_purge)


def cmd_purge(args: argparse.Namespace) -> int:
    from ivr import settings, store

    config = settings.from_env()
    try:
        r = store.for_command(config["REDIS_URL"])
        report = retention.purge(r, config, retention.clock(), dry_run=args.dry_run)
    except store.Unreachable as exc:
        print(f"ivr purge: {exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"ivr purge: Redis error: {exc}", file=sys.stderr)
        return 2
    print("would delete (dry run: nothing was changed):" if args.dry_run else "deleted:")
    lines = {
        "requests": f"(done more than {config['RETAIN_REQUESTS_DAYS']} days ago, with their history and message)",
        "messages": f"(callers' messages of requests done more than {config['RETAIN_RECORDINGS_DAYS']} days ago)",
        "prompt_audio": f"(staff recordings unheard for more than {config['RETAIN_PROMPT_AUDIO_DAYS']} days; "
                        "never the live version or the one a rollback goes back to)",
        "dead_letters": f"(failed jobs older than {config['RETAIN_DEAD_LETTERS_DAYS']} days)",
        "held": "(done requests past their retention period, kept: on legal hold)",
        "callbacks": f"(done or expired more than {config['RETAIN_CALLBACKS_DAYS']} days ago, with their "
                     "history and message)",
        "callback_messages": f"(callers' messages of callbacks closed more than {config['RETAIN_RECORDINGS_DAYS']} "
                             "days ago)",
        "texts": f"(records of texts unchanged for more than {config['RETAIN_TEXTS_DAYS']} days; "
                 "STOP replies are kept)",
    }
    for field in fields(report):
        label = "on legal hold" if field.name == "held" else field.name.replace("_", " ")
        print(f"{label:<18}{getattr(report, field.name):>6}  {lines[field.name]}")
    return 0
