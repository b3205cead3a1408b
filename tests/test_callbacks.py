"""Issue 18: a call back when no person can take the call now, end to end.

Calls go through the simulated phone, in both languages; staff see and close the callbacks with
`ivr callbacks ...` (ivr.cli.main), reading REDIS_URL like the server does.
"""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis

from ivr.callflow.simphone import Phone, Transport
from ivr.domain.callbacks import NumberRefused, check_number, due_time
from ivr.domain.hours import Hours
from ivr.settings import DEV_AUTH_TOKEN, ROOT
from tests.conftest import LINES, TEST_REDIS_URL
from tests.walk import everything_in

TZ = ZoneInfo("America/New_York")
THANKSGIVING = "2026-11-26 10:00"        # a Thursday, a Connecticut legal holiday
SATURDAY_NIGHT = "2026-11-28 23:30"
CALLER = "+18605550199"                  # the simulated phone's caller ID
SPOKEN_CALLER = "8 6 0, 5 5 5, 0 1 9 9"
HARTFORD = ["5", "2", "1"]               # offices, Hartford area, the Hartford main office
LANG = {"en": "-", "es": "2"}
REF = {"en": r"Your reference number is (\d) (\d) (\d), (\d) (\d) (\d)",
       "es": r"Su número de referencia es (\d) (\d) (\d), (\d) (\d) (\d)"}
STAFF = ("471", "472")


def spoken_ref(said: str, lang: str = "en") -> str:
    m = re.search(REF[lang], said)
    assert m, f"no reference was said: {said[-400:]}"
    return "".join(m.groups())


@pytest.fixture
def cli(monkeypatch, capsys, redis_client, app, clock):
    """`ivr callbacks ...` as staff run it, on the calls' clock: (exit code, stdout, stderr). Two staff
    accounts exist."""
    from ivr.cli import callbacks as callbacks_cli
    from ivr.cli.main import main

    monkeypatch.setattr(callbacks_cli, "clock", clock)
    staffdb = app.extensions["ivr"].services.staffdb
    staffdb.add(STAFF[0], "Ana Ruiz", "582946", datetime.now(TZ))
    staffdb.add(STAFF[1], "Bob Lee", "693057", datetime.now(TZ))
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.delenv("IVR_SECRET_KEY", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["callbacks", *args])
        out, err = capsys.readouterr()
        return rc, out, err
    return run


def listed(out: str) -> dict[str, str]:
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


# --- the whole path ------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_holiday_caller_presses_0_leaves_a_callback_and_staff_close_it(call, cli, clock, prompts, redis_client,
                                                                          lang):
    clock.set(THANKSGIVING)
    c = call("callcenter", [LANG[lang], "0", "3", "1", "1", "1", "record"])
    said = c.said
    assert not c.dialed and c.hung_up
    assert prompts.text("xfer.closed_holiday.agents", lang, hours="").split(".")[0] in said
    option = prompts.text("menu.option", lang, option=prompts.text("xfer.opt.callback", lang), key=3)
    assert option in said                                  # "To have someone call you back ..., press 3."
    assert prompts.text("cb.caller_id", lang, number=SPOKEN_CALLER) in said     # the caller ID, read back
    ref = spoken_ref(said, lang)
    assert said.count(f"{' '.join(ref[:3])}, {' '.join(ref[3:])}") == 2        # said twice
    # When to expect it: the next business day (Friday), in the morning.
    when = {"en": "on Friday, November 27, in the morning", "es": "el viernes 27 de noviembre, en la mañana"}
    assert f"{SPOKEN_CALLER} {when[lang]}" in said
    assert said.endswith(prompts.text("cb.goodbye", lang))
    assert redis_client.xlen("ivr:jobs") == 1               # the message's download, queued with it

    rc, out, _ = cli("list")
    assert rc == 0
    line = listed(out)[ref]
    assert "due Fri 2026-11-27 morning" in line and f" {lang} " in line and "agents (on a holiday)" in line
    assert "+1********99" in line and "5550199" not in line                   # masked in lists
    rc, out, _ = cli("show", ref)
    assert rc == 0 and f"number to call:  {CALLER}" in out and "number from:     caller ID" in out
    assert "message:         not downloaded yet" in out and "twilio.com" not in out

    assert cli("take", ref, "--by", STAFF[0])[0] == 0
    rc, _, err = cli("take", ref, "--by", STAFF[1])
    assert rc == 1 and f"already taken by {STAFF[0]}" in err
    rc, _, err = cli("attempt", ref, "--result", "no_answer", "--by", STAFF[1])
    assert rc == 1 and f"taken by {STAFF[0]}" in err
    assert cli("attempt", ref, "--result", "no_answer", "--by", STAFF[0])[0] == 0
    assert cli("attempt", ref, "--result", "reached", "--by", STAFF[0])[0] == 0
    assert "2 attempt(s), last reached" in listed(cli("list")[1])[ref]
    assert cli("done", ref, "--by", STAFF[0])[0] == 0
    assert ref not in listed(cli("list")[1])
    assert "done" in listed(cli("list", "--all")[1])[ref]
    history = cli("show", ref)[1].split("history:")[1]
    for entry in (r"caller\s+asked", rf"{STAFF[0]}\s+taken", rf"{STAFF[0]}\s+attempt: no answer",
                  rf"{STAFF[0]}\s+attempt: reached", rf"{STAFF[0]}\s+done"):
        assert re.search(entry, history), entry


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_busy_transfer_turns_into_a_callback_to_a_number_keyed_twice(call, cli, prompts, lang):
    keys = [LANG[lang], *HARTFORD, "dial:busy", "3", "2", "2035550147#", "2035550147#", "2", "2"]
    c = call("callcenter", keys)
    said = c.said
    assert c.dialed == ["+18605668723"]
    assert prompts.text("cb.number.heard", lang, number="2 0 3, 5 5 5, 0 1 4 7") in said
    ref = spoken_ref(said, lang)
    when = {"en": "on Tuesday, November 24, in the afternoon", "es": "el martes 24 de noviembre, en la tarde"}
    assert when[lang] in said                              # 10 AM on a Tuesday: this afternoon
    out = cli("show", ref)[1]
    assert "number to call:  +12035550147" in out and "number from:     keyed" in out
    assert "for:             hartford" in out and "why:             line busy" in out
    assert "message:         no message" in out


def test_a_closed_office_offers_a_callback_from_that_office(call, cli, clock):
    clock.set(SATURDAY_NIGHT)
    c = call("callcenter", ["-", *HARTFORD, "3", "1", "1", "2"])
    assert "The Hartford main office is closed right now." in c.said
    out = cli("show", spoken_ref(c.said))[1]
    assert "for:             hartford" in out and "why:             after hours" in out
    assert "due:             Mon 2026-11-30 morning" in out


def test_giving_up_a_menu_when_no_one_answers_offers_a_callback(call, clock, prompts):
    clock.set(SATURDAY_NIGHT)
    c = call("callcenter", ["-", "7", "7", "7", "3", "1", "2", "2"])
    assert prompts.text("menu.giveup_closed.offer", "en") in c.said
    assert "in the afternoon" in c.said and spoken_ref(c.said)


# --- numbers ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("keyed, refusal", [
    ("9005551234", "cb.number.premium"), ("2039765555", "cb.number.premium"),
    ("8005551234", "cb.number.toll_free"), ("8885550000", "cb.number.toll_free"),
    ("4115551234", "cb.number.n11"), ("8609115555", "cb.number.n11"),
    ("1234567890", "cb.number.invalid"), ("7391846250", "cb.number.invalid"),
    ("9595550113", "cb.number.facility"),      # York CI's inmate phone (config/facilities.yaml)
])
def test_a_bad_number_is_refused_with_a_clear_sentence_and_asked_again(call, cli, clock, prompts, keyed, refusal):
    clock.set(SATURDAY_NIGHT)
    c = call("callcenter", ["-", "0", "3", "2", f"{keyed}#", "12035550147#", "2035550147#", "1", "2"])
    assert prompts.text(refusal, "en") in c.said
    assert prompts.text("cb.number.again", "en") in c.said_after(6)      # only for the good one
    assert "number to call:  +12035550147" in cli("show", spoken_ref(c.said))[1]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_two_different_numbers_are_not_taken(call, redis_client, prompts, clock, lang):
    clock.set(SATURDAY_NIGHT)
    c = call("callcenter", [LANG[lang], "0", "3", "2", "2035550147#", "2035550148#", "-"])
    assert prompts.text("cb.number.mismatch", lang) in c.said
    assert prompts.text("cb.number.ask", lang) in c.said_after(6)
    assert not redis_client.keys("ivr:cb:*")


@pytest.mark.parametrize("caller", ["anonymous", "+266696687", "", "+19595550113", "+18005551234"])
def test_a_withheld_inmate_or_toll_free_caller_id_is_not_offered_as_the_number(call, clock, prompts, cli, caller):
    clock.set(SATURDAY_NIGHT)
    keys = ["-", "0", "0", "3"] if caller == "+19595550113" else ["-", "0", "3"]   # a prison phone: its own path
    c = call("callcenter", keys + ["2035550147#", "2035550147#", "1", "2"], caller=caller)
    assert "We can call you back at" not in c.said
    assert prompts.text("cb.number.ask", "en") in c.said
    assert "number to call:  +12035550147" in cli("show", spoken_ref(c.said))[1]


@pytest.mark.parametrize("raw, expected", [
    ("2035550147", "+12035550147"), ("12035550147", "+12035550147"), ("(860) 555-0199", "+18605550199")])
def test_numbers_written_any_way_are_the_same_number(raw, expected):
    assert check_number(raw) == expected


@pytest.mark.parametrize("raw, reason", [("+441632960961", "invalid"), ("6135550123", "invalid"),
                                         ("911", "invalid"), ("9765551234", "invalid")])
def test_foreign_canadian_and_short_numbers_are_refused(raw, reason):
    with pytest.raises(NumberRefused) as refused:
        check_number(raw)
    assert refused.value.reason == reason


# --- one per number, caps, replays -----------------------------------------------------------------------

def test_a_second_request_for_the_same_number_updates_the_open_callback(call, cli, clock, prompts):
    clock.set(SATURDAY_NIGHT)
    first = spoken_ref(call("callcenter", ["-", "0", "3", "1", "1", "2"]).said)
    again = call("callcenter", ["-", "0", "3", "1", "2", "2"])
    assert prompts.text("cb.updated", "en") in again.said
    assert spoken_ref(again.said) == first
    assert list(listed(cli("list")[1])) == [first]
    assert "due:             Mon 2026-11-30 afternoon" in cli("show", first)[1]
    assert "asked again" in cli("show", first)[1]
    # Once it is done, the number may ask again: a new callback.
    cli("done", first, "--by", STAFF[0])
    assert spoken_ref(call("callcenter", ["-", "0", "3", "1", "1", "2"]).said) != first


def test_a_flood_from_one_caller_id_stops_at_the_cap(call, cli, clock, prompts, caplog, redis_client):
    """config/callbacks.yaml: 5 new callbacks a day from one caller ID; the sixth call hears so at once."""
    caplog.set_level(logging.INFO)
    clock.set(SATURDAY_NIGHT)
    me = "+18605550177"
    heard = [call("callcenter", ["-", "0", "3", "2", f"20355501{n:02d}#", f"20355501{n:02d}#", "1", "2"],
                  caller=me).said for n in range(7)]
    assert len(listed(cli("list")[1])) == 5
    capped = prompts.text("cb.capped", "en", hours="X", number="Y").split(".")[0]
    assert not any(capped in said for said in heard[:5])
    for said in heard[5:]:
        assert capped in said and prompts.text("cb.number.ask", "en") not in said    # told before keying
        assert "1, 8 0 0, 2 2 8, 5 4 3 7" in said
    alerts = [r for r in caplog.records if r.levelno >= logging.ERROR and "reached its cap" in r.getMessage()]
    assert len(alerts) == 1 and "+1********77" in alerts[0].getMessage() and "5550177" not in caplog.text
    # Another caller ID is not affected.
    assert spoken_ref(call("callcenter", ["-", "0", "3", "1", "1", "2"], caller="+18605550188").said)


def test_one_number_asked_for_by_many_callers_stops_at_its_cap(call, cli, clock, prompts, caplog):
    caplog.set_level(logging.INFO)
    clock.set(SATURDAY_NIGHT)
    keys = ["-", "0", "3", "2", "2035550147#", "2035550147#", "1", "2"]
    heard = [call("callcenter", keys, caller=f"+1860555016{n}").said for n in range(4)]
    refs = {spoken_ref(said) for said in heard[:3]}
    assert len(refs) == 1 and len(listed(cli("list")[1])) == 1    # one open callback per number
    assert prompts.text("cb.capped", "en", hours="X", number="Y").split(".")[0] in heard[3]
    alerts = [r for r in caplog.records if r.levelno >= logging.ERROR and "reached its cap" in r.getMessage()]
    assert len(alerts) == 1 and "+1********47" in alerts[0].getMessage()
    assert "2035550147" not in caplog.text


def test_replayed_webhooks_make_one_callback(app, redis_client, clock, call):
    clock.set(SATURDAY_NIGHT)
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"], caller=CALLER)
    phone.start()
    for key in ("-", "0", "3", "1"):
        phone.press(key)
    phone.press("1")                                  # morning: the callback is stored
    first = phone.repost()                            # Twilio retries that request
    second = phone.repost()
    assert first == second and first[0] == 200
    assert redis_client.zcard("ivr:cb:all") == 1
    phone.press("2")
    # The same CallSid walking the path again (state lost, Twilio re-posting): still one callback.
    call("callcenter", ["-", "0", "3", "1", "2", "2"], sid=phone.sid)
    assert redis_client.zcard("ivr:cb:all") == 1
    ref = redis_client.zrange("ivr:cb:all", 0, -1)[0].decode()
    assert redis_client.hget(f"ivr:cb:{ref}", "best") == b"afternoon"


# --- when it is due, expiry ---------------------------------------------------------------------------------

@pytest.mark.parametrize("now, best, due", [
    ("2026-11-26 10:00", "morning", "2026-11-27 08:30"),     # Thanksgiving: Friday
    ("2026-11-26 10:00", "afternoon", "2026-11-27 12:00"),
    ("2026-11-24 10:00", "morning", "2026-11-25 08:30"),     # a Tuesday morning: tomorrow morning
    ("2026-11-24 10:00", "afternoon", "2026-11-24 12:00"),   # ... or this afternoon
    ("2026-11-24 07:00", "morning", "2026-11-24 08:30"),     # before opening: this morning
    ("2026-12-24 17:00", "morning", "2026-12-28 08:30"),     # Christmas on a Friday, then the weekend
    ("2026-11-28 23:30", "afternoon", "2026-11-30 12:00"),   # Saturday night: Monday
    ("2027-07-02 16:45", "morning", "2027-07-06 08:30"),     # Independence Day observed Monday the 5th
])
def test_a_callback_is_due_on_the_next_business_morning_or_afternoon(now, best, due):
    hours = Hours.load(ROOT / "config" / "hours.yaml")
    at = datetime.fromisoformat(now).replace(tzinfo=TZ)
    got = due_time(hours, best, datetime.strptime("12:00", "%H:%M").time(), at)
    assert got == datetime.fromisoformat(due).replace(tzinfo=TZ)


def test_an_emergency_closure_day_is_not_a_business_day():
    base = Hours.load(ROOT / "config" / "hours.yaml")
    hours = Hours(base.zone, base.default, base.overrides, base.holiday_names,
                  {datetime(2026, 11, 27).date()}, languages=base.languages)
    at = datetime(2026, 11, 26, 10, 0, tzinfo=TZ)
    assert due_time(hours, "morning", datetime(2026, 1, 1, 12).time(), at) == datetime(2026, 11, 30, 8, 30, tzinfo=TZ)


def test_old_callbacks_expire_with_a_note_and_the_number_may_ask_again(call, cli, clock):
    clock.set(SATURDAY_NIGHT)
    ref = spoken_ref(call("callcenter", ["-", "0", "3", "1", "1", "2"]).said)
    clock.set("2026-12-05 23:29")                     # not quite 7 days (config/callbacks.yaml expire_days)
    assert ref in listed(cli("list")[1])
    clock.set("2026-12-05 23:31")
    assert ref not in listed(cli("list")[1])
    out = cli("show", ref)[1]
    assert "status:          expired" in out
    assert re.search(r"system\s+expired: not done within 7 days", out)
    rc, _, err = cli("take", ref, "--by", STAFF[0])
    assert rc == 1 and "expired" in err
    assert spoken_ref(call("callcenter", ["-", "0", "3", "1", "1", "2"]).said) != ref    # asks again: a new one


# --- durability and privacy ------------------------------------------------------------------------------------

def test_the_reference_is_never_said_when_the_callback_could_not_be_stored(app, call, clock, prompts, monkeypatch):
    clock.set(SATURDAY_NIGHT)
    store = app.extensions["ivr"].services.callbacks

    def down(*args, **kwargs):
        raise redis.ConnectionError("Redis went away")
    monkeypatch.setattr(store, "request", down)
    c = call("callcenter", ["-", "0", "3", "1", "1"])
    assert "reference number" not in c.said and c.hung_up
    assert prompts.text("cb.not_stored", "en", number="1, 8 0 0, 2 2 8, 5 4 3 7",
                        hours="Monday through Friday, from 8:30 AM to 4:30 PM") in c.said


def test_redis_holds_no_callback_number_in_clear_and_logs_none(call, clock, redis_client, caplog):
    caplog.set_level(logging.DEBUG)
    clock.set(SATURDAY_NIGHT)
    call("callcenter", ["-", "0", "3", "2", "2035550147#", "2035550147#", "1", "1", "record"])
    call("callcenter", ["-", "0", "3", "1", "1", "2"])
    dump = everything_in(redis_client)
    assert b"ivr:cb:" in dump
    for secret in (b"2035550147", b"5550199", b"203555", b"8605550199"):
        assert secret not in dump, f"{secret} is readable in Redis"
    for secret in ("2035550147", "5550199"):
        assert secret not in caplog.text


@pytest.mark.slow
def test_a_spoken_callback_reference_survives_a_redis_crash_and_restart(tmp_path, clock, sdu_stub, monkeypatch,
                                                                         capsys):
    """Redis with AOF (fsync always) killed after the caller heard the reference: the callback is there."""
    from ivr.app import create_app
    from ivr.cli import callbacks as callbacks_cli
    from ivr.cli.main import main
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis", persist=True)
    try:
        client = server.start().client(socket_connect_timeout=0.5)
        app = create_app({"IVR_ENV": "test", "REDIS_URL": server.url, "SDU_BASE_URL": sdu_stub,
                          "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "DATA_DIR": tmp_path / "var"},
                         clock=clock, redis_client=client)
        clock.set(THANKSGIVING)
        said = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"],
                     caller=CALLER).place(["-", "0", "3", "1", "1", "1", "record"]).said
        ref = spoken_ref(said)
        # A second caller hangs up during the message: stored already, it must survive too.
        Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"],
              caller="+18605550123").place(["-", "0", "3", "1", "2"])
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        monkeypatch.setenv("REDIS_URL", server.url)
        monkeypatch.delenv("IVR_SECRET_KEY", raising=False)
        monkeypatch.setattr(callbacks_cli, "clock", clock)
        capsys.readouterr()
        assert main(["callbacks", "list"]) == 0
        lines = listed(capsys.readouterr().out)
        assert len(lines) == 2 and "due Fri 2026-11-27 morning" in lines[ref]
        other = next(line for r, line in lines.items() if r != ref)
        assert "due Fri 2026-11-27 afternoon" in other
        assert main(["callbacks", "show", ref]) == 0
        assert f"number to call:  {CALLER}" in capsys.readouterr().out
        assert client.xlen("ivr:jobs") == 1              # the message's download survived as well
    finally:
        server.stop()


def test_staff_call_the_parent_now_from_the_command_line_one_request_per_command(call, cli, clock, monkeypatch):
    """`ivr callbacks call`: Twilio rings the staff member's phone first, then the bridge dials the parent;
    a second command while that call is being placed places none; refusals are one line."""
    from urllib.parse import parse_qs

    import responses

    from ivr.settings import DEV_ACCOUNT_SID

    calls = f"https://api.twilio.com/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Calls.json"
    clock.set(SATURDAY_NIGHT)
    ref = spoken_ref(call("callcenter", ["-", "0", "3", "1", "1", "2"]).said)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://ivr.example.org")
    with responses.RequestsMock() as twilio:
        twilio.post(calls, status=201,
                    json={"sid": "CA" + "e" * 32, "status": "queued", "account_sid": DEV_ACCOUNT_SID})
        # The number read from standard input (a prompt at a terminal), so it is in no shell history.
        monkeypatch.setattr("sys.stdin", io.StringIO("860-555-0142\n"))
        rc, out, err = cli("call", ref, "--by", STAFF[0])
        assert (rc, err) == (0, "")
        assert out == (f"callback {ref}: your phone will ring; answer and you will be connected to the parent "
                       "(call ...eeeeee)\n")
        rc, out, err = cli("call", ref, "--by", STAFF[0], "--phone", "860-555-0142")
        assert rc == 1 and "being placed already" in err and out == ""
        rc, _, err = cli("call", ref, "--by", STAFF[1], "--phone", "860-555-0142")
        assert rc == 1 and f"taken by {STAFF[0]}" in err
        rc, _, err = cli("call", ref, "--by", "999", "--phone", "860-555-0142")
        assert rc == 1 and "no staff member with ID 999" in err
        rc, _, err = cli("call", ref, "--by", STAFF[0], "--phone", "800-555-0142")
        assert rc == 1 and "your phone number is not one we can call (toll free)" in err
        (sent,) = twilio.calls
    body = sent.request.body
    assert parse_qs(body.decode() if isinstance(body, bytes) else body) == {
        "To": ["+18605550142"], "From": ["+18002285437"], "Method": ["POST"],
        "Url": [f"https://ivr.example.org/callbacks/bridge?ref={ref}"]}
    rc, out, _ = cli("show", ref)
    assert "call placed from the command line" in out and "5550142" not in out
