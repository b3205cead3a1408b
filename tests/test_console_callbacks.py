"""The console's callbacks page (issue 18): a callback a caller left through the simulated phone, as a
caseworker finds and works it: oldest first with its due time, the number masked until opened (each
opening audited), take / attempt / done by the signed-in staff member, the CSV export for supervisors,
and bad input as a message on the page."""

from __future__ import annotations

import csv
import io
import re

from tests.console_helpers import CASEWORKER, SUPERVISOR, Browser, add_staff

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


def signed_in(app, role: str = "caseworker") -> Browser:
    staff_id = CASEWORKER if role == "caseworker" else SUPERVISOR
    secret = add_staff(app, staff_id, role)
    browser = Browser(app)
    browser.sign_in(staff_id, totp=secret)
    return browser


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
