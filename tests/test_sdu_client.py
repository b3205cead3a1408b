"""SDUClient: happy paths, every failure mode, retries, the time budget and the circuit breaker.

HTTP is faked with `responses`; time is a fake clock that only moves when the fake transport says a
request took time or when the client sleeps, so the budget is asserted exactly, without wall clocks.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import responses
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.sdu import client as sdu_client
from ivr.sdu.client import (
    DEV_API_KEY,
    DEV_BASE_URL,
    Disbursement,
    Payment,
    PinResult,
    SDUBadRequest,
    SDUClient,
    SDUError,
    SDULocked,
    SDUNotFound,
    SDUUnavailable,
    Summary,
    client_from_env,
)
from ivr.sdu.stub import FIXTURES_PATH, create_stub_app, serve_in_thread

BASE = "http://sdu.test"
KEY = "test-key"
CASE = "123456789"
PIN = "4821"
SUMMARY_URL = f"{BASE}/v1/cases/{CASE}/summary"
PAYMENTS_URL = f"{BASE}/v1/cases/{CASE}/payments"
PIN_URL = f"{BASE}/v1/pin-verifications"

FIXTURES = json.loads(FIXTURES_PATH.read_text(encoding="utf-8"))
# Everything that must never show up in a log line, unmasked.
SECRET_PINS = {PIN} | {p["pin"] for c in FIXTURES["cases"] for p in c["parties"].values()}
SECRET_CASES = {CASE, "987654321"} | {c["case_number"] for c in FIXTURES["cases"]}

PAYMENT = {
    "payment_id": "P1",
    "received_date": "2026-11-06",
    "amount": "206.00",
    "source": "income_withholding",
    "status": "disbursed",
    "disbursed_date": "2026-11-09",
    "disbursement_method": "debit_card",
}
SUMMARY = {
    "case_number": CASE,
    "role": "payee",
    "status": "open",
    "as_of": "2026-11-13T02:15:00-05:00",
    "weekly_order": {
        "current_support": "150.00",
        "medical_support": "25.00",
        "child_care": "20.00",
        "arrears_payment": "11.00",
        "total": "206.00",
    },
    "arrears_balance": "3412.57",
    "last_payment": PAYMENT,
    "next_disbursement": {"date": "2026-11-16", "amount": "206.00", "method": "debit_card"},
    "income_withholding_active": True,
}
HELD = {**PAYMENT, "payment_id": "P0", "status": "held", "disbursed_date": None, "disbursement_method": None}
PAYMENTS = {"case_number": CASE, "payments": [PAYMENT, HELD]}


class FakeTime:
    """A monotonic clock that moves only when told; `sleep` advances it and records the wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def make(ft):
    def _make(**kwargs) -> SDUClient:
        return SDUClient(BASE, KEY, clock=ft.clock, sleep=ft.sleep, **kwargs)

    return _make


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog):
    """Across every test here: no PIN in any log line, case numbers only masked."""
    caplog.set_level(logging.DEBUG)
    yield
    # caplog.text only holds the current phase (teardown): read the test's own records.
    records = caplog.get_records("setup") + caplog.get_records("call")
    formatter = logging.Formatter("%(name)s %(message)s")
    text = "\n".join(formatter.format(r) for r in records)
    for pin in SECRET_PINS:
        assert not re.search(rf"(?<![0-9]){pin}(?![0-9])", text), f"PIN {pin} was logged"
    for case in SECRET_CASES:
        assert case not in text, "an unmasked case number was logged"


def _conn_refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: the request never left."""
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", reason))


def _conn_aborted() -> requests.ConnectionError:
    """What requests raises when the connection drops after the request was sent."""
    return requests.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    )


# --- the contract copy ------------------------------------------------------------------------------


def test_contract_copy_is_byte_for_byte_the_shared_contract():
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "sdu-api.yaml"
    if not shared.exists():
        pytest.skip("shared/sdu-api.yaml is not next to this checkout")
    ours = Path(sdu_client.__file__).with_name("contract.yaml")
    assert ours.read_bytes() == shared.read_bytes()


# --- happy paths ------------------------------------------------------------------------------------


def test_verify_pin_match(rsps, make):
    rsps.post(PIN_URL, json={"match": True, "role": "payer", "preferred_language": "es"})
    result = make().verify_pin(CASE, PIN)
    assert result == PinResult(True, "payer", "es")
    sent = rsps.calls[0].request
    assert json.loads(sent.body) == {"case_number": CASE, "pin": PIN}
    assert sent.headers["Authorization"] == f"Bearer {KEY}"


def test_verify_pin_no_match(rsps, make):
    rsps.post(PIN_URL, json={"match": False})
    assert make().verify_pin(CASE, PIN) == PinResult(False, None, None)


def test_summary_converts_to_dataclasses(rsps, make):
    rsps.get(SUMMARY_URL, json=SUMMARY)
    s = make().summary(CASE, "payee")
    assert isinstance(s, Summary)
    assert s.weekly_order.total == Decimal("206.00") and isinstance(s.weekly_order.total, Decimal)
    assert s.weekly_order.child_care == Decimal("20.00")
    assert s.arrears_balance == Decimal("3412.57")
    assert s.as_of == datetime.fromisoformat("2026-11-13T07:15:00+00:00")
    assert s.as_of.utcoffset() == timedelta(hours=-5)
    assert s.last_payment == Payment("P1", date(2026, 11, 6), Decimal("206.00"), "income_withholding",
                                     "disbursed", date(2026, 11, 9), "debit_card")
    assert s.next_disbursement == Disbursement(date(2026, 11, 16), Decimal("206.00"), "debit_card")
    assert s.income_withholding_active is True
    assert rsps.calls[0].request.params == {"role": "payee"}


def test_summary_nulls_and_optional_fields(rsps, make):
    body = {**SUMMARY, "role": "payer", "last_payment": None, "next_disbursement": None}
    del body["income_withholding_active"]
    rsps.get(SUMMARY_URL, json=body)
    s = make().summary(CASE, "payer")
    assert s.last_payment is None and s.next_disbursement is None
    assert s.income_withholding_active is None


def test_payments(rsps, make):
    rsps.get(PAYMENTS_URL, json=PAYMENTS)
    result = make().payments(CASE, "payee", limit=2)
    assert [p.payment_id for p in result] == ["P1", "P0"]
    assert result[1].status == "held" and result[1].disbursed_date is None
    assert result[1].disbursement_method is None
    assert rsps.calls[0].request.params == {"role": "payee", "limit": "2"}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.verify_pin("12345678", PIN),
        lambda c: c.verify_pin("12345678a", PIN),
        lambda c: c.verify_pin(CASE, "123"),
        lambda c: c.verify_pin(CASE, "12345"),
        lambda c: c.summary("../../etc", "payer"),
        lambda c: c.summary(CASE, "judge"),
        lambda c: c.payments(CASE, "payer", limit=0),
        lambda c: c.payments(CASE, "payer", limit=21),
        lambda c: c.payments(CASE, "payer", limit=True),
    ],
)
def test_bad_arguments_never_reach_the_network(rsps, make, call):
    with pytest.raises(SDUBadRequest):
        call(make())
    assert len(rsps.calls) == 0


# --- status codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, SDUBadRequest), (404, SDUNotFound), (423, SDULocked), (401, SDUUnavailable),
     (500, SDUUnavailable)],
)
def test_error_statuses_map_to_errors_without_retry(rsps, make, ft, status, error):
    rsps.get(SUMMARY_URL, status=status, json={"error": "x", "message": "y"})
    with pytest.raises(error):
        make().summary(CASE, "payer")
    assert len(rsps.calls) == 1
    assert ft.sleeps == []


def test_pin_locked(rsps, make):
    rsps.post(PIN_URL, status=423, json={"error": "locked"})
    with pytest.raises(SDULocked):
        make().verify_pin(CASE, PIN)


def test_401_is_logged_loudly_as_configuration_error(rsps, make, caplog):
    rsps.get(SUMMARY_URL, status=401, json={"error": "unauthorized"})
    with pytest.raises(SDUUnavailable):
        make().summary(CASE, "payer")
    assert any(r.levelno == logging.CRITICAL and "SDU_API_KEY" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("status", [502, 503, 504, 429])
def test_retryable_statuses_are_retried_then_give_up(rsps, make, ft, status):
    rsps.get(SUMMARY_URL, status=status, json={"error": "unavailable"})
    with pytest.raises(SDUUnavailable):
        make(retries=2).summary(CASE, "payer")
    assert len(rsps.calls) == 3
    assert ft.sleeps == [0.1, 0.2]  # backoff when there is no Retry-After


@pytest.mark.parametrize("status", [502, 503, 504, 429])
def test_retryable_status_then_success(rsps, make, status):
    rsps.get(SUMMARY_URL, status=status, json={"error": "unavailable"})
    rsps.get(SUMMARY_URL, json=SUMMARY)
    assert make().summary(CASE, "payee").status == "open"
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_within_budget_is_honoured(rsps, make, ft, status):
    rsps.get(SUMMARY_URL, status=status, json={"error": "busy"}, headers={"Retry-After": "1"})
    rsps.get(SUMMARY_URL, json=SUMMARY)
    assert make(budget=2.5).summary(CASE, "payee").case_number == CASE
    assert ft.sleeps == [1.0]
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_beyond_budget_gives_up_at_once(rsps, make, ft, status):
    rsps.get(SUMMARY_URL, status=status, json={"error": "busy"}, headers={"Retry-After": "5"})
    rsps.get(SUMMARY_URL, json=SUMMARY)
    with pytest.raises(SDUUnavailable, match="budget"):
        make(budget=2.5).summary(CASE, "payee")
    assert ft.sleeps == []
    assert len(rsps.calls) == 1


def test_retry_after_that_eats_what_is_left_of_the_budget_gives_up(rsps, make, ft):
    # First wait fits (1 s of 2.5), the second would leave no time for the request itself.
    rsps.get(SUMMARY_URL, status=503, json={"error": "busy"}, headers={"Retry-After": "1"})
    rsps.get(SUMMARY_URL, status=503, json={"error": "busy"}, headers={"Retry-After": "1"})
    rsps.get(SUMMARY_URL, json=SUMMARY)
    with pytest.raises(SDUUnavailable):
        make(budget=1.9, retries=5).summary(CASE, "payee")
    assert ft.sleeps == [1.0]
    assert len(rsps.calls) == 2


# --- network failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [requests.exceptions.ConnectTimeout("t"), requests.exceptions.ReadTimeout("t"), _conn_refused(),
     _conn_aborted()],
    ids=["connect-timeout", "read-timeout", "refused", "aborted"],
)
def test_get_is_retried_on_network_failures(rsps, make, exc):
    rsps.get(SUMMARY_URL, body=exc)
    rsps.get(SUMMARY_URL, json=SUMMARY)
    assert make().summary(CASE, "payee").role == "payee"
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(
    "exc",
    [requests.exceptions.ConnectTimeout("t"), requests.exceptions.ReadTimeout("t"), _conn_refused()],
    ids=["connect-timeout", "read-timeout", "refused"],
)
def test_get_gives_up_after_the_retries(rsps, make, exc):
    rsps.get(SUMMARY_URL, body=exc)
    with pytest.raises(SDUUnavailable) as info:
        make(retries=2).summary(CASE, "payee")
    assert len(rsps.calls) == 3
    assert CASE not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    "exc",
    [requests.exceptions.ConnectTimeout("t"), _conn_refused()],
    ids=["connect-timeout", "refused"],
)
def test_pin_post_is_retried_when_it_never_left(rsps, make, exc):
    rsps.post(PIN_URL, body=exc)
    rsps.post(PIN_URL, json={"match": True, "role": "payee", "preferred_language": "en"})
    assert make().verify_pin(CASE, PIN).match is True
    assert len(rsps.calls) == 2


@pytest.mark.parametrize(
    "exc",
    [requests.exceptions.ReadTimeout("t"), _conn_aborted(), requests.ConnectionError("unknown")],
    ids=["read-timeout", "aborted-after-send", "unknown-connection-error"],
)
def test_pin_post_is_not_retried_once_it_may_have_arrived(rsps, make, exc):
    rsps.post(PIN_URL, body=exc)
    rsps.post(PIN_URL, json={"match": True, "role": "payee"})
    with pytest.raises(SDUUnavailable):
        make(retries=2).verify_pin(CASE, PIN)
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_pin_post_is_not_retried_on_busy_answers(rsps, make, ft, status):
    rsps.post(PIN_URL, status=status, json={"error": "busy"}, headers={"Retry-After": "0"})
    rsps.post(PIN_URL, json={"match": False})
    with pytest.raises(SDUUnavailable):
        make().verify_pin(CASE, PIN)
    assert len(rsps.calls) == 1 and ft.sleeps == []


# --- answers that break the contract ----------------------------------------------------------------


def _broken(path: list, value=None, delete: bool = False) -> dict:
    body = copy.deepcopy(SUMMARY)
    target = body
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


MALFORMED_SUMMARIES = {
    "money-as-number": _broken(["arrears_balance"], 3412.57),
    "money-one-decimal": _broken(["weekly_order", "total"], "206.5"),
    "money-no-decimals": _broken(["weekly_order", "total"], "206"),
    "money-with-symbol": _broken(["last_payment", "amount"], "$206.00"),
    "money-with-comma": _broken(["arrears_balance"], "3,412.57"),
    "bad-status-enum": _broken(["status"], "pending"),
    "bad-source-enum": _broken(["last_payment", "source"], "paycheck"),
    "bad-method-enum": _broken(["next_disbursement", "method"], "cash"),
    "bad-role-enum": _broken(["role"], "judge"),
    "us-date": _broken(["last_payment", "received_date"], "11/06/2026"),
    "impossible-date": _broken(["next_disbursement", "date"], "2026-13-01"),
    "as-of-without-offset": _broken(["as_of"], "2026-11-13T02:15:00"),
    "as-of-not-a-time": _broken(["as_of"], "last night"),
    "bool-as-string": _broken(["income_withholding_active"], "yes"),
    "missing-total": _broken(["weekly_order", "total"], delete=True),
    "missing-status": _broken(["status"], delete=True),
    "missing-payment-id": _broken(["last_payment", "payment_id"], delete=True),
    "order-is-a-list": _broken(["weekly_order"], []),
    "other-case": _broken(["case_number"], "987654321"),
    "other-role": _broken(["role"], "payer"),
}


@pytest.mark.parametrize("body", MALFORMED_SUMMARIES.values(), ids=MALFORMED_SUMMARIES.keys())
def test_malformed_summary_is_unavailable(rsps, make, body):
    rsps.get(SUMMARY_URL, json=body)
    with pytest.raises(SDUUnavailable, match="contract"):
        make().summary(CASE, "payee")
    assert len(rsps.calls) == 1  # a broken answer is not retried


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b"", b'{"match": tru', b"[]"],
    ids=["html", "empty", "truncated", "list"],
)
def test_non_json_or_wrong_shape_is_unavailable(rsps, make, body):
    rsps.post(PIN_URL, body=body, content_type="application/json")
    with pytest.raises(SDUUnavailable):
        make().verify_pin(CASE, PIN)


@pytest.mark.parametrize(
    "body",
    [{"match": "yes"}, {"match": True}, {"match": True, "role": "judge"},
     {"match": True, "role": "payer", "preferred_language": "fr"}, {}],
    ids=["match-string", "match-without-role", "bad-role", "bad-language", "empty"],
)
def test_malformed_pin_answer_is_unavailable(rsps, make, body):
    rsps.post(PIN_URL, json=body)
    with pytest.raises(SDUUnavailable):
        make().verify_pin(CASE, PIN)


@pytest.mark.parametrize(
    "body",
    [{"payments": []}, {"case_number": CASE, "payments": [{**PAYMENT, "status": "lost"}]},
     {"case_number": CASE, "payments": [{**PAYMENT, "disbursed_date": "soon"}]},
     {"case_number": CASE, "payments": [{**PAYMENT, "amount": "-"}]},
     {"case_number": "987654321", "payments": []}, {"case_number": CASE, "payments": {}}],
    ids=["no-case", "bad-status", "bad-date", "bad-money", "other-case", "payments-not-list"],
)
def test_malformed_payments_is_unavailable(rsps, make, body):
    rsps.get(PAYMENTS_URL, json=body)
    with pytest.raises(SDUUnavailable):
        make().payments(CASE, "payee")


def test_undocumented_success_status_is_unavailable(rsps, make):
    rsps.get(SUMMARY_URL, status=204)
    with pytest.raises(SDUUnavailable):
        make().summary(CASE, "payee")


def test_malformed_answers_count_as_breaker_failures(rsps, make):
    rsps.get(SUMMARY_URL, json=MALFORMED_SUMMARIES["money-as-number"])
    client = make(breaker_threshold=3)
    for _ in range(3):
        with pytest.raises(SDUUnavailable):
            client.summary(CASE, "payee")
    assert client.breaker.state == "open"


# --- circuit breaker --------------------------------------------------------------------------------


def test_breaker_opens_after_threshold_and_then_makes_no_calls(rsps, make):
    rsps.get(SUMMARY_URL, status=500, json={"error": "boom"})
    client = make(retries=0, breaker_threshold=3, breaker_reset=30)
    for _ in range(3):
        with pytest.raises(SDUUnavailable):
            client.summary(CASE, "payer")
    assert len(rsps.calls) == 3
    for call in (lambda: client.summary(CASE, "payer"), lambda: client.payments(CASE, "payer"),
                 lambda: client.verify_pin(CASE, PIN)):
        with pytest.raises(SDUUnavailable, match="breaker"):
            call()
    assert len(rsps.calls) == 3


def test_breaker_counts_calls_not_attempts(rsps, make):
    rsps.get(SUMMARY_URL, status=503, json={"error": "busy"})
    client = make(retries=2, breaker_threshold=2)
    with pytest.raises(SDUUnavailable):
        client.summary(CASE, "payer")
    assert client.breaker.state == "closed"
    with pytest.raises(SDUUnavailable):
        client.summary(CASE, "payer")
    assert client.breaker.state == "open"
    assert len(rsps.calls) == 6


def test_breaker_half_open_trial_success_closes_it(rsps, make, ft):
    client = make(retries=0, breaker_threshold=2, breaker_reset=30)
    rsps.get(SUMMARY_URL, status=500, json={"error": "boom"})
    for _ in range(2):
        with pytest.raises(SDUUnavailable):
            client.summary(CASE, "payer")
    ft.now += 29.9
    with pytest.raises(SDUUnavailable, match="breaker"):
        client.summary(CASE, "payer")
    assert len(rsps.calls) == 2
    ft.now += 0.1
    assert client.breaker.state == "half-open"
    rsps.replace(responses.GET, SUMMARY_URL, json=SUMMARY)
    assert client.summary(CASE, "payee").case_number == CASE
    assert client.breaker.state == "closed"
    assert len(rsps.calls) == 3
    # Closed again: it takes the full threshold to open it once more.
    rsps.replace(responses.GET, SUMMARY_URL, status=500, json={"error": "boom"})
    with pytest.raises(SDUUnavailable):
        client.summary(CASE, "payer")
    assert client.breaker.state == "closed"


def test_breaker_half_open_trial_failure_reopens_it(rsps, make, ft):
    client = make(retries=0, breaker_threshold=2, breaker_reset=30)
    rsps.get(SUMMARY_URL, status=500, json={"error": "boom"})
    for _ in range(2):
        with pytest.raises(SDUUnavailable):
            client.summary(CASE, "payer")
    ft.now += 30
    with pytest.raises(SDUUnavailable, match="500"):  # the trial went out and failed
        client.summary(CASE, "payer")
    assert len(rsps.calls) == 3
    assert client.breaker.state == "open"
    ft.now += 29
    with pytest.raises(SDUUnavailable, match="breaker"):
        client.summary(CASE, "payer")
    assert len(rsps.calls) == 3


def test_breaker_half_open_lets_exactly_one_trial_through(rsps, make, ft):
    client = make(retries=0, breaker_threshold=1, breaker_reset=30)
    rsps.get(SUMMARY_URL, status=500, json={"error": "boom"})
    with pytest.raises(SDUUnavailable):
        client.summary(CASE, "payer")
    ft.now += 30
    in_trial, release = threading.Event(), threading.Event()

    def slow_success(request):
        in_trial.set()
        assert release.wait(5)
        return 200, {}, json.dumps(SUMMARY)

    rsps.remove(responses.GET, SUMMARY_URL)
    rsps.add_callback(responses.GET, SUMMARY_URL, callback=slow_success)
    results: list[object] = []
    trial = threading.Thread(target=lambda: results.append(client.summary(CASE, "payee")))
    trial.start()
    assert in_trial.wait(5)
    with pytest.raises(SDUUnavailable, match="breaker"):  # a second caller during the trial
        client.summary(CASE, "payee")
    release.set()
    trial.join(5)
    assert isinstance(results[0], Summary)
    assert client.breaker.state == "closed"


OTHER_CASE = "987654321"


@pytest.mark.parametrize(
    ("status", "body", "call"),
    [
        (404, {"error": "not_found"}, lambda c: c.summary(CASE, "payer")),
        (400, {"error": "invalid_request"}, lambda c: c.payments(CASE, "payer")),
        (423, {"error": "locked"}, lambda c: c.verify_pin(CASE, PIN)),
        (200, {"match": False}, lambda c: c.verify_pin(CASE, PIN)),
    ],
    ids=["404", "400", "423", "no-match"],
)
def test_answers_that_are_not_breaker_failures(rsps, make, status, body, call):
    client = make(retries=0, breaker_threshold=2)
    rsps.get(f"{BASE}/v1/cases/{OTHER_CASE}/summary", status=500, json={"error": "boom"})
    for url in (SUMMARY_URL, PAYMENTS_URL):
        rsps.get(url, status=status, json=body)
    rsps.post(PIN_URL, status=status, json=body)

    def fail() -> None:
        with pytest.raises(SDUUnavailable):
            client.summary(OTHER_CASE, "payer")

    fail()
    for _ in range(3):
        try:
            call(client)
        except SDUError as exc:
            assert not isinstance(exc, SDUUnavailable)
    assert client.breaker.state == "closed"
    fail()  # they reset the count of consecutive failures: this is the first again
    assert client.breaker.state == "closed"
    fail()
    assert client.breaker.state == "open"


# --- the time budget --------------------------------------------------------------------------------


def _timeout_of(request) -> tuple[float, float]:
    connect, read = request.req_kwargs["timeout"]
    return float(connect), float(read)


def test_timeouts_shrink_to_the_budget_left(rsps, make, ft):
    seen: list[tuple[float, float]] = []

    def read_timeout(request):
        connect, read = _timeout_of(request)
        seen.append((connect, read))
        ft.now += connect + read  # the worst case: connected at the last moment, then no answer
        return requests.exceptions.ReadTimeout("slow")

    rsps.add_callback(responses.GET, SUMMARY_URL, callback=read_timeout)
    start = ft.now
    with pytest.raises(SDUUnavailable):
        make(connect_timeout=0.5, read_timeout=1.5, budget=2.5, retries=5).summary(CASE, "payer")
    assert seen[0] == (0.5, 1.5)
    assert len(seen) >= 2 and sum(seen[1]) < 0.5  # the retry only had what was left
    assert ft.now - start <= 2.5


def test_budget_scope_is_shared_by_the_calls_of_one_webhook(rsps, make, ft):
    def takes_0_7s(request):
        connect, read = _timeout_of(request)
        if connect + read < 0.7:
            ft.now += connect + read
            return requests.exceptions.ReadTimeout("slow")
        ft.now += 0.7
        return 200, {}, json.dumps(SUMMARY)

    rsps.add_callback(responses.GET, SUMMARY_URL, callback=takes_0_7s)
    client = make(budget=2.5)
    start = ft.now
    with client.budget_scope(1.8):
        client.summary(CASE, "payee")  # 0.7 s of 1.8
        client.summary(CASE, "payee")  # 1.4 s of 1.8
        with pytest.raises(SDUUnavailable):
            client.summary(CASE, "payee")  # 0.4 s left: sent with short timeouts, times out
        assert len(rsps.calls) == 3
        assert sum(_timeout_of(rsps.calls[2].request)) <= 0.4 + 1e-9
        with pytest.raises(SDUUnavailable, match="budget"):
            client.summary(CASE, "payee")  # nothing left: not even sent
        assert len(rsps.calls) == 3
    assert ft.now - start <= 1.8 + 1e-9
    client.summary(CASE, "payee")  # outside the scope: its own budget again
    assert len(rsps.calls) == 4


OUTCOMES = st.one_of(
    st.tuples(st.just("connect-timeout"), st.just(0)),
    st.tuples(st.just("read-timeout"), st.just(0)),
    st.tuples(st.just("refused"), st.floats(0, 0.2)),
    st.tuples(st.sampled_from([429, 502, 503, 504]), st.one_of(st.none(), st.integers(0, 4))),
    st.tuples(st.just("ok"), st.floats(0, 1)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    outcomes=st.lists(OUTCOMES, min_size=1, max_size=8),
    budget=st.floats(0.3, 5.0),
    connect=st.floats(0.05, 2.0),
    read=st.floats(0.05, 3.0),
    retries=st.integers(0, 5),
    post=st.booleans(),
)
def test_budget_always_holds(outcomes, budget, connect, read, retries, post):
    ft = FakeTime()
    script = iter(outcomes)

    def transport(request):
        c, r = _timeout_of(request)
        assert c >= 0 and r >= 0
        kind, arg = next(script, ("ok", 0.5))
        if kind == "connect-timeout":
            ft.now += c
            return requests.exceptions.ConnectTimeout("t")
        if kind == "read-timeout":
            ft.now += c + r
            return requests.exceptions.ReadTimeout("t")
        if kind == "refused":
            ft.now += min(arg, c)
            return _conn_refused()
        if kind == "ok":
            ft.now += arg * (c + r)  # answered within its timeouts
            body = {"match": False} if post else SUMMARY
            return 200, {}, json.dumps(body)
        ft.now += 0.01 * (c + r)
        headers = {} if arg is None else {"Retry-After": str(arg)}
        return kind, headers, json.dumps({"error": "busy"})

    client = SDUClient(BASE, KEY, connect_timeout=connect, read_timeout=read, budget=budget,
                       retries=retries, clock=ft.clock, sleep=ft.sleep, breaker_threshold=1000)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.GET, SUMMARY_URL, callback=transport)
        mock.add_callback(responses.POST, PIN_URL, callback=transport)
        start = ft.now
        try:
            if post:
                client.verify_pin(CASE, PIN)
            else:
                client.summary(CASE, "payee")
        except SDUUnavailable:
            pass
        assert len(mock.calls) <= retries + 1
    assert ft.now - start <= budget + 1e-9


# --- health and configuration -----------------------------------------------------------------------


def test_health(rsps, make):
    rsps.get(f"{BASE}/v1/health", json={"status": "ok"})
    assert make().health() is True


@pytest.mark.parametrize(
    "kwargs",
    [{"status": 503, "json": {"error": "down"}}, {"json": {"status": "meh"}}, {"body": b"not json"},
     {"body": requests.exceptions.ConnectTimeout("t")}],
    ids=["503", "bad-status", "not-json", "timeout"],
)
def test_health_false_and_breaker_untouched(rsps, make, kwargs):
    rsps.get(f"{BASE}/v1/health", **kwargs)
    client = make(breaker_threshold=1)
    assert client.health() is False
    assert client.breaker.state == "closed"


def test_client_from_env_defaults_to_the_stub():
    client = client_from_env({})
    assert client.base_url == DEV_BASE_URL
    assert client.session.headers["Authorization"] == f"Bearer {DEV_API_KEY}"
    client = client_from_env({"SDU_BASE_URL": "https://sdu.example/", "SDU_API_KEY": "k"})
    assert client.base_url == "https://sdu.example"
    assert client.session.headers["Authorization"] == "Bearer k"


@pytest.mark.parametrize(
    "config",
    [{"IVR_ENV": "production"}, {"IVR_ENV": "production", "SDU_BASE_URL": "https://sdu.example"},
     {"IVR_ENV": "production", "SDU_BASE_URL": "https://sdu.example", "SDU_API_KEY": DEV_API_KEY}],
)
def test_client_from_env_refuses_development_defaults_in_production(config):
    with pytest.raises(ValueError):
        client_from_env(config)


# --- against the real stub over HTTP ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_url():
    # The slow trigger only needs to outlast the client's read timeout.
    app = create_stub_app(sleep=lambda s: threading.Event().wait(min(s, 0.6)))
    url, shutdown = serve_in_thread(app=app)
    yield url
    shutdown()


TRIGGERS = {c["case_number"] for c in FIXTURES["cases"] if "simulate" in c}
PLAIN_CASES = [c for c in FIXTURES["cases"] if "simulate" not in c]


@pytest.mark.parametrize("case", PLAIN_CASES, ids=[c["case_number"] for c in PLAIN_CASES])
def test_every_fixture_case_round_trips_through_the_stub(stub_url, case):
    client = SDUClient(stub_url, DEV_API_KEY, budget=10, read_timeout=5, connect_timeout=2)
    number = case["case_number"]
    for role, party in case["parties"].items():
        assert client.verify_pin(number, party["pin"]) == PinResult(True, role, party["preferred_language"])
        summary = client.summary(number, role)
        assert summary.case_number == number and summary.role == role
        assert summary.status == case["status"]
        assert summary.arrears_balance == Decimal(case["arrears_balance"])
        assert summary.weekly_order.total == Decimal(case["weekly_order"]["total"])
        assert summary.as_of.utcoffset() == timedelta(hours=-5)
        assert summary.income_withholding_active == case.get("income_withholding_active")
        if role == "payer":
            assert summary.next_disbursement is None
        elif case["next_disbursement"]:
            assert summary.next_disbursement.amount == Decimal(case["next_disbursement"]["amount"])
        else:
            assert summary.next_disbursement is None
        payments = client.payments(number, role, limit=20)
        assert [p.payment_id for p in payments] == [p["payment_id"] for p in case["payments"]]
        assert all(isinstance(p.amount, Decimal) and isinstance(p.received_date, date) for p in payments)
        assert len(client.payments(number, role)) == min(5, len(case["payments"]))
        assert (summary.last_payment is None) == (not case["payments"])
        if payments:
            assert summary.last_payment == payments[0]
    wrong = "9999" if all(p["pin"] != "9999" for p in case["parties"].values()) else "8888"
    assert client.verify_pin(number, wrong).match is False


def test_stub_triggers_through_the_client(stub_url):
    sleeps: list[float] = []
    client = SDUClient(stub_url, DEV_API_KEY, sleep=sleeps.append, breaker_threshold=100)
    assert client.health() is True
    assert client.verify_pin("999000503", "5030").match is True
    with pytest.raises(SDUUnavailable):
        client.summary("999000503", "payer")
    assert sleeps == [1.0, 1.0]  # honoured the stub's Retry-After (without really waiting here)
    with pytest.raises(SDUUnavailable):
        client.payments("999000429", "payee")
    with pytest.raises(SDUUnavailable):
        client.verify_pin("999000500", "5009")
    sleeps.clear()
    assert client.summary("999000200", "payee").case_number == "999000200"  # flaky: the retry wins
    assert sleeps == [0.0]
    with pytest.raises(SDUNotFound):
        client.summary("000000001", "payer")
    assert client.verify_pin("000000001", "1234").match is False
    slow = SDUClient(stub_url, DEV_API_KEY, connect_timeout=0.2, read_timeout=0.2, budget=0.3, retries=0)
    with pytest.raises(SDUUnavailable):
        slow.summary("999000408", "payee")


def test_stub_lock_through_the_client():
    url, shutdown = serve_in_thread()
    try:
        client = SDUClient(url, DEV_API_KEY, budget=10, read_timeout=5)
        for _ in range(5):
            assert client.verify_pin("234567891", "0000").match is False
        with pytest.raises(SDULocked):
            client.verify_pin("234567891", "2468")  # locked: even the right PIN
        assert client.breaker.state == "closed"
    finally:
        shutdown()


def test_wrong_key_against_the_stub_is_unavailable(stub_url, caplog):
    client = SDUClient(stub_url, "not-the-key")
    with pytest.raises(SDUUnavailable, match="401"):
        client.summary("123456789", "payer")
    assert "SDU_API_KEY" in caplog.text
