"""Issue 18, optional part: "call now" from the console places the call through Twilio's REST API, staff
phone first, then the parent (the bridge); never retried blindly. Checked with `responses` against the
twilio package's own request."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import responses
from twilio.rest import Client

from ivr.callflow.simphone import Phone, Transport
from ivr.domain.callnow import CallNowError, call_now
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN
from tests.conftest import LINES

CALLS = f"https://api.twilio.com/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Calls.json"
PUBLIC = "https://ivr.example.org"
STAFF_PHONE = "+18605550142"
SATURDAY_NIGHT = "2026-11-28 23:30"


def reply(sid: str = "CA" + "f" * 32) -> dict:
    return {"sid": sid, "status": "queued", "account_sid": DEV_ACCOUNT_SID, "to": STAFF_PHONE,
            "from": "+18002285437", "direction": "outbound-api", "api_version": "2010-04-01", "uri": "/x.json",
            "subresource_uris": {}}


def form(request) -> dict:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return parse_qs(body)


@pytest.fixture
def callback(app, clock, redis_client):
    """A callback left by a caller on a Saturday night; a staff account 471."""
    from datetime import datetime

    clock.set(SATURDAY_NIGHT)
    app.extensions["ivr"].services.staffdb.add("471", "Ana Ruiz", "582946", datetime.now())
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"],
                  caller="+18605550199").place(["-", "0", "3", "2", "2035550147#", "2035550147#", "1", "2"])
    assert phone.hung_up
    return redis_client.zrange("ivr:cb:all", 0, -1)[0].decode()


def place(app, ref: str, by: str = "471"):
    store = app.extensions["ivr"].services.callbacks
    store.staff_exists = lambda staff_id: app.extensions["ivr"].services.staffdb.get(staff_id) is not None
    return call_now(store, {**app.config, "PUBLIC_BASE_URL": PUBLIC}, ref, by, STAFF_PHONE,
                    app.extensions["ivr"].lines_cfg["callback_number"])


def test_call_now_rings_the_staff_phone_first_exactly_as_twilio_documents(app, callback, redis_client):
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, CALLS, json=reply(), status=201)
        assert place(app, callback) == "CA" + "f" * 32
        (sent,) = mock.calls
    fields = form(sent.request)
    assert fields == {"To": [STAFF_PHONE], "From": ["+18002285437"], "Method": ["POST"],
                      "Url": [f"{PUBLIC}/callbacks/bridge?ref={callback}"]}
    with responses.RequestsMock() as mock:               # the twilio package's own request for the same call
        mock.add(responses.POST, CALLS, json=reply(), status=201)
        Client(DEV_ACCOUNT_SID, DEV_AUTH_TOKEN).calls.create(to=STAFF_PHONE, from_="+18002285437", method="POST",
                                                             url=f"{PUBLIC}/callbacks/bridge?ref={callback}")
        own = mock.calls[0].request
    assert (own.method, own.url, form(own)) == (sent.request.method, sent.request.url, fields)
    assert redis_client.hget(f"ivr:cb:{callback}", "taken_by") == b"471"
    # A second click while that call is being placed places none.
    with responses.RequestsMock() as mock, pytest.raises(CallNowError, match="being placed already"):
        place(app, callback)


@pytest.mark.parametrize("status, body, error", [(500, {"code": 20500, "message": "oops", "status": 500}, None),
                                                 (400, {"code": 21215, "message": "geo", "status": 400}, None),
                                                 (None, None, ConnectionError("reset"))])
def test_a_failed_call_is_never_retried_and_is_noted(app, callback, status, body, error):
    import requests

    with responses.RequestsMock() as mock:
        if error is None:
            mock.add(responses.POST, CALLS, json=body, status=status)
        else:
            mock.add(responses.POST, CALLS, body=requests.ConnectionError("reset"))
        with pytest.raises(CallNowError):
            place(app, callback)
        assert len(mock.calls) == 1                      # once: creating a call is not idempotent
    history = [e.action for e in app.extensions["ivr"].services.callbacks.history(callback)]
    assert history[-1].startswith("call from the console")


def test_twilios_refusal_quoting_the_staff_phone_is_kept_and_shown_without_it(app, callback):
    refusal = {"code": 21215, "status": 400,
               "message": f"Account not authorized to call {STAFF_PHONE}. Perhaps you need to enable geo permissions"}
    with responses.RequestsMock() as mock, pytest.raises(CallNowError) as refused:
        mock.add(responses.POST, CALLS, json=refusal, status=400)
        place(app, callback)
    history = app.extensions["ivr"].services.callbacks.history(callback)
    shown = str(refused.value) + " ".join(f"{e.action} {e.detail}" for e in history)
    assert "21215" in shown and "not authorized" in shown
    assert "5550142" not in shown and "*********42" in shown


def test_a_callback_taken_by_someone_else_meanwhile_places_no_call_and_leaves_no_lock(app, callback, redis_client,
                                                                                      monkeypatch):
    from datetime import datetime

    from ivr.domain.callbacks import CallbackError

    services = app.extensions["ivr"].services
    services.staffdb.add("472", "Bo Lee", "639147", datetime.now())
    store = services.callbacks
    read = store.get

    def read_then_taken(ref):      # 472 takes it between 471's read and 471's take
        data = read(ref)
        store.take(ref, "472")
        return data
    monkeypatch.setattr(store, "get", read_then_taken)
    with responses.RequestsMock() as mock, pytest.raises(CallbackError, match="taken by 472"):
        place(app, callback, by="471")
    assert not mock.calls
    monkeypatch.setattr(store, "get", read)
    assert redis_client.get(f"ivr:cb:{callback}:calling") is None     # 472's own click is not refused
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, CALLS, json=reply(), status=201)
        place(app, callback, by="472")
        assert len(mock.calls) == 1


def test_the_bridge_dials_the_parent_from_the_call_center_number_and_is_signed(app, callback):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    status, body = transport.post(f"/callbacks/bridge?ref={callback}", {"CallSid": "CA" + "f" * 32,
                                                                         "To": STAFF_PHONE})
    assert status == 200
    assert '<Dial callerId="+18002285437"' in body and "<Number>+12035550147</Number>" in body
    assert "Connecting you to the caller" in body.split("<Dial")[0]
    assert app.test_client().post(f"/callbacks/bridge?ref={callback}").status_code == 403
    app.extensions["ivr"].services.callbacks.done(callback, "471")
    status, body = transport.post(f"/callbacks/bridge?ref={callback}", {"CallSid": "CA" + "e" * 32})
    assert "<Dial" not in body and "no longer open" in body


def test_call_now_refuses_without_a_public_url_or_with_a_bad_staff_phone(app, callback):
    store = app.extensions["ivr"].services.callbacks
    with pytest.raises(CallNowError, match="PUBLIC_BASE_URL"):
        call_now(store, app.config, callback, "471", STAFF_PHONE, "+18002285437")
    with pytest.raises(CallNowError, match="toll free"):
        call_now(store, {**app.config, "PUBLIC_BASE_URL": PUBLIC}, callback, "471", "+18005551234", "+18002285437")


def left_a_message(make_app, clock, redis_client, monkeypatch):
    """A callback with a message, on a configured Twilio account (the development one deletes nothing):
    (app, the recording's URL, the reference, a worker)."""
    import re

    from ivr.domain import recordings
    from ivr.jobs import callbacks as callback_jobs
    from ivr.jobs import worker as jobs

    account = "AC" + "5a" * 16
    app = make_app(TWILIO_ACCOUNT_SID=account)
    monkeypatch.setattr(callback_jobs, "http_session", lambda: recordings.session(retries=0, backoff=0))
    monkeypatch.setattr(recordings, "delete_session", lambda: recordings._retrying_session("DELETE", (), 0, 0))
    clock.set(SATURDAY_NIGHT)
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app, account_sid=account), to=LINES["callcenter"],
                  caller="+18605550199").place(["-", "0", "3", "1", "1", "1", "record"])
    url = next(e.text for e in phone.events if e.kind == "record")
    ref = "".join(re.search(r"reference number is (\d) (\d) (\d), (\d) (\d) (\d)", phone.said).groups())
    return app, url, ref, jobs.Worker(jobs.JobContext(app.config, redis_client), name="test-worker")


@responses.activate
def test_a_callers_message_is_downloaded_by_the_worker_then_twilios_copy_deleted(make_app, clock, redis_client,
                                                                                  monkeypatch):
    """The callback's message, like the inmate requests': the system's own file, then Twilio's copy goes."""
    app, url, ref, worker = left_a_message(make_app, clock, redis_client, monkeypatch)
    assert not responses.calls                  # the call never waited on Twilio
    responses.get(url + ".mp3", body=b"ID3 fake mp3" * 40, status=200, content_type="audio/mpeg")
    responses.delete(url + ".json", status=204)
    assert worker.run_once(block_ms=None) == 1
    assert [c.request.method for c in responses.calls] == ["GET", "DELETE"]
    data = app.extensions["ivr"].services.callbacks.get(ref)
    assert data["recording_file"].endswith(".mp3") and f"callbacks/{ref}/" in data["recording_file"]
    assert data["twilio_copy"] == "deleted"
    assert url.encode() not in b"".join(redis_client.hgetall(f"ivr:cb:{ref}").values())   # sealed


@responses.activate
def test_twilios_copy_not_deleted_once_is_deleted_later_without_downloading_again(make_app, clock, redis_client,
                                                                                  monkeypatch):
    app, url, ref, worker = left_a_message(make_app, clock, redis_client, monkeypatch)
    responses.get(url + ".mp3", body=b"ID3 fake mp3" * 40, status=200, content_type="audio/mpeg")
    responses.delete(url + ".json", status=503)
    assert worker.run_once(block_ms=None) == 1
    store = app.extensions["ivr"].services.callbacks
    assert store.get(ref)["twilio_copy"] == "not deleted" and store.get(ref)["recording_file"]
    responses.replace(responses.DELETE, url + ".json", status=204)
    assert worker.run_once(block_ms=None) == 1          # the deletion alone, queued by the failed one
    assert [c.request.method for c in responses.calls] == ["GET", "DELETE", "DELETE"]
    assert store.get(ref)["twilio_copy"] == "deleted"
    assert "Twilio's copy of the message deleted" in [e.action for e in store.history(ref)]
