"""A request whose reference was spoken survives Redis being killed and restarted (AOF on)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time

import pytest
import redis

from ivr.app import create_app
from ivr.cli import main
from ivr.settings import DEV_AUTH_TOKEN
from ivr.simphone import SimPhone, Transport
from tests.conftest import LINES

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, with its append-only file in a temporary folder."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> redis.Redis:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        for _ in range(100):        # at most 10 s for the server to answer
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("the private redis-server did not start")

    def kill(self) -> None:
        """As a crash would: no chance to write anything more."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path / "redis")
    server.folder.mkdir()
    yield server
    server.stop()


def test_a_spoken_reference_survives_a_redis_crash_and_restart(private_redis, clock, sdu_stub, tmp_path,
                                                               monkeypatch, capsys):
    client = private_redis.start()
    app = create_app({"IVR_ENV": "test", "REDIS_URL": private_redis.url, "SDU_BASE_URL": sdu_stub,
                      "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "DATA_DIR": tmp_path / "var"},
                     clock=clock, redis_client=client)
    phone = SimPhone(Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"], caller="+19595550113",
                     keys=["-", "1", "7654321#", "1", "*", "record"])
    said = phone.place().said
    ref = "".join(re.search(r"request number is (\d) (\d) (\d), (\d) (\d) (\d)", said).groups())
    # A second caller hangs up after the inmate number: that partial request must survive too.
    SimPhone(Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"], caller="+19595550103",
             keys=["-", "1", "1111111#", "1"]).place()

    private_redis.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    private_redis.start()

    monkeypatch.setenv("REDIS_URL", private_redis.url)
    monkeypatch.delenv("IVR_SECRET_KEY", raising=False)
    capsys.readouterr()
    assert main(["requests", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert len(lines) == 2 and "York CI" in lines[ref] and "complete" in lines[ref]
    partial = next(line for r, line in lines.items() if r != ref)
    assert "Cheshire CI" in partial and "INCOMPLETE" in partial
    assert main(["requests", "show", ref]) == 0
    out = capsys.readouterr().out
    assert "inmate number:       7654321" in out and "York CI (from caller ID)" in out
    # The queued download of the message survived as well, and staff can work the request.
    assert client.xlen("ivr:jobs") == 1
    assert main(["requests", "take", ref, "--by", "ana"]) == 0
