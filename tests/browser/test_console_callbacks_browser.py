"""End to end in headless Chromium (issue 18): a caseworker finds the callback a caller left through the
simulated phone on the console's Callbacks page, opens its number, logs an attempt and closes it; axe-core
finds no serious violation on the two callbacks pages (the "Call now" form included)."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from tests.browser.test_console_browser import no_serious_violations, sign_in, wait
from tests.console_helpers import CASEWORKER, add_staff
from tests.test_console_callbacks import KEYED, left_callback

pytestmark = pytest.mark.browser


def test_a_caseworker_finds_the_callback_a_caller_left_and_closes_it(app, live, browser, call, shot):
    ref = left_callback(call)
    app.config["PUBLIC_BASE_URL"] = live      # so the page offers "Call now", and axe checks that form too
    add_staff(app, CASEWORKER, "caseworker", "Casey Worker")
    sign_in(browser, live, CASEWORKER, start="/console/requests")
    browser.find_element(By.LINK_TEXT, "Callbacks").click()
    wait(browser).until(EC.url_contains("/console/callbacks"))
    shot("callbacks")
    no_serious_violations(browser, "callbacks")
    assert "5550147" not in browser.page_source                          # masked in the queue
    browser.find_element(By.LINK_TEXT, ref).click()
    wait(browser).until(EC.url_contains(f"/console/callbacks/{ref}"))
    browser.find_element(By.XPATH, "//button[normalize-space()='Show the number']").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.TAG_NAME, "main"), KEYED))
    browser.find_element(By.ID, "result-reached").click()
    browser.find_element(By.XPATH, "//button[normalize-space()='Log the attempt']").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "attempt logged: reached"))
    assert browser.find_element(By.XPATH, "//button[normalize-space()='Call now']").is_displayed()
    shot("callback")
    no_serious_violations(browser, "callback")
    browser.find_element(By.XPATH, "//button[normalize-space()='Mark done']").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "done"))
    cb = app.extensions["ivr"].services.callbacks.get(ref)
    assert cb["status"] == "done" and cb["done_by"] == CASEWORKER and cb["last_result"] == "reached"
    browser.find_element(By.LINK_TEXT, "All callbacks").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.TAG_NAME, "main"), "No callbacks here."))
