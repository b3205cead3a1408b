"""Console sign-in for staff accounts: role, password, second factor (TOTP) and the lock on wrong passwords.

The same staff records as the phone line (`ivr:staff:{id}`, ivr/staffdb.py) gain fields:
  role      "caseworker" (default) or "supervisor"
  pw        scrypt hash of HMAC-SHA256(pepper, password), a random salt each (the PIN's scheme); the
            pepper is IVR_PASSWORD_PEPPER, else derived from IVR_SECRET_KEY, so a copy of Redis alone
            lets no one try passwords offline
  pw_at     when the password was set
  totp      the TOTP secret, sealed (ivr/sealing.py): a Redis dump does not give the second factor
  totp_step the last time step a code was accepted for (a code is never taken twice)

Wrong passwords (and wrong codes) are counted per account, atomically in Redis; the fifth in a row locks
the account for LOCK_SECONDS and logs one error line (the alert). A right password clears the count.
Sign-in tries are also limited per client address (`throttle`), whatever IDs they name, so a guesser
cannot walk through every account's five tries from one machine.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import pyotp
import redis

from ivr.domain.staffdb import ACCOUNT, ID_RE, StaffError, check_pin, hash_pin
from ivr.redact import mask_digits
from ivr.sealing import Sealer

log = logging.getLogger("ivr.console.accounts")

ROLES = ("caseworker", "supervisor")
PASSWORD_MIN = 12
PASSWORD_MAX = 200
MAX_FAILS = 5
LOCK_SECONDS = 15 * 60
FAILS = "ivr:console:fails:{id}"
LOCK = "ivr:console:lock:{id}"
THROTTLE = "ivr:console:throttle:{tag}:{window}"
THROTTLE_WINDOW = 300          # seconds
THROTTLE_MAX = 30              # sign-in tries per client address per window
PEPPER_LABEL = b"ivr console password pepper"
ISSUER = "CT SES IVR console"


class SignIn(Enum):
    OK = "ok"
    NEEDS_CODE = "needs code"      # right password; a supervisor's code comes next
    WRONG = "wrong"                # unknown ID, wrong password, no password set or disabled: one answer
    LOCKED = "locked"


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    role: str
    disabled: bool
    has_password: bool
    has_totp: bool

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"


def password_pepper(config: Mapping) -> bytes:
    """IVR_PASSWORD_PEPPER when set, else derived from IVR_SECRET_KEY."""
    given = config.get("IVR_PASSWORD_PEPPER") or ""
    if given:
        return given.encode()
    return hmac.new(str(config["IVR_SECRET_KEY"]).encode(), PEPPER_LABEL, hashlib.sha256).digest()


def check_password(password: str, staff_id: str = "") -> str:
    """A password people can keep: PASSWORD_MIN characters or more; StaffError says what is wrong."""
    if len(password) < PASSWORD_MIN:
        raise StaffError(f"a password has at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise StaffError(f"a password has at most {PASSWORD_MAX} characters")
    if not password.isprintable():
        raise StaffError("a password is one line of printable characters")
    if len(set(password)) < 4:
        raise StaffError("a password needs more different characters")
    if staff_id and staff_id in password:
        raise StaffError("the password must not contain the staff ID")
    return password


def check_role(role: str) -> str:
    if role not in ROLES:
        raise StaffError(f"a role is {' or '.join(ROLES)}, not {role!r}")
    return role


class Accounts:
    def __init__(self, client: redis.Redis, pepper: bytes, sealer: Sealer) -> None:
        self.redis = client
        self.pepper = pepper
        self.sealer = sealer
        self._dummy = hash_pin("not a password at all", pepper, salt=b"\0" * 16)

    # --- reading ----------------------------------------------------------------------------
    def get(self, staff_id: str) -> Account | None:
        if not ID_RE.match(staff_id or ""):
            return None
        data = {_text(k): _text(v) for k, v in self.redis.hgetall(ACCOUNT.format(id=staff_id)).items()}
        if not data:
            return None
        return Account(staff_id, data.get("name", ""), data.get("role") or "caseworker",
                       data.get("disabled") == "1", bool(data.get("pw")), bool(data.get("totp")))

    def locked_until(self, staff_id: str, now: datetime) -> datetime | None:
        until = float(self.redis.get(LOCK.format(id=staff_id)) or 0)
        return datetime.fromtimestamp(until, now.tzinfo) if until > now.timestamp() else None

    # --- changing (the `ivr staff` commands and the accounts page) -----------------------------
    def set_password(self, staff_id: str, password: str, now: datetime) -> Account:
        account = self._existing(staff_id)
        check_password(password, staff_id)
        pipe = self.redis.pipeline()
        pipe.hset(ACCOUNT.format(id=staff_id), mapping={"pw": hash_pin(password, self.pepper),
                                                        "pw_at": now.isoformat()})
        pipe.delete(FAILS.format(id=staff_id), LOCK.format(id=staff_id))
        pipe.execute()
        return account

    def set_role(self, staff_id: str, role: str) -> Account:
        self._existing(staff_id)
        self.redis.hset(ACCOUNT.format(id=staff_id), "role", check_role(role))
        return self._existing(staff_id)

    def new_totp(self, staff_id: str) -> tuple[str, str]:
        """A new second-factor secret for the account; (secret, provisioning URI) to show once."""
        account = self._existing(staff_id)
        secret = pyotp.random_base32()
        self.redis.hset(ACCOUNT.format(id=staff_id), mapping={"totp": self.sealer.seal(secret), "totp_step": "0"})
        uri = pyotp.TOTP(secret).provisioning_uri(name=f"{account.id} {account.name}", issuer_name=ISSUER)
        return secret, uri

    def unlock(self, staff_id: str) -> bool:
        return bool(self.redis.delete(FAILS.format(id=staff_id), LOCK.format(id=staff_id)))

    def _existing(self, staff_id: str) -> Account:
        account = self.get(staff_id)
        if account is None:
            raise StaffError(f"there is no staff ID {staff_id}")
        return account

    # --- signing in -------------------------------------------------------------------------
    def throttle(self, client_tag: str, now: datetime) -> bool:
        """Count a sign-in try from one client address; False when it is over the limit."""
        key = THROTTLE.format(tag=client_tag, window=int(now.timestamp()) // THROTTLE_WINDOW)
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, THROTTLE_WINDOW * 2)
        return int(pipe.execute()[0]) <= THROTTLE_MAX

    def sign_in(self, staff_id: str, password: str, now: datetime) -> tuple[SignIn, Account | None]:
        staff_id = (staff_id or "").strip()
        known = ID_RE.match(staff_id) is not None
        if known and self.locked_until(staff_id, now):
            return SignIn.LOCKED, None
        stored = self.redis.hget(ACCOUNT.format(id=staff_id), "pw") if known else None
        # Checked against a dummy hash when there is none: an unknown ID costs as long as a wrong password.
        good = check_pin(password or "", _text(stored) if stored else self._dummy, self.pepper) and bool(stored)
        account = self.get(staff_id) if good else None
        if account is None or account.disabled:
            return (self._wrong(staff_id, now) if known else SignIn.WRONG), None
        self.redis.delete(FAILS.format(id=staff_id))
        if account.supervisor:
            return SignIn.NEEDS_CODE, account
        return SignIn.OK, account

    def check_code(self, staff_id: str, code: str, now: datetime) -> SignIn:
        """A supervisor's TOTP code (this step or the one either side, each taken once)."""
        if self.locked_until(staff_id, now):
            return SignIn.LOCKED
        sealed, last = self.redis.hmget(ACCOUNT.format(id=staff_id), "totp", "totp_step")
        secret = self.sealer.unseal(_text(sealed)) if sealed else None
        code = (code or "").strip().replace(" ", "")
        if secret and code.isdigit() and len(code) == 6:
            totp = pyotp.TOTP(secret)
            step = int(now.timestamp()) // totp.interval
            for s in (step, step - 1, step + 1):
                if s > int(last or 0) and hmac.compare_digest(totp.at(s * totp.interval), code):
                    self.redis.hset(ACCOUNT.format(id=staff_id), "totp_step", s)
                    return SignIn.OK
        return self._wrong(staff_id, now)

    def _wrong(self, staff_id: str, now: datetime) -> SignIn:
        pipe = self.redis.pipeline()
        pipe.incr(FAILS.format(id=staff_id))
        pipe.expire(FAILS.format(id=staff_id), 24 * 3600)
        fails = int(pipe.execute()[0])
        if fails >= MAX_FAILS:
            pipe = self.redis.pipeline()
            pipe.set(LOCK.format(id=staff_id), now.timestamp() + LOCK_SECONDS, ex=LOCK_SECONDS)
            pipe.delete(FAILS.format(id=staff_id))
            pipe.execute()
            log.error("console: staff ID %s locked for %d minutes after %d wrong passwords or codes in a row "
                      "(someone may be guessing; `ivr staff unlock-console ID` ends it)",
                      mask_digits(staff_id), LOCK_SECONDS // 60, fails)
            return SignIn.LOCKED
        return SignIn.WRONG


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
