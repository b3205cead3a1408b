"""A request whose reference was spoken survives Redis being killed and restarted (AOF on)."""

from __future__ import annotations

import re

import pytest
import redis

from ivr.app import create_app
from ivr.callflow.simphone import Phone, Transport
from ivr.cli.main import main
from ivr.domain.staffdb import StaffDB, pepper_for
from ivr.settings import DEV_AUTH_TOKEN, DEV_SECRET_KEY
from tests.conftest import LINES
from tests.redis_server import RedisServer


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path / "redis", persist=True)   # AOF, fsynced on every write
    yield server
    server.stop()


def test_a_spoken_reference_survives_a_redis_crash_and_restart(private_redis, clock, sdu_stub, tmp_path,
                                                               monkeypatch, capsys):
    client = private_redis.start().client(socket_connect_timeout=0.5)
    app = create_app({"IVR_ENV": "test", "REDIS_URL": private_redis.url, "SDU_BASE_URL": sdu_stub,
                      "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "DATA_DIR": tmp_path / "var"},
                     clock=clock, redis_client=client)
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"], caller="+19595550113")
    said = phone.place(["-", "1", "7654321#", "1", "*", "record"]).said
    ref = "".join(re.search(r"request number is (\d) (\d) (\d), (\d) (\d) (\d)", said).groups())
    # A second caller hangs up after the inmate number: that partial request must survive too.
    Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"],
          caller="+19595550103").place(["-", "1", "1111111#", "1"])

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
    StaffDB(client, pepper_for({"IVR_SECRET_KEY": DEV_SECRET_KEY})).add("4001", "Ana Ruiz", "730519", clock())
    assert main(["requests", "take", ref, "--by", "4001"]) == 0
