"""The payment line's settings and its limits on PIN guessing, shared by every worker through Redis.

The settings come from config/flows/payments.yaml (`settings:`); a wrong value stops start-up naming
the file. The limits (`Guard`) are counted in Redis under keys named by `sealer.tag()`, never by a
case or phone number itself, with expiry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis
import yaml

from ivr.callflow.flow import FlowError
from ivr.callflow.prompts import bundled_languages
from ivr.domain.directory import ANONYMOUS
from ivr.domain.facilities import Facilities
from ivr.redact import mask_digits, mask_phone
from ivr.sealing import Sealer

log = logging.getLogger("ivr.payments")

SDU_LOCK_AFTER = 5      # the SDU locks a case after this many consecutive wrong PINs (sdu-api.yaml)
CASE_CAP = SDU_LOCK_AFTER - 1   # the most wrong PINs in a row this line ever sends the SDU for a case



@dataclass(frozen=True)
class PaySettings:
    tries_per_call: int = 3
    case_lock_after: int = 3
    case_memory_seconds: int = 30 * 24 * 3600
    known_phone_seconds: int = 365 * 24 * 3600
    caller_lock_after: int = 6
    # 0: no per-number lock for an inmate phone's caller ID (see config/flows/payments.yaml)
    facility_lock_after: int = 30
    lock_seconds: int = 30 * 60
    window_seconds: int = 24 * 3600
    alert_per_hour: int = 100
    mail_to: Mapping[str, str] = field(default_factory=dict)     # empty until SES confirms the address
    website: Mapping[str, str] = field(default_factory=dict)
    sign_in_help: Mapping[str, str] = field(default_factory=dict)  # empty until SES gives the words


def load_settings(path: Path, langs: Iterable[str] | None = None) -> PaySettings:
    """The line's settings; a wrong value stops start-up with a message naming the file. `langs`: the
    languages its texts are given in (by default the shipped ones)."""
    langs = list(langs if langs is not None else bundled_languages())
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FlowError(f"{path}: cannot read the payment line's settings: {exc}") from None
    raw = doc.get("settings") or {}
    ident = raw.get("identification") or {}
    how = raw.get("how_to_pay") or {}
    errors = []

    def count(name: str, default: int, least: int = 1) -> int:
        value = ident.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            errors.append(f"settings.identification.{name} must be a whole number of at least {least}")
            return default
        return value

    defaults = PaySettings()
    day = 24 * 3600
    settings = PaySettings(
        tries_per_call=count("tries_per_call", defaults.tries_per_call),
        case_lock_after=count("case_lock_after", defaults.case_lock_after),
        case_memory_seconds=count("case_memory_days", defaults.case_memory_seconds // day) * day,
        known_phone_seconds=count("known_phone_days", defaults.known_phone_seconds // day, least=0) * day,
        caller_lock_after=count("caller_lock_after", defaults.caller_lock_after),
        facility_lock_after=count("facility_lock_after", defaults.facility_lock_after, least=0),
        lock_seconds=count("lock_minutes", defaults.lock_seconds // 60) * 60,
        window_seconds=count("window_hours", defaults.window_seconds // 3600) * 3600,
        alert_per_hour=count("alert_wrong_pins_per_hour", defaults.alert_per_hour, least=0),
        mail_to=how.get("mail_to") or {},
        website=how.get("website") or {},
        sign_in_help=ident.get("sign_in_help") or {},
    )
    if settings.case_lock_after > CASE_CAP:
        errors.append(f"settings.identification.case_lock_after must be below {SDU_LOCK_AFTER}, "
                      "so that the phone system never sends the PIN that makes the SDU lock a case")
    if "anonymous_lock_after" in ident:
        errors.append("settings.identification.anonymous_lock_after is gone: callers without a caller ID "
                      "are no longer locked as a group (see the Guard in ivr/domain/payline.py)")
    for name, where, may_be_empty in (("mail_to", "how_to_pay", True), ("website", "how_to_pay", False),
                                      ("sign_in_help", "identification", True)):
        value = getattr(settings, name)
        if may_be_empty and isinstance(value, Mapping) and not any(value.values()):
            continue    # not configured yet: callers are told where else to find it
        if not isinstance(value, Mapping) or not all(isinstance(value.get(lg), str) and value.get(lg)
                                                     for lg in langs):
            errors.append(f"settings.{where}.{name} needs {' and '.join(f'`{lg}`' for lg in langs)} texts"
                          + (" (or none at all, until it is known)" if may_be_empty else ""))
    if errors:
        raise FlowError(f"{path}: " + "; ".join(errors))
    return settings



def case_key(sealer, case_number: str) -> str:
    """The Redis key counting the wrong PINs sent to the SDU for a case: named by its tag, never the number."""
    return "ivr:pay:tries:case:" + sealer.tag("case:" + case_number)


def known_key(sealer, case_number: str, caller: str) -> str:
    """The mark of a caller number that gave a case's right PIN (a tag of both, never either)."""
    return "ivr:pay:known:" + sealer.tag(f"known:{case_number}:{caller}")


def caller_keys(sealer, caller: str) -> tuple[str, str]:
    """(failure counter, lock) Redis keys of a caller number (E.164)."""
    tag = sealer.tag("caller:" + caller)
    return f"ivr:pay:tries:caller:{tag}", f"ivr:pay:lock:caller:{tag}"


LINE_KEY = "ivr:pay:tries:line"     # wrong PINs on the whole line this hour, for the alert


def caller_limit(facilities, settings: PaySettings, caller: str) -> int | None:
    """Wrong PINs allowed from this caller number across calls, or None for no per-number lock.

    A withheld caller ID is everyone's: no lock at all (one guesser would lock out every caller who
    withholds their number). An inmate phone's (config/facilities.yaml) is a whole prison's: a much
    higher limit, so only heavy misuse locks it."""
    if caller == ANONYMOUS:
        return None
    shared = facilities is not None and facilities.for_caller(caller)[0]
    return (settings.facility_lock_after if shared else settings.caller_lock_after) or None


def _personal(facilities, caller: str) -> bool:
    """A caller ID one household uses (not withheld, not an inmate phone): one that can be "known"."""
    return caller != ANONYMOUS and not (facilities is not None and facilities.for_caller(caller)[0])


# KEYS: the case's count, the known-phone mark, the caller number's count and lock.
# ARGV: the case's limit for any phone, for a known phone; the case count's lifetime (s); the caller
# number's limit (0: not counted) and its count's lifetime (s); "1" when the mark may be looked at.
# Checks both limits and counts the attempt in one step, so that workers answering at the same moment
# cannot together send more PINs than the limit, and a refused attempt changes nothing.
_RESERVE = """
local limit = tonumber(ARGV[4])
if limit > 0 then
  if redis.call("EXISTS", KEYS[4]) == 1 or tonumber(redis.call("GET", KEYS[3]) or "0") >= limit then
    return {"caller", 0, 0, 0}
  end
end
local cap, known = tonumber(ARGV[1]), 0
if ARGV[6] == "1" and redis.call("EXISTS", KEYS[2]) == 1 then cap, known = tonumber(ARGV[2]), 1 end
local n = tonumber(redis.call("GET", KEYS[1]) or "0")
if n >= cap then return {"case", n, 0, known} end
n = redis.call("INCR", KEYS[1])
redis.call("EXPIRE", KEYS[1], ARGV[3])
local m = 0
if limit > 0 then
  m = redis.call("INCR", KEYS[3])
  redis.call("EXPIRE", KEYS[3], ARGV[5])
end
return {"", n, m, known}
"""

# KEYS: the case's count, the caller number's count, the known-phone mark.
# ARGV[1]: "right" (a right PIN: the case's count is cleared, as the SDU clears its own, and the number
# marked known for ARGV[2] seconds, 0: not marked), "back" (the attempt given back to both counts) or
# "caller" (to the caller number's only); ARGV[3] "1" when the caller number is counted.
# One script, so atomic: a DECR then a separate DEL of a count at zero would also delete an attempt
# another worker reserved in between. EVAL rather than EVALSHA: always one round trip.
_GIVE_BACK = """
if ARGV[1] == "right" then
  redis.call("DEL", KEYS[1])
elseif ARGV[1] == "back" and redis.call("DECR", KEYS[1]) <= 0 then
  redis.call("DEL", KEYS[1])
end
if ARGV[3] == "1" and redis.call("DECR", KEYS[2]) <= 0 then redis.call("DEL", KEYS[2]) end
if ARGV[1] == "right" and tonumber(ARGV[2]) > 0 then redis.call("SET", KEYS[3], "1", "EX", ARGV[2]) end
return 0
"""


class Guard:
    """The limits on PIN attempts, designed so that a guesser is stopped and a stranger cannot lock
    a family out of their case.

    The SDU locks a case at its 5th wrong PIN in a row (`SDU_LOCK_AFTER`); only a right PIN resets its
    count (sdu-api.yaml names no expiry), and only SES lifts its lock. Caller IDs cost a guesser nothing
    to make up. So:

    - Per case, the system counts the wrong PINs it has *sent* to the SDU since the last right PIN,
      and never sends more than `CASE_CAP` (the SDU's 5 less one): the SDU's lock is out of reach
      from this line, whatever the numbers, workers or timing. From phones not known for the case the
      limit is lower (`case_lock_after`, 3 as shipped); the rest (one) is kept for a phone that gave
      this case's right PIN before (a mark in Redis named by a tag of both numbers, kept
      `known_phone_days`), so the family calling from home gets in at once after a stranger's
      guesses. The count lasts `case_memory_days` after the last wrong PIN (the SDU's lasts until a
      right PIN: a long window rather than forever, so a family without a known phone is not shut
      out for good; after it, the first wrong PIN may be the SDU's fifth if nobody gave the right PIN
      anywhere meanwhile). A right PIN clears it. The SDU may also count PINs keyed elsewhere (its
      website, agents): its lock can still come from there (423: `pay.locked.sdu`).
    - Per call, `tries_per_call` wrong PINs end identification.
    - Per caller number, `caller_lock_after` wrong PINs (any cases) in `window_hours` lock the number
      for `lock_minutes` (an inmate phone: `facility_lock_after`). Callers without a caller ID share
      one value, so they are not counted as a group at all: a lock there would be everyone's.
    - Across the line, `alert_wrong_pins_per_hour` wrong PINs log an error (once an hour) instead of
      locking anyone: guessing spread over many cases and numbers is seen, not obeyed.

    An attempt is counted *before* the SDU is asked, in one script that also checks the limits.
    An SDU that surely did not act (no connection, 503, 429, an open breaker) gives it back; one that
    may have (a timeout after sending, a 500, a broken answer: SDUNoAnswer) leaves it counted."""

    def __init__(self, redis: redis.Redis, sealer: Sealer, settings: PaySettings, facilities: Facilities | None,
                 caller: str) -> None:
        """`caller`: the caller number, E.164 or ANONYMOUS (ivr.domain.directory.caller_id)."""
        self.redis = redis
        self.sealer = sealer
        self.settings = settings
        self.caller = caller
        self.caller_limit = caller_limit(facilities, settings, caller)
        self.personal = _personal(facilities, caller)
        self.known = False
        self.n_case = self.n_caller = 0

    def _known_key(self, case_number: str) -> str:
        return known_key(self.sealer, case_number, self.caller)

    def _case_kind(self, n_case: int) -> str | None:
        """"case" (a known phone may still try), "case_all" (no phone may), or None (not locked)."""
        if n_case >= CASE_CAP:
            return "case_all"
        if n_case >= self.settings.case_lock_after and not self.known:
            return "case"
        return None

    def locked(self, case_number: str | None) -> str | None:
        """"caller", "case" or "case_all" when locked now, else None."""
        keys = []
        if self.caller_limit:
            keys.append(caller_keys(self.sealer, self.caller)[1])
        if case_number:
            keys.append(case_key(self.sealer, case_number))
            if self.personal:
                keys.append(self._known_key(case_number))
        if not keys:
            return None
        found = self.redis.mget(keys)
        if self.caller_limit and found.pop(0):
            return "caller"
        if not case_number:
            return None
        self.known = self.personal and bool(found[1])
        return self._case_kind(int(found[0] or 0))

    def reserve(self, case_number: str) -> str | None:
        """Count one attempt; "caller"/"case"/"case_all" when a limit stops it (then nothing is counted)."""
        s = self.settings
        caller_tries, caller_lock = caller_keys(self.sealer, self.caller)
        kind, n_case, n_caller, known = self.redis.eval(
            _RESERVE, 4, case_key(self.sealer, case_number), self._known_key(case_number), caller_tries,
            caller_lock, s.case_lock_after, CASE_CAP, s.case_memory_seconds, self.caller_limit or 0,
            s.window_seconds, 1 if self.personal else 0)
        self.n_case, self.n_caller, self.known = int(n_case), int(n_caller), bool(known)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "case":
            return self._case_kind(self.n_case)
        return kind or None

    def give_back(self, case_number: str, right_pin: bool = False, case_too: bool = True) -> None:
        """Undo a reserved attempt (the SDU did not answer; `case_too` False: it may have counted it, so
        the case keeps it), or clear the case's count (a right PIN)."""
        how = "right" if right_pin else "back" if case_too else "caller"
        keep_mark = self.settings.known_phone_seconds if right_pin and self.personal else 0
        self.redis.eval(_GIVE_BACK, 3, case_key(self.sealer, case_number),
                        caller_keys(self.sealer, self.caller)[0], self._known_key(case_number),
                        how, keep_mark, 1 if self.caller_limit else 0)

    def failed(self, case_number: str) -> str | None:
        """A wrong PIN (already counted): lock what reached its limit; "caller"/"case"/"case_all"/None."""
        s = self.settings
        kind = None
        pipe = self.redis.pipeline()   # MULTI: never a lock without its count cleared, nor the reverse
        if self.caller_limit and self.n_caller >= self.caller_limit:
            tries, lock = caller_keys(self.sealer, self.caller)
            pipe.set(lock, 1, ex=s.lock_seconds)
            pipe.delete(tries)
            log.warning("payments: caller %s locked for %ds after %d wrong PINs",
                        mask_phone(self.caller), s.lock_seconds, self.n_caller)
            kind = "caller"
        if s.alert_per_hour:
            pipe.set(LINE_KEY, 0, ex=3600, nx=True)
            pipe.incr(LINE_KEY)
        line_count = pipe.execute()[-1] if len(pipe) else 0
        if s.alert_per_hour and line_count == s.alert_per_hour:
            log.error("payments: ALERT: %d wrong PINs on the payment line within the hour (alert at %d): "
                      "PIN guessing across cases or caller numbers?", line_count, s.alert_per_hour)
        case_kind = self._case_kind(self.n_case)
        if case_kind:
            # The count itself is the lock: no more PINs for this case until a right one clears it
            # (from a known phone, while the case's last try is left) or `case_memory_days` pass.
            log.warning("payments: case %s: %d wrong PINs sent to the SDU; no more from %s",
                        mask_digits(case_number), self.n_case,
                        "any phone" if case_kind == "case_all" else "phones not known for the case")
        return kind or case_kind
