"""Call analytics (issue 16): a known set of calls through the simulated phone, folded by the worker,
counted exactly in `ivr report --json`; repeats count once; a call without its status callback is
closed by the sweep; nothing personal is kept."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from ivr.callflow.calllog import STREAM
from ivr.callflow.simphone import Phone
from ivr.cli.main import main
from ivr.domain.callstats import ACTIVE, OPEN, Folder
from tests.conftest import LINES, TEST_REDIS_URL, TZ

DAY = ["--since", "2026-11-24", "--until", "2026-11-24"]
CALLER = "+18605550199"
INMATE = "1234567"
CASE, PIN, WRONG_PIN = "123456789", "1234", "9999"
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=TZ)
NO_TRANSFER = {"total": 0, "answered": 0, "busy": 0, "no_answer": 0, "failed": 0}


@pytest.fixture
def cli(monkeypatch, capsys, redis_client):
    """`ivr report ...` as the operator runs it: (exit code, stdout, stderr)."""
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["report", *args])
        out, err = capsys.readouterr()
        return rc, out, err
    return run


@pytest.fixture
def report(cli):
    """`ivr report ... --json`, parsed."""
    def run(*args: str) -> dict:
        rc, out, err = cli(*args, "--json")
        assert rc == 0, err
        return json.loads(out)
    return run


def fold(app, now: datetime = NOON) -> tuple[int, int]:
    """The worker's periodic task (ivr/domain/callstats.py: fold, then sweep at `now`)."""
    rt = app.extensions["ivr"]
    return Folder(rt.redis, rt.config).run(now=now.timestamp())


def seven_calls(call, clock) -> None:
    """Seven calls whose every count is known (the comment over each says what it does)."""
    # 1. Main menu 1, payments menu 2: the withholding answer; hangs up there. self_service.
    call("callcenter", ["-", "1", "2"])
    # 2. Chooses Spanish, then hangs up at the main menu without a choice. abandoned at cc_main.
    call("callcenter", ["2"])
    # 3. 0 at the main menu: the agents, who answer. transferred (agents: answered; why: zero).
    call("callcenter", ["-", "0"], dial_status="completed")
    # 4. Offices, Hartford area, Hartford: busy; hangs up at the options after. transferred (hartford: busy).
    call("callcenter", ["-", "5", "2", "1", "dial:busy"])
    # 5. Prison path: the inmate number confirmed (the request is stored), hangs up at the next question.
    call("callcenter", ["-", "4", "1", "1", f"{INMATE}#", "1"])
    # 6. Payments: a wrong PIN, then the right one, the balance; hangs up. self_service on payments.
    call("payments", ["-", f"{CASE}#", "1", f"{WRONG_PIN}#", f"{PIN}#", "3"])
    # 7. 8 pm (agents closed): silent three times at the main menu; the line gives up and hangs up.
    clock.set("2026-11-24T20:00")
    call("callcenter", ["-", "-", "-", "-"])
    clock.set("2026-11-24T10:00")


def test_seven_known_calls_are_counted_exactly_in_the_report(app, call, clock, report):
    seven_calls(call, clock)
    assert report(*DAY)["calls"] == {"callcenter": 0, "payments": 0, "staff": 0}   # not folded yet
    fold(app)
    got = report(*DAY)
    # The contract's keys (../shared/CONTRACT.md), every count.
    assert got["calls"] == {"callcenter": 6, "payments": 1, "staff": 0}
    assert got["outcomes"] == {"self_service": 2, "transferred": 2, "abandoned": 1, "request_left": 1,
                               "ended_by_system": 1}
    assert got["transfers"] == {"agents": {**NO_TRANSFER, "total": 1, "answered": 1},
                                "hartford": {**NO_TRANSFER, "total": 1, "busy": 1}}
    assert got["abandoned_at"] == {"cc_main": 1}
    assert got["identification"] == {"success": 1, "wrong_pin": 1, "locked": 0, "sdu_down": 0}
    # The rest of the figures.
    assert got["languages"] == {"en": 6, "es": 1}
    assert got["after_hours"] == 1
    assert got["transfers_closed"] == {}
    assert got["transfer_reasons"] == {"menu": {"answered": 0, "busy": 1, "no_answer": 0, "failed": 0, "closed": 0},
                                       "zero": {"answered": 1, "busy": 0, "no_answer": 0, "failed": 0, "closed": 0}}
    assert got["no_input"] == {"cc_main": 3}          # a language node's silence is the default, not no input
    assert got["wrong_key"] == {}
    assert got["gave_up_at"] == {"cc_main": 1}
    assert got["visits"]["cc_main"] == 6 and got["visits"]["pay_pin"] == 2
    assert got["answers_heard"] == {"faq_withholding": 1, "inm_start": 1, "pay_balance": 1}
    assert got["ended_at"] == {"cc_main": 2, "cc_agents": 1, "faq_withholding": 1, "inm_facility": 1,
                               "pay_balance": 1, "xfer_hartford": 1}
    assert got["requests"] == 1
    assert got["sdu"] == {"lookups": 3, "failures": 0}       # two PIN checks and the summary
    assert {h: n for h, n in got["by_hour"].items() if n} == {"10": 6, "20": 1}
    assert {d: n for d, n in got["by_weekday"].items() if n} == {"tue": 7}
    assert got["seconds"]["duration_median"] == 60           # the simulated phone's CallDuration
    assert got["closed_by_sweep"] == 0
    # One line; other lines' calls are left out.
    payments = report(*DAY, "--line", "payments")
    assert payments["calls"] == {"callcenter": 0, "payments": 1, "staff": 0}
    assert payments["outcomes"]["self_service"] == 1 and sum(payments["outcomes"].values()) == 1
    assert payments["identification"]["wrong_pin"] == 1 and payments["transfers"] == {}
    # Other days have none of it; the day before and after, in Connecticut's time.
    assert sum(report("--since", "2026-11-23", "--until", "2026-11-23")["calls"].values()) == 0
    assert sum(report("--since", "2026-11-25", "--until", "2026-11-30")["calls"].values()) == 0
    assert sum(report("--since", "2026-11-01", "--until", "2026-11-24")["calls"].values()) == 7


def test_the_text_report_gives_the_figures_with_rates(app, call, clock, cli):
    seven_calls(call, clock)
    fold(app)
    rc, out, _ = cli(*DAY)
    assert rc == 0
    assert "all lines: 7" in out
    assert re.search(r"self_service\s+2 \(29%\)", out)
    assert "containment: 29% (self_service of all calls)" in out
    assert re.search(r"hartford\s+1\s+0\s+1\s+0\s+0\s+0", out)
    assert "success 1 (50%), wrong PIN 1" in out


def test_a_call_is_counted_once_whatever_twilio_repeats(app, redis_client, report):
    rt = app.extensions["ivr"]
    phone = Phone(app, to=LINES["callcenter"]).start().press("-")
    fold(app)                                    # a fold in the middle of a call: it goes on from there
    phone.press("1")
    status, body = phone.repost()                # Twilio retries the step: the same answer, no new entry
    assert status == 200 and body == phone.documents[-1]
    # A step's entry sent twice (a write sent again after a broken connection, by a retrying client).
    (_, fields), = redis_client.xrevrange(STREAM, count=1)
    redis_client.xadd(STREAM, fields)
    phone.press("2")
    phone.hang_up()
    phone.hang_up()                              # the status callback twice
    fold(app)
    fold(app)                                    # and the worker's fold again: nothing new
    got = report(*DAY)
    assert got["calls"]["callcenter"] == 1
    assert got["outcomes"]["self_service"] == 1 and sum(got["outcomes"].values()) == 1
    assert got["visits"]["cc_pay_menu"] == 1 and got["visits"]["faq_withholding"] == 1
    assert got["answers_heard"] == {"faq_withholding": 1}
    assert redis_client.hlen(OPEN) == 0 and redis_client.zcard(ACTIVE) == 0
    assert rt.redis.hgetall("ivr:an:totals") == {b"callcenter|self_service": b"1"}


def test_a_call_whose_status_callback_never_comes_is_closed_by_the_sweep(app, clock, redis_client, report):
    phone = Phone(app, to=LINES["callcenter"]).start().press("-")    # at the main menu; no callback comes
    fold(app)
    assert sum(report(*DAY)["calls"].values()) == 0 and redis_client.zcard(ACTIVE) == 1
    ttl = app.config["CALL_TTL"]
    fold(app, now=datetime(2026, 11, 24, 10, 0, tzinfo=TZ) + timedelta(seconds=ttl - 60))
    assert sum(report(*DAY)["calls"].values()) == 0          # its state may still be there: left open
    assert fold(app, now=datetime(2026, 11, 24, 10, 0, tzinfo=TZ) + timedelta(seconds=ttl + 120)) == (0, 1)
    got = report(*DAY)
    assert got["calls"]["callcenter"] == 1 and got["outcomes"]["abandoned"] == 1
    assert got["abandoned_at"] == {"cc_main": 1} and got["closed_by_sweep"] == 1
    # The caller is somehow still there: their state gone, the line starts again ("lost"), then the
    # callback, hours late. Still the one call.
    redis_client.delete(f"ivr:call:{phone.sid}")
    phone.press("1")
    phone.hang_up()
    fold(app, now=NOON + timedelta(days=1))
    got = report(*DAY)
    assert got["calls"]["callcenter"] == 1 and got["outcomes"]["abandoned"] == 1


def test_a_fold_that_fails_before_its_transaction_leaves_nothing_half_counted(app, call, clock, report,
                                                                            monkeypatch):
    call("callcenter", ["-", "1", "2"])
    folder = Folder(app.extensions["ivr"].redis, app.config)

    def crash(*args, **kwargs):
        raise RuntimeError("worker killed")
    with monkeypatch.context() as patched, pytest.raises(RuntimeError):
        patched.setattr(Folder, "_write", crash)      # mid-transaction: MULTI sent, EXEC never
        folder.fold_batch()
    assert sum(report(*DAY)["calls"].values()) == 0
    fold(app)
    assert report(*DAY)["calls"]["callcenter"] == 1


def test_nothing_personal_is_kept_for_analytics(app, call, clock, redis_client):
    phones = [call("callcenter", ["-", "4", "1", "1", f"{INMATE}#", "1"], caller=CALLER),
              call("payments", ["-", f"{CASE}#", "1", f"{WRONG_PIN}#", f"{PIN}#", "3"], caller=CALLER)]
    raw = " ".join(fields[b"d"].decode() for _, fields in redis_client.xrange(STREAM))
    fold(app)
    kept = raw + " ".join(str(redis_client.hgetall(k)) for k in redis_client.keys("ivr:an:*")
                          if redis_client.type(k) == b"hash")
    for secret in (INMATE, CASE, CALLER, CALLER[2:], *(p.sid for p in phones), *(p.sid[2:] for p in phones)):
        assert secret not in kept
    for entry in redis_client.xrange(STREAM):
        _, _, _, events = json.loads(entry[1][b"d"])
        values = {v for e in events for v in e[1:] if isinstance(v, str)}
        assert not values & {PIN, WRONG_PIN, INMATE + "#", CASE + "#"}


@pytest.mark.parametrize("args, message", [
    (["--since", "2026-13-01"], "--since must be a date like 2026-11-24, not '2026-13-01'"),
    (["--until", "yesterday"], "--until must be a date like 2026-11-24, not 'yesterday'"),
    (["--until", "20261124"], "--until must be a date like 2026-11-24, not '20261124'"),
    (["--since", "2026-11-25", "--until", "2026-11-24"], "--since 2026-11-25 is after --until 2026-11-24"),
    (["--line", "fax"], "--line must be one of callcenter, payments, staff, not 'fax'"),
])
def test_a_bad_argument_is_one_line_and_a_failing_exit(cli, args, message):
    rc, out, err = cli(*args)
    assert rc != 0 and out == ""
    assert err == f"ivr report: {message}\n"


def test_the_worker_folds_the_calls_and_says_it_is_alive(app, call, clock, redis_client, report):
    from ivr.jobs import analytics, worker  # noqa: F401 - registers the fold with the worker
    call("callcenter", ["-", "1", "2"])
    w = worker.Worker(worker.JobContext(app.config, redis_client))
    rounds = iter([False, True])
    w.run(stop=lambda: next(rounds), block_ms=10)          # one round of the loop: the periodic tasks, a read
    assert report(*DAY)["outcomes"]["self_service"] == 1
    assert abs(int(redis_client.get(worker.HEARTBEAT)) - __import__("time").time()) < 5


def test_a_number_noted_by_mistake_is_left_out():
    from ivr.callflow.calllog import CallLog
    log = CallLog()
    log.note("x", "1234")                 # a PIN, as a name
    log.note("x", 4821)                   # a PIN, as a number
    log.note("x", "case-123456789")
    log.note("x", "+18605550199")
    log.note("x", "k1")
    log.note("n", "xfer_central-processing")
    assert log.events == [["x", "?"], ["x", "?"], ["x", "?"], ["x", "?"], ["x", "k1"], ["n", "xfer_central-processing"]]


def test_ivr_worker_once_folds_what_is_there_for_the_report(app, call, clock, report, monkeypatch, capsys):
    call("callcenter", ["-", "0"])
    monkeypatch.setenv("IVR_ENV", "test")
    assert main(["worker", "--once"]) == 0
    assert report(*DAY)["transfers"] == {"agents": {**NO_TRANSFER, "total": 1, "answered": 1}}


def test_a_status_callback_of_a_call_still_going_ends_nothing(app, report):
    phone = Phone(app, to=LINES["callcenter"]).start().press("-")
    phone.transport.post("/voice/status", {**phone.base, "CallStatus": "in-progress"})
    fold(app)
    assert sum(report(*DAY)["calls"].values()) == 0          # still open: its end is yet to come
    phone.hang_up()
    fold(app)
    assert report(*DAY)["calls"]["callcenter"] == 1
