"""Staff accounts for the staff line: a name, a salted PIN hash, a disabled flag, and the lockout.

PINs are kept only as scrypt hashes (stdlib `hashlib.scrypt`, a random salt each). Three wrong PINs in a
row lock that staff ID for 15 minutes, whether or not the ID exists, so the answer never tells an
unknown ID from a known one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

import redis

ACCOUNT = "ivr:staff:{id}"          # hash: name, pin (scrypt), disabled ("0"/"1"), created
INDEX = "ivr:staff"                 # set of staff IDs (`ivr staff list`)
FAILS = "ivr:staff:fails:{id}"      # wrong PINs in a row
LOCK = "ivr:staff:lock:{id}"        # value: locked until (ISO time); expires by itself

MAX_FAILS = 3
LOCK_FOR = timedelta(minutes=15)
FAILS_TTL = 24 * 3600               # a wrong PIN is forgotten after a day without another
ID_RE = re.compile(r"^\d{3,10}$")
PIN_RE = re.compile(r"^\d{4,10}$")
NAME_MAX = 80

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


class StaffError(ValueError):
    """Bad input for a staff account (said to the person at the command line)."""


class Login(Enum):
    OK = "ok"
    WRONG = "wrong"     # unknown ID, wrong PIN or a disabled account: one answer for all three
    LOCKED = "locked"


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    disabled: bool


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# Checked against when the ID is unknown, so that a wrong ID costs as long as a wrong PIN.
_DUMMY = hash_pin("0000", salt=b"\0" * 16)


def check_id(staff_id: str) -> str:
    staff_id = (staff_id or "").strip()
    if not ID_RE.match(staff_id):
        raise StaffError(f"a staff ID is 3 to 10 digits (keyed on a phone), not {staff_id!r}")
    return staff_id


def check_new_pin(pin: str, staff_id: str) -> str:
    """A PIN staff can key on a phone that is not trivially guessed; StaffError says what is wrong."""
    pin = (pin or "").strip()
    if not PIN_RE.match(pin):
        raise StaffError("a PIN is 4 to 10 digits")
    if len(set(pin)) == 1:
        raise StaffError("a PIN must not be one digit repeated")
    if pin in "01234567890" or pin in "09876543210":
        raise StaffError("a PIN must not be a run of digits like 1234")
    if pin == staff_id:
        raise StaffError("the PIN must not be the staff ID")
    return pin


class StaffDB:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # --- accounts (the `ivr staff` commands) --------------------------------------------------
    def get(self, staff_id: str) -> Staff | None:
        data = self.redis.hgetall(ACCOUNT.format(id=staff_id))
        if not data:
            return None
        d = {_text(k): _text(v) for k, v in data.items()}
        return Staff(staff_id, d.get("name", ""), d.get("disabled") == "1")

    def add(self, staff_id: str, name: str, pin: str, now: datetime) -> Staff:
        staff_id = check_id(staff_id)
        name = " ".join((name or "").split())
        if not name or len(name) > NAME_MAX:
            raise StaffError(f"a name is 1 to {NAME_MAX} characters")
        pin = check_new_pin(pin, staff_id)
        key = ACCOUNT.format(id=staff_id)
        if not self.redis.hsetnx(key, "name", name):
            raise StaffError(f"staff ID {staff_id} already exists; use `ivr staff reset-pin {staff_id}`")
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"pin": hash_pin(pin), "disabled": "0", "created": now.isoformat()})
        pipe.sadd(INDEX, staff_id)
        pipe.delete(FAILS.format(id=staff_id), LOCK.format(id=staff_id))
        pipe.execute()
        return Staff(staff_id, name, False)

    def reset_pin(self, staff_id: str, pin: str) -> Staff:
        staff = self._existing(staff_id)
        pin = check_new_pin(pin, staff.id)
        pipe = self.redis.pipeline()
        pipe.hset(ACCOUNT.format(id=staff.id), "pin", hash_pin(pin))
        pipe.delete(FAILS.format(id=staff.id), LOCK.format(id=staff.id))  # a new PIN also unlocks
        pipe.execute()
        return staff

    def set_disabled(self, staff_id: str, disabled: bool) -> Staff:
        staff = self._existing(staff_id)
        self.redis.hset(ACCOUNT.format(id=staff.id), "disabled", "1" if disabled else "0")
        return Staff(staff.id, staff.name, disabled)

    def all(self) -> list[Staff]:
        ids = sorted(_text(i) for i in self.redis.smembers(INDEX))
        return [s for s in (self.get(i) for i in ids) if s is not None]

    def _existing(self, staff_id: str) -> Staff:
        staff = self.get(check_id(staff_id))
        if staff is None:
            raise StaffError(f"there is no staff ID {staff_id}")
        return staff

    # --- signing in on the phone ---------------------------------------------------------------
    def locked_until(self, staff_id: str, now: datetime) -> datetime | None:
        return self._until(self.redis.get(LOCK.format(id=staff_id)), now)

    @staticmethod
    def _until(raw, now: datetime) -> datetime | None:
        if not raw:
            return None
        try:
            until = datetime.fromisoformat(_text(raw))
        except ValueError:
            return None
        # The key expires by itself in real time; the stored time also makes the lock follow an
        # injected clock (tests), so both must agree that it is still locked.
        return until if now < until else None

    def login(self, staff_id: str, pin: str, now: datetime) -> tuple[Login, Staff | None]:
        if not ID_RE.match(staff_id or ""):
            return Login.WRONG, None
        if self.locked_until(staff_id, now):
            return Login.LOCKED, None
        # The try is counted before the PIN is checked (INCR is atomic, the lock read with it), so
        # calls keying PINs for one ID at the same moment get MAX_FAILS checks between them, no more.
        # The account comes in the same round trip.
        fails_key = FAILS.format(id=staff_id)
        pipe = self.redis.pipeline()
        pipe.incr(fails_key)
        pipe.expire(fails_key, FAILS_TTL)
        pipe.get(LOCK.format(id=staff_id))
        pipe.hgetall(ACCOUNT.format(id=staff_id))
        fails, _, lock, account = pipe.execute()
        if self._until(lock, now) or int(fails) > MAX_FAILS:
            return Login.LOCKED, None
        data = {_text(k): _text(v) for k, v in account.items()}
        good = check_pin(pin, data.get("pin") or _DUMMY) and bool(data.get("pin"))
        if good and data.get("disabled") != "1":
            self.redis.delete(fails_key)
            return Login.OK, Staff(staff_id, data.get("name", ""), False)
        if int(fails) >= MAX_FAILS:
            until = now + LOCK_FOR
            pipe = self.redis.pipeline()
            pipe.set(LOCK.format(id=staff_id), until.isoformat(), ex=int(LOCK_FOR.total_seconds()))
            pipe.delete(fails_key)
            pipe.execute()
            return Login.LOCKED, None
        return Login.WRONG, None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
