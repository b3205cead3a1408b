"""Who may hear payment information: wrong PINs in a call, across calls per case and per caller number
(Redis, shared by all workers), the SDU's own lock, and the line's settings; and that these locks cannot
be turned against a family (made-up caller IDs, withheld numbers).

The lockout tests use their own stub SDU (fresh lock counts), so that they neither depend on nor
disturb the session's stub."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from ivr.callflow.flow import FlowError
from ivr.callflow.simphone import Phone
from ivr.callflow.speech import say_phone
from ivr.domain.directory import ANONYMOUS, caller_id
from ivr.domain.payline import PaySettings, caller_keys, case_key, load_settings
from ivr.sdu.client import SDUClient, SDULocked
from ivr.sdu.stub import create_stub_app, serve_in_thread
from ivr.settings import ROOT
from tests.walk import caller_numbers, line_number

CASE, PAYER_PIN = "123456789", "1234"
WRONG = ["1111#", "2222#", "3333#"]
AGENTS = "+18605696233"
DAY = 24 * 3600


@pytest.fixture
def own_stub():
    stub = create_stub_app()
    base, stop = serve_in_thread(app=stub)
    yield base, stub.extensions["sdu_stub"]
    stop()


@pytest.fixture
def lock_app(make_app, own_stub):
    return make_app(SDU_BASE_URL=own_stub[0])


@pytest.fixture
def sealer(lock_app):
    return lock_app.extensions["ivr"].services.sealer


def test_three_wrong_pins_end_identification_and_offer_a_person(call, lock_app, prompts, redis_client, sealer):
    # Two for one case, then (star: another case number) one for another: the call's three.
    keys = ["-", CASE + "#", "1"] + WRONG[:2] + ["*", "234567890#", "1", WRONG[2], "9", "0"]
    c = call("payments", keys, target_app=lock_app)
    assert c.said.count(prompts.text("pay.pin.wrong", "en")) == 2
    assert c.said.count(prompts.text("pay.pin.ask", "en")) == 4   # the second case number asks again
    failed = prompts.text("pay.ident.failed", "en")
    assert failed in c.said
    # 9 ("main menu") does not start a fourth try: it is the call center's main menu from here.
    assert c.said.count(failed) == 1
    assert prompts.text("cc.main.intro", "en") in c.said
    assert c.said.count(prompts.text("pay.case.ask", "en")) == 2
    assert c.dialed == [AGENTS]
    tries = case_key(sealer, CASE)
    assert int(redis_client.get(tries)) == 2 and int(redis_client.get(case_key(sealer, "234567890"))) == 1
    assert 29 * DAY < redis_client.ttl(tries) <= 30 * DAY


def test_a_case_is_locked_across_calls_before_the_sdu_locks_it(
        call, lock_app, prompts, redis_client, sealer, own_stub):
    base, stub_state = own_stub
    call("payments", ["-", CASE + "#", "1"] + WRONG[:2], caller="+18605550101", target_app=lock_app)
    # A second call, from another phone: the third wrong PIN for the case locks it here.
    c = call("payments", ["-", CASE + "#", "1", "4444#"], caller="+18605550102", target_app=lock_app)
    heard = " ".join(e.text for e in c.events if e.kind == "say")
    locked_case = prompts.text("pay.locked.case", "en", days="thirty", website="C T dot smart child support dot com",
                               hours=lock_app.extensions["ivr"].hours.describe("en"),
                               number="1, 8 0 0, 2 2 8, 5 4 3 7")
    assert locked_case in heard
    tries = case_key(sealer, CASE)
    assert int(redis_client.get(tries)) == 3 and 29 * DAY < redis_client.ttl(tries) <= 30 * DAY
    # The SDU saw three wrong PINs, not five: it has not locked the case.
    assert not stub_state.locked(CASE)
    # While locked, even the right PIN is not checked: the caller hears the lock after the case number.
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#"], caller="+18605550103", target_app=lock_app)
    assert "this line cannot check a PIN for this case for now" in c.said
    assert prompts.text("pay.pin.ask", "en") not in c.said
    assert not stub_state.locked(CASE)
    # When the count runs out (its TTL, here cut short), the right PIN works again.
    redis_client.delete(tries)
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller="+18605550103", target_app=lock_app)
    assert "two hundred six dollars" in c.said


LANG_KEY = {"en": "-", "es": "2"}
TO_PAYMENTS = ["1", "1"]      # the call center's main menu: payments, then the payment line in the same call


@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_locked_case_gives_the_call_centers_number_only_to_a_caller_not_on_it(call, lock_app, prompts, clock, lang):
    """On 1-888 the caller hears the call center's number; handed over from 1-800-228-KIDS in the same
    call, they are on it already: 0 instead, which reaches a person, or offers a call back after hours."""
    rt = lock_app.extensions["ivr"]
    number = say_phone(rt.lines_cfg["callback_number"], lang)
    fields = {"days": "thirty" if lang == "en" else "treinta", "hours": " ".join(rt.hours.describe(lang).split()),
              "website": rt.services.payments.website[lang]}
    direct = call("payments", [LANG_KEY[lang], CASE + "#", "1"] + WRONG, caller="+18605550111", target_app=lock_app)
    assert prompts.text("pay.locked.case", lang, number=number, **fields) in direct.said
    handed = call("callcenter", [LANG_KEY[lang], *TO_PAYMENTS, "234567890#", "1"] + WRONG + ["0"],
                  caller="+18605550112", target_app=lock_app)
    locked = handed.said_after(8)
    assert locked.startswith(prompts.text("pay.locked.case.here", lang, **fields))
    assert number not in handed.said
    assert ("press 0" if lang == "en" else "oprima 0") in prompts.text("pay.locked.case.here", lang)
    assert handed.dialed == [AGENTS]                  # 0, in open hours: a person
    # After hours, 0 there offers the call back (the call center's person), and 9 its main menu.
    clock.set("2026-11-24T20:00:00")
    late = call("callcenter", [LANG_KEY[lang], *TO_PAYMENTS, "345678912#", "1"] + WRONG + ["0", "9"],
                caller="+18605550113", target_app=lock_app)
    # The lock (after the 8th key) and the after-hours answer to 0 name no number: the caller is on it.
    assert late.said_at(8).startswith(prompts.text("pay.locked.case.here", lang, **fields))
    assert number not in late.said_at(8) and number not in late.said_at(9)
    callback = prompts.text("menu.option", lang, option=prompts.text("xfer.opt.callback", lang), key=3)
    assert callback in late.said_after(9)
    assert late.said_after(10).startswith(prompts.text("cc.main.intro", lang))


def test_every_lock_said_to_a_caller_on_the_call_centers_number_says_0_and_no_number(prompts):
    for lang, zero in (("en", "press 0"), ("es", "oprima 0")):
        for kind in ("case", "case_all", "caller", "sdu"):
            here = prompts.texts[lang][f"pay.locked.{kind}.here"]
            assert zero in here and "{number}" not in here and "{hours}" in here, (lang, kind)
            assert "{number}" in prompts.texts[lang][f"pay.locked.{kind}"]


def test_attempts_are_counted_before_the_sdu_is_asked(call, lock_app, prompts, redis_client, sealer):
    # Other workers have used up this case's tries at the same moment (no lock set yet): this
    # attempt is refused without asking the SDU, even with the right PIN.
    redis_client.set(case_key(sealer, CASE), 3, ex=600)
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#"], target_app=lock_app)
    assert "this line cannot check a PIN for this case for now" in c.said
    assert prompts.text("pay.menu.intro", "en") not in c.said


def test_a_lock_set_while_the_caller_keys_the_pin_stops_that_pin(lock_app, prompts, redis_client, sealer):
    # Another worker locks the case after this caller's case number was accepted (the PIN prompt is
    # already playing): the PIN, even the right one, must not reach the SDU.
    phone = Phone(lock_app, to=line_number(lock_app, "payments")).start()
    for key in ("-", CASE + "#", "1"):
        phone.press(key)
    assert phone.heard[-1][1] == prompts.text("pay.pin.ask", "en")
    tries = case_key(sealer, CASE)
    redis_client.set(tries, 3, ex=600)
    phone.press(PAYER_PIN + "#")
    assert "this line cannot check a PIN for this case for now" in phone.said
    assert prompts.text("pay.menu.intro", "en") not in phone.said
    assert int(redis_client.get(tries)) == 3   # the refused attempt is not counted
    # Nor one from this phone's number, now locked by another worker in the same way.
    other = Phone(lock_app, to=line_number(lock_app, "payments"), caller="+18605550166").start()
    for key in ("-", "234567890#", "1"):
        other.press(key)
    caller_tries, caller_lock = caller_keys(sealer, "+18605550166")
    redis_client.set(caller_lock, 1, ex=600)
    other.press(PAYER_PIN + "#")
    assert CALLER_LOCKED in other.said
    assert not redis_client.exists(caller_tries)


def test_a_right_pin_clears_the_cases_count(lock_app, prompts, redis_client, sealer):
    tries = case_key(sealer, CASE)
    phone = Phone(lock_app, to=line_number(lock_app, "payments")).start()
    for key in ["-", CASE + "#", "1"] + WRONG[:2]:
        phone.press(key)
    # Two wrong PINs sent to the SDU: the case's count holds them.
    assert phone.said.count(prompts.text("pay.pin.wrong", "en")) == 2
    assert int(redis_client.get(tries)) == 2
    phone.press(PAYER_PIN + "#")
    assert prompts.text("pay.menu.intro", "en") in phone.said
    # The right PIN cleared it, as the SDU clears its own: a stranger later gets their full tries again.
    assert not redis_client.exists(tries)


def test_one_caller_number_guessing_across_cases_is_locked(call, lock_app, prompts, redis_client, sealer):
    me, other = "+18605550177", "+18605550188"
    call("payments", ["-", "111111111#", "1"] + WRONG, caller=me, target_app=lock_app)
    c = call("payments", ["-", "222222222#", "1"] + WRONG, caller=me, target_app=lock_app)
    caller_locked = "we cannot give payment information to calls from this phone for thirty minutes"
    assert prompts.text("pay.pin.wrong", "en") in c.said and caller_locked in c.said
    # The next call from that number hears it right away, before any number is asked for.
    again = call("payments", ["-", CASE + "#"], caller=me, target_app=lock_app)
    assert caller_locked in again.said
    assert prompts.text("pay.case.ask", "en") not in again.said
    # Another number is not affected.
    ok = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=other, target_app=lock_app)
    assert "two hundred six dollars" in ok.said
    tries, lock = caller_keys(sealer, me)
    assert 1790 <= redis_client.ttl(lock) <= 1800
    # Counter and lock names hold a tag, never the number.
    for key in redis_client.scan_iter("ivr:pay:*"):
        assert b"5550177" not in key and b"111111111" not in key and b"222222222" not in key


CALLER_LOCKED = "we cannot give payment information to calls from this phone for thirty minutes"
YORK_CI, VENDOR_LINE = "+19595550113", "+19595550120"    # config/facilities.yaml: a facility's, a shared one
SHARED = [YORK_CI, VENDOR_LINE, "anonymous", "+266696687", ""]


def guess(call, app, caller: str, cases=("111111111", "222222222", "333333333")) -> list[str]:
    """Callers on one phone, each with their own case and three wrong PINs; what each heard."""
    return [call("payments", ["-", case + "#", "1"] + WRONG, caller=caller, target_app=app).said for case in cases]


@pytest.mark.parametrize("caller", SHARED)
def test_wrong_pins_from_a_shared_phone_do_not_lock_out_the_next_caller(
        call, lock_app, prompts, redis_client, sealer, caller):
    """A prison phone bank (or every withheld caller ID) is many people: others' wrong PINs for their
    own cases must not lock out the next inmate, who gets their own figures with their own PIN."""
    heard = guess(call, lock_app, caller)                              # 9 wrong PINs, over the 6 of a number
    assert not any(CALLER_LOCKED in said for said in heard)
    nxt = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=caller, target_app=lock_app)
    assert CALLER_LOCKED not in nxt.said
    assert "two hundred six dollars" in nxt.said
    tries, lock = caller_keys(sealer, caller_id(caller))
    assert not redis_client.exists(lock)
    if caller_id(caller) == ANONYMOUS:
        assert not redis_client.exists(tries)            # withheld: no count as a group at all
    else:
        assert int(redis_client.get(tries)) == 9         # an inmate phone: counted, far from its 30
    # Each case is still counted: three wrong PINs each, so each is locked on this line.
    assert int(redis_client.get(case_key(sealer, "222222222"))) == 3
    c = call("payments", ["-", "222222222#", "1", "4444#"], caller=caller, target_app=lock_app)
    assert "this line cannot check a PIN for this case for now" in c.said


def test_the_same_wrong_pins_from_an_ordinary_number_still_lock_it(call, lock_app, redis_client, sealer):
    me = "+18605550166"
    heard = guess(call, lock_app, me, cases=("111111111", "222222222"))
    assert CALLER_LOCKED not in heard[0] and CALLER_LOCKED in heard[1]   # the 6th wrong PIN
    nxt = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=me, target_app=lock_app)
    assert CALLER_LOCKED in nxt.said
    assert "two hundred six dollars" not in nxt.said
    assert 1790 <= redis_client.ttl(caller_keys(sealer, me)[1]) <= 1800


def test_a_limit_for_shared_phones_can_be_set_and_counts_each_number(call, lock_app, redis_client, sealer):
    rt = lock_app.extensions["ivr"]
    rt.services.payments = dataclasses.replace(rt.services.payments, facility_lock_after=4)
    call("payments", ["-", "111111111#", "1"] + WRONG, caller=YORK_CI, target_app=lock_app)
    c = call("payments", ["-", "222222222#", "1"] + WRONG[:1], caller=YORK_CI, target_app=lock_app)
    assert CALLER_LOCKED in c.said                                         # the 4th from York CI
    ok = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=VENDOR_LINE, target_app=lock_app)
    assert "two hundred six dollars" in ok.said                            # another facility number
    assert 1790 <= redis_client.ttl(caller_keys(sealer, YORK_CI)[1]) <= 1800


def test_the_sdu_lock_tells_the_caller_how_to_get_help(call, lock_app, own_stub, prompts, redis_client, sealer):
    base, stub_state = own_stub
    client = SDUClient(base, "dev-sdu-key")
    for _ in range(5):
        client.verify_pin("234567891", "9999")
    with pytest.raises(SDULocked):
        client.verify_pin("234567891", "2468")
    c = call("payments", ["-", "234567891#", "1", "2468#", "1"], target_app=lock_app)
    assert "this case is locked because a wrong PIN was entered too many times" in c.said
    assert "A child support specialist can unlock it" in c.said
    assert prompts.text("cc.main.intro", "en") in c.said  # 1: the call center menu; the call goes on
    assert not redis_client.exists(case_key(sealer, "234567891"))  # the SDU's lock is not a guess
    stub_state.reset_locks()


def test_withheld_caller_ids_look_alike():
    assert caller_id("anonymous") == ANONYMOUS
    assert caller_id("+266696687") == ANONYMOUS
    assert caller_id("") == ANONYMOUS
    assert caller_id("+1 (860) 555-0199") == "+18605550199"


def test_the_shipped_settings_and_bad_ones(tmp_path):
    settings = load_settings(ROOT / "config" / "flows" / "payments.yaml")
    assert settings.case_lock_after < 5 and settings.lock_seconds == 1800 and settings.tries_per_call == 3
    # The SDU's mailing address is in no seed document: shipped empty until SES confirms it.
    assert settings.website["en"] and not any(settings.mail_to.values())
    bad = tmp_path / "payments.yaml"
    bad.write_text("settings:\n  identification: {case_lock_after: 5, tries_per_call: zero}\n")
    with pytest.raises(FlowError) as err:
        load_settings(bad)
    message = str(err.value)
    assert str(bad) in message and "below 5" in message and "tries_per_call" in message
    assert "how_to_pay.website" in message and "how_to_pay.mail_to" not in message   # the address may wait
    assert PaySettings().case_lock_after == 3 and settings.case_memory_seconds == 30 * DAY
    # An inmate phone: a high limit (30) as shipped, 0 would mean none; below 0 is refused. Withheld
    # caller IDs have no group limit any more: a setting for one is refused, not silently ignored.
    assert settings.facility_lock_after == 30 and settings.alert_per_hour == 100
    bad.write_text("settings:\n  identification: {facility_lock_after: -1, anonymous_lock_after: 30}\n")
    with pytest.raises(FlowError) as err:
        load_settings(bad)
    assert "facility_lock_after must be a whole number of at least 0" in str(err.value)
    assert "anonymous_lock_after is gone" in str(err.value)


# --- the locks cannot be turned against a family (issue 13) ------------------------------------------

def time_passes(redis_client, seconds: int) -> None:
    """As if `seconds` went by for the payment line's keys in Redis: those that would have expired are
    gone, the others have that much less time left."""
    for key in redis_client.scan_iter("ivr:pay:*"):
        left = redis_client.pttl(key)
        if left < 0:
            continue
        if left <= seconds * 1000:
            redis_client.delete(key)
        else:
            redis_client.pexpire(key, left - seconds * 1000)



def strangers_guess(call, app, numbers, case: str = CASE, calls: int = 3) -> list[str]:
    """Calls from made-up numbers, each keying three wrong PINs for one case; what each heard."""
    return [call("payments", ["-", case + "#", "1"] + WRONG, caller=numbers(), target_app=app).said
            for _ in range(calls)]


def test_strangers_with_made_up_numbers_never_make_the_sdu_lock_a_case(call, lock_app, own_stub, redis_client):
    """The SDU locks a case for good at its 5th wrong PIN in a row (only a right PIN resets its count,
    sdu-api.yaml): however the guessing is spread over time and numbers, the phone system never sends
    that 5th one. When the system's own lock has passed, the family's right PIN still works."""
    base, stub_state = own_stub
    numbers = caller_numbers(5553000)
    for pause in (31 * 60, 2 * 3600, DAY, 7 * DAY):        # each time after the short locks have run out
        strangers_guess(call, lock_app, numbers)
        assert not stub_state.locked(CASE)
        time_passes(redis_client, pause)
    # A family member from a phone never used on this line: still locked on this line, not at the SDU.
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=numbers(), target_app=lock_app)
    assert "this line cannot check a PIN for this case for now" in c.said
    assert "two hundred six dollars" not in c.said
    time_passes(redis_client, 30 * DAY)                    # the system's lock has passed
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=numbers(), target_app=lock_app)
    assert "two hundred six dollars" in c.said
    assert not stub_state.locked(CASE)


def test_a_phone_that_signed_in_before_gets_in_at_once_after_strangers_guessed(
        call, lock_app, own_stub, redis_client):
    base, stub_state = own_stub
    home = "+18605550123"
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=home, target_app=lock_app)
    assert "two hundred six dollars" in c.said
    numbers = caller_numbers(5554000)
    for pause in (31 * 60, DAY):
        strangers_guess(call, lock_app, numbers)
        time_passes(redis_client, pause)
    # The family calls from home: the right PIN works now, not in a month.
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=home, target_app=lock_app)
    assert "two hundred six dollars" in c.said
    assert not stub_state.locked(CASE)
    # The right PIN started the count again, for everyone.
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=numbers(), target_app=lock_app)
    assert "two hundred six dollars" in c.said


def test_a_withheld_number_guesser_does_not_lock_out_other_withheld_callers(call, lock_app, own_stub):
    """Every caller without a usable caller ID looks alike: there is no lock on them as a group (the
    limits per call and per case still stop a guesser)."""
    base, stub_state = own_stub
    cases = [f"71000{i:04d}" for i in range(12)]           # 36 wrong PINs, all from "anonymous"
    for case in cases:
        c = call("payments", ["-", case + "#", "1"] + WRONG, caller="anonymous", target_app=lock_app)
        assert "we cannot give payment information to calls from this phone" not in c.said
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller="", target_app=lock_app)
    assert "two hundred six dollars" in c.said
    # The guesser's cases are each stopped short of the SDU's lock.
    c = call("payments", ["-", cases[0] + "#", "1", "4444#"], caller="anonymous", target_app=lock_app)
    assert "this line cannot check a PIN for this case for now" in c.said
    assert not any(stub_state.locked(case) for case in cases)


@pytest.mark.parametrize("lang, expected", [
    ("en", ["this line cannot check a PIN for this case for now", "It unlocks by itself thirty days after "
            "the last wrong PIN", "call from that same phone", "People answer Monday through Friday",
            "1, 8 0 0, 2 2 8, 5 4 3 7", "C T dot smart child support dot com"]),
    ("es", ["esta línea no puede comprobar un PIN para este caso por ahora", "Se desbloquea solo treinta días "
            "después del último PIN equivocado", "llame desde ese mismo teléfono", "Atendemos de lunes a viernes",
            "1, 8 0 0, 2 2 8, 5 4 3 7", "C T punto smart child support punto com"]),
])
def test_a_locked_caller_hears_how_the_case_gets_unlocked(call, lock_app, lang, expected):
    first = "-" if lang == "en" else "2"
    numbers = caller_numbers(5555000)
    call("payments", [first, CASE + "#", "1"] + WRONG, caller=numbers(), target_app=lock_app)
    c = call("payments", [first, CASE + "#", "1", "4444#"], caller=numbers(), target_app=lock_app)
    for words in expected:
        assert words in c.said, words


def test_a_pin_the_sdu_may_have_counted_without_answering_stays_counted(make_app, call):
    """A wrong PIN whose answer timed out may be counted by the SDU all the same: were it given back
    here, the strangers after it could get the SDU to its fifth."""
    from tests.sdu_faults import FaultySDU

    sdu = FaultySDU()
    finished = []
    inner = sdu.app.wsgi_app

    def noting(environ, start_response):        # the stub's answers, as they finish (after the sleep)
        try:
            return inner(environ, start_response)
        finally:
            finished.append(1)
    sdu.app.wsgi_app = noting
    try:
        app = make_app(SDU_BASE_URL=sdu.url)
        numbers = caller_numbers(5556000)
        sdu.fail("slow", endpoints=("pin",), delay=2.0)    # over the client's 1.5 s read timeout
        for _ in range(2):
            c = call("payments", ["-", CASE + "#", "1", "1111#"], caller=numbers(), target_app=app)
            assert app.extensions["ivr"].prompts.text("pay.sdu.down", "en") in c.said
        for _ in range(100):                               # the stub checks them after its sleep
            if len(finished) >= sdu.hits["pin"]:
                break
            threading.Event().wait(0.1)
        sdu.fail(None)
        strangers_guess(call, app, numbers)
        assert not sdu.app.extensions["sdu_stub"].locked(CASE)
    finally:
        sdu.stop()


def test_wrong_pins_across_the_line_raise_one_alert_rather_than_a_lock(call, lock_app, caplog):
    """Guessing spread over many cases and made-up numbers locks no one as a group: it is reported."""
    rt = lock_app.extensions["ivr"]
    rt.services.payments = dataclasses.replace(rt.services.payments, alert_per_hour=4)
    numbers = caller_numbers(5557000)
    for case in ("111111111", "222222222", "333333333"):
        call("payments", ["-", case + "#", "1"] + WRONG, caller=numbers(), target_app=lock_app)
    alerts = [r for r in caplog.records
              if r.levelname == "ERROR" and "wrong PINs on the payment line" in r.getMessage()]
    assert len(alerts) == 1 and "4 wrong PINs" in alerts[0].getMessage()
    c = call("payments", ["-", CASE + "#", "1", PAYER_PIN + "#", "1"], caller=numbers(), target_app=lock_app)
    assert "two hundred six dollars" in c.said
