"""The console's callbacks page (issue 18): a callback a caller left through the simulated phone, as a
caseworker finds and works it: oldest first with its due time, the number masked until opened (each
opening audited), take / attempt / done by the signed-in staff member, the CSV export for supervisors,
and bad input as a message on the page."""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests
import responses

from ivr.settings import DEV_ACCOUNT_SID
from tests.console_helpers import CASEWORKER, Browser, signed_in

CALLER = "+18605550199"                  # the simulated phone's caller ID
KEYED = "+12035550147"
BUSY_HARTFORD = ["-", "5", "2", "1", "dial:busy", "3", "2", "2035550147#", "2035550147#", "2", "2"]
HOLIDAY_ZERO = ["2", "0", "3", "1", "1", "2"]     # in Spanish: 0, a callback to the caller ID, morning, no message


def left_callback(call, keys=BUSY_HARTFORD, caller: str = CALLER) -> str:
    """A callback left through the simulated phone: its reference, as the caller heard it."""
    c = call("callcenter", keys, caller=caller)
    m = re.search(r"(?:reference number is|número de referencia es) (\d) (\d) (\d), (\d) (\d) (\d)", c.said)
    assert m, c.said[-300:]
    return "".join(m.groups())


def audit_text(app) -> str:
    return signed_in(app, "supervisor").get("/console/audit").get_data(as_text=True)


def test_a_caseworker_finds_a_callback_left_by_phone_opens_the_number_and_closes_it(app, call):
    ref = left_callback(call)
    browser = signed_in(app)
    assert 'href="/console/callbacks"' in browser.get("/console/requests").get_data(as_text=True)   # nav link
    queue = browser.get("/console/callbacks").get_data(as_text=True)
    assert f">{ref}</a>" in queue
    assert "+1********47" in queue and "5550147" not in queue                   # masked in the list
    assert "Tue 2026-11-24 afternoon" in queue and "English" in queue and "hartford (line busy)" in queue
    page = browser.get(f"/console/callbacks/{ref}").get_data(as_text=True)
    assert "5550147" not in page and "5550199" not in page                      # masked until opened
    assert "kept while open or taken; deleted 365 days after it is done or expired" in page
    opened = browser.post(f"/console/callbacks/{ref}/open").get_data(as_text=True)
    assert KEYED in opened and CALLER in opened
    r = browser.post(f"/console/callbacks/{ref}/take")
    assert r.status_code == 303
    page = browser.get(r.headers["Location"]).get_data(as_text=True)
    assert f"taken by {CASEWORKER}" in page
    browser.post(f"/console/callbacks/{ref}/attempt", {"result": "no_answer"})
    r = browser.post(f"/console/callbacks/{ref}/attempt", {"result": "reached"})
    page = browser.get(r.headers["Location"]).get_data(as_text=True)
    assert "2, last reached the caller" in page
    r = browser.post(f"/console/callbacks/{ref}/done")
    page = browser.get(r.headers["Location"]).get_data(as_text=True)
    assert f"done by {CASEWORKER}" in page
    assert re.search(r"deleted after 2027-11-24 \d\d:\d\d \(365 days after it was closed\)", page)
    assert f">{ref}</a>" not in browser.get("/console/callbacks").get_data(as_text=True)
    assert f">{ref}</a>" in browser.get("/console/callbacks?status=done").get_data(as_text=True)
    cb = app.extensions["ivr"].services.callbacks.get(ref)
    assert cb["status"] == "done" and cb["done_by"] == CASEWORKER and cb["attempts"] == "2"
    history = [(e.by, e.action, e.detail) for e in app.extensions["ivr"].services.callbacks.history(ref)]
    assert (CASEWORKER, "attempt", "no answer") in history and (CASEWORKER, "done", "") in history
    log = audit_text(app)
    for action in ("opened the number of a callback", "callback take", "callback attempt", "callback done"):
        assert action in log, action
    assert "5550147" not in log


def test_the_queue_is_oldest_first_with_the_language_of_the_call(app, call, clock):
    clock.set("2026-11-26 10:00")                                   # Thanksgiving: due Friday morning
    first = left_callback(call, HOLIDAY_ZERO)
    clock.set("2026-11-26 10:05")
    second = left_callback(call, ["-", *HOLIDAY_ZERO[1:]], caller="+18605550123")
    clock.set("2026-11-24 10:00")
    queue = signed_in(app).get("/console/callbacks").get_data(as_text=True)
    assert queue.index(f">{first}</a>") < queue.index(f">{second}</a>")
    row = queue[queue.index(f">{first}</a>"):queue.index(f">{second}</a>")]
    assert "Spanish" in row and "Fri 2026-11-27 morning" in row and "agents (on a holiday)" in row


def test_someone_elses_callback_and_bad_input_are_messages_not_errors(app, call):
    ref = left_callback(call)
    callbacks = app.extensions["ivr"].services.callbacks
    app.extensions["ivr"].services.staffdb.add("4009", "Other Worker", "480213", callbacks.clock())
    callbacks.take(ref, "4009")
    browser = signed_in(app)
    page = browser.get(f"/console/callbacks/{ref}").get_data(as_text=True)
    assert "Taken by 4009: only they log its attempts and close it." in page and "Mark done" not in page
    for action, data in (("take", {}), ("attempt", {"result": "reached"}), ("done", {})):
        r = browser.post(f"/console/callbacks/{ref}/{action}", data)
        assert r.status_code == 303, action
        assert "taken by 4009" in browser.get(r.headers["Location"]).get_data(as_text=True), action
    r = browser.post(f"/console/callbacks/{ref}/attempt", {"result": "hung_up"})
    assert r.status_code == 303
    assert "Choose what happened on the call" in browser.get(r.headers["Location"]).get_data(as_text=True)
    assert callbacks.get(ref)["taken_by"] == "4009" and callbacks.get(ref)["attempts"] == "0"
    page = browser.get("/console/callbacks?status=nonsense")
    assert page.status_code == 200 and "There is no status" in page.get_data(as_text=True)
    assert browser.get("/console/callbacks/12ab").status_code == 404
    assert browser.get("/console/callbacks/999999").status_code == 404
    assert browser.post("/console/callbacks/999999/done").status_code == 404


def test_signed_out_is_redirected_and_every_form_needs_its_csrf_token(app, call):
    ref = left_callback(call)
    anonymous = Browser(app)
    for path in ("/console/callbacks", f"/console/callbacks/{ref}"):
        r = anonymous.get(path)
        assert r.status_code in (302, 303) and "/console/login" in r.headers["Location"]
    browser = signed_in(app)
    for action in ("open", "take", "attempt", "done"):
        r = browser.post(f"/console/callbacks/{ref}/{action}", {"result": "reached"}, csrf=False)
        assert r.status_code == 400, action
    assert app.extensions["ivr"].services.callbacks.get(ref)["status"] == "open"


def test_supervisors_export_csv_caseworkers_may_not(app, call):
    ref = left_callback(call)
    assert signed_in(app).get("/console/callbacks.csv").status_code == 403
    sup = signed_in(app, "supervisor")
    queue = sup.get("/console/callbacks").get_data(as_text=True)
    assert "/console/callbacks.csv" in queue
    r = sup.get("/console/callbacks.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [(row["ref"], row["number"], row["status"]) for row in rows] == [(ref, KEYED, "open")]
    assert "exported callbacks (CSV)" in sup.get("/console/audit").get_data(as_text=True)


# --- call now ------------------------------------------------------------------------------------------

CALLS = f"https://api.twilio.com/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Calls.json"
PUBLIC = "https://ivr.example.org"
STAFF_PHONE = "+18605550142"
CALLED = "Your phone will ring; answer and you will be connected to the parent."


def twilio_reply(sid: str = "CA" + "f" * 32) -> dict:
    return {"sid": sid, "status": "queued", "account_sid": DEV_ACCOUNT_SID, "to": STAFF_PHONE,
            "from": "+18002285437", "direction": "outbound-api", "api_version": "2010-04-01", "uri": "/x.json",
            "subresource_uris": {}}


def sent_form(call) -> dict:
    body = call.request.body
    return parse_qs(body.decode() if isinstance(body, bytes) else body)


def call_error(page: str) -> str:
    m = re.search(r'<p class="error" id="call-error"[^>]*>([^<]*)</p>', page)
    return html.unescape(m.group(1)) if m else ""


def test_call_now_rings_the_staff_members_phone_then_the_parent_once_per_click(app, call):
    ref = left_callback(call)
    app.config["PUBLIC_BASE_URL"] = PUBLIC
    browser = signed_in(app)
    page = browser.get(f"/console/callbacks/{ref}").get_data(as_text=True)
    assert "Call now" in page and 'type="tel"' in page
    with responses.RequestsMock() as twilio:
        twilio.post(CALLS, json=twilio_reply(), status=201)
        r = browser.post(f"/console/callbacks/{ref}/call", {"phone": "(860) 555-0142"})
        assert r.status_code == 303
        page = browser.get(r.headers["Location"]).get_data(as_text=True)
        assert CALLED in page and f"taken by {CASEWORKER}" in page
        # A double click: the second places no call, and says why next to the form.
        again = browser.post(f"/console/callbacks/{ref}/call", {"phone": "(860) 555-0142"})
        assert again.status_code == 409
        assert "being placed already" in call_error(again.get_data(as_text=True))
        (sent,) = twilio.calls                                    # one request to Twilio in all
    assert sent.request.method == "POST" and sent.request.url == CALLS
    assert sent_form(sent) == {"To": [STAFF_PHONE], "From": ["+18002285437"], "Method": ["POST"],
                               "Url": [f"{PUBLIC}/callbacks/bridge?ref={ref}"]}
    history = [(e.by, e.action) for e in app.extensions["ivr"].services.callbacks.history(ref)]
    assert (CASEWORKER, "call placed from the console") in history
    log = audit_text(app)
    assert "callback call placed" in log and "callback call not placed" in log
    assert "5550142" not in log and "5550147" not in log                   # no number in the audit log


@pytest.mark.parametrize("answer", ["500", "timeout"])
def test_a_call_twilio_fails_or_never_answers_is_not_retried_and_the_reason_shows(app, call, answer):
    ref = left_callback(call)
    app.config["PUBLIC_BASE_URL"] = PUBLIC
    browser = signed_in(app)
    browser.get(f"/console/callbacks/{ref}")
    with responses.RequestsMock() as twilio:
        if answer == "500":
            twilio.post(CALLS, json={"code": 20500, "message": "Internal Server Error", "status": 500}, status=500)
        else:
            twilio.post(CALLS, body=requests.ReadTimeout("no answer in 15 s"))
        r = browser.post(f"/console/callbacks/{ref}/call", {"phone": STAFF_PHONE})
        assert len(twilio.calls) == 1                             # once: creating a call is not idempotent
    assert r.status_code == 409
    reason = call_error(r.get_data(as_text=True))
    if answer == "500":
        assert reason.startswith("Twilio refused the call: 20500")
    else:
        assert reason.startswith("No answer from Twilio (ReadTimeout): the call may have been placed")
    assert CALLED not in r.get_data(as_text=True)
    assert "callback call not placed" in audit_text(app)


@pytest.mark.parametrize("keyed, error", [("", "Enter the number of the phone you are at."),
                                          ("555-0142", "That is not a US phone number we can call"),
                                          ("1-800-555-1234", "A toll-free number cannot be called from here"),
                                          ("900-555-0142", "That is a premium-rate number")])
def test_a_staff_phone_that_cannot_be_called_is_refused_next_to_the_field(app, call, keyed, error):
    ref = left_callback(call)
    app.config["PUBLIC_BASE_URL"] = PUBLIC
    browser = signed_in(app)
    browser.get(f"/console/callbacks/{ref}")
    with responses.RequestsMock() as twilio:
        r = browser.post(f"/console/callbacks/{ref}/call", {"phone": keyed})
        assert not twilio.calls
    assert r.status_code == 400
    m = re.search(r'<p class="error" id="phone-error">([^<]*)</p>', r.get_data(as_text=True))
    assert m and html.unescape(m.group(1)).startswith(error)
    assert app.extensions["ivr"].services.callbacks.get(ref)["status"] == "open"


def test_call_now_is_refused_signed_out_without_csrf_and_on_someone_elses_callback(app, call):
    ref = left_callback(call)
    app.config["PUBLIC_BASE_URL"] = PUBLIC
    callbacks = app.extensions["ivr"].services.callbacks
    with responses.RequestsMock() as twilio:
        r = Browser(app).post(f"/console/callbacks/{ref}/call", {"phone": STAFF_PHONE})
        assert r.status_code == 303 and "/console/login" in r.headers["Location"]
        browser = signed_in(app)
        browser.get(f"/console/callbacks/{ref}")
        r = browser.post(f"/console/callbacks/{ref}/call", {"phone": STAFF_PHONE}, csrf=False)
        assert r.status_code == 400 and "security token" in r.get_data(as_text=True)
        app.extensions["ivr"].services.staffdb.add("4009", "Other Worker", "480213", callbacks.clock())
        callbacks.take(ref, "4009")
        page = browser.get(f"/console/callbacks/{ref}").get_data(as_text=True)
        assert "Call now" not in page                            # not offered on someone else's callback
        r = browser.post(f"/console/callbacks/{ref}/call", {"phone": STAFF_PHONE})
        assert r.status_code == 303
        page = browser.get(r.headers["Location"]).get_data(as_text=True)
        assert f"callback {ref} is taken by 4009. No call was placed." in page
        callbacks.done(ref, "4009")
        r = browser.post(f"/console/callbacks/{ref}/call", {"phone": STAFF_PHONE})
        page = browser.get(r.headers["Location"]).get_data(as_text=True)
        assert f"callback {ref} is done. No call was placed." in page
        assert not twilio.calls
    assert callbacks.get(ref)["taken_by"] == "4009"


def test_without_a_public_address_the_page_says_call_now_is_not_available(app, call):
    ref = left_callback(call)
    page = signed_in(app).get(f"/console/callbacks/{ref}").get_data(as_text=True)
    assert "Calling from the console needs the server's public address" in page
    assert f"/console/callbacks/{ref}/call" not in page


# --- the caller's message ------------------------------------------------------------------------------

AUDIO = b"ID3\x03\x00 a caller's message" * 40


def with_message(app, ref: str) -> Path:
    """The worker's part, done here: the caller's message saved in $IVR_DATA_DIR/callbacks/REF/."""
    folder = Path(app.config["DATA_DIR"]) / "callbacks" / ref
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "RE0123456789abcdef0123456789abcdef.mp3"
    path.write_bytes(AUDIO)
    app.extensions["ivr"].services.callbacks.update(ref, "message downloaded", by="worker", detail=str(path),
                                                    recording_file=str(path))
    return path


def test_the_callers_message_plays_through_a_link_for_this_session_only(app, call, clock):
    clock.set("2026-11-28 23:30")                                 # Saturday night: 0, caller ID, morning, message
    ref = left_callback(call, ["-", "0", "3", "1", "1", "1", "record"])
    clock.set("2026-11-24 10:00")                                 # staff at work (a supervisor's code is for then)
    browser = signed_in(app)
    page = browser.get(f"/console/callbacks/{ref}").get_data(as_text=True)
    assert "not downloaded yet" in page and "<audio" not in page
    path = with_message(app, ref)
    page = browser.get(f"/console/callbacks/{ref}").get_data(as_text=True)
    link = re.search(r'<audio id="message"[^>]*src="([^"]+)"', page).group(1)
    assert ref not in link and "RE0123" not in link and "callbacks" in link   # names neither callback nor file
    played = browser.get(link)
    assert played.status_code == 200 and played.data == AUDIO and played.mimetype == "audio/mpeg"
    assert played.headers["Cache-Control"] == "no-store"
    supervisor = signed_in(app, "supervisor")
    assert "played the message of a callback" in supervisor.get("/console/audit").get_data(as_text=True)
    assert supervisor.get(link).status_code == 404                        # another session
    assert Browser(app).get(link).status_code == 302                      # signed out: to sign-in
    assert browser.get(link[:-3] + "abc").status_code == 404              # tampered
    assert browser.get(f"/console/callbacks/messages/{ref}").status_code == 404     # guessed
    token = link.rsplit("/", 1)[1]
    assert browser.get(f"/console/messages/{token}").status_code == 404   # not a request's message link
    path.unlink()                                                         # gone from the disk: no player
    page = browser.get(f"/console/callbacks/{ref}").get_data(as_text=True)
    assert "<audio" not in page and "file is missing" in page
    assert browser.get(link).status_code == 404
