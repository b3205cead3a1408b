"""1-800-228-KIDS end to end: every path of the tree, in both languages, through the simulated phone."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ivr.callflow.flow import successors
from ivr.callflow.speech import say_phone
from tests.walk import caller_numbers, capped_calls, explore_in, known_values, state_of

# The 14 SES locations and their numbers as printed in the SES brochure (seeds, JDP-ES-211).
SEED_OFFICES = {
    "administration": "860-569-6233", "bridgeport": "203-579-6590", "central-processing": "203-789-6505",
    "danbury": "203-731-2940", "hartford": "860-566-8723", "hartford-court": "860-706-5110",
    "middletown": "860-344-2957", "new-britain": "860-515-5300", "new-haven": "203-789-7485",
    "norwich": "860-886-2694", "putnam": "860-963-2580", "rockville": "860-896-2400",
    "stamford": "203-965-5730", "waterbury": "203-596-4188",
}
LANG_KEYS = {"en": [], "es": ["2"]}   # the language question: silence keeps English, 2 is Spanish


def paths_to(app, node_type: str):
    """(keys from the main menu, node) for every node of a type reachable by keys in the call center."""
    flows = app.extensions["ivr"].flows
    home = flows.lines["callcenter"].home
    found, queue, seen = [], [(home, [])], {home}
    while queue:
        nid, keys = queue.pop(0)
        node = flows.nodes[nid]
        if node.type == node_type:
            found.append((keys, node))
        if node.type not in ("menu",) and nid != home:
            continue
        for edge in successors(flows, node):
            if edge.kind == "option" and edge.target not in seen and flows.node_line.get(edge.target) == "callcenter":
                seen.add(edge.target)
                queue.append((edge.target, keys + [edge.key]))
    return found


def lang_prefix(lang):
    return ["2"] if lang == "es" else ["-"]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_every_answer_is_reachable_and_heard_whole(app, call, prompts, lang):
    answers = paths_to(app, "answer")
    assert len(answers) >= 17
    for keys, node in answers:
        c = call("callcenter", lang_prefix(lang) + keys)
        text = prompts.text(node.get("prompt"), lang)
        assert text in c.said, f"{node.id} via {keys} did not say its answer"
        # After each answer: repeat, main menu or a person, in the caller's language.
        assert prompts.text("menu.globals.answer", lang) in c.said_after(len(keys) + 1)
        # After the greeting (English, with the Spanish offer), every word is in the caller's language.
        after_greeting = [e.attrs.get("language") for e in c.events if e.kind == "say"][2:]
        assert set(after_greeting) == {"en-US" if lang == "en" else "es-US"}
        last_doc = c.documents[-1]
        assert ('language="es-US"' in last_doc) == (lang == "es")


@pytest.mark.parametrize("lang", ["en", "es"])
def test_every_office_transfer_dials_the_seed_number_after_saying_it(app, call, prompts, lang):
    transfers = [(k, n) for k, n in paths_to(app, "transfer") if n.get("office")]
    assert {n.get("office") for _, n in transfers} == set(SEED_OFFICES)
    directory = app.extensions["ivr"].directory
    for keys, node in transfers:
        office = node.get("office")
        c = call("callcenter", lang_prefix(lang) + keys)
        digits = "".join(ch for ch in SEED_OFFICES[office] if ch.isdigit())
        assert c.dialed == ["+1" + digits], f"{office} via {keys}"
        announce = prompts.text("xfer.connecting", lang, name=directory.offices[office].name[lang],
                                phone=say_phone("+1" + digits, lang))
        dial_at = next(i for i, e in enumerate(c.events) if e.kind == "dial")
        assert announce in " ".join(e.text for e in c.events[:dial_at] if e.kind == "say"), office
        # Depth: never more than 3 menus (main, region list, office list) to an office.
        assert len(keys) <= 3


def test_spanish_holds_for_the_rest_of_the_call_including_transfers(app, redis_client, clock, prompts):
    """A caller who presses 2 at the greeting: every menu and answer of the call center, the payment
    line it hands over to, and the transfers (dialled, busy, unanswered, closed), walked in open and
    in closed hours (tests/walk.explore): every sentence after the greeting is Spanish, in the
    Spanish voice."""
    flows = app.extensions["ivr"].flows
    spanish = dict(app.extensions["ivr"].lines_cfg["voices"]["es"])
    # The opening words of every English prompt that are not in its Spanish text.
    english = {t.split("{")[0].strip() for pid, t in prompts.texts["en"].items()
               if len(t.split("{")[0].strip()) >= 12 and t.split("{")[0].strip() not in prompts.texts["es"][pid]}
    assert len(english) > 150
    menus = {nid for nid, line in flows.node_line.items()
             if line == "callcenter" and flows.nodes[nid].type in ("menu", "answer")}
    waited, says, dials = set(), [], []
    for when in ("2026-11-24 10:00", "2026-11-28 23:30"):     # a Tuesday morning; a Saturday night
        clock.set(when)
        redis_client.flushdb()
        walk = explore_in(app, "callcenter", "es", pool=known_values(app), max_states=400,
                          new_caller=caller_numbers())
        waited |= walk.waits
        greeting, *after_choice = walk.documents
        assert 'language="es-US"' in greeting and 'language="en-US"' in greeting
        for doc in after_choice:
            verbs = list(ET.fromstring(doc))
            says += [v for v in verbs if v.tag == "Say"] + [v for g in verbs if g.tag == "Gather"
                                                           for v in g if v.tag == "Say"]
            dials += [v for v in verbs if v.tag == "Dial"]
    # A caller ID at its day's cap of inmate requests: fresh callers never get there.
    for phone in capped_calls(app, redis_client, lang_keys=("2", "2"))[1:]:
        waited.add(state_of(app, phone.sid).node)
        for doc in phone.documents[1:]:
            verbs = list(ET.fromstring(doc))
            says += [v for v in verbs if v.tag == "Say"] + [v for g in verbs if g.tag == "Gather"
                                                           for v in g if v.tag == "Say"]
    assert not menus - waited, f"not reached in Spanish: {sorted(menus - waited)}"
    assert len(says) > 1000
    wrong = {(v.get("voice"), v.get("language"), v.text) for v in says
             if {"voice": v.get("voice"), "language": v.get("language")} != spanish
             or any(words in (v.text or "") for words in english)}
    assert not wrong, sorted(wrong)[:10]
    offices = {office.phone for office in app.extensions["ivr"].directory.offices.values()}
    assert {d.find("Number").text for d in dials} & offices, "no transfer to an office was dialled"


def test_english_voice_is_the_configured_one(call):
    c = call("callcenter", ["-"])
    english = [e for e in c.events if e.kind == "say" and e.attrs.get("language") == "en-US"]
    assert english and all(e.attrs["voice"] == "Polly.Joanna" for e in english)


def test_greeting_offers_spanish_in_a_spanish_voice(call):
    c = call("callcenter", [])
    offer = [e for e in c.events if e.kind == "say" and "Para español" in e.text]
    assert offer and offer[0].attrs["language"] == "es-US"


def test_main_menu_speaks_options_as_the_contract_says(call, prompts):
    c = call("callcenter", ["-"])
    assert "For your payments and balance, or how to pay, press 1." in c.said
    assert "For a parent in prison or jail, or someone calling for them, press 4." in c.said
    assert "To reach an S E S office, press 5." in c.said
    assert prompts.text("menu.globals.home", "en") in c.said
    es = call("callcenter", ["2"])
    assert "Para sus pagos y su saldo, o cómo pagar, oprima 1." in es.said


def test_payment_questions_hand_over_to_the_payment_line_without_hanging_up(call, prompts):
    c = call("callcenter", ["-", "1", "1"])
    assert prompts.text("cc.to_payments", "en") in c.said
    assert not c.hung_up and not c.dialed
    # The payment line's first question follows in the same call.
    last = c.documents[-1]
    assert "<Gather" in last


def test_employer_answer_offers_the_payment_line(call, prompts):
    c = call("callcenter", ["-", "1", "3", "1"])
    assert prompts.text("faq.employer", "en") in c.said
    assert "You can go to it on this call" in c.said
    assert "To go to the payment line now, for your payments and how to pay, press 1." in c.said
    assert prompts.text("cc.to_payments", "en") in c.said


@pytest.mark.parametrize("lang", ["en", "es"])
def test_no_answer_sends_the_caller_to_call_the_line_they_are_on(app, prompts, lang):
    """Every FAQ answer and call center sentence is heard ON 1-800-228-KIDS: none may tell the caller
    to call that number, or the call center, as if it were somewhere else."""
    own = say_phone(app.extensions["ivr"].services.lines["callback_number"], lang)   # "1, 8 0 0, 2 2 8, ..."
    texts = {pid: t for pid, t in prompts.texts[lang].items() if pid.startswith(("faq.", "cc.", "town."))}
    assert len([pid for pid in texts if pid.startswith("faq.")]) == 16
    for pid, text in texts.items():
        text = text.lower()
        assert own not in text and "2 2 8" not in text and "228" not in text and "kids" not in text, pid
        if pid != "cc.welcome":   # the greeting names the line the caller reached
            assert "call center" not in text and "centro de llamadas" not in text, pid


@pytest.mark.parametrize(("lang", "keys", "pid"), [
    ("en", ["1", "5"], "faq.report"), ("en", ["2", "3"], "faq.job_loss"), ("en", ["3", "1"], "faq.not_paid"),
    ("es", ["1", "5"], "faq.report"), ("es", ["2", "3"], "faq.job_loss"), ("es", ["3", "1"], "faq.not_paid")])
def test_answers_that_offer_a_person_mean_0_on_this_call(call, prompts, lang, keys, pid):
    press_0 = {"en": "press 0", "es": "oprima 0"}[lang]
    assert press_0 in prompts.text(pid, lang).lower()
    c = call("callcenter", lang_prefix(lang) + keys + ["0"])
    assert prompts.text(pid, lang) in c.said
    assert c.dialed == ["+18605696233"]          # 0 there reaches the agents (open hours)


def test_town_by_speech_routes_to_its_office_after_confirming(call, prompts):
    c = call("callcenter", ["-", "5", "1", "say I live in West Hartford", "1"])
    assert "Your town is West Hartford." in c.said
    assert "West Hartford is served by the Hartford main office." in c.said
    assert c.dialed == ["+18605668723"]


def test_town_by_zip_is_confirmed_then_routed(call):
    c = call("callcenter", ["-", "5", "1", "06360", "1"])   # Norwich
    assert "Your town is Norwich." in c.said
    assert c.dialed == ["+18608862694"]


def test_unconfirmed_district_says_to_call_back_and_press_0(call, prompts):
    c = call("callcenter", ["-", "5", "1", "say Avon", "1"])   # Litchfield JD: no SES office of its own
    assert "Avon is served by the Waterbury office." in c.said
    # Said on 1-800-228-KIDS just before the transfer: the caller is not told to call the number they are on.
    assert "If that office cannot help with your case, call this number again and press 0." in c.said
    assert c.dialed == ["+12035964188"]


def test_town_not_heard_right_can_be_said_again(call):
    c = call("callcenter", ["-", "5", "1", "say Norwich", "2", "say Putnam", "1"])
    assert "Your town is Norwich." in c.said and "Your town is Putnam." in c.said
    assert c.dialed == ["+18609632580"]


def test_unknown_town_and_unknown_zip_say_what_went_wrong(call, prompts):
    c = call("callcenter", ["-", "5", "1", "say Springfield", "99999#"])
    assert prompts.text("town.not_found", "en") in c.said
    assert "Sorry, 9 9 9 9 9 is not a Connecticut ZIP code I know." in c.said


def test_spanish_town_lookup(call):
    c = call("callcenter", ["2", "5", "1", "say Bridgeport", "1"])
    assert "Su ciudad es Bridgeport." in c.said
    assert "La oficina que atiende a Bridgeport es la oficina de Bridgeport." in c.said
    assert c.dialed == ["+12035796590"]
