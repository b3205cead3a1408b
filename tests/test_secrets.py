"""No log line, no Redis key or value and no file the system writes holds a PIN, a full case number, an
inmate number or a full caller phone number.

Known secrets go through every line (tests/walk.py explores each; scripted calls make sure the paths
that matter most ran: a payer and a payee identified and hearing every figure, wrong PINs up to the
locks, an inmate's request with a recording, a town lookup, a staff sign-in), the background worker
handles what they queued, and then everything logged (root logger at DEBUG), every Redis key and
value of every type, and every file under DATA_DIR is scanned. Sealed values (AES-GCM or older Fernet tokens) and
HMAC tags are not readable, so they are left out of the scan, but every sealed value is opened with
the app's key to check that no PIN was ever kept, even sealed.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import responses

from ivr.callflow.simphone import Phone
from ivr.jobs.worker import JobContext, Worker
from ivr.sealing import TOKEN as SEALED
from tests.sdu_faults import FaultySDU
from tests.walk import (
    CALLER,
    CASE,
    INMATE,
    PAYEE_PIN,
    PAYER_PIN,
    STAFF_ID,
    STAFF_PIN,
    WRONG_PIN,
    explore,
    known_values,
    line_number,
    snapshot,
    state_of,
)

OTHER_CASE = "901234567"     # another case of the stub: wrong PINs for it count against the caller
SEP = r"[\s,.\-()/]*"        # how digits may be written apart: "4 8 2 6", "860-555-1234", "(860) 555"
HEX = re.compile(r"\b[0-9a-f]{16,}\b")
SIDS = re.compile(r"\b(CA|RE|AC)[0-9a-f]{32}\b")
# How the logs name a call: the last six hex digits of its random SID, which may hold a PIN's digits by
# chance next to a letter (all digits, they are one longer number, which the patterns already pass over).
SID_ENDS = re.compile(r"\bcalls? (?=[0-9]*[a-f])[0-9a-f]{6}\b")


def pattern(digits: str, prefix: str = "") -> re.Pattern:
    """The digits in order, maybe written apart, not part of a longer number (but for `prefix`,
    e.g. a phone number's +1)."""
    body = SEP.join(digits)
    after = rf"(?<={prefix})|" if prefix else ""
    return re.compile(rf"(?:{after}(?<!\d)(?<!\d[\s,.\-])){body}(?![\s,.\-]?\d)")


SECRETS = {
    "case number": pattern(CASE),
    "other case number": pattern(OTHER_CASE),
    "payer PIN": pattern(PAYER_PIN),
    "payee PIN": pattern(PAYEE_PIN),
    "wrong PIN": pattern(WRONG_PIN),
    "inmate number": pattern(INMATE),
    "caller number": pattern(CALLER[2:], prefix=r"\+1"),
    "staff PIN": pattern(STAFF_PIN),
}
NEVER_KEPT = {"payer PIN": PAYER_PIN, "payee PIN": PAYEE_PIN, "wrong PIN": WRONG_PIN, "staff PIN": STAFF_PIN}


def readable(text: str) -> str:
    """What a person with the data could read: sealed tokens, HMAC tags and Twilio SIDs removed."""
    return HEX.sub(" ", SIDS.sub(" ", SID_ENDS.sub(" ", SEALED.sub(" ", text))))


def leaks(text: str) -> list[str]:
    plain = readable(text)
    return [name for name, rx in SECRETS.items() if rx.search(plain)]


def flatten(value) -> list[str]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return [value] + (flatten(parsed) if isinstance(parsed, (dict, list)) else [])
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in flatten(k) + flatten(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in flatten(v)]
    return [str(value)]


@pytest.fixture
def sdu():
    s = FaultySDU()
    yield s
    s.stop()


def test_the_checker_finds_secrets_however_they_are_written():
    assert leaks(f"case {CASE}") == ["case number"]
    assert leaks("you entered 4 5 6, 7 8 9, 1 2 3") == ["case number"]
    assert leaks("from (860) 555-1234") == ["caller number"]
    assert leaks(f"from {CALLER}") == ["caller number"]
    assert leaks(f"pin={PAYER_PIN}") == ["payer PIN"]
    assert leaks(f"call 6b{PAYER_PIN} ended") == [] and leaks(f"call 6b{PAYER_PIN}: pin {PAYER_PIN}") == ["payer PIN"]
    assert leaks(f"call {STAFF_PIN} ended") == ["staff PIN"]
    assert leaks(f"number {INMATE}.") == ["inmate number"]
    assert leaks(f"case *******{CASE[-2:]} from +1********34, ref 1{PAYER_PIN}9 at 10:48:26") == []
    assert leaks("gAAAAABk" + CASE + "xyz") == []          # inside a sealed token: not readable


def test_no_log_line_redis_value_or_file_holds_a_secret(make_app, sdu, caplog, tmp_path, clock):
    caplog.set_level(logging.DEBUG)
    app = make_app(SDU_BASE_URL=sdu.url)
    rt = app.extensions["ivr"]
    pool = known_values(app) + [OTHER_CASE]

    # Scripted calls: the paths that must have run, whatever the walks below reach.
    phone = lambda line: Phone(app, to=line_number(app, line), caller=CALLER).start()  # noqa: E731
    payer = phone("payments")
    for key in ("1", CASE, "1", PAYER_PIN, "1", "9", "2", "9", "3", "9", "4", "*", "9"):
        payer.press(key)
    assert state_of(app, payer.sid).vars.get("role") == "payer"
    payee = phone("payments")
    for key in ("2", CASE, "1", PAYEE_PIN, "1", "9", "2", "9", "3", "9", "4", "9"):
        payee.press(key)
    assert state_of(app, payee.sid).vars.get("role") == "payee"
    assert "dollars" in payer.said and "dólares" in payee.said
    # Wrong PINs for two cases from one number, call after call, until the caller number is locked.
    for case in (CASE, CASE, OTHER_CASE, OTHER_CASE, OTHER_CASE):
        wrong = phone("payments").press("1")
        for key in (case, "1", WRONG_PIN, WRONG_PIN, WRONG_PIN):
            if state_of(app, wrong.sid).node in ("pay_locked", "pay_ident_failed"):
                break
            wrong.press(key)
    assert state_of(app, phone("payments").press("1").sid).node == "pay_locked"

    inmate = phone("callcenter")
    keys_to_intake = ["1", "4", "1", "1", INMATE, "1", "say cheshire", "1", CASE, "1", "record"]
    for key in keys_to_intake:
        if inmate.ended:
            break
        inmate.press(key)
    requests_store = rt.services.requests
    if requests_store is not None:
        assert requests_store.refs(), "the intake stored no request"

    town = phone("callcenter")
    for key in ("1", "5", "1", "06103", "1", "dial:busy", "1"):
        if not town.ended:
            town.press(key)
    assert town.dialed, "the town lookup did not reach a transfer"

    if rt.services.staffdb is not None:
        staff = phone("staff")
        for key in ("1", STAFF_ID, STAFF_PIN):
            staff.press(key)
        assert state_of(app, staff.sid).node == rt.flows.lines["staff"].home

    # Every line walked with the same secrets, from the same caller number, calls left open.
    seen: set = set()
    for line in rt.flows.lines:
        explore(app, line, pool=pool, caller=CALLER, max_states=250, hang_up=False, seen=seen, skip=misplaced)
    scan(app, caplog, tmp_path, "while the calls are in progress")

    # The worker does what the calls queued (recordings fetched from a fake Twilio).
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(sdu.url)
        mock.add(responses.GET, re.compile(r"https://api\.twilio\.com/.*"), body=b"ID3" + b"\0" * 2048,
                 content_type="audio/mpeg")
        worker = Worker(JobContext(app.config, rt.redis))
        for _ in range(3):
            worker.run_once(block_ms=None)
    for key in rt.redis.keys("ivr:call:*"):        # every call ends
        Phone(app, to="+18002285437", sid=key.decode().rsplit(":", 1)[1]).hang_up()
    scan(app, caplog, tmp_path, "after the calls and the jobs")


# Where each secret is asked for (a word of the asking prompt's id). The walks key a secret only
# there: a PIN keyed as a date is read back as a date, rightly.
ASKED_BY = {CASE: "case", OTHER_CASE: "case", PAYER_PIN: "pin", PAYEE_PIN: "pin", WRONG_PIN: "pin",
            INMATE: "number", STAFF_PIN: "pin"}


def misplaced(node, answer: str) -> bool:
    kind = ASKED_BY.get(answer.rstrip("#"))
    prompts = node.get("prompt") or []
    prompts = [prompts] if isinstance(prompts, str) else prompts
    return kind is not None and not any(kind in pid.split(".") for pid in prompts)


def scan(app, caplog, tmp_path, when: str) -> None:
    found = []
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        for name in leaks(text):
            found.append(f"log {record.name} {record.levelname}: {name}: {text[:200]!r}")
    rt = app.extensions["ivr"]
    sealer = rt.services.sealer
    stored = snapshot(rt.redis)
    assert stored, "nothing in Redis to scan?"
    for key, value in stored.items():
        for text in flatten(key) + flatten(value):
            for name in leaks(text):
                found.append(f"redis {key.decode()!r}: {name}: {readable(text)[:200]!r}")
            for token in SEALED.findall(text):
                opened = sealer.unseal_bytes(token) or b""
                try:
                    opened = __import__("zlib").decompress(opened)
                except Exception:
                    pass
                for name, pin in NEVER_KEPT.items():
                    if pattern(pin).search(opened.decode("utf-8", "replace")):
                        found.append(f"redis {key.decode()!r}: a sealed value holds the {name}")
    data_dir = app.config["DATA_DIR"]
    for path in (p for p in data_dir.rglob("*") if p.is_file()) if data_dir.exists() else []:
        raw = path.read_bytes()
        if raw.startswith(b"ID3"):
            continue                                   # a recording
        for name in leaks(raw.decode("utf-8", "replace")):
            found.append(f"file {path.relative_to(data_dir)}: {name}")
    assert not found, f"{when}:\n" + "\n".join(sorted(set(found))[:30])


@pytest.mark.parametrize("where", ["log", "redis hash", "redis stream", "sealed PIN", "file"])
def test_the_scan_finds_a_planted_secret(app, caplog, tmp_path, where):
    caplog.set_level(logging.DEBUG)
    rdb = app.extensions["ivr"].redis
    rdb.set("ivr:test:ok", "nothing to see")
    if where == "log":
        logging.getLogger("ivr.test").debug("caller %s", CALLER)
    elif where == "redis hash":
        rdb.hset("ivr:req:1", "inmate", INMATE)
    elif where == "redis stream":
        rdb.xadd("ivr:jobs", {"payload": json.dumps({"case": CASE})})
    elif where == "sealed PIN":
        rdb.set("ivr:x", app.extensions["ivr"].services.sealer.seal(f"pin {PAYER_PIN}"))
    else:
        data_dir = app.config["DATA_DIR"]
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "requests.jsonl").write_text(json.dumps({"inmate": INMATE}))
    with pytest.raises(AssertionError):
        scan(app, caplog, tmp_path, "planted")
