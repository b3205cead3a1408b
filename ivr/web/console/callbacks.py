"""Console pages for the callbacks callers ask for (issue 18): the queue oldest first, one callback, take /
attempt / done by the signed-in staff member, and the CSV export (supervisors).

Modelled on the requests pages (requests.py): the number to call is shown masked until a staff member
opens it on the callback's page, each opening written to the audit log, and so is every change. The
store's own rules decide who may do what (a callback taken by someone else is theirs to close); a
refusal is a message on the page.
"""

from __future__ import annotations

import csv
import io

from flask import Response, abort, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm

from ivr.cli.callbacks import CSV_FIELDS, SOURCE_WORDS
from ivr.domain.callbacks import OPEN_STATUSES, RESULTS, STATUSES, CallbackError, CallbackStore, check_ref, describe_due
from ivr.redact import mask_phone
from ivr.web.console import bp
from ivr.web.console.auth import audit, now, services, supervisor_only
from ivr.web.console.requests import _cell, local

LANGUAGES = {"en": "English", "es": "Spanish"}
RESULT_WORDS = {"no_answer": "no answer", "left_message": "left a message", "reached": "reached the caller"}
HOW_WORDS = {"caller ID": "the caller ID, confirmed", "keyed": "keyed by the caller"}


def store() -> CallbackStore:
    return services().callbacks


def _tried(cb: dict) -> str:
    attempts = int(cb.get("attempts") or 0)
    if not attempts:
        return "not tried"
    last = RESULT_WORDS.get(cb.get("last_result", ""), cb.get("last_result", ""))
    return f"{attempts}, last {last} {local(cb.get('last_attempt', ''))}"


def _why(cb: dict) -> str:
    return f"{cb.get('office') or 'agents'} ({SOURCE_WORDS.get(cb.get('source', ''), cb.get('source', ''))})"


def _row(cb: dict) -> dict:
    zone = services().hours.zone
    return {"ref": cb.get("ref", ""), "status": cb.get("status", "?"), "taken_by": cb.get("taken_by", ""),
            "due": describe_due(cb, zone), "created": local(cb.get("created", "")),
            "number": cb.get("number", ""), "lang": LANGUAGES.get(cb.get("lang", ""), cb.get("lang", "")),
            "why": _why(cb), "tried": _tried(cb),
            "message": bool(cb.get("recording_file") or cb.get("recording_url"))}


@bp.get("/callbacks")
def callbacks():
    status = request.args.get("status", "active")
    problems = []
    if status not in (*STATUSES, "active", "all"):
        problems.append(f"There is no status {status!r}: showing open and taken callbacks.")
        status = "active"
    wanted = {"active": OPEN_STATUSES, "all": STATUSES}.get(status, (status,))
    # listing() masks the number and drops the caller ID; it is oldest first (by the time asked).
    rows = [_row(cb) for cb in store().listing(wanted)]
    return render_template("console/callbacks.html", rows=rows, status=status, problems=problems,
                           statuses=("active", *STATUSES, "all"))


def _load(ref: str) -> tuple[str, dict]:
    try:
        ref = check_ref(ref)
    except CallbackError:
        abort(404)
    cb = store().get(ref)
    if cb is None:
        abort(404)
    return ref, cb


@bp.get("/callbacks/<ref>")
def callback(ref: str, revealed: bool = False):
    ref, cb = _load(ref)
    status = cb.get("status", "?")
    if cb.get("taken_by"):
        status += f", taken by {cb['taken_by']} {local(cb.get('taken_at', ''))}"
    if cb.get("done_by"):
        status += f", done by {cb['done_by']} {local(cb.get('done_at', ''))}"
    if cb.get("expired_at"):
        status += f", expired {local(cb['expired_at'])}"
    number = cb.get("number") or "?"
    caller = cb.get("caller") or "(withheld)"
    if not revealed:
        number = mask_phone(cb.get("number")) if cb.get("number") else "?"
        caller = mask_phone(cb.get("caller")) if cb.get("caller") else "(withheld)"
    if cb.get("recording_file"):
        message = "left (saved; play it from the server's data folder)"
    elif cb.get("recording_url"):
        message = "left, not downloaded yet (the worker fetches it)"
    else:
        message = "no message was left"
    facts = [
        ("Status", status),
        ("Due", describe_due(cb, services().hours.zone) or "?"),
        ("Asked", f"{local(cb.get('created', ''))} ({cb.get('requests', '1')} request(s))"),
        ("Language", LANGUAGES.get(cb.get("lang", ""), cb.get("lang", ""))),
        ("For", _why(cb)),
        ("Number from", HOW_WORDS.get(cb.get("number_how", ""), cb.get("number_how", "") or "?")),
        ("Attempts", _tried(cb)),
        ("Message", message),
    ]
    return render_template("console/callback.html", ref=ref, cb=cb, facts=facts, revealed=revealed,
                           numbers={"Number to call": number, "Caller ID": caller},
                           results=RESULT_WORDS, history=store().history(ref), local=local, form=FlaskForm())


@bp.post("/callbacks/<ref>/open")
def callback_open(ref: str):
    ref, _ = _load(ref)
    audit("opened the number of a callback", ref)
    return callback(ref, revealed=True)


def _change(ref: str, what: str):
    ref, _ = _load(ref)
    back = redirect(url_for("console.callback", ref=ref), code=303)
    detail = ref
    try:
        if what == "take":
            result = store().take(ref, g.staff.id)
        elif what == "done":
            result = store().done(ref, g.staff.id)
        else:
            outcome = request.form.get("result", "")
            if outcome not in RESULTS:
                flash("Choose what happened on the call: " + ", ".join(RESULT_WORDS.values()) + ".")
                return back
            result = store().attempt(ref, outcome, g.staff.id)
            detail = f"{ref}: {outcome}"
    except CallbackError as exc:
        flash(f"Callback {ref}: {exc}.")
        return back
    audit(f"callback {what}", detail)
    flash(f"Callback {ref}: {result}.")
    return back


@bp.post("/callbacks/<ref>/take")
def callback_take(ref: str):
    return _change(ref, "take")


@bp.post("/callbacks/<ref>/attempt")
def callback_attempt(ref: str):
    return _change(ref, "attempt")


@bp.post("/callbacks/<ref>/done")
def callback_done(ref: str):
    return _change(ref, "done")


@bp.get("/callbacks.csv")
@supervisor_only
def callbacks_export():
    status = request.args.get("status", "all")
    if status not in (*STATUSES, "all"):
        abort(404)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for ref in store().refs(STATUSES if status == "all" else (status,)):
        cb = store().get(ref)
        if cb is None:
            continue
        writer.writerow({k: _cell(v) for k, v in cb.items()})
        count += 1
    audit("exported callbacks (CSV)", f"{status}: {count}")
    stamp = now().strftime("%Y%m%d-%H%M")
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename=callbacks-{status}-{stamp}.csv", "Cache-Control": "no-store"})
