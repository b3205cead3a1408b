"""Every TwiML document the app can return is XML that Twilio takes: only verbs, nouns, attributes and
nestings that twilio's own `VoiceResponse` API can build, each <Say> in the voice of its language,
every action and Redirect a webhook of ours.

The documents come from walking every line of the app (tests/walk.py: each place a call waits, in
each language, every key that means something there and a few that do not), in open and in closed
hours, plus the answers given when Redis is down, when state was lost and when a handler fails.
"""

from __future__ import annotations

import pytest
import yaml

from ivr import store
from ivr.callflow.simphone import Phone
from tests.redis_server import free_port
from tests.sdu_faults import FaultySDU
from tests.twiml_check import Voices, check, url_checker
from tests.walk import callback_calls, caller_numbers, explore, known_values, line_number

SATURDAY_NIGHT = "2026-11-28 23:30"


def assert_valid(app, documents: list[str], where: str) -> None:
    voices, url_ok = Voices.from_app(app), url_checker(app)
    problems = {}
    for body in documents:
        for problem in check(body, voices, url_ok):
            problems.setdefault(problem, body)
    assert not problems, f"{where}: {len(problems)} problem(s):\n" + "\n".join(
        f"- {p}\n    in {body[:300]}" for p, body in list(problems.items())[:15])


@pytest.fixture
def sdu():
    server = FaultySDU()
    yield server
    server.stop()


def walk_every_line(app, redis_client, hours: str) -> tuple[list[str], set[str], set[str]]:
    """(documents, nodes entered, languages heard) of walking every line of the app, each on a fresh
    database (so that one line's wrong PINs do not lock the next one out), from an ordinary caller
    and from each caller ID an entry hook knows (config/facilities.yaml)."""
    rt = app.extensions["ivr"]
    documents, reached, langs, seen = [], set(), set(), set()
    enter = rt.engine.enter

    def entered(turn, node_id, *args, **kwargs):
        reached.add(node_id)
        return enter(turn, node_id, *args, **kwargs)
    rt.engine.enter = entered
    callers = ["+18605550199"] + facility_numbers(app)[:1]
    for line in rt.flows.lines:
        for caller in callers:
            redis_client.flushdb()
            walk = explore(app, line, pool=known_values(app), max_states=900, caller=caller,
                           new_caller=caller_numbers(), seen=seen)
            assert walk.documents, line
            documents += walk.documents
            langs |= {lang for phone in walk.phones for lang, _ in phone.heard if lang}
    rt.engine.enter = enter
    return documents, reached, langs


def facility_numbers(app) -> list[str]:
    path = app.config["CONFIG_DIR"] / "facilities.yaml"
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    return [n for f in (data.get("facilities") or {}).values() for n in f.get("numbers") or []]


@pytest.mark.slow      # walks every line (about 1 min on 2 cores): CI runs it (.ci/run: scripts/test -m slow)
def test_every_document_of_every_line_is_twiml_twilio_takes(make_app, redis_client, clock, sdu):
    """Open hours with the SDU answering, then closed hours with the SDU failing: between them
    every node of every line is reached, and every document is valid."""
    app = make_app(SDU_BASE_URL=sdu.url)
    documents, reached, langs = walk_every_line(app, redis_client, "open")
    clock.set(SATURDAY_NIGHT)
    sdu.fail("503", retry_after="120")
    more, reached_closed, _ = walk_every_line(app, redis_client, "closed")
    capped, reached_capped = capped_walk(app, redis_client)
    phones, reached_callbacks = callback_calls(app, redis_client)      # texts on, caps, failures
    callbacks = [d for p in phones for d in p.documents]
    assert_valid(app, documents + more + capped + callbacks, "every line")
    assert langs == set(Voices.from_app(app).pairs)
    assert set(app.extensions["ivr"].flows.nodes) - reached - reached_closed - reached_capped \
        - reached_callbacks == set(), "nodes no walk reached"


def capped_walk(app, redis_client) -> tuple[list[str], set[str]]:
    """The inmate path of a caller ID at its day's cap, in each language (tests/walk.capped_calls)."""
    from tests.walk import capped_calls, state_of

    phones = capped_calls(app, redis_client)
    return [d for p in phones for d in p.documents], {state_of(app, p.sid).node for p in phones}


def test_the_answers_without_redis_lost_state_and_a_failing_handler_are_valid(make_app, app, clock):
    documents = []
    phone = Phone(app, to=line_number(app, "callcenter")).start().press("1")
    app.extensions["ivr"].redis.delete(f"ivr:call:{phone.sid}")       # state lost (expired, flushed)
    phone.press("1")
    documents += phone.documents

    handlers = app.extensions["ivr"].engine.handlers
    broken = make_app()
    broken.extensions["ivr"].engine.handlers = {name: _boom for name in handlers}
    for line in broken.extensions["ivr"].flows.lines:
        p = Phone(broken, to=line_number(broken, line)).start()
        for key in ("1", "1", "2", "456789123", "1"):      # into whatever handler the line has
            if p.ended:
                break
            p.press(key)
        documents += p.documents

    dead = make_app(redis=store.connect(f"redis://127.0.0.1:{free_port()}/0", "test"))
    for when in ("2026-11-24 10:00", SATURDAY_NIGHT):
        clock.set(when)
        d = Phone(dead, to=line_number(dead, "payments")).start()
        documents += d.documents
    assert_valid(app, documents, "error paths")


def _boom(turn, value):
    raise RuntimeError("a handler bug")


BAD = [
    ('<Response><Gather><Gather/></Gather></Response>', "may not be inside <Gather>"),
    ('<Response><Say voice="Polly.Joanna" language="en-US" colour="red">Hi</Say></Response>', "'colour'"),
    ('<Response><Say voice="Polly.Lupe" language="en-US">Hello</Say></Response>', "with voice"),
    ('<Response><Say voice="Polly.Joanna" language="en-US">Para pagos, oprima 1.</Say></Response>', "oprima"),
    ('<Response><Say voice="Polly.Lupe" language="es-US">For payments, press 1.</Say></Response>', "press"),
    ('<Response><Gather numDigits="one"/></Response>', "whole number"),
    ('<Response><Redirect>/nowhere</Redirect></Response>', "not one of our webhooks"),
    ('<Response><Dial><Number>860 555</Number></Dial></Response>', "E.164"),
    ('<Response><Say voice="Polly.Joanna" language="en-US">Hi {name}</Say></Response>', "placeholder"),
    ('<Response><Hangup/>', "not XML"),
    ('<Response/>', "empty"),
]


@pytest.mark.parametrize("body,expected", BAD)
def test_the_checker_itself_finds_what_twilio_would_refuse(app, body, expected):
    problems = check(body, Voices.from_app(app), url_checker(app))
    assert any(expected in p for p in problems), problems


def test_the_checker_takes_what_the_twilio_package_builds(app):
    from twilio.twiml.voice_response import Gather, VoiceResponse

    r = VoiceResponse()
    g = Gather(action="/voice/step?s=2", method="POST", num_digits=1, input="dtmf speech", language="es-US",
               speech_timeout="auto", action_on_empty_result=False, finish_on_key="#", timeout=6, hints="pago")
    g.say("Para pagos, oprima 1.", voice="Polly.Lupe", language="es-US")
    r.append(g)
    r.redirect("/voice/step?s=2", method="POST")
    r.dial(action="/voice/step?s=3", timeout=30).number("+18605696233")
    r.record(action="/voice/step?s=4", max_length=120, play_beep=True, trim="trim-silence", finish_on_key="#")
    r.hangup()
    assert check(str(r), Voices.from_app(app), url_checker(app)) == []


def test_the_webhooks_write_twiml_exactly_as_the_twilio_library_does():
    from twilio.twiml.voice_response import Gather, VoiceResponse

    from ivr.web.webhooks import render

    response = VoiceResponse()
    gather = Gather(action="/voice/step?s=3&x=<1>", method="POST", num_digits=1, action_on_empty_result=False)
    gather.say("Para español, oprima 2. “Quotes” & <tags>\nand a new line", voice="Polly.Lupe", language="es-US")
    response.append(gather)
    response.play("https://example.test/audio/a.mp3?v=1&w=2")
    response.pause(length=1)
    response.hangup()
    assert render(response) == str(response)
