"""When the SDU cannot answer, the caller is told plainly, offered the call center or a later call,
and the call goes on: a dead SDU, 503 and 429 from the stub, answers that break the contract."""

from __future__ import annotations

import re

import pytest
import responses

from ivr.callflow.simphone import Phone
from ivr.domain.payline import case_key
from tests.sdu_faults import FaultySDU
from tests.walk import CASE, PAYER_PIN, forget_summary, line_number

AGENTS = "+18605696233"


def test_no_sdu_at_sign_in_is_said_plainly_and_counts_no_wrong_pin(make_app, call, prompts, redis_client):
    dead = make_app(SDU_BASE_URL="http://127.0.0.1:9")   # nothing listens there
    c = call("payments", ["-", "123456789#", "1", "1234#", "9", "123456789#", "1", "1234#", "0"],
             target_app=dead)
    down = prompts.text("pay.sdu.down", "en")
    assert c.said.count(down) == 2
    assert "1, 8 8 8, 2 3 3, 7 2 2 3" in down        # a later call, to this line
    assert prompts.text("pay.opt.callcenter", "en") + ", press 1." in c.said
    assert prompts.text("pay.pin.wrong", "en") not in c.said
    assert c.dialed == [AGENTS] and not c.statuses.count(500)
    sealer = dead.extensions["ivr"].services.sealer
    assert not redis_client.exists(case_key(sealer, "123456789"))   # not the caller's fault


def test_pin_check_503_offers_the_call_center(call, prompts):
    c = call("payments", ["2", "999000500#", "1", "5009#", "1"])
    assert prompts.text("pay.sdu.down", "es") in c.said
    assert prompts.text("pay.to_cc", "es") in c.said
    assert prompts.text("cc.main.intro", "es") in c.said


@pytest.mark.parametrize("case, pin, key", [("999000503", "5030", "1"), ("999000429", "4290", "3")])
def test_busy_or_batch_window_during_figures_keeps_the_call(call, prompts, case, pin, key):
    c = call("payments", ["-", case + "#", "1", pin + "#", key, "9", "0"])
    menu = prompts.text("pay.menu.intro", "en")
    assert prompts.text("pay.signed_in", "en") in c.said and menu in c.said
    assert prompts.text("pay.sdu.down", "en") in c.said
    assert c.said.count(menu) == 2                      # 9: back to the payment menu
    assert c.dialed == [AGENTS]                         # 0: a person
    assert "dollars" not in c.said


@pytest.fixture
def sdu():
    """A stub SDU of this test's own, which fails on demand and counts what it is asked."""
    s = FaultySDU()
    yield s
    s.stop()


def test_a_retry_inside_the_budget_is_not_noticed(make_app, prompts, sdu):
    app = make_app(SDU_BASE_URL=sdu.url)
    phone = Phone(app, to=line_number(app, "payments")).start()
    for answer in ("-", CASE + "#", "1", PAYER_PIN + "#"):
        phone.press(answer)
    assert prompts.text("pay.menu.intro", "en") in phone.said
    forget_summary(app, phone.sid)          # the figure is looked up now, not read from the call
    sdu.hits.clear()
    sdu.fail("503", endpoints=("summary",), retry_after="0", times=1)
    mark = len(phone.heard)
    phone.press("1")                        # the last payment
    assert sdu.hits["summary"] == 2         # the lookup failed once and was tried again ...
    heard = phone.said_since(mark)          # ... and the caller heard the answer, not the failure
    assert "one hundred eighty-four dollars and fifty cents, from unemployment benefits" in heard
    assert prompts.text("pay.sdu.down", "en") not in heard


SDU = "http://sdu.test"
SUMMARY = re.compile(re.escape(SDU) + r"/v1/cases/123456789/summary.*")
GOOD_SUMMARY = {
    "case_number": "123456789", "role": "payer", "status": "open", "as_of": "2026-11-13T02:15:00-05:00",
    "weekly_order": {"current_support": "150.00", "medical_support": "25.00", "child_care": "20.00",
                     "arrears_payment": "11.00", "total": "206.00"},
    "arrears_balance": "3412.57", "last_payment": None, "next_disbursement": None,
}


@pytest.mark.parametrize("answer", [
    {"body": "<html>Service Temporarily Unavailable</html>", "status": 200},
    {"json": {**GOOD_SUMMARY, "case_number": "987654321"}},                       # another case
    {"json": {**GOOD_SUMMARY, "arrears_balance": 3412.57}},                         # money as a number
    {"json": {**GOOD_SUMMARY, "weekly_order": {"total": "206.00"}}},                # parts missing
    {"json": {"error": "unauthorized"}, "status": 401},
], ids=["not-json", "other-case", "float-money", "missing-parts", "401"])
def test_an_answer_that_breaks_the_contract_is_never_read(make_app, call, prompts, answer):
    app = make_app(SDU_BASE_URL=SDU)
    with responses.RequestsMock() as rsps:
        rsps.post(SDU + "/v1/pin-verifications", json={"match": True, "role": "payer", "preferred_language": "en"})
        rsps.get(SUMMARY, **answer)
        c = call("payments", ["-", "123456789#", "1", "1234#", "3", "1"], target_app=app)
    assert prompts.text("pay.menu.intro", "en") in c.said
    assert c.said.count(prompts.text("pay.sdu.down", "en")) == 1
    assert "dollars" not in c.said
    assert prompts.text("cc.main.intro", "en") in c.said     # 1: the call center menu
    assert not c.hung_up


def test_the_circuit_breaker_answers_at_once_with_the_same_words(make_app, call, prompts):
    app = make_app(SDU_BASE_URL=SDU)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(SDU + "/v1/pin-verifications", json={"match": True, "role": "payer"})
        rsps.get(SUMMARY, status=503, headers={"Retry-After": "0"})
        c = call("payments", ["-", "123456789#", "1", "1234#", "3", "9", "3", "9", "1"], target_app=app)
        assert app.extensions["ivr"].services.sdu.breaker.state == "open"
        summary_calls = sum(1 for call_ in rsps.calls if "/summary" in call_.request.url)
    assert c.said.count(prompts.text("pay.sdu.down", "en")) == 3
    assert summary_calls <= 9    # 3 failures x (1 try + 2 retries) open it; later ones never leave
