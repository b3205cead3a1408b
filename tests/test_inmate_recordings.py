"""The caller's message is downloaded into the system's own storage by the worker, never by the call; its
Twilio URL is kept only sealed, and Twilio's copy is deleted once (and only once) the system has its own."""

from __future__ import annotations

import base64
import io
import logging
import os
import re
from pathlib import Path

import pytest
import requests
import responses
import urllib3
from responses.registries import OrderedRegistry

from ivr.callflow.simphone import Phone, Transport
from ivr.domain import recordings
from ivr.domain.requests import DELETE_JOB, RECORDING_JOB
from ivr.jobs import recordings as recording_jobs
from ivr.jobs import worker as jobs
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN
from tests.conftest import LINES
from tests.walk import everything_in

YORK = "+19595550113"
AUDIO = b"ID3\x03\x00fake mp3 bytes" * 50


ACCOUNT = "AC" + "5a" * 16      # a configured Twilio account (the development placeholder deletes nothing)
INMATE = "7654321"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(recording_jobs, "http_session", lambda: recordings.session(retries=3, backoff=0))
    monkeypatch.setattr(recording_jobs, "delete_session", lambda: recordings.delete_session(retries=2, backoff=0))


@pytest.fixture
def worker(app, redis_client):
    return jobs.Worker(jobs.JobContext(app.config, redis_client), name="test-worker")


def message_on(app, account: str = ACCOUNT) -> tuple[str, str]:
    """A facility caller's full request with a message, recorded on `account`; (reference, recording URL)."""
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"], caller=YORK,
                  account_sid=account)
    c = phone.place(["-", "1", f"{INMATE}#", "1", "*", "record"])
    url = next(e.text for e in c.events if e.kind == "record")
    ref = re.search(r"request number is (\d) (\d) (\d), (\d) (\d) (\d)", c.said)
    return "".join(ref.groups()), url


def store_of(app):
    return app.extensions["ivr"].services.requests


@responses.activate
def test_the_message_is_downloaded_with_the_account_credentials_into_data_dir(app, worker):
    ref, url = message_on(app, DEV_ACCOUNT_SID)
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
def test_a_recording_not_there_yet_is_retried_until_it_is(app, worker):
    ref, url = message_on(app, DEV_ACCOUNT_SID)
    responses.get(url + ".mp3", status=404)
    responses.get(url + ".mp3", status=503)
    responses.get(url + ".mp3", body=AUDIO, status=200)
    worker.run_once()
    assert len(responses.calls) == 3
    assert store_of(app).get(ref)["recording_file"].endswith(".mp3")


@responses.activate
def test_a_download_failing_for_now_stays_queued_and_says_so(app, worker, redis_client):
    ref, url = message_on(app, DEV_ACCOUNT_SID)
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
def test_a_newer_message_supersedes_the_older_download(app, worker, redis_client):
    ref, url = message_on(app, DEV_ACCOUNT_SID)
    newer = url[:-4] + "beef"
    store_of(app).add_recording(ref, newer)
    responses.get(newer + ".mp3", body=AUDIO)
    worker.run_once()
    assert [c.request.url for c in responses.calls] == [newer + ".mp3"]
    assert store_of(app).get(ref)["recording_file"].endswith("beef.mp3")



# --- Twilio's copy: the URL only sealed, deleted after the download -----------------------------------------

@pytest.fixture
def live(make_app, redis_client):
    """An app with a real-looking Twilio account, and its worker."""
    app = make_app(TWILIO_ACCOUNT_SID=ACCOUNT)
    return app, jobs.Worker(jobs.JobContext(app.config, redis_client), name="live-worker")


def delete_url(url: str) -> str:
    sid = url.rsplit("/", 1)[1]
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid}.json"


def twilio_serves(url: str, download: dict | None = None, delete: dict | None = None) -> None:
    """Twilio's side of one recording, as `responses` answers it: the MP3, then its deletion."""
    responses.get(url + ".mp3", **(download or {"body": AUDIO}))
    responses.delete(delete_url(url), **(delete or {"status": 204}))


def queued(r, kind: str) -> int:
    return sum(1 for _, f in r.xrange(jobs.STREAM) if f[b"kind"] == kind.encode())


@responses.activate
def test_the_message_url_is_kept_only_sealed_before_and_after_the_download(live, redis_client):
    app, worker = live
    ref, url = message_on(app)
    sid = url.rsplit("/", 1)[1]
    stored = redis_client.hgetall(f"ivr:req:{ref}")
    assert stored[b"recording_url"] and url.encode() not in stored[b"recording_url"]
    assert store_of(app).open_url(stored[b"recording_url"].decode()) == url     # still there, for the worker
    dump = everything_in(redis_client)
    assert b"ivr:req:" + ref.encode() in dump and queued(redis_client, RECORDING_JOB) == 1
    for plain in (url, "twilio.com", sid):
        assert plain.encode() not in dump, f"{plain} is readable in Redis"
    twilio_serves(url)
    worker.run_once()
    worker.run_once()
    dump = everything_in(redis_client)
    assert url.encode() not in dump and b"twilio.com" not in dump


@responses.activate
def test_twilios_copy_is_deleted_after_the_download_with_the_account_credentials(live, staff):
    app, worker = live
    ref, url = message_on(app)
    twilio_serves(url, download=dict(body=AUDIO, content_type="audio/mpeg"))
    assert worker.run_once() == 1               # the download, which queues the deletion
    assert [c.request.method for c in responses.calls] == ["GET"]
    assert store_of(app).get(ref)["twilio_copy"] == "deleting"
    assert worker.run_once() == 1               # the deletion
    assert [(c.request.method, c.request.url) for c in responses.calls] == [
        ("GET", url + ".mp3"), ("DELETE", delete_url(url))]
    expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{DEV_AUTH_TOKEN}".encode()).decode()
    assert responses.calls[1].request.headers["Authorization"] == expected
    request = store_of(app).get(ref)
    assert request["twilio_copy"] == "deleted" and request["status"] == "open"
    assert open(request["recording_file"], "rb").read() == AUDIO
    trail = [e.action for e in store_of(app).history(ref)]
    assert trail.index("recording downloaded") < trail.index("recording deleted from Twilio")
    # Staff see the system's own file, never Twilio's URL.
    out = staff("show", ref)[1]
    assert f"message:             {request['recording_file']}" in out
    assert "Twilio's copy:       deleted" in out and "twilio.com" not in out
    assert worker.run_once() == 0 and worker.retry_pending() == 0


@pytest.mark.parametrize("status", [503, 401])
@responses.activate
def test_nothing_is_deleted_when_the_download_fails(live, redis_client, status):
    app, worker = live
    ref, url = message_on(app)
    twilio_serves(url, download=dict(status=status))
    worker.run_once()
    worker.retry_pending()
    assert {c.request.method for c in responses.calls} == {"GET"}
    assert queued(redis_client, DELETE_JOB) == 0
    request = store_of(app).get(ref)
    assert not request["recording_file"] and request["recording_error"] and not request["twilio_copy"]


@pytest.mark.parametrize("failure", [{"status": 500}, {"body": requests.ConnectionError("connection reset")}])
@responses.activate
def test_a_failed_delete_keeps_the_file_and_the_request_says_so_and_is_tried_again(
        live, redis_client, staff, caplog, failure):
    caplog.set_level(logging.INFO)
    app, worker = live
    ref, url = message_on(app)
    twilio_serves(url, delete=failure)
    worker.run_once()
    worker.run_once()
    request = store_of(app).get(ref)
    assert request["status"] == "open" and request["inmate"] == INMATE
    assert open(request["recording_file"], "rb").read() == AUDIO          # the file is kept
    assert request["twilio_copy"] == "delete failed" and request["twilio_copy_error"]
    assert redis_client.xpending(jobs.STREAM, jobs.GROUP)["pending"] == 1      # kept for another try
    assert "TWILIO COPY NOT DELETED" in staff("list")[1]
    out = staff("show", ref)[1]
    assert "Twilio's copy:       NOT DELETED" in out and "twilio.com" not in out
    warned = [r.getMessage() for r in caplog.records if "not deleted" in r.getMessage()]
    assert warned and all(ref in m and INMATE not in m and url not in m for m in warned)
    assert not any(INMATE in r.getMessage() or url in r.getMessage() for r in caplog.records)
    # Twilio answers again: the next try deletes it.
    responses.replace(responses.DELETE, delete_url(url), status=204)
    assert worker.retry_pending() == 1
    assert store_of(app).get(ref)["twilio_copy"] == "deleted"
    assert redis_client.xpending(jobs.STREAM, jobs.GROUP)["pending"] == 0
    assert "TWILIO COPY NOT DELETED" not in staff("list")[1]


class CutOff(io.RawIOBase):
    """A response body whose connection breaks after its first bytes."""

    def __init__(self) -> None:
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self.reads += 1
        if self.reads > 1:
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
        b[:10] = AUDIO[:10]
        return 10


@responses.activate
def test_a_download_cut_off_mid_body_leaves_no_file_says_so_and_is_tried_again(live, redis_client):
    app, worker = live
    ref, url = message_on(app)
    twilio_serves(url, download=dict(body=io.BufferedReader(CutOff())))
    worker.run_once()
    request = store_of(app).get(ref)
    assert not request["recording_file"] and "during the download" in request["recording_error"]
    assert not any((app.config["DATA_DIR"] / "requests" / ref).iterdir())     # no partial file, not even a temp
    assert {c.request.method for c in responses.calls} == {"GET"} and queued(redis_client, DELETE_JOB) == 0
    assert redis_client.xpending(jobs.STREAM, jobs.GROUP)["pending"] == 1      # tried again
    responses.replace(responses.GET, url + ".mp3", body=AUDIO)
    worker.retry_pending()
    worker.run_once()
    request = store_of(app).get(ref)
    assert open(request["recording_file"], "rb").read() == AUDIO and request["twilio_copy"] == "deleted"


@responses.activate
def test_the_file_is_synced_to_disk_before_it_is_named_and_before_twilios_copy_goes(live, monkeypatch):
    """Twilio's copy is deleted as soon as the file is there: a crash must not leave an empty or partial file
    under its name (written data and the rename both fsynced)."""
    app, worker = live
    ref, url = message_on(app)
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a), str(b))),
                                                     real_replace(a, b))[1])
    responses.get(url + ".mp3", body=AUDIO)
    responses.add_callback(responses.DELETE, delete_url(url),
                           callback=lambda req: (events.append(("DELETE",)), (204, {}, ""))[1])
    worker.run_once()
    worker.run_once()
    folder = str(app.config["DATA_DIR"] / "requests" / ref)
    replaced = next(i for i, e in enumerate(events) if e[0] == "replace")
    tmp, target = events[replaced][1:]
    assert Path(target).parent == Path(folder) and store_of(app).get(ref)["recording_file"] == target
    assert ("fsync", tmp) in events[:replaced]                                  # the data, under the temp name
    assert ("fsync", folder) in events[replaced:]                               # then the rename
    assert events.index(("DELETE",)) > events.index(("fsync", folder))


@responses.activate
def test_a_404_on_delete_means_already_gone(live, redis_client):
    app, worker = live
    ref, url = message_on(app)
    twilio_serves(url, delete=dict(status=404))
    worker.run_once()
    worker.run_once()
    assert [c.request.method for c in responses.calls] == ["GET", "DELETE"]     # not retried
    assert store_of(app).get(ref)["twilio_copy"] == "already gone"
    assert redis_client.xpending(jobs.STREAM, jobs.GROUP)["pending"] == 0


@responses.activate
def test_the_only_copy_is_never_deleted(live, redis_client, staff):
    app, worker = live
    ref, url = message_on(app)
    twilio_serves(url)
    worker.run_once()
    Path(store_of(app).get(ref)["recording_file"]).unlink()          # the system's copy is lost
    worker.run_once()
    assert [c.request.method for c in responses.calls] == ["GET"]
    request = store_of(app).get(ref)
    assert request["twilio_copy"] == "not deleted" and "no local copy" in request["twilio_copy_error"]
    assert redis_client.xlen(jobs.DEAD) == 1
    out = staff("show", ref)[1]
    assert "Twilio's copy:       NOT DELETED: no local copy" in out and "will not try again" in out
    assert "TWILIO COPY NOT DELETED" in staff("list")[1]


@responses.activate
def test_without_an_account_sid_nothing_is_deleted_with_one_warning(app, worker, caplog, monkeypatch,
                                                                  staff):
    monkeypatch.setattr(recording_jobs, "_warned_no_account", False)
    caplog.set_level(logging.WARNING)
    first, url1 = message_on(app, DEV_ACCOUNT_SID)
    second, url2 = message_on(app, DEV_ACCOUNT_SID)
    for url in (url1, url2):
        responses.get(url + ".mp3", body=AUDIO)
    worker.run_once()
    worker.run_once()
    assert [c.request.method for c in responses.calls] == ["GET", "GET"]
    assert sum("TWILIO_ACCOUNT_SID is not configured" in r.getMessage() for r in caplog.records) == 1
    for ref in (first, second):
        assert store_of(app).get(ref)["twilio_copy"] == "kept"
    assert "kept on Twilio: TWILIO_ACCOUNT_SID is not configured" in staff("show", first)[1]


# --- requests written by the older version, with the URL in plain -----------------------------------------

def old_version_request(app, redis_client, url: str, sid: str = "CA" + "3" * 32) -> str:
    """A request as the previous version left it: the URL in plain in the hash, its audit and its job."""
    store = store_of(app)
    ref = store.open_request(sid, INMATE, lang="en", source="facility caller ID")
    redis_client.hset(f"ivr:req:{ref}", mapping={"recording_url": url, "recording_file": "",
                                                 "recording_error": "", "stage": "message"})
    redis_client.xadd(f"ivr:req:{ref}:audit", {"at": "2026-11-20T15:00:00+00:00", "by": "caller",
                                               "action": "message recorded", "detail": url})
    return ref


@responses.activate
def test_a_queued_message_of_the_older_version_is_still_fetched_then_sealed_and_deleted(live, redis_client):
    app, worker = live
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE{'7' * 32}"
    ref = old_version_request(app, redis_client, url)
    jobs.enqueue(redis_client, RECORDING_JOB, {"ref": ref, "url": url})      # the job, with the plain URL
    twilio_serves(url)
    worker.start_up()
    worker.run_once()
    worker.run_once()
    assert [c.request.method for c in responses.calls] == ["GET", "DELETE"]
    request = store_of(app).get(ref)
    assert open(request["recording_file"], "rb").read() == AUDIO and request["twilio_copy"] == "deleted"
    assert store_of(app).open_url(request["recording_url"]) == url
    assert url.encode() not in everything_in(redis_client)


@responses.activate
def test_a_message_the_older_version_downloaded_is_sealed_and_deleted_when_the_worker_starts(live, redis_client):
    app, worker = live
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE{'8' * 32}"
    ref = old_version_request(app, redis_client, url)
    folder = app.config["DATA_DIR"] / "requests" / ref
    folder.mkdir(parents=True)
    (folder / f"RE{'8' * 32}.mp3").write_bytes(AUDIO)
    redis_client.hset(f"ivr:req:{ref}", "recording_file", str(folder / f"RE{'8' * 32}.mp3"))
    old_done = old_version_request(app, redis_client, url[:-4] + "9999", sid="CA" + "4" * 32)   # never fetched
    responses.delete(delete_url(url), status=204)
    worker.start_up()
    assert worker.run_once() == 1
    assert [(c.request.method, c.request.url) for c in responses.calls] == [("DELETE", delete_url(url))]
    assert store_of(app).get(ref)["twilio_copy"] == "deleted"
    assert not store_of(app).get(old_done).get("twilio_copy")      # no local copy: Twilio's is not touched
    dump = everything_in(redis_client)
    assert b"twilio.com" not in dump, "a plain recording URL is left in Redis"
    # The history is kept, without the URL.
    assert [e.action for e in store_of(app).history(ref)][:2] == ["created", "message recorded"]
    assert store_of(app).reseal_legacy() == (0, 0)           # once is enough


@responses.activate
def test_a_queued_message_of_the_older_version_handled_before_a_restart_leaves_no_plain_url(live, redis_client):
    """A worker already running (or an older web process still taking calls) handles a request kept in plain:
    its audit trail is cleaned with the hash, since the next start only looks at requests still in plain."""
    app, worker = live
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE{'6' * 32}"
    ref = old_version_request(app, redis_client, url)
    jobs.enqueue(redis_client, RECORDING_JOB, {"ref": ref, "url": url})
    twilio_serves(url)
    worker.run_once()
    worker.run_once()
    worker.start_up()
    assert store_of(app).get(ref)["twilio_copy"] == "deleted"
    assert url.encode() not in everything_in(redis_client)
    assert [e.action for e in store_of(app).history(ref)][:3] == ["created", "message recorded",
                                                                   "recording downloaded"]


def test_a_retry_after_from_twilio_is_waited_for_at_most_half_a_minute():
    from urllib3 import HTTPResponse

    from ivr.domain.recordings import RETRY_AFTER_MAX, CappedRetry

    retry = CappedRetry(total=2, respect_retry_after_header=True)
    assert retry.get_retry_after(HTTPResponse(status=503, headers={"Retry-After": "3600"})) == RETRY_AFTER_MAX
    assert retry.get_retry_after(HTTPResponse(status=503, headers={"Retry-After": "2"})) == 2
    assert retry.get_retry_after(HTTPResponse(status=503)) is None
    assert type(retry.increment(method="GET", url="/x", response=HTTPResponse(status=503))) is CappedRetry
