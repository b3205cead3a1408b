"""Issue 19: Redis through Sentinel. Calls go on across a failover (kill -9 of the master) without a
restart, a request a caller was told about is on a replica before they hear its reference and is still
there on the new master, and a write no replica acknowledges still stands, counted and shown by /health.

Real redis-server and Sentinel processes on loopback (tests/sentinel_cluster.py), down-after 1 s.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from ivr import gunicorn_conf, settings, store
from ivr.app import create_app
from ivr.callflow.simphone import Phone, Transport
from ivr.domain.published import ANN_LINES, Library, Who
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN
from tests.conftest import LINES
from tests.sentinel_cluster import SentinelCluster
from tests.walk import spoken_ref

YORK = "+19595550113"          # York CI's inmate phones (config/facilities.yaml)
INTAKE = ["-", "1", "7654321#", "1", "246813579#", "1", "record"]
FAQ = ["-", "1", "2", "9", "2"]
SENTINEL_AUTH = ("REDIS_SENTINEL_PASSWORD", "REDIS_SENTINEL_USERNAME")


def app_for(monkeypatch, env: dict[str, str], sdu_stub: str, tmp_path, **overrides):
    """The app as a web process builds it: Redis from the environment alone."""
    for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_URL", *SENTINEL_AUTH):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = {"IVR_ENV": "test", "SDU_BASE_URL": sdu_stub, "SDU_API_KEY": "dev-sdu-key",
              "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "TWILIO_ACCOUNT_SID": DEV_ACCOUNT_SID,
              "VALIDATE_SIGNATURES": True, "DATA_DIR": tmp_path / "var", **overrides}
    return create_app(config)


def phone(app, line: str = "callcenter", caller: str = "+18605550199") -> Phone:
    return Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES[line], caller=caller)


def fallback_words(app) -> str:
    return app.extensions["ivr"].prompts.text("sys.fallback_closed", "en", number="", hours="")[:30]


# --- configuration: refused, clearly, by every process -----------------------------------------------

@pytest.mark.parametrize(("env", "named"), [
    ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINELS": "127.0.0.1", "REDIS_SENTINEL_MASTER": "ivr"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379,:80", "REDIS_SENTINEL_MASTER": "ivr"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "127.0.0.1:70000", "REDIS_SENTINEL_MASTER": "ivr"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "my master"}, "REDIS_SENTINEL_MASTER"),
])
def test_a_mistyped_sentinel_setting_stops_commands_and_the_web_line_with_one_clear_line(
        monkeypatch, capsys, env, named):
    from ivr.cli.main import main

    for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert main(["requests", "list"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "Traceback" not in err

    class Server:       # what gunicorn hands its on_starting hook
        class cfg:      # noqa: N801 - gunicorn's attribute
            address = [("127.0.0.1", 5000)]
        log = logging.getLogger("test.gunicorn")
    with pytest.raises(SystemExit) as stopped:
        gunicorn_conf.on_starting(Server())
    assert stopped.value.code == 3
    with pytest.raises(settings.ConfigError, match=named):
        create_app({"IVR_ENV": "test"})


@pytest.mark.parametrize(("env", "named"), [
    ({"REDIS_SENTINEL_PASSWORD": "pw-without-sentinels"}, "REDIS_SENTINELS is not"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "ivr",
      "REDIS_SENTINEL_USERNAME": "ivr-app"}, "REDIS_SENTINEL_USERNAME needs REDIS_SENTINEL_PASSWORD"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "ivr",
      "REDIS_SENTINEL_PASSWORD": "pw-from-a-file\n"}, "REDIS_SENTINEL_PASSWORD begins or ends"),
])
def test_a_sentinel_password_that_cannot_work_is_refused_without_being_echoed(env, named):
    with pytest.raises(settings.ConfigError, match=named) as refused:
        settings.from_env(env)
    assert "pw-" not in str(refused.value)


def test_without_a_replica_a_durable_write_waits_for_nothing(redis_client):
    started = time.monotonic()
    assert store.replicated(redis_client, "inmate request") is None
    assert time.monotonic() - started < 0.2
    assert store.unacknowledged_writes() == store.REPLICATION.unacknowledged


# --- the real thing ----------------------------------------------------------------------------------

@pytest.mark.slow      # 15-50 s on the shared 2-core machine: run with -m slow
def test_calls_go_on_across_a_failover_and_no_request_a_caller_was_told_about_is_lost(
        tmp_path, monkeypatch, capsys, sdu_stub):
    from ivr.cli.main import main

    with SentinelCluster(tmp_path / "redis") as cluster:
        app = app_for(monkeypatch, cluster.env(db=15), sdu_stub, tmp_path)
        missed = store.unacknowledged_writes()
        before = phone(app, caller=YORK).place(INTAKE)
        first = spoken_ref(before.said)
        # Before the caller heard it, a replica had it: every replica has it now.
        for port in cluster.ports[1:]:
            assert cluster.client(port, db=15).hget(f"ivr:req:{first}", "status") == b"open"
        assert store.unacknowledged_writes() == missed

        # Four callers mid-way through their calls when the master dies.
        phones = [phone(app).start() for _ in range(4)]
        for p in phones:
            p.press(FAQ[0]).press(FAQ[1])
        old = cluster.kill_master()
        started = time.monotonic()

        def finish(p: Phone) -> Phone:
            for key in FAQ[2:]:
                p.press(key)
            return p
        with ThreadPoolExecutor(4) as pool:      # each on a thread of its own, as gunicorn's are
            finished = list(pool.map(finish, phones))
        took = cluster.wait_failover(old)
        print(f"failover: the Sentinels named a new master {took:.1f}s after the kill; the calls were "
              f"answered within {time.monotonic() - started:.1f}s")
        fallback = fallback_words(app)
        for p in finished:
            assert fallback not in p.said and not any(e.kind == "error" for e in p.events)
            assert p.waiting_for is not None      # still in the menus, not hung up on
        # The payments answer after "9" (main menu) and "2": the call went on where it was.
        assert finished[0].said_after(len(FAQ)).strip()

        after = phone(app, caller=YORK).place(INTAKE)
        second = spoken_ref(after.said)
        new_master = cluster.client(cluster.master_port, db=15)
        assert new_master.hget(f"ivr:req:{first}", "status") == b"open"       # acknowledged, then kept
        assert new_master.hget(f"ivr:req:{second}", "stage") == b"finished"

        # A command for staff finds the new master through the same Sentinels.
        monkeypatch.setenv("IVR_SECRET_KEY", settings.DEV_SECRET_KEY)
        capsys.readouterr()
        assert main(["requests", "list"]) == 0
        listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
        assert {first, second} <= listed
        # So does the worker (the two calls' recording downloads are its jobs).
        assert main(["worker", "--once"]) == 0
        assert "handled" in capsys.readouterr().out


def test_a_write_no_replica_acknowledges_still_stands_is_logged_counted_and_shown_by_health(
        tmp_path, monkeypatch, sdu_stub, caplog):
    with SentinelCluster(tmp_path / "redis", replicas=1, sentinels=0) as cluster:
        master = f"redis://127.0.0.1:{cluster.master_port}/15"
        app = app_for(monkeypatch, {"REDIS_URL": master}, sdu_stub, tmp_path, REDIS_WAIT_MS=100)
        cluster.pause(cluster.ports[1])     # the replica stops answering; its connection stays open
        try:
            before = store.unacknowledged_writes()
            with caplog.at_level(logging.ERROR, logger="ivr.store"):
                call = phone(app, caller=YORK).place(INTAKE)
            after_call = store.unacknowledged_writes()
            # A change staff make to what callers hear waits the same way.
            library = Library(app.extensions["ivr"].redis)
            library.clear_announcement([ANN_LINES[0]], "en", Who("1001", "Ana"), datetime.now(UTC))
            assert store.unacknowledged_writes() == after_call + 1
            assert store.REPLICATION.snapshot()["last_unacknowledged_kind"] == "published prompt"
        finally:
            cluster.resume(cluster.ports[1])
        ref = spoken_ref(call.said)                         # the caller was told, as before
        assert cluster.client(cluster.master_port, db=15).hget(f"ivr:req:{ref}", "stage") == b"finished"
        assert after_call > before
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and "no replica acknowledged" in r.message]
        assert errors and not any(re.search(r"\d{6,}", r.message) for r in errors)    # no numbers logged
        health = app.test_client().get("/health").get_json()
        assert health["replication"]["unacknowledged_writes"] >= store.unacknowledged_writes() - before
        assert health["replication"]["last_unacknowledged_kind"] == "published prompt"


SENTINEL_PASSWORD = "sentinel-" + secrets.token_hex(12)
MASTER_PASSWORD = "master-" + secrets.token_hex(12)


def test_sentinels_that_ask_for_a_password_get_it_and_a_wrong_or_missing_one_is_one_clear_line(
        tmp_path, monkeypatch, capsys, caplog, sdu_stub):
    """The Sentinels' password (REDIS_SENTINEL_PASSWORD) and the master's (REDIS_URL) are two secrets, each
    given only where it belongs, neither ever written to a log or a message."""
    from ivr.cli.main import main

    monkeypatch.setenv("IVR_SECRET_KEY", settings.DEV_SECRET_KEY)
    wrong = "wrong-" + secrets.token_hex(12)
    caplog.set_level(logging.DEBUG)
    with SentinelCluster(tmp_path / "redis", replicas=1, sentinels=1, sentinel_password=SENTINEL_PASSWORD,
                         master_password=MASTER_PASSWORD) as cluster:
        env = cluster.env(db=15)
        app = app_for(monkeypatch, {**env, "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}, sdu_stub, tmp_path)
        call = phone(app, caller=YORK).place(INTAKE)
        ref = spoken_ref(call.said)
        assert cluster.client(cluster.master_port, db=15).hget(f"ivr:req:{ref}", "stage") == b"finished"
        capsys.readouterr()
        assert main(["requests", "list"]) == 0
        assert ref in capsys.readouterr().out

        asked: list[str] = []
        discover = store.CheckedSentinel.discover_master
        monkeypatch.setattr(store.CheckedSentinel, "discover_master",
                            lambda self, name: asked.append(name) or discover(self, name))
        for given in (wrong, None):
            if given:
                monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", given)
            else:
                monkeypatch.delenv("REDIS_SENTINEL_PASSWORD")
            asked.clear()
            assert main(["requests", "list"]) != 0
            out, err = capsys.readouterr()
            assert not out.strip() and len(err.strip().splitlines()) == 1, err
            assert "Sentinels" in err and "REDIS_SENTINEL_PASSWORD" in err and "Traceback" not in err
            assert ("refused" if given else "ask for a password") in err
            assert not any(secret in err for secret in (SENTINEL_PASSWORD, MASTER_PASSWORD, wrong))
            assert len(asked) == 1   # refused at once, not asked again for IVR_REDIS_FAILOVER_SECONDS

        # A web process started with the wrong password says why in its log and answers the fallback.
        refused = app_for(monkeypatch, {**env, "REDIS_SENTINEL_PASSWORD": wrong}, sdu_stub, tmp_path)
        assert any("REDIS_SENTINEL_PASSWORD" in r.getMessage() for r in caplog.records
                   if r.levelno == logging.ERROR and r.name == "ivr.store")
        assert fallback_words(refused) in phone(refused).place(["-"]).said

    logged = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    assert logged and not any(secret in logged for secret in (SENTINEL_PASSWORD, MASTER_PASSWORD, wrong))


def test_sentinels_are_probed_for_a_refused_password_only_until_one_has_named_the_master(monkeypatch):
    """A wrong password shows from the first connection on; during a failover, when the Sentinels answer but
    name no master yet, a PING to each would only lengthen the wait of callers."""
    from redis.sentinel import MasterNotFoundError, Sentinel

    pings: list[int] = []

    def discover(self, name):
        if self.named:                  # what the Sentinels say, one lookup after another
            return self.named.pop(0)
        raise MasterNotFoundError("no master (a failover)")

    monkeypatch.setattr(Sentinel, "discover_master", discover)
    sentinel, fresh = store.CheckedSentinel([("127.0.0.1", 1)]), store.CheckedSentinel([("127.0.0.1", 1)])
    sentinel.named, fresh.named = [("10.0.0.1", 6379)], []
    for one in (sentinel, fresh):
        monkeypatch.setattr(one, "_refuses", lambda _: pings.append(1) or False)
    with pytest.raises(MasterNotFoundError):
        fresh.discover_master("ivr")                   # never answered: its Sentinels are asked why
    assert pings == [1]
    assert sentinel.discover_master("ivr") == ("10.0.0.1", 6379)
    with pytest.raises(MasterNotFoundError):
        sentinel.discover_master("ivr")                 # a failover: not asked again
    assert pings == [1]
