"""Property-based fuzzing of every route the app exposes (discovered from `app.url_map`).

Requests are signed like Twilio's (RequestValidator with the app's token and the exact URL), with
random, missing, oversized, non-ASCII and out-of-order parameters, for calls that exist (at many
places of every line), calls that do not, steps of another call, and call state that names a node
or a line the tree does not have. Every answer must be 2xx and, when it is TwiML, TwiML Twilio takes
(tests/twiml_check.py); 403 only for a bad signature or a request that does not name our account and
a well-formed call, 413 only for a body beyond the limits (ivr/web/limits.py); nothing may log an exception.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator
from werkzeug.test import EnvironBuilder

from ivr.settings import DEV_AUTH_TOKEN
from ivr.web.signature import CALL_SID
from tests.twiml_check import Voices, check, url_checker
from tests.walk import ACCOUNT_SID, explore, known_values

SETTINGS = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
BASE = "http://localhost"
FIELDS = ["CallSid", "From", "To", "Digits", "SpeechResult", "Confidence", "RecordingUrl", "RecordingSid",
          "RecordingDuration", "DialCallStatus", "DialCallDuration", "CallStatus", "CallDuration", "AccountSid",
          "ErrorCode", "ErrorUrl", "Direction", "ApiVersion"]

text = st.one_of(
    st.text(max_size=40),                                              # any unicode, control chars too
    st.text(alphabet="0123456789#*", max_size=25),                    # keypad
    st.sampled_from(["", " ", "1", "9", "0", "*", "#", "12", "456789123", "4826", "+18605551234",
                     "+18882337223", "+18002285437", "+18605550142", "anonymous", "completed", "busy",
                     "no-answer", "failed", "canceled", "in-progress", "espanol", "operator", "start over",
                     "١٢٣٤", "²³⁴⁵", "１２３４", "\x00", "\u202e1", "NaN", "-1", "1e9",
                     "https://api.twilio.com/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/"
                     "RE0123456789abcdef0123456789abcdef",
                     "https://evil.example/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/"
                     "RE0123456789abcdef0123456789abcdef", "http://127.0.0.1:6379/", "file:///etc/passwd"]),
    st.text(min_size=1000, max_size=5000),                            # oversized
)
steps = st.one_of(st.none(), st.integers(-3, 40).map(str), st.integers(-2**70, 2**70).map(str),
                  st.text(max_size=12))


def sign(url: str, params: dict) -> dict:
    return {"X-Twilio-Signature": RequestValidator(DEV_AUTH_TOKEN).compute_signature(url, params)}


def too_big(app, params: dict) -> bool:
    """Is the body the test client sends for `params` beyond the app's byte limit?"""
    size = int(EnvironBuilder(method="POST", data=params).get_environ().get("CONTENT_LENGTH", 0))
    return size > app.config["MAX_WEBHOOK_BYTES"]


def expected(app, path: str, params: dict) -> int:
    """What a request signed with our token gets: 413 beyond the body limit, 403 unless it names our
    account and (if any) a well-formed CallSid, else the route's own answer."""
    if too_big(app, params):
        return 413
    sid = params.get("CallSid")
    if params.get("AccountSid") != ACCOUNT_SID or (sid and not CALL_SID.fullmatch(sid)):
        return 403
    return 204 if path in ("/voice/status", "/sms/status") else 200


def url_of(path: str, s: str | None, extra: dict | None = None) -> str:
    from urllib.parse import urlencode

    query = {} if s is None else {"s": s}
    query.update(extra or {})
    return path + (f"?{urlencode(query)}" if query else "")


class Checker:
    def __init__(self, app, caplog) -> None:
        self.app = app
        self.client = app.test_client()
        self.caplog = caplog
        self.voices = Voices.from_app(app)
        self.url_ok = url_checker(app)
        self.requests = 0

    def post(self, path: str, params: dict, signed: bool = True) -> int:
        headers = sign(BASE + path, params) if signed else {}
        resp = self.client.post(path, data=params, headers=headers, base_url=BASE)
        self.requests += 1
        self.verify(resp, path, params)
        return resp.status_code

    def verify(self, resp, path: str, params) -> None:
        status = resp.status_code
        assert status < 500, f"HTTP {status} for {path} with {params!r}"
        assert status in (200, 204, 403, 404, 405, 413), f"HTTP {status} for {path}"
        if status == 200 and resp.mimetype in ("text/xml", "application/xml"):
            body = resp.get_data(as_text=True)
            root = ET.fromstring(body)
            assert root.tag == "Response"
            if path.split("?")[0] == "/sms":
                assert len(root) == 0, body     # a text's webhook: an empty <Response/> sends no reply
                return self._no_crash()
            problems = check(body, self.voices, self.url_ok)
            assert not problems, (path, params, problems)
        self._no_crash()

    def _no_crash(self) -> None:
        crashes = [r for r in self.caplog.records if r.exc_info or r.levelname == "CRITICAL"]
        self.caplog.clear()
        assert not crashes, [f"{r.name}: {r.getMessage()}" for r in crashes]


def post_routes(app) -> list[str]:
    """The webhooks' (the console's forms are fuzzed in tests/test_console_requests.py)."""
    return sorted(r.rule for r in app.url_map.iter_rules() if "POST" in r.methods and r.endpoint != "static"
                  and not r.rule.startswith("/console/"))


def get_routes(app) -> list:
    return [r for r in app.url_map.iter_rules() if "GET" in r.methods and r.endpoint != "static"
            and not r.rule.startswith("/console/")]


@pytest.fixture
def live_calls(app, redis_client):
    """CallSids of calls in progress at many places of every line (walked, not hung up)."""
    sids = []
    seen: set = set()
    for line in app.extensions["ivr"].flows.lines:
        walk = explore(app, line, pool=known_values(app), max_states=40, hang_up=False, seen=seen)
        sids += [p.sid for p in walk.phones if not p.ended]
    assert len(sids) > 20
    return sids


NASTY = [("Digits", v) for v in ["²³⁴⁵", "١٢٣٤٥٦٧٨٩", "１２３４", "4826\x00", "\u202e1", "#", "*", "#*#", "0" * 40,
                                  "9" * 4000, "12 34", "-1", "é", ""]]
NASTY += [("SpeechResult", v) for v in ["", "x" * 3000, "🙂🙂", "\x00\x01", "uno dos tres", "1 2 3 4"]]
NASTY += [("RecordingUrl", v) for v in ["", "https://evil.example/x.mp3", "javascript:alert(1)", "x" * 3000]]
NASTY += [("DialCallStatus", v) for v in ["", "ringing", "x" * 3000]]


def test_every_place_a_call_waits_takes_every_bad_input(app, caplog, redis_client):
    """Each place of each line where a call waits for the caller, given each nasty input (keys that
    are not ASCII digits, oversized speech, a recording URL that is not Twilio's, an unknown dial
    result): 200, TwiML Twilio takes, nothing logged."""
    checker = Checker(app, caplog)
    store = app.extensions["ivr"].store
    seen: set = set()
    tried = set()
    for line in app.extensions["ivr"].flows.lines:
        walk = explore(app, line, pool=known_values(app), max_states=300, hang_up=False, seen=seen)
        waiting = {}
        for phone in walk.phones:
            state = store.load(phone.sid)[0]
            if state is not None and not phone.ended:
                waiting.setdefault(state.node, phone)
        for node, phone in waiting.items():
            for name, value in NASTY:
                branch = phone.fork(app)
                seq = store.load(branch.sid)[0].seq
                assert checker.post(url_of("/voice/step", str(seq)), {**branch.base, name: value}) == 200
            tried.add(node)
    flows = app.extensions["ivr"].flows
    waitable = {n for n, node in flows.nodes.items() if node.type not in ("action", "handover", "hangup")}
    assert len(tried) >= 0.8 * len(waitable), sorted(waitable - tried)


def test_fuzz_every_post_webhook_with_random_parameters(app, caplog, live_calls):
    routes = post_routes(app)
    assert {"/voice", "/voice/step", "/voice/status", "/voice/fallback"} <= set(routes)
    checker = Checker(app, caplog)

    @SETTINGS
    @given(path=st.sampled_from(routes), s=steps,
           fields=st.dictionaries(st.sampled_from(FIELDS), text, max_size=8),
           extra=st.dictionaries(st.text(min_size=1, max_size=10), text, max_size=3),
           sid=st.one_of(st.sampled_from(live_calls), text, st.none()))
    def run(path, s, fields, extra, sid):
        params = {"AccountSid": ACCOUNT_SID, **extra, **fields}
        if sid is not None:
            params["CallSid"] = sid
        status = checker.post(url_of(path, s), params)
        assert status == expected(app, path, params), (path, status)

    run()
    assert checker.requests >= 200


def test_fuzz_steps_of_live_calls_in_and_out_of_order(app, caplog, live_calls, redis_client):
    """Keys, speech, recordings and dial results at random steps of calls in every line; a step
    of one call sent with another call's CallSid. Each call's state stays readable."""
    checker = Checker(app, caplog)
    store = app.extensions["ivr"].store

    @SETTINGS
    @given(sid=st.sampled_from(live_calls), other=st.sampled_from(live_calls),
           offset=st.integers(-3, 2), digits=st.one_of(st.none(), text),
           speech=st.one_of(st.none(), text), recording=st.one_of(st.none(), text),
           dial=st.one_of(st.none(), text), swap=st.booleans())
    def run(sid, other, offset, digits, speech, recording, dial, swap):
        state = store.load(sid)[0]
        seq = (state.seq if state else 1) + offset
        params = {"AccountSid": ACCOUNT_SID, "CallSid": other if swap else sid, "From": "+18605550199",
                  "To": "+18002285437"}
        for name, value in (("Digits", digits), ("SpeechResult", speech), ("RecordingUrl", recording),
                            ("DialCallStatus", dial)):
            if value is not None:
                params[name] = value
        assert checker.post(url_of("/voice/step", str(seq)), params) == expected(app, "/voice/step", params)
        raw = app.extensions["ivr"].redis.get(f"ivr:call:{params['CallSid']}")
        assert raw is None or store.load(params["CallSid"])[0] is not None    # never left unreadable

    run()


CORRUPT = [b"", b"garbage", b"{}", b"[]", b"null", b'{"l": "nope", "g": "en", "n": "cc_main", "s": 1, "t": 0, "p": "",'
           b' "v": {}}', b'{"l": "callcenter", "g": "xx", "n": "zz_no_such_node", "s": 1, "t": 0, "p": "", "v": {}}',
           b'{"l": "payments", "g": "en", "n": "pay_menu", "s": 1, "t": 99, "p": "weird", "v": {"role": "payer"}}',
           b'{"l": "callcenter", "g": "en", "n": "cc_main", "s": "1", "t": null, "p": 3, "v": []}',
           b'{"l": "callcenter", "g": "en", "n": "cc_main", "s": 1, "t": 0, "p": "", "v": {}, "r": "not-b85!"}']


@pytest.mark.parametrize("raw", CORRUPT, ids=range(len(CORRUPT)))
def test_call_state_naming_an_unknown_node_or_line_or_unreadable_is_answered(app, caplog, redis_client, raw):
    checker = Checker(app, caplog)
    sid = "CA" + "d" * 32
    for s in ("1", "2", "0"):
        redis_client.set(f"ivr:call:{sid}", raw)
        params = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "From": "+18605550199", "To": "+18002285437",
                  "Digits": "1"}
        assert checker.post(url_of("/voice/step", s), params) == 200
        redis_client.set(f"ivr:call:{sid}", raw)
        assert checker.post("/voice", params) == 200


def header_value(text: str) -> bool:
    return "\n" not in text and "\r" not in text      # no HTTP server hands on others (nor takes the test client)


def test_fuzz_signatures_only_the_right_one_is_let_in(app, caplog):
    checker = Checker(app, caplog)
    routes = post_routes(app)

    @SETTINGS
    @given(path=st.sampled_from(routes), fields=st.dictionaries(st.sampled_from(FIELDS), text, max_size=5),
           signature=st.one_of(st.none(), st.text(max_size=60).filter(header_value),
                               st.binary(max_size=30).map(lambda b: b.hex())),
           tamper=st.sampled_from(["none", "url", "param", "token"]))
    def run(path, fields, signature, tamper):
        url = url_of(path, "1")
        if tamper == "url":
            headers = sign(BASE + url + "&x=1", fields)
        elif tamper == "param":
            headers = sign(BASE + url, {**fields, "Digits": str(fields.get("Digits", "")) + "1"})
        elif tamper == "token":
            headers = {"X-Twilio-Signature": RequestValidator("other").compute_signature(BASE + url, fields)}
        else:
            headers = {} if signature is None else {"X-Twilio-Signature": signature}
        resp = checker.client.post(url, data=fields, headers=headers, base_url=BASE)
        checker.verify(resp, url, fields)
        # Refused either way: for its size before its signature is checked, if it has one to check.
        signed_ = bool(headers.get("X-Twilio-Signature"))
        assert resp.status_code == (413 if signed_ and too_big(app, fields) else 403)

    run()


def test_fuzz_get_routes(app, caplog):
    """/health and whatever GET routes the app has (/audio/<name>): never an error, never a file
    that was not published, whatever the name."""
    checker = Checker(app, caplog)
    rules = get_routes(app)
    assert any(r.rule == "/health" for r in rules)

    @SETTINGS
    @given(rule=st.sampled_from(rules), value=st.one_of(
        st.text(min_size=1, max_size=80), st.sampled_from(["..", "../../etc/passwd", "%2e%2e%2fetc%2fpasswd",
                                                           "x.mp3", "AUDIO.MP3", "a" * 300 + ".mp3"])))
    def run(rule, value):
        from urllib.parse import quote

        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", quote(value, safe="")).replace(f"<string:{arg}>", quote(value, safe=""))
        resp = checker.client.get(path, base_url=BASE)
        checker.verify(resp, path, {})
        assert resp.status_code in (200, 404, 405) if rule.arguments else resp.status_code == 200
        if rule.rule == "/health":
            assert set(json.loads(resp.get_data())) >= {"status", "redis", "sdu"}
        elif rule.rule == "/metrics":                   # the test client's address is loopback: allowed
            assert resp.mimetype == "text/plain" and b"ivr_" in resp.get_data()
        elif resp.status_code == 200:
            assert resp.mimetype.startswith("audio/")

    run()
