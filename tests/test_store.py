"""ivr/store.py: the Redis client every process uses, for what every webhook does (a call's state).
What an operator would notice if it went wrong: state written but not found, or calls failing after
Redis dropped the connections (a restart, an idle timeout)."""

from __future__ import annotations

from ivr import store
from ivr.callflow.callstate import CallState, CallStore
from tests.conftest import TEST_REDIS_URL


def test_a_call_state_survives_redis_dropping_every_connection(redis_client):
    calls = CallStore(store.connect(TEST_REDIS_URL, "test"), ttl=60)   # the production client's settings
    calls.save(CallState(sid="CA" + "1" * 32, line="callcenter", node="cc_main", seq=3))
    # Redis closes the client's connection, as on a restart (only this client's: other test workers share
    # the server).
    client_id = calls.redis.client_id()
    assert redis_client.client_kill_filter(_id=client_id) == 1
    state, _ = calls.load("CA" + "1" * 32)
    assert state is not None and state.node == "cc_main" and state.seq == 3
    assert calls.end("CA" + "1" * 32) is True and calls.end("CA" + "1" * 32) is False
    assert 0 < redis_client.ttl("ivr:call:" + "CA" + "1" * 32) <= 300


def test_the_development_stand_in_keeps_call_state_the_same_way():
    stand_in = store.connect("redis://127.0.0.1:1/0", "development")   # nothing listens on port 1
    calls = CallStore(stand_in, ttl=60)
    calls.save(CallState(sid="CA" + "2" * 32, line="payments", node="pay_case"))
    state, extra = calls.load("CA" + "2" * 32, ("ivr:prompts:rev",))
    assert state is not None and state.line == "payments" and extra == [None]
    assert calls.end("CA" + "2" * 32) is True


def test_a_copy_staff_changed_is_loaded_once_per_revision_and_kept_when_redis_fails(caplog):
    """store.Reloader, behind the closures, the edited hours and the published prompts: each webhook
    hands it the revision read with the call's state; a failing Redis keeps the copy loaded before and
    the next webhook loads again."""
    import redis

    loads, failing = [], [False]

    def load(rev):
        if failing[0]:
            raise redis.ConnectionError("down")
        loads.append(rev)
    copy = store.Reloader(load, "the closures")
    for rev in (b"1", b"1", b"1"):
        copy.refresh(rev)
    assert loads == [b"1"]                       # one Redis read for three webhooks
    failing[0] = True
    copy.refresh(b"2")
    assert loads == [b"1"] and "cannot load the closures: down" in caplog.text
    failing[0] = False
    copy.refresh(b"2")                           # the next webhook tries again
    assert loads == [b"1", b"2"]
