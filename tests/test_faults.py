"""Faults: Redis stopped, frozen or restarted mid-call; the SDU slow, down, failing or talking garbage;
a web worker killed with `kill -9` in the middle of a call; Twilio retrying a webhook.

Whatever breaks, a caller hears a sentence and the call goes on: never an HTTP error, never silence.
Redis faults use a private redis-server on a free port (tests/redis_server.py); SDU faults a private
stub (tests/sdu_faults.py).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests
import yaml

from ivr import store
from ivr.callflow import calllog
from ivr.callflow.flow import successors, targets
from ivr.callflow.prompts import Prompts
from ivr.callflow.simphone import Phone, Transport
from ivr.domain.payline import case_key
from ivr.settings import DEV_AUTH_TOKEN
from tests.redis_server import RedisServer, free_port
from tests.sdu_faults import FaultySDU
from tests.walk import (
    CASE,
    PAYER_PIN,
    explore,
    forget_summary,
    known_values,
    line_number,
    snapshot,
    state_of,
)

ROOT = Path(__file__).resolve().parent.parent
CLOSED = "2026-11-28 23:30"      # a Saturday night


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    with RedisServer(tmp_path / "redis") as s:
        yield s


@pytest.fixture
def durable_server(tmp_path):
    with RedisServer(tmp_path / "redis-aof", persist=True) as s:
        yield s


@pytest.fixture
def sdu():
    s = FaultySDU()
    yield s
    s.stop()


def app_on(make_app, server: RedisServer, **overrides):
    """The app with the production Redis client (ivr/store.py: its timeouts) on a private server."""
    from ivr.app import create_app

    app = make_app(**overrides)
    return create_app(dict(app.config), clock=app.extensions["ivr"].hours.clock,
                      redis_client=store.connect(server.url, "test"))


def text(app, pid: str, lang: str = "en", **fields) -> str:
    return app.extensions["ivr"].prompts.text(pid, lang, **fields)


def first_sentence(app, pid: str, lang: str = "en") -> str:
    return re.split(r"(?<=[.?!])\s", text(app, pid, lang, number="", hours="", name="", phone=""))[0]


def no_exception_logged(caplog) -> None:
    crashes = [r for r in caplog.records if r.exc_info]
    assert not crashes, [f"{r.name}: {r.getMessage()}" for r in crashes]


def agents_number(app) -> str:
    return app.extensions["ivr"].lines_cfg["agents"]["phone"]


def assert_fallback(app, body: str, open_hours: bool) -> None:
    assert first_sentence(app, "sys.fallback_open") in body
    assert "<Gather" not in body                   # no menu that would need the lost state
    if open_hours:
        assert f"<Number>{agents_number(app)}</Number>" in body or f">{agents_number(app)}</Dial>" in body
    else:
        assert "<Dial" not in body and "<Hangup" in body
        assert "8 0 0, 2 2 8, 5 4 3 7" in body     # the call center's number, to call back


# --- Redis -------------------------------------------------------------------------------------------

def test_with_redis_stopped_every_webhook_still_answers(make_app, server, clock, caplog):
    app = app_on(make_app, server)
    phone = Phone(app, to=line_number(app, "callcenter")).start().press("*")   # past the greeting
    server.stop()
    t = Transport(DEV_AUTH_TOKEN, app=app)
    mid_call = phone.last_request[1]
    for hours in ("open", "closed"):
        if hours == "closed":
            clock.set(CLOSED)
        for path, params in [("/voice/step?s=2", mid_call), ("/voice/step?s=9", mid_call),
                             ("/voice", {**mid_call, "CallSid": "CA" + "e" * 32}),
                             ("/voice/fallback", {**mid_call, "ErrorCode": "11200"})]:
            status, body = t.post(path, params)
            assert status == 200, (path, hours)
            assert_fallback(app, body, open_hours=hours == "open")
        assert t.post("/voice/status", {**mid_call, "CallStatus": "completed"})[0] == 204
    health = app.test_client().get("/health")
    assert health.status_code == 200 and health.get_json()["redis"] is False
    no_exception_logged(caplog)


def test_with_redis_frozen_webhooks_answer_after_the_client_timeout(make_app, server, caplog):
    app = app_on(make_app, server)
    phone = Phone(app, to=line_number(app, "callcenter")).start().press("*")   # past the greeting
    server.pause()
    try:
        t = Transport(DEV_AUTH_TOKEN, app=app)
        status, body = t.post(*phone.last_request[:1], {**phone.last_request[1]})
        assert status == 200
        assert_fallback(app, body, open_hours=True)
        status, body = t.post("/voice", {**phone.last_request[1], "CallSid": "CA" + "f" * 32})
        assert status == 200
        assert_fallback(app, body, open_hours=True)
    finally:
        server.resume()
    # Redis answers again: the same call goes on where it was.
    phone.press("2")
    assert state_of(app, phone.sid).node == "cc_change_menu"
    no_exception_logged(caplog)


def test_redis_restarted_mid_call_loses_state_the_caller_is_told_and_starts_the_line_again(
        make_app, server, caplog):
    app = app_on(make_app, server)
    rt = app.extensions["ivr"]
    lost = text(app, "sys.state_lost")
    for name, line in rt.flows.lines.items():
        phone = Phone(app, to=line_number(app, name)).start().press("1")
        before = state_of(app, phone.sid)
        assert before is not None and before.seq >= 2
        server.restart()                     # no persistence: everything in Redis is gone
        mark = len(phone.heard)
        phone.press("1")
        heard = phone.said_since(mark)
        assert heard.startswith(lost), (name, heard[:200])
        start = rt.flows.nodes[line.start]
        start_prompt = start.get("prompt")
        if isinstance(start_prompt, list):
            start_prompt = start_prompt[0]
        if start_prompt:
            assert first_sentence(app, start_prompt) in heard, (name, heard[:300])
        after = state_of(app, phone.sid)
        assert after is not None and after.line == name
        assert after.vars.get("_staff") is None and after.vars.get("role") is None   # nothing carried over
        phone.hang_up()
    no_exception_logged(caplog)


def test_redis_restarted_with_its_data_the_call_goes_on_where_it_was(make_app, durable_server, caplog):
    app = app_on(make_app, durable_server)
    phone = Phone(app, to=line_number(app, "callcenter")).start().press("*").press("3")   # past the greeting
    assert state_of(app, phone.sid).node == "cc_support_menu"
    durable_server.restart()
    mark = len(phone.heard)
    phone.press("4")                         # the medical menu, a choice of the "getting support" menu
    assert text(app, "sys.state_lost") not in phone.said_since(mark)
    assert state_of(app, phone.sid).node == "cc_medical_menu"
    no_exception_logged(caplog)


def test_redis_down_mid_identification_then_back_the_payment_line_starts_again(
        make_app, server, sdu, caplog):
    app = app_on(make_app, server, SDU_BASE_URL=sdu.url)
    phone = Phone(app, to=line_number(app, "payments")).start().press("1").press(CASE).press("1")
    server.stop()
    mark = len(phone.heard)
    phone.press(PAYER_PIN)                   # Redis is down: the fallback message, a person
    assert first_sentence(app, "sys.fallback_open") in phone.said_since(mark)
    assert phone.dialed == [agents_number(app)]
    assert sdu.data_hits == 0                # nothing was read for a caller whose state is unknown
    no_exception_logged(caplog)


# --- the SDU ------------------------------------------------------------------------------------------

class SDUTimer:
    """How long the SDU client may keep one webhook waiting: from its first request to the latest
    moment any of its requests may end (each request's start on the client's own clock plus the
    timeouts it was given; the client sleeps between retries only within that). Bounds the client
    sets itself, so the check does not depend on how fast the machine is."""

    def __init__(self, client, monkeypatch) -> None:
        self.first: float | None = None
        self.latest: float | None = None
        request, clock = client.session.request, client._clock

        def timed_request(method, url, **kwargs):
            connect, read = kwargs["timeout"]
            now = clock()
            self.first = now if self.first is None else self.first
            self.latest = max(self.latest or now, now + connect + read)
            return request(method, url, **kwargs)
        monkeypatch.setattr(client.session, "request", timed_request)

    def reset(self) -> None:
        self.first = self.latest = None

    @property
    def spent(self) -> float:
        return 0.0 if self.first is None else self.latest - self.first


def identified_payer(app) -> Phone:
    phone = Phone(app, to=line_number(app, "payments")).start()
    for key in ("1", CASE, "1", PAYER_PIN):
        phone.press(key)
    assert state_of(app, phone.sid).node == app.extensions["ivr"].flows.lines["payments"].home
    return phone


def sdu_down_node(app) -> str:
    return next(n.id for n in app.extensions["ivr"].flows.nodes.values() if n.get("prompt") == "pay.sdu.down")


def figure_options(app) -> list[str]:
    """The keys of a payer's payment menu whose answer is read from the SDU (the nodes that say so
    by declaring they may go to the "SDU down" node)."""
    flows = app.extensions["ivr"].flows
    down = sdu_down_node(app)
    return [e.key for e in successors(flows, flows.nodes[flows.lines["payments"].home])
            if e.kind == "option" and dict(e.when).get("role", "payer") == "payer"
            and down in targets(successors(flows, flows.nodes[e.target]))]


SDU_FAULTS = [("slow", {}), ("500", {}), ("502", {}), ("429", {"retry_after": "1"}),
              ("503", {"retry_after": "120"}), ("503", {"retry_after": "0"}), ("garbage", {}), ("bad_json", {})]


@pytest.mark.parametrize("mode,kw", SDU_FAULTS, ids=[f"{m}-{kw.get('retry_after', '')}" for m, kw in SDU_FAULTS])
def test_sdu_failing_the_caller_hears_a_plain_message_quickly_and_the_call_goes_on(
        make_app, sdu, monkeypatch, caplog, mode, kw):
    app = make_app(SDU_BASE_URL=sdu.url)
    client = app.extensions["ivr"].services.sdu
    timer = SDUTimer(client, monkeypatch)
    phone = identified_payer(app)
    sdu.fail(mode, **kw)
    forget_summary(app, phone.sid)   # the summary fetched at sign-in would answer for a minute
    down = first_sentence(app, "pay.sdu.down")
    keys = figure_options(app)
    assert len(keys) >= 3, "the payment menu reads nothing from the SDU?"
    for key in keys[:1] if mode in ("slow", "429") else keys:   # these wait: each costs seconds
        timer.reset()
        mark = len(phone.heard)
        phone.press(key)
        heard = phone.said_since(mark)
        assert down in heard, (key, heard)
        assert "dollar" not in heard
        assert timer.spent <= 3.0, f"option {key}: the SDU client may wait {timer.spent:.1f}s"
        if key == keys[0]:
            assert timer.first is not None                             # the SDU was asked (the timer works)
            assert mode != "slow" or timer.spent > 1.0
        assert phone.waiting_for == "Gather" and not phone.ended      # the call goes on, with choices
        phone.press("9")                                               # back to the payment menu
    no_exception_logged(caplog)


@pytest.mark.parametrize("mode", ["slow", "500", "garbage"])
def test_sdu_failing_at_sign_in_the_caller_hears_a_plain_message_and_the_pin_counts_only_for_the_case(
        make_app, sdu, monkeypatch, caplog, mode):
    app = make_app(SDU_BASE_URL=sdu.url)
    timer = SDUTimer(app.extensions["ivr"].services.sdu, monkeypatch)
    phone = Phone(app, to=line_number(app, "payments")).start().press("1").press(CASE).press("1")
    sdu.fail(mode, endpoints=("pin",))
    before = snapshot(app.extensions["ivr"].redis)
    mark = len(phone.heard)
    phone.press(PAYER_PIN)
    assert first_sentence(app, "pay.sdu.down") in phone.said_since(mark)
    assert timer.spent <= 3.0
    assert phone.waiting_for == "Gather"
    assert state_of(app, phone.sid).vars.get("role") is None
    # Nothing but the call's own state and the case's count changed: the SDU may have checked (and
    # counted) the PIN without answering, so the case keeps it (issue 13); the caller number does not.
    after = snapshot(app.extensions["ivr"].redis)
    call_key = f"ivr:call:{phone.sid}".encode()
    case = case_key(app.extensions["ivr"].services.sealer, CASE).encode()
    assert after.get(case) == b"1" and not before.get(case)
    own = (call_key, calllog.STREAM.encode())      # the call's state, and its events (no personal data)
    assert ({k: v for k, v in after.items() if k not in (*own, case)}
            == {k: v for k, v in before.items() if k not in own})
    # The SDU answers again: the same caller signs in with the same PIN.
    sdu.fail(None)
    second = identified_payer(app)
    assert state_of(app, second.sid).vars.get("role") == "payer"
    no_exception_logged(caplog)


def test_a_call_looks_up_its_case_summary_once_and_keeps_the_figures_if_the_sdu_fails(make_app, sdu):
    """Menu, last payment, balance: one summary lookup for the call; a failing SDU after it does not
    take back figures this call already heard (the list of recent payments is a separate lookup)."""
    app = make_app(SDU_BASE_URL=sdu.url)
    phone = identified_payer(app)
    keys = figure_options(app)
    assert sdu.hits["summary"] == 1                 # the menu's greeting checks the case's status
    phone.press(keys[0]).press("9")
    assert sdu.hits["summary"] == 1
    sdu.fail("500", endpoints=("summary",))
    mark = len(phone.heard)
    phone.press(keys[0])
    assert first_sentence(app, "pay.sdu.down") not in phone.said_since(mark)
    assert sdu.hits["summary"] == 1
    other = identified_payer(app)                   # another call: its own lookup, which now fails
    assert sdu.hits["summary"] == 2
    mark = len(other.heard)
    other.press(keys[0])
    assert first_sentence(app, "pay.sdu.down") in other.said_since(mark)


def test_a_call_answered_by_two_workers_looks_up_its_summary_once(make_app, sdu, clock):
    """Gunicorn gives each webhook to whichever worker is free: the summary a call looked up travels
    in its state, sealed, and the other worker answers from it with the same figures, for a minute."""
    workers = [make_app(SDU_BASE_URL=sdu.url) for _ in range(2)]
    keys = figure_options(workers[0])
    phone = identified_payer(workers[0])
    assert sdu.hits["summary"] == 1
    heard = {}
    for i, key in enumerate(keys):
        phone.transport = Transport(DEV_AUTH_TOKEN, app=workers[(i + 1) % 2])
        mark = len(phone.heard)
        phone.press(key)
        heard[key] = phone.said_since(mark)
        phone.press("9")
    assert sdu.hits["summary"] == 1
    assert "dollar" in heard[keys[0]]
    raw = workers[0].extensions["ivr"].redis.get(f"ivr:call:{phone.sid}")
    assert b"_summary" in raw and CASE.encode() not in raw and b"arrears" not in raw and b".00" not in raw
    # A call that asks the SDU itself hears the same words for the same option.
    fresh = identified_payer(workers[1])
    assert sdu.hits["summary"] == 2
    mark = len(fresh.heard)
    fresh.press(keys[0])
    assert fresh.said_since(mark) == heard[keys[0]]
    # A minute on, the first call's figures are asked for again.
    clock.now += timedelta(seconds=61)
    phone.press(keys[0])
    assert sdu.hits["summary"] == 3


def test_sdu_down_the_breaker_stops_further_waiting(make_app, sdu, monkeypatch, caplog):
    app = make_app(SDU_BASE_URL=sdu.url)
    client = app.extensions["ivr"].services.sdu
    timer = SDUTimer(client, monkeypatch)
    phone = identified_payer(app)
    sdu.fail("500")
    forget_summary(app, phone.sid)
    key = figure_options(app)[0]
    for _ in range(client.breaker.threshold):
        phone.press(key).press("9")
    assert client.breaker.state == "open"
    hits = sdu.hits.copy()
    timer.reset()
    for _ in range(3):
        mark = len(phone.heard)
        phone.press(key)
        assert first_sentence(app, "pay.sdu.down") in phone.said_since(mark)
        phone.press("9")
    assert sdu.hits == hits                  # not one request: no caller waits for a dead SDU
    assert timer.spent == 0.0
    no_exception_logged(caplog)


def test_sdu_unreachable_every_webhook_answers(make_app, caplog):
    app = make_app(SDU_BASE_URL=f"http://127.0.0.1:{free_port()}")   # nothing listens there
    phone = Phone(app, to=line_number(app, "payments")).start().press("1").press(CASE).press("1")
    mark = len(phone.heard)
    phone.press(PAYER_PIN)
    assert first_sentence(app, "pay.sdu.down") in phone.said_since(mark)
    health = app.test_client().get("/health").get_json()
    assert health["sdu"] is False and health["redis"] is True
    no_exception_logged(caplog)


# --- Twilio retries -------------------------------------------------------------------------------

@pytest.mark.slow      # walks every line (about 2 min on 2 cores): CI runs it (.ci/run: scripts/test -m slow)
def test_a_twilio_retry_of_any_step_changes_nothing_twice(app, redis_client):
    """Walk every line; after each step, send the same request again (Twilio did not get the answer
    in time): the same TwiML comes back and nothing in Redis changes (no second wrong-PIN count, no
    second request, no second job)."""
    rt = app.extensions["ivr"]
    pool = known_values(app)
    checked = 0
    original = Phone.press

    def press_and_retry(phone, answer):
        original(phone, answer)
        nonlocal checked
        if phone.last_request is None or phone.last_request[0] == "/voice":
            return phone
        before = snapshot(redis_client)
        status, body = phone.repost()
        assert status == 200
        assert body == phone.documents[-1], f"a retry of {phone.last_request[0]} got another answer"
        assert snapshot(redis_client) == before, f"a retry of {phone.last_request[0]} changed Redis"
        checked += 1
        return phone

    Phone.press = press_and_retry
    try:
        seen: set = set()
        for line in rt.flows.lines:
            explore(app, line, pool=pool, max_states=120, seen=seen)
    finally:
        Phone.press = original
    assert checked > 100


def test_a_retry_of_the_first_request_answers_the_same_and_starts_nothing_twice(app, redis_client):
    for line in app.extensions["ivr"].flows.lines:
        phone = Phone(app, to=line_number(app, line)).start()
        before = snapshot(redis_client)
        status, body = phone.repost()
        assert status == 200 and body == phone.documents[0]
        assert snapshot(redis_client) == before


# --- a worker killed mid-call -----------------------------------------------------------------------

def procfile_web(port: int) -> list[str]:
    """The Procfile's `web:` command, on a loopback port with two workers."""
    line = next(ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:"))
    env = {"PORT": str(port), "WEB_CONCURRENCY": "2"}
    line = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), line[4:])
    args = shlex.split(line.replace("0.0.0.0", "127.0.0.1"))
    gunicorn = Path(sys.executable).with_name(args[0])
    return [str(gunicorn) if gunicorn.exists() else args[0]] + args[1:]


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def gunicorn(tmp_path, server, sdu_stub):
    port = free_port()
    env = {**os.environ, "IVR_ENV": "test", "REDIS_URL": server.url, "SDU_BASE_URL": sdu_stub,
           "SDU_API_KEY": "dev-sdu-key", "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "IVR_VALIDATE_SIGNATURES": "1",
           "IVR_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(procfile_web(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            try:
                return requests.get(base + "/health", timeout=1).status_code == 200 and len(children(proc.pid)) == 2
            except requests.RequestException:
                return False
        wait_for(up, 20, "gunicorn to answer with two workers")
        yield proc, base
    finally:
        for pid in children(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_a_worker_killed_mid_call_the_next_webhook_is_answered_with_the_state_intact(gunicorn, server):
    proc, base = gunicorn
    transport = Transport(DEV_AUTH_TOKEN, base_url=base)
    state = redis.Redis.from_url(server.url)
    numbers = {name: line["number"] for name, line in
               yaml.safe_load((ROOT / "config" / "lines.yaml").read_text())["lines"].items()}
    lost = Prompts.load(ROOT / "prompts").text("sys.state_lost", "en")
    phone = Phone(transport=transport, to=numbers["callcenter"]).start().press("*")   # past the greeting

    # Load: other calls going on while the workers die; requests that were on a killed worker may
    # fail (Twilio would use the fallback URL), none may be answered with an error.
    stop, errors, answered = threading.Event(), [], []

    def load():
        t = Transport(DEV_AUTH_TOKEN, base_url=base)
        while not stop.is_set():
            try:
                p = Phone(transport=t, to=numbers["callcenter"]).start()
                for key in ("1", "2", "1", "*"):
                    p.press(key)
                answered.append(p.sid)
            except requests.RequestException:
                pass                         # the connection died with its worker
            except AssertionError as exc:
                errors.append(str(exc))
    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        route = [("3", "cc_support_menu"), ("4", "cc_medical_menu"), ("9", "cc_main"), ("2", "cc_change_menu")]
        for key, node in route:
            workers = children(proc.pid)
            assert len(workers) >= 1
            os.kill(min(workers), signal.SIGKILL)   # the oldest: each of the first two, over the route
            mark = len(phone.heard)
            phone.press(key)
            assert lost not in phone.said_since(mark)
            raw = state.get(f"ivr:call:{phone.sid}")
            assert raw is not None and f'"n":"{node}"' in raw.decode(), (key, node)
            # The master replaces the killed worker.
            killed = min(workers)
        wait_for(lambda: len(children(proc.pid)) == 2 and killed not in children(proc.pid), 20, "a new worker")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
    assert not errors, errors[:3]
    assert answered, "no load call got through"
    assert proc.poll() is None, "the gunicorn master died"


# --- Twilio's Fallback URL mid-call -------------------------------------------------------------------

@pytest.mark.parametrize("hours", ["open", "closed"])
def test_the_fallback_returns_a_caller_whose_state_is_intact_to_where_they_were(app, clock, hours):
    """A webhook lost with a killed worker: Twilio calls the Fallback URL. The call's state is still in
    Redis, so the caller hears the same menu again and goes on, rather than a goodbye after hours."""
    if hours == "closed":
        clock.set(CLOSED)
    phone = Phone(app, to=line_number(app, "callcenter")).start().press("-").press("2")   # "change your order"
    mark = len(phone.heard)
    phone.fallback()
    again = phone.said_since(mark)
    assert text(app, "sys.resume") in again
    assert "Changing your order" in again and text(app, "sys.fallback_closed", number="x", hours="y")[:40] not in again
    assert phone.waiting_for == "Gather" and not phone.ended
    mark = len(phone.heard)
    phone.press("2")                                          # the menu's own key still works
    assert first_sentence(app, "faq.modify") in phone.said_since(mark)


def test_the_fallback_without_a_known_call_still_gives_the_stateless_answer(app):
    phone = Phone(app, to=line_number(app, "callcenter"))
    phone.last_request = ("/voice", {})
    phone.fallback()
    assert text(app, "sys.resume") not in phone.said and "our phone system is having a problem" in phone.said
