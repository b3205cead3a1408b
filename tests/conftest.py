"""Shared fixtures: a real Redis server, a fixed clock, the app, and the simulated phone.

Redis: $TEST_REDIS_URL, or redis://127.0.0.1:6379/9. The tests flush that database before each test
(with pytest-xdist, worker N flushes the one N above it: 9, 10, ...), so never point it at databases
that hold anything you want to keep. `.ci/run` starts a server when none answers.
"""

from __future__ import annotations

import os
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import pytest
import redis

from ivr.app import create_app
from ivr.callflow.simphone import Phone, Transport
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN

TZ = ZoneInfo("America/New_York")


def _worker_redis_url(url: str, worker: str | None) -> str:
    """Under pytest-xdist (scripts/test runs `-n auto`) each worker flushes a database of its own: the
    given one for gw0, the next for gw1, and so on."""
    if not worker or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) + int(worker[2:])
    return urlunsplit(parts._replace(path=f"/{db}"))


# Set in the environment too: the tests that start a process of their own (gunicorn, the CLI) pass it on.
# Worked out from the URL as given (kept aside), so that importing this module again (as tests.conftest)
# gives the same database, not the next one.
_GIVEN = os.environ.setdefault("IVR_TEST_REDIS_URL_GIVEN", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9"))
TEST_REDIS_URL = os.environ["TEST_REDIS_URL"] = _worker_redis_url(_GIVEN, os.environ.get("PYTEST_XDIST_WORKER"))
# A Tuesday morning in Connecticut, when offices are open.
OPEN = datetime(2026, 11, 24, 10, 0, tzinfo=TZ)
LINES = {"callcenter": "+18002285437", "payments": "+18882337223", "staff": "+18605550142"}


class Clock:
    """A clock the tests set; the app reads it for office hours and dates."""

    def __init__(self, now: datetime = OPEN) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, text: str) -> None:
        self.now = datetime.fromisoformat(text).replace(tzinfo=TZ)


@pytest.fixture(scope="session")
def redis_server() -> redis.Redis:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    if client.connection_pool.connection_kwargs.get("db", 0) == 0:
        pytest.exit(f"TEST_REDIS_URL={TEST_REDIS_URL} names database 0: the tests flush their database, "
                    "so give them one of their own (e.g. redis://127.0.0.1:6379/9).", returncode=3)
    try:
        client.ping()
    except redis.ResponseError as exc:
        if "out of range" not in str(exc):
            raise
        # pytest.fail, not exit: a worker of pytest-xdist that exits is only reported as crashed.
        pytest.fail(f"TEST_REDIS_URL={TEST_REDIS_URL}: the server has no such database ({exc}); with "
                    "pytest-xdist each worker takes the next one. Give a lower database, fewer workers "
                    "(TEST_WORKERS=2 scripts/test) or a server with more (redis-server --databases 64).",
                    pytrace=False)
    except redis.RedisError as exc:
        pytest.exit(f"The tests need a Redis server at {TEST_REDIS_URL} ({exc}). "
                    "Start one (redis-server) or run .ci/run, which starts it.", returncode=3)
    return client


@pytest.fixture
def redis_client(redis_server: redis.Redis) -> redis.Redis:
    redis_server.flushdb()
    yield redis_server
    redis_server.flushdb()


@pytest.fixture(scope="session")
def sdu_stub():
    """The bundled stub SDU, over real HTTP on a free loopback port, for the whole session."""
    from ivr.sdu.stub import serve_in_thread

    base, stop = serve_in_thread()
    yield base
    stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_app(redis_client, clock, sdu_stub, tmp_path):
    def make(redis=None, **overrides):
        """The app; `redis` another client for it (a dead server's, say) instead of the tests' own."""
        config = {"IVR_ENV": "test", "REDIS_URL": TEST_REDIS_URL, "SDU_BASE_URL": sdu_stub,
                  "SDU_API_KEY": "dev-sdu-key", "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN,
                  "TWILIO_ACCOUNT_SID": DEV_ACCOUNT_SID, "VALIDATE_SIGNATURES": True, "DATA_DIR": tmp_path / "var"}
        config.update(overrides)
        return create_app(config, clock=clock, redis_client=redis if redis is not None else redis_client)
    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def call(app):
    """Place a whole simulated call: call("callcenter", ["1", "2"]) -> the ivr.simphone.Phone, its call over."""
    def place(line: str = "callcenter", keys=(), caller: str = "+18605550199",
              dial_status: str = "completed", sid: str | None = None, target_app=None) -> Phone:
        transport = Transport(DEV_AUTH_TOKEN, app=target_app or app)
        phone = Phone(transport=transport, to=LINES.get(line, line), caller=caller, sid=sid,
                      dial_status=dial_status)
        return phone.place(keys)
    return place


# Staff accounts the `staff` fixture makes, for `--by` (a staff ID, docs/interface.md).
STAFF_IDS = {"4001": "Ana Ruiz", "4002": "Bob Lee", "4003": "B. Chen"}


@pytest.fixture
def staff(monkeypatch, capsys, redis_client):
    """Run `ivr requests ...` as staff would (the tests' Redis), with the accounts of STAFF_IDS: returns
    (exit code, stdout, stderr)."""
    from datetime import UTC, datetime

    from ivr.cli.main import main
    from ivr.domain.staffdb import StaffDB, pepper_for
    from ivr.settings import DEV_SECRET_KEY

    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.delenv("IVR_SECRET_KEY", raising=False)
    monkeypatch.delenv("IVR_PIN_PEPPER", raising=False)
    accounts = StaffDB(redis_client, pepper_for({"IVR_SECRET_KEY": DEV_SECRET_KEY}))
    for staff_id, name in STAFF_IDS.items():
        accounts.add(staff_id, name, "730519", datetime.now(UTC))

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["requests", *args])
        out, err = capsys.readouterr()
        return rc, out, err
    return run


@pytest.fixture
def prompts(app):
    """The prompt texts: prompts.text("menu.no_input", "en")."""
    return app.extensions["ivr"].prompts
