"""Staff accounts: salted, peppered PIN hashes, lockout, and the `ivr staff` commands."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import datetime, timedelta

import pytest

from ivr import settings
from ivr.callflow.speech import CT_TZ
from ivr.cli.main import main
from ivr.domain.staffdb import Login, StaffDB, StaffError, check_pin, hash_pin, pepper_for
from ivr.settings import DEV_SECRET_KEY, ConfigError
from tests.conftest import OPEN, TEST_REDIS_URL

PEPPER = pepper_for({"IVR_SECRET_KEY": DEV_SECRET_KEY})     # what the commands use without IVR_ settings
PHONE = "+18605550101"


@pytest.fixture
def cli(monkeypatch, redis_client, capsys):
    """Run `ivr ...` against the test Redis; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.delenv("IVR_SECRET_KEY", raising=False)     # the pepper of `db` below
    monkeypatch.delenv("IVR_PIN_PEPPER", raising=False)

    def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def db(redis_client) -> StaffDB:
    return StaffDB(redis_client, PEPPER)


def test_a_pin_is_kept_only_as_a_salted_peppered_scrypt_hash():
    a, b = hash_pin("482193", PEPPER), hash_pin("482193", PEPPER)
    assert a != b                                   # a new salt each time
    assert a.startswith("scrypt-p$") and "482193" not in a
    assert check_pin("482193", a, PEPPER) and check_pin("482193", b, PEPPER)
    assert not check_pin("482194", a, PEPPER) and not check_pin("482193", "plain:482193", PEPPER)
    assert not check_pin("482193", a, b"another pepper")


def test_the_pepper_is_ivr_pin_pepper_or_derived_from_the_secret_key():
    assert pepper_for({"IVR_SECRET_KEY": "k" * 40, "IVR_PIN_PEPPER": "p" * 40}) == b"p" * 40
    derived = pepper_for({"IVR_SECRET_KEY": "k" * 40, "IVR_PIN_PEPPER": ""})
    assert derived not in (b"k" * 40, pepper_for({"IVR_SECRET_KEY": "j" * 40}))
    assert len(derived) == 32


def test_a_short_pin_pepper_is_refused_in_production():
    env = {"IVR_ENV": "production", "TWILIO_AUTH_TOKEN": "0123456789abcdef" * 2, "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
           "SDU_BASE_URL": "https://sdu.example", "SDU_API_KEY": "k" * 32,
           "IVR_SECRET_KEY": "a-production-secret-of-32-characters-or-more",
           "PUBLIC_BASE_URL": "https://ivr.example"}
    with pytest.raises(ConfigError, match="IVR_PIN_PEPPER must be at least 32 characters"):
        settings.from_env({**env, "IVR_PIN_PEPPER": "short"})
    assert settings.from_env({**env, "IVR_PIN_PEPPER": "p" * 32})["IVR_PIN_PEPPER"] == "p" * 32
    assert settings.from_env(env)["IVR_PIN_PEPPER"] == ""          # optional: derived from the key


def test_the_stored_account_holds_no_pin(db, redis_client):
    db.add("1001", "Ana Ruiz", "482193", OPEN)
    stored = redis_client.hgetall("ivr:staff:1001")
    assert stored[b"name"] == b"Ana Ruiz" and stored[b"disabled"] == b"0"
    assert b"482193" not in b"".join(stored.values())


def test_a_numbers_lock_and_its_end(db):
    db.add("1001", "Ana Ruiz", "482193", OPEN)
    assert db.login("1001", "111111", PHONE, OPEN)[0] is Login.WRONG
    assert db.login("1001", "482193", PHONE, OPEN)[0] is Login.OK      # a success resets the count
    tried = [db.login(str(2000 + i), "111111", PHONE, OPEN)[0] for i in range(5)]
    assert tried == [Login.WRONG] * 4 + [Login.LOCKED_PHONE]
    assert db.login("1001", "482193", PHONE, OPEN + timedelta(minutes=14))[0] is Login.LOCKED_PHONE
    assert db.login("1001", "482193", PHONE, OPEN + timedelta(minutes=15))[0] is Login.OK


@pytest.mark.parametrize("staff_id, pin, problem", [
    ("1001", "12a456", "6 to 10 digits"), ("1001", "1234", "6 to 10 digits"), ("1001", "48291", "6 to 10 digits"),
    ("1001", "777777", "one digit repeated"), ("1001", "345678", "a run of digits"),
    ("1001", "987654", "a run of digits"), ("100100", "100100", "not be the staff ID")])
def test_a_weak_or_malformed_pin_is_refused(db, staff_id, pin, problem):
    with pytest.raises(StaffError, match=problem):
        db.add(staff_id, "Ana Ruiz", pin, OPEN)
    assert db.get(staff_id) is None


def test_ivr_staff_add_reset_disable_enable_list(cli, db):
    assert cli("staff", "add", "1001", "--name", "Ana Ruiz", "--pin-stdin", stdin="482193\n")[0] == 0
    now = datetime.now(CT_TZ)   # `ivr staff list` shows a lock by the clock on the wall, not the tests' OPEN
    assert db.login("1001", "482193", PHONE, now)[0] is Login.OK
    code, out, _ = cli("staff", "list")
    assert code == 0 and out.strip() == "1001        Ana Ruiz"

    for i in range(5):          # strangers, a new number each time: the ID locks for new numbers
        db.login("1001", "000000", f"+1203555{i:04d}", now)
    code, out, _ = cli("staff", "list")
    assert code == 0 and "1001" in out and "Ana Ruiz" in out and "(locked until " in out
    assert db.login("1001", "482193", "+12035559999", now)[0] is Login.LOCKED
    code, out, _ = cli("staff", "reset-pin", "1001", "--pin-stdin", stdin="570246\n")
    assert code == 0 and "lockout of the ID" in out
    assert "locked" not in cli("staff", "list")[1]
    assert db.login("1001", "570246", "+12035559999", now)[0] is Login.OK
    assert db.login("1001", "482193", PHONE, now)[0] is Login.WRONG

    assert cli("staff", "disable", "1001")[0] == 0
    assert db.login("1001", "570246", PHONE, now)[0] is Login.WRONG
    assert "(disabled)" in cli("staff", "list")[1]
    assert cli("staff", "enable", "1001")[0] == 0
    assert db.login("1001", "570246", PHONE, now)[0] is Login.OK


def test_a_new_pin_of_fewer_than_six_digits_is_refused_by_the_commands(cli, db):
    code, _, err = cli("staff", "add", "1002", "--name", "Bo Lee", "--pin-stdin", stdin="4829\n")
    assert code == 2 and "a PIN is 6 to 10 digits" in err and "Traceback" not in err
    assert db.get("1002") is None
    db.add("1001", "Ana Ruiz", "482193", OPEN)
    code, _, err = cli("staff", "reset-pin", "1001", "--pin-stdin", stdin="48291\n")
    assert code == 2 and "a PIN is 6 to 10 digits" in err
    assert db.login("1001", "482193", PHONE, OPEN)[0] is Login.OK      # the PIN is unchanged


def old_hash(pin: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def test_ivr_staff_list_shows_the_pins_that_must_be_reset(cli, db, redis_client):
    now = datetime.now(CT_TZ)
    db.add("1001", "Ana Ruiz", "482193", OPEN)
    for staff_id, name, pin in (("1002", "Bo Lee", "4829"), ("1003", "Cy Diaz", "570246")):
        redis_client.hset(f"ivr:staff:{staff_id}", mapping={"name": name, "pin": old_hash(pin), "disabled": "0"})
        redis_client.sadd("ivr:staff", staff_id)
    StaffDB(redis_client, b"the pepper before").add("1004", "Di Fox", "639027", OPEN)
    lines = {line.split()[0]: line for line in cli("staff", "list")[1].splitlines()}
    assert "(" not in lines["1001"]
    assert "PIN set before 6-digit PINs: reset it if it is shorter" in lines["1002"]
    assert "PIN set before 6-digit PINs" in lines["1003"]
    assert "PIN must be reset: hashed with another IVR_PIN_PEPPER or IVR_SECRET_KEY" in lines["1004"]

    # Bo keys his old 4-digit PIN: refused, and now known to be short. Cy signs in: upgraded.
    assert db.login("1002", "4829", PHONE, now)[0] is Login.SHORT
    assert db.login("1003", "570246", PHONE, now)[0] is Login.OK
    lines = {line.split()[0]: line for line in cli("staff", "list")[1].splitlines()}
    assert "(PIN must be reset: it has fewer than 6 digits)" in lines["1002"]
    assert "(" not in lines["1003"]
    assert cli("staff", "reset-pin", "1002", "--pin-stdin", stdin="729184\n")[0] == 0
    assert "(" not in {line.split()[0]: line for line in cli("staff", "list")[1].splitlines()}["1002"]
    assert db.login("1002", "729184", PHONE, now)[0] is Login.OK


def test_reset_pin_and_unlock_phone_end_a_numbers_lock(cli, db):
    now = datetime.now(CT_TZ)
    db.add("1001", "Ana Ruiz", "482193", OPEN)
    assert db.login("1001", "482193", PHONE, now)[0] is Login.OK          # Ana's phone
    for _ in range(5):
        db.login("1001", "111111", PHONE, now)                            # her typos lock her phone
    assert db.login("1001", "482193", PHONE, now)[0] is Login.LOCKED_PHONE
    assert cli("staff", "reset-pin", "1001", "--pin-stdin", stdin="570246\n")[0] == 0
    assert db.login("1001", "570246", PHONE, now)[0] is Login.OK

    other = "+12035550188"                                                # a phone Ana never used
    for i in range(5):
        db.login(str(3000 + i), "111111", other, now)
    assert db.login("1001", "570246", other, now)[0] is Login.LOCKED_PHONE
    code, out, _ = cli("staff", "unlock-phone", "(203) 555-0188")
    assert code == 0 and "+1********88 can sign in again" in out
    assert db.login("1001", "570246", other, now)[0] is Login.OK
    assert cli("staff", "unlock-phone", "203 555 0188")[0] == 1           # nothing to unlock now

    for _ in range(3):                  # withheld numbers: one bucket, 3 wrong PINs (the handler maps them)
        db.login("3100", "111111", "anonymous", now)
    assert db.login("1001", "570246", "anonymous", now)[0] is Login.LOCKED_PHONE
    assert cli("staff", "unlock-phone", "withheld")[0] == 0
    assert db.login("1001", "570246", "anonymous", now)[0] is Login.OK
    code, _, err = cli("staff", "unlock-phone", "not a number")
    assert code == 2 and "is not a phone number" in err


@pytest.mark.parametrize("argv, stdin, message", [
    (["staff", "add", "12", "--name", "Ana", "--pin-stdin"], "482193\n", "a staff ID is 3 to 10 digits"),
    (["staff", "add", "1002", "--name", "Bo", "--pin-stdin"], "123456\n", "a run of digits"),
    (["staff", "add", "1002", "--name", "Bo", "--pin-stdin"], "1234\n", "a PIN is 6 to 10 digits"),
    (["staff", "add", "1002", "--name", "  ", "--pin-stdin"], "482193\n", "a name is 1 to 80 characters"),
    (["staff", "add", "1002", "--name", "Bo"], "", "use --pin-stdin"),
    (["staff", "add", "1001", "--name", "Ana", "--pin-stdin"], "482193\n", "already exists"),
    (["staff", "reset-pin", "4040", "--pin-stdin"], "482193\n", "there is no staff ID 4040"),
    (["staff", "disable", "4040"], "", "there is no staff ID 4040"),
    (["staff", "disable", "abc"], "", "a staff ID is 3 to 10 digits"),
])
def test_bad_input_says_what_is_wrong_and_exits_non_zero(cli, db, argv, stdin, message):
    db.add("1001", "Ana Ruiz", "482193", OPEN)
    code, out, err = cli(*argv, stdin=stdin)
    assert code != 0 and message in err and "Traceback" not in err
    assert db.get("1002") is None


def test_without_redis_the_staff_commands_say_so(monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    assert main(["staff", "list"]) == 1
    err = capsys.readouterr().err
    assert "does not answer" in err and "hunter2" not in err
