"""The caller's message is downloaded into the system's own storage by the worker, never by the call."""

from __future__ import annotations

import base64
import re

import pytest
import responses
from responses.registries import OrderedRegistry

from ivr import jobs, recordings
from ivr.handlers import inmate
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN
from ivr.simphone import Transport
from tests.conftest import LINES

YORK = "+19595550113"
AUDIO = b"ID3\x03\x00fake mp3 bytes" * 50


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(inmate, "http_session", lambda: recordings.session(retries=3, backoff=0))


@pytest.fixture
def worker(app, redis_client):
    return jobs.Worker(jobs.JobContext(app.config, redis_client), name="test-worker")


def leave_message(call) -> tuple[str, str]:
    """A facility caller leaves a full request with a message; (reference, recording URL)."""
    c = call("callcenter", ["-", "1", "7654321#", "1", "*", "record"], caller=YORK)
    url = next(e.text for e in c.events if e.kind == "record")
    ref = re.search(r"request number is (\d) (\d) (\d), (\d) (\d) (\d)", c.said)
    return "".join(ref.groups()), url


def store_of(app):
    return app.extensions["ivr"].services.extra["requests"]


@responses.activate
def test_the_message_is_downloaded_with_the_account_credentials_into_data_dir(app, call, worker):
    ref, url = leave_message(call)
    assert not responses.calls                      # the call itself never waited for a download
    responses.get(url + ".mp3", body=AUDIO, status=200, content_type="audio/mpeg")
    assert worker.run_once() == 1
    assert len(responses.calls) == 1
    expected = "Basic " + base64.b64encode(f"{DEV_ACCOUNT_SID}:{DEV_AUTH_TOKEN}".encode()).decode()
    assert responses.calls[0].request.headers["Authorization"] == expected
    request = store_of(app).get(ref)
    path = app.config["DATA_DIR"] / "requests" / ref / (url.rsplit("/", 1)[1] + ".mp3")
    assert request["recording_file"] == str(path) and path.read_bytes() == AUDIO
    assert "recording downloaded" in [e.action for e in store_of(app).history(ref)]
    assert worker.run_once() == 0 and worker.retry_pending() == 0      # acknowledged: not run again


@responses.activate(registry=OrderedRegistry)
def test_a_recording_not_there_yet_is_retried_until_it_is(app, call, worker):
    ref, url = leave_message(call)
    responses.get(url + ".mp3", status=404)
    responses.get(url + ".mp3", status=503)
    responses.get(url + ".mp3", body=AUDIO, status=200)
    worker.run_once()
    assert len(responses.calls) == 3
    assert store_of(app).get(ref)["recording_file"].endswith(".mp3")


@responses.activate
def test_a_download_failing_for_now_stays_queued_and_says_so(app, call, worker, redis_client):
    ref, url = leave_message(call)
    responses.get(url + ".mp3", status=503)
    worker.run_once()
    request = store_of(app).get(ref)
    assert request["recording_error"] == f"recording {url.rsplit('/', 1)[1]}: HTTP 503"
    assert not request["recording_file"]
    assert redis_client.xpending(jobs.STREAM, jobs.GROUP)["pending"] == 1    # kept for another try
    responses.replace(responses.GET, url + ".mp3", body=AUDIO, status=200)
    assert worker.retry_pending() == 1
    assert store_of(app).get(ref)["recording_file"] and not store_of(app).get(ref)["recording_error"]
    assert redis_client.xpending(jobs.STREAM, jobs.GROUP)["pending"] == 0


@pytest.mark.parametrize("url", [
    "https://evil.example.com/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/RE"
    + "1" * 32,
    "http://api.twilio.com/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/RE" + "1" * 32,
    "https://api.twilio.com/2010-04-01/Accounts/AC" + "9" * 32 + "/Recordings/RE" + "1" * 32,
])
@responses.activate
def test_only_twilio_recordings_of_our_account_are_fetched(app, worker, redis_client, url):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    base = {"CallSid": "CA" + "7" * 32, "To": LINES["callcenter"], "From": YORK}
    transport.post("/voice", base)
    for seq, digits in enumerate(["", "1", "7654321", "1", "*"], start=1):
        transport.post(f"/voice/step?s={seq}", {**base, "Digits": digits})
    status, body = transport.post("/voice/step?s=6", {**base, "RecordingUrl": url, "Digits": "#"})
    assert status == 200 and "request number is" in body     # the caller is not kept waiting
    worker.run_once()
    assert not responses.calls
    ref = redis_client.zrange("ivr:req:all", 0, 0)[0].decode()
    assert store_of(app).get(ref)["recording_error"]
    assert redis_client.xlen(jobs.DEAD) == 1                 # given up at once, kept for a person
    assert redis_client.xpending(jobs.STREAM, jobs.GROUP)["pending"] == 0


@responses.activate
def test_a_newer_message_supersedes_the_older_download(app, call, worker, redis_client):
    ref, url = leave_message(call)
    newer = url[:-4] + "beef"
    store_of(app).add_recording(ref, newer)
    responses.get(newer + ".mp3", body=AUDIO)
    worker.run_once()
    assert [c.request.url for c in responses.calls] == [newer + ".mp3"]
    assert store_of(app).get(ref)["recording_file"].endswith("beef.mp3")

