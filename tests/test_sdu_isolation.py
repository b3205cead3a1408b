"""Issue 19: a slow SDU slows no one else. The payment line's SDU lookups hold at most
IVR_SDU_MAX_CONCURRENT of a web process's threads; a lookup beyond that fails fast to the SDU-down
path, and the call center's callers are answered at once, on the Procfile's own web line."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ivr.callflow.simphone import Phone, Transport
from ivr.sdu.client import SDUClient, SDUUnavailable
from ivr.settings import DEV_AUTH_TOKEN, ROOT
from tests.conftest import LINES, TEST_REDIS_URL
from tests.redis_server import free_port
from tests.sdu_faults import FaultySDU
from tests.test_faults import children, procfile_web, wait_for

CASE = "123456789"
# Ten callers, each with a case of their own from their own phone (the PIN guard limits attempts in
# flight per case and per caller number).
CASES = ["123456789", "012345678", "045678912", "234567891", "345678912", "456789123", "567891234",
         "678912345", "089123456", "901234567"]


@pytest.fixture
def slow_sdu():
    sdu = FaultySDU()
    yield sdu
    sdu.fail(None)
    sdu.stop()


def test_a_lookup_beyond_the_slots_fails_at_once_and_leaves_the_breaker_closed(slow_sdu):
    client = SDUClient(slow_sdu.url, "dev-sdu-key", max_concurrent=2)
    slow_sdu.fail("slow", delay=1.0)
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(client.summary, CASE, "payer") for _ in range(2)]
        wait_for(lambda: slow_sdu.hits["summary"] == 2, 5, "two lookups at the SDU")
        started = time.monotonic()
        with pytest.raises(SDUUnavailable, match="slots"):
            client.summary(CASE, "payer")
        assert time.monotonic() - started < 0.3
        assert slow_sdu.hits["summary"] == 2          # never sent
        for lookup in waiting:
            assert lookup.result(timeout=10).case_number == CASE
    assert client.refused_busy == 1 and client.breaker.state == "closed"
    slow_sdu.fail(None)
    assert client.summary(CASE, "payer").case_number == CASE    # the slots were given back


@pytest.fixture
def web(tmp_path, slow_sdu, redis_client):
    """The Procfile's web line (2 workers x 4 threads), the slow SDU behind it."""
    def start(slots: int):
        port = free_port()
        env = {**os.environ, "IVR_ENV": "test", "REDIS_URL": TEST_REDIS_URL, "SDU_BASE_URL": slow_sdu.url,
               "SDU_API_KEY": "dev-sdu-key", "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "IVR_VALIDATE_SIGNATURES": "1",
               "IVR_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT),
               "IVR_SDU_MAX_CONCURRENT": str(slots)}
        log = (tmp_path / "gunicorn.log").open("w")
        proc = subprocess.Popen(procfile_web(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        started.append((proc, log))
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(base + "/health", timeout=1).status_code == 200 and len(children(proc.pid)) == 2
            except requests.RequestException:
                return False
        wait_for(up, 30, "gunicorn to answer with two workers")
        return base
    started: list = []
    yield start
    for proc, log in started:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_the_call_center_is_answered_at_once_while_payment_callers_wait_on_a_slow_sdu(web, slow_sdu):
    base = web(slots=2)
    transport = Transport(DEV_AUTH_TOKEN, base_url=base)
    # Ten payment callers reach the PIN prompt, then all enter their PIN while the SDU takes 3 s.
    payers = [Phone(transport=transport, to=LINES["payments"], caller=f"+1860555{1200 + i}").start()
              .press("-").press(case).press("1") for i, case in enumerate(CASES)]
    slow_sdu.fail("slow", delay=3.0)
    with ThreadPoolExecutor(10) as pool:
        pins = [pool.submit(p.press, "1234") for p in payers]
        wait_for(lambda: slow_sdu.hits["pin"] >= 2, 5, "PIN checks waiting at the SDU")
        took = []
        for _ in range(4):      # call center callers meanwhile: a call, a menu choice
            started = time.monotonic()
            Phone(transport=transport, to=LINES["callcenter"]).start().press("1")
            took.append(time.monotonic() - started)
        done = [p.result(timeout=30) for p in pins]
    assert max(took) < 1.0, took          # two webhooks each, none waiting on the SDU
    # Two lookups a worker at most went to the SDU; the others heard at once that it cannot answer.
    assert slow_sdu.hits["pin"] <= 4
    assert all(not any(e.kind == "error" for e in p.events) for p in done)
