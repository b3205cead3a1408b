"""Issue 4: parents in prison or jail ask SES to change their order by phone, end to end.

Calls go through the simulated phone; what staff then see goes through `ivr requests ...` (ivr.cli.main),
reading REDIS_URL like the server does.
"""

from __future__ import annotations

import logging
import re
import shutil

import pytest
import redis
import yaml

from ivr import settings
from ivr.callflow import flow
from ivr.callflow.handler import events_of
from ivr.callflow.simphone import Transport
from ivr.cli.tree import markdown
from ivr.redact import mask_phone
from ivr.settings import DEV_AUTH_TOKEN
from tests.conftest import LINES
from tests.walk import everything_in, spoken_ref

YORK = "+19595550113"          # York CI's placeholder inmate-phone caller ID (config/facilities.yaml)
SHARED = "+19595550120"        # an inmate phone that does not tell the facility
INMATE = "7654321"
CASE = "246813579"


def listed(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


# --- the whole path ------------------------------------------------------------------------------------

def test_a_facility_caller_walks_the_path_and_staff_find_and_finish_the_request(call, staff, prompts):
    c = call("callcenter", ["-", "1", f"{INMATE}#", "1", f"{CASE}#", "1", "record"], caller=YORK)
    said = c.said
    # Offered first, with Spanish still on offer, and no main menu in the way.
    assert said.startswith(prompts.text("inm.welcome", "en"))
    assert "Para español, oprima 2." in said
    assert prompts.text("cc.main.intro", "en") not in said
    # The facts, in plain words, the court's limit among them before the caller can press 1 to ask; what
    # the court looks at is behind 2 (tests/test_timing.py).
    for fact in ("keeps running while you are in prison or jail", "will not lower your order if your crime "
                 "was against your child", "S E S does this at no charge", "file it yourself"):
        assert fact in said
    assert "To hear what the court will look at, press 2. " in said
    # Keyed entries read back; the facility was not asked: the caller ID told it.
    assert "You entered 7 6 5 4 3 2 1." in said
    assert "You entered 2 4 6, 8 1 3, 5 7 9." in said
    assert prompts.text("inm.facility.ask", "en") not in said
    # The reference twice, digit by digit, then what happens next, then goodbye.
    ref = spoken_ref(said)
    spaced = f"{' '.join(ref[:3])}, {' '.join(ref[3:])}"
    assert said.count(spaced) == 2
    assert "S E S staff will review your request." in said and c.hung_up

    rc, out, _ = staff("list")
    assert rc == 0
    line = listed(out)[ref]
    assert "York CI" in line and "complete" in line and INMATE not in line    # the list masks it
    rc, out, _ = staff("show", ref)
    assert rc == 0
    assert f"inmate number:       {INMATE}" in out
    assert f"case/docket number:  {CASE}" in out
    assert "York CI (from caller ID)" in out
    assert "not downloaded yet" in out and "twilio.com" not in out and "Recordings/RE" not in out
    assert "facility caller ID" in out and "who called:          the parent" in out

    assert staff("take", ref, "--by", "4001")[0] == 0
    rc, _, err = staff("take", ref, "--by", "4002")
    assert rc == 1 and "already taken by 4001" in err
    rc, _, err = staff("done", ref, "--by", "4002")
    assert rc == 1 and "taken by 4001" in err
    assert staff("done", ref, "--by", "4001")[0] == 0
    assert ref not in listed(staff("list")[1])
    assert ref in listed(staff("list", "--all")[1])
    history = staff("show", ref)[1].split("history:")[1]
    assert re.search(r"4001 Ana Ruiz\s+taken", history) and re.search(r"4001 Ana Ruiz\s+done", history)
    assert re.search(r"caller\s+created", history)


def test_from_the_main_menu_in_spanish_with_the_facility_said_by_name(call, staff, prompts):
    keys = ["2", "4", "1", "1", "123456#", "1", "say estoy en Cheshire", "1", "*", "grabar"]
    c = call("callcenter", keys, caller="+18605550177")
    said = c.said
    assert "Para un padre o madre preso, oprima 4." in said
    assert prompts.text("inm.facts", "es") in said
    assert "Tengo la Institución Correccional de Cheshire." in said
    ref = re.search(r"número de solicitud es (\d) (\d) (\d), (\d) (\d) (\d)", said)
    assert ref and said.count("número de solicitud es") == 2
    ref = "".join(ref.groups())
    out = staff("show", ref)[1]
    assert "Cheshire CI (from speech)" in out and "language:            Spanish" in out
    assert "case/docket number:  (not given)" in out and "main menu" in out


def test_the_facility_spelled_on_the_keypad_and_an_ambiguous_spelling(call, staff, prompts):
    # 4 2 7 is both GARner and HARtford: one more letter (4 2 7 8, HART) settles it.
    keys = ["-", "1", "55555#", "1", "427#", "4278#", "1", "*", "-", "-"]
    c = call("callcenter", keys, caller=SHARED)
    assert prompts.text("inm.welcome", "en") in c.said        # a shared inmate line is still a facility
    assert prompts.text("inm.facility.ask", "en") in c.said   # ... that does not say which one
    assert "That could be Garner Correctional Institution or Hartford Correctional Center." in c.said
    assert "I have Hartford Correctional Center." in c.said
    # Silence at the message, twice: no message, and the request still finishes.
    assert c.said.count(prompts.text("record.none", "en")) == 1
    ref = spoken_ref(c.said)
    out = staff("show", ref)[1]
    assert "Hartford CC (from keypad)" in out and "message:             no message" in out


def test_a_facility_not_found_twice_moves_on_and_star_skips_it(call, prompts, staff):
    c = call("callcenter", ["-", "4", "1", "1", "55555#", "1", "say purple elephants", "say nowhere", "*", "-", "-"])
    assert prompts.text("inm.facility.not_found", "en") in c.said
    assert prompts.text("inm.facility.later", "en") in c.said
    assert prompts.text("inm.case.ask", "en") in c.said
    assert "facility:            (not given)" in staff("show", spoken_ref(c.said))[1]
    c = call("callcenter", ["-", "4", "2", "1", "55555#", "1", "*", "*", "-", "-"])
    assert "facility:            (not given)" in staff("show", spoken_ref(c.said))[1]


# --- who is calling: the parent, or someone for them ----------------------------------------------------

# What only the parent should hear: it speaks to them as the one in prison or jail.
TO_THE_PARENT = {"en": ["while you are in prison", "say your full name", "your date of birth",
                        "review your request", "If you are moved or released"],
                 "es": ["mientras usted está en prisión", "diga su nombre completo", "su fecha de nacimiento",
                        "revisará su solicitud", "Si cambia de prisión"]}
FOR_THE_PARENT = ["inm.facts.for", "inm.opt.start.for", "inm.message.ask.for"]
AS_THE_PARENT = ["inm.facts", "inm.opt.start", "inm.message.ask"]


def intake(who_key: str, lang: str = "en") -> list[str]:
    """Main menu -> prison or jail -> who is calling -> start -> a full request with a message."""
    return ["2" if lang == "es" else "-", "4", who_key, "1", f"{INMATE}#", "1", "say York", "1",
            f"{CASE}#", "1", "record"]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_someone_calling_for_the_parent_hears_about_the_parent_and_the_request_says_so(call, prompts, staff,
                                                                                       redis_client, lang):
    c = call("callcenter", intake("2", lang))
    said = c.said
    assert prompts.text("inm.who", lang) in said                     # asked once, from the main menu
    assert said.count(prompts.text("inm.who", lang)) == 1
    for pid in FOR_THE_PARENT:
        assert prompts.text(pid, lang) in said, pid
    for pid in AS_THE_PARENT:
        assert prompts.text(pid, lang) not in said, pid
    for words in TO_THE_PARENT[lang]:
        assert words not in said, words
    ref = re.search(r"(?:request number is|número de solicitud es) (\d) (\d) (\d), (\d) (\d) (\d)", said)
    ref = "".join(ref.groups())
    spaced = f"{' '.join(ref[:3])}, {' '.join(ref[3:])}"
    done = prompts.text("inm.done.for", lang, ref=spaced, number="1, 8 0 0, 2 2 8, 5 4 3 7")
    assert done in said and c.hung_up
    # The intake is the same: the inmate number, facility and case number are kept as for a parent.
    assert redis_client.hget(f"ivr:req:{ref}", "who_called") == b"for the parent"
    out = staff("show", ref)[1]
    assert "who called:          someone calling for the parent" in out
    assert f"inmate number:       {INMATE}" in out and f"case/docket number:  {CASE}" in out
    assert "York CI (from speech)" in out and "complete" in out


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_parent_calling_from_another_phone_is_spoken_to_as_the_parent(call, prompts, redis_client, lang):
    c = call("callcenter", intake("1", lang))
    said = c.said
    assert prompts.text("inm.who", lang) in said
    for pid in AS_THE_PARENT:
        assert prompts.text(pid, lang) in said, pid
    for pid in FOR_THE_PARENT:
        assert prompts.text(pid, lang) not in said, pid
    assert all(words in said for words in TO_THE_PARENT[lang])
    ref = redis_client.zrange("ivr:req:all", 0, -1)[0].decode()
    assert redis_client.hget(f"ivr:req:{ref}", "who_called") == b"parent"


def test_an_inmate_phone_is_the_parent_and_is_not_asked(call, prompts, redis_client, staff):
    c = call("callcenter", ["-", "1", f"{INMATE}#", "1", "*", "record"], caller=YORK)
    assert prompts.text("inm.who", "en") not in c.said
    assert prompts.text("inm.facts", "en") in c.said and prompts.text("inm.message.ask", "en") in c.said
    ref = spoken_ref(c.said)
    assert redis_client.hget(f"ivr:req:{ref}", "who_called") == b"parent"
    rc, out, _ = staff("export")
    assert rc == 0 and "who_called" in out.splitlines()[0] and ",parent," in out


@pytest.mark.parametrize("lang, said, who", [
    ("en", "say I am calling for my son", b"for the parent"), ("en", "say it's for me", b"parent"),
    ("en", "say no", b"for the parent"), ("en", "say I am calling about my husband", b"for the parent"),
    ("en", "say I am his wife", b"for the parent"), ("en", "say yes that's me", b"parent"),
    ("es", "say es para mi esposo", b"for the parent"), ("es", "say yo soy su esposa", b"for the parent"),
    ("es", "say sí, soy yo", b"parent"), ("en", "say I am calling for myself", b"parent"),
    ("en", "say calling about my own order", b"parent"), ("es", "say llamo por mí mismo", b"parent")])
def test_who_is_calling_can_be_said(call, redis_client, lang, said, who):
    call("callcenter", ["-" if lang == "en" else "2", "4", said, "1", f"{INMATE}#", "1"])
    ref = redis_client.zrange("ivr:req:all", 0, -1)[0].decode()
    assert redis_client.hget(f"ivr:req:{ref}", "who_called") == who


def test_star_at_the_case_number_still_reaches_the_right_message(call, prompts):
    c = call("callcenter", ["-", "4", "2", "1", f"{INMATE}#", "1", "*", "*", "record"])
    assert prompts.text("inm.message.ask.for", "en") in c.said
    assert prompts.text("inm.message.ask", "en") not in c.said


def test_changing_ones_mind_after_the_main_menu_counts_the_last_answer(call, prompts, redis_client):
    # For the parent, then back to the main menu (9), and this time as the parent.
    c = call("callcenter", ["-", "4", "2", "9", "4", "1", "1", f"{INMATE}#", "1", "*", "*", "record"])
    assert prompts.text("inm.message.ask", "en") in c.said and "review your request" in c.said
    ref = redis_client.zrange("ivr:req:all", 0, -1)[0].decode()
    assert redis_client.hget(f"ivr:req:{ref}", "who_called") == b"parent"


def test_a_facility_caller_can_still_reach_the_main_menu_and_a_person(call, prompts):
    c = call("callcenter", ["-", "9"], caller=YORK)
    assert prompts.text("cc.main.intro", "en") in c.said_after(2)
    c = call("callcenter", ["-", "0"], caller=YORK)
    assert c.dialed == ["+18605696233"]


@pytest.mark.parametrize("caller", ["anonymous", "Restricted", "+266696687", "", "not a number",
                                    "+1860555", "client:alice", "sip:inmate@10.0.0.1", "9" * 60])
def test_withheld_or_odd_caller_ids_get_the_normal_greeting(call, prompts, caller):
    c = call("callcenter", ["-"], caller=caller)
    assert all(s == 200 for s in c.statuses)
    assert c.said.startswith(prompts.text("cc.welcome", "en"))
    assert prompts.text("inm.welcome", "en") not in c.said


def test_a_facility_number_written_any_way_is_recognised(call, prompts):
    for caller in ("(959) 555-0113", "9595550113", "+1 959 555 0113"):
        assert call("callcenter", ["-"], caller=caller).said.startswith(prompts.text("inm.welcome", "en"))


def test_a_facility_calling_the_payment_line_gets_the_payment_line(call, prompts):
    c = call("payments", ["-"], caller=YORK)
    assert prompts.text("inm.welcome", "en") not in c.said


# --- bad input at each step --------------------------------------------------------------------------

def test_the_inmate_number_too_short_too_long_silent_or_skipped_is_asked_again(call, prompts, staff):
    c = call("callcenter", ["-", "1", "12#", "123456789#", f"{INMATE}#", "1", "*", "-", "-"], caller=YORK)
    assert "You entered 2 digits. Please enter 5 to 8 digits." in c.said
    assert "You entered 9 digits. Please enter 5 to 8 digits." in c.said
    assert prompts.text("inm.number.short", "en") in c.said        # a reprompt is the short question
    assert INMATE in staff("show", spoken_ref(c.said))[1]
    c = call("callcenter", ["-", "1", "-", "*", f"{INMATE}#", "1", "*", "-", "-"], caller=YORK)
    assert prompts.text("collect.no_input", "en") in c.said         # a question: not "a choice"
    # The inmate number cannot be skipped: star says the question again, as it does everywhere.
    assert prompts.text("collect.digits_only", "en") not in c.said
    assert c.said.count(prompts.text("inm.number.ask", "en")) == 2
    assert spoken_ref(c.said)
    # Three failed tries in a row end with a person, not a loop; nothing half-made is stored.
    c = call("callcenter", ["-", "1", "12#", "-", "1#"], caller=YORK)
    assert c.dialed == ["+18605696233"]
    assert len(listed(staff("list")[1])) == 2


def test_the_read_back_can_be_refused_and_answered_badly(call, staff):
    c = call("callcenter", ["-", "1", "11111#", "7", "2", f"{INMATE}#", "1", "12#", "*", "-", "-"], caller=YORK)
    said = c.said
    assert "Please press 1 to confirm, or 2 to enter it again." in said
    assert "You entered 2 digits. Please enter 5 to 15 digits." in said      # case number too short
    out = staff("show", spoken_ref(said))[1]
    assert f"inmate number:       {INMATE}" in out


def test_a_hang_up_after_the_inmate_number_keeps_what_was_given(call, staff):
    c = call("callcenter", ["-", "1", f"{INMATE}#", "1"], caller=YORK)   # then the caller hangs up
    assert "request number" not in c.said
    rc, out, _ = staff("list")
    assert rc == 0 and len(listed(out)) == 1
    ref, line = next(iter(listed(out).items()))
    assert "INCOMPLETE (call ended after the inmate number)" in line
    show = staff("show", ref)[1]
    assert f"inmate number:       {INMATE}" in show and "York CI" in show


def test_a_hang_up_after_the_case_number_keeps_the_case_and_facility(call, staff):
    call("callcenter", ["-", "4", "1", "1", f"{INMATE}#", "1", "say York", "1", f"{CASE}#", "1"])
    ref, line = next(iter(listed(staff("list")[1]).items()))
    assert "INCOMPLETE (call ended after the case number)" in line
    show = staff("show", ref)[1]
    assert CASE in show and "York CI (from speech)" in show


def test_a_hang_up_before_the_number_is_confirmed_stores_nothing(call, staff, redis_client):
    call("callcenter", ["-", "1", f"{INMATE}#"], caller=YORK)
    assert staff("list")[1] == ""
    assert not redis_client.keys("ivr:req:*")


def test_a_caller_still_on_the_line_is_shown_as_such(app, staff):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    base = {"CallSid": "CA" + "5" * 32, "To": LINES["callcenter"], "From": YORK}
    transport.post("/voice", base)
    for seq, digits in enumerate(["", "1", INMATE, "1"], start=1):
        transport.post(f"/voice/step?s={seq}", {**base, "Digits": digits})
    assert "caller still on the line" in staff("list")[1]
    transport.post("/voice/status", {**base, "CallStatus": "completed"})
    assert "INCOMPLETE" in staff("list")[1]


def test_the_reference_is_never_said_when_the_request_could_not_be_stored(app, call, prompts, monkeypatch):
    store = app.extensions["ivr"].services.requests

    def down(ref):
        raise redis.ConnectionError("Redis went away")
    monkeypatch.setattr(store, "finish", down)
    c = call("callcenter", ["-", "1", f"{INMATE}#", "1", "*", "record"], caller=YORK)
    assert "request number" not in c.said
    assert prompts.text("inm.store_failed", "en", number="1, 8 0 0, 2 2 8, 5 4 3 7") in c.said
    assert c.dialed == ["+18605696233"]                      # open hours: a person takes it from there


# --- retries, idempotency, secrets --------------------------------------------------------------------

def test_a_replayed_webhook_or_a_replayed_call_makes_no_second_request(app, redis_client, call):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    sid = "CA" + "6" * 32
    base = {"CallSid": sid, "To": LINES["callcenter"], "From": YORK}
    transport.post("/voice", base)
    for seq, digits in enumerate(["", "1", INMATE], start=1):
        transport.post(f"/voice/step?s={seq}", {**base, "Digits": digits})
    first = transport.post("/voice/step?s=4", {**base, "Digits": "1"})      # confirm: the request is made
    again = transport.post("/voice/step?s=4", {**base, "Digits": "1"})      # Twilio retries it
    assert first == again
    transport.post("/voice/step?s=5", {**base, "Digits": "*"})              # on to the message
    transport.post("/voice/step?s=4", {**base, "Digits": "1"})              # a late, stale retry
    assert redis_client.zcard("ivr:req:all") == 1
    # The same CallSid walking the path again (state lost, Twilio re-posting) still has one request.
    call("callcenter", ["-", "1", "1111111#", "1", "*", "-", "-"], caller=YORK, sid=sid)
    assert redis_client.zcard("ivr:req:all") == 1
    ref = redis_client.zrange("ivr:req:all", 0, -1)[0].decode()
    store = app.extensions["ivr"].services.requests
    assert store.get(ref)["inmate"] == "1111111"          # the newer number, with the change audited
    assert [e.action for e in store.history(ref)].count("inmate number given again") == 1


def test_redis_holds_no_inmate_or_case_number_and_logs_neither(call, redis_client, caplog):
    caplog.set_level(logging.DEBUG)
    # A hang-up during the read-back leaves nothing either: the call's state is removed at the end.
    call("callcenter", ["-", "1", f"{INMATE}#", "1", f"{CASE}#", "1", "record"], caller=YORK)
    call("callcenter", ["-", "1", "8642097#"], caller=YORK)
    dump = everything_in(redis_client)
    assert dump and b"ivr:req:" in dump
    for secret in (INMATE, CASE, "8642097", "959555"):
        assert secret.encode() not in dump, f"{secret} is readable in Redis"
    logged = " ".join(r.getMessage() for r in caplog.records)
    for secret in (INMATE, CASE, "8642097"):
        assert secret not in logged


# --- configuration ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("numbers, message", [
    ('["+1 959 555 01"]', "is not a valid phone number"),
    ('["not a phone"]', "is not a phone number"),
    ('["+19595550113", "(959) 555-0113"]', "is listed twice"),
])
def test_a_bad_facility_number_stops_start_up_naming_the_file(make_app, tmp_path, numbers, message):
    config_dir = tmp_path / "config"
    shutil.copytree(settings.from_env()["CONFIG_DIR"], config_dir)
    path = config_dir / "facilities.yaml"
    text = path.read_text().replace('numbers: ["+19595550113"]', f"numbers: {numbers}")
    assert text != path.read_text()
    path.write_text(text)
    with pytest.raises(RuntimeError) as err:
        make_app(CONFIG_DIR=config_dir)
    assert str(path) in str(err.value) and message in str(err.value) and "york" in str(err.value)


def test_every_facility_can_be_said_and_spelled_and_its_number_is_recognised(app):
    facilities = app.extensions["ivr"].services.facilities
    assert len(facilities.by_id) >= 13
    for f in facilities.by_id.values():
        assert facilities.match_speech(f"I am at {f.words[0]}") == [f]
        assert facilities.match_keys(f.keypad[0][:5]) == [f], f.id
        assert facilities.for_caller(next(n for n, fid in facilities.numbers.items() if fid == f.id)) == (True, f)
    assert "macdougall" in app.extensions["ivr"].engine.hints["facilities"]
    assert facilities.match_speech("new haven")[0].id == "new-haven"
    assert [f.id for f in facilities.match_speech("chesire")] == ["cheshire"]     # a recogniser's misspelling


def test_silence_at_an_optional_question_goes_on_and_the_caller_still_gets_a_reference(call, prompts, redis_client):
    """The request is stored once the inmate number is confirmed: three silences at the case number must
    not end the call before the caller hears the reference."""
    c = call("callcenter", ["-", "1", f"{INMATE}#", "1", "-", "-", "-", "-", "-"], caller=YORK)
    said = c.said
    assert prompts.text("collect.skipped", "en") in said
    assert prompts.text("menu.giveup_open", "en") not in said        # the clock is in open hours
    ref = spoken_ref(said)
    assert redis_client.hget(f"ivr:req:{ref}", "status") is not None
    assert not c.dialed


@pytest.mark.parametrize("key, then", [("*", "collect.confirm"), ("9", "cc.main.intro"), ("0", None)])
def test_the_keys_that_work_everywhere_work_when_a_number_is_read_back(call, prompts, key, then):
    c = call("callcenter", ["-", "4", "2", "1", f"{INMATE}#", key])
    after = c.said_after(6)                             # what the key brought, after the first read-back
    assert prompts.text("collect.confirm_invalid", "en") not in after
    if key == "0":
        assert c.dialed                                 # a person (the clock is in open hours)
    else:
        assert prompts.text(then, "en", digits="7 6 5 4 3 2 1").split(".")[0] in after


def test_zero_on_the_prison_path_when_no_one_answers_offers_to_take_the_request(call, prompts, clock):
    clock.set("2026-11-28 23:30")                       # Saturday night
    c = call("callcenter", ["-", "0", "1", f"{INMATE}#", "1", "*", "-", "-"], caller=YORK)
    after = c.said_after(2)
    assert "People answer Monday through Friday" in after
    assert prompts.text("inm.person.offer", "en") in after
    assert "To start the request now, press 1." in after
    assert prompts.text("inm.number.ask", "en") in c.said_after(3)
    assert spoken_ref(c.said) and not c.dialed


def test_zero_before_saying_who_is_calling_still_asks_it_before_the_request(call, prompts, clock, redis_client):
    clock.set("2026-11-28 23:30")                       # Saturday night: no one to take the call
    c = call("callcenter", ["-", "4", "0", "1", "2", "1", f"{INMATE}#", "1"])
    assert prompts.text("inm.person.offer", "en") in c.said_after(3)
    assert prompts.text("inm.who", "en") in c.said_after(4)       # asked now, not skipped
    (ref,) = redis_client.zrange("ivr:req:all", 0, -1)           # stored once the number is confirmed
    assert redis_client.hget(f"ivr:req:{ref.decode()}", "who_called") == b"for the parent"


def test_zero_on_the_prison_path_in_open_hours_reaches_a_person(call, prompts):
    c = call("callcenter", ["-", "0"], caller=YORK)
    assert c.dialed and prompts.text("inm.person.offer", "en") not in c.said


@pytest.mark.parametrize("key", ["9", "0"])
def test_leaving_after_the_request_is_stored_says_its_reference_first(call, prompts, redis_client, key):
    """9 or 0 at the facility or case number question: the request is stored already, so the caller
    hears its number before going to the main menu or a person."""
    c = call("callcenter", ["-", "1", f"{INMATE}#", "1", key], caller=SHARED)
    after = c.said_after(4)
    m = re.search(r"Its number is (\d) (\d) (\d), (\d) (\d) (\d)", after)
    assert m, after
    ref = "".join(m.groups())
    assert redis_client.hget(f"ivr:req:{ref}", "status") is not None
    if key == "9":
        assert prompts.text("cc.main.intro", "en") in after.split("Again,")[1]
    else:
        assert c.dialed                                  # open hours: a person


# --- how many requests one caller ID may leave (issue 13) -------------------------------------------------

FROM_MENU = ["-", "4", "1", "1", f"{INMATE}#", "1"]      # main menu -> prison or jail -> the request is stored
CAPPED = {"en": "we cannot take another request from this phone today",
          "es": "hoy no podemos recibir otra solicitud desde este teléfono"}


def refs(redis_client) -> list[str]:
    return [r.decode() for r in redis_client.zrange("ivr:req:all", 0, -1)]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_one_caller_id_cannot_flood_the_queue_and_hears_what_to_do_instead(call, redis_client, staff, caplog,
                                                                            clock, lang):
    caplog.set_level(logging.INFO)
    me = "+18605550177"
    keys = (["2"] if lang == "es" else ["-"]) + FROM_MENU[1:]
    heard = [call("callcenter", keys, caller=me).said for _ in range(8)]
    assert len(refs(redis_client)) == 5                      # config/facilities.yaml: 5 a day per caller ID
    assert not any(CAPPED[lang] in said for said in heard[:5])
    for said in heard[5:]:
        assert CAPPED[lang] in said
        assert "1, 8 0 0, 2 2 8, 5 4 3 7" in said and ("Monday through Friday" in said or "lunes a viernes" in said)
    # Nothing already stored is lost: staff see the five, each with its inmate number.
    listing = listed(staff("list")[1])
    assert sorted(listing) == sorted(refs(redis_client))
    assert all(INMATE in staff("show", ref)[1] for ref in listing)
    # One alert, at error level, without the number in full.
    alerts = [r for r in caplog.records if r.levelno >= logging.ERROR and "cap" in r.getMessage()]
    assert len(alerts) == 1 and mask_phone(me) in alerts[0].getMessage()
    assert "5550177" not in caplog.text
    # Another caller ID is not affected; nor is the next day.
    assert CAPPED[lang] not in call("callcenter", keys, caller="+18605550188").said
    assert len(refs(redis_client)) == 6
    clock.set("2026-11-25 10:00")
    assert CAPPED[lang] not in call("callcenter", keys, caller=me).said
    assert len(refs(redis_client)) == 7


def test_replayed_webhooks_and_a_replayed_call_count_once(app, call, redis_client):
    me, sid = "+18605550166", "CA" + "7" * 32
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    base = {"CallSid": sid, "To": LINES["callcenter"], "From": me}
    transport.post("/voice", base)
    for seq, digits in enumerate(["", "4", "1", "1", INMATE], start=1):
        transport.post(f"/voice/step?s={seq}", {**base, "Digits": digits})
    for _ in range(4):                                       # the confirmation, and Twilio's retries of it
        transport.post("/voice/step?s=6", {**base, "Digits": "1"})
    call("callcenter", FROM_MENU, caller=me, sid=sid)        # the same CallSid walking the path again
    assert len(refs(redis_client)) == 1
    for _ in range(4):                                       # four more calls: five in all
        assert CAPPED["en"] not in call("callcenter", FROM_MENU, caller=me).said
    assert CAPPED["en"] in call("callcenter", FROM_MENU, caller=me).said
    assert len(refs(redis_client)) == 5


def test_a_facility_phone_has_its_own_higher_cap(make_app, tmp_path, redis_client, call):
    """A whole prison calls from its inmate phones: its cap is per facility (all its numbers together),
    set per facility or by the default; other facilities and ordinary callers keep their own."""
    config_dir = tmp_path / "config"
    shutil.copytree(settings.from_env()["CONFIG_DIR"], config_dir)
    path = config_dir / "facilities.yaml"
    text = path.read_text()
    text = text.replace('numbers: ["+19595550113"]        # PLACEHOLDER',
                        'numbers: ["+19595550113"]        # PLACEHOLDER\n    requests_per_day: 7')
    text = text.replace("per_caller: 5", "per_caller: 2")
    assert "requests_per_day: 7" in text and "per_caller: 2" in text
    path.write_text(text)
    app = make_app(CONFIG_DIR=config_dir)
    york = ["-", "1", f"{INMATE}#", "1"]
    heard = [call("callcenter", york, caller=YORK, target_app=app).said for _ in range(8)]
    assert not any(CAPPED["en"] in said for said in heard[:7]) and CAPPED["en"] in heard[7]
    assert len(refs(redis_client)) == 7
    cheshire = call("callcenter", york, caller="+19595550103", target_app=app)   # another facility
    assert CAPPED["en"] not in cheshire.said
    assert len(refs(redis_client)) == 8
    home = [call("callcenter", FROM_MENU, caller="+18605550155", target_app=app).said for _ in range(3)]
    assert CAPPED["en"] in home[2] and len(refs(redis_client)) == 10


@pytest.mark.parametrize("old, new, message", [
    ("per_caller: 5 ", "per_caller: -1 ", "request_caps.per_caller must be a whole number"),
    ("withheld: 100 ", "withheld: many ", "request_caps.withheld must be a whole number"),
    ("per_caller: 5 ", "per_callers: 5 ", "request_caps takes per_caller, per_facility and withheld"),
    ('numbers: ["+19595550113"]', 'numbers: ["+19595550113"]\n    requests_per_day: 2.5',
     "'york': requests_per_day must be a whole number"),
])
def test_a_bad_request_cap_stops_start_up_naming_the_file(make_app, tmp_path, old, new, message):
    config_dir = tmp_path / "config"
    shutil.copytree(settings.from_env()["CONFIG_DIR"], config_dir)
    path = config_dir / "facilities.yaml"
    text = path.read_text().replace(old, new, 1)
    assert text != path.read_text()
    path.write_text(text)
    with pytest.raises(RuntimeError) as err:
        make_app(CONFIG_DIR=config_dir)
    assert str(path) in str(err.value) and message in str(err.value)


# --- where each step leads is said in config/flows/inmate.yaml, not in code (issue 14) ----------------------

def test_every_step_of_the_inmate_path_names_its_ways_out(app):
    """Start-up checks every way out of every step against the flow file: none is left to code."""
    rt = app.extensions["ivr"]
    steps = {nid: node.get("handler") for nid, node in rt.flows.nodes.items()
             if node.file.endswith("inmate.yaml") and node.get("handler")}
    assert len(steps) > 10
    assert [nid for nid, name in steps.items() if events_of(rt.engine.handlers[name]) is None] == []


def test_where_a_caller_goes_when_the_request_cannot_be_stored_is_set_in_the_flow_file(
        make_app, tmp_path, call, prompts, monkeypatch):
    config_dir = tmp_path / "config"
    shutil.copytree(settings.from_env()["CONFIG_DIR"], config_dir)
    path = config_dir / "flows" / "inmate.yaml"
    doc = flow.read(path)
    doc["nodes"]["inm_finish"].setdefault("on", {})["not_stored"] = "cc_main"   # not a person: the main menu
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    app = make_app(CONFIG_DIR=config_dir)

    def down(ref):
        raise redis.ConnectionError("Redis went away")
    monkeypatch.setattr(app.extensions["ivr"].services.requests, "finish", down)
    c = call("callcenter", ["-", "1", f"{INMATE}#", "1", "*", "record"], caller=YORK, target_app=app)
    failed = prompts.text("inm.store_failed", "en", number="1, 8 0 0, 2 2 8, 5 4 3 7")
    assert failed in c.said and "request number" not in c.said
    assert prompts.text("cc.main.intro", "en") in c.said.split(failed)[1]
    assert c.dialed == []


def test_the_diagram_names_each_way_out_of_the_inmate_path_by_what_happened(app):
    rt = app.extensions["ivr"]
    drawn = markdown(rt.flows, rt.prompts, rt.directory).splitlines()
    for arrow in ('inm_to_message -- "parent" --> inm_message', 'inm_to_message -- "for_parent" --> inm_message_for',
                  'inm_number -- "capped" --> inm_capped', 'inm_number -- "not_stored" --> cc_agents',
                  'inm_person -- "open" --> cc_agents', 'inm_person -- "closed" --> inm_person_closed',
                  'inm_leave_home -- "left" --> cc_main', 'inm_leave_person -- "left" --> cc_agents'):
        assert "  " + arrow in drawn
