"""Abuse: forged requests, PIN guessing across calls and workers, reaching what needs a PIN without it,
and recording URLs that point anywhere but Twilio.

Routes come from `app.url_map` and places in the call tree from the flows, so what lands later is
covered too. PIN limits come from config/flows/payments.yaml (`settings.identification`).
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest
import responses
from twilio.request_validator import RequestValidator

from ivr.callflow import flow
from ivr.callflow.flow import successors, targets
from ivr.callflow.simphone import Phone
from ivr.jobs.worker import JobContext, Worker
from ivr.settings import DEV_AUTH_TOKEN, ConfigError
from tests.sdu_faults import FaultySDU
from tests.walk import (
    ACCOUNT_SID,
    CASE,
    PAYER_PIN,
    STAFF_ID,
    STAFF_PIN,
    WRONG_PIN,
    caller_numbers,
    explore,
    known_values,
    line_number,
    state_of,
)

PARAMS = {"AccountSid": ACCOUNT_SID, "CallSid": "CA" + "a" * 32, "From": "+18605550100", "To": "+18002285437",
          "Digits": "1"}


def sign(url: str, params: dict, token: str = DEV_AUTH_TOKEN) -> dict:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, params)}


def webhooks(app) -> list[str]:
    """Every route Twilio may call: all that take a POST but the staff console's (sessions and CSRF tokens
    guard those: tests/test_console_auth.py)."""
    return sorted({r.rule for r in app.url_map.iter_rules() if "POST" in r.methods and r.endpoint != "static"
                   and not r.rule.startswith("/console/")})


@pytest.fixture
def sdu():
    s = FaultySDU()
    yield s
    s.stop()


# --- signatures -----------------------------------------------------------------------------------

def press_at_once(phones: list, keys: str, timeout: float) -> None:
    """Each (app, phone) presses `keys` on its own thread, all released at the same moment."""
    start, errors = threading.Barrier(len(phones)), []

    def press(app, phone):
        try:
            phone.transport = type(phone.transport)(DEV_AUTH_TOKEN, app=app)   # a client per thread
            start.wait(timeout=10)
            phone.press(keys)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
    threads = [threading.Thread(target=press, args=pair) for pair in phones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"a press took longer than {timeout} s"
    assert not errors, errors[:3]


def test_every_webhook_refuses_a_missing_forged_or_misdirected_signature(app):
    client = app.test_client()
    paths = webhooks(app)
    assert {"/voice", "/voice/step", "/voice/status", "/voice/fallback"} <= set(paths)
    for path in paths:
        url = f"{path}?s=2"
        full = "http://localhost" + url
        wrong = {
            "none": {},
            "empty": {"X-Twilio-Signature": ""},
            "other token": sign(full, PARAMS, token="not-our-token"),
            "other webhook": sign("http://localhost" + next(p for p in paths if p != path) + "?s=2", PARAMS),
            "other step": sign("http://localhost" + path + "?s=3", PARAMS),
            "other host": sign("https://evil.example" + url, PARAMS),
            "other value": sign(full, {**PARAMS, "Digits": "2"}),
            "one more parameter": sign(full, {**PARAMS, "SpeechResult": "operator"}),
            "one parameter less": sign(full, {k: v for k, v in PARAMS.items() if k != "Digits"}),
            "garbage": {"X-Twilio-Signature": "AAAA" * 7},
        }
        for what, headers in wrong.items():
            resp = client.post(url, data=PARAMS, headers=headers)
            assert resp.status_code == 403, (path, what)
            assert b"<Response" not in resp.data
        ok = client.post(url, data=PARAMS, headers=sign(full, PARAMS))
        assert ok.status_code in (200, 204), path


def test_get_routes_are_health_and_published_audio_only(app):
    """Nothing but /health, served media and /metrics (to IVR_METRICS_ALLOW only) answers a GET: no
    TwiML, no call data without a signature."""
    client = app.test_client()
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        if rule.rule.startswith("/console/"):
            # The staff console: every page but sign-in sends a signed-out browser there.
            if rule.endpoint not in ("console.login", "console.login_code", "console.static"):
                assert client.get(rule.rule.replace("<", "").replace(">", "")).status_code in (302, 303)
            continue
        if rule.rule == "/health":
            # `replication`: counts of writes no replica acknowledged (issue 19), nothing of a caller's.
            assert set(client.get("/health").get_json()) == {"status", "redis", "sdu", "sdu_breaker",
                                                              "checked_seconds_ago", "replication"}
            continue
        if rule.rule == "/metrics":   # counts only, and to the operator's addresses only (tests/test_metrics.py)
            assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
            continue
        assert rule.arguments, f"{rule.rule}: a GET route with no argument"
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", "cc.welcome.mp3")
        resp = client.get(path)
        assert resp.status_code == 404, f"{path}: served something nobody published"
        for method in ("post",):
            assert getattr(client, method)(path).status_code in (403, 405)


def test_behind_a_proxy_every_webhook_checks_the_public_url(make_app):
    app = make_app(PUBLIC_BASE_URL="https://ivr.example.org")
    client = app.test_client()
    for path in webhooks(app):
        inside = client.post(path, data=PARAMS, headers=sign("http://localhost" + path, PARAMS))
        assert inside.status_code == 403, path
        public = client.post(path, data=PARAMS, headers=sign("https://ivr.example.org" + path, PARAMS))
        assert public.status_code in (200, 204), path


def test_the_factory_refuses_to_run_without_signatures_in_production(monkeypatch, tmp_path):
    from ivr.app import create_app

    for name, value in {"IVR_ENV": "production", "IVR_VALIDATE_SIGNATURES": "0",
                        "TWILIO_AUTH_TOKEN": "0123456789abcdef" * 2,
                        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "SDU_BASE_URL": "https://sdu.example",
                        "SDU_API_KEY": "k",
                        "IVR_SECRET_KEY": "a-production-secret-of-32-characters-or-more", "REDIS_URL": "redis://127.0.0.1:1/0",
                        "PUBLIC_BASE_URL": "https://ivr.example.org",
                        "IVR_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="IVR_VALIDATE_SIGNATURES=0 is refused"):
        create_app()
    monkeypatch.setenv("IVR_VALIDATE_SIGNATURES", "no")
    with pytest.raises(ConfigError):
        create_app()
    monkeypatch.setenv("IVR_VALIDATE_SIGNATURES", "1")
    app = create_app()
    assert app.config["VALIDATE_SIGNATURES"] is True
    assert app.test_client().post("/voice", data=PARAMS).status_code == 403


# --- PIN guessing ---------------------------------------------------------------------------------

def limits() -> dict:
    from ivr.settings import ROOT

    doc = flow.read(ROOT / "config" / "flows" / "payments.yaml")
    return doc["settings"]["identification"]


def at_pin(app, caller: str, case: str = CASE) -> Phone:
    phone = Phone(app, to=line_number(app, "payments"), caller=caller).start().press("1")
    if state_of(app, phone.sid).node == "pay_case":
        phone.press(case).press("1")
    return phone


def test_per_case_limit_holds_across_calls_and_workers_and_the_sdu_never_locks(make_app, sdu):
    """Wrong PINs for one case from many numbers, alternating between two workers (two apps on one
    Redis): after `case_lock_after` the case is locked everywhere, even for the right PIN, and the
    SDU was asked no more than that (so its own lock, which only SES can lift, is never reached)."""
    workers = [make_app(SDU_BASE_URL=sdu.url), make_app(SDU_BASE_URL=sdu.url)]
    limit = limits()["case_lock_after"]
    numbers = caller_numbers(5551000)
    for i in range(limit + 3):
        phone = at_pin(workers[i % 2], numbers())
        if state_of(workers[i % 2], phone.sid).node == "pay_pin":
            phone.press(WRONG_PIN)
    assert sdu.hits["pin"] == limit
    for app in workers:                                     # the right PIN, a new number, either worker
        phone = at_pin(app, numbers())
        if state_of(app, phone.sid).node == "pay_pin":
            phone.press(PAYER_PIN)
        assert state_of(app, phone.sid).node == "pay_locked"
        assert state_of(app, phone.sid).vars.get("role") is None
    assert sdu.hits["pin"] == limit
    assert not sdu.app.extensions["sdu_stub"].locked(CASE)


def test_per_caller_limit_holds_across_cases_calls_and_workers(make_app, sdu):
    workers = [make_app(SDU_BASE_URL=sdu.url), make_app(SDU_BASE_URL=sdu.url)]
    limit = limits()["caller_lock_after"]
    guesser = "+18605557777"
    for i in range(limit + 2):
        case = f"7000000{i:02d}"                            # a new (unknown) case each time
        phone = at_pin(workers[i % 2], guesser, case)
        if state_of(workers[i % 2], phone.sid).node == "pay_pin":
            phone.press(WRONG_PIN)
    assert sdu.hits["pin"] == limit
    for app in workers:
        phone = at_pin(app, guesser)
        assert state_of(app, phone.sid).node == "pay_locked"   # before even a case number is asked
    honest = at_pin(workers[0], "+18605558888")
    honest.press(PAYER_PIN)
    assert state_of(workers[0], honest.sid).vars.get("role") == "payer"


def test_guesses_sent_at_the_same_moment_to_two_workers_stay_within_the_limit(make_app, sdu):
    """Many calls at the PIN prompt for one case, their wrong PINs sent at once from threads to two
    workers: the count is taken before the SDU is asked, so no more than the limit reach it."""
    workers = [make_app(SDU_BASE_URL=sdu.url), make_app(SDU_BASE_URL=sdu.url)]
    limit = limits()["case_lock_after"]
    numbers = caller_numbers(5552000)
    phones = [(workers[i % 2], at_pin(workers[i % 2], numbers())) for i in range(5 * limit)]
    assert all(state_of(app, p.sid).node == "pay_pin" for app, p in phones)
    press_at_once(phones, WRONG_PIN, timeout=30)
    assert sdu.hits["pin"] <= limit
    assert not sdu.app.extensions["sdu_stub"].locked(CASE)


def test_a_lock_set_by_another_worker_just_before_the_count_stops_the_attempt(make_app, sdu, monkeypatch):
    """The same race made certain: just before one call's PIN is counted, the other worker locks the
    case with its wrong PINs. That PIN must not reach the SDU."""
    from ivr.lines import payments

    first, other = make_app(SDU_BASE_URL=sdu.url), make_app(SDU_BASE_URL=sdu.url)
    limit = limits()["case_lock_after"]
    numbers = caller_numbers(5554000)
    late = at_pin(first, numbers())
    others = [at_pin(other, numbers()) for _ in range(limit)]
    count = payments.Guard.reserve
    pending = [True]

    def others_guess_then_count(self, case_number):
        if pending[0]:
            pending[0] = False
            for phone in others:             # meanwhile, on the other worker
                phone.press(WRONG_PIN)
        return count(self, case_number)
    monkeypatch.setattr(payments.Guard, "reserve", others_guess_then_count)
    late.press(PAYER_PIN)
    assert not pending[0]
    assert sdu.hits["pin"] == limit
    assert state_of(first, late.sid).node == "pay_locked"


def test_staff_pins_guessed_at_the_same_moment_stay_within_the_staff_limit(make_app, monkeypatch):
    """The staff line's own limits (ivr/domain/staffdb.py), under the same attack: many calls from one number
    keying wrong PINs for one staff ID at once, on two workers."""
    from ivr.domain import staffdb

    workers = [make_app(), make_app()]
    if "staff" not in workers[0].extensions["ivr"].flows.lines:
        pytest.skip("no staff line")
    known_values(workers[0])                                   # the staff account
    limit = min(staffdb.CALLER_MAX_FAILS, staffdb.ID_MAX_FAILS)
    checked = []
    check = staffdb.check_pin
    monkeypatch.setattr(staffdb, "check_pin", lambda *args: checked.append(1) or check(*args))
    phones = []
    for i in range(4 * limit):
        app = workers[i % 2]
        phone = Phone(app, to=line_number(app, "staff")).start().press("1").press(STAFF_ID)
        assert state_of(app, phone.sid).node == "st_pin"
        phones.append((app, phone))
    press_at_once(phones, "975310", timeout=60)
    assert len(checked) <= limit, f"{len(checked)} PINs tried for one staff ID at once"
    # Locked now, for the right PIN too.
    phone = Phone(workers[0], to=line_number(workers[0], "staff")).start().press("1").press(STAFF_ID)
    if not phone.ended:
        phone.press(STAFF_PIN)
    assert state_of(workers[0], phone.sid).vars.get("_staff") is None


def test_restarting_identification_in_a_call_does_not_give_more_tries(app, sdu, make_app):
    app = make_app(SDU_BASE_URL=sdu.url)
    per_call = limits()["tries_per_call"]
    phone = at_pin(app, "+18605559999")
    for i in range(per_call + 2):
        node = state_of(app, phone.sid).node
        if node != "pay_pin":
            break
        phone.press(WRONG_PIN)
        if state_of(app, phone.sid).node == "pay_pin" and i % 2 == 0:
            phone.press("*")                                  # "a different case number"
            if state_of(app, phone.sid).node == "pay_case":
                phone.press(f"80000000{i}").press("1")
    assert sdu.hits["pin"] == per_call
    assert state_of(app, phone.sid).node != "pay_menu"
    phone.press("9")                                          # "main menu" does not start over either
    if state_of(app, phone.sid).node == "pay_pin":
        phone.press(PAYER_PIN)
    assert state_of(app, phone.sid).vars.get("role") is None
    assert sdu.hits["pin"] == per_call


# --- what needs a PIN is out of reach without it ---------------------------------------------------

def behind_home(flows, line_name: str) -> set[str]:
    """The nodes of a line that only its home (the menu after sign-in) leads to."""
    line = flows.lines[line_name]

    def reach(start: str, stop: str | None) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            nid = todo.pop()
            if nid in seen or nid == stop or flows.node_line.get(nid) != line_name:
                continue
            seen.add(nid)
            todo += targets(successors(flows, flows.nodes[nid]))
        return seen
    return reach(line.home, None) - reach(line.start, line.home) | {line.home}


@pytest.mark.parametrize("line", ["payments", "staff"])
def test_without_the_right_pin_no_walk_reaches_what_is_behind_sign_in(make_app, sdu, line):
    app = make_app(SDU_BASE_URL=sdu.url)
    rt = app.extensions["ivr"]
    if line not in rt.flows.lines:
        pytest.skip(f"no {line} line")
    secret = {PAYER_PIN, "6284", STAFF_PIN}
    pool = [v for v in known_values(app) if v not in secret]
    assert STAFF_ID in pool or line != "staff"
    protected = behind_home(rt.flows, line)
    assert len(protected) >= 3, protected
    walk = explore(app, line, pool=pool, max_states=400, new_caller=caller_numbers(5553000))
    assert walk.states > 10
    assert not walk.waits & protected, sorted(walk.waits & protected)
    assert sdu.data_hits == 0                 # not one figure was read for anyone


def test_the_public_numbers_never_lead_to_the_staff_line(app):
    rt = app.extensions["ivr"]
    staff = {n for n, line in rt.flows.node_line.items() if line == "staff"}
    entered: set[str] = set()
    enter = rt.engine.enter

    def spy(turn, node_id, *args, **kwargs):
        entered.add(node_id)
        return enter(turn, node_id, *args, **kwargs)
    rt.engine.enter = spy
    seen: set = set()
    for line in rt.flows.lines:
        if line != "staff":
            explore(app, line, pool=known_values(app), max_states=300, seen=seen, new_caller=caller_numbers())
    assert len(entered) > 30
    assert not entered & staff, sorted(entered & staff)


def test_an_ended_call_replayed_hears_no_payment_information(make_app, sdu):
    app = make_app(SDU_BASE_URL=sdu.url)
    phone = at_pin(app, "+18605556666")
    phone.press(PAYER_PIN)
    assert state_of(app, phone.sid).vars.get("role") == "payer"
    menu_request = phone.last_request
    phone.press("1")
    assert "dollars" in phone.said
    figure_request = phone.last_request
    phone.hang_up()
    hits = sdu.data_hits
    for url, params in (figure_request, menu_request):    # signed copies of real requests, replayed
        status, body = phone.transport.post(url, params)
        assert status == 200 and "dollars" not in body
    assert sdu.data_hits == hits
    assert state_of(app, phone.sid).vars.get("role") is None


# --- recording URLs -----------------------------------------------------------------------------------

EVIL = ["http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/",
        f"https://evil.example/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{'0' * 32}",
        f"https://api.twilio.com.evil.example/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{'0' * 32}",
        f"https://api.twilio.com@evil.example/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{'0' * 32}",
        f"https://api.twilio.com:8443/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{'0' * 32}",
        f"http://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/RE{'0' * 32}",
        f"https://api.twilio.com/2010-04-01/Accounts/AC{'9' * 32}/Recordings/RE{'0' * 32}",
        f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/../../../../x",
        "file:///etc/passwd", "gopher://127.0.0.1:25/", "//evil.example/x"]


@pytest.mark.slow      # walks every line (about 40 s on 2 cores): CI runs it (.ci/run: scripts/test -m slow)
def test_recording_urls_outside_twilio_are_never_fetched(app, redis_client):
    """At every place of every line that records, a RecordingUrl that is not one of our account's
    Twilio recordings: the caller's call goes on, and neither the web process nor the worker makes
    a request to it."""
    rt = app.extensions["ivr"]
    record_nodes = {n for n, node in rt.flows.nodes.items() if node.type == "record"}
    waiting: dict[str, Phone] = {}
    seen: set = set()

    def more_of_an_answer(node, answer: str) -> bool:
        """The rest of an answer ("for more, press 1") records nothing: the walk's states go elsewhere."""
        return any(o.get("prompt") == "cc.opt.more" and str(o["key"]) == answer
                   for o in getattr(node, "options", None) or ())

    for line in rt.flows.lines:
        # 900: the call back's places (issue 18) come before the prison path's last message in the walk.
        walk = explore(app, line, pool=known_values(app), max_states=900, hang_up=False, seen=seen,
                       skip=more_of_an_answer)
        for phone in walk.phones:
            state = state_of(app, phone.sid)
            if state is not None and state.node in record_nodes and phone.waiting_for == "Record":
                waiting.setdefault(state.node, phone)
    assert set(waiting) == record_nodes, f"no walk reached {sorted(record_nodes - set(waiting))}"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(app.config["SDU_BASE_URL"])
        for node, phone in waiting.items():
            for url in EVIL:
                branch = phone.fork(app)
                branch.press(url)
                assert not branch.ended or branch.hung_up, (node, url)
        worker = Worker(JobContext(app.config, rt.redis))
        for _ in range(6):
            worker.run_once(block_ms=None)
            worker.retry_pending()
        fetched = [c.request.url for c in mock.calls]
    assert any(urlsplit(u).hostname == "api.twilio.com" for u in fetched), "the worker fetched nothing at all?"
    outside = [u for u in fetched if urlsplit(u).hostname not in ("api.twilio.com",)
               and not u.startswith(app.config["SDU_BASE_URL"])]
    assert not outside, outside
    saved = [p for p in app.config["DATA_DIR"].rglob("*") if p.is_file() and p.suffix in (".mp3", ".wav")]
    assert not saved, saved
