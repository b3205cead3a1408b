"""Staff accounts for the staff line: a name, a peppered PIN hash, a disabled flag, and the limits on
guessing PINs.

PINs
  Kept only as scrypt hashes of HMAC-SHA256(pepper, PIN), a random salt each:
  `scrypt-p$<pepper id>$N$r$p$salt$digest`. The pepper is `IVR_PIN_PEPPER`, or else derived from
  `IVR_SECRET_KEY` (HMAC-SHA256(key, "ivr staff pin pepper")), so a copy of Redis alone does not let
  anyone try PINs offline. Hashes from before the pepper (`scrypt$...`) still sign in, and are replaced
  by a peppered hash at that sign-in. A hash made with another pepper (the key or the pepper changed)
  never matches; `ivr staff list` says so.
  New PINs have 6 to 10 digits. An old PIN with fewer digits no longer signs in: whoever keys fewer than
  6 digits hears that staff PINs now have at least 6 digits and to ask for a new one, the same words
  whether the PIN was right or not (so they tell a guesser nothing); when it was right, the account is
  marked and `ivr staff list` shows "PIN must be reset". At go-live an operator expects every PIN to
  meet the rule: keeping short PINs working would leave the weak ones live until someone noticed.

Guessing (a guesser may call from one number, or forge many caller IDs)
  Every try is counted (atomically, in Redis, shared by every worker) *before* its PIN is checked, so
  calls keying PINs at the same moment get no more checks between them than a limit allows.
  - Per call: 3 wrong tries end the call (the handler counts them).
  - Per caller number (Twilio's From), whatever IDs are tried: 5 wrong PINs lock that number out of
    signing in. Locks grow as they recur: 15 minutes, 1 hour, 4 hours, then 24 hours each, until a
    day passes after a lock without another. A right PIN clears the number's count (a staff member's
    typos do not pile up), not its lock history.
  - Withheld numbers (no usable caller ID) are all one number to us: they share one bucket, stricter
    (3 wrong PINs), because a guesser who hides their number must not get more guesses than one who
    shows it. A stranger can keep that bucket locked; staff locked out there are told to call from a
    phone that shows its number.
  - Per staff ID, counting only wrong PINs from numbers that have not signed in as that ID in the last
    90 days (its "known phones"): 5 lock the ID for such numbers, with the same growing lock times.
    A known phone is never held by the ID's lock, only by its own per-number limit. So a stranger,
    from one number or a thousand, cannot keep a staff member out of the phone they usually call
    from; a staff member on a new phone while their ID is under attack waits for the lock to end or
    asks for `ivr staff reset-pin`, which ends the ID's lock and their known phones' locks.
    (Someone who forges a known phone's number gets that number's 5 tries, and locks it.)
  Unknown IDs are counted and locked exactly like known ones (an unknown ID has no known phones), and
  the PIN is always asked before any lock is said: no answer tells an unknown ID from a known one.

Overall
  Every failed sign-in (a wrong PIN, or one refused by a lock) is counted per clock hour
  (`failures_in_hour`, for a metric); the one that goes past ALERT_PER_HOUR logs a single error line
  for that hour. Nothing locks everyone.

Lock times are stored as epoch seconds and compared with the clock passed in (tests inject one); the
keys also expire by themselves. Caller numbers appear in Redis only as HMAC tags.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import redis

from ivr.domain.directory import ANONYMOUS
from ivr.redact import mask_digits

log = logging.getLogger("ivr.staff")

ACCOUNT = "ivr:staff:{id}"          # hash: name, pin (hash), disabled ("0"/"1"), created, pin_short ("1")
INDEX = "ivr:staff"                 # set of staff IDs (`ivr staff list`)
ID_FAILS = "ivr:staff:fails:{id}"   # wrong PINs for the ID from numbers that are not its known phones
ID_LOCK = "ivr:staff:lock:{id}"     # locked for those numbers until (epoch seconds)
ID_LOCKS = "ivr:staff:locks:{id}"   # hash: n (locks in a row), until (the last one's end)
PHONES = "ivr:staff:phones:{id}"    # sorted set: caller tag -> last sign-in (epoch seconds)
CALLER_FAILS = "ivr:staff:caller:fails:{tag}"
CALLER_LOCK = "ivr:staff:caller:lock:{tag}"
CALLER_LOCKS = "ivr:staff:caller:locks:{tag}"
FAILED_HOUR = "ivr:staff:failed:{hour}"   # failed sign-ins in that clock hour (YYYYmmddHH)

TRIES_PER_CALL = 3
CALLER_MAX_FAILS = 5
SHARED_MAX_FAILS = 3                # withheld numbers, one bucket
ID_MAX_FAILS = 5                    # from numbers that are not the ID's known phones
LOCK_STEPS = (15 * 60, 3600, 4 * 3600, 24 * 3600)
LOCKS_REMEMBERED = 24 * 3600        # after a lock ends, the next one is longer for this long
FAILS_TTL = 24 * 3600               # a wrong PIN is forgotten after a day without another
KNOWN_PHONE_FOR = 90 * 24 * 3600
ALERT_PER_HOUR = 20

ID_RE = re.compile(r"^\d{3,10}$")
PIN_MIN = 6
PIN_RE = re.compile(rf"^\d{{{PIN_MIN},10}}$")
NAME_MAX = 80

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
PEPPERED, UNPEPPERED = "scrypt-p", "scrypt"
PEPPER_LABEL = b"ivr staff pin pepper"


class StaffError(ValueError):
    """Bad input for a staff account (said to the person at the command line)."""


class Login(Enum):
    OK = "ok"
    WRONG = "wrong"             # unknown ID, wrong PIN or a disabled account: one answer for all three
    SHORT = "short"             # fewer than PIN_MIN digits keyed: never signs in, right or wrong
    LOCKED = "locked"           # the ID, for numbers that are not its known phones
    LOCKED_PHONE = "locked-phone"   # the caller's number (or the withheld bucket)


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    disabled: bool


# --- hashing -----------------------------------------------------------------------------------------
def pepper_for(config: Mapping) -> bytes:
    """IVR_PIN_PEPPER when set, else derived from IVR_SECRET_KEY (changing that key changes it)."""
    given = config.get("IVR_PIN_PEPPER") or ""
    if given:
        return given.encode()
    return hmac.new(str(config["IVR_SECRET_KEY"]).encode(), PEPPER_LABEL, hashlib.sha256).digest()


def pepper_id(pepper: bytes) -> str:
    """Names the pepper a hash was made with (to tell "another pepper" from "wrong PIN"); reveals nothing of it."""
    return hmac.new(pepper, b"pepper id", hashlib.sha256).hexdigest()[:16]


def _scrypt(secret: bytes, salt: bytes, n: int, r: int, p: int, dklen: int = 32) -> bytes:
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=dklen)


def _peppered(pin: str, pepper: bytes) -> bytes:
    return hmac.new(pepper, pin.encode(), hashlib.sha256).digest()


def hash_pin(pin: str, pepper: bytes, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = _scrypt(_peppered(pin, pepper), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{PEPPERED}${pepper_id(pepper)}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str, pepper: bytes) -> bool:
    """The PIN against a peppered hash, or an old unpeppered one."""
    parts = stored.split("$")
    try:
        if parts[0] == PEPPERED and len(parts) == 7:
            same_pepper = hmac.compare_digest(parts[1], pepper_id(pepper))
            secret, (n, r, p, salt, digest) = _peppered(pin, pepper), parts[2:]
        elif parts[0] == UNPEPPERED and len(parts) == 6:
            same_pepper, secret, (n, r, p, salt, digest) = True, pin.encode(), parts[1:]
        else:
            return False
        # Checked even under another pepper: the same time whatever is stored.
        got = _scrypt(secret, bytes.fromhex(salt), int(n), int(r), int(p), len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest) and same_pepper


def hash_state(stored: str, pepper: bytes) -> str:
    """"ok", "old" (from before the pepper), "other pepper", or "unreadable"."""
    parts = stored.split("$")
    if parts[0] == PEPPERED and len(parts) == 7:
        return "ok" if parts[1] == pepper_id(pepper) else "other pepper"
    return "old" if parts[0] == UNPEPPERED and len(parts) == 6 else "unreadable"


def check_id(staff_id: str) -> str:
    staff_id = (staff_id or "").strip()
    if not ID_RE.match(staff_id):
        raise StaffError(f"a staff ID is 3 to 10 digits (keyed on a phone), not {staff_id!r}")
    return staff_id


def check_new_pin(pin: str, staff_id: str) -> str:
    """A PIN staff can key on a phone that is not trivially guessed; StaffError says what is wrong."""
    pin = (pin or "").strip()
    if not PIN_RE.match(pin):
        raise StaffError(f"a PIN is {PIN_MIN} to 10 digits")
    if len(set(pin)) == 1:
        raise StaffError("a PIN must not be one digit repeated")
    if pin in "01234567890" or pin in "09876543210":
        raise StaffError("a PIN must not be a run of digits like 123456")
    if pin == staff_id:
        raise StaffError("the PIN must not be the staff ID")
    return pin


# --- the limits, as Redis scripts (one atomic step each; EVAL, so a restarted Redis needs nothing) ---
# KEYS: caller fails, caller lock, ID fails, ID lock, ID's known phones.
# ARGV: now, caller tag ("" for the withheld bucket: never a known phone), known since, caller limit,
#       ID limit, fails TTL.
# Returns {held, caller count, ID count (0 when not counted), known}; held: "phone", "id" or "".
_RESERVE = """
local now = tonumber(ARGV[1])
local function held(key)
  local v = tonumber(redis.call("GET", key) or "")
  return v ~= nil and v > now
end
if held(KEYS[2]) then return {"phone", 0, 0, 0} end
local known = 0
if ARGV[2] ~= "" then
  local at = redis.call("ZSCORE", KEYS[5], ARGV[2])
  if at and tonumber(at) >= tonumber(ARGV[3]) then known = 1 end
end
if known == 0 and held(KEYS[4]) then return {"id", 0, 0, 0} end
if tonumber(redis.call("GET", KEYS[1]) or "0") >= tonumber(ARGV[4]) then return {"phone", 0, 0, known} end
local n_id = 0
if known == 0 then
  if tonumber(redis.call("GET", KEYS[3]) or "0") >= tonumber(ARGV[5]) then return {"id", 0, 0, 0} end
  n_id = redis.call("INCR", KEYS[3])
  redis.call("EXPIRE", KEYS[3], ARGV[6])
end
local n_caller = redis.call("INCR", KEYS[1])
redis.call("EXPIRE", KEYS[1], ARGV[6])
return {"", n_caller, n_id, known}
"""

# KEYS: fails, lock, lock history.  ARGV: now, seconds a lock is remembered after it ends, lock steps...
# Returns {the lock's number in a row, its seconds}.
_LOCK = """
local now = tonumber(ARGV[1])
local n = tonumber(redis.call("HGET", KEYS[3], "n") or "0")
local last = tonumber(redis.call("HGET", KEYS[3], "until") or "0")
if now > last + tonumber(ARGV[2]) then n = 0 end
n = n + 1
local secs = tonumber(ARGV[2 + math.min(n, #ARGV - 2)])
redis.call("SET", KEYS[2], now + secs, "EX", secs)
redis.call("HSET", KEYS[3], "n", n, "until", now + secs)
redis.call("EXPIRE", KEYS[3], secs + tonumber(ARGV[2]))
redis.call("DEL", KEYS[1])
return {n, secs}
"""

# KEYS: a count to give one try back to (a right PIN is no failure); deleted at zero.
_GIVE_BACK = """
if redis.call("EXISTS", KEYS[1]) == 1 and redis.call("DECR", KEYS[1]) <= 0 then redis.call("DEL", KEYS[1]) end
return 0
"""

# KEYS: account.  ARGV: the hash checked, its upgrade. Never over a PIN reset in between.
_UPGRADE = """
if redis.call("HGET", KEYS[1], "pin") == ARGV[1] then redis.call("HSET", KEYS[1], "pin", ARGV[2]) return 1 end
return 0
"""


class StaffDB:
    def __init__(self, client: redis.Redis, pepper: bytes) -> None:
        self.redis = client
        self.pepper = pepper
        self._tag_key = hmac.new(pepper, b"staff caller tag", hashlib.sha256).digest()
        # Checked against when the ID is unknown, so that a wrong ID costs as long as a wrong PIN.
        self._dummy = hash_pin("000000", pepper, salt=b"\0" * 16)

    # --- accounts (the `ivr staff` commands) --------------------------------------------------
    def get(self, staff_id: str) -> Staff | None:
        data = self.redis.hgetall(ACCOUNT.format(id=staff_id))
        if not data:
            return None
        d = {_text(k): _text(v) for k, v in data.items()}
        return Staff(staff_id, d.get("name", ""), d.get("disabled") == "1")

    def member(self, staff_id: str) -> Staff:
        """The enabled account a command's `--by` names (the audit trail keeps its ID); StaffError if none."""
        staff = self.get(check_id(staff_id))
        if staff is None:
            raise StaffError(f"--by: no staff account {staff_id.strip()} (`ivr staff list` shows them)")
        if staff.disabled:
            raise StaffError(f"--by: staff account {staff.id} is disabled")
        return staff

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
        pipe.hset(key, mapping={"pin": hash_pin(pin, self.pepper), "disabled": "0", "created": now.isoformat()})
        pipe.sadd(INDEX, staff_id)
        pipe.delete(*self._id_keys(staff_id))
        pipe.execute()
        return Staff(staff_id, name, False)

    def reset_pin(self, staff_id: str, pin: str) -> Staff:
        """A new PIN; also ends the ID's lock and the locks of the phones it signed in from."""
        staff = self._existing(staff_id)
        pin = check_new_pin(pin, staff.id)
        tags = [_text(t) for t in self.redis.zrange(PHONES.format(id=staff.id), 0, -1)]
        pipe = self.redis.pipeline()
        pipe.hset(ACCOUNT.format(id=staff.id), "pin", hash_pin(pin, self.pepper))
        pipe.hdel(ACCOUNT.format(id=staff.id), "pin_short")
        pipe.delete(*self._id_keys(staff.id))
        for tag in tags:
            pipe.delete(*self._caller_keys(tag))
        pipe.execute()
        return staff

    def unlock_caller(self, caller: str) -> bool:
        """End a caller number's lock (or the withheld bucket's: caller "anonymous"); False if none."""
        keys = self._caller_keys(self.caller_tag(caller))
        return bool(self.redis.delete(*keys))

    def set_disabled(self, staff_id: str, disabled: bool) -> Staff:
        staff = self._existing(staff_id)
        self.redis.hset(ACCOUNT.format(id=staff.id), "disabled", "1" if disabled else "0")
        return Staff(staff.id, staff.name, disabled)

    def all(self) -> list[Staff]:
        ids = sorted(_text(i) for i in self.redis.smembers(INDEX))
        return [s for s in (self.get(i) for i in ids) if s is not None]

    def pin_problem(self, staff_id: str) -> str | None:
        """Why an account's PIN must (or may have to) be reset, for `ivr staff list`; None when fine."""
        short, stored = self.redis.hmget(ACCOUNT.format(id=staff_id), "pin_short", "pin")
        if short:
            return f"PIN must be reset: it has fewer than {PIN_MIN} digits"
        state = hash_state(_text(stored or ""), self.pepper)
        if state == "other pepper":
            return "PIN must be reset: hashed with another IVR_PIN_PEPPER or IVR_SECRET_KEY"
        if state == "unreadable":
            return "PIN must be reset: no usable PIN hash"
        if state == "old":
            return f"PIN set before {PIN_MIN}-digit PINs: reset it if it is shorter (upgraded at its next sign-in)"
        return None

    def _existing(self, staff_id: str) -> Staff:
        staff = self.get(check_id(staff_id))
        if staff is None:
            raise StaffError(f"there is no staff ID {staff_id}")
        return staff

    # --- keys ------------------------------------------------------------------------------------
    def caller_tag(self, caller: str) -> str:
        """A caller number (E.164, or "anonymous") as it is named in Redis: a tag, never the number."""
        return hmac.new(self._tag_key, caller.encode(), hashlib.sha256).hexdigest()[:24]

    @staticmethod
    def _id_keys(staff_id: str) -> tuple[str, str, str]:
        return ID_FAILS.format(id=staff_id), ID_LOCK.format(id=staff_id), ID_LOCKS.format(id=staff_id)

    @staticmethod
    def _caller_keys(tag: str) -> tuple[str, str, str]:
        return CALLER_FAILS.format(tag=tag), CALLER_LOCK.format(tag=tag), CALLER_LOCKS.format(tag=tag)

    # --- signing in on the phone ---------------------------------------------------------------
    def locked_until(self, staff_id: str, now: datetime) -> datetime | None:
        """When the ID's lock (for numbers that are not its known phones) ends, if it is locked."""
        try:
            until = float(self.redis.get(ID_LOCK.format(id=staff_id)) or 0)
        except ValueError:      # a lock in an older format: 15 minutes at most, and expiring
            return None
        return datetime.fromtimestamp(until, now.tzinfo) if until > now.timestamp() else None

    def login(self, staff_id: str, pin: str, caller: str, now: datetime) -> tuple[Login, Staff | None]:
        """Check a sign-in from `caller` (E.164, or "anonymous" for a withheld number)."""
        if not ID_RE.match(staff_id or ""):
            return Login.WRONG, None
        shared = caller == ANONYMOUS
        tag = self.caller_tag(caller)
        c_fails, c_lock, c_locks = self._caller_keys(tag)
        i_fails, i_lock, i_locks = self._id_keys(staff_id)
        phones = PHONES.format(id=staff_id)
        ts = now.timestamp()
        caller_limit = SHARED_MAX_FAILS if shared else CALLER_MAX_FAILS
        pipe = self.redis.pipeline(transaction=False)   # one round trip: the try counted, the account
        pipe.eval(_RESERVE, 5, c_fails, c_lock, i_fails, i_lock, phones,
                  ts, "" if shared else tag, ts - KNOWN_PHONE_FOR, caller_limit, ID_MAX_FAILS, FAILS_TTL)
        pipe.hgetall(ACCOUNT.format(id=staff_id))
        (held, n_caller, n_id, _), account = pipe.execute()
        held = _text(held)
        if held:
            self._count_failure(now)
            return (Login.LOCKED_PHONE if held == "phone" else Login.LOCKED), None

        data = {_text(k): _text(v) for k, v in account.items()}
        stored = data.get("pin") or ""
        good = check_pin(pin, stored or self._dummy, self.pepper) and bool(stored)
        short = len(pin) < PIN_MIN
        if good and not short and data.get("disabled") != "1":
            self._signed_in(staff_id, pin, stored, tag if not shared else None, c_fails,
                            i_fails if n_id else None, ts)
            return Login.OK, Staff(staff_id, data.get("name", ""), False)
        if good and short:
            self.redis.hset(ACCOUNT.format(id=staff_id), "pin_short", "1")

        result = Login.SHORT if short else Login.WRONG
        if n_id and int(n_id) >= ID_MAX_FAILS:
            n, secs = self.redis.eval(_LOCK, 3, i_fails, i_lock, i_locks, ts, LOCKS_REMEMBERED, *LOCK_STEPS)
            log.warning("staff line: staff ID %s locked for %d min for numbers it never signed in from "
                        "(lock %d in a row)", mask_digits(staff_id), int(secs) // 60, n)
            result = Login.LOCKED if not short else result
        if int(n_caller) >= caller_limit:
            n, secs = self.redis.eval(_LOCK, 3, c_fails, c_lock, c_locks, ts, LOCKS_REMEMBERED, *LOCK_STEPS)
            log.warning("staff line: %s locked out of signing in for %d min after %d wrong PINs "
                        "(lock %d in a row)", "the withheld numbers' bucket" if shared else "a caller number",
                        int(secs) // 60, int(n_caller), n)
            result = Login.LOCKED_PHONE if not short else result
        self._count_failure(now)
        return result, None

    def _signed_in(self, staff_id: str, pin: str, stored: str, tag: str | None, caller_fails: str,
                   id_fails: str | None, ts: float) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(caller_fails)
        if id_fails:
            pipe.eval(_GIVE_BACK, 1, id_fails)
        if tag:
            phones = PHONES.format(id=staff_id)
            pipe.zadd(phones, {tag: ts})
            pipe.zremrangebyscore(phones, "-inf", ts - KNOWN_PHONE_FOR)
            pipe.expire(phones, KNOWN_PHONE_FOR)
        if hash_state(stored, self.pepper) == "old":
            pipe.eval(_UPGRADE, 1, ACCOUNT.format(id=staff_id), stored, hash_pin(pin, self.pepper))
        pipe.execute()

    # --- failures overall -------------------------------------------------------------------------
    def _count_failure(self, now: datetime) -> None:
        key = FAILED_HOUR.format(hour=now.strftime("%Y%m%d%H"))
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 2 * 3600)
        count = pipe.execute()[0]
        if count == ALERT_PER_HOUR + 1:   # INCR is atomic: exactly one worker sees this value
            log.error("staff line: more than %d failed sign-ins in the hour from %s: someone may be guessing "
                      "staff PINs (`ivr staff list` shows locked IDs)", ALERT_PER_HOUR, now.strftime("%H:00"))

    def failures_in_hour(self, now: datetime) -> int:
        """Failed sign-ins (wrong PINs and tries refused by a lock) in the clock hour of `now`."""
        return int(self.redis.get(FAILED_HOUR.format(hour=now.strftime("%Y%m%d%H"))) or 0)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
