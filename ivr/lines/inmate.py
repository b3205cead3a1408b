"""Incarcerated parents: the intake of a support-order modification request, by phone (issue 4).

A call whose caller ID is a correctional facility's inmate phone (config/facilities.yaml) starts on this
path; anyone else reaches it from main menu option 4 and says whether they are the parent or calling for
them. The caller hears the facts, keys the inmate number (stored at once as a request: a hang-up later
keeps it), the facility (by name or keypad spelling, unless the caller ID already told it), the case or
docket number, records a message, and hears a 6-digit reference once the request is durably stored
(ivr/domain/requests.py). The `inmate.recording` job (`ivr worker`) later downloads the message, and only
then does `inmate.recording.delete` delete Twilio's copy.

Each step below names what happened (an event: `stored`, `capped`, `not_stored`...);
config/flows/inmate.yaml says where each event leads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from ivr.callflow.handler import Outcome, handler
from ivr.callflow.speech import say_phone
from ivr.domain.directory import ANONYMOUS, caller_id
from ivr.domain.facilities import Facilities
from ivr.domain.requests import WHO_CALLED, Quota, RequestCapped, RequestStore
from ivr.redact import mask_digits, mask_phone

log = logging.getLogger("ivr.inmate")

FACILITY_MISSES = 2      # names not found before the caller is moved on (they can say it in the message)


@handler("inm_caller_kind", events=("facility_phone", "other"))
def caller_kind(turn, value: str | None) -> Outcome:
    """At the start of a call: an inmate phone's call (config/facilities.yaml) is told apart, and the
    facility it names is kept, so the flow can start it on the prison path."""
    facilities: Facilities | None = turn.services.facilities
    is_facility, facility = facilities.for_caller(turn.param("From")) if facilities else (False, None)
    if not is_facility:
        return Outcome(event="other")
    turn.vars["inm_from_facility"] = True
    if facility is not None:
        turn.vars["inm_facility"] = facility.id
        turn.vars["inm_facility_name"] = facility.said(turn.lang)
        turn.vars["inm_facility_how"] = "caller ID"
    return Outcome(event="facility_phone")


def _store(turn) -> RequestStore:
    return turn.services.requests


def quota(turn) -> Quota:
    """Whose day's count a new request of this call counts against: a facility's inmate phones share
    one (a whole prison calls from them: its own, higher cap), a shared inmate line has its own, so do
    all withheld callers together, and any other caller ID its own."""
    facilities: Facilities = turn.services.facilities
    caps, raw = facilities.caps, turn.param("From")
    is_facility, facility = facilities.for_caller(raw)
    number = caller_id(raw)
    if facility is not None:
        bucket, who = "facility:" + facility.id, facility.short
        limit = caps.per_facility if facility.requests_per_day is None else facility.requests_per_day
    elif is_facility:
        bucket, who, limit = "caller:" + number, "inmate line " + mask_phone(number), caps.per_facility
    elif number == ANONYMOUS:
        bucket, who, limit = "withheld", "callers without a caller ID", caps.withheld
    else:
        bucket, who, limit = "caller:" + number, "caller " + mask_phone(number), caps.per_caller
    return Quota(turn.services.sealer.tag("requests:" + bucket), limit, who)


def _stored_failed(turn, exc: Exception) -> Outcome:
    log.error("call %s: request not stored: %s", turn.state.sid[-6:], exc)
    turn.say("inm.store_failed", number=say_phone(turn.services.lines["callback_number"], turn.lang))
    return Outcome(event="not_stored")


# The events every step that writes to the call's request may end with (see _write).
WRITE_EVENTS = ("no_request", "not_stored")


def _write(turn, change: Callable[[RequestStore, str], None]) -> Outcome | None:
    """Apply `change` to this call's request: None once stored, else the event that says why not
    (`no_request`: the call has none yet; `not_stored`: Redis failing)."""
    ref = turn.vars.get("inm_ref")
    if not ref:
        return Outcome(event="no_request")
    try:
        change(_store(turn), ref)
    except redis.RedisError as exc:
        return _stored_failed(turn, exc)
    return None


# --- the call's steps ----------------------------------------------------------------------------------

# Who is calling: set by the facts each caller hears (inm_caller_parent: an inmate phone, or the parent
# at the menu that asks; inm_caller_for: someone for them), and stored as the request's `who_called`.
# A flag, not a word: call walks (tests/walk.py) tell paths apart by their flags.
PARENT, FOR_PARENT = WHO_CALLED


@handler("inm_caller_parent", events=())
def inm_caller_parent(turn, value: None) -> Outcome:
    turn.vars["inm_for_parent"] = False
    return Outcome()        # no event: the facts' options follow


@handler("inm_person_if_open", events=("open", "closed"))
def inm_person_if_open(turn, value: None) -> Outcome:
    """0 on the prison path: a person when people answer (`open`); otherwise say when, and that the
    request does not need one (`closed`: an inmate phone call is short and hard to make again)."""
    hours = turn.services.hours
    if hours.is_open("agents"):
        return Outcome(event="open")
    turn.say("inm.person.closed", hours=hours.describe(turn.lang))
    return Outcome(event="closed")


@handler("inm_start_request", events=("who_known", "who_unknown"))
def inm_start_request(turn, value: None) -> Outcome:
    """The request, once the call has said who is calling (0 may have come before it was asked)."""
    return Outcome(event="who_known" if "inm_for_parent" in turn.vars else "who_unknown")


@handler("inm_caller_for", events=())
def inm_caller_for(turn, value: None) -> Outcome:
    turn.vars["inm_for_parent"] = True
    return Outcome()


def _for_parent(turn) -> bool:
    return turn.vars.get("inm_for_parent") is True


def _who(turn) -> str:
    """"" when the call never said (a call already past the facts when this version started)."""
    flag = turn.vars.get("inm_for_parent")
    return "" if flag is None else FOR_PARENT if flag else PARENT


@handler("inm_open_request", events=("stored", "stored_facility_known", "capped", "not_stored"))
def inm_open_request(turn, value: str) -> Outcome:
    """The confirmed inmate number: store the request now, so a hang-up from here on keeps it."""
    known_facility = turn.vars.get("inm_facility", "")
    try:
        ref = _store(turn).open_request(
            turn.state.sid, value, lang=turn.lang,
            source="facility caller ID" if turn.vars.get("inm_from_facility") else "main menu",
            caller=turn.param("From")[:40], facility=known_facility,
            facility_how=turn.vars.get("inm_facility_how", "") if known_facility else "",
            who=_who(turn), quota=quota(turn))
    except RequestCapped:
        return Outcome(event="capped")
    except redis.RedisError as exc:
        return _stored_failed(turn, exc)
    log.info("call %s: request %s for inmate %s", turn.state.sid[-6:], ref, mask_digits(value))
    turn.vars["inm_ref"] = ref
    turn.note("r", "inmate")    # the call leaves a request (call analytics: request_left)
    return Outcome(event="stored_facility_known" if known_facility else "stored")


@handler("inm_say_capped", events=())
def inm_say_capped(turn, value: None) -> None:
    """What a caller whose caller ID is at its day's cap can do instead (a person, or another day)."""
    turn.say("inm.capped", hours=turn.services.hours.describe(turn.lang),
             number=say_phone(turn.services.lines["callback_number"], turn.lang))


@handler("inm_match_facility", events=("found", "too_many_misses"))
def inm_match_facility(turn, value: str) -> Outcome:
    """A facility said by name, or spelled with the keypad's letters; after FACILITY_MISSES names not
    found the caller is moved on (they can say it in the message)."""
    facilities: Facilities = turn.services.facilities
    found = facilities.match_keys(value) if value.isdigit() else facilities.match_speech(value)
    if len(found) == 1:
        turn.vars.pop("inm_facility_misses", None)
        turn.vars["inm_facility"] = found[0].id
        turn.vars["inm_facility_name"] = found[0].said(turn.lang)
        turn.vars["inm_facility_how"] = "keypad" if value.isdigit() else "speech"
        return Outcome(event="found")
    turn.vars["inm_facility_misses"] = misses = turn.vars.get("inm_facility_misses", 0) + 1
    if misses >= FACILITY_MISSES:
        turn.say("inm.facility.later")
        return Outcome(event="too_many_misses")
    if found:
        names = turn.language.join([f.said(turn.lang) for f in found[:3]], "or")
        return Outcome(retry="inm.facility.ambiguous", fields={"names": names})
    return Outcome(retry="inm.facility.not_found")


@handler("inm_save_facility", events=("saved", *WRITE_EVENTS))
def inm_save_facility(turn, value: None) -> Outcome:
    fid, how = turn.vars.get("inm_facility", ""), turn.vars.get("inm_facility_how", "")
    stop = _write(turn, lambda store, ref: store.update(ref, "facility given", detail=fid, stage="facility",
                                                        facility=fid, facility_how=how))
    return stop or Outcome(event="saved")


@handler("inm_save_case", events=("saved", *WRITE_EVENTS))
def inm_save_case(turn, value: str) -> Outcome:
    stop = _write(turn, lambda store, ref: store.update(ref, "case or docket number given", stage="case",
                                                        case=value))
    if not stop:
        turn.vars["inm_case_given"] = True
    return stop or Outcome(event="saved")


@handler("inm_which_message", events=("parent", "for_parent"))
def inm_which_message(turn, value: None) -> Outcome:
    """The message asks the parent about themselves, or someone calling for them about the parent."""
    return Outcome(event="for_parent" if _for_parent(turn) else "parent")


@handler("inm_save_message", events=("recorded", *WRITE_EVENTS))
def inm_save_message(turn, value: str) -> Outcome:
    stop = _write(turn, lambda store, ref: store.add_recording(ref, value[:300]))
    if not stop:
        turn.vars["inm_message_given"] = True
    return stop or Outcome(event="recorded")


@handler("inm_finish_request", events=WRITE_EVENTS)
def inm_finish_request(turn, value: None) -> Outcome:
    """Say the reference only once the request is stored for good."""
    stop = _write(turn, lambda store, ref: store.finish(ref))
    if stop:
        return stop
    ref = turn.vars["inm_ref"]
    pid = "inm.done.for" if _for_parent(turn) else "inm.done"
    turn.say(pid, ref=say_ref(ref))
    # Only what the request supports: with a message or a case number S E S has something to work
    # from; with only an inmate number the caller is told what is missing and how to add it.
    thin = not (turn.vars.get("inm_message_given") or turn.vars.get("inm_case_given"))
    turn.say(pid + (".thin" if thin else ".next"),
             number=say_phone(turn.services.lines["callback_number"], turn.lang))
    return Outcome(hangup=True)


@handler("inm_leave", events=("left",))
def inm_leave(turn, value: None) -> Outcome:
    """9 or 0 once the request is stored: its reference first, or the caller leaves without it."""
    ref = turn.vars.get("inm_ref")
    if ref:
        turn.say("inm.saved_leave", ref=say_ref(ref))
    return Outcome(event="left")


def say_ref(ref: str) -> str:
    """"483920" -> "4 8 3, 9 2 0": digit by digit, in two groups the caller can write down."""
    return " ".join(ref[:3]) + ", " + " ".join(ref[3:])
