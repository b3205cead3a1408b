"""Twilio request signatures: every webhook but /health must prove it comes from Twilio, for our account."""

from __future__ import annotations

import hmac
import re
from functools import wraps

from flask import Flask, abort, current_app, request
from twilio.request_validator import RequestValidator

from .redact import printable

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


def install(app: Flask) -> None:
    app.before_request(refuse_unsigned)


def refuse_unsigned() -> None:
    """A webhook request without a signature is refused before anything of its body is read."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if getattr(view, "twilio_signed", False) and current_app.config["VALIDATE_SIGNATURES"] \
            and not request.headers.get("X-Twilio-Signature"):
        _reject()


def _reject() -> None:
    current_app.logger.warning("rejected %s %s: bad or missing Twilio signature", request.method,
                               printable(request.path, 100))
    abort(403)


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
            validator = RequestValidator(current_app.config["TWILIO_AUTH_TOKEN"])
            signature = request.headers.get("X-Twilio-Signature", "")
            url = public_url()
            # The URL as Twilio gave it matches almost always: one HMAC. `validate` (the URL with and
            # without a port, two HMACs and a pure-Python compare) only when it does not.
            fast = signature and hmac.compare_digest(
                validator.compute_signature(url, request.form).encode(), signature.encode())
            if not fast and (not signature or not validator.validate(url, request.form, signature)):
                _reject()
            if not _names_our_call():
                _reject()
        return view(*args, **kwargs)
    wrapper.twilio_signed = True
    return wrapper
