"""`ivr requests ...`: SES staff work the requests callers leave (incarcerated parents' modifications).

    ivr requests list [--all]          open requests, one a line, starting with the reference
    ivr requests show REF              everything the caller gave, where the recording is, the history
    ivr requests export [--status S]   CSV on standard output (or --output FILE)
    ivr requests take REF --by ID    take an open request (no one else can then mark it done)
    ivr requests done REF --by ID    mark it done
    ivr requests hold REF --by ID [--reason TEXT]    legal hold: never deleted until released
    ivr requests release REF --by ID                 end the legal hold (retention applies again)

They read REDIS_URL like the server, and IVR_SECRET_KEY to unseal inmate and case numbers. Every change is
written to the request's audit trail with who and when. A problem is one line on stderr and exit 1
(bad input) or 2 (Redis unreachable).
"""

from __future__ import annotations

import argparse
import sys
from zoneinfo import ZoneInfo

from ivr import settings, store
from ivr.callflow.callstate import CallStore
from ivr.cli import workitems
from ivr.domain.requests import STATUSES, WHO_CALLED, RequestError, RequestStore, check_ref
from ivr.domain.staffdb import ID_RE, StaffDB, StaffError, pepper_for
from ivr.domain.workitems import local as workitems_local
from ivr.jobs import retention
from ivr.jobs.worker import CLAIM_IDLE_MS, MAX_DELIVERIES
from ivr.redact import mask_digits
from ivr.sealing import Sealer

TZ = ZoneInfo("America/New_York")
# No Twilio recording URL: staff work from the system's own file (Twilio's copy is deleted once it is there).
CSV_FIELDS = ["ref", "status", "created", "updated", "complete", "stage", "source", "who_called", "lang",
              "facility", "facility_how", "inmate_number", "case_number", "caller_id", "recording_file",
              "recording_error", "twilio_copy", "twilio_copy_error", "taken_by", "taken_at", "done_by", "done_at"]
WHO_WORDS = dict(zip(WHO_CALLED, ("the parent", "someone calling for the parent"), strict=True))
STAGE_WORDS = {"number": "after the inmate number", "facility": "after the facility",
               "case": "after the case number", "message": "after the message"}


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("requests", help="requests callers left for SES staff (incarcerated parents)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="requests_command", required=True)
    by = "your staff ID (`ivr staff list`), kept in the audit trail"
    workitems.add_common(sub, STATUSES, {
        "list": "open requests, one a line, oldest first", "--all": "include requests already done",
        "show": "everything a request holds, and its history",
        "export": "requests as CSV (inmate and case numbers included: handle with care)",
        "take": "take an open request", "done": "mark a request done",
    }, by, {"list": cmd_list, "show": cmd_show, "export": cmd_export, "change": cmd_change})

    s = sub.add_parser("reseal", help="seal with the current IVR_SECRET_KEY what only IVR_SECRET_KEY_PREVIOUS opens")
    s.set_defaults(func=cmd_reseal)

    s = workitems.add_change(sub, "hold", "put a request on legal hold: kept past any retention period", by, cmd_change)
    s.add_argument("--reason", default="", help="why (a case or subpoena number...), kept in the audit trail")
    workitems.add_change(sub, "release", "end a request's legal hold (its retention period applies again)", by,
                         cmd_change)


def cmd_reseal(args: argparse.Namespace) -> int:
    def go(store: RequestStore) -> int:
        count = store.reseal_rotated()
        print(f"resealed {count} request(s); none is left sealed with the previous key: "
              "IVR_SECRET_KEY_PREVIOUS can be removed once the worker's queue is empty")
        return 0
    return run(go)


def open_store() -> RequestStore:
    import logging


    # The server warns when Redis cannot confirm fsyncs; a staff command has nothing to do about it.
    logging.getLogger("ivr.requests").setLevel(logging.ERROR)

    config = settings.from_env()
    return RequestStore(store.for_command(config["REDIS_URL"]), Sealer.from_config(config))


def run(fn) -> int:
    return workitems.run("ivr requests", open_store, (RequestError, StaffError), fn)


def local(stamp: str) -> str:
    return workitems_local(stamp, TZ)


def completeness(store: RequestStore, req: dict) -> str:
    if req.get("complete") == "1":
        return "complete"
    if CallStore(store.redis, 0).live(req.get("sid", "")):
        return "caller still on the line"
    return f"INCOMPLETE (call ended {STAGE_WORDS.get(req.get('stage', ''), 'early')})"


def facility_name(req: dict) -> str:
    """The facility's short name from config/facilities.yaml (its id if the file cannot be read)."""
    fid = req.get("facility")
    if not fid:
        return "facility not given"
    return _facility_names().get(fid, fid)


def _facility_names() -> dict[str, str]:
    global _NAMES
    if _NAMES is None:
        from ivr.domain.facilities import FacilityError, load_facilities
        try:
            facilities = load_facilities(settings.from_env()["CONFIG_DIR"] / "facilities.yaml")
            _NAMES = {f.id: f.short for f in facilities.by_id.values()}
        except FacilityError:
            _NAMES = {}
    return _NAMES


_NAMES: dict[str, str] | None = None


def language_name(code: str) -> str:
    """The request's language by the name in its prompts/<lang>/language.yaml ("Spanish"); else its code."""
    from ivr.callflow.prompts import PromptError, load_languages
    config = settings.from_env()
    try:
        language = load_languages(config["PROMPTS_DIR"], config["CONFIG_DIR"] / "lines.yaml").get(code)
    except PromptError:
        language = None
    return language.name if language else code


def twilio_copy(req: dict) -> str:
    """What became of Twilio's copy of the message, for `show`."""
    state, error = req.get("twilio_copy", ""), req.get("twilio_copy_error", "")
    at = local(req.get("twilio_copy_at", ""))
    if state in ("deleted", "already gone"):
        return f"{state} ({at})"
    if state == "deleting":
        return "to be deleted (ivr worker)"
    by_hand = f"delete the recording named like the file in the Twilio console (call {req.get('sid', '?')})"
    if state == "delete failed":
        retrying = MAX_DELIVERIES * CLAIM_IDLE_MS // 60_000
        return (f"NOT DELETED: {error} ({at}). The worker tries again for about {retrying} minutes (then the job waits "
                f"in ivr:jobs:dead); if this stays, {by_hand}")
    if state == "not deleted":
        return f"NOT DELETED: {error} ({at}). The worker will not try again: {by_hand}"
    if state == "kept":
        return f"kept on Twilio: {error}"
    if req.get("recording_file"):
        return "not deleted (downloaded before deletion was added; the worker queues it when it starts)"
    return "kept until the message is downloaded"


def hold_text(req: dict, accounts: StaffDB) -> str:
    if not req.get("hold_at"):
        return "none"
    reason = f": {req['hold_reason']}" if req.get("hold_reason") else ""
    return f"yes, since {local(req['hold_at'])} by {who(accounts, req.get('hold_by', '?'))}{reason}"


def retention_text(req: dict, config: dict) -> str:
    """When the request may be deleted (ivr/jobs/retention.py), in Connecticut's dates."""
    if req.get("hold_at"):
        return "on legal hold: kept until the hold is released"
    dates = retention.due_dates(req, config)
    if dates is None:
        return f"kept while open or taken; deleted {config['RETAIN_REQUESTS_DAYS']} days after it is done"
    message, request = (d.astimezone(TZ).date().isoformat() for d in dates)
    message = "" if req.get("recording_deleted") or not req.get("recording_file") else \
        f"message deleted from {message}, "
    return f"{message}the request and its history from {request}"


def cmd_list(args: argparse.Namespace) -> int:
    def go(store: RequestStore) -> int:
        items = list(store.items(STATUSES if args.all else ("open", "taken")))
        for ref, req in items:
            who = f" by {req.get('taken_by')}" if req.get("status") in ("taken", "done") else ""
            flag = "  TWILIO COPY NOT DELETED" if req.get("twilio_copy") in ("delete failed", "not deleted") else ""
            print(f"{ref}  {req.get('status', '?')}{who}  {local(req.get('created', ''))}  "
                  f"inmate {mask_digits(req.get('inmate'))}  {facility_name(req)}  "
                  f"{'message' if req.get('recording_url') else 'no message'}  {completeness(store, req)}{flag}")
        if not items:
            print("no open requests" if not args.all else "no requests", file=sys.stderr)
        return 0
    return run(go)


def cmd_show(args: argparse.Namespace) -> int:
    def go(store: RequestStore) -> int:
        ref = check_ref(args.ref)
        req = store.get(ref)
        if req is None:
            raise store.missing(ref)
        accounts = StaffDB(store.redis, pepper_for(settings.from_env()))
        # Only the system's own file: Twilio's URL stays sealed in Redis (and its copy is deleted).
        if req.get("recording_file"):
            recording = req["recording_file"]
        elif req.get("recording_deleted"):
            recording = f"deleted {local(req['recording_deleted'])} (retention period)"
        elif req.get("recording_url"):
            recording = f"download failed: {req['recording_error']}" if req.get("recording_error") else \
                "not downloaded yet (ivr worker)"
        else:
            recording = "no message"
        status = req.get("status", "?")
        if req.get("taken_by"):
            status += f" (taken by {who(accounts, req['taken_by'])} {local(req.get('taken_at', ''))})"
        if req.get("done_by"):
            status += f" (done by {who(accounts, req['done_by'])} {local(req.get('done_at', ''))})"
        rows = [
            ("reference", ref),
            ("status", status),
            ("created", local(req.get("created", ""))),
            ("updated", local(req.get("updated", ""))),
            ("complete", completeness(store, req)),
            ("how the call came", req.get("source", "")),
            ("who called", WHO_WORDS.get(req.get("who_called", ""), "(not asked)")),
            ("language", language_name(req.get("lang", ""))),
            ("inmate number", req.get("inmate") or "(not given)"),
            ("facility", f"{facility_name(req)} (from {req.get('facility_how') or '?'})"
             if req.get("facility") else "(not given)"),
            ("case/docket number", req.get("case") or "(not given)"),
            ("caller ID", req.get("caller") or "(withheld)"),
            ("message", recording),
            ("legal hold", hold_text(req, accounts)),
            ("retention", retention_text(req, settings.from_env())),
        ]
        if req.get("recording_url"):
            rows.append(("Twilio's copy", twilio_copy(req)))
        workitems.print_item(rows, 20, store.history(ref), local, lambda by: who(accounts, by), 20)
        return 0
    return run(go)


def who(accounts: StaffDB, by: str) -> str:
    """A history entry's author: a staff ID with the account's name, or as written (the caller, a name)."""
    staff = accounts.get(by) if ID_RE.match(by) else None
    return f"{by} {staff.name}" if staff else by


def cmd_export(args: argparse.Namespace) -> int:
    def go(store: RequestStore) -> int:
        statuses = STATUSES if args.status == "all" else (args.status,)
        return workitems.export(args.output, CSV_FIELDS, (csv_row(req) for _, req in store.items(statuses)))
    return run(go)


def csv_row(req: dict) -> dict:
    """A request as exported: its numbers under the names the CSV gives them."""
    return {**req, "inmate_number": req.get("inmate", ""), "case_number": req.get("case", ""),
            "caller_id": req.get("caller", "")}


def cmd_change(args: argparse.Namespace) -> int:
    def go(store: RequestStore) -> int:
        ref = check_ref(args.ref)
        member = StaffDB(store.redis, pepper_for(settings.from_env())).member(args.by)
        by = member.id
        if args.change == "hold":
            result = store.hold(ref, by, args.reason)
        elif args.change == "release":
            result = store.release(ref, by)
        else:
            result = store.take(ref, by) if args.change == "take" else store.done(ref, by)
        print(f"request {ref}: {result} (by {by}, {member.name})")
        return 0
    return run(go)
