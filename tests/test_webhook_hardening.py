"""Issue 13, the webhook request path: bodies limited before any parsing, the account and call a signed
request names, Twilio's idempotency token, request fields escaped in the log, and a second auth token
while it is rotated. Attacks are sent through `app.test_client()` as raw bodies, and what the app read of
them is counted (bytes taken from the body, form parses), never timed."""

from __future__ import annotations

import io
import logging
from urllib.parse import urljoin

import pytest
import werkzeug.formparser
from flask import request
from twilio.request_validator import RequestValidator
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from ivr.callflow.simphone import Phone, Transport
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, ConfigError, from_env
from tests.conftest import LINES
from tests.walk import spoken_ref

BASE = "http://localhost"
SID = "CA" + "ab" * 16
PARAMS = {"AccountSid": DEV_ACCOUNT_SID, "CallSid": SID, "From": "+18605550100", "To": LINES["callcenter"]}
FORM = "application/x-www-form-urlencoded"

# What Twilio posts to /voice besides the fields the app reads (its documented request parameters),
# at the sizes seen in practice: the CallToken alone is about 1.5 KB; an Add-on's result a few KB.
TWILIO_FIELDS = {
    "ApiVersion": "2010-04-01", "Direction": "inbound", "CallStatus": "in-progress",
    "Called": LINES["callcenter"], "CalledCity": "", "CalledState": "CT", "CalledZip": "", "CalledCountry": "US",
    "Caller": "+18605550100", "CallerCity": "HARTFORD", "CallerState": "CT", "CallerZip": "06103",
    "CallerCountry": "US", "FromCity": "HARTFORD", "FromState": "CT", "FromZip": "06103", "FromCountry": "US",
    "ToCity": "", "ToState": "CT", "ToZip": "", "ToCountry": "US", "CallerName": "WIRELESS CALLER",
    "StirVerstat": "TN-Validation-Passed-A", "ForwardedFrom": "",
    "CallToken": "%7B%22parentCallInfoToken%22%3A%22" + "eyJhbGciOiJFUzI1NiJ9." * 60 + "%22%7D",
    "AddOns": '{"status":"successful","message":null,"code":null,"results":{"lookup":{"result":'
              + '{"caller_name":{"caller_name":"WIRELESS CALLER","caller_type":"CONSUMER"},"carrier":'
              + '{"name":"Carrier","type":"mobile"},"notes":"' + "x" * 3000 + '"}}}}',
}


def sign(url: str, params: dict, token: str = DEV_AUTH_TOKEN) -> dict:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(BASE + url, params)}


class Body(io.BytesIO):
    """A request body that counts the bytes the app takes from it."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data

    read1 = read

    def readinto(self, buffer) -> int:
        n = super().readinto(buffer)
        self.taken += n
        return n

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.taken += len(data)
        return data


def post_raw(app, path: str, body: bytes, headers: dict | None = None, chunked: bool = False):
    """Post `body` as is; with `chunked`, as gunicorn hands a chunked body over: no Content-Length, and a
    stream that ends by itself. Returns the response and how many bytes of the body the app read."""
    stream = Body(body)
    environ = EnvironBuilder(path=path, method="POST", base_url=BASE, input_stream=stream, content_type=FORM,
                             headers=headers or {}).get_environ()
    if chunked:
        del environ["CONTENT_LENGTH"]
        environ.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    resp = app.test_client().open(Request(environ))
    return resp, stream.taken


@pytest.fixture
def parses(monkeypatch) -> list:
    """Every form parse Werkzeug makes (url-encoded and multipart bodies both go through it)."""
    calls: list = []
    real = werkzeug.formparser.FormDataParser.parse

    def spy(self, *args, **kwargs):
        calls.append(args[1] if len(args) > 1 else "")
        return real(self, *args, **kwargs)
    monkeypatch.setattr(werkzeug.formparser.FormDataParser, "parse", spy)
    return calls


def many_fields(n: int) -> bytes:
    return b"&".join(b"f%d=x" % i for i in range(n))           # 200,000 fields: 1.8 MB, as in the attack


# --- 1. request bodies ------------------------------------------------------------------------------

def test_a_forged_post_of_200000_fields_is_refused_before_its_body_is_read(app, parses):
    body = many_fields(200_000)
    assert len(body) > 1_800_000
    for path in ("/voice", "/voice/step?s=1", "/voice/status", "/voice/fallback"):
        resp, taken = post_raw(app, path, body)                       # no signature at all
        assert resp.status_code == 403, path
        assert taken == 0, path
        resp, taken = post_raw(app, path, body, {"X-Twilio-Signature": "forged"})
        assert resp.status_code == 413, path                          # refused on its Content-Length
        assert taken == 0, path
    assert parses == []


def test_fields_beyond_the_limit_are_refused_before_parsing_even_in_a_small_body(make_app, parses):
    app = make_app()
    limit = app.config["MAX_WEBHOOK_FIELDS"]
    body = b"&" * 30_000 + b"CallSid=" + SID.encode()               # 30 KB: under the byte limit
    assert len(body) < app.config["MAX_WEBHOOK_BYTES"]
    resp, _ = post_raw(app, "/voice", body, {"X-Twilio-Signature": "forged"})
    assert resp.status_code == 413
    params = {**PARAMS, **{f"f{i}": "x" for i in range(limit)}}       # signed by us, still too many
    resp = app.test_client().post("/voice", data=params, headers=sign("/voice", params))
    assert resp.status_code == 413
    assert parses == []


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(app, parses):
    limit = app.config["MAX_WEBHOOK_BYTES"]
    resp, taken = post_raw(app, "/voice", b"a=" + b"x" * 50_000_000, {"X-Twilio-Signature": "forged"},
                           chunked=True)
    assert resp.status_code == 413
    assert taken <= limit + 65536                                      # the limit and one read's worth
    assert parses == []


def test_the_fallback_keeps_answering_while_voice_is_flooded(app, parses):
    body = many_fields(200_000)
    for _ in range(20):
        assert post_raw(app, "/voice", body, {"X-Twilio-Signature": "forged"})[0].status_code == 413
        assert post_raw(app, "/voice/fallback", body)[0].status_code == 403
    assert parses == []
    params = {**PARAMS, "ErrorCode": "11200", "ErrorUrl": "https://ivr.example.org/voice"}
    resp = app.test_client().post("/voice/fallback", data=params, headers=sign("/voice/fallback", params))
    assert resp.status_code == 200 and "our phone system is having a problem" in resp.get_data(as_text=True)


class FullTwilioTransport(Transport):
    """Posts every field Twilio posts, not only those the app reads."""

    def post(self, url: str, params: dict, sign: bool = True) -> tuple[int, str]:
        return super().post(url, {**TWILIO_FIELDS, **params}, sign)


def test_a_real_sized_signed_twilio_call_still_works(app, parses):
    size = len(EnvironBuilder(method="POST", data={**TWILIO_FIELDS, **PARAMS}).get_environ()["wsgi.input"].read())
    assert 4_000 < size < app.config["MAX_WEBHOOK_BYTES"] // 4
    transport = FullTwilioTransport(DEV_AUTH_TOKEN, app=app)
    call = Phone(transport=transport, to=LINES["callcenter"]).place(["1", "*", "9"])
    assert len(call.statuses) >= 4 and set(call.statuses) == {200}
    assert "Child Support Call Center" in call.said and "error" not in [e.kind for e in call.events]
    assert len(parses) >= len(call.statuses)                            # each was parsed, once it was let in


def test_a_route_can_have_its_own_larger_limit(make_app):
    from ivr.web.limits import body_limit

    app = make_app()

    @app.post("/test-upload")
    @body_limit(max_bytes=2_000_000, max_fields=5)
    def upload():
        return {"size": len(request.form["audio"])}

    client = app.test_client()
    big = {"audio": "x" * 1_000_000}
    resp = client.post("/test-upload", data=big)
    assert resp.status_code == 200 and resp.get_json() == {"size": 1_000_000}
    assert client.post("/test-upload", data={f"f{i}": "x" for i in range(6)}).status_code == 413
    assert client.post("/test-upload", data={"audio": "x" * 2_000_001}).status_code == 413
    params = {**PARAMS, "Digits": "x" * 1_000_000}                      # the webhooks keep their own limit
    assert client.post("/voice", data=params, headers=sign("/voice", params)).status_code == 413


def test_limits_are_settings_and_nonsense_is_refused():
    cfg = from_env({})
    assert cfg["MAX_WEBHOOK_BYTES"] == 65536 and cfg["MAX_WEBHOOK_FIELDS"] == 200
    cfg = from_env({"IVR_MAX_WEBHOOK_BYTES": "131072", "IVR_MAX_WEBHOOK_FIELDS": "300"})
    assert cfg["MAX_WEBHOOK_BYTES"] == 131072 and cfg["MAX_WEBHOOK_FIELDS"] == 300
    for bad in ({"IVR_MAX_WEBHOOK_BYTES": "lots"}, {"IVR_MAX_WEBHOOK_BYTES": "100"},
                {"IVR_MAX_WEBHOOK_FIELDS": "0"}, {"IVR_MAX_WEBHOOK_FIELDS": "-5"}):
        with pytest.raises(ConfigError, match="IVR_MAX_WEBHOOK"):
            from_env(bad)


# --- 2. the call and account a signed request names; idempotency tokens -----------------------------

def test_a_signed_request_moved_onto_another_callsid_is_refused(app, redis_client):
    """Twilio signs name+value with no separator: `CallSid=CA..1&CallStatus=x` and
    `CallSid=CA..1CallStatusx` sign alike, and so does an AccountSid that swallows the next parameter."""
    client = app.test_client()
    signed = {**PARAMS, "CallStatus": "completed"}
    moved = {"AccountSid": DEV_ACCOUNT_SID, "CallSid": SID + "CallStatuscompleted", "From": PARAMS["From"],
             "To": PARAMS["To"]}
    headers = sign("/voice/status", signed)
    assert sign("/voice/status", moved) == headers                     # the same signature ...
    assert client.post("/voice/status", data=moved, headers=headers).status_code == 403   # ... refused
    swallowed = {"AccountSid": DEV_ACCOUNT_SID + "CallSid" + SID, "CallStatus": "completed",
                 "From": PARAMS["From"], "To": PARAMS["To"]}
    assert sign("/voice/status", swallowed) == headers
    assert client.post("/voice/status", data=swallowed, headers=headers).status_code == 403
    assert client.post("/voice/status", data=signed, headers=headers).status_code == 204


@pytest.mark.parametrize("change", [
    {"AccountSid": "AC" + "1" * 32},                      # another account (signed with our token)
    {"AccountSid": "AC" + "0" * 31},                      # malformed
    {"AccountSid": ""}, {"AccountSid": None},             # missing
    {"CallSid": "CA" + "a" * 31 + "G"}, {"CallSid": "ca" + "a" * 32}, {"CallSid": "CA" + "a" * 32 + "\n"},
    {"CallSid": "CA" + "A" * 32},
], ids=lambda c: repr(c)[:30])
def test_a_signed_request_for_another_account_or_a_malformed_call_is_refused(client, change):
    params = {k: v for k, v in {**PARAMS, **change}.items() if v is not None}
    for path in ("/voice", "/voice/step?s=1", "/voice/status", "/voice/fallback"):
        assert client.post(path, data=params, headers=sign(path, params)).status_code == 403, path


def test_a_request_without_callsid_still_gets_the_fallback(client):
    params = {k: v for k, v in PARAMS.items() if k != "CallSid"}
    resp = client.post("/voice", data=params, headers=sign("/voice", params))
    assert resp.status_code == 200 and "our phone system is having a problem" in resp.get_data(as_text=True)


def test_a_repeated_idempotency_token_gets_the_same_answer_and_changes_nothing(app, redis_client):
    """Twilio retried the hung-up <Record>'s late action (the first attempt's answer was lost): the retry
    carries the same I-Twilio-Idempotency-Token and must not start the caller's line over."""
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    base = {**PARAMS, "From": "+19595550113"}                       # York CI: straight to the intake
    _, body = transport.post("/voice", base)
    seq = 1
    for digits in ["", "1", "7654321", "1", "*"]:
        _, body = transport.post(f"/voice/step?s={seq}", {**base, "Digits": digits})
        seq += 1
    assert "<Record" in body
    transport.post("/voice/status", {**base, "CallStatus": "completed"})
    url = f"/voice/step?s={seq}"
    record = {**base, "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Recordings/"
              f"RE{'c' * 32}", "RecordingDuration": "40"}
    headers = {**sign(url, record), "I-Twilio-Idempotency-Token": "5f1b9d7a-retry-token"}
    client = app.test_client()
    first = client.post(url, data=record, headers=headers)
    assert "request number is" in first.get_data(as_text=True)
    ref = spoken_ref(first.get_data(as_text=True))
    kept = {k: (redis_client.dump(k), redis_client.ttl(k)) for k in redis_client.keys(f"*{SID}*")}
    again = client.post(url, data=record, headers=headers)
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert spoken_ref(again.get_data(as_text=True)) == ref
    assert {k: (redis_client.dump(k), redis_client.ttl(k)) for k in redis_client.keys(f"*{SID}*")} == kept


def test_a_repeated_status_callback_changes_nothing(app, redis_client):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    transport.post("/voice", PARAMS)
    params = {**PARAMS, "CallStatus": "completed", "CallDuration": "12"}
    headers = {**sign("/voice/status", params), "I-Twilio-Idempotency-Token": "status-token-1"}
    client = app.test_client()
    assert client.post("/voice/status", data=params, headers=headers).status_code == 204
    for key in (f"ivr:call:{SID}", f"ivr:ended:{SID}"):
        redis_client.expire(key, 100)                                  # as if 200 s had passed
    assert client.post("/voice/status", data=params, headers=headers).status_code == 204
    assert redis_client.ttl(f"ivr:call:{SID}") <= 100                   # the retry kept nothing longer
    assert redis_client.ttl(f"ivr:ended:{SID}") <= 100
    assert app.extensions["ivr"].store.live(SID) is False


def test_a_token_answered_before_the_end_is_not_replayed_after_it(app, redis_client):
    """A copy of a request, token and all, sent after the call ended: not answered from the replay cache
    (the rule for replays by step number too: after the end, nothing said in the call is repeated)."""
    phone = Phone(app, to=LINES["callcenter"], sid=SID).start()
    url = urljoin(phone.url, phone.pending.get("action"))
    params = {**phone.base, "Digits": "1"}
    headers = {**sign(url, params), "I-Twilio-Idempotency-Token": "menu-press-token"}
    client = app.test_client()
    first = client.post(url, data=params, headers=headers).get_data(as_text=True)
    assert client.post(url, data=params, headers=headers).get_data(as_text=True) == first
    phone.hang_up()
    after = client.post(url, data=params, headers=headers).get_data(as_text=True)
    assert after != first


# --- 3. request fields in the log ---------------------------------------------------------------------

NASTY = "x\n2026-11-24 10:00:00 ERROR ivr: forged line\r\x00\x1b[31m\u202egnp.exe\u2066\u200f\u2028end"


def test_request_fields_reach_the_log_escaped(make_app, caplog, redis_client):
    caplog.set_level(logging.DEBUG)
    app = make_app()
    client = app.test_client()
    posts = [
        ("/voice", {**PARAMS, "From": "+18605551\n\u202e", "To": NASTY}),
        ("/voice/status", {**PARAMS, "CallStatus": NASTY, "CallDuration": NASTY}),
        ("/voice/fallback", {**PARAMS, "ErrorCode": NASTY, "ErrorUrl": "https://ivr.example.org/" + NASTY}),
    ]
    for path, params in posts:
        assert client.post(path, data=params, headers=sign(path, params)).status_code in (200, 204)
    # Rejections log what was checked: a query as sent, a forged account.
    client.post("/voice?s=" + NASTY.replace("\n", "%0A"), data=PARAMS, headers={"X-Twilio-Signature": "x"})
    bad = {**PARAMS, "AccountSid": NASTY}
    client.post("/voice/status", data=bad, headers=sign("/voice/status", bad))
    messages = [r.getMessage() for r in caplog.records]
    assert any("forged line" in m for m in messages), messages        # the fields were logged ...
    raw = [m for m in messages if not m.isprintable()]
    assert raw == []                                                   # ... with nothing raw in them


# --- 4. auth token rotation; mismatches logged once a minute ------------------------------------------

def test_during_a_rotation_the_previous_token_is_accepted_too(make_app):
    app = make_app(TWILIO_AUTH_TOKEN="the-new-token-0123456789", TWILIO_AUTH_TOKEN_PREVIOUS=DEV_AUTH_TOKEN)
    client = app.test_client()
    for token in ("the-new-token-0123456789", DEV_AUTH_TOKEN):
        assert client.post("/voice", data=PARAMS, headers=sign("/voice", PARAMS, token)).status_code == 200
    assert client.post("/voice", data=PARAMS, headers=sign("/voice", PARAMS, "a-third-one")).status_code == 403
    only_new = make_app(TWILIO_AUTH_TOKEN="the-new-token-0123456789")
    assert only_new.test_client().post("/voice", data=PARAMS, headers=sign("/voice", PARAMS)).status_code == 403
    assert from_env({"IVR_TWILIO_AUTH_TOKEN_PREVIOUS": "old"})["TWILIO_AUTH_TOKEN_PREVIOUS"] == "old"
    assert from_env({})["TWILIO_AUTH_TOKEN_PREVIOUS"] == ""


def test_a_signature_mismatch_is_logged_once_a_minute_with_the_url_checked(make_app, caplog, monkeypatch):
    from ivr.web import signature

    now = [1000.0]
    monkeypatch.setattr(signature, "monotonic", lambda: now[0])
    app = make_app(PUBLIC_BASE_URL="https://wrong.example.org")
    client = app.test_client()

    def mismatches() -> list[str]:
        return [r.getMessage() for r in caplog.records if "does not match" in r.getMessage()]
    for _ in range(5):                          # Twilio signed the URL it calls, not PUBLIC_BASE_URL's
        assert client.post("/voice/step?s=3", data=PARAMS, headers=sign("/voice/step?s=3", PARAMS)).status_code == 403
    assert len(mismatches()) == 1
    assert "https://wrong.example.org/voice/step?s=3" in mismatches()[0]
    now[0] += 61
    client.post("/voice/step?s=4", data=PARAMS, headers=sign("/voice/step?s=4", PARAMS))
    assert len(mismatches()) == 2 and "4 more" in mismatches()[1]
