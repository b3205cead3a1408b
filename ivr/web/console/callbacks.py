"""Console pages for the callbacks callers ask for (issue 18): the queue oldest first, one callback, its
message, take / attempt / done / "call now" by the signed-in staff member, and the CSV export (supervisors).

Modelled on the requests pages (requests.py; what they share is in workitems.py): the number to call is
shown masked until a staff member opens it on the callback's page, each opening written to the audit log,
and so is every change. The caller's message plays through a link made for this session and this
callback only (signed, expiring).
The store's own rules decide who may do what (a callback taken by someone else is theirs to close); a
refusal is a message on the page.

"Call now" (ivr/domain/callnow.py) asks Twilio to ring the staff member's own phone, then bridges the
parent: one request to Twilio per click, never retried; a second click while a call is being placed
places none. The staff member's number goes to Twilio only: not into the audit log, the history or a URL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import TelField
from wtforms.validators import DataRequired, ValidationError

from ivr.cli.callbacks import CSV_FIELDS, SOURCE_WORDS
from ivr.domain.callbacks import (
    RESULTS,
    STATUSES,
    CallbackError,
    CallbackStore,
    NumberRefused,
    check_number,
    closed_at,
    describe_due,
)
from ivr.domain.callnow import CallNowError, call_now
from ivr.redact import mask_phone
from ivr.web.console import bp, workitems
from ivr.web.console.auth import audit, services, supervisor_only
from ivr.web.console.workitems import local

LANGUAGES = {"en": "English", "es": "Spanish"}
RESULT_WORDS = {"no_answer": "no answer", "left_message": "left a message", "reached": "reached the caller"}
HOW_WORDS = {"caller ID": "the caller ID, confirmed", "keyed": "keyed by the caller"}
PHONE_REFUSED = {
    "invalid": "That is not a US phone number we can call: give the 10 digits of the phone you are at.",
    "premium": "That is a premium-rate number (900 or 976): give the phone you are at.",
    "n11": "That is a service code such as 411 or 911: give the phone you are at.",
    "toll_free": "A toll-free number cannot be called from here: give your direct or mobile number.",
}
CALLED = "Your phone will ring; answer and you will be connected to the parent."
SALT = "console callback message"


class CallNowForm(FlaskForm):
    phone = TelField("Your phone number (we ring it first)",
                     validators=[DataRequired("Enter the number of the phone you are at.")])

    def validate_phone(self, field) -> None:
        try:
            field.data = check_number(field.data)
        except NumberRefused as refused:
            raise ValidationError(PHONE_REFUSED.get(refused.reason, PHONE_REFUSED["invalid"])) from None


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
    status, wanted, problems = workitems.status_filter(STATUSES, "callbacks")
    # listing() masks the number and drops the caller ID; it is oldest first (by the time asked).
    rows = [_row(cb) for cb in store().listing(wanted)]
    return render_template("console/callbacks.html", rows=rows, status=status, problems=problems,
                           statuses=("active", *STATUSES, "all"))


def _load(ref: str) -> tuple[str, dict]:
    return workitems.load(store(), ref, _gone)


def _gone(ref: str) -> str:
    purged = store().purged_at(ref)
    return f"Callback {ref} was deleted {local(purged)} at the end of its retention period." if purged else ""


def _retention(cb: dict) -> str:
    """When retention deletes this callback (ivr/jobs/retention.py)."""
    keep = int(current_app.config["RETAIN_CALLBACKS_DAYS"])
    closed = closed_at(cb)
    if closed is None:
        return f"kept while open or taken; deleted {keep} days after it is done or expired"
    return f"deleted after {local((closed + timedelta(days=keep)).isoformat())} ({keep} days after it was closed)"


def _message_file(ref: str, cb: dict) -> Path | None:
    """The callback's message as the worker saved it ($IVR_DATA_DIR/callbacks/REF/...), if it is there."""
    if not cb.get("recording_file"):
        return None
    folder = (Path(current_app.config["DATA_DIR"]) / "callbacks").resolve()
    try:
        path = Path(cb["recording_file"]).resolve()
    except OSError:
        return None
    if path.parent.name != ref or folder not in path.parents or not path.is_file():
        return None
    return path


@bp.get("/callbacks/<ref>")
def callback(ref: str, revealed: bool = False, call_form: CallNowForm | None = None, call_error: str = ""):
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
    message_link = None
    if cb.get("recording_file"):
        if _message_file(ref, cb) is not None:
            message = "left"
            message_link = workitems.message_link("console.callback_message", SALT, ref)
        else:
            message = "left, but its file is missing from the server's data folder"
    elif cb.get("recording_deleted"):
        message = f"deleted {local(cb['recording_deleted'])} at the end of its retention period"
    elif cb.get("recording_error"):
        message = f"left, download failed: {cb['recording_error']}"
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
        ("Retention", _retention(cb)),
    ]
    return render_template("console/callback.html", ref=ref, cb=cb, facts=facts, revealed=revealed,
                           numbers={"Number to call": number, "Caller ID": caller},
                           results=RESULT_WORDS, history=store().history(ref), local=local, form=FlaskForm(),
                           message=message, message_link=message_link,
                           call_form=call_form or CallNowForm(formdata=None), call_error=call_error,
                           can_call=bool(current_app.config.get("PUBLIC_BASE_URL")))


@bp.get("/callbacks/messages/<token>")
def callback_message(token: str):
    """A callback's message, for the session the link was made for (signed, an hour at most)."""
    def find(ref: str) -> tuple[str, Path | None]:
        ref, cb = _load(ref)
        return ref, _message_file(ref, cb)
    return workitems.play(token, SALT, find, "callback")


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


@bp.post("/callbacks/<ref>/call")
def callback_call(ref: str):
    """Call now: ring the signed-in staff member's phone, then the parent. A refusal (the number, the
    callback taken by someone else, Twilio's answer) shows next to the form; nothing is retried."""
    ref, _ = _load(ref)
    form = CallNowForm()
    if not form.validate():
        return callback(ref, call_form=form), 400
    rt = current_app.extensions["ivr"]
    try:
        sid = call_now(store(), current_app.config, ref, g.staff.id, form.phone.data, rt.lines_cfg["callback_number"])
    except CallNowError as exc:         # the number, Twilio's answer, a call already being placed
        audit("callback call not placed", f"{ref}: {exc}")
        reason = str(exc)
        return callback(ref, call_form=form, call_error=reason[:1].upper() + reason[1:] + "."), 409
    except CallbackError as exc:        # not this staff member's to call (taken by someone else, done...)
        audit("callback call not placed", f"{ref}: {exc}")
        flash(f"Callback {ref}: {exc}. No call was placed.")
        return redirect(url_for("console.callback", ref=ref), code=303)
    audit("callback call placed", f"{ref}: call ...{sid[-6:]}")
    flash(CALLED)
    return redirect(url_for("console.callback", ref=ref), code=303)


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
    return workitems.export(store(), CSV_FIELDS, "callbacks")
