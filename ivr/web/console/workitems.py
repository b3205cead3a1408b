"""What the console's request and callback pages share: loading one, the status filter, its message, the CSV.

Both kinds of staff work item (ivr/domain/workitems.py) play the caller's message through a link made for
this session and this item only (signed, expiring: no URL names a file, none can be guessed or reused
elsewhere), and export as CSV for supervisors with no cell a spreadsheet would run as a formula. Their
pages share the partial template console/_workitem.html. No routes here: requests.py and callbacks.py
have them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flask import Response, abort, current_app, request, send_file, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ivr.domain import workitems
from ivr.domain.workitems import OPEN_STATUSES, WorkItemStore
from ivr.web.console.auth import audit, now, services, session_id

MESSAGE_LINK_SECONDS = 3600
AUDIO_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav"}


def local(stamp: str) -> str:
    """A stored time in the call center's zone, to the minute."""
    return workitems.local(stamp, services().hours.zone)


def load(store: WorkItemStore, ref: str, gone: Callable[[str], str] = lambda ref: "") -> tuple[str, dict]:
    """The item a URL names: 404 for a malformed or unknown reference, 410 where `gone(ref)` says why."""
    try:
        ref = store.check_ref(ref)
    except store.Error:
        abort(404)
    item = store.get(ref)
    if item is None and (why := gone(ref)):
        abort(410, description=why)
    if item is None:
        abort(404)
    return ref, item


def status_filter(statuses: Sequence[str], plural: str) -> tuple[str, Sequence[str], list[str]]:
    """A queue page's `?status=`: (the status, the statuses it shows, what is wrong with what was asked)."""
    status = request.args.get("status", "active")
    problems = []
    if status not in (*statuses, "active", "all"):
        problems.append(f"There is no status {status!r}: showing open and taken {plural}.")
        status = "active"
    return status, {"active": OPEN_STATUSES, "all": statuses}.get(status, (status,)), problems


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=salt)


def message_link(endpoint: str, salt: str, ref: str) -> str:
    """A link to item `ref`'s message for this session only (`endpoint` plays it; `salt` names its kind)."""
    return url_for(endpoint, token=_serializer(salt).dumps({"r": ref, "s": session_id()}))


def play(token: str, salt: str, find: Callable[[str], tuple[str, Path | None]], noun: str) -> Response:
    """The message of a link from `message_link`, for the session it was made for (an hour at most):
    `find(ref)` gives the reference and the message file (None: none to play, 404)."""
    try:
        data = _serializer(salt).loads(token, max_age=MESSAGE_LINK_SECONDS)
    except BadSignature:
        abort(404)
    if not isinstance(data, dict) or data.get("s") != session_id():
        abort(404)
    ref, path = find(str(data.get("r", "")))
    if path is None:
        abort(404)
    audit(f"played the message of a {noun}", ref)
    response = send_file(path, mimetype=AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                         conditional=True, max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response


def export(store: WorkItemStore, fields: Sequence[str], plural: str,
           row: Callable[[dict], Mapping[str, str]] = lambda item: item) -> Response:
    """`?status=` of them as a CSV download (`row`: an item as exported), the export in the audit log."""
    status = request.args.get("status", "all")
    if status not in (*store.STATUSES, "all"):
        abort(404)
    out = io.StringIO()
    count = workitems.write_csv(out, fields, (row(item) for _, item in
                                              store.items(store.STATUSES if status == "all" else (status,))))
    audit(f"exported {plural} (CSV)", f"{status}: {count}")
    stamp = now().strftime("%Y%m%d-%H%M")
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f"attachment; filename={plural}-{status}-{stamp}.csv", "Cache-Control": "no-store"})
