"""GET /metrics (issue 16, ../shared/CONTRACT.md): the Prometheus text format to IVR_METRICS_ALLOW only,
403 to anyone else, no Twilio signature; what it counts; summed over gunicorn's workers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ivr.callflow.simphone import Phone, Transport
from ivr.domain.callstats import Folder
from ivr.jobs.worker import HEARTBEAT
from ivr.settings import DEV_AUTH_TOKEN, metrics_allow
from tests.conftest import LINES, TEST_REDIS_URL
from tests.redis_server import free_port
from tests.test_faults import ROOT, children, procfile_web, wait_for

CALLER = "+18605550199"


def scrape(client, address: str = "127.0.0.1"):
    return client.get("/metrics", environ_base={"REMOTE_ADDR": address})


def samples(text: str) -> dict:
    """{(name, sorted labels): value} of a scrape."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_reads_the_metrics_without_a_twilio_signature(client, address):
    resp = scrape(client, address)
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    assert "ivr_webhook_seconds" in resp.get_data(as_text=True)


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.9", "2001:db8::1", "", "bogus"])
def test_any_other_address_is_refused(client, address):
    resp = scrape(client, address)
    assert resp.status_code == 403
    assert b"ivr_" not in resp.data


def test_ivr_metrics_allow_opens_it_to_the_named_networks_only(make_app):
    client = make_app(METRICS_ALLOW=metrics_allow("10.0.0.0/8, 2001:db8::/32")).test_client()
    assert scrape(client, "10.20.30.40").status_code == 200
    assert scrape(client, "2001:db8::5").status_code == 200
    assert scrape(client, "127.0.0.1").status_code == 403    # loopback is the default, not always allowed
    assert scrape(client, "11.0.0.1").status_code == 403


def test_a_malformed_allow_list_stops_start_up_with_its_name():
    from ivr.settings import ConfigError, from_env
    with pytest.raises(ConfigError, match="IVR_METRICS_ALLOW: '10.0.0.0/33' is not an address or a CIDR"):
        from_env({"IVR_METRICS_ALLOW": "127.0.0.1,10.0.0.0/33"})


def test_what_the_calls_did_shows_in_the_metrics(app, client, call, redis_client):
    before = scrape(client).get_data(as_text=True)
    call("callcenter", ["-", "0"], dial_status="busy")                             # a transfer, busy
    call("payments", ["-", "123456789#", "1", "9999#", "1234#", "3"])              # a wrong PIN, then in
    Folder(redis_client, app.config).run()
    redis_client.set(HEARTBEAT, 1764000000)
    after = scrape(client).get_data(as_text=True)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert grew("ivr_calls_started_total", line="callcenter") == 1
    assert grew("ivr_calls_started_total", line="payments") == 1
    assert grew("ivr_transfers_total", result="busy") == 1
    assert grew("ivr_pin_failures_total", line="payments") == 1
    assert grew("ivr_sdu_lookups_total", op="verify_pin", result="ok") == 2
    assert grew("ivr_webhook_seconds_count", kind="voice") == 2
    assert grew("ivr_webhook_seconds_count", kind="status") == 2
    assert grew("ivr_webhook_seconds_count", kind="step") >= 7
    assert value(after, "ivr_calls_ended_total", line="callcenter", outcome="transferred") == 1
    assert value(after, "ivr_calls_ended_total", line="payments", outcome="self_service") == 1
    assert value(after, "ivr_worker_last_seen_timestamp_seconds") == 1764000000
    assert value(after, "ivr_queue_length", queue="jobs") == 0
    assert value(after, "ivr_queue_oldest_age_seconds", queue="analytics") == 0
    assert value(after, "ivr_sdu_breaker_state") == 0
    assert value(after, "ivr_redis_up") == 1
    labels = " ".join(v for _, pairs in samples(after) for _, v in pairs)
    for secret in (CALLER, CALLER[2:], "123456789", "9999", "1234"):
        assert secret not in labels
    assert CALLER[2:] not in after and "123456789" not in after


def test_a_job_waiting_and_events_not_folded_show_their_age(app, client, call, redis_client):
    from ivr.jobs import worker as jobs
    jobs.enqueue(redis_client, "nothing", {})
    call("callcenter", ["-"])
    time.sleep(1.1)
    text = scrape(client).get_data(as_text=True)
    assert value(text, "ivr_queue_length", queue="jobs") == 1
    assert value(text, "ivr_queue_oldest_age_seconds", queue="jobs") >= 1
    assert value(text, "ivr_queue_oldest_age_seconds", queue="analytics") >= 1


def test_without_redis_the_metrics_still_answer_and_say_so(make_app):
    import redis
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    client = make_app(redis=dead).test_client()
    resp = scrape(client)
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert value(text, "ivr_redis_up") == 0
    assert value(text, "ivr_redis_errors_total", where="metrics") >= 1


@pytest.mark.slow
def test_under_gunicorn_the_metrics_are_the_sum_of_every_worker(tmp_path, sdu_stub, redis_client):
    """The Procfile's web line, two workers: calls answered by either are all counted, in any scrape."""
    port = free_port()
    env = {**os.environ, "IVR_ENV": "test", "REDIS_URL": TEST_REDIS_URL, "SDU_BASE_URL": sdu_stub,
           "SDU_API_KEY": "dev-sdu-key", "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "IVR_VALIDATE_SIGNATURES": "1",
           "IVR_DATA_DIR": str(tmp_path / "var"), "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(procfile_web(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            try:
                return requests.get(base + "/health", timeout=1).ok and len(children(proc.pid)) == 2
            except requests.RequestException:
                return False
        wait_for(up, 30, "gunicorn to answer with two workers")
        transport = Transport(DEV_AUTH_TOKEN, base_url=base)
        for _ in range(6):
            Phone(transport=transport, to=LINES["callcenter"]).place(["-", "1", "2"])
        scrapes = [requests.get(base + "/metrics", timeout=5).text for _ in range(4)]
        for text in scrapes:   # whichever worker answers the scrape, all six calls
            assert value(text, "ivr_calls_started_total", line="callcenter") == 6
            assert value(text, "ivr_webhook_seconds_count", kind="voice") == 6
        # A worker killed and replaced: what it counted is kept.
        os.kill(min(children(proc.pid)), signal.SIGKILL)
        wait_for(lambda: len(children(proc.pid)) == 2 and up(), 30, "a new worker")
        assert value(requests.get(base + "/metrics", timeout=5).text, "ivr_calls_started_total",
                     line="callcenter") == 6
        made = re.search(r"metrics of the workers in (\S+)", (tmp_path / "gunicorn.log").read_text()).group(1)
        assert os.path.isdir(made) and any(name.endswith(".db") for name in os.listdir(made))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
    assert not os.path.exists(made)          # the private directory goes with the server
