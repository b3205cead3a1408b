"""ivr/store.py `Direct`: the commands every webhook sends (a call's state), on a connection of the
thread's own. What an operator would notice if it went wrong: state written but not found, a reply
given to the wrong caller's request, or calls failing after Redis dropped a connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from ivr import store
from ivr.store import Direct
from tests.conftest import TEST_REDIS_URL


@pytest.fixture
def direct(redis_client):
    # The production client (ivr/store.py: its timeouts) on the tests' database.
    return Direct(store.connect(TEST_REDIS_URL, "test"))


def test_what_is_written_directly_is_what_the_client_reads(direct, redis_client):
    direct.command("SET", "ivr:test:a", "one", "EX", 60)
    assert redis_client.get("ivr:test:a") == b"one"
    assert 0 < redis_client.ttl("ivr:test:a") <= 60
    assert direct.command("MGET", "ivr:test:a", "ivr:test:none") == [b"one", None]
    assert direct.pipeline([("SET", "ivr:test:b", "two"), ("GET", "ivr:test:b")]) == [b"OK", b"two"]


def test_a_connection_redis_dropped_is_made_again(direct, redis_client):
    direct.command("SET", "ivr:test:a", "before")
    # Redis closes this thread's connection (as on a restart, or an idle timeout), and no one else's.
    assert redis_client.client_kill_filter(_id=direct.command("CLIENT", "ID")) == 1
    assert direct.command("GET", "ivr:test:a") == b"before"
    direct.command("SET", "ivr:test:a", "after")
    assert redis_client.get("ivr:test:a") == b"after"


def test_an_error_reply_leaves_no_reply_behind_for_the_next_command(direct, redis_client):
    redis_client.set("ivr:test:text", "not a number")
    with pytest.raises(redis.ResponseError):
        direct.pipeline([("INCR", "ivr:test:text"), ("SET", "ivr:test:a", "x"), ("GET", "ivr:test:a")])
    # The replies still unread after the error must not be taken for the next command's.
    assert direct.command("GET", "ivr:test:text") == b"not a number"
    assert direct.command("GET", "ivr:test:a") == b"x"


def test_threads_never_get_each_others_replies(direct):
    wrong: list[str] = []

    def worker(n: int) -> None:
        for i in range(200):
            value = f"{n}-{i}"
            direct.command("SET", f"ivr:test:t{n}", value)
            got = direct.command("GET", f"ivr:test:t{n}")
            if got != value.encode():
                wrong.append(f"thread {n} wrote {value}, read {got!r}")

    with ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(worker, n) for n in range(4)]:
            done.result(timeout=30)   # a thread's error fails the test too
    assert wrong == []


def test_the_development_stand_in_takes_the_same_commands():
    stand_in = store.connect("redis://127.0.0.1:1/0", "development")   # nothing listens on port 1
    direct = Direct(stand_in)
    direct.command("SET", "ivr:test:a", "dev", "EX", 60)
    assert stand_in.get("ivr:test:a") == b"dev"
    assert direct.pipeline([("GET", "ivr:test:a"), ("EXISTS", "ivr:test:none")]) == [b"dev", 0]
