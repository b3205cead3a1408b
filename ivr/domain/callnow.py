"""Calling a parent back now, from the console (issue 18): Twilio rings the staff member's phone first and
only once they answer bridges the parent (ivr/web/callnow.py), so no parent hears a robot or silence.

Creating a call is not idempotent (Twilio's advice): a call is placed once per request, never retried, and
a request that got no answer is recorded as "may have been placed". One call at a time per callback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from ivr.domain.callbacks import OPEN_STATUSES, CallbackError, CallbackStore, NumberRefused, check_number, check_ref
from ivr.redact import mask_numbers, mask_phone

log = logging.getLogger("ivr.callbacks")

BRIDGE_PATH = "/callbacks/bridge"
CALLING = "ivr:cb:{ref}:calling"     # set while a call is being placed: a double click places one call
CALLING_TTL = 120
TWILIO_TIMEOUT_S = 15                # Twilio's answer to "create a call" is awaited this long, then "unknown"


def twilio_client(account_sid: str, auth_token: str) -> Client:
    """Twilio's REST client as calls are placed: a bounded wait, and no retry of its own (requests' adapter
    with max_retries=0), so one click is one request."""
    return Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=TWILIO_TIMEOUT_S, max_retries=0))


class CallNowError(CallbackError):
    """The call was not placed (or may not have been): the reason, for the person who asked."""


def call_now(store: CallbackStore, config: Mapping, ref: str, by: str, staff_phone: str, caller_id: str,
             client: Callable[[str, str], Client] = twilio_client, via: str = "the console") -> str:
    """Ring `staff_phone`; when the staff member answers, Twilio fetches the bridge (PUBLIC_BASE_URL +
    BRIDGE_PATH) which dials the parent from `caller_id` (the call center's number). Takes the callback for
    `by` if it was open. Returns the staff leg's CallSid; CallNowError when no call was placed. `via` names
    where it was asked for, in the callback's history."""
    ref, by = check_ref(ref), store.check_staff(by)
    base = (config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    if not base:
        raise CallNowError(f"calling from {via} needs PUBLIC_BASE_URL (Twilio fetches the bridge from it)")
    try:
        staff_phone = check_number(staff_phone)
    except NumberRefused as refused:
        raise CallNowError(f"your phone number is not one we can call ({refused.reason.replace('_', ' ')})") from None
    data = store.get(ref)
    if data is None:
        raise CallbackError(f"no callback {ref}")
    if data.get("status") not in OPEN_STATUSES:
        raise CallbackError(f"callback {ref} is {data.get('status')}")
    if data.get("status") == "taken" and data.get("taken_by") != by:
        raise CallbackError(f"callback {ref} is taken by {data.get('taken_by')}")
    lock = CALLING.format(ref=ref)
    if not store.redis.set(lock, by, nx=True, ex=CALLING_TTL):
        raise CallNowError(f"a call for callback {ref} is being placed already; wait a minute")
    try:
        if data.get("status") == "open":
            store.take(ref, by)      # refused if someone took it since it was read: no call, lock released
        call = client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"]).calls.create(
            to=staff_phone, from_=caller_id, url=f"{base}{BRIDGE_PATH}?ref={ref}", method="POST")
    except requests.RequestException as exc:
        # No answer: the call may have been placed. Not tried again, and the lock is kept for its minutes.
        reason = f"no answer from Twilio ({type(exc).__name__}): the call may have been placed; not tried again"
        store.note(ref, by, f"call from {via}: unknown", reason)
        raise CallNowError(reason) from exc
    except TwilioRestException as exc:
        store.redis.delete(lock)
        # Twilio's message may quote the number it refused (the staff member's): masked before it is kept.
        reason = f"Twilio refused the call: {exc.code or exc.status} {mask_numbers(exc.msg)}"[:300]
        store.note(ref, by, f"call from {via} not placed", reason)
        raise CallNowError(reason) from exc
    except BaseException:
        store.redis.delete(lock)     # nothing was placed: the next click may try
        raise
    store.note(ref, by, f"call placed from {via}", f"your phone first ({mask_phone(staff_phone)}), "
               f"then the parent; call ...{(call.sid or '')[-6:]}")
    log.info("callback %s: call placed by %s", ref, by)
    return call.sid or ""
