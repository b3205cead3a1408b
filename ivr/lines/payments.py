"""The Child Support Payment information line (1-888-233-7223, config/flows/payments.yaml).

Who is calling: a 9-digit case number (kept in the call state only sealed, read back digit by digit)
and a 4-digit PIN (checked with the SDU in the PIN node's handler, never stored, never read back).
Wrong PINs are limited per call, per case and per caller number across calls and workers (Redis keys
named by `sealer.tag()`, never by a number itself, with expiry), so that a guesser is stopped, the
SDU's own lock (5 wrong PINs) is never reached from this line, and a stranger with made-up or withheld
caller IDs cannot lock a family out: see the Guard's docstring (ivr/domain/payline.py).

Then the figures, read from the SDU through its client (ivr/sdu/client.py). The case summary (the
menu's status, the last payment, the balance, the next disbursement) is looked up once and kept in the
call state, sealed, for `SUMMARY_KEPT` seconds: a caller going through the menu hears one set of
figures, and a remote SDU is asked once rather than at every option (the call's webhooks land on any
worker). Every SDUError becomes a plain sentence and the call goes on.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from decimal import Decimal

from num2words import num2words

from ivr.callflow.handler import Outcome, handler
from ivr.callflow.speech import CT_TZ, say_date, say_digits, say_method, say_money, say_phone, say_source
from ivr.domain.directory import caller_id
from ivr.domain.payline import Guard, PaySettings
from ivr.redact import mask_digits, mask_phone
from ivr.sdu.client import Payment, SDUError, SDULocked, SDUNoAnswer, Summary

log = logging.getLogger("ivr.payments")

RECENT = 5              # "your last five payments" (pay.menu.opt.recent says five)
EXTRA_BUDGET = 1.0      # seconds for a lookup that only adds a sentence (case status, withholding)
SUMMARY_KEPT = 60       # seconds a call's case summary answers it before the SDU is asked again
# Payment sources that are benefits a withholding can be moved to (the SDU's `source` enum).
BENEFITS = ("unemployment_compensation", "workers_compensation")


def _settings(turn) -> PaySettings:
    return turn.services.payments


def _guard(turn) -> Guard:
    s = turn.services
    return Guard(s.redis, s.sealer, s.payments, s.facilities, caller_id(turn.param("From")))


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
    if _guard(turn).locked(None):
        turn.note("i", "locked")
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
    kind = _guard(turn).locked(case)
    if kind:
        turn.note("i", "locked")    # identification refused before the PIN is asked for
        return _locked(turn, kind)
    return Outcome(event="not_locked")


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
    guard = _guard(turn)
    kind = guard.reserve(case)  # it reads both locks too, in its one round trip
    if kind:
        turn.note("i", "locked")
        return _locked(turn, kind)
    sdu = turn.services.sdu
    try:
        if sdu is None:
            raise SDUError("no SDU client configured")
        with sdu.budget_scope():
            result = sdu.verify_pin(case, pin)
    except SDULocked:
        turn.note("i", "locked")
        guard.give_back(case)
        log.warning("payments: call %s: the SDU has locked case %s", _sid(turn), mask_digits(case))
        return _locked(turn, "sdu")
    except SDUNoAnswer as exc:
        # The SDU may have checked the PIN and counted it wrong: it stays counted for the case (not for
        # the caller number, nor as one of the call's tries: the caller did nothing wrong).
        guard.give_back(case, case_too=False)
        turn.note("i", "sdu_down")
        log.warning("payments: call %s: PIN check not answered (counted for the case): %s", _sid(turn), exc)
        return Outcome(event="sdu_down")
    except SDUError as exc:
        guard.give_back(case)
        turn.note("i", "sdu_down")
        log.warning("payments: call %s: PIN check not possible: %s", _sid(turn), exc)
        return Outcome(event="sdu_down")
    if result.match:
        guard.give_back(case, right_pin=True)
        turn.note("i", "success")
        turn.vars["role"] = result.role
        turn.vars.pop("pin_fails", None)
        # The caller chose a language at the start (or on the call center line): that choice wins
        # over the SDU's preferred_language.
        log.info("payments: call %s identified as %s of case %s", _sid(turn), result.role, mask_digits(case))
        return Outcome(event="identified")
    turn.note("i", "wrong_pin")   # counted once, whether or not it also ends identification or locks
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


def say_ses(turn, pid: str) -> None:
    """Say `pid` + ".call" (call S E S at the call center's number, and when people answer), or
    `pid` + ".here" (press 0) to a caller whose call came in on that number."""
    number = turn.engine.number_to_tell(turn, turn.services.lines["callback_number"])
    hours = turn.services.hours.describe(turn.lang)
    if number is None:
        turn.say(pid + ".here", hours=hours)
    else:
        turn.say(pid + ".call", hours=hours, number=say_phone(number, turn.lang))


@handler("pay_say_no_number", events=())
def say_no_number(turn, value: str | None) -> None:
    """A caller without a case number or PIN: what this line needs, where they are found (once SES
    gives the words: settings `sign_in_help`), who can help and when, and the payment website."""
    settings = _settings(turn)
    turn.say("pay.no_number")
    where = settings.sign_in_help.get(turn.lang)
    if where:
        turn.say_text(where)
    say_ses(turn, "pay.no_number")
    turn.say("pay.no_number.web", website=settings.website.get(turn.lang, ""))
    return None


@handler("pay_say_locked", events=())
def say_locked(turn, value: str | None) -> None:
    """Which lock, until when, and who can help: at the call center's number, or (`.here`) with 0 to a
    caller on that number already (handed over from 1-800-228-KIDS in this call)."""
    kind = turn.vars.get("lock", "case")
    pid = {"caller": "pay.locked.caller", "sdu": "pay.locked.sdu",
           "case_all": "pay.locked.case_all"}.get(kind, "pay.locked.case")
    settings = _settings(turn)
    fields = {"minutes": num2words(settings.lock_seconds // 60, lang=turn.language.locale),
              "days": num2words(settings.case_memory_seconds // (24 * 3600), lang=turn.language.locale),
              "website": settings.website.get(turn.lang, ""), "hours": turn.services.hours.describe(turn.lang)}
    number = turn.engine.number_to_tell(turn, turn.services.lines["callback_number"])
    if number is None:
        turn.say(pid + ".here", **fields)
    else:
        turn.say(pid, number=say_phone(number, turn.lang), **fields)
    return None


# --- the figures ----------------------------------------------------------------------------------

class _Words:
    """Amounts, dates, sources and methods in words, in the caller's language."""

    def __init__(self, turn) -> None:
        self.lang = turn.language
        self.today = turn.services.hours.now().date()

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
            say_ses(turn, "pay.held.help")
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
        say_ses(turn, "pay.held.help")
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
        # Only what the SDU's answer says: its newest payment is held (never why, nor when it is sent).
        last = summary.last_payment
        if last is not None and last.status == "held":
            turn.say("pay.next.held")
            say_ses(turn, "pay.held.help")
    else:
        words = _Words(turn)
        turn.say("pay.next.scheduled", amount=words.money(nd.amount), date=words.date(nd.date),
                 method=say_method(nd.method, turn.language))
    return None


@handler("pay_say_how", events=())
def say_how(turn, value: str | None) -> None:
    """The three ways to pay, then, for a payer, what the SDU says of withholding on the case (the
    rest is behind "for more": pay_say_how_more, then how withholding works, also behind 2)."""
    settings = _settings(turn)
    turn.say("pay.how.intro", website=settings.website.get(turn.lang, ""))
    # For a payer, whether withholding is working on the case; without the SDU the general facts
    # above still hold, so its absence is only logged.
    case = _identified(turn)
    if case and turn.vars.get("role") == "payer":
        summary = _extra_summary(turn, case, "payer", "withholding status")
        active = summary.income_withholding_active if summary else None
        if active is True:
            turn.say("pay.how.iw_active")
        elif active is False:
            # SES moves a withholding to unemployment or workers' compensation (the brochure): a payer
            # whose recent payments came from those is not told to pay by mail or online for want of
            # an employer's withholding. Not known (the SDU did not answer): neither is said.
            benefit = _benefit_source(turn, case, summary)
            if benefit:
                turn.say("pay.how.iw_benefits", source=say_source(benefit, turn.language))
            elif benefit == "":
                turn.say("pay.how.iw_inactive")
    return None


@handler("pay_say_how_more", events=())
def say_how_more(turn, value: str | None) -> None:
    """Paying by mail (the address once configured, else where to find it), and paying through the
    SDU to get credit."""
    settings = _settings(turn)
    lang = turn.lang
    website = settings.website.get(lang, "")
    if settings.mail_to.get(lang):
        turn.say("pay.how.mail", address=settings.mail_to[lang])
    else:
        # No seed gives the SDU's mailing address: never read one until it is configured.
        number = turn.engine.number_to_tell(turn, turn.services.lines["callback_number"])
        if number is None:
            turn.say("pay.how.mail_unknown.here", website=website)
        else:
            turn.say("pay.how.mail_unknown.call", website=website, number=say_phone(number, lang))
    turn.say("pay.how.credit")
    return None


def _benefit_source(turn, case: str, summary: Summary) -> str | None:
    """The benefit (unemployment or workers' compensation) the payer's newest payments came from, ""
    when none of the last five did, None when the SDU could not say in a short budget."""
    last = summary.last_payment
    if last is None:
        return ""
    if last.source in BENEFITS:
        return last.source
    sdu = turn.services.sdu
    try:
        if sdu is None:
            raise SDUError("no SDU client configured")
        with sdu.budget_scope(EXTRA_BUDGET):
            payments = sdu.payments(case, "payer", limit=RECENT)
    except SDUError as exc:
        log.info("payments: call %s: payment sources not available: %s", _sid(turn), exc)
        return None
    return next((p.source for p in payments if p.source in BENEFITS), "")
