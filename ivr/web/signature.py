"""Twilio request signatures: every webhook but /health must prove it comes from Twilio, for our account."""

from __future__ import annotations

import hmac
import logging
import re
import threading
from functools import wraps
from time import monotonic
from typing import NoReturn

from flask import Flask, abort, current_app, request
from twilio.request_validator import RequestValidator

from ivr.redact import printable

log = logging.getLogger("ivr.signature")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
CALL_SID = re.compile(r"CA[0-9a-f]{32}")


def public_base() -> str:
    """Scheme and host Twilio calls: PUBLIC_BASE_URL behind a TLS proxy, else what Flask sees."""
    # Not request.host_url: it converts the host to an IRI on every request (~4% of a webhook's CPU,
    # bench/RESULTS.md), and a punycode host must stay as Twilio signed it anyway.
    return current_app.config["PUBLIC_BASE_URL"] or f"{request.scheme}://{request.host}"


def public_url() -> str:
    """The URL Twilio signed."""
    query = request.query_string.decode()   # as sent: request.url would decode "%24" to "$"
    base = public_base() + ("" if current_app.config["PUBLIC_BASE_URL"] else request.root_path)
    return base + request.path + (f"?{query}" if query else "")


class Rejections:
    """Rejected requests, logged at most once a minute per kind in this process, with how many were not:
    a wrong PUBLIC_BASE_URL or auth token shows within a minute, a flood of forgeries floods nothing."""

    EVERY = 60.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: dict[str, float] = {}
        self.held: dict[str, int] = {}

    def reject(self, kind: str, reason: str) -> NoReturn:
        now = monotonic()
        with self.lock:
            last = self.last.get(kind)
            if last is not None and now - last < self.EVERY:
                self.held[kind] = self.held.get(kind, 0) + 1
                held = None
            else:
                self.last[kind], held = now, self.held.pop(kind, 0)
        if held is not None:
            more = f" ({held} more like it since the last such line)" if held else ""
            log.warning("rejected %s %s: %s%s", request.method, printable(request.path, 100), reason, more)
        abort(403)


def install(app: Flask) -> None:
    app.extensions["ivr.rejections"] = Rejections()
    app.before_request(refuse_unsigned)


def refuse_unsigned() -> None:
    """A webhook request without a signature is refused before anything of its body is read."""
    req = request._get_current_object()
    if req.environ.get("HTTP_X_TWILIO_SIGNATURE") or req.endpoint is None:
        return                        # the usual case first: one dict lookup
    view = current_app.view_functions.get(req.endpoint)
    if getattr(view, "twilio_signed", False) and current_app.config["VALIDATE_SIGNATURES"]:
        _rejections().reject("missing", "no X-Twilio-Signature")


def _rejections() -> Rejections:
    return current_app.extensions["ivr.rejections"]


def _valid(url: str, signature: str) -> bool:
    config = current_app.config
    validators = [RequestValidator(token) for token in (config["TWILIO_AUTH_TOKEN"],
                                                        config.get("TWILIO_AUTH_TOKEN_PREVIOUS")) if token]
    # The URL as Twilio gave it, with the current token, matches almost always: one HMAC. `validate`
    # (the URL with and without a port, two HMACs and a pure-Python compare) only when it does not; the
    # previous token (IVR_TWILIO_AUTH_TOKEN_PREVIOUS) during a rotation.
    # Twilio's own algorithm, fed the form as `getall` lists: a Werkzeug MultiDict has no `getall`, and
    # the validator's fallback costs an exception per field (30 -> 17 us a webhook, bench/RESULTS.md).
    params = FieldLists(request.form.lists())
    for validator in validators:
        if hmac.compare_digest(validator.compute_signature(url, params).encode(), signature.encode()):
            return True
    return any(validator.validate(url, params, signature) for validator in validators)


class FieldLists(dict):
    """A form as name -> list of values, read the way twilio's RequestValidator reads a multi-dict."""
    getall = dict.__getitem__


def _names_our_call() -> bool:
    """AccountSid is ours and CallSid (when there is one) a call SID. Twilio signs names and values run
    together, so a signed request can be re-cut (`CallSid=CA..&CallStatus=x` into `CallSid=CA..CallStatusx`,
    an AccountSid swallowing the CallSid after it): such a cut never leaves both SIDs well-formed."""
    accounts, calls = request.form.getlist("AccountSid"), request.form.getlist("CallSid")
    ours = current_app.config["TWILIO_ACCOUNT_SID"]
    if len(accounts) != 1 or not ACCOUNT_SID.fullmatch(accounts[0]) or (ours and accounts[0] != ours):
        return False
    # No CallSid at all: the view answers with the fallback, as before.
    return len(calls) <= 1 and (not calls or not calls[0] or CALL_SID.fullmatch(calls[0]) is not None)


def signed(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        if current_app.config["VALIDATE_SIGNATURES"]:
            signature = request.headers.get("X-Twilio-Signature", "")
            if not signature:
                _rejections().reject("missing", "no X-Twilio-Signature")
            url = public_url()
            if not _valid(url, signature):
                _rejections().reject("mismatch", f"its Twilio signature does not match {printable(url, 300)} "
                                     "(is PUBLIC_BASE_URL the origin Twilio calls, TWILIO_AUTH_TOKEN its token?)")
            if not _names_our_call():
                _rejections().reject("account", "signed, but AccountSid {} or CallSid {} is not a call of "
                                     "TWILIO_ACCOUNT_SID".format(printable(request.form.get("AccountSid"), 40),
                                                                 printable(request.form.get("CallSid"), 40)))
        return view(*args, **kwargs)
    wrapper.twilio_signed = True
    return wrapper
