"""Guessing staff PINs on the staff line, through the simulated phone: a guesser is stopped per caller
number whatever IDs they try, a stranger cannot lock a staff member out of their usual phone, withheld
numbers share one stricter bucket, many failures raise one alert, unknown and locked IDs sound the
same, and PIN hashes are peppered (old ones upgraded at sign-in, short old PINs refused).

The design is in ivr/domain/staffdb.py's docstring. The numbers here (5 wrong PINs per number, 3 for withheld
numbers, 5 per ID from numbers that never signed in as it, locks of 15 minutes, 1 hour, 4 hours, 24
hours, an alert past 20 failures in an hour) are the ones it states.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import timedelta

import pytest

PIN = "482193"
WRONG = "913570"
ANA_PHONE = "+18605550101"       # the phone Ana Ruiz signs in from
GUESSER = "+12035550177"


def stranger(n: int) -> str:
    return f"+1203555{n:04d}"


@pytest.fixture
def staffdb(app):
    return app.extensions["ivr"].services.staffdb


@pytest.fixture
def staff(staffdb, clock):
    return staffdb.add("1001", "Ana Ruiz", PIN, clock())


def sign_in(call, staff_id: str = "1001", pin: str = PIN, caller: str = ANA_PHONE):
    return call("staff", ["-", f"{staff_id}#", f"{pin}#"], caller=caller)


def one_try(call, caller: str, staff_id: str, pin: str = WRONG) -> str:
    """One sign-in in one call: "in", "wrong" (asked to try again) or "locked" (told goodbye)."""
    c = sign_in(call, staff_id, pin, caller)
    assert "Now enter your PIN" in c.said_after(1), c.said   # the PIN is always asked
    if "Staff menu" in c.said:
        return "in"
    if "do not match" in c.said and not c.hung_up:
        return "wrong"
    assert c.hung_up and "Goodbye" in c.said, c.said
    return "locked"


def tries(call, caller: str, n: int, first_id: int) -> list[str]:
    """n wrong PINs from one number, each for another (unknown) ID, so that only the number counts."""
    return [one_try(call, caller, str(first_id + i)) for i in range(n)]


def old_hash(pin: str) -> str:
    """A PIN hash as stored before the pepper (plain scrypt of the PIN)."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def old_account(redis_client, staff_id: str, name: str, pin: str) -> None:
    redis_client.hset(f"ivr:staff:{staff_id}", mapping={"name": name, "pin": old_hash(pin), "disabled": "0",
                                                         "created": "2026-01-05T09:00:00-05:00"})
    redis_client.sadd("ivr:staff", staff_id)


# --- a guesser is limited per caller number, with escalating locks ---------------------------------
def test_a_guesser_from_one_number_is_stopped_across_many_ids(call, staff):
    # Five IDs, one wrong PIN each: the fifth locks the number (and is answered so).
    assert tries(call, GUESSER, 5, first_id=2001) == ["wrong"] * 4 + ["locked"]
    # Locked: even the right PIN of a real ID is not checked.
    assert one_try(call, GUESSER, "1001", PIN) == "locked"
    assert one_try(call, GUESSER, "2999") == "locked"
    # Ana, from her own phone, is not affected.
    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"


def test_a_numbers_locks_grow_longer_as_they_recur_within_a_day(call, staff, clock):
    start = clock.now
    ids = iter(range(3000, 4000, 10))

    def lock_again(at):
        clock.now = at
        assert tries(call, GUESSER, 5, next(ids)) == ["wrong"] * 4 + ["locked"]

    def still_locked_until(end):
        clock.now = end - timedelta(minutes=1)
        assert tries(call, GUESSER, 1, next(ids)) == ["locked"]
        return end

    lock_again(start)
    t = still_locked_until(start + timedelta(minutes=15))
    lock_again(t)
    t = still_locked_until(t + timedelta(hours=1))
    lock_again(t)
    t = still_locked_until(t + timedelta(hours=4))
    lock_again(t)
    t = still_locked_until(t + timedelta(hours=24))
    lock_again(t)
    t = still_locked_until(t + timedelta(hours=24))                 # 24 hours stays the longest
    # A day without a lock: back to 15 minutes.
    lock_again(t + timedelta(hours=24, minutes=1))
    still_locked_until(clock.now + timedelta(minutes=15))
    clock.now += timedelta(minutes=1)
    assert tries(call, GUESSER, 1, next(ids)) == ["wrong"]


def test_a_right_pin_clears_the_numbers_count(call, staff):
    """Ana's own typos do not pile up into a lock: a sign-in starts her number's count again."""
    assert tries(call, ANA_PHONE, 4, first_id=1001) == ["wrong"] * 4      # 1001 wrong, then 1002...
    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"
    assert tries(call, ANA_PHONE, 4, first_id=2001) == ["wrong"] * 4
    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"


def test_withheld_numbers_share_one_stricter_bucket(call, staff):
    """Callers without a usable number are one bucket (three wrong PINs between them), and are told
    to call from a phone that shows its number; staff with their number shown are not affected."""
    withheld = ("anonymous", "+266696687", "Restricted")
    assert [one_try(call, who, "2001") for who in withheld] == ["wrong", "wrong", "locked"]
    c = sign_in(call, "1001", PIN, "anonymous")
    assert "Hello" not in c.said and c.hung_up
    assert "a phone that shows its number" in c.said
    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"


# --- a stranger cannot lock a staff member out ------------------------------------------------------
def test_a_strangers_wrong_pins_do_not_lock_the_staff_member_out_of_their_phone(call, staff):
    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"              # Ana has signed in from her phone
    answers = [one_try(call, stranger(i), "1001") for i in range(12)]  # a stranger, a new number each time
    assert answers[:4] == ["wrong"] * 4 and set(answers[4:]) == {"locked"}
    # The ID is locked for numbers that never signed in as 1001, even with the right PIN...
    assert one_try(call, stranger(99), "1001", PIN) == "locked"
    # ...but Ana, from her phone, signs in.
    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"


def test_a_strangers_lock_on_an_id_ends_by_itself(call, staff, clock):
    for i in range(5):
        one_try(call, stranger(i), "1001")
    assert one_try(call, stranger(50), "1001", PIN) == "locked"
    clock.now += timedelta(minutes=15)
    assert one_try(call, stranger(50), "1001", PIN) == "in"          # a new phone, once the lock is over


def test_unknown_and_locked_ids_sound_the_same_and_the_pin_is_always_asked(call, staff):
    """A locked ID used to be announced before the PIN was asked: that told a guesser which IDs exist."""
    # Not locked: a wrong PIN for a real ID and for an unknown one.
    real, made_up = sign_in(call, "1001", WRONG, stranger(60)), sign_in(call, "5556", WRONG, stranger(61))
    assert real.said == made_up.said and real.documents == made_up.documents
    for i in range(5):
        one_try(call, stranger(i), "1001")
        one_try(call, stranger(10 + i), "5555")
    known = sign_in(call, "1001", WRONG, stranger(50))
    unknown = sign_in(call, "5555", WRONG, stranger(51))
    assert "Now enter your PIN" in known.said and "Hello" not in known.said and known.hung_up
    assert known.said == unknown.said
    assert known.documents == unknown.documents


# --- failures overall raise one alert, and lock no one -----------------------------------------------
def test_many_failed_sign_ins_in_an_hour_raise_one_alert_line(call, staff, staffdb, clock, caplog):
    caplog.set_level(logging.INFO)
    for i in range(25):                       # a new number and a new ID each time: no limit is reached
        assert one_try(call, stranger(i), str(4000 + i)) == "wrong"
    alerts = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(alerts) == 1, [r.getMessage() for r in alerts]
    assert "failed sign-ins" in alerts[0].getMessage() and alerts[0].name == "ivr.staff"
    assert staffdb.failures_in_hour(clock()) == 25              # the count, for a metric later
    assert one_try(call, stranger(99), "1001", PIN) == "in"     # nobody is locked out by it

    clock.now += timedelta(hours=1)            # a new hour: a new count, and one alert again
    for i in range(25):
        one_try(call, stranger(100 + i), str(5000 + i))
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 2
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert WRONG not in logged and "2035550" not in logged


# --- the pepper, old hashes, old short PINs ---------------------------------------------------------
def test_an_old_hash_is_upgraded_to_a_peppered_one_at_the_next_sign_in(call, redis_client):
    old_account(redis_client, "1001", "Ana Ruiz", PIN)
    before = redis_client.hget("ivr:staff:1001", "pin").decode()
    assert one_try(call, ANA_PHONE, "1001", WRONG) == "wrong"
    assert redis_client.hget("ivr:staff:1001", "pin").decode() == before       # not on a wrong PIN

    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"
    stored = redis_client.hget("ivr:staff:1001", "pin").decode()
    assert stored.startswith("scrypt-p$") and PIN not in stored
    kind, pepper_id, n, r, p, salt, digest = stored.split("$")
    plain = hashlib.scrypt(PIN.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    assert plain.hex() != digest                 # not the PIN's plain scrypt: Redis alone is not enough
    assert one_try(call, ANA_PHONE, "1001", PIN) == "in"
    assert redis_client.hget("ivr:staff:1001", "pin").decode() == stored       # upgraded once


def test_pins_only_check_with_the_same_pepper(make_app, call, staff):
    """IVR_PIN_PEPPER, or derived from IVR_SECRET_KEY: another pepper makes every PIN wrong."""
    def sign_in_on(app) -> str:
        return call("staff", ["-", "1001#", PIN + "#"], caller=ANA_PHONE, target_app=app).said

    assert "Hello, Ana Ruiz." in sign_in(call).said
    assert "Hello, Ana Ruiz." not in sign_in_on(make_app(IVR_PIN_PEPPER="another-pepper-" + "x" * 32))
    assert "Hello, Ana Ruiz." not in sign_in_on(make_app(IVR_SECRET_KEY="another-secret-key-" + "y" * 32))
    assert "Hello, Ana Ruiz." in sign_in_on(make_app())


def test_an_old_pin_shorter_than_six_digits_no_longer_signs_in(call, redis_client, staff):
    old_account(redis_client, "1002", "Bo Lee", "4829")
    right, wrong = sign_in(call, "1002", "4829"), sign_in(call, "1002", "4830", caller=stranger(1))
    assert "Hello" not in right.said and "at least 6 digits" in right.said
    assert right.said == wrong.said            # the same words whether the short PIN was right or not
    # A staff member whose PIN has 6 digits or more is not affected, old hash or new.
    old_account(redis_client, "1003", "Cy Diaz", "570246")
    assert one_try(call, stranger(2), "1003", "570246") == "in"
