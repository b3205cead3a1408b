"""1-888-233-7223 end to end: the simulated phone against the stub SDU over real HTTP.

Every fixture case is walked in both languages, as its payer and as its payee, and what the caller
hears is checked against the fixture figures (tests/../ivr/sdu/fixtures.json). The expected
sentences are built from the prompts and the fixture's raw values; a few are also written out by
hand, so that a change in how money or dates are said cannot go unnoticed.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

import pytest

from ivr.callflow.speech import say_date, say_digits, say_method, say_money, say_phone, say_source
from ivr.sdu.stub import load_fixtures
from tests.walk import CASE as CASE_W
from tests.walk import PAYER_PIN as PAYER_PIN_W
from tests.walk import Phone, line_number, state_of

FIXTURES = load_fixtures()
CASES = {c["case_number"]: c for c in FIXTURES["cases"] if "simulate" not in c}
TODAY = date(2026, 11, 24)      # the fixed clock of the tests (conftest.OPEN)
LANG_KEY = {"en": "-", "es": "2"}
SIGNED_IN = 4                   # inputs up to the menu: language, case number, "1" (right), PIN
WALK = {"payer": ["1", "9", "2", "9", "3", "9", "4"], "payee": ["1", "9", "2", "9", "3", "9", "4"]}


def sign_in(lang: str, case: str, pin: str) -> list[str]:
    return [LANG_KEY[lang], case + "#", "1", pin + "#"]


def voices_after_choice(c) -> set[str]:
    """The TTS languages of everything said after the caller's first answer (the language choice)."""
    first = next(i for i, e in enumerate(c.events) if e.kind == "input")
    return {e.attrs.get("language") for e in c.events[first:] if e.kind == "say"}


def hours(app, lang: str) -> str:
    """When people answer, as said (config/hours.yaml)."""
    return app.extensions["ivr"].hours.describe(lang)


def money(value: str, lang: str) -> str:
    return say_money(Decimal(value), lang)


def day(value: str, lang: str) -> str:
    return say_date(date.fromisoformat(value), lang, today=TODAY)


def payment_fields(p: dict, lang: str) -> dict:
    fields = {"amount": money(p["amount"], lang), "source": say_source(p["source"], lang),
              "received": day(p["received_date"], lang)}
    if p.get("disbursement_method"):
        fields["method"] = say_method(p["disbursement_method"], lang)
    if p.get("disbursed_date"):
        fields["sent"] = day(p["disbursed_date"], lang)
    return fields


def payee_kind(p: dict) -> str:
    return "disbursed" if p["status"] == "disbursed" else "held" if p["status"] == "held" else "received"


def expected_balance(case: dict, lang: str, prompts) -> list[str]:
    order = case["weekly_order"]
    out = []
    if case["status"] != "open":
        out.append(prompts.text(f"pay.status.{case['status']}", lang))
    else:
        parts = [prompts.text(pid, lang, amount=money(order[name], lang))
                 for name, pid in (("current_support", "pay.part.current"), ("medical_support", "pay.part.medical"),
                                   ("child_care", "pay.part.child_care"),
                                   ("arrears_payment", "pay.part.arrears"))
                 if Decimal(order[name]) > 0]
        if len(parts) == 1:
            out.append(prompts.text("pay.balance.order_one", lang, part=parts[0]))
        else:
            joined = ", ".join(parts[:-1]) + (" y " if lang == "es" else " and ") + parts[-1]
            out.append(prompts.text("pay.balance.order", lang, total=money(order["total"], lang), parts=joined))
    arrears = Decimal(case["arrears_balance"])
    if arrears > 0:
        out.append(prompts.text("pay.balance.arrears", lang, amount=money(case["arrears_balance"], lang)))
    elif arrears < 0:
        out.append(prompts.text("pay.balance.credit", lang, amount=money(str(-arrears), lang)))
    else:
        out.append(prompts.text("pay.balance.no_arrears", lang))
    as_of = datetime.fromisoformat(case["as_of"]).date().isoformat()
    out.append(prompts.text("pay.balance.as_of", lang, date=day(as_of, lang)))
    if case["status"] == "open":
        out.append(prompts.text("pay.balance.changes", lang))
    return out


# --- every fixture case, both languages, both parties ----------------------------------------------

@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("number", sorted(CASES))
def test_every_case_reads_its_figures_to_payer_and_payee(app, call, prompts, lang, number):
    case = CASES[number]
    for role in ("payer", "payee"):
        pin = case["parties"][role]["pin"]
        c = call("payments", sign_in(lang, number, pin) + WALK[role])
        where = f"{number} {role} {lang}"
        assert not c.hung_up and not c.dialed, where
        # The case number is read back digit by digit, the PIN never.
        assert prompts.text("pay.case.confirm", lang, digits=say_digits(number)) in c.said_at(2), where
        assert " ".join(pin) not in c.said and pin not in c.said, where

        menu = c.said_at(SIGNED_IN)
        assert prompts.text("pay.signed_in", lang) in menu, where
        if case["status"] != "open":
            assert prompts.text(f"pay.status.{case['status']}", lang) in menu, where
        next_opt = prompts.text("pay.menu.opt.next", lang)
        how_opt = prompts.text("pay.menu.opt.how", lang)
        assert (next_opt in menu) == (role == "payee"), where
        assert (how_opt in menu) == (role == "payer"), where

        # 1: the last payment.
        last = c.said_at(SIGNED_IN + 1)
        payments = case["payments"]
        if not payments:
            assert prompts.text("pay.last.none", lang) in last, where
        else:
            p = dict(payments[0])
            if role == "payer":
                p["disbursement_method"] = None
                assert prompts.text("pay.last.payer", lang, **payment_fields(p, lang)) in last, where
            else:
                pid = f"pay.last.payee.{payee_kind(p)}"
                assert prompts.text(pid, lang, **payment_fields(p, lang)) in last, where
                held_help = " ".join(prompts.text("pay.held.help.call", lang, number=say_phone("+18002285437", lang),
                                                  hours=hours(app, lang)).split())   # as heard: spaces plain
                assert (held_help in last) == (p["status"] == "held"), where
        assert prompts.text("menu.globals.answer", lang) in last, where

        # 2: the last five payments, newest first, and no sixth.
        recent = c.said_at(SIGNED_IN + 3)
        if not payments:
            assert prompts.text("pay.last.none", lang) in recent, where
        positions = []
        for p in payments[:5]:
            p = dict(p)
            if role == "payer":
                p["disbursement_method"] = None
                text = prompts.text("pay.recent.item", lang, **payment_fields(p, lang))
            else:
                text = prompts.text(f"pay.recent.item.{payee_kind(p)}", lang, **payment_fields(p, lang))
            assert text in recent, f"{where}: {text}"
            positions.append(recent.index(text))
        assert positions == sorted(positions), where
        for p in payments[5:]:
            assert day(p["received_date"], lang) not in recent, where

        # 3: the balance: weekly order and parts, arrears, the as-of date, that it changes weekly.
        balance = c.said_at(SIGNED_IN + 5)
        for sentence in expected_balance(case, lang, prompts):
            assert sentence in balance, f"{where}: {sentence}"

        # 4: the payee's next payment, or the payer's ways to pay.
        fourth = c.said_at(SIGNED_IN + 7)
        if role == "payee":
            nd = case["next_disbursement"]
            if nd is None:
                assert prompts.text("pay.next.none", lang) in fourth, where
            else:
                assert prompts.text("pay.next.scheduled", lang, amount=money(nd["amount"], lang),
                                    date=day(nd["date"], lang), method=say_method(nd["method"], lang)) in fourth
        else:
            website = "C T dot smart child support dot com" if lang == "en" else \
                "C T punto smart child support punto com"
            assert prompts.text("pay.how.intro", lang, website=website) in fourth, where
            iw = case.get("income_withholding_active")
            # A payer whose last payment came from unemployment or workers' compensation hears that
            # support can be taken from those benefits, never "no withholding: pay by mail or online".
            benefit = next((p["source"] for p in payments[:5]
                            if p["source"] in ("unemployment_compensation", "workers_compensation")), None)
            benefits = iw is False and benefit is not None
            assert (prompts.text("pay.how.iw_active", lang) in fourth) == (iw is True), where
            assert (prompts.text("pay.how.iw_inactive", lang) in fourth) == (iw is False and not benefits), where
            if benefits:
                assert prompts.text("pay.how.iw_benefits", lang, source=say_source(benefit, lang)) in fourth, where

        # Never a raw figure: no "206.00", no "2026-11-13", no enum names.
        assert not re.search(r"\d+\.\d\d|\d{4}-\d\d-\d\d|_", c.said), where
        assert voices_after_choice(c) == {"en-US" if lang == "en" else "es-US"}, where


# --- what a caller hears, written out by hand ------------------------------------------------------

def test_payer_hears_amounts_dates_and_sources_in_plain_english(call):
    c = call("payments", sign_in("en", "123456789", "1234") + ["1", "9", "3"])
    assert ("Your last payment, two hundred six dollars, from an employer's paycheck withholding, "
            "was received on Friday, November 13.") in c.said
    assert ("The weekly support order on this case is two hundred six dollars: one hundred fifty dollars for "
            "current support, twenty-five dollars for medical support, twenty dollars for child care and "
            "eleven dollars toward the past-due balance.") in c.said
    assert ("The past-due balance, also called arrears, is three thousand four hundred twelve dollars and "
            "fifty-seven cents.") in c.said
    assert "These amounts are as of Friday, November 13." in c.said
    assert "The balance changes as each week's support comes due" in c.said


def test_payee_hears_how_and_when_money_was_sent_in_spanish(call):
    c = call("payments", sign_in("es", "123456789", "4321") + ["2", "9", "4"])
    assert ("El viernes 6 de noviembre, doscientos seis dólares, de una retención de salario hecha por un "
            "empleador, enviado a su tarjeta de débito el lunes 9 de noviembre.") in c.said
    assert ("Su próximo pago, doscientos seis dólares, está programado para enviarse a su tarjeta de débito "
            "el lunes 16 de noviembre.") in c.said
    # The sixth payment (October 9, 103.00) is not among the last five.
    assert "ciento tres" not in c.said


def test_hard_amounts_in_both_languages(call):
    es = call("payments", sign_in("es", "901234567", "2109") + ["3", "9", "2"])
    assert "veintidós dólares con cincuenta centavos: veintiún dólares de manutención actual" in es.said
    assert "un dólar de manutención médica y cincuenta centavos para el saldo atrasado" in es.said
    assert "es de mil un dólares con un centavo" in es.said
    assert "El viernes 30 de octubre" not in es.said  # received Oct 29, sent Oct 30: said as "enviado"
    assert "El jueves 29 de octubre, cincuenta centavos, de otra fuente, enviado" in es.said
    en = call("payments", sign_in("en", "901234567", "9012") + ["3"])
    assert "is one thousand one dollars and one cent." in en.said
    assert "one dollar for medical support and fifty cents toward the past-due balance" in en.said


def test_credit_closed_and_suspended_cases_are_said_plainly(call):
    credit = call("payments", sign_in("en", "678912345", "6802") + ["3"])
    assert "This case has a credit of forty-five dollars: more has been paid than was owed." in credit.said
    assert "minus" not in credit.said
    closed = call("payments", sign_in("en", "234567891", "2468") + ["3"])
    assert closed.said.count("This case is closed. No weekly support is due on it.") == 2  # sign-in, balance
    assert "There is no past-due balance on this case." in closed.said
    assert "The balance changes" not in closed.said
    suspended = call("payments", sign_in("es", "345678912", "3690") + ["3"])
    assert "La orden de manutención de este caso está suspendida" in suspended.said
    assert "doce mil ochocientos cuarenta dólares con treinta y tres centavos" in suspended.said


def test_a_new_order_without_payments(call):
    c = call("payments", sign_in("en", "045678912", "7410") + ["1", "9", "2", "9", "4"])
    assert c.said.count("No payment has been received on this case yet.") == 2
    assert "No payment to you is scheduled right now." in c.said


def test_payer_learns_how_to_pay_from_the_menu_and_from_the_balance(call, prompts):
    c = call("payments", sign_in("en", "456789123", "4826") + ["3", "1", "1", "1"])
    assert prompts.text("pay.menu.opt.how", "en") + ", press 1." in c.said_at(SIGNED_IN + 1)
    how = c.said_at(SIGNED_IN + 2)
    assert ("There are three ways to pay child support: income withholding, by mail, or online at "
            "C T dot smart child support dot com.") in how
    assert "For more, press 1." in how
    assert "To pay by mail, find the mailing address" in c.said_at(SIGNED_IN + 3)
    assert "not to the other parent" in c.said_at(SIGNED_IN + 3)
    assert "With income withholding, your employer takes the support out of your pay" in c.said_at(SIGNED_IN + 4)
    payee = call("payments", sign_in("en", "456789123", "6284") + ["3"])
    assert prompts.text("pay.menu.opt.how", "en") not in payee.said


def test_after_each_figure_star_repeats_9_is_the_payment_menu_and_0_a_person(call, prompts):
    c = call("payments", sign_in("en", "567891234", "1975") + ["4", "*", "9", "0"])
    scheduled = ("Your next payment, one thousand two hundred dollars, is scheduled to be sent by check in "
                 "the mail on Wednesday, November 18.")
    assert scheduled in c.said_at(SIGNED_IN + 1)
    assert scheduled in c.said_at(SIGNED_IN + 2)                     # star: said again
    assert prompts.text("pay.menu.intro", "en") in c.said_at(SIGNED_IN + 3)   # 9: the payment menu
    assert prompts.text("pay.signed_in", "en") not in c.said_at(SIGNED_IN + 3)
    assert c.dialed == ["+18605696233"]                               # 0: the agents


# --- reaching the line -----------------------------------------------------------------------------

def test_the_number_starts_with_the_language_question(call, prompts):
    c = call("+18882337223", [])
    assert prompts.text("pay.welcome", "en") in c.said
    assert "Para español, oprima 2." in c.said


@pytest.mark.parametrize("lang", ["en", "es"])
def test_handover_from_the_call_center_keeps_the_language_and_skips_the_question(call, prompts, lang):
    keys = [LANG_KEY[lang], "1", "1", "567891234#", "1", "5791#", "3"]
    c = call("callcenter", keys)
    assert prompts.text("cc.to_payments", lang) in c.said
    assert prompts.text("pay.welcome", lang) not in c.said
    assert prompts.text("pay.case.ask", lang) in c.said_at(3)
    assert money("8750.25", lang) in c.said_at(7)
    assert voices_after_choice(c) == {"en-US" if lang == "en" else "es-US"}
    assert not c.hung_up


def test_the_call_center_menu_is_offered_when_help_is_needed(call, prompts):
    c = call("payments", ["-", "999000500#", "1", "5009#", "1"])
    assert prompts.text("pay.sdu.down", "en") in c.said
    assert prompts.text("pay.to_cc", "en") in c.said
    assert prompts.text("cc.main.intro", "en") in c.said_at(5)


# --- entering the numbers --------------------------------------------------------------------------

def test_wrong_length_entries_are_explained_and_asked_again(call, prompts):
    c = call("payments", ["-", "12345#", "123456789#", "1", "12#", "1234#", "3"])
    assert prompts.text("collect.wrong_length", "en", got="5 digits", want="9 digits") in c.said_at(2)
    assert prompts.text("pay.case.ask", "en") in c.said_at(2)
    assert prompts.text("collect.wrong_length", "en", got="2 digits", want="4 digits") in c.said_at(5)
    assert "two hundred six dollars" in c.said_at(7)


def test_the_case_number_can_be_entered_again_and_star_at_the_pin_changes_it(call, prompts):
    c = call("payments", ["-", "123456780#", "2", "123456789#", "1", "*", "567891234#", "1", "1975#", "1"])
    assert prompts.text("pay.case.confirm", "en", digits="1 2 3, 4 5 6, 7 8 0") in c.said_at(2)
    assert prompts.text("pay.case.ask", "en") in c.said_at(3)
    assert prompts.text("pay.case.ask", "en") in c.said_at(6)
    assert "one thousand two hundred dollars, from a bank account seizure" in c.said_at(10)


def test_letters_or_star_in_the_case_number_do_not_crash(call, prompts):
    c = call("payments", ["-", "12345*789#", "123456789#", "1", "1234#"])
    assert prompts.text("collect.digits_only", "en") in c.said
    assert prompts.text("pay.menu.intro", "en") in c.said


@pytest.mark.parametrize("keys", [["-", "9"], ["-", "123456789#", "9"], ["-", "123456789#", "1", "9"]])
def test_nine_before_sign_in_goes_to_the_call_center_menu_not_round_again(call, prompts, keys):
    """The payment menu needs a PIN, so "the main menu" before sign-in is the call center's; before,
    9 at the case number asked for the case number again, for ever."""
    c = call("payments", keys)
    after = c.said_after(len(keys))
    assert prompts.text("pay.to_cc", "en") in after
    assert prompts.text("cc.main.intro", "en") in after
    assert prompts.text("pay.case.ask", "en") not in after


# --- a step the menus never lead to (a forged or stale request): the call goes where the tree says ---

STRAY = {   # the node the call is put at, the call state it lacks, the key; then where it must go, what it hears
    "a payer at the payee's next payment": ("pay_next", (), "*", "pay_menu", "pay.menu.intro"),
    "a figure, not signed in": ("pay_last", ("role",), "*", "pay_case", "pay.case.ask"),
    "the read-back, no case number": ("pay_case_confirm", ("role", "_case"), "*", "pay_case", "pay.case.ask"),
    "a PIN, no case number": ("pay_pin", ("role", "_case"), PAYER_PIN_W + "#", "pay_case", "pay.case.ask"),
}


@pytest.mark.parametrize("stray", STRAY, ids=list(STRAY))
def test_a_step_the_menus_never_lead_to_goes_where_the_tree_says(app, prompts, stray):
    node, lacks, key, goes, says = STRAY[stray]
    phone = Phone(app, to=line_number(app, "payments")).start()
    for k in sign_in("en", CASE_W, PAYER_PIN_W):
        phone.press(k)
    assert state_of(app, phone.sid).node == "pay_menu"
    store = app.extensions["ivr"].store
    state = store.load(phone.sid)[0]
    state.node = node
    for name in lacks:
        state.vars.pop(name, None)
    store.save(state)
    mark = len(phone.heard)
    phone.press(key)
    assert state_of(app, phone.sid).node == goes
    assert prompts.text(says, "en") in phone.said_since(mark)
    assert "dollars" not in phone.said_since(mark)     # no figure on the way
