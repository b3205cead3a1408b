"""Transfers to offices: office hours, Connecticut's legal holidays, and what happens when a dial fails."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

HARTFORD = ["-", "5", "2", "1"]          # main menu 5 (offices), Hartford area, Hartford main office


def test_open_hours_dial_with_an_action_and_say_the_number_first(call):
    c = call("callcenter", HARTFORD)
    assert c.dialed == ["+18605668723"]
    dial = next(e for e in c.events if e.kind == "dial")
    assert dial.attrs.get("action", "").startswith("/voice/step")
    # In the TwiML document that dials, the number is said by a <Say> that comes before the <Dial>.
    verbs = list(ET.fromstring(next(d for d in c.documents if "<Dial" in d)))
    tags = [v.tag for v in verbs]
    said_before_dial = " ".join(" ".join((v.text or "").split()) for v in verbs[:tags.index("Dial")]
                                if v.tag == "Say")
    assert "Connecting you to the Hartford main office. If the call drops, you can call them at " \
           "8 6 0, 5 6 6, 8 7 2 3." in said_before_dial
    assert c.said.endswith("Thank you for calling. Goodbye.") and c.hung_up


@pytest.mark.parametrize("status,said", [
    ("busy", "Sorry, the line for the Hartford main office is busy."),
    ("no-answer", "Sorry, no one at the Hartford main office answered."),
    ("failed", "Sorry, we could not connect your call to the Hartford main office."),
    ("canceled", "Sorry, we could not connect your call to the Hartford main office."),
])
def test_a_failed_dial_is_told_and_offers_number_retry_or_menu(call, status, said):
    c = call("callcenter", HARTFORD + [f"dial:{status}"])
    assert said in c.said
    assert "To hear the phone number again, press 1. To try again, press 2. For the main menu, press 9." in c.said
    assert not c.hung_up


def test_after_a_busy_line_the_caller_can_hear_the_number_try_again_or_go_to_the_menu(call):
    c = call("callcenter", HARTFORD + ["dial:busy", "1", "2", "dial:busy", "9"])
    assert "You can call the Hartford main office at 8 6 0, 5 6 6, 8 7 2 3." in c.said
    assert c.dialed == ["+18605668723", "+18605668723"]
    assert c.said.rstrip().endswith("To hear these choices again, press star. To talk to a person, press 0.")


@pytest.mark.parametrize("when,why", [
    ("2026-11-24 08:29", "before opening"),
    ("2026-11-24 16:30", "at closing"),
    ("2026-11-28 11:00", "a Saturday"),
    ("2026-11-29 11:00", "a Sunday"),
])
def test_outside_hours_no_dial_the_hours_and_number_are_said(call, clock, when, why):
    clock.set(when)
    c = call("callcenter", HARTFORD + ["1", "9"])
    assert not c.dialed, why
    assert "The Hartford main office is closed right now." in c.said
    assert "People answer Monday through Friday, from 8:30" in c.said
    assert c.said.count("8 6 0, 5 6 6, 8 7 2 3") == 2       # said, then again on key 1
    assert "Main menu." in c.said_after(len(HARTFORD) + 1)


@pytest.mark.parametrize("when,holiday", [
    ("2026-01-01 10:00", "New Year's Day"),
    ("2026-01-19 10:00", "Martin Luther King Day"),
    ("2026-02-12 10:00", "Lincoln Day"),
    ("2026-02-16 10:00", "Washington's Birthday"),
    ("2026-04-03 10:00", "Good Friday"),
    ("2026-05-25 10:00", "Memorial Day"),
    ("2026-06-19 10:00", "Juneteenth"),
    ("2026-07-03 10:00", "Independence Day, a Saturday, observed the Friday before"),
    ("2026-09-07 10:00", "Labor Day"),
    ("2026-10-12 10:00", "Columbus Day"),
    ("2026-11-11 10:00", "Veterans' Day"),
    ("2026-11-26 10:00", "Thanksgiving"),
    ("2026-12-25 10:00", "Christmas"),
    ("2027-07-05 10:00", "Independence Day 2027, a Sunday, observed the Monday after"),
    ("2027-12-31 10:00", "New Year's Day 2028, a Saturday, observed Friday 31 December"),
])
def test_connecticut_legal_holidays_close_the_offices(call, clock, when, holiday):
    clock.set(when)
    c = call("callcenter", HARTFORD)
    assert not c.dialed, holiday
    assert "closed today for a state holiday" in c.said


@pytest.mark.parametrize("when", ["2026-07-06 10:00", "2026-11-27 10:00", "2026-12-24 10:00"])
def test_ordinary_weekdays_next_to_holidays_are_open(call, clock, when):
    clock.set(when)
    assert call("callcenter", HARTFORD).dialed == ["+18605668723"]


def test_closed_transfer_in_spanish(call, clock):
    clock.set("2026-11-26 10:00")
    c = call("callcenter", ["2", "5", "4", "1"])
    assert "Nuestras oficinas están cerradas hoy por un día feriado del estado." in c.said
    assert "La oficina de Bridgeport atiende de lunes a viernes" in c.said
    assert not c.dialed


def test_hours_come_from_configuration(tmp_path, make_app, clock):
    import shutil
    from pathlib import Path

    cfg = tmp_path / "config"
    shutil.copytree(Path(__file__).resolve().parents[1] / "config", cfg)
    text = (cfg / "hours.yaml").read_text().replace('close: "16:30"', 'close: "20:00"')
    (cfg / "hours.yaml").write_text(text)
    app = make_app(CONFIG_DIR=cfg)
    clock.set("2026-11-24 19:00")
    from ivr.callflow.simphone import Phone
    c = Phone(app, to="+18002285437").place(HARTFORD)
    assert c.dialed == ["+18605668723"]


def test_dial_verb_has_a_timeout_and_a_number_noun(call):
    c = call("callcenter", HARTFORD)
    doc = next(d for d in c.documents if "<Dial" in d)
    dial = ET.fromstring(doc).find("Dial")
    assert dial.get("timeout") == "30"
    assert dial.find("Number").text == "+18605668723"
