"""Request body limits: how many bytes and form fields a route takes, checked before anything is parsed.

Every route gets IVR_MAX_WEBHOOK_BYTES and IVR_MAX_WEBHOOK_FIELDS (settings.py); a route that takes
files (a console audio upload) gets its own with `@body_limit(...)`, on that route only. Werkzeug
(3.1) enforces the byte limit itself (`request.max_content_length`: a larger Content-Length is
refused unread) but, for url-encoded forms, silently parses the first `max_content_length` bytes of a
longer chunked body, and counts fields only in multipart bodies (`max_form_parts`): a url-encoded body
of 200,000 fields costs seconds to parse and sign-check. So a url-encoded body is read here first (at
most the limit), refused if it was cut off or has too many fields, and parsed only after that.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, abort, current_app, request

URLENCODED = "application/x-www-form-urlencoded"


def body_limit(max_bytes: int, max_fields: int | None = None) -> Callable:
    """This route's own limits instead of the webhooks' (put it under the route decorator):

        @bp.post("/console/audio")
        @body_limit(max_bytes=20 * 2**20, max_fields=10)
        def upload(): ...

    `max_fields` None keeps IVR_MAX_WEBHOOK_FIELDS."""
    def mark(view: Callable) -> Callable:
        view.body_limit = (max_bytes, max_fields)
        return view
    return mark


def install(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = app.config["MAX_WEBHOOK_BYTES"]
    app.config["MAX_FORM_PARTS"] = app.config["MAX_WEBHOOK_FIELDS"]
    app.before_request(check_body)


def check_body() -> None:
    """Set this route's limits on the request, and refuse (413) a url-encoded body with more fields
    than they allow, having read at most `max_content_length` bytes of it and parsed none."""
    req = request._get_current_object()      # once, not through the proxy on each use (~7 us a webhook)
    view = current_app.view_functions.get(req.endpoint) if req.endpoint else None
    if view is None:
        return                        # not found / not allowed: nothing reads the body
    limits = getattr(view, "body_limit", None)
    if limits is not None:
        req.max_content_length = limits[0]
        if limits[1] is not None:
            req.max_form_parts = limits[1]
    if req.mimetype != URLENCODED:
        return                        # multipart: Werkzeug counts its parts and cuts it off itself
    body = req.get_data(cache=True)   # kept: the form is parsed from these bytes, not read again
    limit = req.max_content_length
    if req.content_length is None and limit is not None and len(body) >= limit:
        abort(413)                    # chunked, and cut off at the limit (Werkzeug would parse the cut-off part)
    fields = req.max_form_parts
    if fields is not None and body.count(b"&") >= fields:
        abort(413)
