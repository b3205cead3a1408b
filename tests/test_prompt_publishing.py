"""Prompt versions and publishing (ivr/domain/published.py), the audio route, the publish job and `ivr prompts`."""

from __future__ import annotations

import io

import pytest
import responses

from ivr.cli.main import main
from ivr.domain.published import FILES, REV, Library, NothingToRollBack, Who, audio_dir
from ivr.jobs import worker as jobs
from tests.conftest import OPEN, TEST_REDIS_URL

ANA = Who("1001", "Ana Ruiz")
ACCOUNT = "AC00000000000000000000000000000000"
MP3 = b"ID3 fake mp3"


def sid(n: int) -> str:
    return f"RE{n:032x}"


def rec_url(n: int) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid(n)}"


def put_file(app, n: int) -> str:
    """A complete audio file in the system's storage, as the download job leaves it."""
    folder = audio_dir(app.config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{sid(n)}.mp3").write_bytes(MP3)
    return f"{sid(n)}.mp3"


def first_play(call) -> str | None:
    return next((e.text for e in call.events if e.kind == "play"), None)


def test_rollback_goes_back_to_what_was_live_before(redis_client):
    lib = Library(redis_client)
    assert lib.publish("cc.welcome", "en", f"{sid(1)}.mp3", ANA, OPEN) == 1
    assert lib.publish("cc.welcome", "en", f"{sid(2)}.mp3", ANA, OPEN) == 2
    assert lib.rollback("cc.welcome", "en", ANA, OPEN) == 1
    assert lib.publish("cc.welcome", "en", f"{sid(3)}.mp3", ANA, OPEN) == 3
    # v2 was a mistake undone: rolling v3 back restores v1, which was live before v3.
    assert lib.rollback("cc.welcome", "en", ANA, OPEN) == 1
    assert lib.published("cc.welcome", "en") == {"v": 1, "file": f"{sid(1)}.mp3"}
    assert lib.rollback("cc.welcome", "en", ANA, OPEN) == 0          # the computer voice
    with pytest.raises(NothingToRollBack):
        lib.rollback("cc.welcome", "en", ANA, OPEN)
    assert lib.rollback("cc.welcome", "en", ANA, OPEN, to=2) == 2    # any version, by number
    history = lib.history("cc.welcome", "en")
    assert [(e["action"], e["v"]) for e in history] == [
        ("publish", 1), ("publish", 2), ("rollback", 1), ("publish", 3), ("rollback", 1), ("rollback", 0),
        ("rollback", 2)]
    assert history[0] == {"action": "publish", "v": 1, "file": f"{sid(1)}.mp3", "prev": 0, "lang": "en",
                          "at": OPEN.isoformat(), "by": "1001", "name": "Ana Ruiz"}
    assert lib.published("cc.welcome", "es") is None                  # the other language untouched


def test_every_change_bumps_the_revision_in_the_same_transaction(redis_client):
    lib = Library(redis_client)
    lib.publish("cc.welcome", "en", f"{sid(1)}.mp3", ANA, OPEN)
    assert int(redis_client.get(REV)) == 1
    assert lib.publish("cc.welcome", "en", f"{sid(1)}.mp3", ANA, OPEN) == 1   # the same file: no change
    assert int(redis_client.get(REV)) == 1 and len(lib.history("cc.welcome", "en")) == 1
    lib.set_announcement(["callcenter"], "en", f"{sid(2)}.mp3", None, ANA, OPEN)
    assert not lib.set_announcement(["callcenter"], "en", f"{sid(2)}.mp3", None, ANA, OPEN)
    lib.clear_announcement(["callcenter"], "en", ANA, OPEN)
    assert int(redis_client.get(REV)) == 3
    assert redis_client.smembers(FILES) == {f"{sid(1)}.mp3".encode(), f"{sid(2)}.mp3".encode()}


def test_a_webhook_reloads_the_published_index_only_when_the_revision_changed(app, call, redis_client,
                                                                              monkeypatch):
    loads = []
    real = Library.snapshot
    monkeypatch.setattr(Library, "snapshot", lambda self: loads.append(1) or real(self))
    call("callcenter", ["1", "1"])                        # three webhooks
    assert len(loads) == 1
    Library(redis_client).publish("cc.welcome", "en", put_file(app, 7), ANA, OPEN)
    c = call("callcenter", ["1"])
    assert len(loads) == 2
    assert first_play(c) == f"http://localhost/audio/{sid(7)}.mp3"


def test_play_urls_use_the_public_base_url_behind_a_proxy(make_app, call, redis_client):
    app = make_app(PUBLIC_BASE_URL="https://ivr.example.org", VALIDATE_SIGNATURES=False)
    Library(redis_client).publish("cc.welcome", "en", put_file(app, 8), ANA, OPEN)
    assert first_play(call("callcenter", [], target_app=app)) == f"https://ivr.example.org/audio/{sid(8)}.mp3"


def test_the_audio_route_serves_only_published_files(app, redis_client):
    client = app.test_client()
    published = put_file(app, 1)
    Library(redis_client).publish("cc.welcome", "en", published, ANA, OPEN)
    unpublished = put_file(app, 2)
    (audio_dir(app.config) / "notes.txt").write_text("secret")
    assert client.get(f"/audio/{published}").status_code == 200         # a plain GET, no signature
    assert client.get(f"/audio/{unpublished}").status_code == 404
    assert client.get("/audio/notes.txt").status_code == 404
    assert client.get("/audio/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/audio/../prompts/" + published).status_code == 404
    Library(redis_client).publish("cc.main.intro", "en", f"{sid(3)}.mp3", ANA, OPEN)
    assert client.get(f"/audio/{sid(3)}.mp3").status_code == 404         # listed but no file


def test_the_job_runs_twice_yet_downloads_and_publishes_once(app, redis_client):
    payload = {"what": "prompt", "pid": "cc.welcome", "lang": "es", "url": rec_url(5), "by": "1001",
               "name": "Ana Ruiz", "at": OPEN.isoformat()}
    jobs.enqueue(redis_client, "staff.publish", payload)
    jobs.enqueue(redis_client, "staff.publish", payload)
    with responses.RequestsMock() as mock:
        mock.get(rec_url(5) + ".mp3", body=MP3)
        assert jobs.Worker(jobs.JobContext(app.config, redis_client)).run_once() == 2
        assert len(mock.calls) == 1
    lib = Library(redis_client)
    assert lib.published("cc.welcome", "es") == {"v": 1, "file": f"{sid(5)}.mp3"}
    assert len(lib.history("cc.welcome", "es")) == 1
    assert (audio_dir(app.config) / f"{sid(5)}.mp3").read_bytes() == MP3


@pytest.mark.parametrize("url", [
    "https://evil.example.com/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/RE"
    + "0" * 32,
    "https://api.twilio.com/2010-04-01/Accounts/AC11111111111111111111111111111111/Recordings/RE" + "0" * 32,
    "http://api.twilio.com/2010-04-01/Accounts/AC00000000000000000000000000000000/Recordings/RE" + "0" * 32])
def test_the_job_fetches_nothing_but_our_own_twilio_recordings(app, redis_client, url):
    jobs.enqueue(redis_client, "staff.publish", {"what": "prompt", "pid": "cc.welcome", "lang": "en",
                                                 "url": url, "by": "1", "at": OPEN.isoformat()})
    with responses.RequestsMock() as mock:                # any request at all would fail the test
        jobs.Worker(jobs.JobContext(app.config, redis_client)).run_once()
        assert len(mock.calls) == 0
    assert redis_client.xlen(jobs.DEAD) == 1
    assert Library(redis_client).published("cc.welcome", "en") is None


@pytest.fixture
def cli(monkeypatch, redis_client, capsys):
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)

    def run(*argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_ivr_prompts_list_prints_code_id_first_words_and_recorded_languages(cli, redis_client):
    Library(redis_client).publish("cc.main.intro", "es", f"{sid(1)}.mp3", ANA, OPEN)
    code, out, _ = cli("prompts", "list")
    lines = out.splitlines()
    assert code == 0
    assert any(line.startswith("201  cc.welcome") and '"Thank you for calling the Connecticut Child'
               in line and line.endswith("recorded: -") for line in lines)
    assert any(line.startswith("202  cc.main.intro") and line.endswith("recorded: es") for line in lines)
    assert all(line.split()[0].isdigit() for line in lines)
    assert len(lines) >= 200


def test_ivr_prompts_clear_announcement_takes_it_off_the_line_for_the_next_caller(cli, redis_client, app, call):
    lib = Library(redis_client)
    lib.set_announcement(["callcenter", "payments"], "en", f"{sid(3)}.mp3", None, ANA, OPEN)
    lib.set_announcement(["callcenter"], "es", f"{sid(4)}.mp3", None, ANA, OPEN)
    assert f"{sid(3)}.mp3" in "".join(call(keys=[]).documents)

    code, out, _ = cli("prompts", "clear-announcement", "callcenter", "--lang", "en", "--by", "Maria Lopez")
    assert code == 0 and "cleared 1 announcement(s) from callcenter (en)" in out
    assert f"{sid(3)}.mp3" not in "".join(call(keys=[]).documents)      # the next caller does not hear it
    _, anns = lib.snapshot()
    assert set(anns) == {("payments", "en"), ("callcenter", "es")}      # the others stay
    assert lib.announcement_log(1)[0] == {**lib.announcement_log(1)[0], "action": "clear", "name": "Maria Lopez"}

    code, out, _ = cli("prompts", "clear-announcement", "all")
    assert code == 0 and "cleared 2 announcement(s)" in out
    assert lib.snapshot()[1] == {}
    code, out, _ = cli("prompts", "clear-announcement", "all")
    assert code == 1 and "nothing changed" in out
    with pytest.raises(SystemExit) as exc:
        cli("prompts", "clear-announcement", "nosuchline")
    assert exc.value.code == 2


def test_ivr_prompts_history_and_rollback(cli, redis_client):
    lib = Library(redis_client)
    lib.publish("cc.welcome", "en", f"{sid(1)}.mp3", ANA, OPEN)
    lib.publish("cc.welcome", "en", f"{sid(2)}.mp3", ANA, OPEN)

    code, out, _ = cli("prompts", "rollback", "201", "--by", "Maria Lopez")
    assert code == 0 and "cc.welcome (en): callers now hear version 1" in out
    assert lib.published("cc.welcome", "en")["v"] == 1

    code, out, _ = cli("prompts", "history", "cc.welcome")
    assert code == 0
    assert f"cc.welcome  en  2026-11-24 10:00  v1 published  {sid(1)}.mp3  by 1001 (Ana Ruiz)" in out
    assert f"v2 published  {sid(2)}.mp3" in out
    assert "rolled back v2 -> v1  by cli (Maria Lopez)" in out
    assert "cc.welcome  en  live now: v1" in out

    lib.publish("cc.welcome", "es", f"{sid(3)}.mp3", ANA, OPEN)
    code, _, err = cli("prompts", "rollback", "cc.welcome")
    assert code == 2 and "--lang" in err                                # both languages: say which
    assert cli("prompts", "rollback", "cc.welcome", "--lang", "es")[0] == 0
    assert lib.published("cc.welcome", "es") is None and lib.published("cc.welcome", "en")["v"] == 1
    code, _, err = cli("prompts", "rollback", "cc.welcome", "--lang", "es")
    assert code == 1 and "no recording to roll back" in err


@pytest.mark.parametrize("argv, message", [
    (["prompts", "history", "nope.prompt"], "there is no prompt 'nope.prompt'"),
    (["prompts", "history", "999"], "no prompt has the code 999"),
    (["prompts", "history", "²"], "there is no prompt '²'"),   # a digit to str.isdigit, not to int()
    (["prompts", "rollback", "201", "--lang", "en", "--to", "4"], "has no version 4"),
])
def test_ivr_prompts_bad_input(cli, argv, message):
    code, _, err = cli(*argv)
    assert code != 0 and message in err


def test_a_caller_handed_over_to_the_payment_line_hears_its_announcement_once(redis_client, call):
    lib = Library(redis_client)
    lib.set_announcement(["payments"], "en", f"{sid(5)}.mp3", None, ANA, OPEN)
    lib.set_announcement(["callcenter"], "en", f"{sid(6)}.mp3", None, ANA, OPEN)
    # Call center: its own announcement, the payments menu, "payment line" (a handover), then back
    # to the call center from the payment line's "9", which is the call center's menu there.
    c = call("callcenter", ["-", "1", "1", "9"])
    heard = "".join(c.documents)
    assert heard.count(f"{sid(6)}.mp3") == 1                    # the call center's, at the start only
    assert heard.count(f"{sid(5)}.mp3") == 1                    # the payment line's, at the handover
    before, after = heard.split(f"{sid(5)}.mp3", 1)
    assert "case number" not in before.rsplit("<Response>", 1)[-1]   # said before the line's first question
    assert "case number" in after
    assert "Main menu." in after.split("case number", 1)[1]           # 9 there: the call center's menu
