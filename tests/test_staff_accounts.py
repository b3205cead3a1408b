"""Staff accounts: salted PIN hashes, lockout, and the `ivr staff` commands."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest

from ivr.cli import main
from ivr.speech import CT_TZ
from ivr.staffdb import Login, StaffDB, StaffError, check_pin, hash_pin
from tests.conftest import OPEN, TEST_REDIS_URL


@pytest.fixture
def cli(monkeypatch, redis_client, capsys):
    """Run `ivr ...` against the test Redis; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_a_pin_is_kept_only_as_a_salted_scrypt_hash():
    a, b = hash_pin("482193"), hash_pin("482193")
    assert a != b                                   # a new salt each time
    assert a.startswith("scrypt$") and "482193" not in a
    assert check_pin("482193", a) and check_pin("482193", b)
    assert not check_pin("482194", a) and not check_pin("482193", "plain:482193")


def test_the_stored_account_holds_no_pin(redis_client):
    StaffDB(redis_client).add("1001", "Ana Ruiz", "482193", OPEN)
    stored = redis_client.hgetall("ivr:staff:1001")
    assert stored[b"name"] == b"Ana Ruiz" and stored[b"disabled"] == b"0"
    assert b"482193" not in b"".join(stored.values())


def test_lockout_after_three_wrong_pins_in_a_row_and_its_end(redis_client):
    db = StaffDB(redis_client)
    db.add("1001", "Ana Ruiz", "482193", OPEN)
    assert db.login("1001", "1111", OPEN)[0] is Login.WRONG
    assert db.login("1001", "482193", OPEN)[0] is Login.OK          # a success resets the count
    assert [db.login("1001", "1111", OPEN)[0] for _ in range(3)] == [Login.WRONG, Login.WRONG, Login.LOCKED]
    assert db.login("1001", "482193", OPEN + timedelta(minutes=14))[0] is Login.LOCKED
    assert db.login("1001", "482193", OPEN + timedelta(minutes=15))[0] is Login.OK
    # An unknown ID is locked the same way: the answers never tell it from a real one.
    assert [db.login("9999", "1111", OPEN)[0] for _ in range(3)] == [Login.WRONG, Login.WRONG, Login.LOCKED]


@pytest.mark.parametrize("pin, problem", [
    ("12a4", "4 to 10 digits"), ("123", "4 to 10 digits"), ("7777", "one digit repeated"),
    ("3456", "a run of digits"), ("9876", "a run of digits"), ("1001", "not be the staff ID")])
def test_a_weak_or_malformed_pin_is_refused(redis_client, pin, problem):
    with pytest.raises(StaffError, match=problem):
        StaffDB(redis_client).add("1001", "Ana Ruiz", pin, OPEN)
    assert StaffDB(redis_client).get("1001") is None


def test_ivr_staff_add_reset_disable_enable_list(cli, redis_client):
    assert cli("staff", "add", "1001", "--name", "Ana Ruiz", "--pin-stdin", stdin="482193\n")[0] == 0
    db = StaffDB(redis_client)
    now = datetime.now(CT_TZ)   # `ivr staff list` shows a lock by the clock on the wall, not the tests' OPEN
    assert db.login("1001", "482193", now)[0] is Login.OK

    for _ in range(3):
        db.login("1001", "0000", now)
    code, out, _ = cli("staff", "list")
    assert code == 0 and "1001" in out and "Ana Ruiz" in out and "(locked)" in out
    code, out, _ = cli("staff", "reset-pin", "1001", "--pin-stdin", stdin="570246\n")
    assert code == 0 and "lockout is ended" in out
    assert db.login("1001", "570246", now)[0] is Login.OK
    assert db.login("1001", "482193", now)[0] is Login.WRONG

    assert cli("staff", "disable", "1001")[0] == 0
    assert db.login("1001", "570246", now)[0] is Login.WRONG
    assert "(disabled)" in cli("staff", "list")[1]
    assert cli("staff", "enable", "1001")[0] == 0
    assert db.login("1001", "570246", now)[0] is Login.OK


@pytest.mark.parametrize("argv, stdin, message", [
    (["staff", "add", "12", "--name", "Ana", "--pin-stdin"], "482193\n", "a staff ID is 3 to 10 digits"),
    (["staff", "add", "1002", "--name", "Bo", "--pin-stdin"], "1234\n", "a run of digits"),
    (["staff", "add", "1002", "--name", "  ", "--pin-stdin"], "482193\n", "a name is 1 to 80 characters"),
    (["staff", "add", "1002", "--name", "Bo"], "", "use --pin-stdin"),
    (["staff", "add", "1001", "--name", "Ana", "--pin-stdin"], "482193\n", "already exists"),
    (["staff", "reset-pin", "4040", "--pin-stdin"], "482193\n", "there is no staff ID 4040"),
    (["staff", "disable", "4040"], "", "there is no staff ID 4040"),
    (["staff", "disable", "abc"], "", "a staff ID is 3 to 10 digits"),
])
def test_bad_input_says_what_is_wrong_and_exits_non_zero(cli, redis_client, argv, stdin, message):
    StaffDB(redis_client).add("1001", "Ana Ruiz", "482193", OPEN)
    code, out, err = cli(*argv, stdin=stdin)
    assert code != 0 and message in err and "Traceback" not in err
    assert StaffDB(redis_client).get("1002") is None


def test_without_redis_the_staff_commands_say_so(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    assert main(["staff", "list"]) == 1
    err = capsys.readouterr().err
    assert "does not answer" in err and "hunter2" not in err
