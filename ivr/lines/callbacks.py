"""The call steps of a call back and of the texts a caller may ask for (issue 18; config/flows/callback.yaml).

A caller who cannot reach a person now confirms the number to call (the caller ID read back, or another
number keyed twice and checked), chooses the next business morning or afternoon, may leave a message, and
hears a reference once the callback is stored for good (ivr/domain/callbacks.py). A caller whose caller ID
may get texts (`sms_ok`, checked at the start of the call, and again when another line hands the caller
over to the call center) may ask for the reference, or an office's name, phone number and address, by
text: the step records the consent and queues the text; `ivr worker` sends it (ivr/jobs/callbacks.py).

Each step names what happened (an event); config/flows/callback.yaml says where each event leads.
"""

from __future__ import annotations

import logging
from datetime import datetime

import phonenumbers
import redis

from ivr.callflow.handler import Outcome, handler
from ivr.callflow.speech import say_date
from ivr.domain.callbacks import CallbackCapped, CallbackStore, NumberRefused, Quota, check_number
from ivr.domain.directory import ANONYMOUS, caller_id
from ivr.domain.texts import TextStore
from ivr.jobs.queue import enqueue
from ivr.redact import mask_phone

log = logging.getLogger("ivr.callbacks")


def say_number(e164: str) -> str:
    """A caller's number digit by digit in its groups ("8 6 0, 5 5 5, 0 1 9 9"). Not cached, unlike the
    lines' own numbers (speech.say_phone): a caller's number is kept nowhere but in this one answer."""
    national = str(phonenumbers.parse(e164, "US").national_number)
    return ", ".join(" ".join(group) for group in (national[:3], national[3:6], national[6:]))


def say_ref(ref: str) -> str:
    """"483920" -> "4 8 3, 9 2 0"."""
    return " ".join(ref[:3]) + ", " + " ".join(ref[3:])


def _store(turn) -> CallbackStore:
    return turn.services.callbacks


def _facility_numbers(turn) -> set[str]:
    return set(turn.services.facilities.numbers)


def callable_caller_id(turn) -> str | None:
    """The caller ID in E.164 when it is a number we may call or text back (not withheld, not an inmate
    phone, a valid US number that is not toll-free or premium); else None."""
    raw = turn.param("From")
    if caller_id(raw) == ANONYMOUS:
        return None
    try:
        return check_number(raw, _facility_numbers(turn))
    except NumberRefused:
        return None


def _caller_quota(turn) -> list[Quota]:
    """The caps a new callback of this call counts against besides its number's: the caller ID's (all
    withheld callers share one), and the day's for the whole line."""
    caps, tag = turn.services.callback_settings.caps, turn.services.sealer.tag
    number = caller_id(turn.param("From"))
    if number == ANONYMOUS:
        mine = Quota("withheld", caps.withheld, "callers without a caller ID")
    else:
        mine = Quota(tag("callback:caller:" + number), caps.per_caller, "caller " + mask_phone(number))
    return [mine, Quota("day", caps.per_day, "the call center (all callers)")]


def _number_quota(turn, number: str) -> Quota:
    caps = turn.services.callback_settings.caps
    return Quota(turn.services.sealer.tag("callback:number:" + number), caps.per_number,
                 "callback number " + mask_phone(number))


def _sealed(turn, name: str) -> str | None:
    token = turn.vars.get(name)
    return turn.services.sealer.unseal(token) if token else None


def _source(turn) -> str:
    return str(turn.args.get("source") or turn.vars.get("xfer_result") or "closed")


# --- the start of a call ---------------------------------------------------------------------------------

@handler("sms_caller", events=("checked",))
def sms_caller(turn, value: None) -> Outcome:
    """Whether this caller may be offered texts (`sms_ok`): texts are configured (IVR_SMS_FROM), the caller
    ID is a number we may text, and it neither replied STOP nor was found to be a landline. Checked once a
    call: a call back on this line from the payment line keeps what its start found."""
    if "sms_ok" in turn.vars:
        return Outcome(event="checked")
    ok = False
    if turn.services.sms.enabled:
        number = callable_caller_id(turn)
        try:
            ok = number is not None and turn.services.texts.may_text(number)
        except redis.RedisError:
            ok = False      # unknown: no offer, rather than a text to a number that stopped
    turn.vars["sms_ok"] = ok
    return Outcome(event="checked")


# --- a call back ---------------------------------------------------------------------------------------------

@handler("cb_start", events=("caller_id", "keyed", "capped"))
def cb_start(turn, value: None) -> Outcome:
    """Offered a call back: why (how the transfer ended, or the node's `args: {source: ...}`) and for whom
    (the office, or the agents) are kept; a caller ID at its day's cap hears so now, not after keying."""
    turn.vars["cb_source"] = _source(turn)
    turn.vars["cb_office"] = str(turn.vars.get("xfer_office") or "agents")
    try:
        if _store(turn).full(_caller_quota(turn)):
            return Outcome(event="capped")
    except redis.RedisError:
        pass                # the store step says so if it still fails then
    return Outcome(event="caller_id" if callable_caller_id(turn) else "keyed")


@handler("cb_say_caller_id", events=())
def cb_say_caller_id(turn, value: None) -> Outcome:
    number = callable_caller_id(turn)
    if number:
        turn.say("cb.caller_id", number=say_number(number))
    return Outcome()


@handler("cb_use_caller_id", events=("chosen", "keyed"))
def cb_use_caller_id(turn, value: None) -> Outcome:
    number = callable_caller_id(turn)
    if number is None:
        return Outcome(event="keyed")
    turn.vars["_cb_number"] = turn.services.sealer.seal(number)
    turn.vars["cb_number_how"] = "caller ID"
    return Outcome(event="chosen")


@handler("cb_number_entered", events=("entered",))
def cb_number_entered(turn, value: str) -> Outcome:
    """A number keyed: refused with the reason said (cb.number.<reason>), or kept to be keyed again."""
    try:
        number = check_number(value, _facility_numbers(turn))
    except NumberRefused as refused:
        return Outcome(retry=f"cb.number.{refused.reason}")
    turn.vars["_cb_first"] = turn.services.sealer.seal(number)
    return Outcome(event="entered")


@handler("cb_number_confirmed", events=("confirmed", "mismatch"))
def cb_number_confirmed(turn, value: str) -> Outcome:
    first = _sealed(turn, "_cb_first")
    try:
        number = check_number(value, _facility_numbers(turn))
    except NumberRefused:
        number = None
    turn.vars.pop("_cb_first", None)
    if first is None or number != first:
        turn.say("cb.number.mismatch")
        return Outcome(event="mismatch")
    turn.vars["_cb_number"] = turn.services.sealer.seal(number)
    turn.vars["cb_number_how"] = "keyed"
    turn.say("cb.number.heard", number=say_number(number))
    return Outcome(event="confirmed")


def _not_stored(turn, exc: Exception) -> Outcome:
    log.error("call %s: callback not stored: %s", turn.state.sid[-6:], exc)
    return Outcome(event="not_stored")


@handler("cb_store", events=("stored", "capped", "not_stored", "no_number"))
def cb_store(turn, value: None) -> Outcome:
    """The best time chosen (`args: {best: morning|afternoon}`): the callback is stored now, durably, so a
    caller who hangs up during the message still gets the call."""
    number = _sealed(turn, "_cb_number")
    if not number:
        return Outcome(event="no_number")
    try:
        ref, new = _store(turn).request(
            turn.state.sid, number, lang=turn.lang, best=str(turn.args.get("best", "morning")),
            source=str(turn.vars.get("cb_source", "closed")), office=str(turn.vars.get("cb_office", "")),
            caller=turn.param("From")[:40], number_how=str(turn.vars.get("cb_number_how", "")),
            quotas=[_number_quota(turn, number), *_caller_quota(turn)])
    except CallbackCapped:
        return Outcome(event="capped")
    except redis.RedisError as exc:
        return _not_stored(turn, exc)
    log.info("call %s: callback %s (%s) for %s", turn.state.sid[-6:], ref, "new" if new else "updated",
             mask_phone(number))
    turn.vars["cb_ref"] = ref
    turn.vars["cb_new"] = new
    turn.note("r", "callback")    # the call leaves a request (call analytics: request_left)
    return Outcome(event="stored")


@handler("cb_save_message", events=("recorded", "no_callback", "not_stored"))
def cb_save_message(turn, value: str) -> Outcome:
    ref = turn.vars.get("cb_ref")
    if not ref:
        return Outcome(event="no_callback")
    try:
        _store(turn).add_message(ref, value[:300], queue=lambda pipe, kind, payload:
                                 enqueue(turn.services.redis, kind, payload, pipe=pipe))
    except redis.RedisError as exc:
        return _not_stored(turn, exc)
    return Outcome(event="recorded")


def say_when(turn, data: dict[str, str]) -> str:
    """"on Wednesday, November 25, in the morning" in the caller's language."""
    hours = turn.services.hours
    due = datetime.fromisoformat(data["due"]).astimezone(hours.zone)
    day = say_date(due.date(), turn.lang, today=hours.now().date())
    return turn.services.prompts.text(f"cb.when.{data.get('best', 'morning')}", turn.lang, day=day)


@handler("cb_finish", events=("done", "text_offer", "no_callback", "not_stored"))
def cb_finish(turn, value: None) -> Outcome:
    """The reference, said only once the callback is stored for good, and when to expect the call."""
    ref = turn.vars.get("cb_ref")
    if not ref:
        return Outcome(event="no_callback")
    try:
        data = _store(turn).finish(ref)
    except redis.RedisError as exc:
        return _not_stored(turn, exc)
    if not turn.vars.get("cb_new", True):
        turn.say("cb.updated")
    turn.say("cb.done", ref=say_ref(ref), number=say_number(data["number"]), when=say_when(turn, data))
    return Outcome(event="text_offer" if turn.vars.get("sms_ok") else "done")


# --- texts ------------------------------------------------------------------------------------------------------

def _consent(turn, kind: str, **what: str) -> Outcome:
    """Record the caller's consent (with its time) and queue the text for the worker (`queued`); `not_sent`
    when this phone may not get texts after all (it replied STOP meanwhile) or Redis fails."""
    number = callable_caller_id(turn) if turn.vars.get("sms_ok") else None
    texts: TextStore = turn.services.texts
    try:
        if number is None or not texts.may_text(number):
            return Outcome(event="not_sent")
        tid, _ = texts.consent(turn.state.sid, number, kind=kind, lang=turn.lang, **what,
                               queue=lambda pipe, job, payload: enqueue(turn.services.redis, job, payload,
                                                                            pipe=pipe))
    except redis.RedisError as exc:
        log.error("call %s: text not queued: %s", turn.state.sid[-6:], exc)
        return Outcome(event="not_sent")
    log.info("call %s: text %s (%s) queued for %s", turn.state.sid[-6:], tid, kind, mask_phone(number))
    return Outcome(event="queued")


@handler("sms_callback", events=("queued", "not_sent"))
def sms_callback(turn, value: None) -> Outcome:
    ref = turn.vars.get("cb_ref")
    if not ref:
        return Outcome(event="not_sent")
    outcome = _consent(turn, "callback", ref=ref)
    if outcome.event != "queued":
        return outcome
    try:
        store = _store(turn)
        store.update(ref, "text of the reference asked (consent)", text_consent_at=store.now_text(),
                     text_status="queued")
    except redis.RedisError:
        pass            # the text itself is queued, and its own record keeps the consent
    return outcome


@handler("sms_office", events=("queued", "not_sent"))
def sms_office(turn, value: None) -> Outcome:
    """The office of the last transfer, by text (its name, phone number, street address and hours)."""
    office = str(turn.vars.get("xfer_office") or "")
    if office not in turn.services.directory.offices:
        return Outcome(event="not_sent")        # the node says so
    return _consent(turn, "office", office=office)
