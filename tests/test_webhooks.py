"""The outside interface (docs/interface.md): signatures, line selection, status, fallback and health."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from ivr import store
from ivr.callflow.simphone import Transport
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, ConfigError, from_env
from tests.walk import spoken_ref

PARAMS = {"AccountSid": DEV_ACCOUNT_SID, "CallSid": "CA" + "a" * 32, "From": "+18605550100", "To": "+18002285437"}


def sign(url: str, params: dict, token: str = DEV_AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


@pytest.mark.parametrize("path", ["/voice", "/voice/step?s=1", "/voice/status", "/voice/fallback"])
def test_every_webhook_refuses_a_missing_or_forged_signature(client, path):
    assert client.post(path, data=PARAMS).status_code == 403
    forged = {"X-Twilio-Signature": sign("http://localhost" + path, PARAMS, token="not-our-token")}
    assert client.post(path, data=PARAMS, headers=forged).status_code == 403


def test_a_signature_for_another_url_or_other_parameters_is_refused(client):
    other_url = {"X-Twilio-Signature": sign("http://localhost/voice/fallback", PARAMS)}
    assert client.post("/voice", data=PARAMS, headers=other_url).status_code == 403
    other_params = {"X-Twilio-Signature": sign("http://localhost/voice", {**PARAMS, "From": "+1"})}
    assert client.post("/voice", data=PARAMS, headers=other_params).status_code == 403
    good = {"X-Twilio-Signature": sign("http://localhost/voice", PARAMS)}
    assert client.post("/voice", data=PARAMS, headers=good).status_code == 200


def test_behind_a_tls_proxy_the_public_url_is_what_twilio_signed(make_app):
    app = make_app(PUBLIC_BASE_URL="https://ivr.example.org")
    client = app.test_client()
    as_twilio = {"X-Twilio-Signature": sign("https://ivr.example.org/voice", PARAMS)}
    assert client.post("/voice", data=PARAMS, headers=as_twilio).status_code == 200
    as_seen_inside = {"X-Twilio-Signature": sign("http://localhost/voice", PARAMS)}
    assert client.post("/voice", data=PARAMS, headers=as_seen_inside).status_code == 403


def test_health_needs_no_signature_and_reports_redis_and_sdu(client):
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.get_json()
    assert {k: body[k] for k in ("status", "redis", "sdu", "sdu_breaker")} == \
        {"status": "ok", "redis": True, "sdu": True, "sdu_breaker": "closed"}
    assert body["checked_seconds_ago"] is not None


def test_health_reports_a_dead_redis(make_app):
    app = make_app(redis=store.connect("redis://127.0.0.1:1/0", "test"))
    assert app.test_client().get("/health").get_json()["redis"] is False


def test_the_line_is_picked_from_the_number_called(app):
    t = Transport(DEV_AUTH_TOKEN, app=app)
    _, body = t.post("/voice", {**PARAMS, "To": "+18882337223"})
    assert "payment information" in body
    _, body = t.post("/voice", {**PARAMS, "CallSid": "CA" + "b" * 32, "To": "(800) 228-5437"})
    assert "Child Support Call Center" in body
    _, body = t.post("/voice", {**PARAMS, "CallSid": "CA" + "c" * 32, "To": "garbage"})
    assert "Child Support Call Center" in body      # unknown numbers get the default line


def test_status_callback_records_the_end_with_204(app, redis_client):
    t = Transport(DEV_AUTH_TOKEN, app=app)
    t.post("/voice", PARAMS)
    assert redis_client.exists("ivr:call:" + PARAMS["CallSid"])
    status, _ = t.post("/voice/status", {**PARAMS, "CallStatus": "completed", "CallDuration": "12"})
    assert status == 204
    # Kept 5 minutes, not at once: a hung-up <Record>'s action may arrive after the status callback.
    assert 0 < redis_client.ttl("ivr:call:" + PARAMS["CallSid"]) <= 300
    assert app.extensions["ivr"].store.live(PARAMS["CallSid"]) is False


def test_a_recording_posted_after_the_status_callback_is_still_taken(app, redis_client):
    t = Transport(DEV_AUTH_TOKEN, app=app)
    base = {**PARAMS, "From": "+19595550113"}                      # York CI: straight to the intake
    _, body = t.post("/voice", base)
    seq = 1
    for digits in ["", "1", "7654321", "1", "*"]:                    # language, start, number, right, no case
        _, body = t.post(f"/voice/step?s={seq}", {**base, "Digits": digits})
        seq += 1
    assert "<Record" in body
    t.post("/voice/status", {**base, "CallStatus": "completed"})      # Twilio's order is not promised
    rec = "https://api.twilio.com/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/RE" + "a" * 32
    status, body = t.post(f"/voice/step?s={seq}", {**base, "RecordingUrl": rec, "RecordingDuration": "40"})
    assert status == 200 and "lost your place" not in body
    assert "request number is" in body
    assert redis_client.hexists(f"ivr:req:{spoken_ref(body)}", "recording_url")    # the message was taken
    # The late action leaves the call ended: its state keeps the short expiry, so it is never shown as live.
    assert 0 < redis_client.ttl("ivr:call:" + PARAMS["CallSid"]) <= 300
    assert app.extensions["ivr"].store.live(PARAMS["CallSid"]) is False


def test_fallback_answers_without_redis_and_transfers_when_open(make_app, clock):
    app = make_app(redis=store.connect("redis://127.0.0.1:1/0", "test"))
    t = Transport(DEV_AUTH_TOKEN, app=app)
    for path in ("/voice/fallback", "/voice", "/voice/step?s=3"):
        status, body = t.post(path, PARAMS)
        assert status == 200, path
        assert "our phone system is having a problem" in body
        assert "<Dial" in body and "+18605696233" in body
    clock.set("2026-11-24 22:00")
    status, body = t.post("/voice/fallback", PARAMS)
    assert "<Dial" not in body and "1, 8 0 0, 2 2 8, 5 4 3 7" in body and "<Hangup" in body


def test_production_refuses_to_run_without_signature_checks():
    env = {"IVR_ENV": "production", "IVR_VALIDATE_SIGNATURES": "0", "TWILIO_AUTH_TOKEN": "0123456789abcdef" * 2,
           "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "SDU_BASE_URL": "https://sdu", "SDU_API_KEY": "k",
           "IVR_SECRET_KEY": "a-production-secret-of-32-characters-or-more",
           "PUBLIC_BASE_URL": "https://ivr.example.org"}
    with pytest.raises(ConfigError, match="IVR_VALIDATE_SIGNATURES=0 is refused"):
        from_env(env)
    with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN must be set"):
        from_env({"IVR_ENV": "production"})
    assert from_env({**env, "IVR_VALIDATE_SIGNATURES": "1"})["VALIDATE_SIGNATURES"] is True
    # Behind Twilio's https, a missing or plain-http public origin would make every webhook 403.
    for origin in ("", "http://ivr.example.org", "ivr.example.org"):
        with pytest.raises(ConfigError, match="PUBLIC_BASE_URL must be the public https"):
            from_env({**env, "IVR_VALIDATE_SIGNATURES": "1", "PUBLIC_BASE_URL": origin})


def test_development_without_redis_falls_back_to_an_embedded_store_loudly(caplog):
    from ivr import store

    client = store.connect("redis://127.0.0.1:1/0", "development")
    assert client.ping()
    assert "EMBEDDED in-process store" in caplog.text
    caplog.clear()
    real = store.connect("redis://127.0.0.1:1/0", "production")
    assert type(real).__module__.startswith("redis")
    assert "does not answer" in caplog.text
