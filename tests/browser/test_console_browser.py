"""End to end in headless Chromium: a caseworker works the request an inmate left by phone (plays its message,
takes it, marks it done); a supervisor publishes an uploaded prompt and the next call plays it; an
emergency closure is heard on the next call; signed-out browsers land on sign-in; a form without its CSRF
token is refused; five wrong passwords lock the account; axe-core finds no serious violation on any page."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pyotp
import pytest
import soundfile as sf
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import axe_serious
from tests.conftest import OPEN
from tests.console_helpers import CASEWORKER, INMATE, PASSWORD, SUPERVISOR, add_staff, inmate_request
from tests.test_console_requests import with_message

pytestmark = pytest.mark.browser
MESSAGE = "The call center is closed this afternoon for a fire drill."


def wait(browser, seconds: float = 10) -> WebDriverWait:
    return WebDriverWait(browser, seconds)


def sign_in(browser, live: str, staff_id: str, password: str = PASSWORD, secret: str | None = None,
            start: str = "/console/requests") -> None:
    browser.get(live + start)
    wait(browser).until(EC.url_contains("/console/login"))
    browser.find_element(By.ID, "staff_id").send_keys(staff_id)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    if secret:
        wait(browser).until(EC.url_contains("/console/login/code"))
        browser.find_element(By.ID, "code").send_keys(pyotp.TOTP(secret).at(OPEN))
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(browser).until(lambda b: "/console/login" not in b.current_url)


def no_serious_violations(browser, page: str) -> None:
    found = axe_serious(browser)
    assert not found, f"{page}: {found}"


def test_a_caseworker_plays_takes_and_finishes_the_request_an_inmate_left(app, live, browser, shot):
    ref, _ = inmate_request(app)
    with_message(app, ref)
    add_staff(app, CASEWORKER, "caseworker", "Casey Worker")
    browser.get(live + "/console/requests")
    shot("sign-in")
    no_serious_violations(browser, "sign-in")
    sign_in(browser, live, CASEWORKER)
    assert browser.current_url.endswith("/console/requests")
    shot("requests")
    no_serious_violations(browser, "requests")
    row = browser.find_element(By.LINK_TEXT, ref)
    assert INMATE not in browser.page_source
    row.click()
    wait(browser).until(EC.url_contains(f"/console/requests/{ref}"))
    audio = browser.find_element(By.ID, "message")
    browser.execute_script("arguments[0].play()", audio)
    wait(browser).until(lambda b: b.execute_script(
        "const a = arguments[0]; return a.error === null && a.currentTime > 0 || a.ended", audio))
    assert browser.execute_script("return arguments[0].error", audio) is None
    assert browser.execute_script("return arguments[0].duration", audio) > 0.5
    shot("request")
    no_serious_violations(browser, "request")
    browser.find_element(By.XPATH, "//button[normalize-space()='Show the numbers']").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.TAG_NAME, "main"), INMATE))
    browser.find_element(By.XPATH, "//button[normalize-space()='Take it']").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "taken"))
    browser.find_element(By.XPATH, "//button[normalize-space()='Mark done']").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "done"))
    assert app.extensions["ivr"].services.requests.get(ref)["status"] == "done"
    browser.get(live + "/console/numbers")
    no_serious_violations(browser, "numbers")


def wav_file(tmp_path) -> str:
    t = np.arange(8000) / 8000
    path = tmp_path / "welcome.wav"
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), 8000, subtype="PCM_16")
    return str(path)


def test_a_supervisor_publishes_an_uploaded_prompt_and_the_next_call_plays_it(app, live, browser, call, shot,
                                                                             tmp_path):
    secret = add_staff(app, SUPERVISOR, "supervisor", "Sam Supervisor")
    sign_in(browser, live, SUPERVISOR, secret=secret, start="/console/prompts")
    assert browser.current_url.endswith("/console/prompts")
    shot("prompts")
    no_serious_violations(browser, "prompts")
    browser.get(live + "/console/prompts/cc.welcome/en")
    browser.find_element(By.ID, "audio").send_keys(wav_file(tmp_path))
    browser.find_element(By.XPATH, "//button[normalize-space()='Upload and publish']").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "version 1"))
    shot("prompt")
    no_serious_violations(browser, "prompt")
    c = call("callcenter", [])
    played = [e.text for e in c.events if e.kind == "play"]
    assert played and re.search(r"/audio/RE[0-9a-f]{32}\.mp3$", played[0])
    for page in ("announcements", "hours", "staff", "audit"):
        browser.get(f"{live}/console/{page}")
        shot(page)
        no_serious_violations(browser, page)


def test_an_emergency_closure_switched_on_is_heard_on_the_next_call(app, live, browser, call, shot):
    secret = add_staff(app, SUPERVISOR, "supervisor", "Sam Supervisor")
    sign_in(browser, live, SUPERVISOR, secret=secret, start="/console/closures")
    browser.find_element(By.CSS_SELECTOR, "#scope option[value='line:callcenter']").click()
    until = (OPEN + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    browser.execute_script("document.getElementById('until').value = arguments[0]", until)
    browser.find_element(By.ID, "text_en").send_keys(MESSAGE)
    browser.find_element(By.ID, "text_es").send_keys("El centro de llamadas está cerrado esta tarde.")
    browser.find_element(By.XPATH, "//button[normalize-space()='Close now']").click()
    wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".banner")))
    shot("closures")
    no_serious_violations(browser, "closures")
    c = call("callcenter", ["-", "0"])
    assert c.said.startswith(MESSAGE) and c.dialed == []
    browser.get(live + "/console/requests")
    assert MESSAGE in browser.find_element(By.CSS_SELECTOR, ".banner").text


def test_a_signed_out_browser_is_sent_to_sign_in_everywhere(app, live, browser):
    for path in ("/console/", "/console/requests", "/console/requests/123456", "/console/numbers",
                 "/console/prompts", "/console/prompts/cc.welcome/en", "/console/announcements",
                 "/console/closures", "/console/hours", "/console/staff", "/console/audit",
                 "/console/requests.csv"):
        browser.get(live + path)
        wait(browser).until(EC.url_contains("/console/login"))
        assert browser.find_element(By.ID, "staff_id")


def test_a_form_posted_without_its_csrf_token_is_refused(app, live, browser):
    add_staff(app, CASEWORKER)
    browser.get(live + "/console/login")
    browser.execute_script("document.querySelector('input[name=csrf_token]').remove()")
    browser.find_element(By.ID, "staff_id").send_keys(CASEWORKER)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Form refused"))
    browser.get(live + "/console/requests")
    assert "/console/login" in browser.current_url                      # not signed in


def gone(element):
    """A wait condition: `element`'s page has been replaced. EC.staleness_of expects a stale-element error,
    but Chromium answers mid-navigation with another ("Node with given id does not belong to the
    document"): either means the old page is gone."""
    def check(_) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:      # StaleElementReferenceException is one
            return True
        return False
    return check


def test_five_wrong_passwords_lock_the_account(app, live, browser, shot):
    add_staff(app, CASEWORKER)
    browser.get(live + "/console/login")
    def try_password(password: str) -> None:
        field = browser.find_element(By.ID, "staff_id")
        field.clear()
        field.send_keys(CASEWORKER)
        browser.find_element(By.ID, "password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        # The answer is a new page: wait until the old form is gone (the last answer's error box is still
        # there until then), then for the new one's.
        wait(browser).until(gone(field))
        wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".error-box")))
    for _ in range(5):
        try_password("not my password at all")
    assert "locked" in browser.find_element(By.CSS_SELECTOR, ".error-box").text
    shot("sign-in-locked")
    try_password(PASSWORD)
    assert "locked" in browser.find_element(By.CSS_SELECTOR, ".error-box").text
    assert "/console/login" in browser.current_url


def test_the_numbers_page_draws_its_charts_with_the_vendored_library(app, live, browser, shot, monkeypatch):
    import sys
    import types

    from tests.test_console_numbers import REPORT
    fake = types.SimpleNamespace(read=lambda client, since, until: {"2026112415": {"callcenter|calls": 8}},
                                 build=lambda figures, line=None: REPORT)
    monkeypatch.setitem(sys.modules, "ivr.domain.callreport", fake)
    add_staff(app, CASEWORKER)
    sign_in(browser, live, CASEWORKER, start="/console/numbers")
    wait(browser).until(lambda b: b.execute_script(
        "return typeof Chart !== 'undefined' && !!Chart.getChart(document.getElementById('chart-transfers'))"))
    drawn = browser.execute_script(
        "return Array.from(document.querySelectorAll('canvas')).filter(c => Chart.getChart(c)).length")
    assert drawn == 5
    shot("numbers")
    no_serious_violations(browser, "numbers with charts")
