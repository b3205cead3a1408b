"""How every menu behaves: reprompts, retry limits, the global keys, speech, barge-in, retries by Twilio."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ivr.callflow.flow import GLOBAL_KINDS, TRANSFER_EVENTS, successors
from ivr.callflow.prompts import LANGS
from ivr.callflow.simphone import Transport
from ivr.settings import DEV_AUTH_TOKEN
from tests.conftest import LINES
from tests.sdu_faults import FaultySDU
from tests.walk import LANGUAGE_KEYS, caller_numbers, capped_calls, explore_in, known_values, settles, state_of


def test_no_input_reprompts_saying_what_went_wrong_then_a_person_when_open(call, prompts):
    c = call("callcenter", ["-", "-", "-", "-"])
    assert c.said.count(prompts.text("menu.no_input", "en")) == 2
    assert prompts.text("menu.giveup_open", "en") in c.said
    assert c.dialed == ["+18605696233"]          # the call center's agents (config/lines.yaml)


def test_invalid_keys_name_the_key_and_stop_after_three_tries(call, prompts, clock):
    clock.set("2026-11-24 19:00")                  # after hours: no one to transfer to
    c = call("callcenter", ["-", "7", "8", "6"])
    assert "Sorry, 7 is not one of the choices." in c.said
    assert "Sorry, 8 is not one of the choices." in c.said
    assert "Sorry, 6 is not one of the choices." not in c.said  # the third try ends the menu
    assert "Please call us back at 1, 8 0 0, 2 2 8, 5 4 3 7." in c.said
    assert "Monday through Friday" in c.said
    assert c.hung_up and not c.dialed


def test_a_reprompt_is_short_it_skips_the_intro(call, prompts):
    c = call("callcenter", ["-", "1", "7"])
    after = c.said_after(3)
    assert after.startswith("Sorry, 7 is not one of the choices.")
    assert prompts.text("cc.pay.intro", "en") not in after
    assert "To hear your payments and balance, press 1." in after


def test_tries_reset_after_a_good_choice(call, prompts):
    c = call("callcenter", ["-", "7", "7", "2", "7", "7"])
    assert not c.dialed and not c.hung_up        # 2 bad, a good one, 2 bad: never 3 in a row


def test_star_repeats_the_whole_menu(call, prompts):
    c = call("callcenter", ["-", "3", "*"])
    assert c.said_after(3).startswith(prompts.text("cc.enforce.intro", "en"))


MENU_TYPES = ("menu", "answer", "transfer")   # a transfer's choices, once it is closed or failed, are a menu
SATURDAY_NIGHT = "2026-11-28 23:30"


@pytest.fixture
def sdu():
    s = FaultySDU()
    yield s
    s.stop()


def press_a_global_key(app, phone, node, lang: str, key: str, where: str):
    """Press 9 or 0 on a copy of `phone`, waiting at `node`: the call goes where the tree says that
    key goes from there (tests/walk.settles), in the caller's language, and dials a person's number."""
    rt = app.extensions["ivr"]
    edge = next(e for e in successors(rt.flows, node) if e.kind in GLOBAL_KINDS and e.key == key)
    branch = phone.fork(app)
    heard, dialed = len(branch.heard), len(branch.dialed)
    branch.press(key)
    after = state_of(app, branch.sid)
    assert after is not None and after.node in settles(rt.flows, edge.target) and not after.tries, \
        (where, edge.target, after and (after.node, after.tries), branch.said_since(heard))
    languages = {language for language, _ in branch.heard[heard:] if language}
    assert languages == {rt.lines_cfg["voices"][lang]["language"]}, (where, branch.said_since(heard))
    target = rt.flows.nodes[after.node]
    if target.type == "transfer" and after.phase == "dialed":
        agents = rt.lines_cfg["agents"]["phone"]
        assert branch.dialed[dialed:] == [agents if target.get("to") == "agents"
                                          else rt.directory.offices[target.get("office")].phone], where
    return branch


def test_nine_is_the_main_menu_and_zero_a_person_in_every_menu(make_app, redis_client, clock, sdu):
    """Every menu, answer and transfer choice of every line, in each language, reached by walking the
    lines (tests/walk.explore) in open hours and in closed hours with the SDU down."""
    app = make_app(SDU_BASE_URL=sdu.url)
    flows = app.extensions["ivr"].flows
    # A transfer whose `on` maps every way it can fail never waits with its own choices.
    menus = {nid: node for nid, node in flows.nodes.items() if node.type in MENU_TYPES
             and {e.key for e in successors(flows, node) if e.kind in GLOBAL_KINDS}
             and not (node.type == "transfer" and set(TRANSFER_EVENTS) <= set(node.get("on") or {}))}
    assert len(menus) > 40

    def skip(node, answer: str) -> bool:      # only what leads somewhere new, to keep the walk short
        if node.type == "transfer":           # a busy line, where it leads somewhere of its own
            return not (answer == "dial:busy" and "busy" in (node.get("on") or {}))
        return node.type in ("menu", "answer") and answer not in {e.key for e in successors(flows, node)}
    checked: set[tuple[str, str]] = set()
    for hours in ("open", "closed"):
        if hours == "closed":
            clock.set(SATURDAY_NIGHT)
            sdu.fail("503", retry_after="120")
        for lang in LANGS:
            redis_client.flushdb()       # one language's wrong PINs do not lock the other out
            # A caller ID at its day's cap of inmate requests, where walks from new numbers never get.
            capped = capped_calls(app, redis_client, lang_keys=(LANGUAGE_KEYS[lang],) * 2)[1:]
            seen: set = set()
            for line in flows.lines:
                walk = explore_in(app, line, lang, pool=known_values(app), max_states=300, skip=skip,
                                  new_caller=caller_numbers(), seen=seen, hang_up=False)
                waiting = list(walk.phones) + (capped if line == "callcenter" else [])
                while waiting:   # the walk's calls, and those the keys pressed here lead to
                    phone = waiting.pop()
                    state = state_of(app, phone.sid)
                    if (state is None or state.node not in menus or (state.node, lang) in checked
                            or phone.waiting_for != "Gather" or state.tries
                            or state.phase not in (("closed", "failed") if menus[state.node].type == "transfer"
                                                   else ("",))):
                        continue
                    for key in ("9", "0"):
                        if any(e.key == key for e in successors(flows, menus[state.node]) if e.kind in GLOBAL_KINDS):
                            waiting.append(press_a_global_key(app, phone, menus[state.node], lang, key,
                                                              f"{key} at {state.node} ({lang}, {hours} hours)"))
                    checked.add((state.node, lang))
    missing = {(nid, lang) for nid in menus for lang in LANGS} - checked
    assert not missing, f"no walk waited at {sorted(missing)}"


def test_zero_after_hours_says_when_people_answer(call, clock):
    clock.set("2026-11-24 07:00")
    c = call("callcenter", ["-", "0"])
    assert not c.dialed
    assert "People answer Monday through Friday, from 8:30" in c.said
    assert c.said.endswith("For the main menu, press 9.")     # no number to repeat: they are on it


def test_star_repeats_an_answer(call, prompts):
    c = call("callcenter", ["-", "2", "5", "*"])
    assert c.said.count(prompts.text("faq.ends", "en")) == 2


def test_spoken_choices_work_like_keys(call, prompts):
    c = call("callcenter", ["-", "say I lost my job", "say representative"])
    assert prompts.text("cc.change.intro", "en") in c.said     # "job" is a word of main menu option 2
    assert c.dialed == ["+18605696233"]
    es = call("callcenter", ["2", "say oficina", "say Stamford", "say Stamford"])   # region, then office
    assert es.dialed == ["+12039655730"]


def test_unrecognised_speech_is_a_failed_try(call, prompts):
    c = call("callcenter", ["-", "say purple elephants"])
    assert prompts.text("menu.invalid_speech", "en") in c.said


def test_barge_in_keys_are_taken_while_prompts_play(call):
    c = call("callcenter", ["-", "1"])
    gathers = [g for doc in c.documents for g in ET.fromstring(doc).iter("Gather")]
    assert len(gathers) >= 3                     # language offer, main menu, payments menu
    for gather in gathers:
        # The prompts are inside the Gather, so a key interrupts them.
        assert list(gather), "a Gather with nothing inside it cannot be barged into"


def test_every_gather_is_followed_by_a_verb_for_silence(call):
    c = call("callcenter", ["-", "5", "1", "say Avon", "2"])
    checked = 0
    for doc in c.documents:
        verbs = [v.tag for v in ET.fromstring(doc)]
        for i, tag in enumerate(verbs):
            if tag == "Gather":
                assert i + 1 < len(verbs) and verbs[i + 1] == "Redirect"
                checked += 1
    assert checked == len(c.documents) >= 5      # every answer of this call waits for the caller


def test_missing_digits_is_no_input_not_a_crash(app, prompts):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    sid = "CA" + "1" * 32
    base = {"CallSid": sid, "To": LINES["callcenter"], "From": "+18605550100"}
    status, body = transport.post("/voice", base)
    assert status == 200
    status, body = transport.post("/voice/step?s=1", base)       # no Digits at all: language -> English
    status, body = transport.post("/voice/step?s=2", base)       # no Digits at the main menu
    assert status == 200 and "<Gather" in body
    assert prompts.text("menu.no_input", "en") in body


def test_a_twilio_retry_of_a_step_is_answered_the_same_and_changes_nothing(app):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    base = {"CallSid": "CA" + "2" * 32, "To": LINES["callcenter"], "From": "+18605550100"}
    transport.post("/voice", base)
    transport.post("/voice/step?s=1", {**base, "Digits": "2"})       # language -> Spanish main menu
    first = transport.post("/voice/step?s=2", {**base, "Digits": "7"})   # invalid: try 1
    again = transport.post("/voice/step?s=2", {**base, "Digits": "7"})   # Twilio retries the same request
    assert first == again
    state = app.extensions["ivr"].store.load(base["CallSid"])[0]
    assert state.tries == 1 and state.seq == 3


def test_a_stale_step_repeats_the_current_menu_without_acting(app):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    base = {"CallSid": "CA" + "3" * 32, "To": LINES["callcenter"], "From": "+18605550100"}
    transport.post("/voice", base)
    transport.post("/voice/step?s=1", {**base, "Digits": "1"})
    status, body = transport.post("/voice/step?s=0", {**base, "Digits": "0"})   # an old step: ignored
    assert status == 200 and "<Dial" not in body and "Main menu." in body


def test_lost_state_is_said_and_the_line_starts_again(app, redis_client, prompts):
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    base = {"CallSid": "CA" + "4" * 32, "To": LINES["callcenter"], "From": "+18605550100"}
    transport.post("/voice", base)
    redis_client.flushdb()
    status, body = transport.post("/voice/step?s=1", {**base, "Digits": "1"})
    assert status == 200
    assert prompts.text("sys.state_lost", "en") in body and prompts.text("cc.welcome", "en") in body


def test_call_state_expires_and_is_removed_at_the_end_of_the_call(app, call, redis_client):
    c = call("callcenter", ["-", "1"])
    # The status callback keeps it 5 minutes at most (a hung-up <Record>'s action may come after).
    assert 0 < redis_client.ttl(f"ivr:call:{c.sid}") <= 300
    transport = Transport(DEV_AUTH_TOKEN, app=app)
    transport.post("/voice", {"CallSid": "CA" + "5" * 32, "To": LINES["callcenter"]})
    ttl = redis_client.ttl("ivr:call:CA" + "5" * 32)
    assert 0 < ttl <= app.config["CALL_TTL"]


def test_every_option_is_worded_as_the_contract_says(app):
    """docs/interface.md: "For <topic>, press <digit>." or "To <do something>, press <digit>."; Spanish "Para"."""
    rt = app.extensions["ivr"]
    wrong = []
    for nid, node in rt.flows.nodes.items():
        for opt in node.options:
            pid = opt.get("prompt") or "menu.opt.office"
            for lang, starts in (("en", ("For ", "To ")), ("es", ("Para ",))):
                text = rt.prompts.text(pid, lang, office="the Hartford office")
                if not text.startswith(starts):
                    wrong.append(f"{nid} {pid} ({lang}): {text}")
    assert not wrong, "\n".join(wrong)


def test_a_field_ending_in_a_period_does_not_double_the_sentence_s_period(prompts):
    hours = "de lunes a viernes, de 8:30 a. m. a 4:30 p. m."
    text = prompts.text("menu.giveup_closed", "es", number="uno", hours=hours)
    assert "p. m.." not in text and "p. m." in text
