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

import difflib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis
import requests
import yaml

from ivr.callflow.handler import Outcome, handler
from ivr.callflow.speech import say_phone
from ivr.domain import recordings
from ivr.domain.directory import ANONYMOUS, DirectoryError, caller_id, parse_phone
from ivr.domain.requests import DELETE_JOB, RECORDING_JOB, WHO_CALLED, Quota, RequestCapped, RequestStore
from ivr.domain.sealing import Sealer
from ivr.jobs.worker import GiveUp, JobContext, RetryLater, at_start, job
from ivr.redact import mask_digits, mask_phone

log = logging.getLogger("ivr.inmate")

KEYPAD = {c: d for d, letters in {"2": "abc", "3": "def", "4": "ghi", "5": "jkl", "6": "mno",
                                   "7": "pqrs", "8": "tuv", "9": "wxyz"}.items() for c in letters}
FACILITY_MISSES = 2      # names not found before the caller is moved on (they can say it in the message)
# The HTTP sessions recording downloads and deletions use (tests swap in ones without back-off).
http_session: Callable[[], requests.Session] = recordings.session
delete_session: Callable[[], requests.Session] = recordings.delete_session


class FacilityError(RuntimeError):
    pass


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    short: str
    words: tuple[str, ...]
    requests_per_day: int | None = None     # None: the default cap for a facility (RequestCaps)

    @property
    def keypad(self) -> tuple[str, ...]:
        """Each spoken word spelled on the keypad ("cheshire" -> "24374473")."""
        return tuple("".join(KEYPAD[c] for c in w if c in KEYPAD) for w in self.words)


@dataclass(frozen=True)
class RequestCaps:
    """New requests per day (config/facilities.yaml `request_caps`); 0: no cap."""
    per_caller: int = 5        # one ordinary caller ID
    per_facility: int = 200    # one facility's inmate phones together, or one shared number
    withheld: int = 100        # every caller without a usable caller ID, together


class Facilities:
    def __init__(self, by_id: dict[str, Facility], numbers: dict[str, str | None],
                 caps: RequestCaps | None = None) -> None:
        self.by_id = by_id
        self.numbers = numbers          # E.164 -> facility id, or None for a facility line shared by several
        self.caps = caps or RequestCaps()

    def for_caller(self, raw: str | None) -> tuple[bool, Facility | None]:
        """(is the caller ID an inmate phone, which facility). Never raises: prison phone systems send
        "anonymous", "Restricted", Twilio's withheld "+266696687", nothing, or other odd strings."""
        raw = (raw or "").strip()[:40]
        e164 = raw if raw in self.numbers else caller_id(raw)   # Twilio sends E.164: parsed only if not
        if e164 not in self.numbers:
            return False, None
        fid = self.numbers[e164]
        return True, self.by_id.get(fid) if fid else None

    def hints(self) -> str:
        return ", ".join(dict.fromkeys(w for f in self.by_id.values() for w in f.words))

    def match_speech(self, said: str) -> list[Facility]:
        text = _norm(said)
        if not text:
            return []
        found = [f for f in self.by_id.values()
                 if any(re.search(rf"\b{re.escape(_norm(w))}\b", text) for w in f.words)]
        if found:
            return _longest_only(found, text)
        # Recognisers misspell proper names ("chesire", "mc dougal"): the closest word, if close enough.
        words = {_norm(w): f for f in self.by_id.values() for w in f.words}
        tokens = text.split()
        candidates = tokens + [" ".join(tokens[i:i + 2]) for i in range(len(tokens) - 1)]
        best: dict[str, Facility] = {}
        for token in candidates:
            for match in difflib.get_close_matches(token, list(words), n=1, cutoff=0.8):
                best[words[match].id] = words[match]
        return list(best.values())

    def match_keys(self, digits: str) -> list[Facility]:
        """Facilities one of whose words starts with these keypad letters."""
        return [f for f in self.by_id.values() if any(k.startswith(digits) for k in f.keypad)]


def _longest_only(found: list[Facility], text: str) -> list[Facility]:
    """"new haven" also contains "haven": keep the facilities whose matching word is the longest."""
    def score(f: Facility) -> int:
        return max(len(w) for w in f.words if re.search(rf"\b{re.escape(_norm(w))}\b", text))
    top = max(score(f) for f in found)
    return [f for f in found if score(f) == top]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", (text or "").lower().replace("-", " ")).split())


def load_facilities(path: Path) -> Facilities:
    """config/facilities.yaml, checked: a bad phone number or entry stops start-up naming the file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FacilityError(f"{path}: cannot read facilities: {exc}") from exc
    raw = doc.get("facilities") if isinstance(doc, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise FacilityError(f"{path}: needs a `facilities` mapping")
    by_id: dict[str, Facility] = {}
    numbers: dict[str, str | None] = {}

    def add_number(value, fid: str | None, where: str) -> None:
        try:
            e164 = parse_phone(value, where)
        except DirectoryError as exc:
            raise FacilityError(str(exc)) from None
        if e164 in numbers:
            raise FacilityError(f"{where}: {value!r} is listed twice")
        numbers[e164] = fid

    def cap(value, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FacilityError(f"{where} must be a whole number of requests a day (0: no cap), not {value!r}")
        return value

    for fid, f in raw.items():
        where = f"{path}: facility {fid!r}"
        if not isinstance(f, dict) or not f.get("name") or not f.get("words"):
            raise FacilityError(f"{where}: needs `name` and `words`")
        words = tuple(str(w) for w in f["words"])
        per_day = f.get("requests_per_day")
        by_id[str(fid)] = Facility(str(fid), str(f["name"]), str(f.get("short") or f["name"]), words,
                                   None if per_day is None else cap(per_day, f"{where}: requests_per_day"))
        for value in f.get("numbers") or []:
            add_number(value, str(fid), where)
    for value in doc.get("shared_numbers") or []:
        add_number(value, None, f"{path}: shared_numbers")
    given = doc.get("request_caps") or {}
    if not isinstance(given, dict) or set(given) - {"per_caller", "per_facility", "withheld"}:
        raise FacilityError(f"{path}: request_caps takes per_caller, per_facility and withheld")
    caps = RequestCaps(**{k: cap(v, f"{path}: request_caps.{k}") for k, v in given.items()})
    return Facilities(by_id, numbers, caps)


# --- wiring --------------------------------------------------------------------------------------------

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
        turn.vars["inm_facility_name"] = facility.name
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
        turn.vars["inm_facility_name"] = found[0].name
        turn.vars["inm_facility_how"] = "keypad" if value.isdigit() else "speech"
        return Outcome(event="found")
    turn.vars["inm_facility_misses"] = misses = turn.vars.get("inm_facility_misses", 0) + 1
    if misses >= FACILITY_MISSES:
        turn.say("inm.facility.later")
        return Outcome(event="too_many_misses")
    if found:
        names = turn.language.join([f.name for f in found[:3]], "or")
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
    return stop or Outcome(event="saved")


@handler("inm_which_message", events=("parent", "for_parent"))
def inm_which_message(turn, value: None) -> Outcome:
    """The message asks the parent about themselves, or someone calling for them about the parent."""
    return Outcome(event="for_parent" if _for_parent(turn) else "parent")


@handler("inm_save_message", events=("recorded", *WRITE_EVENTS))
def inm_save_message(turn, value: str) -> Outcome:
    stop = _write(turn, lambda store, ref: store.add_recording(ref, value[:300]))
    return stop or Outcome(event="recorded")


@handler("inm_finish_request", events=WRITE_EVENTS)
def inm_finish_request(turn, value: None) -> Outcome:
    """Say the reference only once the request is stored for good."""
    stop = _write(turn, lambda store, ref: store.finish(ref))
    if stop:
        return stop
    ref = turn.vars["inm_ref"]
    turn.say("inm.done.for" if _for_parent(turn) else "inm.done", ref=say_ref(ref),
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


# --- background jobs: the caller's message, into the system's own storage, then off Twilio ----------------

def _job_store(ctx: JobContext) -> RequestStore:
    return RequestStore(ctx.redis, Sealer.from_config(ctx.config))


def _job_request(payload: dict, ctx: JobContext) -> tuple[RequestStore, str, dict[str, str], str | None]:
    """(store, reference, the request as stored, the job's recording URL or None when it cannot be unsealed);
    GiveUp when the request is gone. The URL is sealed by this version, plain in jobs an older one queued."""
    store, ref = _job_store(ctx), str(payload.get("ref", ""))
    request = store.raw(ref)
    if request is None:
        raise GiveUp(f"no request {ref}")
    return store, ref, request, store.open_url(str(payload.get("url", "")))


@job(RECORDING_JOB)
def fetch_recording(payload: dict, ctx: JobContext) -> None:
    store, ref, request, url = _job_request(payload, ctx)
    account, token = ctx.config["TWILIO_ACCOUNT_SID"], ctx.config["TWILIO_AUTH_TOKEN"]
    if url is None:
        store.recording_failed(ref, "the recording URL cannot be unsealed (was IVR_SECRET_KEY changed?)", True)
        raise GiveUp(f"request {ref}: recording URL cannot be unsealed")
    if store.open_url(request.get("recording_url", "")) != url:
        return      # the caller recorded again: the newer message has its own job
    try:
        sid = recordings.check_url(url, account)
        have = request.get("recording_file")
        if have and Path(have).name == f"{sid}.mp3" and Path(have).exists():
            return      # done already (a redelivered job)
        path = recordings.download(url, Path(ctx.config["DATA_DIR"]) / "requests" / ref, account, token,
                                   http=http_session())
    except recordings.RecordingError as exc:
        store.recording_failed(ref, str(exc), exc.permanent)
        if exc.permanent:
            raise GiveUp(str(exc)) from exc
        raise RetryLater(str(exc)) from exc
    delete = recordings.account_configured(account)
    if not delete:
        _warn_no_account()
    store.recording_saved(ref, str(path), url, delete=delete)


@job(DELETE_JOB)
def delete_twilio_copy(payload: dict, ctx: JobContext) -> None:
    """Delete Twilio's copy of a message the system holds. A failure keeps the request and the file, says so
    on the request (`ivr requests show`), and is tried again (jobs.py: ~25 minutes, then the dead letters)."""
    store, ref, request, url = _job_request(payload, ctx)
    account, token = ctx.config["TWILIO_ACCOUNT_SID"], ctx.config["TWILIO_AUTH_TOKEN"]
    if url is None:
        store.twilio_copy_not_deleted(ref, "the recording URL cannot be unsealed", again=False)
        raise GiveUp(f"request {ref}: recording URL cannot be unsealed")
    if not recordings.account_configured(account):
        _warn_no_account()
        store.twilio_copy_kept(ref)
        return
    try:
        sid = recordings.check_url(url, account)
    except recordings.RecordingError as exc:
        store.twilio_copy_not_deleted(ref, str(exc), again=False)
        raise GiveUp(str(exc)) from exc
    # Never delete the only copy: the system's own file of this very recording must be there.
    have = Path(request.get("recording_file") or "")
    if have.name != f"{sid}.mp3" or not have.is_file() or have.stat().st_size == 0:
        store.twilio_copy_not_deleted(ref, "no local copy of this recording: Twilio's copy is kept", again=False)
        raise GiveUp(f"request {ref}: no local copy, Twilio's copy kept")
    try:
        was_there = recordings.delete(url, account, token, http=delete_session())
    except recordings.RecordingError as exc:
        log.warning("request %s: Twilio's copy of the message was not deleted: %s", ref, exc)
        store.twilio_copy_not_deleted(ref, str(exc), again=not exc.permanent)
        if exc.permanent:
            raise GiveUp(str(exc)) from exc
        raise RetryLater(str(exc)) from exc
    store.twilio_copy_deleted(ref, was_there)


@at_start
def reseal_legacy_requests(ctx: JobContext) -> None:
    _job_store(ctx).reseal_legacy()


@at_start
def reseal_rotated_requests(ctx: JobContext) -> None:
    _job_store(ctx).reseal_rotated()


@at_start
def sweep_partial_messages(ctx: JobContext) -> None:
    """What a worker killed mid-download left (a part of a caller's message) is removed at the next start."""
    recordings.sweep_partial(Path(ctx.config["DATA_DIR"]) / "requests")


_warned_no_account = False


def _warn_no_account() -> None:
    global _warned_no_account
    if not _warned_no_account:
        _warned_no_account = True
        log.warning("TWILIO_ACCOUNT_SID is not configured (development): callers' messages are downloaded "
                    "but not deleted from Twilio")
