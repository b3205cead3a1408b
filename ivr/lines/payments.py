"""The Child Support Payment information line (1-888-233-7223, config/flows/payments.yaml).

Who is calling: a 9-digit case number (kept in the call state only sealed, read back digit by digit)
and a 4-digit PIN (checked with the SDU in the PIN node's handler, never stored, never read back).
Wrong PINs are limited per call, per case and per caller number across calls and workers (Redis keys
named by `sealer.tag()`, never by a number itself, with expiry), so that a guesser is stopped, the
SDU's own lock (5 wrong PINs) is never reached from this line, and a stranger with made-up or withheld
caller IDs cannot lock a family out: see the Guard's docstring and config/flows/payments.yaml.

Then the figures, read from the SDU through its client (ivr/sdu/client.py). The case summary (the
menu's status, the last payment, the balance, the next disbursement) is looked up once and kept in the
call state, sealed, for `SUMMARY_KEPT` seconds: a caller going through the menu hears one set of
figures, and a remote SDU is asked once rather than at every option (the call's webhooks land on any
worker). Every SDUError becomes a plain sentence and the call goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml
from num2words import num2words

from ivr.callflow.flow import FlowError
from ivr.callflow.handler import Outcome, handler
from ivr.callflow.prompts import bundled_languages
from ivr.callflow.speech import CT_TZ, say_date, say_digits, say_method, say_money, say_phone, say_source
from ivr.domain.directory import ANONYMOUS, caller_id
from ivr.redact import mask_digits, mask_phone
from ivr.sdu.client import Payment, SDUError, SDULocked, SDUNoAnswer, Summary

log = logging.getLogger("ivr.payments")

SDU_LOCK_AFTER = 5      # the SDU locks a case after this many consecutive wrong PINs (sdu-api.yaml)
CASE_CAP = SDU_LOCK_AFTER - 1   # the most wrong PINs in a row this line ever sends the SDU for a case
RECENT = 5              # "your last five payments" (pay.menu.opt.recent says five)
EXTRA_BUDGET = 1.0      # seconds for a lookup that only adds a sentence (case status, withholding)
SUMMARY_KEPT = 60       # seconds a call's case summary answers it before the SDU is asked again


# --- settings (config/flows/payments.yaml, `settings:`) ------------------------------------------

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
    mail_to: Mapping[str, str] = field(default_factory=dict)
    website: Mapping[str, str] = field(default_factory=dict)


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
    )
    if settings.case_lock_after > CASE_CAP:
        errors.append(f"settings.identification.case_lock_after must be below {SDU_LOCK_AFTER}, "
                      "so that the phone system never sends the PIN that makes the SDU lock a case")
    if "anonymous_lock_after" in ident:
        errors.append("settings.identification.anonymous_lock_after is gone: callers without a caller ID "
                      "are no longer locked as a group (see the Guard in ivr/lines/payments.py)")
    for name in ("mail_to", "website"):
        value = getattr(settings, name)
        if not isinstance(value, Mapping) or not all(isinstance(value.get(lg), str) and value.get(lg)
                                                     for lg in langs):
            errors.append(f"settings.how_to_pay.{name} needs {' and '.join(f'`{lg}`' for lg in langs)} texts")
    if errors:
        raise FlowError(f"{path}: " + "; ".join(errors))
    return settings


def _settings(turn) -> PaySettings:
    return turn.services.payments


# --- PIN-guessing limits, shared by every worker through Redis ------------------------------------

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


def caller_limit(turn, settings: PaySettings, caller: str) -> int | None:
    """Wrong PINs allowed from this caller number across calls, or None for no per-number lock.

    A withheld caller ID is everyone's: no lock at all (one guesser would lock out every caller who
    withholds their number). An inmate phone's (config/facilities.yaml) is a whole prison's: a much
    higher limit, so only heavy misuse locks it."""
    if caller == ANONYMOUS:
        return None
    facilities = turn.services.facilities
    shared = facilities is not None and facilities.for_caller(caller)[0]
    return (settings.facility_lock_after if shared else settings.caller_lock_after) or None


def _personal(turn, caller: str) -> bool:
    """A caller ID one household uses (not withheld, not an inmate phone): one that can be "known"."""
    facilities = turn.services.facilities
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

    def __init__(self, turn) -> None:
        self.redis = turn.services.redis
        self.sealer = turn.services.sealer
        self.settings = _settings(turn)
        self.caller = caller_id(turn.param("From"))
        self.caller_limit = caller_limit(turn, self.settings, self.caller)
        self.personal = _personal(turn, self.caller)
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


# --- identification -------------------------------------------------------------------------------

def _case(turn) -> str | None:
    """The case number of this call (unsealed), or None."""
    sealed = turn.vars.get("_case")
    return turn.services.sealer.unseal(sealed) if sealed else None


def _identified(turn) -> str | None:
    """The case number, when the caller gave its right PIN in this call."""
    if turn.vars.get("role") not in ("payer", "payee"):
        return None
    return _case(turn)


def _sid(turn) -> str:
    return turn.param("CallSid")[-6:]


def _locked(turn, kind: str) -> Outcome:
    turn.vars["lock"] = kind   # which lock pay_say_locked explains
    return Outcome(event="locked")


@handler("pay_identify", events=("identified", "tries_used_up", "locked", "not_identified"))
def identify(turn, value: str | None) -> Outcome:
    """The line's entry: skip what is done (identified earlier in this call), stop what is not allowed
    (this call's tries used up, this caller number locked), else not identified yet."""
    if _identified(turn):
        return Outcome(event="identified")
    if turn.vars.get("ident_blocked"):
        return Outcome(event="tries_used_up")
    if Guard(turn).locked(None):
        return _locked(turn, "caller")
    return Outcome(event="not_identified")


@handler("pay_case_entered", events=("entered",))
def case_entered(turn, value: str) -> Outcome:
    # A new case number starts identification over: nothing of an earlier one may be read to it.
    for name in ("role", "welcomed", "lock", "_summary"):
        turn.vars.pop(name, None)
    turn.vars["_case"] = turn.services.sealer.seal(value)
    return Outcome(event="entered")


@handler("pay_read_case", events=("no_case",))
def read_case(turn, value: str | None) -> Outcome | None:
    case = _case(turn)
    if case is None:
        return Outcome(event="no_case")
    turn.say("pay.case.confirm", digits=say_digits(case))
    return None


@handler("pay_check_locks", events=("not_locked", "locked", "no_case"))
def check_locks(turn, value: str | None) -> Outcome:
    """Stop a locked case or caller number before the PIN is asked for."""
    case = _case(turn)
    if case is None:
        return Outcome(event="no_case")
    kind = Guard(turn).locked(case)
    return _locked(turn, kind) if kind else Outcome(event="not_locked")


@handler("pay_pin_entered",
         events=("identified", "wrong_pin", "locked", "tries_used_up", "sdu_down", "no_case"))
def pin_entered(turn, pin: str) -> Outcome:
    """Check the PIN with the SDU now; the PIN lives only in this function."""
    if turn.vars.get("ident_blocked"):
        return Outcome(event="tries_used_up")
    case = _case(turn)
    if case is None:
        return Outcome(event="no_case")
    settings = _settings(turn)
    guard = Guard(turn)
    kind = guard.reserve(case)  # it reads both locks too, in its one round trip
    if kind:
        return _locked(turn, kind)
    sdu = turn.services.sdu
    try:
        if sdu is None:
            raise SDUError("no SDU client configured")
        with sdu.budget_scope():
            result = sdu.verify_pin(case, pin)
    except SDULocked:
        guard.give_back(case)
        log.warning("payments: call %s: the SDU has locked case %s", _sid(turn), mask_digits(case))
        return _locked(turn, "sdu")
    except SDUNoAnswer as exc:
        # The SDU may have checked the PIN and counted it wrong: it stays counted for the case (not for
        # the caller number, nor as one of the call's tries: the caller did nothing wrong).
        guard.give_back(case, case_too=False)
        log.warning("payments: call %s: PIN check not answered (counted for the case): %s", _sid(turn), exc)
        return Outcome(event="sdu_down")
    except SDUError as exc:
        guard.give_back(case)
        log.warning("payments: call %s: PIN check not possible: %s", _sid(turn), exc)
        return Outcome(event="sdu_down")
    if result.match:
        guard.give_back(case, right_pin=True)
        turn.vars["role"] = result.role
        turn.vars.pop("pin_fails", None)
        # The caller chose a language at the start (or on the call center line): that choice wins
        # over the SDU's preferred_language.
        log.info("payments: call %s identified as %s of case %s", _sid(turn), result.role, mask_digits(case))
        return Outcome(event="identified")
    fails = int(turn.vars.get("pin_fails", 0)) + 1
    turn.vars["pin_fails"] = fails
    log.info("payments: call %s: wrong PIN for case %s (%d in this call, %d for the case, %s from %s)",
             _sid(turn), mask_digits(case), fails, guard.n_case,
             guard.n_caller if guard.caller_limit else "not counted", mask_phone(guard.caller))
    kind = guard.failed(case)
    if fails >= settings.tries_per_call:
        turn.vars["ident_blocked"] = True  # no more tries in this call, whatever number comes next
        turn.vars.pop("_case", None)
    if kind:
        return _locked(turn, kind)
    if turn.vars.get("ident_blocked"):
        return Outcome(event="tries_used_up")
    turn.say("pay.pin.wrong")
    return Outcome(event="wrong_pin")


@handler("pay_say_locked", events=())
def say_locked(turn, value: str | None) -> None:
    kind = turn.vars.get("lock", "case")
    pid = {"caller": "pay.locked.caller", "sdu": "pay.locked.sdu",
           "case_all": "pay.locked.case_all"}.get(kind, "pay.locked.case")
    settings = _settings(turn)
    turn.say(pid, minutes=num2words(settings.lock_seconds // 60, lang=turn.language.locale),
             days=num2words(settings.case_memory_seconds // (24 * 3600), lang=turn.language.locale),
             website=settings.website.get(turn.lang, ""), hours=turn.services.hours.describe(turn.lang),
             number=say_phone(turn.services.lines["callback_number"], turn.lang))
    return None


# --- the figures ----------------------------------------------------------------------------------

class _Words:
    """Amounts, dates, sources and methods in words, in the caller's language."""

    def __init__(self, turn) -> None:
        self.lang = turn.language
        self.today = turn.services.hours.now().date()
        self.callback = say_phone(turn.services.lines["callback_number"], turn.lang)

    def money(self, amount: Decimal) -> str:
        return say_money(amount, self.lang)

    def date(self, d: date) -> str:
        return say_date(d, self.lang, today=self.today)

    def payment(self, p: Payment) -> dict[str, str]:
        fields = {"amount": self.money(p.amount), "source": say_source(p.source, self.lang),
                  "received": self.date(p.received_date)}
        if p.disbursement_method:
            fields["method"] = say_method(p.disbursement_method, self.lang)
        if p.disbursed_date:
            fields["sent"] = self.date(p.disbursed_date)
        return fields


def _payee_kind(p: Payment) -> str:
    """What the payee hears of a payment: "disbursed" (only when the SDU says how and when), "held" or
    "received"; the last part of the pay.last.payee.* and pay.recent.item.* prompt ids."""
    if p.status == "disbursed" and p.disbursement_method and p.disbursed_date:
        return "disbursed"
    return "held" if p.status == "held" else "received"


def _who(turn) -> tuple[str, str, object] | Outcome:
    """(case number, role, SDU client) of an identified caller, or the event that leaves the node instead."""
    case = _identified(turn)
    if case is None:
        return Outcome(event="not_identified")
    sdu = turn.services.sdu
    if sdu is None:
        log.error("payments: no SDU client configured")
        return Outcome(event="sdu_down")
    return case, turn.vars["role"], sdu


def _unreachable(turn, what: str, exc: SDUError) -> Outcome:
    # SDUError messages never hold personal data (ivr/sdu/client.py).
    log.warning("payments: call %s: %s not available: %s", _sid(turn), what, exc)
    return Outcome(event="sdu_down")


def _kept_summary(turn, case: str, role: str) -> Summary | None:
    """The summary this call already looked up, if it is for this case and role and recent enough."""
    text = turn.services.sealer.unseal_compressed(turn.vars.get("_summary", ""))
    if text is None:
        return None
    try:
        kept = json.loads(text)
        body = kept["body"]
        age = turn.services.hours.now().timestamp() - kept["at"]
        if body["case_number"] != case or body["role"] != role or not 0 <= age < SUMMARY_KEPT:
            return None
        return Summary.from_body(body)
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return None  # another version's, or damaged: ask the SDU again


def _lookup_summary(turn, sdu, case: str, role: str, budget: float | None) -> Summary:
    kept = _kept_summary(turn, case, role)
    if kept is not None:
        return kept
    with sdu.budget_scope(budget):
        summary = sdu.summary(case, role)
    # Sealed like the case number: figures and the case number are personal data.
    record = {"at": turn.services.hours.now().timestamp(), "body": summary.body}
    turn.vars["_summary"] = turn.services.sealer.seal_compressed(json.dumps(record, separators=(",", ":")))
    return summary


def _summary(turn) -> Summary | Outcome:
    who = _who(turn)
    if isinstance(who, Outcome):
        return who
    case, role, sdu = who
    try:
        return _lookup_summary(turn, sdu, case, role, None)
    except SDUError as exc:
        return _unreachable(turn, "summary", exc)


def _extra_summary(turn, case: str, role: str, what: str) -> Summary | None:
    """The summary for a sentence the caller can do without: a short budget, and None (logged) when
    the SDU cannot answer in it."""
    sdu = turn.services.sdu
    try:
        if sdu is None:
            raise SDUError("no SDU client configured")
        return _lookup_summary(turn, sdu, case, role, EXTRA_BUDGET)
    except SDUError as exc:
        log.info("payments: call %s: %s not available: %s", _sid(turn), what, exc)
        return None


# A figure's ways out besides saying it: the caller is not (or no longer) identified in this call
# (a forged or replayed step), or the SDU cannot answer.
_FIGURE = ("not_identified", "sdu_down")


@handler("pay_menu_intro", events=("not_identified",))
def menu_intro(turn, value: str | None) -> Outcome | None:
    """The payment menu: only for an identified caller; the first time, say what state the case is in."""
    case = _identified(turn)
    if case is None:
        return Outcome(event="not_identified")
    if not turn.vars.get("welcomed"):
        turn.vars["welcomed"] = True
        turn.say("pay.signed_in")
        # Without the SDU nothing is said here: each figure says plainly when it cannot be reached.
        summary = _extra_summary(turn, case, turn.vars["role"], "case status")
        status = summary.status if summary else None
        if status in ("closed", "suspended"):
            turn.say(f"pay.status.{status}")
    turn.say("pay.menu.intro")
    return None


@handler("pay_say_last", events=_FIGURE)
def say_last(turn, value: str | None) -> Outcome | None:
    summary = _summary(turn)
    if isinstance(summary, Outcome):
        return summary
    words = _Words(turn)
    p = summary.last_payment
    if p is None:
        turn.say("pay.last.none")
    elif summary.role == "payer":
        turn.say("pay.last.payer", **words.payment(p))
    else:
        kind = _payee_kind(p)
        turn.say(f"pay.last.payee.{kind}", **words.payment(p))
        if kind == "held":
            turn.say("pay.held.help", number=words.callback)
    return None


@handler("pay_say_recent", events=_FIGURE)
def say_recent(turn, value: str | None) -> Outcome | None:
    who = _who(turn)
    if isinstance(who, Outcome):
        return who
    case, role, sdu = who
    try:
        with sdu.budget_scope():
            payments = sdu.payments(case, role, limit=RECENT)
    except SDUError as exc:
        return _unreachable(turn, "payments", exc)
    words = _Words(turn)
    if not payments:
        turn.say("pay.last.none")
        return None
    if len(payments) == 1:
        turn.say("pay.recent.intro_one")
    else:
        turn.say("pay.recent.intro", count=num2words(len(payments), lang=turn.language.locale))
    for p in payments:
        pid = "pay.recent.item" if role == "payer" else f"pay.recent.item.{_payee_kind(p)}"
        turn.say(pid, **words.payment(p))
    if role == "payee" and any(p.status == "held" for p in payments):
        turn.say("pay.recent.held")
        turn.say("pay.held.help", number=words.callback)
    return None


_PARTS = (("current_support", "pay.part.current"), ("medical_support", "pay.part.medical"),
          ("child_care", "pay.part.child_care"), ("arrears_payment", "pay.part.arrears"))


@handler("pay_say_balance", events=_FIGURE)
def say_balance(turn, value: str | None) -> Outcome | None:
    summary = _summary(turn)
    if isinstance(summary, Outcome):
        return summary
    words = _Words(turn)
    order = summary.weekly_order
    if summary.status in ("closed", "suspended"):
        turn.say(f"pay.status.{summary.status}")
    elif order.total <= 0:
        turn.say("pay.balance.no_order")
    else:
        prompts = turn.services.prompts
        parts = [prompts.text(pid, turn.lang, amount=words.money(getattr(order, name)))
                 for name, pid in _PARTS if getattr(order, name) > 0]
        if len(parts) == 1:
            turn.say("pay.balance.order_one", part=parts[0])
        else:
            turn.say("pay.balance.order", total=words.money(order.total), parts=turn.language.join(parts))
    arrears = summary.arrears_balance
    if arrears > 0:
        turn.say("pay.balance.arrears", amount=words.money(arrears))
    elif arrears < 0:
        turn.say("pay.balance.credit", amount=words.money(-arrears))
    else:
        turn.say("pay.balance.no_arrears")
    turn.say("pay.balance.as_of", date=words.date(summary.as_of.astimezone(CT_TZ).date()))
    if summary.status == "open":
        turn.say("pay.balance.changes")
    return None


@handler("pay_say_next", events=(*_FIGURE, "not_offered"))
def say_next(turn, value: str | None) -> Outcome | None:
    if turn.vars.get("role") == "payer":  # a payer is never offered this: a forged step
        return Outcome(event="not_offered")
    summary = _summary(turn)
    if isinstance(summary, Outcome):
        return summary
    nd = summary.next_disbursement
    if nd is None:
        turn.say("pay.next.none")
    else:
        words = _Words(turn)
        turn.say("pay.next.scheduled", amount=words.money(nd.amount), date=words.date(nd.date),
                 method=say_method(nd.method, turn.language))
    return None


@handler("pay_say_how", events=())
def say_how(turn, value: str | None) -> None:
    settings = _settings(turn)
    lang = turn.lang
    turn.say("pay.how.intro")
    turn.say("pay.how.withholding")
    turn.say("pay.how.mail", address=settings.mail_to.get(lang, ""))
    turn.say("pay.how.online", website=settings.website.get(lang, ""))
    turn.say("pay.how.credit")
    # For a payer, whether withholding is working on the case; without the SDU the general facts
    # above still hold, so its absence is only logged.
    case = _identified(turn)
    if case and turn.vars.get("role") == "payer":
        summary = _extra_summary(turn, case, "payer", "withholding status")
        active = summary.income_withholding_active if summary else None
        if active is True:
            turn.say("pay.how.iw_active")
        elif active is False:
            turn.say("pay.how.iw_inactive")
    return None
