"""What callers hear (issue 15), end to end through the simulated phone: no dead ends, and no fact
the seeds or the SDU's answer do not give.

The payment line for a caller without a case number or PIN, and after sign-in; what is said of held
payments, benefits and the mailing address; the town lookup; transfers to a person; the inmate
request's last words; the staff line; and the Spanish of each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.callflow.speech import say_phone

ROOT = Path(__file__).resolve().parents[1]
CALL_CENTER = say_phone("+18002285437", "en")          # "1, 8 0 0, 2 2 8, 5 4 3 7"
HOURS = "Monday through Friday, from 8:30 AM to 4:30 PM"
AFTER_HOURS = "2026-11-24 20:00"
LANG_KEY = {"en": "-", "es": "2"}
SIGNED_IN = 4                   # inputs up to the payment menu: language, case number, "1" (right), PIN


def sign_in(lang: str, case: str, pin: str) -> list[str]:
    return [LANG_KEY[lang], case + "#", "1", pin + "#"]


def config_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of config/ with one text of one file replaced."""
    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    path = cfg / file
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{file} no longer has {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return cfg


# --- the payment line: a caller without a case number or PIN -------------------------------------

NO_NUMBER = ("This line can give payment information only with your case number and PIN. For help with your "
             f"case number or PIN, call S E S, the Child Support Call Center, at {CALL_CENTER}. People answer "
             f"{HOURS}. The payment website, C T dot smart child support dot com, also has payment information.")


@pytest.mark.parametrize("when", ["2026-11-24 10:00", AFTER_HOURS])
def test_silence_at_the_case_number_tells_what_to_do_and_offers_the_call_center(call, clock, prompts, when):
    """Silence used to hang up after hours (and dial a person in open hours, saying nothing of where
    to get help); now the caller hears what to do, and 1 is the call center's menu."""
    clock.set(when)
    c = call("payments", ["-", "-", "-", "-", "1"])
    assert c.said.count(prompts.text("pay.case.ask", "en")) == 3
    assert NO_NUMBER in c.said_at(4)
    assert "For the child support call center menu, with answers to common questions, press 1." in c.said_at(4)
    assert prompts.text("cc.main.intro", "en") in c.said_at(5)
    assert not c.dialed and not c.hung_up


def test_star_at_the_case_number_tells_a_caller_without_one_what_to_do(call, prompts):
    c = call("payments", ["-", "*", "2", "123456789#", "1", "1234#"])
    assert "If you do not have your case number or PIN, press star." in c.said_at(1)
    assert NO_NUMBER in c.said_at(2)
    assert prompts.text("pay.case.ask", "en") in c.said_at(3)          # 2: a case number after all
    assert prompts.text("pay.menu.intro", "en") in c.said_at(6)


def test_star_at_the_pin_leads_to_the_same_help(call, prompts):
    c = call("payments", ["-", "123456789#", "1", "*", "*"])
    assert prompts.text("pay.case.ask", "en") in c.said_at(4)
    assert NO_NUMBER in c.said_at(5)


def test_after_hours_0_then_9_no_longer_loops_back_to_the_case_number(call, clock, prompts):
    """Before: 0 said no one was available, 9 went to this line's menu, which asked for the case
    number again, for ever. Now 0 says what to do without a PIN, and 9 is the call center's menu."""
    clock.set(AFTER_HOURS)
    c = call("payments", ["-", "0", "9"])
    assert NO_NUMBER in c.said_at(2)
    assert not c.dialed
    assert prompts.text("cc.main.intro", "en") in c.said_at(3)
    assert prompts.text("pay.case.ask", "en") not in c.said_at(3)


def test_in_open_hours_0_before_sign_in_dials_and_a_busy_line_tells_what_to_do(call, prompts):
    c = call("payments", ["-", "0", "dial:busy", "1"])
    assert c.dialed == ["+18605696233"]
    assert NO_NUMBER in c.said_at(2)
    assert prompts.text("cc.main.intro", "en") in c.said_at(3)


def test_the_help_without_a_case_number_in_spanish(call, clock):
    clock.set("2026-11-28 11:00")                                     # a Saturday
    c = call("payments", ["2", "*"])
    said = c.said_at(2)
    assert "Esta línea solo puede dar información de pagos con su número de caso y su PIN." in said
    assert "Para ayuda con su número de caso o su PIN, llame a S E S, el Centro de Llamadas de Manutención" in said
    assert "Atendemos de lunes a viernes" in said
    assert {e.attrs.get("language") for e in c.events if e.kind == "say"} - {"en-US"} == {"es-US"}


def test_handed_over_from_the_call_center_the_help_says_press_0_not_its_own_number(call):
    """The caller dialed 1-800-228-KIDS: they are not told to call it."""
    c = call("callcenter", ["-", "1", "1", "*"])
    assert f"For help with your case number or PIN, talk to someone at S E S: press 0. People answer {HOURS}." \
        in c.said_at(4)
    assert CALL_CENTER not in c.said


def test_sign_in_help_is_read_once_configured(call, make_app, tmp_path):
    """No seed says where the case number and PIN are found: nothing is read until SES gives the words."""
    cfg = config_with(tmp_path, "flows/payments.yaml", '    sign_in_help:\n      en: ""\n      es: ""',
                      '    sign_in_help:\n      en: "Your case number is on the test letter."\n'
                      '      es: "Su número de caso está en la carta de prueba."')
    c = call("payments", ["-", "*"], target_app=make_app(CONFIG_DIR=cfg))
    assert ("only with your case number and PIN. Your case number is on the test letter. For help with your "
            "case number") in c.said


# --- the payment line after sign-in ----------------------------------------------------------------

@pytest.mark.parametrize("pin", ["4826", "6284"], ids=["payer", "payee"])
def test_after_sign_in_5_reaches_the_call_centers_answers_and_its_payments_option_comes_back(call, prompts, pin):
    c = call("payments", sign_in("en", "456789123", pin) + ["5", "1", "1"])
    assert "For answers to common questions, in the call center menu, press 5." in c.said_at(SIGNED_IN)
    assert prompts.text("cc.main.intro", "en") in c.said_at(SIGNED_IN + 1)
    back = c.said_at(SIGNED_IN + 3)                     # main menu 1, then 1: the payment line again
    assert prompts.text("pay.menu.intro", "en") in back
    assert prompts.text("pay.case.ask", "en") not in back       # still signed in
    es = call("payments", sign_in("es", "456789123", pin) + ["5"])
    assert "Para respuestas a preguntas comunes, en el centro de llamadas, oprima 5." in es.said


def test_held_payments_are_said_as_the_sdu_says_them_with_no_guessed_reason(call):
    """The SDU says a payment is held, not why: no reason is guessed ("most often ... your address"),
    and "a payment is scheduled after the SDU receives money" is not said of money it has received."""
    c = call("payments", sign_in("en", "089123456", "0707") + ["1", "9", "4"])
    assert ("The last payment, three hundred ninety dollars, from an employer's paycheck withholding, was "
            "received on Friday, November 6. It is on hold, so it has not been sent to you.") in c.said
    held = (f"This line cannot tell why a payment is on hold. To ask about it, call S E S at {CALL_CENTER}. "
            f"People answer {HOURS}.")
    assert held in c.said_at(SIGNED_IN + 1)
    assert ("No payment to you is scheduled right now. The newest payment received on your case is on hold. "
            + held) in c.said_at(SIGNED_IN + 3)
    for guess in ("address", "most often", "after the State Disbursement Unit receives money", "released"):
        assert guess not in c.said, guess


def test_held_payments_in_spanish_are_en_espera_not_retenido(call):
    """"Retención" is the income withholding; a held payment is "en espera" (never "retenido")."""
    c = call("payments", sign_in("es", "089123456", "0707") + ["1", "9", "2", "9", "4"])
    assert "Está en espera, así que no se le ha enviado." in c.said
    assert "en espera." in c.said_at(SIGNED_IN + 3)
    assert "El pago más reciente que se recibió en su caso está en espera." in c.said_at(SIGNED_IN + 5)
    assert "retenid" not in c.said and "dirección" not in c.said


def test_a_held_payment_told_on_the_call_centers_number_says_press_0_not_its_number(call):
    """Handed over from 1-800-228-KIDS, the caller is on the number the payment line would give."""
    c = call("callcenter", ["-", "1", "1", "089123456#", "1", "0707#", "1"])
    assert "This line cannot tell why a payment is on hold. To ask about it, talk to someone at S E S: press 0." \
        in c.said
    assert CALL_CENTER not in c.said


@pytest.mark.parametrize("case,pin,source", [("456789123", "4826", "from unemployment benefits"),
                                             ("567891234", "5791", "from workers' compensation")])
def test_a_payer_paid_from_benefits_is_not_told_to_pay_by_mail_for_lack_of_withholding(call, case, pin, source):
    """SES moves a withholding to unemployment or workers' compensation (the brochure): a payer whose
    recent payments came from those is not told "no income withholding ... pay by mail or online"
    (case 567891234's newest payment is a bank seizure, the two before it workers' compensation)."""
    c = call("payments", sign_in("en", case, pin) + ["4"])
    how = c.said_at(SIGNED_IN + 1)
    assert "no income withholding" not in how
    assert (f"A recent payment came {source}. S E S can have support taken out of these benefits, as it is "
            "taken out of a paycheck. When support is not taken out for you, make your payments yourself.") in how
    es = call("payments", sign_in("es", case, pin) + ["4"])
    assert "S E S puede hacer que la manutención se descuente de esos beneficios" in es.said
    assert "no muestran una retención" not in es.said


def test_a_payer_without_withholding_or_benefits_still_hears_to_pay_by_mail_or_online(call):
    c = call("payments", sign_in("en", "012345678", "0417") + ["4"])
    assert "Our records show no income withholding working on your case" in c.said


def test_the_mailing_address_is_not_read_until_configured(call):
    """No seed gives the SDU's mailing address: the caller hears where to find it."""
    c = call("payments", sign_in("en", "012345678", "0417") + ["4", "1"])
    assert ("To pay by mail, find the mailing address on the payment website, C T dot smart child support "
            f"dot com. Or call S E S at {CALL_CENTER}.") in c.said
    assert "P O Box" not in c.said and "Bureau" not in c.said
    handed = call("callcenter", ["-", "1", "1", "012345678#", "1", "0417#", "4", "1"])   # on 1-800 already
    assert "dot com. Or press 0 to ask someone at S E S." in handed.said and CALL_CENTER not in handed.said
    es = call("payments", sign_in("es", "012345678", "0417") + ["4", "1"])
    assert "busque la dirección en el sitio web de pagos, C T punto smart child support punto com" in es.said
    assert "Bureau" not in es.said and "apartado" not in es.said


def test_the_mailing_address_is_read_once_configured(call, make_app, tmp_path):
    cfg = config_with(tmp_path, "flows/payments.yaml", '    mail_to:\n      en: ""\n      es: ""',
                      '    mail_to:\n      en: "the test address, P O Box 1 2 3"\n'
                      '      es: "la dirección de prueba, apartado postal 1 2 3"')
    c = call("payments", sign_in("en", "012345678", "0417") + ["4", "1"], target_app=make_app(CONFIG_DIR=cfg))
    assert ("To pay by mail, send a check or money order, with your case number written on it, to the test "
            "address, P O Box 1 2 3.") in c.said
    assert "find the mailing address" not in c.said


def test_half_an_address_is_refused_at_start_up(tmp_path):
    from ivr.callflow.flow import FlowError
    from ivr.domain.payline import load_settings

    path = tmp_path / "payments.yaml"
    path.write_text('settings: {how_to_pay: {mail_to: {en: "P O Box 1", es: ""}, website: {en: a, es: b}}}')
    with pytest.raises(FlowError, match=r"mail_to needs `en` and `es` texts \(or none at all"):
        load_settings(path, ["en", "es"])


def test_a_direct_payment_to_the_sdu_is_not_named_like_one_to_the_other_parent(call):
    """The SDU's `direct_payment` is money the payer sent the SDU; the FAQ's "direct payment" is paid
    to the other parent. The payment line names the first so that the two cannot be confused."""
    from ivr.sdu.stub import load_fixtures
    direct = [(c["case_number"], c["parties"]["payee"]["pin"]) for c in load_fixtures()["cases"]
              if "simulate" not in c and any(p["source"] == "direct_payment" for p in c["payments"][:5])]
    assert direct, "no fixture case has a direct payment"
    number, pin = direct[0]
    c = call("payments", sign_in("en", number, pin) + ["2"])
    assert "paid straight to the State Disbursement Unit, not through an employer" in c.said
    assert "direct payment" not in c.said
    es = call("payments", sign_in("es", number, pin) + ["2"])
    assert "pagado directamente a la Unidad Estatal de Desembolsos" in es.said
    assert "pago directo" not in es.said


# --- the town lookup (main menu 5, then 1) -------------------------------------------------------

TOWN = ["-", "5", "1"]


def test_star_at_the_town_question_repeats_it(call, prompts):
    c = call("callcenter", TOWN + ["*"])
    assert prompts.text("cc.town.ask", "en") in c.said_at(4)
    assert "Please use only the number keys" not in c.said


@pytest.mark.parametrize("key,says", [("9", "cc.main.intro"), ("0", None)])
def test_9_and_0_work_at_the_town_question(call, prompts, key, says):
    c = call("callcenter", TOWN + [key])
    if says:
        assert prompts.text(says, "en") in c.said_at(4)
    else:
        assert c.dialed == ["+18605696233"]


@pytest.mark.parametrize("when", ["2026-11-24 10:00", AFTER_HOURS])
def test_three_misses_offer_the_offices_by_region_at_any_hour(call, clock, prompts, when):
    """After hours the call used to end here; in open hours it went to a person."""
    clock.set(when)
    c = call("callcenter", TOWN + ["say Boston", "-", "12345#", "4"])
    after = c.said_at(6)
    assert prompts.text("cc.office.intro", "en") in after
    assert f"{prompts.text('cc.office.opt.fairfield', 'en')}, press 4." in after
    assert not c.hung_up and not c.dialed[:-1]
    assert "the Bridgeport office" in c.said_at(7)


def test_an_unconfirmed_office_does_not_tell_a_caller_to_call_the_number_they_are_on(call):
    c = call("callcenter", TOWN + ["say Ansonia", "1"])
    assert "If that office cannot help with your case, call this number again and press 0." in c.said
    assert CALL_CENTER not in c.said


@pytest.mark.parametrize("said", ["Nueva Londres", "vivo en Nuevo Londres"])
def test_the_town_lookup_in_spanish_says_ciudad_and_knows_nueva_londres(call, said):
    c = call("callcenter", ["2", "5", "1", f"say {said}", "1"])
    assert "Por favor diga el nombre de la ciudad donde vive." in c.said
    assert "Su ciudad es Nueva Londres." in c.said_at(4)
    assert "Para confirmar esa ciudad, oprima 1." in c.said_at(4)
    assert "La oficina que atiende a Nueva Londres es la oficina de Norwich." in c.said_at(5)
    assert c.dialed == ["+18608862694"]
    assert "pueblo" not in c.said


def test_new_london_in_english_is_still_new_london(call):
    c = call("callcenter", TOWN + ["say New London", "1"])
    assert "Your town is New London." in c.said
    assert c.dialed == ["+18608862694"]


# --- a person (0) ----------------------------------------------------------------------------------

ADMIN = say_phone("+18605696233", "en")


def test_0_names_who_is_dialed_and_their_own_number_not_the_call_centers(call):
    """0 rings the SES administration office (the agents' number is a placeholder): the caller is told
    so, with that office's number, not 1-800-228-KIDS."""
    c = call("callcenter", ["-", "0"])
    assert c.dialed == ["+18605696233"]
    assert ("Connecting you to the S E S administration office in East Hartford. If the call drops, you can "
            f"call them at {ADMIN}.") in c.said
    assert CALL_CENTER not in c.said


@pytest.mark.parametrize("status,said", [("busy", "is busy"), ("no-answer", "answered"),
                                         ("failed", "could not connect")])
def test_a_person_not_reached_offers_the_hours_the_offices_and_another_try(call, prompts, status, said):
    c = call("callcenter", ["-", "0", f"dial:{status}", "2"])
    after = c.said_at(2)                          # a dial's end is not the caller's input
    assert said in after
    assert (f"People answer {HOURS}. To try again, press 1. For the S E S offices and their phone numbers, "
            "press 2.") in after
    assert CALL_CENTER not in c.said and "call us back" not in c.said
    assert prompts.text("cc.office.intro", "en") in c.said_at(3)


def test_a_person_not_reached_can_be_tried_again(call):
    c = call("callcenter", ["-", "0", "dial:busy", "1", "dial:completed"])
    assert c.dialed == ["+18605696233", "+18605696233"]


def test_in_spanish_a_person_not_reached(call):
    c = call("callcenter", ["2", "0", "dial:no-answer"])
    assert "Atendemos de lunes a viernes" in c.said_at(2)
    assert "Para las oficinas de S E S y sus números de teléfono, oprima 2." in c.said_at(2)


def test_with_an_agents_queue_a_caller_on_its_public_number_is_not_told_to_call_it(call, make_app, tmp_path):
    """Once the queue's number is set, `tell` gives callers the call center's: on 1-800-228-KIDS it
    is not said; on the payment line it is."""
    cfg = config_with(tmp_path, "lines.yaml", '  # tell: "+18002285437"', '  tell: "+18002285437"')
    app = make_app(CONFIG_DIR=cfg)
    on_it = call("callcenter", ["-", "0"], target_app=app)
    assert "Connecting you to the S E S administration office in East Hartford." in on_it.said
    assert CALL_CENTER not in on_it.said and ADMIN not in on_it.said
    other = call("payments", sign_in("en", "456789123", "4826") + ["0"], target_app=app)
    assert f"If the call drops, you can call them at {CALL_CENTER}." in other.said


def test_on_the_payment_line_a_person_not_reached_offers_the_call_center(call, prompts):
    c = call("payments", sign_in("en", "456789123", "4826") + ["0", "dial:busy", "2"])
    assert ("To try again, press 1. For the call center menu, with the S E S offices and answers to common "
            "questions, press 2.") in c.said_at(SIGNED_IN + 1)
    assert prompts.text("cc.main.intro", "en") in c.said_at(SIGNED_IN + 2)


def test_a_transfer_node_names_only_the_events_a_transfer_has(tmp_path, make_app):
    from ivr.callflow.flow import FlowError
    cfg = config_with(tmp_path, "flows/callcenter.yaml", "on: {busy: cc_agents_unavailable,",
                      "on: {engaged: cc_agents_unavailable,")
    with pytest.raises(FlowError, match="maps 'engaged'; a transfer names only closed, busy, no_answer, failed"):
        make_app(CONFIG_DIR=cfg)


# --- the prison path's last words -------------------------------------------------------------------

INMATE = ["-", "4", "1", "1", "7654321#", "1"]          # the parent, the facts, start, the inmate number


def test_a_request_with_only_an_inmate_number_promises_nothing_it_cannot_keep(call):
    c = call("callcenter", INMATE + ["*", "*", "-", "-"])      # no facility, no case number, no message
    end = c.said_after(len(INMATE) + 3)
    assert "Your request is saved." in end
    assert ("Your request has only your inmate number, which may not be enough for S E S to find your case. To "
            f"add your name, date of birth or case number, call {CALL_CENTER} and give your request number.") in end
    for promise in ("in writing", "do not need to call again", "notice of the hearing", "will review"):
        assert promise not in c.said, promise
    assert c.hung_up


def test_a_request_with_a_message_says_staff_will_review_it(call):
    c = call("callcenter", INMATE + ["*", "*", "record"])
    assert "S E S staff will review your request. If you are moved or released, call" in c.said
    for promise in ("in writing", "do not need to call again", "notice of the hearing", "only your inmate"):
        assert promise not in c.said, promise


def test_for_someone_else_in_spanish(call):
    c = call("callcenter", ["2", "4", "2", "1", "7654321#", "1", "*", "*", "-", "-"])
    assert "La solicitud solo tiene el número de recluso" in c.said
    assert "por escrito" not in c.said and "No necesita llamar otra vez" not in c.said


def test_a_facility_is_named_in_spanish_in_the_spanish_voice(call):
    c = call("callcenter", ["2", "4", "1", "1", "7654321#", "1", "say York"])
    assert "Tengo la Institución Correccional York." in c.said_at(7)
    assert "Correctional Institution" not in c.said


# --- the staff line ---------------------------------------------------------------------------------

@pytest.fixture
def staff_member(app, clock):
    return app.extensions["ivr"].services.staffdb.add("1001", "Ana Ruiz", "482193", clock())


def test_the_staff_line_offers_0_as_help_which_is_what_it_gives(call, staff_member):
    c = call("staff", ["-", "1001#", "482193#", "0"])
    assert "For help, press 0." in c.said_at(3)
    assert "talk to a person" not in c.said
    assert "ask the phone system administrator" in c.said_at(4)


def test_silence_on_the_staff_line_never_gives_the_public_number(call, clock, staff_member):
    for when in ("2026-11-24 10:00", AFTER_HOURS):
        clock.set(when)
        c = call("staff", ["-", "-", "-", "-", "-", "-", "-"])
        assert CALL_CENTER not in c.said and "Let me get someone" not in c.said
        assert "ask the phone system administrator" in c.said
        assert c.said.endswith("Call again when you are ready. Goodbye.") and c.hung_up


def test_the_staff_line_in_spanish_offers_help(call, staff_member):
    c = call("staff", ["2", "1001#", "482193#"])
    assert "Para ayuda, oprima 0." in c.said
    assert "hablar con una persona" not in c.said


def test_with_an_agents_queue_after_hours_0_on_its_public_number_says_when_people_answer(call, clock, make_app,
                                                                                      tmp_path):
    clock.set(AFTER_HOURS)
    cfg = config_with(tmp_path, "lines.yaml", '  # tell: "+18002285437"', '  tell: "+18002285437"')
    c = call("callcenter", ["-", "0"], target_app=make_app(CONFIG_DIR=cfg))
    assert f"No one is available to take your call right now. People answer {HOURS}." in c.said
    assert not c.dialed and CALL_CENTER not in c.said
