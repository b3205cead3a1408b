"""No PIN, no full case number and no full caller number in any log line, nor in plain Redis state:
neither while the calls are going on (a snapshot of every Redis key at every webhook) nor after."""

from __future__ import annotations

import json
import logging
import re

import pytest

from ivr.callflow.callstate import CallState
from ivr.callflow.speech import say_digits
from ivr.sdu.stub import create_stub_app, serve_in_thread
from tests.walk import snapshot

CASES = ["123456789", "089123456", "567891234", "901234567"]
PINS = ["1234", "0707", "5151", "7392", "4816", "5057", "6060", "9012"]
CALLER = "+18605550199"


def secrets_in(text: str) -> list[str]:
    found = [c for c in CASES if c in text]
    found += [p for p in PINS if re.search(rf"(?<!\d){p}(?!\d)", text)]
    if "8605550199" in text:
        found.append("caller number")
    return found


def dump(r) -> list[tuple[bytes, bytes]]:
    """Every key of the Redis database and its value, whatever its type (strings as stored)."""
    return [(k, v if isinstance(v, bytes) else repr(v).encode()) for k, v in snapshot(r).items()]


@pytest.fixture
def own_stub():
    base, stop = serve_in_thread(app=create_stub_app())
    yield base
    stop()


def test_no_pin_case_number_or_caller_number_in_logs_or_plain_redis(make_app, call, redis_client, caplog,
                                                                      own_stub):
    caplog.set_level(logging.DEBUG)
    app = make_app(SDU_BASE_URL=own_stub)
    dead = make_app(SDU_BASE_URL="http://127.0.0.1:9")
    snapshots: list[list[tuple[bytes, bytes]]] = []
    for a in (app, dead):   # every webhook, before it runs: what the previous ones stored
        rt = a.extensions["ivr"]

        def refresh(values, refresh=rt.refresh) -> None:
            snapshots.append(dump(redis_client))
            refresh(values)
        rt.refresh = refresh
    sealed_seen = set()
    readbacks = 0

    calls = [
        (app, ["-", "123456789#", "1", "1234#", "1", "9", "2", "9", "3", "9", "4"]),
        (app, ["2", "089123456#", "1", "5151#", "0707#", "1", "9", "2", "9", "3", "9", "4"]),
        (app, ["-", "567891234#", "1", "7392#", "4816#", "5057#"]),
        (app, ["-", "567891234#", "1", "6060#"]),                      # the case is locked now
        (dead, ["-", "901234567#", "1", "9012#", "9"]),                 # the SDU cannot be reached
    ]
    heard = []
    for target, keys in calls:
        c = call("payments", keys, caller=CALLER, target_app=target)
        assert not any(e.kind == "error" for e in c.events)
        heard.append(c.said)
    assert "two hundred six dollars" in heard[0] and "trescientos noventa dólares" in heard[1]
    assert "this line cannot check a PIN for this case for now" in heard[3]
    assert "cannot reach payment information" in heard[4]

    snapshots.append(dump(redis_client))      # and after the calls: counters and locks remain
    assert len(snapshots) > 40
    sealer = app.extensions["ivr"].services.sealer
    for snap in snapshots:
        for key, value in snap:
            assert not secrets_in(key.decode(errors="replace")), key
            if key.startswith(b"ivr:call:"):
                state = CallState.from_json(key.decode()[9:], value)
                plain = json.dumps(state.vars, ensure_ascii=False) + state.node + state.phase
                assert not secrets_in(plain), (key, secrets_in(plain))
                if "_case" in state.vars:
                    case = sealer.unseal(state.vars["_case"])
                    assert case in CASES and state.vars["_case"] != case
                    sealed_seen.add(case)
                # The cached answer for Twilio retries is sealed too: the read-back of the case
                # number is in it, but not in plain text.
                raw = value.decode(errors="replace")
                assert not secrets_in(raw) and not any(say_digits(c) in raw for c in CASES), key
                twiml = state.replay(sealer) or ""
                assert not [s for s in secrets_in(twiml) if s in PINS or s in CASES], twiml
                if "You entered" in twiml or "Usted marcó" in twiml:
                    readbacks += 1
            else:
                assert not secrets_in(value.decode(errors="replace")), (key, value)
    assert sealed_seen == set(CASES)         # the snapshots did see the calls while they went on
    assert readbacks >= len(calls)
    assert [k for k, _ in snapshots[-1] if k.startswith(b"ivr:pay:tries:case:")]

    lines = [r.getMessage() for r in caplog.records]
    assert any("payments:" in line for line in lines)          # the line did log what it did
    assert any("*******89" in line for line in lines)           # masked case numbers
    for text in lines + [caplog.text]:
        assert not secrets_in(text), (text, secrets_in(text))
