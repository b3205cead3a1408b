"""The console's requests queue: what a caseworker sees of a request an inmate left by phone (numbers masked
until opened, each opening audited), the message played only through this session's link, take / done /
note, the federal notice's business days, the CSV export for supervisors, and bad input as messages."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import date, datetime

import numpy as np
import soundfile as sf

from ivr.domain.notice import business_days_left, due_date
from tests.conftest import OPEN, TZ
from tests.console_helpers import CASEWORKER, INMATE, Browser, inmate_request, signed_in


def with_message(app, ref: str) -> bytes:
    """The worker's part, done here: the caller's message saved in the system's own storage."""
    folder = app.config["DATA_DIR"] / "requests" / ref
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "RE0123456789abcdef0123456789abcdef.mp3"
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(np.linspace(0, 2000, 8000)), 8000, format="MP3")
    path.write_bytes(buf.getvalue())
    store = app.extensions["ivr"].services.requests
    store.recording_saved(ref, str(path), store.open_url(store.raw(ref)["recording_url"]), delete=False)
    return path.read_bytes()


def test_a_caseworker_finds_the_request_an_inmate_left_and_works_it(app):
    ref, _ = inmate_request(app)
    audio = with_message(app, ref)
    browser = signed_in(app)
    queue = browser.get("/console/requests").get_data(as_text=True)
    assert ref in queue and INMATE not in queue and "*****21" in queue
    page = browser.get(f"/console/requests/{ref}").get_data(as_text=True)
    assert INMATE not in page                                   # masked until opened
    link = re.search(r'<audio id="message"[^>]*src="([^"]+)"', page).group(1)
    assert ref not in link and "RE0123" not in link              # names neither the request nor the file
    played = browser.get(link)
    assert played.status_code == 200 and played.data == audio and played.mimetype == "audio/mpeg"
    opened = browser.post(f"/console/requests/{ref}/open")
    assert INMATE in opened.get_data(as_text=True)
    r = browser.post(f"/console/requests/{ref}/take")
    assert r.status_code == 303
    assert "taken" in browser.get(r.headers["Location"]).get_data(as_text=True)
    r = browser.post(f"/console/requests/{ref}/note", {"text": "Called the facility; case 98765 confirmed."})
    page = browser.get(r.headers["Location"]).get_data(as_text=True)
    assert "Called the facility" in page
    raw_history = app.extensions["ivr"].redis.xrange(f"ivr:req:{ref}:audit")
    assert not any(b"case 98765" in v for _, fields in raw_history for v in fields.values())   # the note sealed
    browser.post(f"/console/requests/{ref}/done")
    assert f">{ref}</a>" not in browser.get("/console/requests").get_data(as_text=True)
    assert f">{ref}</a>" in browser.get("/console/requests?status=done").get_data(as_text=True)
    req = app.extensions["ivr"].services.requests.get(ref)
    assert req["status"] == "done" and req["done_by"] == CASEWORKER
    sup = signed_in(app, "supervisor")
    log = sup.get("/console/audit").get_data(as_text=True)
    for action in ("opened the numbers of a request", "played the message of a request", "request take",
                   "request done", "request note"):
        assert action in log


def test_the_message_link_works_only_for_the_session_it_was_made_for(app):
    ref, _ = inmate_request(app)
    with_message(app, ref)
    browser = signed_in(app)
    link = re.search(r'<audio id="message"[^>]*src="([^"]+)"',
                     browser.get(f"/console/requests/{ref}").get_data(as_text=True)).group(1)
    other = signed_in(app, "supervisor")
    assert other.get(link).status_code == 404
    assert Browser(app).get(link).status_code == 302                      # signed out: to sign-in
    assert browser.get(link[:-3] + "abc").status_code == 404              # tampered
    assert browser.get(f"/console/messages/{ref}").status_code == 404     # guessed
    browser.post("/console/logout")
    browser.sign_in(CASEWORKER)
    assert browser.get(link).status_code == 404                           # a new session: a new link


def test_someone_else_cannot_mark_a_taken_request_done(app):
    ref, _ = inmate_request(app)
    a = signed_in(app)
    a.post(f"/console/requests/{ref}/take")
    b = signed_in(app, "supervisor")
    r = b.post(f"/console/requests/{ref}/done")
    assert "only they can mark it done" in b.get(r.headers["Location"]).get_data(as_text=True)
    assert app.extensions["ivr"].services.requests.get(ref)["status"] == "taken"


def test_bad_input_gets_a_message_never_a_500(app):
    ref, _ = inmate_request(app)
    browser = signed_in(app)
    r = browser.get("/console/requests?status=lost&sort=sideways")
    assert r.status_code == 200 and "no status 'lost'" in html.unescape(r.get_data(as_text=True))
    for path in ("/console/requests/abc", "/console/requests/999999", "/console/requests/" + "1" * 300):
        r = browser.get(path)
        assert r.status_code == 404 and "no such page" in r.get_data(as_text=True)
    r = browser.post(f"/console/requests/{ref}/note", {"text": "   "})
    assert r.status_code == 400 and "Write the note first" in r.get_data(as_text=True)
    r = browser.post(f"/console/requests/{ref}/note", {"text": "x" * 1001})
    assert r.status_code == 400 and "at most 1000" in r.get_data(as_text=True)
    assert browser.post("/console/requests/999999/take").status_code == 404


def test_the_csv_export_is_for_supervisors_and_keeps_phone_numbers_as_they_are(app):
    ref, _ = inmate_request(app)
    sup = signed_in(app, "supervisor")
    r = sup.get("/console/requests.csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(r.get_data(as_text=True))))
    assert [row["ref"] for row in rows] == [ref]
    assert rows[0]["inmate_number"] == INMATE and rows[0]["caller_id"] == "+19595550113"
    assert "exported requests" in sup.get("/console/audit").get_data(as_text=True)
    assert sup.get("/console/requests.csv?status=nope").status_code == 404


def test_a_supervisor_puts_a_request_on_legal_hold_and_retention_says_so(app):
    ref, _ = inmate_request(app)
    sup = signed_in(app, "supervisor")
    sup.post(f"/console/requests/{ref}/hold", {"reason": "subpoena 22-1"})
    page = sup.get(f"/console/requests/{ref}").get_data(as_text=True)
    assert "subpoena 22-1" in page and "kept until the hold is released" in page
    r = sup.post(f"/console/requests/{ref}/hold", {"reason": "x" * 300})
    assert "At most 200" in sup.get(r.headers["Location"]).get_data(as_text=True)


# --- the federal notice -------------------------------------------------------------------------------
def test_the_notice_counts_15_business_days_without_connecticut_holidays(app):
    hours = app.extensions["ivr"].services.hours
    # Tuesday 2026-11-24: Thanksgiving (Thu 26th) is not a business day; Friday 27th is (not a CT holiday).
    assert due_date(date(2026, 11, 24), hours) == date(2026, 12, 16)
    # Over Christmas (Fri 25th) and New Year's Day (Fri 1st).
    assert due_date(date(2026, 12, 21), hours) == date(2027, 1, 13)
    created = datetime(2026, 11, 24, 9, 0, tzinfo=TZ)
    assert business_days_left(created, date(2026, 11, 24), hours) == 15
    assert business_days_left(created, date(2026, 11, 27), hours) == 13
    assert business_days_left(created, date(2026, 12, 16), hours) == 0
    assert business_days_left(created, date(2026, 12, 18), hours) == -2


def test_the_queue_is_sorted_by_business_days_left(app, clock):
    clock.now = datetime(2026, 11, 2, 10, 0, tzinfo=TZ)
    old, _ = inmate_request(app)
    clock.now = OPEN
    new, _ = inmate_request(app, ["-", "1", "7654322#", "1", "*", "record"])
    browser = signed_in(app)
    page = browser.get("/console/requests").get_data(as_text=True)
    assert page.index(old) < page.index(new)
    assert "overdue" not in page or page.index("overdue") > page.index(old) - 500
    page = browser.get("/console/requests?sort=newest").get_data(as_text=True)
    assert page.index(new) < page.index(old)


def test_any_value_in_any_console_page_gets_a_page_never_a_500(app):
    """Random path values and query strings on every console page a supervisor may open."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    browser = signed_in(app, "supervisor")
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/console/") and "GET" in r.methods
             and r.endpoint not in ("console.static", "console.logout")]
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rule=st.sampled_from(rules), value=text, query=st.dictionaries(
        st.sampled_from(["status", "sort", "since", "until", "line", "by", "next"]), text, max_size=3))
    def run(rule, value, query):
        from urllib.parse import quote
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", quote(value, safe="") or "x")
        r = browser.client.get(path, query_string=query, base_url="https://localhost")
        assert r.status_code < 500, (path, query, r.status_code)
    run()
