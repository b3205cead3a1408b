"""/health under polling: a stalled SDU costs one bounded probe per process, never a thread per request."""

from __future__ import annotations

import threading

import pytest

from tests.sdu_faults import FaultySDU


@pytest.fixture
def sdu():
    s = FaultySDU()
    yield s
    s.stop()


def test_many_health_polls_against_a_stalled_sdu_make_one_bounded_probe(make_app, sdu):
    """The attack: 48 loops of /health on a stalled SDU held every web thread; callers heard dead air."""
    sdu.fail("slow", endpoints=("health",), delay=2.0)   # under the SDU's 2.5 s budget, over /health's bound
    app = make_app(SDU_BASE_URL=sdu.url)
    answers: list[dict] = []

    def poll() -> None:
        client = app.test_client()
        for _ in range(3):
            answers.append(client.get("/health").get_json())

    threads = [threading.Thread(target=poll) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == 48 and all(a["status"] == "ok" and a["redis"] is not False for a in answers)
    assert sdu.hits["health"] == 1            # one probe for 48 polls: the rest answered from what was known
    probed = [a for a in answers if a["checked_seconds_ago"] is not None]
    assert probed and all(a["sdu"] is False for a in probed)    # the probe gave up at its own bound


def test_health_reports_a_recovered_sdu_after_its_cache_expires(make_app, sdu):
    app = make_app(SDU_BASE_URL=sdu.url, HEALTH_TTL=0.0)
    sdu.fail("503", endpoints=("health",))
    client = app.test_client()
    assert client.get("/health").get_json()["sdu"] is False
    sdu.fail(None)
    body = client.get("/health").get_json()
    assert body["sdu"] is True and body["sdu_breaker"] == "closed"
    assert sdu.hits["health"] == 2
