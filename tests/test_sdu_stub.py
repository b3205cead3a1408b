"""The stub SDU against the contract itself: every endpoint, every fixture case, both roles, errors
included, each answer validated with the contract's own schema for that path and status. Run through
Flask's test client and over real HTTP (serve_in_thread)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import requests

from ivr.sdu import schema
from ivr.sdu.client import DEV_API_KEY
from ivr.sdu.stub import FIXTURES_PATH, create_stub_app, load_fixtures, serve_in_thread

FIXTURES = load_fixtures()
CASES = FIXTURES["cases"]
BY_NUMBER = {c["case_number"]: c for c in CASES}
TRIGGERS = {c["case_number"]: c["simulate"] for c in CASES if "simulate" in c}
PIN_PATH = "/v1/pin-verifications"
SUMMARY_T = "/v1/cases/{case_number}/summary"
PAYMENTS_T = "/v1/cases/{case_number}/payments"
UNKNOWN = "000000001"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Stub:
    """One fresh stub, reached through `kind` ("test_client" or "http")."""

    kind: str
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = create_stub_app(sleep=self.sleeps.append)
        self._shutdown = None
        if self.kind == "http":
            self.base_url, self._shutdown = serve_in_thread(app=self.app)
            self.session = requests.Session()
        else:
            self.client = self.app.test_client()

    def close(self) -> None:
        if self._shutdown:
            self.session.close()
            self._shutdown()

    def call(self, method: str, path: str, *, key: str | None = DEV_API_KEY, auth: str | None = None,
             json_body: Any = None, raw: bytes | None = None, params: dict | None = None) -> Answer:
        headers = {}
        if auth is not None:
            headers["Authorization"] = auth
        elif key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = raw
        if json_body is not None:
            data = json.dumps(json_body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.kind == "http":
            resp = self.session.request(method, self.base_url + path, headers=headers, data=data,
                                        params=params, timeout=10)
            return Answer(resp.status_code, dict(resp.headers), resp.json())
        resp = self.client.open(path, method=method, headers=headers, data=data, query_string=params)
        return Answer(resp.status_code, dict(resp.headers), json.loads(resp.get_data()))


@pytest.fixture(params=["test_client", "http"])
def stub(request):
    s = Stub(request.param)
    yield s
    s.close()


def conforms(method: str, template: str, answer: Answer) -> Answer:
    """Assert the status is one the contract defines for this operation and the body fits its schema."""
    assert answer.status in schema.defined_statuses(method, template), (method, template, answer.status)
    schema.response_validator(method, template, answer.status).validate(answer.body)
    if answer.status >= 400:
        assert set(answer.body) == {"error", "message"}
    return answer


def verify(stub: Stub, case_number: str, pin: str, **kw) -> Answer:
    return conforms("POST", PIN_PATH, stub.call("POST", PIN_PATH, json_body={"case_number": case_number,
                                                                             "pin": pin}, **kw))


def summary(stub: Stub, case_number: str, role: str | None, **kw) -> Answer:
    params = {"role": role} if role is not None else {}
    path = SUMMARY_T.format(case_number=case_number)
    return conforms("GET", SUMMARY_T, stub.call("GET", path, params=params, **kw))


def payments(stub: Stub, case_number: str, role: str | None, limit: Any = None, **kw) -> Answer:
    params = {"role": role} if role is not None else {}
    if limit is not None:
        params["limit"] = limit
    path = PAYMENTS_T.format(case_number=case_number)
    return conforms("GET", PAYMENTS_T, stub.call("GET", path, params=params, **kw))


def wrong_pin(case: dict) -> str:
    return next(p for p in ("9999", "8888", "7777") if p not in {x["pin"] for x in case["parties"].values()})


# --- the fixture data has what the phone flows need -------------------------------------------------


def test_fixture_cases_are_well_formed():
    numbers = [c["case_number"] for c in CASES]
    assert len(numbers) == len(set(numbers)) >= 12
    for case in CASES:
        assert re.fullmatch(r"[0-9]{9}", case["case_number"])
        assert set(case["parties"]) == {"payer", "payee"}
        pins = [p["pin"] for p in case["parties"].values()]
        assert all(re.fullmatch(r"[0-9]{4}", p) for p in pins) and pins[0] != pins[1]
        order = case["weekly_order"]
        parts = ("current_support", "medical_support", "child_care", "arrears_payment")
        assert sum(Decimal(order[p]) for p in parts) == Decimal(order["total"])
        dates = [p["received_date"] for p in case["payments"]]
        assert dates == sorted(dates, reverse=True), "payments are newest first"
        assert case["as_of"].endswith("-05:00")
        for p in case["payments"]:
            assert (p["status"] == "disbursed") == (p["disbursed_date"] is not None)
            assert (p["status"] == "disbursed") == (p["disbursement_method"] is not None)
            assert "2026-10-01" <= p["received_date"] <= "2026-11-30"


def test_fixture_set_covers_every_enum_and_edge():
    plain = [c for c in CASES if "simulate" not in c]
    payments_ = [p for c in CASES for p in c["payments"]]
    source_enum = schema.contract()["components"]["schemas"]["Payment"]["properties"]["source"]["enum"]
    method_enum = schema.contract()["components"]["schemas"]["DisbursementMethod"]["enum"]
    assert {p["source"] for p in payments_} == set(source_enum)
    assert {p["disbursement_method"] for p in payments_} - {None} == set(method_enum)
    assert {p["status"] for p in payments_} == {"received", "disbursed", "held"}
    assert {c["status"] for c in plain} == {"open", "closed", "suspended"}
    assert {p["preferred_language"] for c in plain for p in c["parties"].values()} == {"en", "es"}
    assert any(c["case_number"].startswith("0") for c in plain)
    assert any(p["pin"].startswith("0") for c in plain for p in c["parties"].values())
    assert any(not c["payments"] for c in plain)
    assert any(c["next_disbursement"] is None for c in plain)
    assert any(c["next_disbursement"] is not None for c in plain)
    assert any(c["arrears_balance"] == "0.00" for c in plain)
    assert any(Decimal(c["arrears_balance"]) < 0 for c in plain)
    assert any(c["weekly_order"]["medical_support"] != "0.00" for c in plain)
    assert any(c["weekly_order"]["child_care"] != "0.00" for c in plain)
    assert any(c["weekly_order"]["arrears_payment"] != "0.00" for c in plain)
    assert any(c["weekly_order"]["medical_support"] == "0.00" for c in plain)
    assert set(TRIGGERS) == {"999000503", "999000429", "999000500", "999000200", "999000408"}


def test_trigger_cases_are_documented():
    about = "\n".join(FIXTURES["_about"])
    from ivr.sdu import stub as stub_module

    for number in TRIGGERS:
        assert number in about and number in stub_module.__doc__
    assert FIXTURES_PATH.name == "fixtures.json"


# --- every endpoint, every case, both roles ---------------------------------------------------------


def test_health_needs_no_key(stub):
    answer = conforms("GET", "/v1/health", stub.call("GET", "/v1/health", key=None))
    assert answer.status == 200 and answer.body == {"status": "ok"}


@pytest.mark.parametrize("case", CASES, ids=[c["case_number"] for c in CASES])
def test_every_case_and_role_conforms(stub, case):
    number = case["case_number"]
    sim = case.get("simulate", {})
    for role, party in case["parties"].items():
        answer = verify(stub, number, party["pin"])
        if "pin" in sim.get("endpoints", []):
            assert answer.status == sim["status"]
        else:
            assert answer.status == 200
            language = party["preferred_language"]
            assert answer.body == {"match": True, "role": role, "preferred_language": language}
        for limit in (None, 1, 20):
            for lookup in (summary(stub, number, role), payments(stub, number, role, limit)):
                if "status" in sim and "summary" in sim["endpoints"] and sim["mode"] == "always":
                    assert lookup.status == sim["status"]
                    assert lookup.headers["Retry-After"] == str(sim["retry_after"])
                elif sim.get("mode") != "alternate":
                    assert lookup.status == 200
    bad = verify(stub, number, wrong_pin(case))
    if "pin" not in sim.get("endpoints", []):
        assert bad.body == {"match": False}


@pytest.mark.parametrize("case", [c for c in CASES if "simulate" not in c], ids=lambda c: c["case_number"])
def test_views_of_payer_and_payee(stub, case):
    number = case["case_number"]
    payer = summary(stub, number, "payer").body
    payee = summary(stub, number, "payee").body
    assert payer["role"] == "payer" and payee["role"] == "payee"
    assert payer["next_disbursement"] is None
    assert payee["next_disbursement"] == case["next_disbursement"]
    for body in (payer, payee):
        assert body["case_number"] == number
        assert body["weekly_order"] == case["weekly_order"]
        assert body["arrears_balance"] == case["arrears_balance"]
        assert body.get("income_withholding_active") == case.get("income_withholding_active")
    if case["payments"]:
        assert payee["last_payment"] == case["payments"][0]
        assert payer["last_payment"] == {**case["payments"][0], "disbursement_method": None}
    else:
        assert payer["last_payment"] is None and payee["last_payment"] is None
    listed = payments(stub, number, "payee", 20).body["payments"]
    assert listed == case["payments"]
    assert all(p["disbursement_method"] is None for p in payments(stub, number, "payer", 20).body["payments"])
    default = payments(stub, number, "payee").body["payments"]
    assert default == case["payments"][:5]
    assert payments(stub, number, "payee", 1).body["payments"] == case["payments"][:1]


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "template", "path", "kw"),
    [
        ("POST", PIN_PATH, PIN_PATH, {"json_body": {"case_number": "123456789", "pin": "1234"}}),
        ("GET", SUMMARY_T, "/v1/cases/123456789/summary", {"params": {"role": "payer"}}),
        ("GET", PAYMENTS_T, "/v1/cases/123456789/payments", {"params": {"role": "payer"}}),
    ],
    ids=["pin", "summary", "payments"],
)
@pytest.mark.parametrize(
    "auth",
    [{"key": None}, {"key": "wrong"}, {"auth": f"Basic {DEV_API_KEY}"}, {"auth": "Bearer"},
     {"key": DEV_API_KEY + "x"}],
    ids=["missing", "wrong", "basic", "empty-bearer", "longer"],
)
def test_401_without_the_right_key(stub, method, template, path, kw, auth):
    answer = conforms(method, template, stub.call(method, path, **kw, **auth))
    assert answer.status == 401 and answer.body["error"] == "unauthorized"


@pytest.mark.parametrize(
    "body",
    [{"case_number": "12345678", "pin": "1234"}, {"case_number": "1234567890", "pin": "1234"},
     {"case_number": "12345678a", "pin": "1234"}, {"case_number": "123456789", "pin": "123"},
     {"case_number": "123456789", "pin": 1234}, {"case_number": 123456789, "pin": "1234"},
     {"case_number": "123456789"}, {"pin": "1234"}, [], "123456789"],
    ids=["short-case", "long-case", "letter", "short-pin", "pin-number", "case-number", "no-pin", "no-case",
         "list", "string"],
)
def test_pin_400(stub, body):
    answer = conforms("POST", PIN_PATH, stub.call("POST", PIN_PATH, json_body=body))
    assert answer.status == 400 and answer.body["error"] == "invalid_request"


def test_pin_400_not_json(stub):
    answer = conforms("POST", PIN_PATH, stub.call("POST", PIN_PATH, raw=b"case=123456789&pin=1234"))
    assert answer.status == 400


@pytest.mark.parametrize(
    ("case_number", "role", "limit"),
    [("12345678", "payer", None), ("abcdefghi", "payer", None), ("123456789", None, None),
     ("123456789", "judge", None), ("123456789", "PAYER", None), ("123456789", "payer", 0),
     ("123456789", "payer", 21), ("123456789", "payer", "abc"), ("123456789", "payer", -1),
     ("123456789", "payer", "5.0")],
    ids=["short-case", "letters", "no-role", "bad-role", "upper-role", "limit-0", "limit-21", "limit-abc",
         "limit-negative", "limit-float"],
)
def test_lookup_400(stub, case_number, role, limit):
    if limit is None:
        assert summary(stub, case_number, role).status == 400
    assert payments(stub, case_number, role, limit).status == 400


def test_unknown_case(stub):
    assert summary(stub, UNKNOWN, "payer").status == 404
    assert payments(stub, UNKNOWN, "payee").body["error"] == "not_found"
    assert verify(stub, UNKNOWN, "1234").body == {"match": False}


def test_unknown_route_and_method_answer_json(stub):
    answer = stub.call("GET", "/v1/nothing")
    assert answer.status == 404 and answer.body["error"] == "not_found"
    answer = stub.call("DELETE", "/v1/cases/123456789/summary")
    assert answer.status == 405 and set(answer.body) == {"error", "message"}


def test_lock_after_five_wrong_pins(stub):
    case = BY_NUMBER["123456789"]
    right = case["parties"]["payer"]["pin"]
    for _ in range(4):
        assert verify(stub, "123456789", "0000").body == {"match": False}
    assert verify(stub, "123456789", right).body["match"] is True  # resets the count
    for _ in range(5):
        assert verify(stub, "123456789", "0000").body == {"match": False}
    locked = verify(stub, "123456789", right)
    assert locked.status == 423 and locked.body["error"] == "locked"
    assert verify(stub, "123456789", "0000").status == 423
    assert verify(stub, "012345678", BY_NUMBER["012345678"]["parties"]["payee"]["pin"]).status == 200
    stub.app.extensions["sdu_stub"].reset_locks()
    assert verify(stub, "123456789", right).status == 200


def test_unknown_case_locks_the_same_way(stub):
    for _ in range(5):
        assert verify(stub, UNKNOWN, "1111").body == {"match": False}
    assert verify(stub, UNKNOWN, "1111").status == 423


@pytest.mark.parametrize("number", ["999000503", "999000429"])
def test_busy_triggers_carry_retry_after(stub, number):
    sim = TRIGGERS[number]
    for answer in (summary(stub, number, "payee"), payments(stub, number, "payer")):
        assert answer.status == sim["status"]
        assert int(answer.headers["Retry-After"]) == sim["retry_after"] == 1
    assert verify(stub, number, BY_NUMBER[number]["parties"]["payer"]["pin"]).status == 200


def test_sign_in_trigger(stub):
    answer = verify(stub, "999000500", "5009")
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert summary(stub, "999000500", "payer").status == 200


def test_flaky_trigger_alternates(stub):
    statuses = [summary(stub, "999000200", "payee").status for _ in range(4)]
    assert statuses == [503, 200, 503, 200]
    assert payments(stub, "999000200", "payee").headers["Retry-After"] == "0"


def test_slow_trigger_sleeps(stub):
    assert summary(stub, "999000408", "payee").status == 200
    assert stub.sleeps == [3.0]


def test_access_log_masks_case_numbers(caplog):
    caplog.set_level(logging.INFO)
    url, shutdown = serve_in_thread()
    try:
        requests.get(f"{url}/v1/cases/123456789/summary", params={"role": "payer"},
                     headers={"Authorization": f"Bearer {DEV_API_KEY}"}, timeout=10)
    finally:
        shutdown()
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("*******89/summary" in line for line in lines)
    assert not any("123456789" in line for line in lines)


def test_api_key_from_argument_or_environment(monkeypatch):
    app = create_stub_app(api_key="k1")
    assert app.test_client().get("/v1/cases/123456789/summary?role=payer",
                                 headers={"Authorization": "Bearer k1"}).status_code == 200
    monkeypatch.setenv("SDU_API_KEY", "k2")
    client = create_stub_app().test_client()
    assert client.get("/v1/cases/123456789/summary?role=payer",
                      headers={"Authorization": "Bearer k2"}).status_code == 200
    assert client.get("/v1/cases/123456789/summary?role=payer",
                      headers={"Authorization": f"Bearer {DEV_API_KEY}"}).status_code == 401


def test_ivr_sdu_stub_keeps_connections_open_and_masks_case_numbers_in_its_log(tmp_path):
    """`ivr sdu-stub` (the Procfile's sdu: line) answers several requests on one connection, as the real
    SDU would, and its access log never shows a whole case number."""
    import http.client
    import os
    import subprocess
    import sys
    import time

    from tests.redis_server import free_port

    port, log_path = free_port(), tmp_path / "stub.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ivr.cli.main", "sdu-stub", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "SDU_API_KEY": DEV_API_KEY})
    try:
        conn = None
        for _ in range(100):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/v1/health")
                break
            except OSError:
                conn = None
                time.sleep(0.1)
        assert conn is not None, log_path.read_text()
        assert conn.getresponse().read()
        sock = conn.sock
        assert sock is not None, "the stub closed the connection after one answer"
        case = CASES[0]["case_number"]
        for _ in range(3):   # http.client would quietly reconnect: the socket must stay the same one
            conn.request("GET", f"/v1/cases/{case}/summary?role=payer",
                         headers={"Authorization": f"Bearer {DEV_API_KEY}"})
            answer = conn.getresponse()
            assert answer.status == 200 and json.loads(answer.read())["case_number"] == case
            assert conn.sock is sock and answer.getheader("Connection") != "close"
        conn.close()
    finally:
        proc.terminate()
        proc.wait(10)
    logged = log_path.read_text()
    assert "/summary" in logged and case not in logged
