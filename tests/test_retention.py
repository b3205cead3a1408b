"""Retention: what is kept past its period is purged (requests, callers' messages, unused prompt audio,
dead letters), by the worker once an hour or by `ivr purge`; open, taken and held requests never are."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import responses

from ivr import settings
from ivr.callflow.simphone import Phone, Transport
from ivr.cli.main import main
from ivr.domain.published import Library, NothingToRollBack, Who, audio_dir
from ivr.domain.requests import RequestError, RequestStore
from ivr.jobs import retention
from ivr.jobs import worker as jobs
from ivr.sealing import Sealer
from ivr.settings import DEV_AUTH_TOKEN, DEV_SECRET_KEY
from tests.conftest import LINES, TEST_REDIS_URL
from tests.console_helpers import signed_in
from tests.walk import snapshot, spoken_ref

DAY = timedelta(days=1)
AUDIO = b"ID3\x03\x00fake mp3 bytes" * 20
ANA = Who("1001", "Ana Ruiz")
YORK = "+19595550113"                    # a facility's caller ID (config/facilities.yaml)


def sid(n: int) -> str:
    return f"RE{n:032x}"


@pytest.fixture
def config(tmp_path):
    return settings.from_env({"IVR_DATA_DIR": str(tmp_path / "var")})


@pytest.fixture
def store(redis_client, clock):
    return RequestStore(redis_client, Sealer(DEV_SECRET_KEY), clock=clock)


def request_with_message(store, config, n: int, sid_: str = "CA1") -> tuple[str, Path]:
    """A request whose message the worker has downloaded (file in DATA_DIR/requests/REF/)."""
    ref = store.open_request(sid_ + str(n), "7654321", lang="en", source="main menu", caller="+18605550177")
    folder = Path(config["DATA_DIR"]) / "requests" / ref
    folder.mkdir(parents=True)
    path = folder / f"{sid(n)}.mp3"
    path.write_bytes(AUDIO)
    store.update(ref, "recording downloaded", by="worker", detail=str(path), recording_file=str(path))
    return ref, path


def keys_naming(redis_client, ref: str) -> list[bytes]:
    return [k for k in redis_client.keys("*") if ref.encode() in k]


def test_a_done_request_is_purged_with_its_message_file_and_audit_trail_once_past_retention(
        make_app, redis_client, clock):
    app = make_app()
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"], caller=YORK)
    c = phone.place(["-", "1", "7654321#", "1", "*", "record"])
    ref, url = spoken_ref(c.said), next(e.text for e in c.events if e.kind == "record")
    with responses.RequestsMock() as twilio:
        twilio.get(url + ".mp3", body=AUDIO)
        jobs.Worker(jobs.JobContext(app.config, redis_client)).run_once()
    store = app.extensions["ivr"].services.requests
    file = Path(store.get(ref)["recording_file"])
    assert file.read_bytes() == AUDIO
    store.done(ref, "A. Ruiz")

    clock.now += 365 * DAY - timedelta(minutes=1)        # the message's period not over yet
    assert retention.purge(redis_client, app.config, clock()).messages == 0
    assert file.exists()
    clock.now += timedelta(minutes=2)                     # the message goes; the request stays
    assert retention.purge(redis_client, app.config, clock()).messages == 1
    assert not file.exists() and not file.parent.exists()
    req = store.get(ref)
    assert req["status"] == "done" and req["recording_file"] == "" and req["inmate"] == "7654321"
    assert store.history(ref)[-1].action == "message deleted (retention period)"

    clock.now += (1095 - 365) * DAY                       # 3 years after done: the request and its history
    report = retention.purge(redis_client, app.config, clock())
    assert report.requests == 1
    assert store.get(ref) is None and store.history(ref) == []
    assert keys_naming(redis_client, ref) == []
    assert ref not in store.refs(("open", "taken", "done"))
    assert not (Path(app.config["DATA_DIR"]) / "requests" / ref).exists()
    # Running it again finds nothing more: idempotent.
    again = retention.purge(redis_client, app.config, clock())
    assert (again.requests, again.messages) == (0, 0)


def test_open_taken_and_held_requests_are_never_purged(store, config, redis_client, clock):
    opened, opened_file = request_with_message(store, config, 1)
    taken, taken_file = request_with_message(store, config, 2)
    store.take(taken, "ana")
    held, held_file = request_with_message(store, config, 3)
    store.done(held, "ana")
    store.hold(held, "bob", "subpoena 2026-CV-114")
    done, done_file = request_with_message(store, config, 4)
    store.done(done, "ana")

    clock.now += 20 * 365 * DAY
    report = retention.purge(redis_client, config, clock())
    assert (report.requests, report.held) == (1, 1)
    assert store.get(done) is None and not done_file.exists()
    for ref, file in ((opened, opened_file), (taken, taken_file), (held, held_file)):
        assert store.get(ref) is not None and file.read_bytes() == AUDIO
        assert store.history(ref)[-1].action != "message deleted (retention period)"

    # Released, the held request goes at the next run (its period ended long ago).
    store.release(held, "bob")
    assert retention.purge(redis_client, config, clock()).requests == 1
    assert store.get(held) is None and not held_file.exists()


def test_a_purged_reference_is_never_given_to_a_new_request(redis_client, clock, config):
    refs = iter(["111111", "111111", "222222"])
    store = RequestStore(redis_client, Sealer(DEV_SECRET_KEY), clock=clock, new_ref=lambda: next(refs))
    first = store.open_request("CA1", "7654321", lang="en", source="main menu")
    store.done(first, "ana")
    clock.now += 1096 * DAY
    retention.purge(redis_client, config, clock())
    assert store.open_request("CA2", "1234567", lang="en", source="main menu") == "222222"
    with pytest.raises(RequestError, match="111111 was deleted on .* at the end of its retention period"):
        store.hold("111111", "ana")


def test_hold_and_release_are_audited_and_show_tells_hold_and_when_it_may_be_purged(staff, store, config):
    ref, _ = request_with_message(store, config, 1)
    out = staff("show", ref)[1]
    assert "legal hold:          none" in out
    assert "retention:           kept while open or taken; deleted 1095 days after it is done" in out
    store.done(ref, "ana")                                # 2026-11-24 10:00 in Connecticut

    rc, out, err = staff("hold", ref, "--by", "4003", "--reason", "subpoena 2026-CV-114")
    assert (rc, err) == (0, "") and out == f"request {ref}: on legal hold (by 4003, B. Chen)\n"
    out = staff("show", ref)[1]
    assert re.search(r"legal hold: +yes, since \d{4}-\d\d-\d\d \d\d:\d\d by 4003 B\. Chen: subpoena 2026-CV-114", out)
    assert "retention:           on legal hold: kept until the hold is released" in out
    assert re.search(r"legal hold placed: subpoena 2026-CV-114", out)
    rc, out, _ = staff("hold", ref, "--by", "4003")
    assert rc == 0 and "already on legal hold" in out
    assert [e.action for e in store.history(ref)].count("legal hold placed") == 1

    rc, out, err = staff("release", ref, "--by", "4003")
    assert (rc, err) == (0, "") and out == f"request {ref}: legal hold released (by 4003, B. Chen)\n"
    out = staff("show", ref)[1]
    assert "legal hold:          none" in out
    assert ("retention:           message deleted from 2027-11-24, "
            "the request and its history from 2029-11-23") in out
    trail = [(e.by, e.action) for e in store.history(ref)]
    assert trail[-2:] == [("4003", "legal hold placed"), ("4003", "legal hold released")]


@pytest.mark.parametrize("argv, message", [
    (["hold", "12345", "--by", "4003"], "'12345' is not a request reference (6 digits)"),
    (["hold", "999999", "--by", "4003"], "no request 999999"),
    (["release", "abcdef", "--by", "4003"], "'abcdef' is not a request reference (6 digits)"),
    (["hold", "{ref}", "--by", "<script>"], "a staff ID is 3 to 10 digits"),
    (["hold", "{ref}", "--by", "4999"], "--by: no staff account 4999"),
    (["hold", "{ref}", "--by", "4003", "--reason", "x" * 201], "--reason is at most 200 characters"),
    (["release", "{ref}", "--by", "4003"], "request {ref} is not on legal hold"),
])
def test_hold_and_release_refuse_bad_input_with_one_line_and_exit_1(staff, store, argv, message):
    ref = store.open_request("CA1", "7654321", lang="en", source="main menu")
    before = store.history(ref)
    rc, out, err = staff(*[a.format(ref=ref) for a in argv])
    assert rc == 1 and out == ""
    assert err.startswith("ivr requests: " + message.format(ref=ref)) and err.count("\n") == 1
    assert store.history(ref) == before


def test_prompt_audio_live_or_the_rollback_target_is_kept_and_older_versions_go(redis_client, config, clock):
    lib = Library(redis_client)
    folder = audio_dir(config)
    folder.mkdir(parents=True)
    for n in range(1, 8):
        (folder / f"{sid(n)}.mp3").write_bytes(AUDIO)
    start = clock()
    lib.publish("cc.welcome", "en", f"{sid(1)}.mp3", ANA, start)
    lib.publish("cc.welcome", "en", f"{sid(2)}.mp3", ANA, start)
    lib.publish("cc.welcome", "en", f"{sid(3)}.mp3", ANA, start)              # live; v2 the rollback target
    lib.publish("cc.main.intro", "es", f"{sid(4)}.mp3", ANA, start)           # live, never replaced
    lib.set_announcement(["callcenter"], "en", f"{sid(5)}.mp3", None, ANA, start)
    lib.clear_announcement(["callcenter"], "en", ANA, start)                  # off the line since `start`
    lib.set_announcement(["payments"], "en", f"{sid(6)}.mp3", None, ANA, start)     # still on the line
    later = start + 170 * DAY
    lib.publish("cc.goodbye", "en", f"{sid(7)}.mp3", ANA, later)
    lib.publish("cc.goodbye", "en", f"{sid(8)}.mp3", ANA, later)
    lib.publish("cc.goodbye", "en", f"{sid(9)}.mp3", ANA, later)              # v1 unused for 10 days only

    clock.now = start + 180 * DAY + timedelta(minutes=1)
    # v1 of cc.welcome and the cleared announcement go
    assert retention.purge(redis_client, config, clock()).prompt_audio == 2
    gone = {f"{sid(1)}.mp3", f"{sid(5)}.mp3"}
    assert {p.name for p in folder.iterdir()} == {f"{sid(n)}.mp3" for n in range(1, 8)} - gone
    assert not any(lib.is_published_file(f) for f in gone)
    assert lib.is_published_file(f"{sid(2)}.mp3") and lib.is_published_file(f"{sid(6)}.mp3")
    # Rolling back still works: v3 -> v2, whose file is there. Further back, v1 is gone: said so.
    assert lib.rollback("cc.welcome", "en", ANA, clock()) == 2
    with pytest.raises(NothingToRollBack, match="version 1 was deleted at the end of its retention period"):
        lib.rollback("cc.welcome", "en", ANA, clock())
    assert lib.published("cc.welcome", "en") == {"v": 2, "file": f"{sid(2)}.mp3"}


def test_audio_files_no_version_names_are_purged_after_the_period_by_their_age(redis_client, config, clock):
    """A download whose publish never happened (a job given up) leaves a file nothing points at."""
    import os

    folder = audio_dir(config)
    folder.mkdir(parents=True)
    stray, fresh = folder / f"{sid(1)}.mp3", folder / f"{sid(2)}.mp3"
    for f in (stray, fresh):
        f.write_bytes(AUDIO)
    old = (clock() - 181 * DAY).timestamp()
    os.utime(stray, (old, old))
    assert retention.purge(redis_client, config, clock()).prompt_audio == 1
    assert not stray.exists() and fresh.exists()       # a download about to be published is not touched


def test_dead_letters_older_than_their_period_are_purged(redis_client, config, clock):
    now_ms = int(clock().timestamp() * 1000)
    for age_days in (200, 91, 89, 1):
        redis_client.xadd(jobs.DEAD, {"kind": "x", "payload": "{}", "reason": "test"},
                          id=f"{now_ms - age_days * 86_400_000}-0")
    assert retention.purge(redis_client, config, clock()).dead_letters == 2
    assert redis_client.xlen(jobs.DEAD) == 2


@pytest.fixture
def purge_cli(monkeypatch, capsys, redis_client, clock, tmp_path):
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("IVR_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(retention, "clock", clock)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["purge", *args])
        out, err = capsys.readouterr()
        return rc, out, err
    return run


def everything_on_disk(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_dry_run_changes_nothing_and_says_what_would_go_without_personal_data(
        purge_cli, store, redis_client, clock, tmp_path):
    config = settings.from_env({"IVR_DATA_DIR": str(tmp_path / "var")})
    old, _ = request_with_message(store, config, 1)
    store.done(old, "ana")
    held, _ = request_with_message(store, config, 2)
    store.done(held, "ana")
    store.hold(held, "bob")
    redis_client.xadd(jobs.DEAD, {"kind": "x", "payload": "{}"}, id=f"{int(clock().timestamp() * 1000)}-0")
    clock.now += 400 * DAY
    newer, newer_file = request_with_message(store, config, 3)
    store.done(newer, "ana")
    clock.now += 700 * DAY           # `old` and `held` done 1100 days ago, `newer` 700 days ago
    before_redis, before_disk = snapshot(redis_client), everything_on_disk(tmp_path)

    rc, out, err = purge_cli("--dry-run")
    assert (rc, err) == (0, "")
    assert snapshot(redis_client) == before_redis and everything_on_disk(tmp_path) == before_disk
    assert out.splitlines()[0] == "would delete (dry run: nothing was changed):"
    for kind, count in (("requests", 1), ("messages", 1), ("prompt audio", 0), ("dead letters", 1),
                        ("on legal hold", 1)):
        assert re.search(rf"^{kind} +{count} ", out, re.M), (kind, out)
    for secret in ("7654321", "+18605550177", "8605550177", old, newer, held):
        assert secret not in out

    rc, out, _ = purge_cli()
    assert rc == 0 and out.splitlines()[0] == "deleted:"
    assert re.search(r"^requests +1 ", out, re.M) and re.search(r"^messages +1 ", out, re.M)
    assert store.get(old) is None and store.get(held) is not None
    assert store.get(newer)["recording_file"] == "" and not newer_file.exists()


def test_the_worker_purges_once_an_hour_whichever_worker_gets_there_first(redis_client, config, store, clock,
                                                                          monkeypatch):
    monkeypatch.setattr(retention, "clock", clock)
    first, _ = request_with_message(store, config, 1)
    store.done(first, "ana")
    second, _ = request_with_message(store, config, 2)
    store.done(second, "ana")
    store.hold(second, "bob")
    clock.now += 1096 * DAY

    def one_turn(name: str) -> None:
        turns = iter([False, True])
        jobs.Worker(jobs.JobContext(config, redis_client), name=name).run(stop=lambda: next(turns), block_ms=1)

    one_turn("w1")
    assert store.get(first) is None
    assert 0 < redis_client.ttl(retention.DUE) <= 3600
    store.release(second, "bob")
    one_turn("w2")                                       # within the hour: another worker leaves it
    assert store.get(second) is not None
    redis_client.delete(retention.DUE)                   # the hour is over
    one_turn("w2")
    assert store.get(second) is None


def test_purges_running_at_once_delete_each_thing_once(redis_client, config, store, clock):
    refs = []
    for n in range(12):
        ref, _ = request_with_message(store, config, n)
        store.done(ref, "ana")
        refs.append(ref)
    clock.now += 1096 * DAY
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: retention.purge(redis_client, config, clock()), range(4)))
    assert sum(r.requests for r in reports) == 12
    assert all(store.get(ref) is None for ref in refs)
    assert not any((Path(config["DATA_DIR"]) / "requests").iterdir())


@pytest.mark.parametrize("value", ["0", "-5", "three years", "1.5"])
def test_a_retention_setting_that_is_not_a_positive_number_of_days_is_refused(value):
    with pytest.raises(settings.ConfigError, match="IVR_RETAIN_REQUESTS_DAYS must be a whole number of days"):
        settings.from_env({"IVR_RETAIN_REQUESTS_DAYS": value})


def test_retention_defaults_and_settings():
    config = settings.from_env({})
    assert (config["RETAIN_REQUESTS_DAYS"], config["RETAIN_RECORDINGS_DAYS"], config["RETAIN_PROMPT_AUDIO_DAYS"],
            config["RETAIN_DEAD_LETTERS_DAYS"]) == (1095, 365, 180, 90)
    assert settings.from_env({"IVR_RETAIN_RECORDINGS_DAYS": "30"})["RETAIN_RECORDINGS_DAYS"] == 30


def test_a_hold_placed_while_a_purge_is_running_keeps_the_request(store, config, redis_client, clock, monkeypatch):
    ref, file = request_with_message(store, config, 1)
    store.done(ref, "ana")
    clock.now += 1096 * DAY
    seen = store.retention_view()                  # the purge has read the list of requests ...
    store.hold(ref, "bob", "litigation")           # ... when someone puts one on hold
    monkeypatch.setattr(RequestStore, "retention_view", lambda self: seen)
    report = retention.purge(redis_client, config, clock())
    assert report.requests == 0 and store.get(ref) is not None and file.exists()


def test_a_message_period_longer_than_the_requests_ends_with_the_request(store, redis_client, tmp_path, clock):
    config = settings.from_env({"IVR_DATA_DIR": str(tmp_path / "var"), "IVR_RETAIN_RECORDINGS_DAYS": "4000"})
    ref, file = request_with_message(store, config, 1)
    store.done(ref, "ana")
    clock.now += 1096 * DAY
    assert retention.purge(redis_client, config, clock()).requests == 1
    assert store.get(ref) is None and not file.exists()


# --- callbacks and texts ------------------------------------------------------------------------------

def callback_with_message(app, n: int, message: bool = True) -> tuple[str, Path | None]:
    """A callback a caller asked for (the store as the callback path writes it), with its message saved
    where the worker saves it ($IVR_DATA_DIR/callbacks/REF/)."""
    callbacks = app.extensions["ivr"].services.callbacks
    ref, _ = callbacks.request(f"CA{n:032x}", f"+1203555{n:04d}", lang="en", best="morning", source="closed")
    if not message:
        return ref, None
    folder = Path(app.config["DATA_DIR"]) / "callbacks" / ref
    folder.mkdir(parents=True)
    path = folder / f"{sid(n)}.mp3"
    path.write_bytes(AUDIO)
    callbacks.update(ref, "message downloaded", by="worker", detail=str(path), recording_file=str(path))
    return ref, path


def test_an_old_closed_callback_is_purged_open_and_recent_ones_are_kept(make_app, redis_client, clock, monkeypatch,
                                                                          capsys):
    app = make_app()
    callbacks = app.extensions["ivr"].services.callbacks
    done, done_file = callback_with_message(app, 1)
    callbacks.done(done, "4001")
    expired, expired_file = callback_with_message(app, 2)
    clock.now += 8 * DAY
    assert callbacks.expire_old() == [expired]               # not done in 7 days: expired, with a note
    still_open, open_file = callback_with_message(app, 3)    # asked, never done (the worker's expiry not run)
    clock.now += 300 * DAY
    recent, recent_file = callback_with_message(app, 4)
    callbacks.done(recent, "4001")
    clock.now += 66 * DAY + timedelta(minutes=1)             # 365 days after `expired` expired

    report = retention.purge(redis_client, app.config, clock())
    assert (report.callbacks, report.callback_messages) == (2, 0)
    for ref, file in ((done, done_file), (expired, expired_file)):
        assert callbacks.get(ref) is None and callbacks.history(ref) == []
        assert not file.exists() and not file.parent.exists()
        assert keys_naming(redis_client, ref) == [f"ivr:cb:{ref}".encode()]     # the reference alone
        assert ref not in callbacks.refs(("open", "taken", "done", "expired"))
    for ref, file in ((still_open, open_file), (recent, recent_file)):
        assert callbacks.get(ref) is not None and file.read_bytes() == AUDIO
    assert [cb["ref"] for cb in callbacks.listing(("open", "done"))] == [still_open, recent]

    # Staff asking for it are told; nothing can be done to it; its reference is never drawn again.
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.delenv("IVR_SECRET_KEY", raising=False)
    assert main(["callbacks", "show", done]) == 1
    assert re.search(rf"callback {done} was deleted \d{{4}}-\d\d-\d\d \d\d:\d\d at the end of its retention "
                     "period", capsys.readouterr().err)
    with pytest.raises(Exception, match="deleted at the end of its retention period"):
        callbacks.take(done, "4001")
    page = signed_in(app).get(f"/console/callbacks/{done}")
    assert page.status_code == 410 and "was deleted" in page.get_data(as_text=True)
    refs = iter([done, "654321"])
    monkeypatch.setattr(callbacks, "new_ref", lambda: next(refs))
    assert callbacks.request("CA" + "9" * 32, "+12035550999", lang="en", best="morning", source="closed") == \
        ("654321", True)
    again = retention.purge(redis_client, app.config, clock())
    assert (again.callbacks, again.callback_messages) == (0, 0)


def test_a_closed_callbacks_message_goes_sooner_when_recordings_are_kept_less(make_app, redis_client, clock):
    app = make_app(RETAIN_RECORDINGS_DAYS=30)
    callbacks = app.extensions["ivr"].services.callbacks
    ref, file = callback_with_message(app, 1)
    callbacks.done(ref, "4001")
    clock.now += 29 * DAY
    assert retention.purge(redis_client, app.config, clock()).callback_messages == 0 and file.exists()
    clock.now += 2 * DAY
    assert retention.purge(redis_client, app.config, clock()).callback_messages == 1
    assert not file.exists() and not file.parent.exists()
    cb = callbacks.get(ref)
    assert cb["status"] == "done" and cb["recording_file"] == "" and cb["number"] == "+12035550001"
    assert callbacks.history(ref)[-1].action == "message deleted (retention period)"


def test_text_records_are_purged_after_their_period_and_stop_replies_kept(make_app, redis_client, clock):
    app = make_app()
    texts = app.extensions["ivr"].services.texts
    old, _ = texts.consent("CA1", "+18605550177", kind="office", lang="en", office="hartford")
    texts.set_status(old, "sent", message_sid="SM" + "a" * 32)
    texts.opt("+18605550177", "stop")
    clock.now += 1000 * DAY
    newer, _ = texts.consent("CA2", "+18605550178", kind="office", lang="es", office="hartford")
    clock.now += 461 * DAY                                # `old` unchanged for 1461 days, `newer` for 461
    assert retention.purge(redis_client, app.config, clock(), dry_run=True).texts == 1
    assert texts.get(old) is not None
    assert retention.purge(redis_client, app.config, clock()).texts == 1
    assert texts.get(old) is None and texts.get(newer) is not None
    assert texts.by_message("SM" + "a" * 32) is None
    assert not texts.may_text("+18605550177")             # the STOP reply outlives the text
    assert retention.purge(redis_client, app.config, clock()).texts == 0


def test_purges_running_at_once_delete_each_callback_once(make_app, redis_client, clock):
    app = make_app()
    callbacks = app.extensions["ivr"].services.callbacks
    refs = []
    for n in range(10):
        ref, _ = callback_with_message(app, n)
        callbacks.done(ref, "4001")
        refs.append(ref)
    clock.now += 366 * DAY
    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: retention.purge(redis_client, app.config, clock()), range(4)))
    assert sum(r.callbacks for r in reports) == 10
    assert all(callbacks.get(ref) is None for ref in refs)
    assert not any((Path(app.config["DATA_DIR"]) / "callbacks").iterdir())


def test_ivr_purge_counts_callbacks_and_texts(purge_cli, make_app, clock):
    app = make_app()
    callbacks = app.extensions["ivr"].services.callbacks
    ref, _ = callback_with_message(app, 1, message=False)
    callbacks.done(ref, "4001")
    app.extensions["ivr"].services.texts.consent("CA1", "+18605550177", kind="callback", lang="en", ref=ref)
    clock.now += 1461 * DAY
    rc, out, _ = purge_cli("--dry-run")
    assert rc == 0 and re.search(r"^callbacks +1 +\(done or expired more than 365 days ago", out, re.M)
    assert re.search(r"^texts +1 +\(records of texts unchanged for more than 1460 days", out, re.M)
    assert re.search(r"^callback messages +0 ", out, re.M) and ref not in out and "5550177" not in out
    rc, out, _ = purge_cli()
    assert re.search(r"^callbacks +1 ", out, re.M) and callbacks.get(ref) is None


@responses.activate
def test_a_purged_callbacks_message_still_at_twilio_is_deleted_there(make_app, redis_client, clock):
    """The sealed URL is the last pointer to a message Twilio still holds (never downloaded, or its deletion
    failed): the purge that deletes the callback queues its deletion at Twilio, and the worker does it."""
    from ivr.callflow.simphone import recording_url

    account = "AC" + "5a" * 16                  # a configured account (the development one deletes nothing)
    app = make_app(TWILIO_ACCOUNT_SID=account)
    callbacks = app.extensions["ivr"].services.callbacks
    failed, _ = callback_with_message(app, 1, message=False)
    url = recording_url(account)
    callbacks.add_message(failed, url)
    callbacks.update(failed, "message download failed", by="worker", recording_error="HTTP 404")
    gone, _ = callback_with_message(app, 2, message=False)
    callbacks.add_message(gone, recording_url(account))
    callbacks.update(gone, "Twilio's copy of the message deleted", by="worker", twilio_copy="deleted")
    for ref in (failed, gone):
        callbacks.done(ref, "4001")
    clock.now += 366 * DAY

    assert retention.purge(redis_client, app.config, clock()).callbacks == 2
    responses.delete(url + ".json", status=204)
    worker = jobs.Worker(jobs.JobContext(app.config, redis_client), name="test-worker")
    assert worker.run_once(block_ms=None) == 1
    assert worker.run_once(block_ms=None) == 0     # nothing queued for the one Twilio no longer holds
    assert [(c.request.method, c.request.url) for c in responses.calls] == [("DELETE", url + ".json")]
