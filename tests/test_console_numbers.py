"""The numbers page: the period's call figures (from the analytics module, through one function) as charts
and tables, "no data" when there are none, the live view, and bad dates as messages."""

from __future__ import annotations

import html
import json
import re
import sys
import types

from ivr.callflow.simphone import Phone, Transport
from ivr.settings import DEV_AUTH_TOKEN
from tests.conftest import LINES
from tests.console_helpers import CASEWORKER, Browser, add_staff

REPORT = {"calls": {"callcenter": 8, "payments": 2, "staff": 0},
          "outcomes": {"self_service": 5, "transferred": 3, "abandoned": 2},
          "transfers": {"agents": {"total": 2, "answered": 1, "busy": 1, "no_answer": 0, "failed": 0},
                        "hartford": {"total": 1, "answered": 1, "busy": 0, "no_answer": 0, "failed": 0}},
          "abandoned_at": {"cc.main": 2}, "identification": {"success": 1, "wrong_pin": 0, "locked": 0,
                                                              "sdu_down": 0},
          "by_hour": {f"{h:02d}": (3 if h == 10 else 0) for h in range(24)}}


def caseworker(app) -> Browser:
    add_staff(app, CASEWORKER)
    browser = Browser(app)
    browser.sign_in(CASEWORKER)
    return browser


def browser_again(app) -> Browser:
    browser = Browser(app)
    browser.sign_in(CASEWORKER)
    return browser


def test_no_analytics_yet_shows_no_data(app, monkeypatch):
    monkeypatch.setitem(sys.modules, "ivr.domain.callreport", None)      # the module is not there
    page = caseworker(app).get("/console/numbers")
    assert page.status_code == 200 and "No data for this period" in page.get_data(as_text=True)


def test_the_periods_figures_are_drawn_and_tabled(app, monkeypatch):
    asked = {}

    def read(client, since, until):
        asked.update(since=since, until=until)
        return {"2026112415": {"callcenter|calls": 8}}

    fake = types.SimpleNamespace(read=read, build=lambda figures, line=None: REPORT)
    monkeypatch.setitem(sys.modules, "ivr.domain.callreport", fake)
    page = caseworker(app).get("/console/numbers?since=2026-11-01&until=2026-11-24").get_data(as_text=True)
    assert str(asked["since"]) == "2026-11-01" and str(asked["until"]) == "2026-11-24"
    assert "50%" in page                                                   # containment: 5 of 10
    data = json.loads(html.unescape(re.search(r'id="chart-data">(.*?)</script>', page, re.S).group(1)))
    assert {c["id"] for c in data} == {"calls", "outcomes", "transfers", "abandoned", "hours"}
    assert "vendor/chart.umd.min.js" in page and "cdn" not in page.lower()
    assert "<th scope=\"row\">hartford</th>" in page


def test_the_live_view_counts_calls_in_progress(app):
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["payments"], caller="+18605550199")
    phone.start()
    page = caseworker(app).get("/console/numbers").get_data(as_text=True)
    assert re.search(r"Calls in progress, payments</dt><dd>1<", page)
    assert re.search(r"Calls in progress, callcenter</dt><dd>0<", page)
    assert "working" in page
    phone.hang_up()
    page = browser_again(app).get("/console/numbers").get_data(as_text=True)
    assert re.search(r"Calls in progress, payments</dt><dd>0<", page)


def test_the_live_view_shows_the_workers_queue(app):
    from ivr.jobs.queue import GROUP, STREAM, enqueue, ensure_group

    r = app.extensions["ivr"].redis
    enqueue(r, "test.job", {})
    enqueue(r, "test.job", {})
    page = caseworker(app).get("/console/numbers").get_data(as_text=True)
    assert re.search(r"Worker jobs waiting</dt><dd>2<", page)
    ensure_group(r)
    r.xreadgroup(GROUP, "someone", {STREAM: ">"}, count=1)
    page = browser_again(app).get("/console/numbers").get_data(as_text=True)
    assert re.search(r"Worker jobs waiting</dt><dd>1<", page)
    assert re.search(r"Worker jobs being handled</dt><dd>1<", page)


def test_bad_dates_get_a_message(app):
    browser = caseworker(app)
    r = browser.get("/console/numbers?since=yesterday&until=2026-13-01")
    assert r.status_code == 400 and "Give a date as YYYY-MM-DD" in r.get_data(as_text=True)
    r = browser.get("/console/numbers?since=2026-11-20&until=2026-11-01")
    assert r.status_code == 400 and "must not be before" in r.get_data(as_text=True)
    r = browser.get("/console/numbers?line=nowhere")
    assert r.status_code == 400 and "Choose a line" in r.get_data(as_text=True)
