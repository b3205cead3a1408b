"""The request queue and the staff commands on their own: ids, idempotency, take/done, audit, errors."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from ivr.cli.main import main
from ivr.domain.requests import RequestError, RequestStore
from ivr.sealing import Sealer
from ivr.settings import DEV_SECRET_KEY


class Ticking:
    """A clock one minute later at each reading, from 2026-11-24 15:00 UTC."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 15, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture
def store(redis_client):
    return RequestStore(redis_client, Sealer(DEV_SECRET_KEY), clock=Ticking())


def new(store, sid="CA1", inmate="1234567", **kw) -> str:
    return store.open_request(sid, inmate, lang=kw.pop("lang", "en"), source="main menu", **kw)


def test_one_request_per_call_and_a_taken_reference_is_never_reused(redis_client):
    refs = iter(["111111", "111111", "111111", "222222"])   # a reference is drawn before the call's own is found
    store = RequestStore(redis_client, Sealer(DEV_SECRET_KEY), new_ref=lambda: next(refs))
    assert new(store, "CA1") == "111111"
    assert new(store, "CA1", "7777777") == "111111"        # the same call again: the same request
    assert new(store, "CA2") == "222222"                   # 111111 is taken: another is drawn
    assert redis_client.zcard("ivr:req:all") == 2
    assert store.get("111111")["inmate"] == "7777777"


def test_references_are_six_digits(store):
    refs = {new(store, f"CA{i}") for i in range(30)}
    assert len(refs) == 30 and all(len(r) == 6 and r.isdigit() and r[0] != "0" for r in refs)


def test_personal_fields_are_sealed_and_unsealed_only_with_the_key(store, redis_client):
    ref = new(store, caller="+18605550177")
    store.update(ref, "case given", case="987654321")
    raw = redis_client.hgetall(f"ivr:req:{ref}")
    assert b"1234567" not in b"".join(raw.values()) and b"987654321" not in b"".join(raw.values())
    assert store.get(ref)["case"] == "987654321"
    stranger = RequestStore(redis_client, Sealer("another key"))
    assert stranger.get(ref)["inmate"] == "?"


def test_take_and_done_follow_who_has_the_request(store):
    ref = new(store)
    assert store.take(ref, "ana") == "taken"
    assert store.take(ref, "ana") == "already yours"
    with pytest.raises(RequestError, match="already taken by ana"):
        store.take(ref, "bob")
    with pytest.raises(RequestError, match="taken by ana"):
        store.done(ref, "bob")
    assert store.done(ref, "ana") == "done"
    with pytest.raises(RequestError, match="already done"):
        store.done(ref, "ana")
    with pytest.raises(RequestError, match="already done"):
        store.take(ref, "bob")
    assert store.refs() == [] and store.refs(("done",)) == [ref]
    # Done straight from open: taking it is recorded too.
    other = new(store, "CA2")
    store.done(other, "bob")
    assert [e.action for e in store.history(other)][-2:] == ["taken", "done"]
    assert store.get(other)["taken_by"] == "bob"


def test_every_change_is_in_the_audit_trail_with_who_and_when(store):
    ref = new(store)
    store.update(ref, "facility given", facility="york")
    store.finish(ref)
    store.take(ref, "ana")
    store.done(ref, "ana")
    trail = [(e.by, e.action) for e in store.history(ref)]
    assert trail == [("caller", "created"), ("caller", "facility given"), ("caller", "request finished"),
                     ("ana", "taken"), ("ana", "done")]
    stamps = [e.at for e in store.history(ref)]
    assert stamps == sorted(stamps) and stamps[0].startswith("2026-11-24T15:0")


def test_list_and_export(store, staff):
    first = new(store, "CA1", facility="york", facility_how="caller ID")
    store.finish(first)
    second = new(store, "CA2", "5555555", lang="es")
    store.update(second, "case", case="0012345")
    rc, out, _ = staff("list")
    lines = out.splitlines()
    assert rc == 0 and [line.split()[0] for line in lines] == [first, second]
    assert "York CI" in lines[0] and "complete" in lines[0] and "INCOMPLETE" in lines[1]
    staff("done", first, "--by", "4001")
    assert [line.split()[0] for line in staff("list")[1].splitlines()] == [second]
    rc, out, _ = staff("export")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and [r["ref"] for r in rows] == [first, second]
    assert rows[0]["status"] == "done" and rows[0]["done_by"] == "4001" and rows[0]["facility"] == "york"
    assert rows[1]["inmate_number"] == "5555555" and rows[1]["case_number"] == "0012345"   # leading 0 kept
    rc, out, _ = staff("export", "--status", "open")
    assert [r["ref"] for r in csv.DictReader(io.StringIO(out))] == [second]


def test_export_to_a_file(store, staff, tmp_path):
    new(store)
    target = tmp_path / "requests.csv"
    assert staff("export", "--output", str(target))[0] == 0
    assert target.read_text().startswith("ref,status,")


def test_the_export_runs_no_cell_as_a_spreadsheet_formula(store, staff):
    """Text from outside (Twilio's error for a recording) cannot be a formula in the file, as in the console's."""
    ref = new(store)
    store.update(ref, "download failed", by="worker", recording_error='=HYPERLINK("http://x","y")')
    row = next(csv.DictReader(io.StringIO(staff("export")[1])))
    assert row["recording_error"] == '\'=HYPERLINK("http://x","y")'
    assert row["inmate_number"] == "1234567"       # numbers stay numbers


@pytest.mark.parametrize("args, message", [
    (("show", "999999"), "no request 999999"),
    (("show", "12345"), "is not a request reference"),
    (("take", "abcdef", "--by", "4001"), "is not a request reference"),
    (("take", "999999", "--by", "4001"), "no request 999999"),
    (("done", "999999", "--by", "4001"), "no request 999999"),
])
def test_staff_commands_refuse_unknown_or_malformed_references(store, staff, args, message):
    new(store)
    rc, out, err = staff(*args)
    assert rc == 1 and message in err and not out


@pytest.mark.parametrize("name, says", [
    ("", "a staff ID is 3 to 10 digits"), ("   ", "a staff ID is 3 to 10 digits"),
    ("Ana Ruiz", "a staff ID is 3 to 10 digits"), ("a" * 41, "a staff ID is 3 to 10 digits"),
    ("ana\nbob", "a staff ID is 3 to 10 digits"), ("-x", "a staff ID is 3 to 10 digits"),
    ("1234", "no staff account 1234"), ("4004", "is disabled")])
def test_a_by_that_is_no_enabled_staff_account_is_refused(store, staff, redis_client, name, says):
    """`--by` names a staff ID (docs/interface.md): not a free name, not an unknown or disabled account."""
    from ivr.domain.staffdb import StaffDB, pepper_for
    from ivr.settings import DEV_SECRET_KEY

    accounts = StaffDB(redis_client, pepper_for({"IVR_SECRET_KEY": DEV_SECRET_KEY}))
    accounts.add("4004", "Old Account", "730519", datetime.now(UTC))
    accounts.set_disabled("4004", True)
    ref = new(store)
    rc, _, err = staff("take", ref, f"--by={name}")
    assert rc == 1 and says in err
    assert store.get(ref)["status"] == "open"



def test_by_is_required(store, staff):
    with pytest.raises(SystemExit) as exc:
        main(["requests", "take", new(store)])
    assert exc.value.code != 0


def test_redis_unreachable_is_one_clear_line_and_a_non_zero_exit(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    for args in (["list"], ["show", "123456"], ["export"], ["take", "123456", "--by", "4001"]):
        rc = main(["requests", *args])
        out, err = capsys.readouterr()
        assert rc == 2 and "cannot reach Redis at 127.0.0.1:1" in err and "hunter2" not in err
        assert "Traceback" not in err and not out


URL = "https://api.twilio.com/2010-04-01/Accounts/AC" + "5a" * 16 + "/Recordings/RE" + "c" * 32


def test_the_message_url_is_sealed_in_the_request_its_job_and_its_audit(store, redis_client):
    ref = new(store)
    store.add_recording(ref, URL)
    token = redis_client.hget(f"ivr:req:{ref}", "recording_url").decode()
    assert token and "twilio" not in token and store.open_url(token) == URL
    assert RequestStore(redis_client, Sealer("another key")).open_url(token) is None
    (_, job), = redis_client.xrange("ivr:jobs")
    assert b"twilio" not in job[b"payload"] and job[b"kind"] == b"inmate.recording"
    assert all("twilio" not in e.detail for e in store.history(ref))
    assert store.history(ref)[-1].action == "message recorded"
    assert store.open_url(URL) == URL                       # a plain URL from the older version still opens


def test_staff_commands_show_the_file_never_twilios_url(store, redis_client, staff):
    fresh = new(store, "CA1")
    store.add_recording(fresh, URL)
    old = new(store, "CA2")
    redis_client.hset(f"ivr:req:{old}", "recording_url", URL)    # as the older version kept it: plain
    for ref in (fresh, old):
        rc, out, _ = staff("show", ref)
        assert rc == 0 and "message:             not downloaded yet (ivr worker)" in out
        assert "twilio.com" not in out and "RE" + "c" * 32 not in out
    store.recording_saved(fresh, "/data/requests/RE" + "c" * 32 + ".mp3", URL, delete=True)
    out = staff("show", fresh)[1]
    assert "message:             /data/requests/RE" in out and "Twilio's copy:       to be deleted" in out
    rc, out, _ = staff("export")
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert rc == 0 and "recording_url" not in header and "twilio.com" not in out
    assert [r[header.index("recording_file")] for r in rows] == ["/data/requests/RE" + "c" * 32 + ".mp3", ""]


def test_who_called_is_stored_and_shown(store, staff):
    parent = new(store, "CA1", who="parent")
    helper = new(store, "CA2", who="for the parent")
    before = new(store, "CA3")                                # a request from before the question
    assert store.get(parent)["who_called"] == "parent"
    assert "who called:          someone calling for the parent" in staff("show", helper)[1]
    assert "who called:          (not asked)" in staff("show", before)[1]
    rows = list(csv.DictReader(io.StringIO(staff("export")[1])))
    assert [r["who_called"] for r in rows] == ["parent", "for the parent", ""]
    assert [e.detail for e in store.history(helper)] == ["from main menu, by for the parent"]
