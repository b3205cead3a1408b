"""The texting webhooks Twilio calls: POST /sms (a reply to our messaging number: STOP and START are
recorded) and POST /sms/status (what became of a text we sent). Both signed as /voice is."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, Response, current_app, request

from ivr.domain.directory import ANONYMOUS, caller_id
from ivr.domain.texts import keyword, text_status
from ivr.redact import mask_phone, printable
from ivr.web.signature import signed

bp = Blueprint("sms", __name__)
log = logging.getLogger("ivr.texts")
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _services():
    return current_app.extensions["ivr"].services


@bp.post("/sms")
@signed
def inbound():
    """STOP (and Twilio's other opt-out words) means no text is ever sent to that number again, until it
    sends START. Twilio itself answers those words; we answer nothing."""
    number = caller_id(request.form.get("From", "")[:40])
    word = keyword(request.form.get("Body", "")[:200])
    if word and number != ANONYMOUS:
        try:
            _services().texts.opt(number, word)
        except redis.RedisError as exc:
            log.error("Redis unavailable: the %s from %s was not recorded: %s", word.upper(), mask_phone(number), exc)
            return Response(EMPTY, status=503, mimetype="text/xml")    # Twilio tries the webhook again
        log.info("texts: %s from %s", word.upper(), mask_phone(number))
    return Response(EMPTY, mimetype="text/xml")


@bp.post("/sms/status")
@signed
def status():
    services = _services()
    sid = request.form.get("MessageSid", "")[:64]
    try:
        text_status(services.texts, services.callbacks, sid, printable(request.form.get("MessageStatus", ""), 20),
                    printable(request.form.get("ErrorCode", ""), 10))
    except redis.RedisError as exc:
        log.error("Redis unavailable on /sms/status: %s", exc)
        return "", 503
    return "", 204
