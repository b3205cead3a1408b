"""The Child Support Payment information line (1-888-233-7223, config/flows/payments.yaml).

Who is calling: a 9-digit case number (kept in the call state only sealed, read back digit by digit)
and a 4-digit PIN (checked with the SDU in the PIN node's handler, never stored, never read back).
Wrong PINs are limited three ways: per call (`tries_per_call`), per case and per caller number across
calls and workers (Redis counters named by `sealer.tag()`, never by the number itself, with expiry).
The phone system locks a case before the SDU's own lock (5 wrong PINs) would. A caller ID shared by
many people (an inmate phone of config/facilities.yaml, or no usable caller ID) has its own, higher
limit (30 as shipped; 0 turns it off): see the settings' comments in config/flows/payments.yaml.

Then the figures, read from the SDU through its client (ivr/sdu/client.py). The case summary (the
menu's status, the last payment, the balance, the next disbursement) is looked up once and kept in the
call state, sealed, for `SUMMARY_KEPT` seconds: a caller going through the menu hears one set of
figures, and a remote SDU is asked once rather than at every option (the call's webhooks land on any
worker). Every SDUError becomes a plain sentence and the call goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import yaml
from num2words import num2words

from ..directory import ANONYMOUS, caller_id
from ..flow import FlowError
from ..redact import mask_digits, mask_phone
from ..sdu.client import Payment, SDUError, SDULocked, Summary
from ..speech import CT_TZ, say_date, say_digits, say_method, say_money, say_phone, say_source
from . import Outcome, handler

log = logging.getLogger("ivr.payments")

SDU_LOCK_AFTER = 5      # the SDU locks a case after this many consecutive wrong PINs (sdu-api.yaml)
RECENT = 5              # "your last five payments" (pay.menu.opt.recent says five)
EXTRA_BUDGET = 1.0      # seconds for a lookup that only adds a sentence (case status, withholding)
SUMMARY_KEPT = 60       # seconds a call's case summary answers it before the SDU is asked again


# --- settings (config/flows/payments.yaml, `settings:`) ------------------------------------------

@dataclass(frozen=True)
class PaySettings:
    tries_per_call: int = 3
    case_lock_after: int = 4
    caller_lock_after: int = 6
    # 0: no per-number lock for caller IDs many people share (see config/flows/payments.yaml)
    facility_lock_after: int = 30
    anonymous_lock_after: int = 30
    lock_seconds: int = 30 * 60
    window_seconds: int = 24 * 3600
    mail_to: Mapping[str, str] = field(default_factory=dict)
    website: Mapping[str, str] = field(default_factory=dict)


def load_settings(path: Path) -> PaySettings:
    """The line's settings; a wrong value stops start-up with a message naming the file."""
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
    settings = PaySettings(
        tries_per_call=count("tries_per_call", defaults.tries_per_call),
        case_lock_after=count("case_lock_after", defaults.case_lock_after),
        caller_lock_after=count("caller_lock_after", defaults.caller_lock_after),
        facility_lock_after=count("facility_lock_after", defaults.facility_lock_after, least=0),
        anonymous_lock_after=count("anonymous_lock_after", defaults.anonymous_lock_after, least=0),
        lock_seconds=count("lock_minutes", defaults.lock_seconds // 60) * 60,
        window_seconds=count("window_hours", defaults.window_seconds // 3600) * 3600,
        mail_to=how.get("mail_to") or {},
        website=how.get("website") or {},
    )
    if settings.case_lock_after >= SDU_LOCK_AFTER:
        errors.append(f"settings.identification.case_lock_after must be below {SDU_LOCK_AFTER}, "
                      "so that the phone system locks a case before the SDU does")
    for name in ("mail_to", "website"):
        value = getattr(settings, name)
        if not isinstance(value, Mapping) or not all(isinstance(value.get(lg), str) and value.get(lg)
                                                     for lg in ("en", "es")):
            errors.append(f"settings.how_to_pay.{name} needs `en` and `es` texts")
    if errors:
        raise FlowError(f"{path}: " + "; ".join(errors))
    return settings


def setup(app) -> None:
    """Called by create_app: load the settings once, for the handlers."""
    rt = app.extensions["ivr"]
    rt.services.extra["payments"] = load_settings(rt.config["CONFIG_DIR"] / "flows" / "payments.yaml")


def _settings(turn) -> PaySettings:
    return turn.services.extra.get("payments") or PaySettings()


# --- PIN-guessing limits, shared by every worker through Redis ------------------------------------

def case_keys(sealer, case_number: str) -> tuple[str, str]:
    """(failure counter, lock) Redis keys of a case number: named by its tag, never the number."""
    tag = sealer.tag("case:" + case_number)
    return f"ivr:pay:tries:case:{tag}", f"ivr:pay:lock:case:{tag}"


def caller_keys(sealer, caller: str) -> tuple[str, str]:
    """(failure counter, lock) Redis keys of a caller number (E.164, or "anonymous")."""
    tag = sealer.tag("caller:" + caller)
    return f"ivr:pay:tries:caller:{tag}", f"ivr:pay:lock:caller:{tag}"


def caller_limit(turn, settings: PaySettings, caller: str) -> int | None:
    """Wrong PINs allowed from this caller number across calls, or None for no per-number lock.

    An inmate phone's caller ID (config/facilities.yaml) and a withheld one are shared by many people:
    a lock on them would shut out everyone behind that number for the wrong PINs of a few."""
    if caller == ANONYMOUS:
        limit = settings.anonymous_lock_after
    else:
        facilities = turn.services.extra.get("facilities")
        shared = facilities is not None and facilities.for_caller(caller)[0]
        limit = settings.facility_lock_after if shared else settings.caller_lock_after
    return limit or None


# KEYS: attempt counters to give one attempt back to; a count at zero or below is deleted.
# ARGV[1] "1": delete the first counter outright (a right PIN clears the case's count, as the SDU does).
_GIVE_BACK = """
for i, key in ipairs(KEYS) do
  if (i == 1 and ARGV[1] == "1") or redis.call("DECR", key) <= 0 then
    redis.call("DEL", key)
  end
end
return 0
"""


class Guard:
    """Counts PIN attempts per case and per caller number, and locks either one for a while.

    An attempt is counted *before* the SDU is asked (INCR is atomic), so workers answering calls at
    the same moment cannot together get more tries than the limit; a right PIN or an SDU that could
    not answer gives the attempt back. A caller number without a limit (`caller_limit` None) is
    neither counted nor locked."""

    def __init__(self, turn) -> None:
        self.redis = turn.services.extra["redis"]
        self.sealer = turn.services.extra["sealer"]
        self.settings = _settings(turn)
        self.caller = caller_id(turn.param("From"))
        self.caller_limit = caller_limit(turn, self.settings, self.caller)
        self.n_case = self.n_caller = 0

    def locked(self, case_number: str | None) -> str | None:
        """"caller" or "case" when either is locked now, else None."""
        keys = []
        if self.caller_limit:
            keys.append(caller_keys(self.sealer, self.caller)[1])
        if case_number:
            keys.append(case_keys(self.sealer, case_number)[1])
        if not keys:
            return None
        found = self.redis.mget(keys)
        if self.caller_limit and found.pop(0):
            return "caller"
        if case_number and found[0]:
            return "case"
        return None

    def reserve(self, case_number: str) -> str | None:
        """Count one attempt; "case"/"caller" when it is over a limit (and must not be made)."""
        window = self.settings.window_seconds
        case_tries, case_lock = case_keys(self.sealer, case_number)
        caller_tries, caller_lock = caller_keys(self.sealer, self.caller)
        pipe = self.redis.pipeline()
        pipe.incr(case_tries)
        pipe.expire(case_tries, window)
        # The locks again, in the same transaction: one set by a worker since the caller was last checked
        # (its count deleted with it) must stop this attempt, or one more PIN reaches the SDU.
        pipe.exists(case_lock)
        if self.caller_limit:
            pipe.incr(caller_tries)
            pipe.expire(caller_tries, window)
            pipe.exists(caller_lock)
        found = pipe.execute()
        n_case, _, case_locked = found[:3]
        n_caller, _, caller_locked = found[3:] if self.caller_limit else (0, None, 0)
        self.n_case, self.n_caller = n_case, n_caller
        if self.caller_limit and (caller_locked or n_caller > self.caller_limit):
            self.give_back(case_number)
            return "caller"
        if case_locked or n_case > self.settings.case_lock_after:
            self.give_back(case_number)
            return "case"
        return None

    def give_back(self, case_number: str, forget_case: bool = False) -> None:
        """Undo a reserved attempt (a right PIN, or no answer from the SDU)."""
        case_tries, caller_tries = case_keys(self.sealer, case_number)[0], caller_keys(self.sealer, self.caller)[0]
        keys = [case_tries, caller_tries] if self.caller_limit else [case_tries]
        # One script, so atomic: a DECR then a separate DEL of a count at zero would also delete an
        # attempt another worker reserved in between, and give a guesser one PIN more. EVAL rather than
        # EVALSHA: always one round trip, even on a Redis that restarted and forgot its scripts.
        self.redis.eval(_GIVE_BACK, len(keys), *keys, 1 if forget_case else 0)

    def failed(self, case_number: str) -> str | None:
        """A wrong PIN (already counted): lock what reached its limit; returns "caller"/"case"/None."""
        lock_for = self.settings.lock_seconds
        kind = None
        if self.caller_limit and self.n_caller >= self.caller_limit:
            self._lock(*caller_keys(self.sealer, self.caller), lock_for)
            log.warning("payments: caller %s locked for %ds after %d wrong PINs",
                        mask_phone(self.caller), lock_for, self.n_caller)
            kind = "caller"
        if self.n_case >= self.settings.case_lock_after:
            # The count starts again after the lock. The SDU still counts these wrong PINs (it only
            # forgets them on a right one), so one more wrong PIN after the lock ends makes the SDU
            # lock the case (423), which only SES lifts: guessing goes no further either way.
            self._lock(*case_keys(self.sealer, case_number), lock_for)
            log.warning("payments: case %s locked for %ds after %d wrong PINs",
                        mask_digits(case_number), lock_for, self.n_case)
            kind = kind or "case"
        return kind

    def _lock(self, tries: str, lock: str, seconds: int) -> None:
        pipe = self.redis.pipeline()   # MULTI: never a lock without its count cleared, nor the reverse
        pipe.set(lock, 1, ex=seconds)
        pipe.delete(tries)
        pipe.execute()


# --- identification -------------------------------------------------------------------------------

def _case(turn) -> str | None:
    """The case number of this call (unsealed), or None."""
    sealed = turn.vars.get("_case")
    return turn.services.extra["sealer"].unseal(sealed) if sealed else None


def _identified(turn) -> str | None:
    """The case number, when the caller gave its right PIN in this call."""
    if turn.vars.get("role") not in ("payer", "payee"):
        return None
    return _case(turn)


def _sid(turn) -> str:
    return turn.param("CallSid")[-6:]


def _locked(turn, kind: str) -> Outcome:
    turn.vars["lock"] = kind
    return Outcome(goto="pay_locked")


@handler("pay_identify")
def identify(turn, value: str | None) -> Outcome:
    """The line's entry: skip what is done, stop what is not allowed, else ask for the case number."""
    if _identified(turn):
        return Outcome(goto="pay_menu")
    if turn.vars.get("ident_blocked"):
        return Outcome(goto="pay_ident_failed")
    if Guard(turn).locked(None):
        return _locked(turn, "caller")
    return Outcome(goto="pay_case")


@handler("pay_case_entered")
def case_entered(turn, value: str) -> Outcome:
    # A new case number starts identification over: nothing of an earlier one may be read to it.
    for name in ("role", "welcomed", "lock", "_summary"):
        turn.vars.pop(name, None)
    turn.vars["_case"] = turn.services.extra["sealer"].seal(value)
    return Outcome(goto="pay_case_confirm")


@handler("pay_read_case")
def read_case(turn, value: str | None) -> Outcome | None:
    case = _case(turn)
    if case is None:
        return Outcome(goto="pay_case")
    turn.say("pay.case.confirm", digits=say_digits(case))
    return None


@handler("pay_case_check")
def case_check(turn, value: str | None) -> Outcome:
    case = _case(turn)
    if case is None:
        return Outcome(goto="pay_case")
    kind = Guard(turn).locked(case)
    return _locked(turn, kind) if kind else Outcome(goto="pay_pin")


@handler("pay_pin_entered")
def pin_entered(turn, pin: str) -> Outcome:
    """Check the PIN with the SDU now; the PIN lives only in this function."""
    if turn.vars.get("ident_blocked"):
        return Outcome(goto="pay_ident_failed")
    case = _case(turn)
    if case is None:
        return Outcome(goto="pay_case")
    settings = _settings(turn)
    guard = Guard(turn)
    kind = guard.reserve(case)  # it reads both locks too, in its one round trip
    if kind:
        return _locked(turn, kind)
    sdu = turn.services.extra.get("sdu")
    try:
        if sdu is None:
            raise SDUError("no SDU client configured")
        with sdu.budget_scope():
            result = sdu.verify_pin(case, pin)
    except SDULocked:
        guard.give_back(case)
        log.warning("payments: call %s: the SDU has locked case %s", _sid(turn), mask_digits(case))
        return _locked(turn, "sdu")
    except SDUError as exc:
        guard.give_back(case)
        log.warning("payments: call %s: PIN check not possible: %s", _sid(turn), exc)
        return Outcome(goto="pay_sdu_down")
    if result.match:
        guard.give_back(case, forget_case=True)
        turn.vars["role"] = result.role
        turn.vars.pop("pin_fails", None)
        # The caller chose a language at the start (or on the call center line): that choice wins
        # over the SDU's preferred_language.
        log.info("payments: call %s identified as %s of case %s", _sid(turn), result.role, mask_digits(case))
        return Outcome(goto="pay_menu")
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
        return Outcome(goto="pay_ident_failed")
    turn.say("pay.pin.wrong")
    return Outcome(goto="pay_pin")


@handler("pay_say_locked")
def say_locked(turn, value: str | None) -> None:
    kind = turn.vars.get("lock", "case")
    pid = {"caller": "pay.locked.caller", "sdu": "pay.locked.sdu"}.get(kind, "pay.locked.case")
    minutes = _settings(turn).lock_seconds // 60
    turn.say(pid, minutes=num2words(minutes, lang=turn.lang), hours=turn.services.hours.describe(turn.lang),
             number=say_phone(turn.services.lines["callback_number"], turn.lang))
    return None


# --- the figures ----------------------------------------------------------------------------------

class _Words:
    """Amounts, dates, sources and methods in words, in the caller's language."""

    def __init__(self, turn) -> None:
        self.lang = turn.lang
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
    """(case number, role, SDU client) of an identified caller, or where to send the call instead."""
    case = _identified(turn)
    if case is None:
        return Outcome(goto="pay_ident")
    sdu = turn.services.extra.get("sdu")
    if sdu is None:
        log.error("payments: no SDU client configured")
        return Outcome(goto="pay_sdu_down")
    return case, turn.vars["role"], sdu


def _unreachable(turn, what: str, exc: SDUError) -> Outcome:
    # SDUError messages never hold personal data (ivr/sdu/client.py).
    log.warning("payments: call %s: %s not available: %s", _sid(turn), what, exc)
    return Outcome(goto="pay_sdu_down")


def _kept_summary(turn, case: str, role: str) -> Summary | None:
    """The summary this call already looked up, if it is for this case and role and recent enough."""
    text = turn.services.extra["sealer"].unseal_compressed(turn.vars.get("_summary", ""))
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
    turn.vars["_summary"] = turn.services.extra["sealer"].seal_compressed(json.dumps(record, separators=(",", ":")))
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
    sdu = turn.services.extra.get("sdu")
    try:
        if sdu is None:
            raise SDUError("no SDU client configured")
        return _lookup_summary(turn, sdu, case, role, EXTRA_BUDGET)
    except SDUError as exc:
        log.info("payments: call %s: %s not available: %s", _sid(turn), what, exc)
        return None


@handler("pay_menu_intro")
def menu_intro(turn, value: str | None) -> Outcome | None:
    """The payment menu: only for an identified caller; the first time, say what state the case is in."""
    case = _identified(turn)
    if case is None:
        return Outcome(goto="pay_ident")
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


@handler("pay_say_last")
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


@handler("pay_say_recent")
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
        turn.say("pay.recent.intro", count=num2words(len(payments), lang=turn.lang))
    for p in payments:
        pid = "pay.recent.item" if role == "payer" else f"pay.recent.item.{_payee_kind(p)}"
        turn.say(pid, **words.payment(p))
    if role == "payee" and any(p.status == "held" for p in payments):
        turn.say("pay.recent.held")
        turn.say("pay.held.help", number=words.callback)
    return None


_PARTS = (("current_support", "pay.part.current"), ("medical_support", "pay.part.medical"),
          ("child_care", "pay.part.child_care"), ("arrears_payment", "pay.part.arrears"))
_AND = {"en": " and ", "es": " y "}


def _join(items: list[str], lang: str) -> str:
    """"a, b and c" / "a, b y c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + _AND.get(lang, " and ") + items[-1]


@handler("pay_say_balance")
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
            turn.say("pay.balance.order", total=words.money(order.total), parts=_join(parts, turn.lang))
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


@handler("pay_say_next")
def say_next(turn, value: str | None) -> Outcome | None:
    if turn.vars.get("role") == "payer":  # a payer is never offered this; a forged step goes home
        return Outcome(goto="pay_menu")
    summary = _summary(turn)
    if isinstance(summary, Outcome):
        return summary
    nd = summary.next_disbursement
    if nd is None:
        turn.say("pay.next.none")
    else:
        words = _Words(turn)
        turn.say("pay.next.scheduled", amount=words.money(nd.amount), date=words.date(nd.date),
                 method=say_method(nd.method, turn.lang))
    return None


@handler("pay_say_how")
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
