"""What callers who need time, a slower voice or keys only get (issue 15, "Time to what callers need"):
the greeting that offers the main menu at once, more time after a silence (star twice, Section 508),
pound for slower speech (SSML prosody) for the rest of the call, and every node reached by keys alone
(callers through a relay service, 711). Each end to end through the simulated phone, in both languages.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from ivr.callflow.flow import FlowError, read
from ivr.callflow.simphone import Phone
from tests.conftest import LINES
from tests.sdu_faults import FaultySDU
from tests.twiml_check import Voices, check, url_checker
from tests.walk import CASE, callback_calls, caller_numbers, capped_calls, explore, known_values, state_of

VOICE = {"en": "en-US", "es": "es-US"}


def gathers(phone: Phone) -> list[ET.Element]:
    """The <Gather> the call waits at, and those after it in the same answer."""
    return [v for v in [phone.pending, *phone.rest] if v is not None and v.tag == "Gather"]


def timeouts(phone: Phone) -> list[int]:
    return [int(g.get("timeout")) for g in gathers(phone)]


def start(app, line: str = "callcenter", lang: str = "en") -> Phone:
    """A call past the greeting, in `lang`: English callers just listen on, Spanish ones press 2."""
    phone = Phone(app, to=LINES[line]).start()
    return phone.press("2" if lang == "es" else "-")


def heard_since(phone: Phone, mark: int) -> list[tuple[str, str]]:
    return phone.heard[mark:]


# --- the greeting: the main menu at once -----------------------------------------------------------

def test_the_greeting_says_the_main_menu_in_the_same_answer_without_a_wait(app, prompts):
    phone = Phone(app, to=LINES["callcenter"]).start()
    first = list(ET.fromstring(phone.documents[0]))
    offer, menu = [v for v in first if v.tag == "Gather"]
    assert int(offer.get("timeout")) <= 1                      # not 3 s of silence after the offer
    assert "Para español, oprima 2." in " ".join(v.text or "" for v in offer)
    assert prompts.text("cc.main.intro", "en") in " ".join(v.text or "" for v in menu)
    requests = len(phone.documents)
    phone.press("-")                                           # an English caller just listens on
    assert len(phone.documents) == requests                    # no round trip: the menu was there already
    assert prompts.text("cc.main.intro", "en") in phone.said
    assert prompts.text("menu.no_input", "en") not in phone.said


@pytest.mark.parametrize("key, heard", [("5", "cc.office.intro"), ("3", "cc.support.intro"),
                                        ("1", "cc.pay.intro"), ("4", "inm.who")])
def test_a_main_menu_key_pressed_during_the_greeting_works_at_once(app, prompts, key, heard):
    phone = Phone(app, to=LINES["callcenter"]).start()
    mark = len(phone.heard)
    phone.press(key)
    said = phone.said_since(mark)
    assert prompts.text(heard, "en") in said
    assert prompts.text("menu.invalid", "en").split("{")[0] not in said


def test_zero_during_the_greeting_reaches_a_person_at_once(app):
    phone = Phone(app, to=LINES["callcenter"]).start().press("0")
    assert phone.dialed == ["+18605696233"]


def test_two_during_the_offer_is_spanish_and_two_in_the_menu_is_its_option(app, prompts):
    spanish = Phone(app, to=LINES["callcenter"]).start().press("2")
    assert prompts.text("cc.main.intro", "es") in spanish.said
    assert {lang for lang, _ in spanish.heard[2:]} == {"es-US"}
    assert state_of(app, spanish.sid).lang == "es"
    spanish.press("5")
    assert prompts.text("cc.office.intro", "es") in spanish.said
    english = Phone(app, to=LINES["callcenter"]).start().press("-").press("2")   # the menu's own 2
    assert prompts.text("cc.change.intro", "en") in english.said
    assert state_of(app, english.sid).lang == "en"


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_payment_line_asks_for_the_case_number_after_its_greeting_without_a_wait(app, prompts, lang):
    phone = Phone(app, to=LINES["payments"]).start()
    offer = gathers(phone)[0]
    assert int(offer.get("timeout")) <= 1
    phone.press("2" if lang == "es" else "-")
    assert prompts.text("pay.case.ask", lang) in phone.said
    phone.press(CASE + "#")
    assert prompts.text("menu.invalid", lang).split("{")[0] not in phone.said


# --- Section 508: more time ----------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["en", "es"])
def test_a_silence_says_so_offers_more_time_and_star_gives_it_for_the_rest_of_the_call(app, prompts, lang):
    phone = start(app, lang=lang)
    normal = app.extensions["ivr"].lines_cfg["menu"]
    assert timeouts(phone) == [normal["timeout"]]
    mark = len(phone.heard)
    phone.press("-")                                           # the caller's time ran out
    said = phone.said_since(mark)
    assert prompts.text("menu.no_input", lang) in said and prompts.text("time.offer", lang) in said
    assert timeouts(phone) == [normal["more_time"]] and normal["more_time"] >= 20   # and it waits longer
    mark = len(phone.heard)
    phone.press("*")                                           # star (twice): more time
    said = phone.said_since(mark)
    assert prompts.text("time.more", lang) in said and prompts.text("cc.main.intro", lang) in said
    assert state_of(app, phone.sid).tries == 0
    # It holds for the rest of the call: every menu, every question, waits longer.
    for key in ("1", "1"):                                     # payments menu, then the case number
        phone.press(key)
        assert min(timeouts(phone)) >= normal["more_time"]
    assert prompts.text("pay.case.ask", lang) in phone.said
    phone.press(CASE + "#")
    assert min(timeouts(phone)) >= normal["more_time"]
    assert {lang for lang, _ in phone.heard[3:]} == {VOICE[lang]}


def test_a_star_without_a_silence_only_repeats(app, prompts):
    phone = start(app).press("*")
    assert prompts.text("time.more", "en") not in phone.said
    assert timeouts(phone) == [app.extensions["ivr"].lines_cfg["menu"]["timeout"]]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_star_twice_at_a_number_gives_more_time_and_is_never_a_number(app, prompts, lang):
    """Star twice at a question that takes a number: pound still ends the number, a lone star still
    skips (the PIN question: another case number), and star twice is neither."""
    phone = Phone(app, to=LINES["payments"]).start().press("2" if lang == "es" else "-")
    case = gathers(phone)[0]
    assert case.get("finishOnKey") == "#" and int(case.get("timeout")) >= 15    # keyed slowly, then pound
    phone.press("-")
    assert prompts.text("time.offer", lang) in phone.said
    mark = len(phone.heard)
    phone.press("**")
    said = phone.said_since(mark)
    assert prompts.text("time.more", lang) in said and prompts.text("pay.case.ask", lang) in said
    assert prompts.text("collect.digits_only", lang) not in said
    assert state_of(app, phone.sid).node == "pay_case" and state_of(app, phone.sid).tries == 0
    assert timeouts(phone) == [app.extensions["ivr"].lines_cfg["menu"]["more_time"]]
    phone.press(CASE + "#")                                    # the read-back, then the PIN
    phone.press("1")
    assert prompts.text("pay.pin.ask", lang) in phone.said
    assert min(timeouts(phone)) >= 20
    phone.press("*")                                           # a lone star: another case number
    assert state_of(app, phone.sid).node == "pay_case"


@pytest.mark.parametrize("lang", ["en", "es"])
def test_the_inmate_number_can_be_keyed_slowly(app, prompts, lang):
    phone = start(app, lang=lang).press("4").press("1").press("1")
    assert prompts.text("inm.number.ask", lang) in phone.said
    number = gathers(phone)[0]
    assert number.get("finishOnKey") == "#" and int(number.get("timeout")) >= 15
    assert number.get("numDigits") is None                     # as many digits as the caller keys
    phone.press("**")
    assert prompts.text("time.more", lang) in phone.said
    assert int(gathers(phone)[0].get("timeout")) >= 20


# --- slower speech -------------------------------------------------------------------------------

def says(phone: Phone, mark: int) -> list:
    return [e for e in phone.events if e.kind == "say"][mark:]


@pytest.mark.parametrize("lang", ["en", "es"])
def test_pound_replays_an_answer_slowly_and_everything_after_stays_slow(app, prompts, lang):
    phone = start(app, lang=lang)
    assert prompts.text("speech.slower.offer", lang) in phone.said          # announced in the main menu
    phone.press("3").press("2").press("1")                                 # an answer
    answer = prompts.text("faq.not_paid", lang)
    assert answer in phone.said
    mark = len([e for e in phone.events if e.kind == "say"])
    phone.press("#")
    slow = says(phone, mark)
    assert prompts.text("speech.slower", lang) in " ".join(e.text for e in slow)
    assert any(e.text == answer for e in slow), "the answer was not said again"
    assert all(e.attrs.get("prosody.rate") == "slow" and e.attrs["language"] == VOICE[lang] for e in slow)
    mark = len([e for e in phone.events if e.kind == "say"])
    phone.press("9")                                                       # the main menu, later
    later = says(phone, mark)
    assert later and all(e.attrs.get("prosody.rate") == "slow" for e in later)
    assert prompts.text("speech.slower.offer", lang) not in " ".join(e.text for e in later)  # once
    voices, url_ok = Voices.from_app(app), url_checker(app)
    assert all(check(doc, voices, url_ok) == [] for doc in phone.documents)


def test_the_slower_offer_is_said_once_in_a_call(app, prompts):
    phone = start(app).press("5").press("9")
    assert phone.said.count(prompts.text("speech.slower.offer", "en")) == 1


def test_pound_at_a_transfer_choice_and_at_a_read_back_slows_too(app, prompts, clock):
    clock.set("2026-11-28 23:30")                                          # closed: the choices after
    phone = start(app).press("0")
    assert prompts.text("xfer.options.closed.agents", "en") in phone.said
    phone.press("#")
    assert says(phone, -1)[0].attrs.get("prosody.rate") == "slow"
    read_back = Phone(app, to=LINES["payments"]).start().press("-").press(CASE + "#")
    read_back.press("#")
    assert says(read_back, -1)[0].attrs.get("prosody.rate") == "slow"


# --- callers through a relay service: everything by keys -------------------------------------------

@pytest.fixture
def sdu():
    server = FaultySDU()
    yield server
    server.stop()


@pytest.mark.slow      # walks every line (about 2 min on 2 cores): CI runs it (.ci/run: scripts/test -m slow)
def test_every_node_of_every_line_is_reached_by_keys_alone(make_app, redis_client, clock, sdu):
    """711 relay callers type; the relay operator keys what they type. A walk that never speaks reaches
    every node of every line, in both languages: in open hours, and in closed hours with the SDU down."""
    app = make_app(SDU_BASE_URL=sdu.url)
    rt = app.extensions["ivr"]
    reached, enter = set(), rt.engine.enter

    def entered(turn, node_id, *args, **kwargs):
        reached.add(node_id)
        return enter(turn, node_id, *args, **kwargs)
    rt.engine.enter = entered
    spoke = []
    facilities = yaml.safe_load((app.config["CONFIG_DIR"] / "facilities.yaml").read_text())["facilities"]
    prison = next(n for f in facilities.values() for n in f.get("numbers") or [])   # an inmate phone

    def no_words(node, answer: str) -> bool:
        return answer.startswith("say ")
    try:
        for when in ("2026-11-24 10:00", "2026-11-28 23:30"):
            clock.set(when)
            if when.endswith("23:30"):
                sdu.fail("503", retry_after="120")
            seen: set = set()
            for line, caller in [(line, "+18605550199") for line in rt.flows.lines] + [("callcenter", prison)]:
                redis_client.flushdb()           # one line's wrong PINs do not lock the next one out
                keys_only = [v for v in known_values(app) if not v.startswith("say ")]
                if line == "callcenter":         # a prison spelled on the keypad (CHE: Cheshire), not said
                    keys_only.insert(0, "243")
                walk = explore(app, line, pool=keys_only, max_states=900, skip=no_words, caller=caller,
                               new_caller=caller_numbers(), seen=seen)
                spoke += [e for p in walk.phones for e in p.events if e.kind == "input" and e.text.startswith("say ")]
        capped_calls(app, redis_client)
    finally:
        rt.engine.enter = enter
    reached |= callback_calls(app, redis_client)[1]     # texts on, a number keyed twice, a refused store
    assert not spoke
    missing = sorted(set(rt.flows.nodes) - reached)
    assert missing == [], f"not reached by keys alone: {missing}"


KEYPAD = {"en": ("keypad", "enter"), "es": ("teclado", "marque")}   # how a question says "key it"


@pytest.mark.parametrize("lang", ["en", "es"])
def test_every_question_that_takes_speech_says_how_to_key_the_answer(app, prompts, lang):
    flows = app.extensions["ivr"].flows
    spoken = [n for n in flows.nodes.values() if "speech" in (n.get("input") or [])]
    assert len(spoken) >= 2
    for node in spoken:
        for pid in [*([node.get("prompt")] if isinstance(node.get("prompt"), str) else node.get("prompt")),
                    *([node.get("short_prompt")] if node.get("short_prompt") else [])]:
            text = prompts.text(pid, lang).lower()
            assert any(word in text for word in KEYPAD[lang]), f"{node.id}: {pid} says no way to key it"


def test_a_node_that_takes_speech_must_take_keys_too(make_app, tmp_path):
    root = Path(__file__).resolve().parents[1]
    config = tmp_path / "config"
    shutil.copytree(root / "config", config)
    path = config / "flows" / "callcenter.yaml"
    doc = read(path)
    doc["nodes"]["cc_town"]["input"] = ["speech"]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with pytest.raises(FlowError, match="cc_town.*keys"):
        make_app(CONFIG_DIR=config)


def test_a_recorded_prompt_is_read_slowly_as_text_once_a_caller_asked(app, prompts, redis_client):
    """A recording cannot be slowed down: after pound, its words are said (slowly) instead of it."""
    from ivr.domain.published import Library, Who, audio_dir

    folder = audio_dir(app.config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"RE{7:032x}.mp3").write_bytes(b"ID3 fake mp3")
    Library(redis_client).publish("faq.not_paid", "en", f"RE{7:032x}.mp3", Who("1001", "Ana Ruiz"),
                                  app.extensions["ivr"].hours.now())
    phone = start(app).press("3").press("2").press("1")
    assert phone.events[-1].kind != "play" and any(e.kind == "play" for e in phone.events)
    assert prompts.text("faq.not_paid", "en") not in phone.said          # played, not read
    mark = len(phone.heard)
    phone.press("#")
    assert prompts.text("faq.not_paid", "en") in phone.said_since(mark)  # read, slowly
    assert not [text for lang, text in phone.heard[mark:] if not lang], "a recording was played"


@pytest.mark.parametrize("lang, slower, more", [("en", "say more slowly please", "say I need more time"),
                                                ("es", "say más despacio", "say más tiempo por favor")])
def test_slower_and_more_time_can_be_said_too(app, prompts, lang, slower, more):
    phone = start(app, lang=lang).press(more)
    assert prompts.text("time.more", lang) in phone.said
    assert min(timeouts(phone)) >= 20
    phone.press(slower)
    assert prompts.text("speech.slower", lang) in phone.said
    assert says(phone, -1)[0].attrs.get("prosody.rate") == "slow"
