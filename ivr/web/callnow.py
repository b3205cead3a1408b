"""POST /callbacks/bridge: Twilio's request once a staff member answered a call placed from the console
(ivr/domain/callnow.py): tell them which callback it is, then dial the parent from the call center's number."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, current_app, request
from twilio.twiml.voice_response import VoiceResponse

from ivr.callflow.speech import say_digits
from ivr.domain.callbacks import OPEN_STATUSES
from ivr.domain.workitems import REF_RE
from ivr.web.signature import signed
from ivr.web.webhooks import twiml

bp = Blueprint("callnow", __name__)
log = logging.getLogger("ivr.callbacks")


@bp.post("/callbacks/bridge")
@signed
def bridge():
    rt = current_app.extensions["ivr"]
    voice = rt.lines_cfg["voices"][rt.prompts.default]
    response = VoiceResponse()
    ref = request.args.get("ref", "")
    data = None
    if REF_RE.match(ref):
        try:
            data = rt.services.callbacks.get(ref)
        except redis.RedisError as exc:
            log.error("Redis unavailable on the callback bridge: %s", exc)
    if data is None or data.get("status") not in OPEN_STATUSES or not data.get("number"):
        response.say("This call back is no longer open. Goodbye.", **voice)
        response.hangup()
        return twiml(response)
    # Staff hear the reference; the parent only ever hears the staff member.
    response.say(f"Call back {say_digits(ref)}. Connecting you to the caller now.", **voice)
    dial = response.dial(caller_id=rt.lines_cfg["callback_number"], timeout=rt.lines_cfg["dial"]["timeout"])
    dial.number(data["number"])
    return twiml(response)
