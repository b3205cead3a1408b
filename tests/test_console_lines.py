"""What callers notice of the console: an emergency closure switched on is heard on the next call (at the
start, and instead of every transfer) while answers and the payment line keep working; a prompt a
supervisor uploads and publishes is what the next call plays; an announcement too. Bad uploads and bad
closure forms get a message next to the field."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta

import numpy as np
import soundfile as sf

from tests.conftest import OPEN
from tests.console_helpers import SUPERVISOR, Browser, add_staff

HARTFORD = ["-", "5", "2", "1"]          # main menu 5 (offices), Hartford area, Hartford main office
MESSAGE_EN = "Our offices are closed today because of the storm. Payment information is still available."
MESSAGE_ES = "Nuestras oficinas están cerradas hoy por la tormenta."


def supervisor(app) -> Browser:
    secret = add_staff(app, SUPERVISOR, "supervisor", "Sam Supervisor")
    browser = Browser(app)
    assert browser.sign_in(SUPERVISOR, totp=secret).status_code == 303
    return browser


def close(browser: Browser, scope: str, hours: int = 4):
    browser.get("/console/closures")
    return browser.post("/console/closures", {
        "scope": scope, "until": (OPEN + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M"),
        "text_en": MESSAGE_EN, "text_es": MESSAGE_ES})


def test_a_line_closure_is_heard_at_the_start_and_replaces_every_transfer(app, make_app, call):
    sup = supervisor(app)
    web = make_app()            # another web process: it obeys from its next webhook too
    assert call("callcenter", HARTFORD, target_app=web).dialed
    assert call("callcenter", HARTFORD).dialed == ["+18605668723"]
    r = close(sup, "line:callcenter")
    assert r.status_code == 303
    assert call("callcenter", HARTFORD, target_app=web).said.startswith(MESSAGE_EN)
    c = call("callcenter", HARTFORD)
    assert c.said.startswith(MESSAGE_EN)                                  # at the start
    assert c.dialed == [] and c.said.count(MESSAGE_EN) == 2                # the transfer replaced
    assert "Connecting you" not in c.said
    c = call("callcenter", ["-", "0"])                                     # a person: the agents
    assert c.dialed == [] and c.said.count(MESSAGE_EN) == 2
    c = call("callcenter", ["2", "-"])                                     # Spanish callers hear theirs
    assert MESSAGE_ES in c.said
    pay = call("payments", [])
    assert MESSAGE_EN not in pay.said                                       # the payment line keeps working
    page = sup.get("/console/requests").get_data(as_text=True)
    assert "Emergency closure on" in page and "line:callcenter" in page    # the banner, on every page
    sup.post("/console/closures/end", {"scope": "line:callcenter"})
    c = call("callcenter", HARTFORD)
    assert MESSAGE_EN not in c.said and c.dialed == ["+18605668723"]       # off at once
    log = sup.get("/console/audit").get_data(as_text=True)
    assert "closure switched on" in log and "closure switched off" in log


def test_a_closure_offers_a_call_back_in_place_of_the_transfer(app, call, prompts):
    """Issue 17: once callbacks exist, a closure's message is followed by the call back offer."""
    close(supervisor(app), "office:hartford")
    c = call("callcenter", HARTFORD + ["3"])
    assert c.dialed == [] and MESSAGE_EN in c.said
    offer = prompts.text("xfer.opt.callback", "en")
    assert offer in c.said.split(MESSAGE_EN, 1)[1]                        # offered after the message
    assert prompts.text("cb.opt.this_number", "en") in c.said                # key 3: the call back begins


def test_an_office_closure_replaces_only_transfers_to_that_office(app, call):
    sup = supervisor(app)
    close(sup, "office:hartford")
    c = call("callcenter", HARTFORD)
    assert c.dialed == [] and MESSAGE_EN in c.said and not c.said.startswith(MESSAGE_EN)
    assert call("callcenter", ["-", "0"]).dialed != []                     # the agents still answer


def test_a_closure_ends_by_itself_at_its_time(app, call, clock):
    close(supervisor(app), "line:callcenter", hours=1)
    assert MESSAGE_EN in call("callcenter", HARTFORD).said
    clock.now = OPEN + timedelta(hours=1, minutes=1)
    c = call("callcenter", HARTFORD)
    assert MESSAGE_EN not in c.said and c.dialed


def test_a_bad_closure_form_says_what_is_wrong_next_to_each_field(app, redis_client):
    sup = supervisor(app)
    sup.get("/console/closures")
    r = sup.post("/console/closures", {"scope": "line:nowhere", "until": "tomorrow", "text_en": "", "text_es": "x"})
    page = html.unescape(r.get_data(as_text=True))
    assert r.status_code == 400
    assert "Choose what is closed." in page and "as a date and time" in page and "in English" in page
    r = sup.post("/console/closures", {"scope": "line:callcenter", "until": (OPEN - timedelta(hours=1))
                                       .strftime("%Y-%m-%dT%H:%M"), "text_en": "a", "text_es": "b"})
    assert r.status_code == 400 and "in the future" in r.get_data(as_text=True)
    assert not redis_client.exists("ivr:closures")


# --- prompts and announcements ---------------------------------------------------------------------------
def wav(seconds: float = 1.0, rate: int = 8000, silent: bool = False) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    signal = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 440 * t)
    buf = io.BytesIO()
    sf.write(buf, signal, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def upload(browser: Browser, path: str, data: bytes, name: str = "welcome.wav", **fields):
    return browser.post(path, {**fields, "audio": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_a_supervisor_publishes_an_uploaded_prompt_and_the_next_call_plays_it(app, call):
    sup = supervisor(app)
    assert "Thank you for calling the Connecticut Child Support" in call("callcenter", []).said
    sup.get("/console/prompts/cc.welcome/en")
    r = upload(sup, "/console/prompts/cc.welcome/en/publish", wav())
    assert r.status_code == 303
    page = sup.get(r.headers["Location"]).get_data(as_text=True)
    assert "version 1" in page
    c = call("callcenter", [])
    played = [e.text for e in c.events if e.kind == "play"]
    assert played and re.search(r"/audio/RE[0-9a-f]{32}\.mp3$", played[0])
    assert "Thank you for calling the Connecticut Child Support" not in c.said
    # Twilio can fetch it, and it is an MP3 of about a second.
    name = played[0].rsplit("/", 1)[1]
    got = app.test_client().get(f"/audio/{name}")
    assert got.status_code == 200
    info = sf.info(io.BytesIO(got.data))
    assert info.format == "MP3" and 0.8 < info.duration < 1.3
    # Rolled back: the computer voice again.
    sup.post("/console/prompts/cc.welcome/en/rollback", {"to": ""})
    assert "Thank you for calling the Connecticut Child Support" in call("callcenter", []).said
    history = sup.get("/console/prompts/cc.welcome/en").get_data(as_text=True)
    assert "version 1 published" in history and "rolled back from v1" in history
    listing = sup.get("/console/prompts").get_data(as_text=True)
    assert "cc.welcome" in listing and "201" in listing


def test_bad_uploads_get_a_message_and_publish_nothing(app, call):
    sup = supervisor(app)
    sup.get("/console/prompts/cc.welcome/en")
    cases = [(b"not audio at all", "not an audio file"), (wav(silent=True), "silent"),
             (wav(seconds=0.1), "too short"), (wav(seconds=200), "at most 180"), (b"", "Choose an audio file")]
    for data, message in cases:
        r = upload(sup, "/console/prompts/cc.welcome/en/publish", data)
        assert r.status_code == 400 and message in r.get_data(as_text=True), message
    r = sup.post("/console/prompts/cc.welcome/en/rollback", {"to": "x"})
    assert r.status_code == 400
    r = sup.post("/console/prompts/cc.welcome/en/rollback", {})
    assert r.status_code == 400 and "no recording to roll back" in r.get_data(as_text=True)
    assert sup.get("/console/prompts/no.such/en").status_code == 404
    assert sup.get("/console/prompts/cc.welcome/xx").status_code == 404
    assert not [e for e in call("callcenter", []).events if e.kind == "play"]


def test_an_announcement_uploaded_in_the_console_is_heard_until_cleared(app, call):
    sup = supervisor(app)
    sup.get("/console/announcements")
    r = upload(sup, "/console/announcements", wav(), line="callcenter", lang="en", until="")
    assert r.status_code == 303
    assert [e for e in call("callcenter", []).events if e.kind == "play"]
    r = upload(sup, "/console/announcements", wav(), line="callcenter", lang="en", until="2020-01-01")
    assert r.status_code == 400 and "cannot be in the past" in r.get_data(as_text=True)
    sup.post("/console/announcements/clear", {"line": "callcenter", "lang": "en"})
    assert not [e for e in call("callcenter", []).events if e.kind == "play"]


# --- hours and holidays ------------------------------------------------------------------------------------
def test_hours_edited_in_the_console_are_what_the_next_call_obeys(app, make_app, call, clock):
    sup = supervisor(app)
    web = make_app()            # another web process: the calls go there, the console is this one
    assert call("callcenter", HARTFORD, target_app=web).dialed               # Tuesday 10:00: open
    sup.get("/console/hours")
    r = sup.post("/console/hours/hartford", {"days": ["mon", "tue"], "open": "11:00", "close": "15:00"})
    assert r.status_code == 303
    c = call("callcenter", HARTFORD, target_app=web)
    assert c.dialed == [] and "from 11:00 AM to 3:00 PM" in c.said, c.said
    assert call("callcenter", ["-", "0"], target_app=web).dialed             # the agents keep their hours
    sup.post("/console/hours/hartford", {"action": "reset"})
    assert call("callcenter", HARTFORD, target_app=web).dialed
    assert "hours changed" in sup.get("/console/audit").get_data(as_text=True)


def test_a_closed_day_added_in_the_console_closes_the_offices(app, call):
    sup = supervisor(app)
    sup.get("/console/hours")
    r = sup.post("/console/hours-closed-days", {"day": OPEN.date().isoformat()})
    assert r.status_code == 303
    assert call("callcenter", HARTFORD).dialed == []
    sup.post("/console/hours-closed-days", {"day": OPEN.date().isoformat(), "action": "remove"})
    assert call("callcenter", HARTFORD).dialed


def test_bad_hours_get_a_message_next_to_the_field(app):
    sup = supervisor(app)
    sup.get("/console/hours")
    for form, message in (({"days": [], "open": "08:00", "close": "16:00"}, "at least one day"),
                          ({"days": ["mon"], "open": "8am", "close": "16:00"}, "HH:MM"),
                          ({"days": ["mon"], "open": "17:00", "close": "16:00"}, "before closing")):
        r = sup.post("/console/hours/agents", form)
        assert r.status_code == 400 and message in r.get_data(as_text=True)
    r = sup.post("/console/hours-closed-days", {"day": "someday"})
    assert r.status_code == 400 and "YYYY-MM-DD" in r.get_data(as_text=True)
    r = sup.post("/console/hours-holidays", {"holiday": ["Festivus"]})
    assert r.status_code == 400 and "Festivus" in r.get_data(as_text=True)
    assert app.extensions["ivr"].redis.hlen("ivr:hours:edits") == 0
