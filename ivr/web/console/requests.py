"""Console pages for the inmate modification requests: the queue, one request, its message, take / done /
note, legal hold, and the CSV export (supervisors).

Numbers (inmate, case, caller ID) are shown masked until a staff member opens them on a request's page,
each opening written to the audit log. A message is played through a link made for this session and
this request only (workitems.py, shared with the callback pages).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from ivr.cli.requests import CSV_FIELDS, STAGE_WORDS, WHO_WORDS, csv_row, hold_text, retention_text, twilio_copy
from ivr.domain.notice import NOTICE_BUSINESS_DAYS, business_days_left, due_date
from ivr.domain.requests import NOTE_MAX, REASON_MAX, STATUSES, RequestError
from ivr.redact import mask_digits, mask_phone
from ivr.web.console import bp, workitems
from ivr.web.console.auth import audit, now, services, supervisor_only
from ivr.web.console.workitems import local

SORTS = {"due": "business days left", "newest": "newest first", "oldest": "oldest first"}
SALT = "console request message"


class NoteForm(FlaskForm):
    text = TextAreaField("Note", validators=[DataRequired("Write the note first."),
                                             Length(max=NOTE_MAX, message=f"A note is at most {NOTE_MAX} characters.")])


class HoldForm(FlaskForm):
    reason = StringField("Reason (a case or subpoena number)",
                         validators=[Length(max=REASON_MAX, message=f"At most {REASON_MAX} characters.")])


def store():
    return services().requests


def _created(req: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(req.get("created", ""))
    except ValueError:
        return None


def facility_name(fid: str) -> str:
    facility = services().facilities.by_id.get(fid) if fid else None
    return facility.short if facility else (fid or "not given")


def notice(req: dict) -> tuple[int | None, str]:
    """(business days left of the federal notice, its due date), None for a done request."""
    created = _created(req)
    if created is None:
        return None, "?"
    hours = services().hours
    due = due_date(created.astimezone(hours.zone).date(), hours).isoformat()
    if req.get("status") == "done":
        return None, due
    return business_days_left(created, now().date(), hours), due


def _row(ref: str, req: dict) -> dict:
    left, due = notice(req)
    return {"ref": ref, "status": req.get("status", "?"), "created": local(req.get("created", "")),
            "created_sort": req.get("created", ""), "taken_by": req.get("taken_by", ""),
            "inmate": mask_digits(req.get("inmate")), "facility": facility_name(req.get("facility", "")),
            "message": bool(req.get("recording_file")), "complete": req.get("complete") == "1",
            "left": left, "due": due, "hold": bool(req.get("hold_at"))}


@bp.get("/requests")
def queue():
    status, wanted, problems = workitems.status_filter(STATUSES, "requests")
    sort = request.args.get("sort", "due")
    if sort not in SORTS:
        problems.append(f"There is no sort {sort!r}: sorted by business days left.")
        sort = "due"
    rows = [_row(ref, req) for ref, req in store().items(wanted)]
    if sort == "due":
        rows.sort(key=lambda r: (r["left"] is None, r["left"] if r["left"] is not None else 0, r["created_sort"]))
    else:
        rows.sort(key=lambda r: r["created_sort"], reverse=sort == "newest")
    return render_template("console/requests.html", rows=rows, status=status, sort=sort, sorts=SORTS,
                           statuses=("active", *STATUSES, "all"), problems=problems,
                           notice_days=NOTICE_BUSINESS_DAYS, form=FlaskForm())


def _load(ref: str) -> tuple[str, dict]:
    return workitems.load(store(), ref)


@bp.get("/requests/<ref>")
def detail(ref: str, revealed: bool = False, note_form: NoteForm | None = None):
    ref, req = _load(ref)
    left, due = notice(req)
    if req.get("recording_file"):
        message = "file"
    elif req.get("recording_deleted"):
        message = f"deleted {local(req['recording_deleted'])} at the end of its retention period"
    elif req.get("recording_url"):
        message = (f"download failed: {req['recording_error']}" if req.get("recording_error")
                   else "not downloaded yet (the worker fetches it)")
    else:
        message = "no message was left"
    numbers = {
        "Inmate number": req.get("inmate") or "(not given)",
        "Case/docket number": req.get("case") or "(not given)",
        "Caller ID": req.get("caller") or "(withheld)",
    }
    if not revealed:
        numbers = {"Inmate number": mask_digits(req.get("inmate")) if req.get("inmate") else "(not given)",
                   "Case/docket number": mask_digits(req.get("case")) if req.get("case") else "(not given)",
                   "Caller ID": mask_phone(req.get("caller")) if req.get("caller") else "(withheld)"}
    facts = [
        ("Status", req.get("status", "?") + (f", taken by {req['taken_by']}" if req.get("taken_by") else "")
         + (f", done by {req['done_by']} {local(req.get('done_at', ''))}" if req.get("done_by") else "")),
        ("Created", local(req.get("created", ""))),
        ("Federal notice due", f"{due} ({left} business days left)" if left is not None else due),
        ("Complete", "yes" if req.get("complete") == "1" else
         f"no (call ended {STAGE_WORDS.get(req.get('stage', ''), 'early')})"),
        ("Who called", WHO_WORDS.get(req.get("who_called", ""), "(not asked)")),
        ("Language", req.get("lang", "")),
        ("Facility", facility_name(req.get("facility", ""))),
        ("Legal hold", hold_text(req, services().staffdb)),
        ("Retention", retention_text(req, current_app.config)),
    ]
    if req.get("recording_url"):
        facts.append(("Twilio's copy", twilio_copy(req)))
    return render_template("console/request.html", ref=ref, req=req, facts=facts, numbers=numbers,
                           revealed=revealed, message=message,
                           message_link=workitems.message_link("console.message", SALT, ref) if message == "file"
                           else None,
                           history=store().history(ref), local=local, form=FlaskForm(),
                           note_form=note_form or NoteForm(), hold_form=HoldForm())


@bp.post("/requests/<ref>/open")
def reveal(ref: str):
    ref, _ = _load(ref)
    audit("opened the numbers of a request", ref)
    return detail(ref, revealed=True)


@bp.get("/messages/<token>")
def message(token: str):
    """A request's message, for the session the link was made for (signed, an hour at most)."""
    return workitems.play(token, SALT, _message_file, "request")


def _message_file(ref: str) -> tuple[str, Path | None]:
    """The request's message as the worker saved it ($IVR_DATA_DIR/requests/...), if it is there."""
    ref, req = _load(ref)
    folder = (Path(current_app.config["DATA_DIR"]) / "requests").resolve()
    try:
        path = Path(req.get("recording_file") or "").resolve()
    except OSError:
        return ref, None
    if not req.get("recording_file") or folder not in path.parents or not path.is_file():
        return ref, None
    return ref, path


def _change(ref: str, what: str):
    ref, _ = _load(ref)
    try:
        if what == "take":
            result = store().take(ref, g.staff.id)
        elif what == "done":
            result = store().done(ref, g.staff.id)
        elif what == "release":
            result = store().release(ref, g.staff.id)
        else:
            form = HoldForm()
            if not form.validate():
                flash(" ".join(form.reason.errors))
                return redirect(url_for("console.detail", ref=ref), code=303)
            result = store().hold(ref, g.staff.id, form.reason.data or "")
    except RequestError as exc:
        flash(str(exc))
        return redirect(url_for("console.detail", ref=ref), code=303)
    audit(f"request {what}", ref)
    flash(f"Request {ref}: {result}.")
    return redirect(url_for("console.detail", ref=ref), code=303)


@bp.post("/requests/<ref>/take")
def take(ref: str):
    return _change(ref, "take")


@bp.post("/requests/<ref>/done")
def done(ref: str):
    return _change(ref, "done")


@bp.post("/requests/<ref>/hold")
@supervisor_only
def hold(ref: str):
    return _change(ref, "hold")


@bp.post("/requests/<ref>/release")
@supervisor_only
def release(ref: str):
    return _change(ref, "release")


@bp.post("/requests/<ref>/note")
def note(ref: str):
    ref, _ = _load(ref)
    form = NoteForm()
    if not form.validate():
        return detail(ref, note_form=form), 400
    try:
        store().note(ref, g.staff.id, form.text.data)
    except RequestError as exc:
        form.text.errors = [str(exc)]
        return detail(ref, note_form=form), 400
    audit("request note", ref)
    flash(f"Note added to request {ref}.")
    return redirect(url_for("console.detail", ref=ref), code=303)


@bp.get("/requests.csv")
@supervisor_only
def export():
    return workitems.export(store(), CSV_FIELDS, "requests", csv_row)
