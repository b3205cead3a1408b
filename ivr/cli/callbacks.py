"""`ivr callbacks ...`: SES staff work the callbacks callers asked for (issue 18).

    ivr callbacks list [--all]                   open callbacks, oldest first, one a line starting with the
                                                 reference: when due, the number masked, attempts so far
    ivr callbacks show REF                       everything, the number to call in full, the history
    ivr callbacks take REF --by ID               take it (no one else can then log attempts or close it)
    ivr callbacks attempt REF --result no_answer|left_message|reached --by ID
    ivr callbacks done REF --by ID               close it
    ivr callbacks call REF --by ID [--phone NUMBER]
                                                 call the parent now: Twilio rings your phone first, then
                                                 dials them from the call center's number (needs
                                                 PUBLIC_BASE_URL and the Twilio account); never retried.
                                                 Without --phone the number is asked for (or read from
                                                 standard input), so it stays out of shell history
    ivr callbacks export [--status S] [-o FILE]  CSV, numbers in full: handle with care

`--by` is a staff ID (`ivr staff list`). They read REDIS_URL like the server, and IVR_SECRET_KEY to unseal
numbers. Callbacks older than `expire_days` (config/callbacks.yaml) expire with a note (the worker does it
hourly; `list` first too). A problem is one line on standard error and exit 1 (bad input) or 2 (Redis).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from datetime import datetime

from ivr import settings, store
from ivr.cli import workitems
from ivr.domain.callbacks import (
    OPEN_STATUSES,
    RESULTS,
    STATUSES,
    CallbackError,
    CallbackStore,
    check_ref,
    describe_due,
    load_settings,
)
from ivr.domain.hours import Hours
from ivr.domain.workitems import local
from ivr.redact import mask_phone
from ivr.sealing import Sealer

CSV_FIELDS = ["ref", "status", "created", "updated", "due", "best", "lang", "number", "number_how", "source",
              "office", "complete", "requests", "attempts", "last_attempt", "last_result", "recording_file",
              "text_status", "text_error", "text_consent_at", "taken_by", "taken_at", "done_by", "done_at",
              "expired_at"]
SOURCE_WORDS = {"closed": "after hours", "holiday": "on a holiday", "closure": "during a closure",
                "busy": "line busy", "no_answer": "no answer", "failed": "call failed", "office": "office menu",
                "gave_up": "gave up a menu"}


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("callbacks", help="callbacks callers asked for", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="callbacks_command", required=True)
    by = "your staff ID (kept in the history)"
    workitems.add_common(sub, STATUSES, {
        "list": "open callbacks, oldest first, one a line", "--all": "include callbacks done or expired",
        "show": "everything a callback holds, and its history",
        "export": "callbacks as CSV (phone numbers in full: handle with care)",
        "take": "take an open callback", "done": "close a callback",
    }, by, {"list": cmd_list, "show": cmd_show, "export": cmd_export, "change": cmd_change})
    s = workitems.add_change(sub, "call", "call the parent now: your phone rings first, then theirs", by, cmd_call)
    s.add_argument("--phone", help="the phone you are at (Twilio rings it first); asked for when left out")
    s = workitems.add_change(sub, "attempt", "log a call made to the caller", by, cmd_change)
    s.add_argument("--result", required=True, choices=RESULTS)


# The clock of the commands (None: now); tests set it to the calls' own, as they do for the app.
clock: Callable[[], datetime] | None = None


def open_store() -> CallbackStore:
    """The store as staff commands (and the console) use it: `--by` must name an existing staff account."""
    from ivr.domain.staffdb import StaffDB, pepper_for

    logging.getLogger("ivr.callbacks").setLevel(logging.ERROR)   # fsync warnings: nothing for staff to do
    config = settings.from_env()
    client = store.for_command(config["REDIS_URL"])
    hours = Hours.load(config["CONFIG_DIR"] / "hours.yaml", clock=clock)
    staff = StaffDB(client, pepper_for(config))
    return CallbackStore(client, Sealer.from_config(config), hours,
                         load_settings(config["CONFIG_DIR"] / "callbacks.yaml"),
                         staff_exists=lambda staff_id: staff.get(staff_id) is not None)


def run(fn: Callable[[CallbackStore], int]) -> int:
    return workitems.run("ivr callbacks", open_store, (CallbackError,), fn)



def line(cb: dict[str, str], zone) -> str:
    """One callback for a list: reference first, the number masked."""
    who = f" by {cb['taken_by']}" if cb.get("taken_by") and cb.get("status") != "open" else ""
    attempts = int(cb.get("attempts") or 0)
    tried = f"{attempts} attempt(s), last {cb.get('last_result', '').replace('_', ' ')}" if attempts else "not tried"
    office = cb.get("office") or "agents"
    return (f"{cb['ref']}  {cb.get('status', '?')}{who}  due {describe_due(cb, zone)}  "
            f"asked {local(cb.get('created', ''), zone)}  {cb.get('number')}  {cb.get('lang', '')}  "
            f"{office} ({SOURCE_WORDS.get(cb.get('source', ''), cb.get('source', ''))})  {tried}  "
            f"{'message' if cb.get('recording_file') or cb.get('recording_url') else 'no message'}")


def cmd_list(args: argparse.Namespace) -> int:
    def go(cbs: CallbackStore) -> int:
        cbs.expire_old()
        items = cbs.listing(STATUSES if args.all else OPEN_STATUSES)
        for cb in items:
            print(line(cb, cbs.hours.zone))
        if not items:
            print("no open callbacks" if not args.all else "no callbacks", file=sys.stderr)
        return 0
    return run(go)


def cmd_show(args: argparse.Namespace) -> int:
    def go(cbs: CallbackStore) -> int:
        ref = check_ref(args.ref)
        cb = cbs.get(ref)
        if cb is None and cbs.purged_at(ref):
            raise CallbackError(f"callback {ref} was deleted {local(cbs.purged_at(ref), cbs.hours.zone)} at the end "
                                "of its retention period")
        if cb is None:
            raise CallbackError(f"no callback {ref}")
        zone = cbs.hours.zone
        status = cb.get("status", "?")
        for who, at in (("taken_by", "taken_at"), ("done_by", "done_at")):
            if cb.get(who):
                status += f" ({who.split('_')[0]} by {cb[who]} {local(cb.get(at, ''), zone)})"
        if cb.get("expired_at"):
            status += f" (expired {local(cb['expired_at'], zone)})"
        message = cb.get("recording_file") or ("not downloaded yet (ivr worker)" if cb.get("recording_url")
                                               else "no message")
        text = cb.get("text_status", "")
        if text:
            text += f": {cb['text_error']}" if cb.get("text_error") else ""
            text += f" (consent {local(cb.get('text_consent_at', ''), zone)})" if cb.get("text_consent_at") else ""
        rows = [("reference", ref), ("status", status), ("due", describe_due(cb, zone)),
                ("number to call", cb.get("number") or "?"), ("number from", cb.get("number_how") or "?"),
                ("caller ID", mask_phone(cb.get("caller")) if cb.get("caller") else "(withheld)"),
                ("language", cb.get("lang", "")), ("for", cb.get("office") or "agents"),
                ("why", SOURCE_WORDS.get(cb.get("source", ""), cb.get("source", ""))),
                ("asked", f"{local(cb.get('created', ''), zone)} ({cb.get('requests', '1')} request(s))"),
                ("attempts", cb.get("attempts", "0")), ("message", message), ("text", text or "none")]
        workitems.print_item(rows, 16, cbs.history(ref), lambda at: local(at, zone))
        return 0
    return run(go)


def cmd_export(args: argparse.Namespace) -> int:
    def go(cbs: CallbackStore) -> int:
        statuses = STATUSES if args.status == "all" else (args.status,)
        return workitems.export(args.output, CSV_FIELDS, (cb for _, cb in cbs.items(statuses)))
    return run(go)


def cmd_change(args: argparse.Namespace) -> int:
    def go(cbs: CallbackStore) -> int:
        ref = check_ref(args.ref)
        if args.change == "attempt":
            result = cbs.attempt(ref, args.result, args.by)
        else:
            result = cbs.take(ref, args.by) if args.change == "take" else cbs.done(ref, args.by)
        print(f"callback {ref}: {result} ({args.by.strip()})")
        return 0
    return run(go)


def cmd_call(args: argparse.Namespace) -> int:
    """One request to Twilio, never repeated: a refusal or no answer is one line on standard error."""
    from ivr.app import load_lines
    from ivr.domain.callnow import call_now

    def go(cbs: CallbackStore) -> int:
        config = settings.from_env()
        caller_id = load_lines(config["CONFIG_DIR"] / "lines.yaml")["callback_number"]
        ref = check_ref(args.ref)
        phone = args.phone if args.phone is not None else _read_phone()
        sid = call_now(cbs, config, ref, args.by, phone, caller_id, via="the command line")
        print(f"callback {ref}: your phone will ring; answer and you will be connected to the parent "
              f"(call ...{sid[-6:]})")
        return 0
    return run(go)


def _read_phone() -> str:
    """The staff member's number from a prompt (or the first line of standard input): not an argument, so
    that it is in no shell history or process list."""
    if sys.stdin.isatty():
        print("Your phone number (Twilio rings it first): ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip()
