"""The webhooks Twilio calls (docs/interface.md): /voice, /voice/step, /voice/status, /voice/fallback, /health."""

from __future__ import annotations

import hashlib
import logging
import time
import xml.etree.ElementTree as ET
from functools import lru_cache, wraps

import phonenumbers
import redis
from flask import Blueprint, Response, current_app, jsonify, request
from twilio.twiml.voice_response import VoiceResponse

from ivr import store
from ivr.callflow import calllog
from ivr.callflow.callstate import CallState
from ivr.callflow.engine import Turn
from ivr.redact import mask_phone, printable
from ivr.web import metrics
from ivr.web.signature import signed

bp = Blueprint("voice", __name__)
log = logging.getLogger("ivr.calls")


def twiml(response: VoiceResponse | str) -> Response:
    return Response(render(response) if isinstance(response, VoiceResponse) else response, mimetype="text/xml")


def render(response: VoiceResponse) -> str:
    """The TwiML document, as `str(response)` writes it: the same element tree, serialised to text rather
    than through a UTF-8 byte stream (a quarter of TwiML's cost, bench/RESULTS.md)."""
    return XML_DECLARATION + ET.tostring(response.xml(), encoding="unicode")


XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def runtime():
    return current_app.extensions["ivr"]


def line_for(to: str) -> str:
    rt = runtime()
    return rt.numbers.get(_e164(to), rt.lines_cfg["default_line"])


@lru_cache(maxsize=64)
def _e164(number: str) -> str:
    # "To" is one of a handful of our own numbers: parse each once (~2% of a webhook's CPU).
    try:
        return phonenumbers.format_number(phonenumbers.parse(number, "US"), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return ""


def _step_url(seq: int) -> str:
    # What url_for("voice.step", s=seq) builds, without its ~2% of a webhook's CPU (bench/RESULTS.md).
    return f"{request.script_root}/voice/step?s={seq}"


RETRY_HEADER = "I-Twilio-Idempotency-Token"


def retry_digest(ended: bool) -> str:
    """What a call's state keeps of this request's idempotency token ("" without one). Bound to whether
    the call had ended: an answer given before the end is never replayed after it (as with step numbers),
    while a hung-up <Record>'s late action, answered after the end, is replayed to Twilio's retry."""
    token = request.headers.get(RETRY_HEADER)
    if not token:
        return ""
    return hashlib.blake2b(f"{int(ended)}:{token}".encode(), digest_size=8).hexdigest()


def _retried(rt, state: CallState | None) -> str | None:
    """The answer already given to this very request, when Twilio retries it (the same token): sent
    again, and nothing changed. No Redis round trip: the token came with the call's state."""
    if state is None or not state.token or state.token != retry_digest(state.ended):
        return None
    return state.replay(rt.sealer)


def _load(rt, sid: str) -> tuple[CallState | None, Response | None]:
    """The call's state (None if it has none) in one round trip, or the fallback answer to give instead."""
    if not sid:
        return None, twiml(rt.fallback_response())
    try:
        state, extra = rt.store.load(sid, rt.extra_keys)
    except redis.RedisError as exc:
        metrics.REDIS_ERRORS.labels("load").inc()
        log.error("Redis unavailable on %s: %s", request.path, exc)
        return None, twiml(rt.fallback_response())
    rt.refresh(extra)
    return state, None


def timed(kind: str):
    """The webhook's latency, in /metrics' histogram for `kind` (signature checks included)."""
    histogram = metrics.WEBHOOK_SECONDS.labels(kind)

    def wrap(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return view(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)
        return wrapper
    return wrap


@bp.post("/voice")
@timed("voice")
@signed
def voice():
    rt = runtime()
    sid = request.form.get("CallSid", "")[:64]
    state, failed = _load(rt, sid)
    if failed:
        return failed
    replay = _retried(rt, state)
    if replay is None and state is not None and state.seq == 1 and not state.ended:
        replay = state.replay(rt.sealer)
    if replay:
        return twiml(replay)  # Twilio retried the first request of this call
    line = line_for(request.form.get("To", ""))
    state = CallState(sid=sid, line=line, lang=rt.prompts.default, new=True)
    log.info("call %s on %s from %s", printable(sid[-6:]), line, mask_phone(request.form.get("From")))
    return _answer(rt, state, rt.engine.start)


@bp.post("/voice/step")
@timed("step")
@signed
def step():
    rt = runtime()
    sid = request.form.get("CallSid", "")[:64]
    seq = request.args.get("s", type=int)
    state, failed = _load(rt, sid)
    if failed:
        return failed
    replay = _retried(rt, state)
    if replay:
        return twiml(replay)  # Twilio retried this request (its idempotency token): the same answer
    if state is not None and not rt.engine.can_continue(state):
        state = None  # a line or language this tree does not have (tampered with, an old deploy): lost
    if state is not None and state.ended and not rt.engine.takes_after_end(state, seq):
        state = None  # after the end no replays
    if state is None:
        # Expired, flushed or never stored: say so, and start the caller's line again.
        state = CallState(sid=sid, line=line_for(request.form.get("To", "")), lang=rt.prompts.default, new=True)

        def lost(turn):
            turn.note("lost")
            turn.say("sys.state_lost")
            return rt.engine.start(turn)
        return _answer(rt, state, lost)
    replay = state.replay(rt.sealer) if seq is not None and seq == state.seq - 1 else None
    if replay:
        return twiml(replay)  # a retry of a step already answered: change nothing twice
    if seq != state.seq:
        return _answer(rt, state, rt.engine.repeat)  # stale or forged step: ignore its input
    return _answer(rt, state, rt.engine.step)


def _answer(rt, state: CallState, run) -> Response:
    turn = Turn(rt.engine, state, request.form, _step_url)
    try:
        response = rt.engine.run(turn, run)
    except Exception:
        # A bug must cost the caller one sentence, not the call: apologise and go to the main menu.
        log.exception("error in call %s at node %s", state.sid[-6:], state.node)
        try:
            turn.response = VoiceResponse()
            turn.say("sys.error")
            rt.engine.home(turn)
            response = turn.response
        except Exception:
            log.exception("error recovering call %s", state.sid[-6:])
            return twiml(rt.fallback_response())
    body = render(response)
    # This step's call events ride the state's own write (ivr/callflow/calllog.py): no round trip more.
    events = turn.log.entry(rt.call_tag(state.sid), state.seq, rt.hours.now().timestamp())
    state.seq += 1
    state.remember_response(body, rt.sealer)
    state.token = retry_digest(state.ended)
    try:
        rt.store.save(state, events)
    except redis.RedisError as exc:
        metrics.REDIS_ERRORS.labels("save").inc()
        log.error("Redis unavailable saving call %s: %s", state.sid[-6:], exc)
        return twiml(rt.fallback_response())
    metrics.observe_turn(turn.log)
    return twiml(body)


@bp.post("/voice/status")
@timed("status")
@signed
def status():
    rt = runtime()
    sid = request.form.get("CallSid", "")[:64]
    try:
        # A repeated callback adds its end event again: the worker's fold counts a call's end once. A
        # callback for a call still going (ringing, in-progress: if more events were asked of Twilio)
        # ends nothing in the figures.
        call_status = request.form.get("CallStatus", "")
        events = calllog.end_entry(rt.call_tag(sid), rt.hours.now().timestamp(), call_status,
                                   request.form.get("CallDuration")) if call_status in calllog.END_STATUSES else None
        first = rt.store.end(sid, events=events) if sid else True
    except redis.RedisError as exc:
        metrics.REDIS_ERRORS.labels("status").inc()
        log.error("Redis unavailable on /voice/status: %s", exc)
        first = True
    if first:   # a retry (Twilio's, or a copy) changes nothing, and is not logged twice either
        log.info("call %s ended: %s after %ss", printable(sid[-6:]), printable(request.form.get("CallStatus", "?"), 20),
                 printable(request.form.get("CallDuration", "?"), 8))
    return "", 204


@bp.post("/voice/fallback")
@timed("fallback")
@signed
def fallback():
    # Twilio calls this when a webhook failed (a worker killed mid-request, a timeout): when the call's
    # state is intact, the caller goes on where they were; otherwise an answer without Redis or the SDU.
    log.error("fallback URL used: %s %s", printable(request.form.get("ErrorCode", "-"), 10),
              printable(request.form.get("ErrorUrl", "-"), 200))
    rt = runtime()
    sid = request.form.get("CallSid", "")[:64]
    state, failed = _load(rt, sid)
    if failed or state is None or not rt.engine.can_resume(state):
        return failed or twiml(rt.fallback_response())

    def resume(turn: Turn) -> VoiceResponse:
        turn.say("sys.resume")
        return rt.engine.repeat(turn)
    return _answer(rt, state, resume)


@bp.get("/health")
def health():
    rt = runtime()
    status = rt.health.status()
    breaker = rt.services.sdu.breaker.state
    age = round(time.monotonic() - status.at, 1) if status.at else None
    # Writes no replica acknowledged in time (store.replicated): the process is up, and the operator sees it.
    return jsonify(status="ok", **status.checks, sdu_breaker=breaker, checked_seconds_ago=age,
                   replication=store.REPLICATION.snapshot()), 200
