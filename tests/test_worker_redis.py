"""The worker and the web app against Redis itself: persistence checked at start-up in production, the
job stream's group made again after Redis lost its data, and an idle worker that logs nothing."""

from __future__ import annotations

import logging
import re
import threading
import time

import pytest
import redis
import responses

from ivr import store
from ivr.app import create_app
from ivr.callflow.simphone import Transport
from ivr.cli.main import main
from ivr.jobs import worker as jobs
from ivr.settings import DEV_ACCOUNT_SID, ConfigError
from tests.conftest import LINES, TEST_REDIS_URL
from tests.redis_server import RedisServer
from tests.test_inmate_recordings import AUDIO, message_on, store_of

# Production settings that pass every other start-up check (none of them is a development value).
PRODUCTION = {"IVR_ENV": "production", "TWILIO_ACCOUNT_SID": "AC" + "5a" * 16,
              "TWILIO_AUTH_TOKEN": "9f1c" * 8, "SDU_BASE_URL": "https://sdu.example.org/api",
              "SDU_API_KEY": "sdu-production-key-7d1e0c", "IVR_SECRET_KEY": "k3y-" * 12,
              "PUBLIC_BASE_URL": "https://ivr.example.org"}


@pytest.fixture
def production(monkeypatch, tmp_path):
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IVR_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("IVR_ALLOW_NO_PERSISTENCE", raising=False)

    def env(server: RedisServer, url: str | None = None) -> None:
        monkeypatch.setenv("REDIS_URL", url or server.url)
    return env


@pytest.fixture
def volatile(tmp_path):
    with RedisServer(tmp_path / "redis") as server:        # appendonly no, no RDB saves
        yield server


@pytest.fixture
def durable(tmp_path):
    with RedisServer(tmp_path / "redis-aof", persist=True) as server:
        yield server


def errors(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno >= logging.ERROR]


# --- persistence, checked at start-up in production ------------------------------------------------

def test_production_refuses_a_redis_without_persistence_and_says_what_to_set(production, volatile, capsys):
    production(volatile)
    with pytest.raises(ConfigError) as refused:
        create_app()
    assert "appendonly yes" in str(refused.value) and "IVR_ALLOW_NO_PERSISTENCE=1" in str(refused.value)
    capsys.readouterr()
    assert main(["worker", "--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivr worker: ") and "appendonly yes" in err and len(err.splitlines()) == 1


def test_production_starts_on_a_redis_with_aof(production, durable, capsys, caplog):
    production(durable)
    assert create_app().test_client().get("/health").status_code == 200
    assert main(["worker", "--once"]) == 0
    assert "handled 0 job(s)" in capsys.readouterr().out
    assert errors(caplog, "ivr.store") == []


def test_the_override_starts_without_persistence_with_an_error_in_the_log(production, volatile, monkeypatch,
                                                                           caplog, capsys):
    production(volatile)
    monkeypatch.setenv("IVR_ALLOW_NO_PERSISTENCE", "1")
    create_app()
    assert main(["worker", "--once"]) == 0
    logged = errors(caplog, "ivr.store")
    assert len(logged) == 2 and all("appendonly" in m and "IVR_ALLOW_NO_PERSISTENCE" in m for m in logged)


def test_a_bad_override_value_is_refused_with_its_name(production, durable, monkeypatch):
    production(durable)
    monkeypatch.setenv("IVR_ALLOW_NO_PERSISTENCE", "yes")
    with pytest.raises(ConfigError, match="IVR_ALLOW_NO_PERSISTENCE must be 1 or 0"):
        create_app()


@pytest.mark.parametrize("persist", [True, False])
def test_a_redis_that_forbids_config_is_checked_with_info(production, tmp_path, persist):
    """Managed Redis often refuses CONFIG to its users: INFO persistence says whether AOF is on."""
    with RedisServer(tmp_path / "redis", persist=persist) as server:
        server.client().acl_setuser("app", enabled=True, passwords=["+app-pw-1"], keys=["*"], channels=["*"],
                                    commands=["+@all", "-config"])
        url = f"redis://app:app-pw-1@127.0.0.1:{server.port}/0"
        with pytest.raises(redis.ResponseError):
            redis.Redis.from_url(url).config_get("appendonly")
        production(server, url)
        if persist:
            create_app()
        else:
            with pytest.raises(ConfigError, match="appendonly yes"):
                create_app()


def test_production_with_redis_down_at_start_still_starts_and_answers_the_fallback(production, volatile):
    production(volatile)
    volatile.stop()
    transport = Transport(PRODUCTION["TWILIO_AUTH_TOKEN"], app=create_app(), base_url=PRODUCTION["PUBLIC_BASE_URL"])
    status, twiml = transport.post("/voice/fallback", {"CallSid": "CA" + "1" * 32, "To": LINES["callcenter"],
                                                       "AccountSid": PRODUCTION["TWILIO_ACCOUNT_SID"],
                                                       "From": "+18605550199"})
    assert status == 200 and "<Say" in twiml


# --- the worker's consumer group, gone with Redis's data --------------------------------------------

@responses.activate
def test_a_worker_running_through_a_redis_restart_without_data_handles_the_next_job(volatile, clock, sdu_stub,
                                                                                   tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(jobs, "OUTAGE_PAUSE", 0.05)
    client = store.connect(volatile.url, "test")
    app = create_app({"IVR_ENV": "test", "REDIS_URL": volatile.url, "SDU_BASE_URL": sdu_stub,
                      "DATA_DIR": tmp_path / "var"}, clock=clock, redis_client=client)
    worker = jobs.Worker(jobs.JobContext(app.config, client), name="survivor")
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, kwargs={"stop": stop.is_set, "block_ms": 200})
    runner.start()
    try:
        volatile.restart()                          # no AOF: the stream and its group are gone
        responses.get(re.compile(r"^https://api\.twilio\.com/.+\.mp3$"), body=AUDIO)
        ref, _ = message_on(app, DEV_ACCOUNT_SID)   # a caller leaves a message after the restart
        deadline = time.monotonic() + 20
        while not store_of(app).get(ref).get("recording_file") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join()
    with open(store_of(app).get(ref)["recording_file"], "rb") as f:
        assert f.read() == AUDIO                    # the worker carried on without a restart of its own
    assert any("consumer group" in m and "created again" in m for m in errors(caplog, "ivr.jobs"))


# --- what the worker logs ------------------------------------------------------------------------

def test_an_idle_worker_logs_nothing(app, redis_client, caplog):
    client = store.connect(TEST_REDIS_URL, "test")      # a socket timeout (1 s) shorter than the block
    worker = jobs.Worker(jobs.JobContext(app.config, client), name="idle")
    rounds = iter(range(3))
    with caplog.at_level(logging.INFO, logger="ivr.jobs"):
        worker.run(stop=lambda: next(rounds, None) is None, block_ms=2000)   # longer than the socket timeout
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_an_outage_is_logged_once_and_so_is_its_end(app, volatile, monkeypatch, caplog):
    monkeypatch.setattr(jobs, "OUTAGE_PAUSE", 0.01, raising=False)
    worker = jobs.Worker(jobs.JobContext(app.config, store.connect(volatile.url, "test")), name="outage")
    rounds = iter(range(12))

    def stop() -> bool:
        n = next(rounds, None)
        if n == 2:
            volatile.stop()
        elif n == 8:
            volatile.start()
        return n is None

    with caplog.at_level(logging.INFO, logger="ivr.jobs"):
        worker.run(stop=stop, block_ms=100)
    assert len([m for m in errors(caplog, "ivr.jobs") if "unavailable" in m]) == 1
    assert len([r for r in caplog.records if r.name == "ivr.jobs" and "answers again" in r.getMessage()]) == 1
