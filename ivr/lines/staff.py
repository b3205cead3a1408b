"""The staff line (config/flows/staff.yaml): sign in, re-record a prompt, roll it back, announcements.

A kept recording is not live at once: `staff_keep` queues the `staff.publish` job, which downloads it
from Twilio into the system's own storage and only then publishes it (ivr/domain/published.py). Callers are
served the system's copy (`GET /audio/<file>`, ivr/web/audio.py).

Each handler leaves its node by the events it declares; config/flows/staff.yaml says where each goes.
Every step after the PIN runs behind `signed_in`: a caller no longer signed in (or whose account was
disabled during the call) leaves by `signed_out`, which every such node maps.

Call state holds the staff ID and name (`_staff`, `_staff_name`) once signed in; the PIN goes straight
from the request to the hash check and is never stored or logged. The limits on guessing (per call here,
per caller number and per ID in ivr/domain/staffdb.py, whose docstring has the design) take the caller's number
from Twilio's `From`.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from ivr.callflow.engine import Turn
from ivr.callflow.flow import FlowError
from ivr.callflow.handler import REGISTRY, Outcome, events_of, handler
from ivr.callflow.speech import say_date, say_digits
from ivr.domain import recordings
from ivr.domain.directory import ANONYMOUS, caller_id
from ivr.domain.published import ANN_LINES, Library, NothingToRollBack, Who
from ivr.domain.staffdb import TRIES_PER_CALL, Login, Staff
from ivr.jobs import queue as jobs
from ivr.jobs.prompts import JOB
from ivr.redact import mask_digits

log = logging.getLogger("ivr.staff")


FIRST_WORDS = 10
REVIEW_PAUSE = 1      # seconds before a fresh recording is first played back (see staff_review)
SIGNED_OUT = "signed_out"


def check_flows(flows) -> None:
    """The staff steps' own checks of the call tree, at start-up (create_app)."""
    _check_sign_out()
    _check_lines(flows)


def _check_sign_out() -> None:
    """A step behind `signed_in` that did not declare `signed_out` would fail only when a signed-out
    caller reached it (the loader checks `on` against the declared events, not this)."""
    missing = sorted(name for name, fn in REGISTRY.items()
                     if getattr(fn, "signs_out", False) and SIGNED_OUT not in (events_of(fn) or ()))
    if missing:
        raise FlowError(f"{__file__}: handler(s) {', '.join(missing)} check the sign-in but do not "
                        f"declare the event {SIGNED_OUT!r}")


def _check_lines(flows) -> None:
    """Announcement nodes name their lines in the flow file (`args: {lines: [...]}`): a wrong name
    stops start-up."""
    for node in flows.nodes.values():
        if node.get("handler") in ("staff_ann_new", "staff_ann_clear"):
            args = node.get("args")
            lines = args.get("lines") if isinstance(args, dict) else None
            if not isinstance(lines, list) or not lines or any(ln not in ANN_LINES for ln in lines):
                raise FlowError(f"{node.file}: node {node.id!r}: `lines` must list some of {list(ANN_LINES)}, "
                                "as `args: {lines: [...]}`")


# --- helpers -------------------------------------------------------------------------------------
def _now(turn: Turn) -> datetime:
    return turn.services.hours.now()


def _staff(turn: Turn) -> Staff | None:
    """The signed-in staff member, if the account is still enabled (a disable takes effect at once)."""
    staff_id = turn.vars.get("_staff")
    if not staff_id:
        return None
    staff = turn.services.staffdb.get(staff_id)
    return staff if staff is not None and not staff.disabled else None


def signed_in(fn):
    """Every staff-line step after the PIN: without a signed-in staff member, the event `signed_out`
    (the handler declares it, its node maps it). `fn` gets the staff member as a third argument."""
    def wrapper(turn: Turn, value):
        staff = _staff(turn)
        if staff is None:
            turn.vars.pop("_staff", None)
            return Outcome(event=SIGNED_OUT)
        return fn(turn, value, staff)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    wrapper.signs_out = True    # see _check_sign_out
    return wrapper


def _who(staff: Staff) -> Who:
    return Who(staff.id, staff.name)


def _work(turn: Turn) -> str:
    """The language of the recordings being worked on (not the language the staff line speaks)."""
    lang = turn.vars.get("work_lang")
    return lang if lang in turn.services.prompts.languages else turn.lang


def _lang_name(turn: Turn, lang: str) -> str:
    prompts = turn.services.prompts   # a language added without its st.lang prompt: its own file's name
    pid = f"st.lang.{lang}"
    return prompts.text(pid, turn.lang) if prompts.has(pid, turn.lang) else prompts.language(lang).name


def _line_name(turn: Turn, line: str) -> str:
    return turn.services.prompts.text(f"st.line.{line}", turn.lang)


def _node_lines(turn: Turn) -> list[str]:
    return list(turn.args["lines"])     # checked at start-up (_check_lines)


# --- signing in ----------------------------------------------------------------------------------
@handler("staff_id", events=("id_entered",))
def staff_id(turn: Turn, value: str) -> Outcome:
    turn.vars.pop("_staff", None)
    # No lock is looked at here: the PIN is always asked, and a lock said only after it, the same way
    # for an unknown ID as for a known one (saying it now would tell a guesser which IDs exist).
    # Sealed: a staff member who keys the PIN at the ID prompt must not leave it in call state.
    turn.vars["_staff_try"] = turn.services.sealer.seal(value)
    return Outcome(event="id_entered")


@handler("staff_pin", events=("identified", "login_failed", "no_id"))
def staff_pin(turn: Turn, value: str) -> Outcome:
    staff_id = turn.services.sealer.unseal(turn.vars.pop("_staff_try", "")) or ""
    if not staff_id:     # no staff ID to check the PIN against: ask for it again
        return Outcome(event="no_id")
    caller = caller_id(turn.param("From"))
    result, staff = turn.services.staffdb.login(staff_id, value, caller, _now(turn))
    if result is Login.OK and staff is not None:
        turn.vars.pop("_fails", None)
        turn.vars.update(_staff=staff.id, _staff_name=staff.name, work_lang=turn.lang)
        log.info("staff line: %s signed in", staff.id)
        turn.say("st.hello", name=staff.name)
        return Outcome(event="identified")
    log.warning("staff line: sign-in failed for staff ID %s (%s)", mask_digits(staff_id), result.value)
    turn.note("p", "staff")   # a failed sign-in: /metrics counts them (PIN guessing)
    if result in (Login.LOCKED, Login.LOCKED_PHONE):
        withheld = result is Login.LOCKED_PHONE and caller == ANONYMOUS
        turn.say("st.login.locked_withheld" if withheld else "st.login.locked")
        return Outcome(hangup=True)
    fails = int(turn.vars.get("_fails", 0)) + 1
    turn.vars["_fails"] = fails
    if fails >= TRIES_PER_CALL:  # a cap per call too, whatever IDs were tried
        if result is Login.SHORT:
            turn.say("st.pin.short")
        turn.say("st.login.too_many")
        return Outcome(hangup=True)
    turn.say("st.pin.short" if result is Login.SHORT else "st.login.failed")
    return Outcome(event="login_failed")


# --- the staff menu ------------------------------------------------------------------------------
@handler("staff_main", events=(SIGNED_OUT,))
@signed_in
def staff_main(turn: Turn, value, staff: Staff) -> Outcome | None:
    turn.vars["work_lang"] = _work(turn)
    turn.say("st.main.intro", work=_lang_name(turn, _work(turn)))
    return None


@handler("staff_switch", events=("switched", SIGNED_OUT))
@signed_in
def staff_switch(turn: Turn, value, staff: Staff) -> Outcome:
    langs = list(turn.services.prompts.languages)   # the next language, round
    turn.vars["work_lang"] = langs[(langs.index(_work(turn)) + 1) % len(langs)]
    return Outcome(event="switched")


# --- one prompt ----------------------------------------------------------------------------------
@handler("staff_code", events=("prompt_chosen", SIGNED_OUT))
@signed_in
def staff_code(turn: Turn, value: str, staff: Staff) -> Outcome:
    prompts = turn.services.prompts
    pid = prompts.by_code(value)
    if pid is None or not prompts.has(pid, prompts.default):
        return Outcome(retry="st.code.unknown", fields={"code": say_digits(value)})
    if prompts.has_parts(pid, prompts.default):  # variable parts: always the computer voice
        return Outcome(retry="st.code.fields", fields={"code": say_digits(value)})
    turn.vars["_pid"] = pid
    return Outcome(event="prompt_chosen")


@handler("staff_prompt", events=("no_prompt", SIGNED_OUT))
@signed_in
def staff_prompt(turn: Turn, value, staff: Staff) -> Outcome | None:
    """Which prompt this is (its first words, in its own voice) and what callers hear now."""
    pid = turn.vars.get("_pid")
    prompts = turn.services.prompts
    if not pid or not prompts.has(pid, prompts.default):
        return Outcome(event="no_prompt")
    turn.vars["_target"] = "prompt"
    if turn.vars.pop("_quiet", None):
        return None
    lang = _work(turn)
    turn.say("st.prompt.about", code=say_digits(str(prompts.codes[pid])), work=_lang_name(turn, lang))
    words = prompts.texts[lang][pid].split()
    turn.say_text(" ".join(words[:FIRST_WORDS]) + ("..." if len(words) > FIRST_WORDS else ""), lang=lang)
    library: Library = turn.services.library
    current = library.published(pid, lang)
    if current:
        event = library.version(pid, lang, current["v"]) or {}
        when = datetime.fromisoformat(event["at"]).date() if event.get("at") else _now(turn).date()
        turn.say("st.prompt.live", version=current["v"], name=event.get("name") or event.get("by", ""),
                 date=say_date(when, turn.language, today=_now(turn).date()))
    else:
        turn.say("st.prompt.tts")
    return None


@handler("staff_hear", events=("heard", "no_prompt", SIGNED_OUT))
@signed_in
def staff_hear(turn: Turn, value, staff: Staff) -> Outcome:
    pid = turn.vars.get("_pid")
    if not pid:
        return Outcome(event="no_prompt")
    lang = _work(turn)
    spoken = turn.services.prompts.spoken(pid, lang)   # the system's copy, or the computer voice
    turn.say_text(spoken.text, audio=spoken.audio, lang=lang)   # a Spanish prompt in the Spanish voice
    turn.vars["_quiet"] = 1
    return Outcome(event="heard")


@handler("staff_rollback", events=("rolled_back", "nothing_to_roll_back", "no_prompt", SIGNED_OUT))
@signed_in
def staff_rollback(turn: Turn, value, staff: Staff) -> Outcome:
    pid = turn.vars.get("_pid")
    if not pid:
        return Outcome(event="no_prompt")
    lang = _work(turn)
    try:
        version = turn.services.library.rollback(pid, lang, _who(staff), _now(turn))
    except NothingToRollBack:
        turn.say("st.rollback.none")
        turn.vars["_quiet"] = 1
        return Outcome(event="nothing_to_roll_back")
    log.info("staff line: %s rolled %s (%s) back to version %d", staff.id, pid, lang, version)
    if version:
        turn.say("st.rollback.done", version=version)
    else:
        turn.say("st.rollback.tts")
    turn.vars["_quiet"] = 1
    return Outcome(event="rolled_back")


# --- recording, listening back, keeping ----------------------------------------------------------
@handler("staff_recorded", events=("recorded", SIGNED_OUT))
@signed_in
def staff_recorded(turn: Turn, url: str, staff: Staff) -> Outcome:
    try:
        recordings.check_url(url, turn.services.config["TWILIO_ACCOUNT_SID"])
    except recordings.RecordingError:
        return Outcome(retry="st.record.bad")
    turn.vars["_rec"] = url
    turn.vars["_rec_new"] = 1    # not played yet: staff_review waits a moment before the first play
    return Outcome(event="recorded")


@handler("staff_review", events=("no_recording", SIGNED_OUT))
@signed_in
def staff_review(turn: Turn, value, staff: Staff) -> Outcome | None:
    """Play the fresh recording from Twilio (not downloaded yet: it is only being reviewed)."""
    url = turn.vars.get("_rec")
    if not url:
        return Outcome(event="no_recording")
    turn.say("st.review.intro")
    if turn.vars.pop("_rec_new", None):
        # Twilio asks for <Record>'s action before it has always finished storing the file, and a
        # <Play> of a recording not there yet is silence. A short pause the first time (with the
        # sentence above, about two seconds) gives it that moment; a repeat with * plays at once.
        # MP3: smaller than the WAV the bare URL gives, so it starts sooner.
        turn.pause(REVIEW_PAUSE)
    turn.say_text("", audio=recordings.mp3_url(url))
    return None


def _back(turn: Turn, prompt_event: str, announcement_event: str) -> Outcome:
    """Back to what is being worked on: a prompt, or else the announcements."""
    turn.vars["_quiet"] = 1   # straight to the choices: the status would not show the kept one yet
    return Outcome(event=prompt_event if turn.vars.get("_target") == "prompt" else announcement_event)


@handler("staff_keep", events=("kept_prompt", "kept_announcement", "no_recording_prompt",
                               "no_recording_announcement", "purpose_unknown", SIGNED_OUT))
@signed_in
def staff_keep(turn: Turn, value, staff: Staff) -> Outcome:
    url = turn.vars.pop("_rec", None)
    if not url:
        return _back(turn, "no_recording_prompt", "no_recording_announcement")
    # The stamp orders this recording among staff's changes: if its download is late, it does not go
    # live over a newer recording, a rollback or a clear made after this moment.
    payload = {"url": url, "lang": _work(turn), "by": staff.id, "name": staff.name,
               "at": _now(turn).isoformat(), "seq": turn.services.library.stamp()}
    if turn.vars.get("_target") == "prompt" and turn.vars.get("_pid"):
        payload.update(what="prompt", pid=turn.vars["_pid"])
    elif turn.vars.get("_target") == "announcement" and turn.vars.get("_ann_lines"):
        payload.update(what="announcement", lines=turn.vars["_ann_lines"], until=turn.vars.get("_until"))
    else:  # not knowing what the recording is for, publish nothing
        return Outcome(event="purpose_unknown")
    jobs.enqueue(turn.services.redis, JOB, payload)
    log.info("staff line: %s kept a recording (%s %s)", staff.id, payload["what"],
             payload.get("pid") or ",".join(payload["lines"]))
    turn.say("st.kept")
    return _back(turn, "kept_prompt", "kept_announcement")


@handler("staff_cancel", events=("cancelled_prompt", "cancelled_announcement", SIGNED_OUT))
@signed_in
def staff_cancel(turn: Turn, value, staff: Staff) -> Outcome:
    turn.vars.pop("_rec", None)
    turn.say("st.cancelled")
    return _back(turn, "cancelled_prompt", "cancelled_announcement")


# --- announcements -------------------------------------------------------------------------------
@handler("staff_ann_status", events=(SIGNED_OUT,))
@signed_in
def staff_ann_status(turn: Turn, value, staff: Staff) -> Outcome | None:
    turn.vars["_target"] = "announcement"
    if turn.vars.pop("_quiet", None):
        return None
    turn.say("st.ann.intro")
    mirror = turn.services.published
    for line in ANN_LINES:
        rec = mirror.announcement(line, _work(turn))
        name = _line_name(turn, line)
        if rec is None:
            turn.say("st.ann.none", line=name)
        elif rec.get("until"):
            turn.say("st.ann.on_until", line=name, date=_say_until(turn, rec["until"]))
        else:
            turn.say("st.ann.on", line=name)
    return None


@handler("staff_ann_new", events=("lines_chosen", SIGNED_OUT))
@signed_in
def staff_ann_new(turn: Turn, value, staff: Staff) -> Outcome:
    turn.vars.update(_target="announcement", _ann_lines=_node_lines(turn))
    turn.vars.pop("_until", None)   # "*" at the end date skips straight to recording: no end date
    return Outcome(event="lines_chosen")


@handler("staff_ann_until", events=("end_date_set", SIGNED_OUT))
@signed_in
def staff_ann_until(turn: Turn, value: str, staff: Staff) -> Outcome:
    until = last_day(value, _now(turn).date())
    if until is None:
        return Outcome(retry="st.ann.until.bad", fields={"digits": say_digits(value)})
    turn.vars["_until"] = until.isoformat()
    turn.say("st.ann.until.ok", date=_say_until(turn, until.isoformat()))
    return Outcome(event="end_date_set")


@handler("staff_ann_hear", events=("heard", SIGNED_OUT))
@signed_in
def staff_ann_hear(turn: Turn, value, staff: Staff) -> Outcome:
    mirror = turn.services.published
    heard = False
    for line in ANN_LINES:
        rec = mirror.announcement(line, _work(turn))
        if rec is not None:
            turn.say("st.ann.hear.line", line=_line_name(turn, line))
            turn.say_text("", audio=rec["url"])
            heard = True
    if not heard:
        turn.say("st.ann.hear.none")
    turn.vars["_quiet"] = 1
    return Outcome(event="heard")


@handler("staff_ann_clear", events=("cleared", SIGNED_OUT))
@signed_in
def staff_ann_clear(turn: Turn, value, staff: Staff) -> Outcome:
    lines, lang = _node_lines(turn), _work(turn)
    cleared = turn.services.library.clear_announcement(lines, lang, _who(staff), _now(turn))
    log.info("staff line: %s cleared the %s announcement on %s", staff.id, lang, ",".join(lines))
    turn.say("st.ann.cleared" if cleared else "st.ann.cleared_none")
    return Outcome(event="cleared")


def last_day(mmdd: str, today: date) -> date | None:
    """"1226" -> the next December 26 from `today` (today included); None if it is not a date."""
    if len(mmdd) != 4 or not mmdd.isdigit():
        return None
    month, day = int(mmdd[:2]), int(mmdd[2:])
    for year in (today.year, today.year + 1, today.year + 2, today.year + 3, today.year + 4):
        try:
            d = date(year, month, day)
        except ValueError:
            if not 1 <= month <= 12 or not 1 <= day <= 31:
                return None
            continue  # February 29 of a year that has none: try the next
        if d >= today:
            return d
    return None


def _say_until(turn: Turn, iso: str) -> str:
    return say_date(date.fromisoformat(iso), turn.language, today=_now(turn).date())
