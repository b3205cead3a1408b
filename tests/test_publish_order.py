"""Publish jobs done late (a download retried) never undo what staff did after the recording was kept:
a newer recording stays live, a cleared announcement stays cleared."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
import requests
import responses

from ivr import settings
from ivr.cli.main import main
from ivr.domain.published import Library, Who, audio_dir
from ivr.domain.staffdb import StaffDB
from ivr.jobs import retention
from ivr.jobs import worker as jobs
from tests.conftest import OPEN, TEST_REDIS_URL
from tests.test_prompt_publishing import put_file, sid
from tests.test_staff_line import MP3, PIN, SIGN_IN, copy_url, plays, record_prompt, recorded

BEN_SIGN_IN = ["-", "1002#", PIN + "#"]
ANA = Who("1001", "Ana Ruiz")
DAY = timedelta(days=1)


@pytest.fixture
def staff(app, clock):
    db: StaffDB = app.extensions["ivr"].services.staffdb
    db.add("1002", "Ben Okafor", PIN, clock())
    return db.add("1001", "Ana Ruiz", PIN, clock())


@pytest.fixture
def worker(app, redis_client):
    return jobs.Worker(jobs.JobContext(app.config, redis_client), name="publisher")


@pytest.fixture
def cli(monkeypatch, redis_client, capsys):
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)

    def run(*argv: str) -> str:
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        capsys.readouterr()
        assert main(list(argv)) == 0
        return capsys.readouterr().out
    return run


def test_an_older_recording_retried_after_a_newer_one_went_live_does_not_replace_it(call, staff, worker, cli):
    [older] = recorded(record_prompt(call, "201"))
    [newer] = recorded(record_prompt(call, "201"))
    with responses.RequestsMock() as twilio:
        twilio.get(older + ".mp3", body=requests.ConnectionError("connection reset"))   # Twilio unreachable for it
        twilio.get(newer + ".mp3", body=MP3)
        worker.run_once()
    assert plays(call("callcenter", [])) == [copy_url(newer)]
    with responses.RequestsMock() as twilio:
        twilio.get(older + ".mp3", body=MP3)
        assert worker.retry_pending() == 1                                    # the older one's retry
    assert plays(call("callcenter", [])) == [copy_url(newer)]
    assert "Callers hear recording number 1, kept by Ana Ruiz" in call("staff", SIGN_IN + ["1", "201#"]).said
    history = cli("prompts", "history", "cc.welcome", "--lang", "en")
    assert "v1 published" in history and "live now: v1" in history
    assert "not published" in history and older.rsplit("/", 1)[1] in history
    assert worker.retry_pending() == 0                                        # done: not tried again


def test_an_announcement_cleared_while_its_download_was_retried_stays_cleared(call, staff, worker, cli):
    [earlier] = recorded(call("staff", SIGN_IN + ["2", "1", "*", "rec", "1"]))
    with responses.RequestsMock() as twilio:
        twilio.get(earlier + ".mp3", body=MP3)
        worker.run_once()
    assert plays(call("callcenter", ["-"])) == [copy_url(earlier)]
    [late] = recorded(call("staff", SIGN_IN + ["2", "1", "*", "rec", "1"]))  # Ana records a new one...
    with responses.RequestsMock() as twilio:
        twilio.get(late + ".mp3", body=requests.ConnectionError("connection reset"))  # ...its download fails
        worker.run_once()
    cleared = call("staff", BEN_SIGN_IN + ["2", "5", "1"])                   # Ben clears the call center's
    assert "Done. The announcement is cleared." in cleared.said
    with responses.RequestsMock() as twilio:
        twilio.get(late + ".mp3", body=MP3)
        assert worker.retry_pending() == 1
    assert plays(call("callcenter", ["-"])) == []
    assert "The call center line has no announcement." in call("staff", SIGN_IN + ["2"]).said
    shown = cli("prompts", "announcements")
    assert "callcenter  en  none" in shown and "not put on callcenter" in shown


def test_a_job_for_both_lines_goes_only_on_the_line_not_cleared_since(app, redis_client):
    lib = Library(redis_client)
    kept = lib.stamp()                                       # what the staff line does when a recording is kept
    lib.clear_announcement(["payments"], "en", Who("1002", "Ben Okafor"), OPEN)
    assert lib.set_announcement(["callcenter", "payments"], "en", put_file(app, 4), None, ANA, OPEN, seq=kept)
    _, anns = lib.snapshot()
    assert set(anns) == {("callcenter", "en")}
    assert sorted((e["action"], e["lines"]) for e in lib.announcement_log(2)) == [
        ("set", ["callcenter"]), ("superseded", ["payments"])]


def test_a_rollback_after_a_recording_was_kept_is_not_undone_by_it(app, redis_client):
    lib = Library(redis_client)
    lib.publish("cc.welcome", "en", put_file(app, 1), ANA, OPEN)
    kept = lib.stamp()
    assert lib.rollback("cc.welcome", "en", Who("1002", "Ben Okafor"), OPEN) == 0     # the computer voice
    assert lib.publish("cc.welcome", "en", put_file(app, 2), ANA, OPEN, seq=kept) is None
    assert lib.published("cc.welcome", "en") is None
    assert lib.publish("cc.welcome", "en", put_file(app, 2), ANA, OPEN, seq=kept) is None    # run twice
    assert [e["action"] for e in lib.history("cc.welcome", "en")] == ["publish", "rollback", "superseded"]
    assert lib.publish("cc.welcome", "en", put_file(app, 3), ANA, OPEN, seq=lib.stamp()) == 2   # newer: live
    assert not redis_client.sismember("ivr:audio:files", f"{sid(2)}.mp3")          # never served


def test_a_job_queued_by_the_older_version_still_publishes_when_nothing_changed_since(app, redis_client, worker):
    url = f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Recordings/{sid(9)}"
    jobs.enqueue(redis_client, "staff.publish", {"what": "prompt", "pid": "cc.welcome", "lang": "en", "url": url,
                                                 "by": "1001", "name": "Ana Ruiz", "at": OPEN.isoformat()})
    with responses.RequestsMock() as twilio:
        twilio.get(url + ".mp3", body=MP3)
        worker.run_once()
    assert Library(redis_client).published("cc.welcome", "en") == {"v": 1, "file": f"{sid(9)}.mp3"}


def test_a_refused_recording_does_not_cut_short_how_long_what_stayed_live_is_kept(redis_client, tmp_path, clock):
    """Retention dates a file from when it stopped playing: a refused job's entry is not such a moment."""
    config = settings.from_env({"IVR_DATA_DIR": str(tmp_path / "var")})
    folder = audio_dir(config)
    folder.mkdir(parents=True)
    for n in range(1, 10):
        (folder / f"{sid(n)}.mp3").write_bytes(MP3)
    lib, start = Library(redis_client), clock()
    lib.publish("cc.welcome", "en", f"{sid(1)}.mp3", ANA, start)
    kept = lib.stamp()                                                     # sid(3) kept at `start`...
    lib.publish("cc.welcome", "en", f"{sid(2)}.mp3", ANA, start + DAY)   # ...a newer one goes live first
    assert lib.publish("cc.welcome", "en", f"{sid(3)}.mp3", ANA, start, seq=kept) is None
    lib.publish("cc.welcome", "en", f"{sid(4)}.mp3", ANA, start + 100 * DAY)    # sid(2) off the line now
    lib.publish("cc.welcome", "en", f"{sid(5)}.mp3", ANA, start + 100 * DAY)
    kept = lib.stamp()                                                     # the same for an announcement
    lib.set_announcement(["callcenter"], "en", f"{sid(6)}.mp3", None, ANA, start + DAY)
    assert not lib.set_announcement(["callcenter"], "en", f"{sid(7)}.mp3", None, ANA, start, seq=kept)
    lib.clear_announcement(["callcenter"], "en", ANA, start + 100 * DAY)      # sid(6) off the line now

    assert retention.purge(redis_client, config, start + 181 * DAY).prompt_audio == 1     # sid(1) only
    assert lib.is_published_file(f"{sid(2)}.mp3") and lib.is_published_file(f"{sid(6)}.mp3")
