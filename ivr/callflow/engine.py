"""The interpreter of the call tree: one webhook request in, one TwiML answer out.

A `Turn` is one request of one call. `Engine.start` answers a new call; `Engine.step` takes the
caller's input for the node the call is at and moves it on. Node types are described in
config/flows/callcenter.yaml; every menu behaves the same way (docs/interface.md, "What a caller hears").
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache

from twilio.twiml.voice_response import Gather, VoiceResponse

from ivr.callflow.calllog import CallLog
from ivr.callflow.callstate import CallState
from ivr.callflow.flow import FlowSet, Node, as_list
from ivr.callflow.handler import Outcome
from ivr.callflow.language import GLOBAL_KEYS, Language
from ivr.callflow.speech import say_digits, say_phone
from ivr.services import Services

log = logging.getLogger("ivr.engine")

MAX_HOPS = 25  # node transitions within one request; a loop in the tree must not hang a worker
SILENCE = frozenset({"menu.no_input", "collect.no_input", "record.none"})   # fail() reasons that are no input
DIAL_STATUSES = frozenset({"completed", "answered", "busy", "no-answer", "failed", "canceled"})
NO_INPUT = ("menu.no_input", "collect.no_input")   # silence at a <Gather>: more time is offered after it
# The part of a greeting's answer where the other languages are offered (its <Gather>'s action says so):
# there a language's key chooses it; every other key goes to the node after the greeting.
OFFER = "offer"
OFFER_WAIT = 1        # seconds after the offer before the node after it is said (Twilio's shortest)
MORE_TIME = "**"      # star twice: more time to answer, for the rest of the call (Section 508)
SLOWER = "#"          # pound, where no number is being keyed: everything said more slowly from now on
SLOW_RATE = "slow"    # SSML <prosody rate>, unless config/lines.yaml `menu.slow_rate` says otherwise


class Turn:
    """One webhook request of one call: its state, its parameters and the answer being built."""

    def __init__(self, engine: Engine, state: CallState, params: Mapping[str, str], url: Callable,
                 part: str = ""):
        self.engine = engine
        self.state = state
        self.params = params
        self.url = url          # url(seq, part="") -> the action URL of the next step
        self.part = part        # which <Gather> of the last answer this input came from ("" or OFFER)
        self.response = VoiceResponse()
        self.target = None      # where say() goes by default: the response, or an open <Gather>
        self.hops = 0
        self.warned = False     # the last answer said the caller's time ran out (and how to get more)
        self.wait_longer = False  # this answer's <Gather>s wait `more_time` seconds (after a silence)
        self.log = CallLog()    # what happened in this request, for analytics (ivr/callflow/calllog.py)
        self.why = "menu"       # why a transfer entered now is made: menu, zero, giveup, again

    def note(self, kind: str, *values: str | int) -> None:
        """Note an analytics event of this call (ivr/callflow/calllog.py: never personal data)."""
        self.log.note(kind, *values)

    # --- what handlers use -----------------------------------------------------------------
    @property
    def lang(self) -> str:
        return self.state.lang

    @property
    def language(self) -> Language:
        """The caller's language's own words and rules (prompts/<lang>/language.yaml)."""
        return self.engine.services.prompts.language(self.state.lang)

    @property
    def vars(self) -> dict:
        return self.state.vars

    @property
    def services(self) -> Services:
        return self.engine.services

    @property
    def args(self) -> Mapping:
        """The current node's own parameters for its handler (`args:` in the flow file)."""
        return self.engine.flows.nodes[self.state.node].get("args") or {}

    def public_vars(self) -> dict:
        """Variables a prompt may speak (a leading underscore keeps one out)."""
        return {k: v for k, v in self.state.vars.items() if not k.startswith("_")}

    def param(self, name: str) -> str:
        return (self.params.get(name) or "").strip()

    def say(self, pid: str, target=None, **fields) -> None:
        """Say a prompt (or play its published recording) in the caller's language."""
        spoken = self.services.prompts.spoken(pid, self.lang, **fields)
        self.say_text(spoken.text, target, audio=spoken.audio)

    def say_text(self, text: str, target=None, audio: str | None = None, lang: str | None = None) -> None:
        """Say `text` (in the voice of `lang`, by default the caller's language), or play `audio`."""
        target = target if target is not None else self.target if self.target is not None else self.response
        slow = self.slow
        # A recording cannot be slowed down: a caller who asked for slower speech hears its text instead.
        if audio and not (slow and text):
            target.play(audio)
            return
        voice = self.services.lines["voices"][lang or self.lang]
        if slow:
            say = target.say(voice=voice["voice"], language=voice["language"])
            say.prosody(text, rate=self.services.lines["menu"].get("slow_rate", SLOW_RATE))
        else:
            target.say(text, voice=voice["voice"], language=voice["language"])

    def pause(self, seconds: int) -> None:
        """A silence of `seconds` where say() would speak."""
        (self.target if self.target is not None else self.response).pause(length=seconds)

    @property
    def slow(self) -> bool:
        """The caller asked for slower speech (SLOWER): it holds for the rest of the call."""
        return bool(self.state.vars.get("_slow"))

    @property
    def more_time(self) -> bool:
        """The caller asked for more time to answer (MORE_TIME): it holds for the rest of the call."""
        return bool(self.state.vars.get("_more_time"))

    def action_url(self, part: str = "") -> str:
        return self.url(self.state.seq + 1, part) if part else self.url(self.state.seq + 1)

    def gather(self, *, num_digits: int | None = 1, speech: bool = False, hints: str | None = None,
               finish_on_key: str | None = None, timeout: int | None = None, part: str = "") -> Gather:
        voice = self.services.lines["voices"][self.lang]
        menu = self.services.lines["menu"]
        timeout = timeout or menu["timeout"]
        if self.more_time or self.wait_longer:
            timeout = max(timeout, menu.get("more_time", 20))
        kwargs = {"action": self.action_url(part), "method": "POST", "action_on_empty_result": False,
                  "timeout": timeout}
        if num_digits:
            kwargs["num_digits"] = num_digits
        if finish_on_key is None and num_digits == 1:
            finish_on_key = ""   # pound is a key of its own in a menu (SLOWER), not the end of an answer
        if finish_on_key is not None:
            kwargs["finish_on_key"] = finish_on_key
        if speech:
            kwargs.update(input="dtmf speech", language=voice["language"], speech_timeout="auto")
            if hints:
                kwargs["hints"] = hints
        else:
            kwargs["input"] = "dtmf"
        return Gather(**kwargs)

    def close_gather(self, gather: Gather) -> None:
        """Every Gather is followed by a Redirect, so silence comes back as a step with no input."""
        self.response.append(gather)
        self.response.redirect(self.action_url(), method="POST")


class Engine:
    def __init__(self, flows: FlowSet, services: Services, handlers: Mapping[str, Callable]):
        self.flows = flows
        self.services = services
        self.handlers = handlers
        self.hints = {"towns": ", ".join(services.directory.heard_names()),
                      "facilities": services.facilities.hints()}
        self._sealer = services.sealer

    # --- entry points --------------------------------------------------------------------
    def start(self, turn: Turn) -> VoiceResponse:
        turn.note("s", turn.state.line, turn.state.lang, int(not self.services.hours.is_open("agents")))
        self.enter(turn, self.flows.lines[turn.state.line].start)
        return turn.response

    def step(self, turn: Turn) -> VoiceResponse:
        node = self.flows.nodes.get(turn.state.node)
        # What the last answer offered holds for this one input only.
        offered = turn.vars.pop("_offer", False)
        turn.warned = bool(turn.vars.pop("_warned", False))
        if node is None:  # the tree changed under a live call: start its line again
            self.enter(turn, self.flows.lines[turn.state.line].home)
            return turn.response
        if offered and turn.part == OFFER:
            self._input_offer(turn, node)
        else:
            getattr(self, f"_input_{node.type}")(turn, node)
        return turn.response

    def repeat(self, turn: Turn) -> VoiceResponse:
        """Say the current node again without taking input (a stale or out-of-order request)."""
        self.enter(turn, turn.state.node, keep_tries=True)
        return turn.response

    def run(self, turn: Turn, step: Callable[[Turn], VoiceResponse]) -> VoiceResponse:
        """One webhook's work, under one SDU time budget however many lookups its steps make."""
        token = turn.log.bind()    # the SDU client's lookups are noted in it (app.py wires the hook)
        try:
            with self.services.sdu.budget_scope():
                return step(turn)
        finally:
            turn.log.unbind(token)

    def can_continue(self, state: CallState) -> bool:
        """Whether this tree has the call's line and language (not so after a tampered or old state)."""
        return state.line in self.flows.lines and state.lang in self.services.lines["voices"]

    def can_resume(self, state: CallState) -> bool:
        """Whether the call can be taken up again at its node (Twilio's Fallback URL mid-call)."""
        return not state.ended and self.can_continue(state) and state.node in self.flows.nodes

    def takes_after_end(self, state: CallState, seq: int | None) -> bool:
        """After Twilio reported the end, only a hung-up recording's own action is still taken."""
        node = self.flows.nodes.get(state.node)
        return node is not None and node.type == "record" and seq == state.seq

    # --- moving between nodes ----------------------------------------------------------------
    def enter(self, turn: Turn, node_id: str, keep_tries: bool = False) -> None:
        turn.hops += 1
        if turn.hops > MAX_HOPS:
            log.error("call tree loop at node %s", node_id)
            turn.note("h", "error")
            turn.say("sys.error")
            turn.response.hangup()
            return
        node = self.flows.nodes[node_id]
        if turn.state.node != node_id or not keep_tries:
            turn.state.tries = 0
            turn.state.phase = ""
        turn.state.node = node_id
        turn.state.line = self.flows.node_line[node_id]
        turn.note("n", node_id)
        getattr(self, f"_enter_{node.type}")(turn, node)

    def home(self, turn: Turn) -> None:
        self.enter(turn, self.flows.lines[turn.state.line].home)

    def person(self, turn: Turn, why: str = "zero") -> None:
        turn.why = why
        self.enter(turn, self._person_id(turn))

    def _person_id(self, turn: Turn) -> str:
        # A node may name its own "person" (the prison path: when no one answers, its request can).
        node = self.flows.nodes.get(turn.state.node)
        return (node.get("person") if node else None) or self.flows.lines[turn.state.line].person

    def fail(self, turn: Turn, node: Node, reason: str, **fields) -> None:
        """A no-input or invalid try: say what went wrong and ask again, or give up after max tries."""
        turn.note("x", "silence" if reason in SILENCE else "wrong")
        turn.state.tries += 1
        if turn.state.tries >= self.services.lines["menu"]["max_tries"]:
            if node.type == "collect" and node.get("optional"):
                # An optional question: going on without the answer beats ending the call (an inmate's
                # request is stored already, and its reference is only said at the end).
                turn.vars.pop("_pending", None)
                turn.say("collect.skipped")
                return self.enter(turn, node.get("skip"))
            turn.note("g")
            giveup = node.get("giveup") or self.flows.lines[turn.state.line].giveup
            if giveup:
                # The tree says where a caller goes who could not answer here (the town lookup: the
                # offices by region), rather than a person or a goodbye.
                turn.say(reason, **fields)
                return self.enter(turn, giveup)
            self.give_up(turn)
            return
        turn.say(reason, **fields)
        if reason in NO_INPUT:
            # Section 508: the caller's time ran out; say so, say how to get more, and wait longer now.
            turn.wait_longer = True
            if not turn.more_time:
                turn.say("time.offer")
                turn.vars["_warned"] = True
        getattr(self, f"_enter_{node.type}")(turn, node, reprompt=True)

    def give_more_time(self, turn: Turn) -> None:
        """MORE_TIME: every later question of this call waits `more_time` seconds (config/lines.yaml)."""
        turn.vars["_more_time"] = True
        turn.state.tries = 0            # asking for time is not a failed try
        turn.say("time.more")

    def slow_down(self, turn: Turn) -> None:
        """SLOWER: everything said from here on, in this call, with SSML <prosody rate="slow">."""
        turn.vars["_slow"] = True
        turn.say("speech.slower")

    def give_up(self, turn: Turn) -> None:
        hours = self.services.hours
        person = self.flows.nodes[self._person_id(turn)]
        # A line whose "person" is a message (the staff line) gets it once; giving up there again
        # hangs up, or a silent, off-hook phone would loop for ever.
        if hours.is_open("agents") and (person.type == "transfer" or person.id != turn.state.node):
            turn.say("menu.giveup_open")
            self.person(turn, why="giveup")
        elif person.type == "transfer" and person.options and person.id != turn.state.node:
            # No one answers now, but the person node offers something instead (a call back): say that
            # the choice was missed and go there (it says when people answer, then its options). Giving
            # up there too ends the call.
            turn.say("menu.giveup_closed.offer")
            self.person(turn, why="giveup")
        else:
            number = say_phone(self.services.lines["callback_number"], turn.lang)
            turn.say("menu.giveup_closed", number=number, hours=hours.describe(turn.lang))
            turn.note("h", "giveup")
            turn.response.hangup()

    def apply(self, turn: Turn, node: Node, outcome: Outcome) -> None:
        if outcome.hangup:
            turn.note("h", "handler")
            turn.response.hangup()
        elif outcome.retry:
            self.fail(turn, node, outcome.retry, **outcome.fields)
        elif outcome.event:
            turn.note("x", "e:" + outcome.event)
            # The loader checked that `on` maps every event the handler declares.
            self.enter(turn, node.get("on")[outcome.event])
        else:
            getattr(self, f"_enter_{node.type}")(turn, node, reprompt=True)

    # --- language ----------------------------------------------------------------------------
    def _enter_language(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        """The greeting and each other language's offer, then at once the node after it, in one answer:
        nobody waits through a silence meant for someone else. Two <Gather>s: a language's key chooses
        it while the offer is said (OFFER, and OFFER_WAIT seconds after); the keys of the node after it
        work there too, and in its own <Gather> (where the offer's key is that node's own again)."""
        gather = turn.gather(timeout=OFFER_WAIT, part=OFFER)
        self._announce(turn, gather)
        for pid in as_list(node.get("prompt")):
            turn.say(pid, gather)
        prompts = self.services.prompts
        for lang in list(prompts.languages)[1:]:   # each other language offers itself, in its own voice
            offer = prompts.spoken("lang.offer", lang)
            turn.say_text(offer.text, gather, audio=offer.audio, lang=lang)
        turn.response.append(gather)      # silence goes on to what `next` says (Twilio's fall-through)
        self.enter(turn, node.get("next"))
        turn.vars["_offer"] = True

    def _input_offer(self, turn: Turn, node: Node) -> None:
        """A key pressed (or a word said) while the greeting offered the other languages."""
        chosen = self._chosen_language(turn.param("Digits"), _norm(turn.param("SpeechResult")))
        if chosen is not None and chosen != turn.lang:
            turn.state.lang = chosen
            turn.note("l", chosen)                      # the call analytics count the call in it
            self._announce(turn, turn.response)
            return self.enter(turn, node.id)            # the same place, in the chosen language
        if node.type == "menu" and (turn.param("Digits") or turn.param("SpeechResult")):
            return self._input_menu(turn, node)          # a menu's key works at once
        # Anything else (a question, or information with choices after it, such as a locked case's)
        # is said from its start, as before: a key cannot answer what the caller has not heard yet.
        self.enter(turn, node.id)

    def _input_language(self, turn: Turn, node: Node) -> None:
        # Only a call whose state an older version saved at the greeting comes here.
        chosen = self._chosen_language(turn.param("Digits"), _norm(turn.param("SpeechResult")))
        if chosen is not None and chosen != turn.lang:
            turn.state.lang = chosen
            turn.note("l", chosen)
            self._announce(turn, turn.response)
        turn.note("x", "l:" + chosen if chosen else "default")   # no choice is a choice here, not silence
        self.enter(turn, node.get("next"))

    def _chosen_language(self, digits: str, said: str) -> str | None:
        """The language whose key was pressed, or one of whose words was said; None: no choice."""
        languages = list(self.services.prompts.languages.values())
        for lang in languages:
            if digits == lang.key:
                return lang.code
        for lang in languages[1:] + languages[:1]:   # the others' words first: the default needs none
            if said and any(_norm(w) in said for w in lang.words):
                return lang.code
        return None

    def _announce(self, turn: Turn, target) -> None:
        """An emergency closure of this line, then announcements staff posted for its start, in the
        caller's language, if any."""
        for closure in self.services.closures.for_line(turn.state.line):
            turn.say_text(closure.text.get(turn.lang) or next(iter(closure.text.values())), target)
        announcements = self.services.published.announcements(turn.state.line, turn.lang)
        for spoken in announcements:
            turn.say_text(spoken.text, target, audio=spoken.audio)
        if announcements and turn.state.line not in (heard := turn.vars.setdefault("_announced", [])):
            heard.append(turn.state.line)

    # --- menus and answers -----------------------------------------------------------------
    def _enter_menu(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        speech = any("words" in o for o in node.options)
        gather = turn.gather(speech=speech, hints=self._hints(turn, node) if speech else None)
        if not reprompt:
            public = turn.public_vars()
            for pid in as_list(node.get("prompt")):
                turn.say(pid, gather, **public)
            if node.get("handler"):
                # Content made by code (payment figures): said inside the Gather, so keys barge in.
                turn.target = gather
                try:
                    outcome = self.handlers[node.get("handler")](turn, None)
                finally:
                    turn.target = None
                if outcome is not None and (outcome.event or outcome.hangup):
                    for verb in gather.verbs:  # keep what the handler said before moving on
                        turn.response.append(verb)
                    return self.apply(turn, node, outcome)
            if node.type == "answer" and node.get("counts_as_answer", True):
                turn.note("a")
        self._say_options(turn, node, gather)
        turn.close_gather(gather)

    _enter_answer = _enter_menu

    def options(self, turn: Turn, node: Node) -> list[dict]:
        """The node's options this caller is offered (`when: {var: value}` keeps one to some callers)."""
        return [o for o in node.options
                if all(turn.vars.get(k) == v for k, v in (o.get("when") or {}).items())]

    def _say_options(self, turn: Turn, node: Node, gather: Gather, globals_: bool = True) -> None:
        for opt in self.options(turn, node):
            if "office" in opt:
                office = self.services.directory.offices[opt["office"]]
                phrase = self.services.prompts.text("menu.opt.office", turn.lang,
                                                    office=office.name[turn.lang])
            else:
                phrase = turn.services.prompts.text(opt["prompt"], turn.lang)
            turn.say("menu.option", gather, option=phrase, key=opt["key"])
        if not globals_:
            return
        line = self.flows.lines[turn.state.line]
        # 0 is "a person" where it dials one; where it says a message (the staff line's help), "help".
        person = self.flows.nodes[self._person_id(turn)]
        help_only = "" if person.type in ("transfer", "action") else ".help"
        if node.type == "answer":
            turn.say("menu.globals.answer" + help_only, gather)
        elif node.id == line.home:
            turn.say("menu.globals.home" + help_only, gather)
            if not turn.slow and turn.vars.get("_slower_offered") != turn.lang:
                # Said once in a call (again after a change of language), in the main menu only.
                turn.say("speech.slower.offer", gather)
                turn.vars["_slower_offered"] = turn.lang
        else:
            turn.say("menu.globals" + help_only, gather)

    def _hints(self, turn: Turn, node: Node) -> str:
        words = [w for o in self.options(turn, node) for w in o.get("words", {}).get(turn.lang, [])]
        return ", ".join(dict.fromkeys(words))

    def _input_menu(self, turn: Turn, node: Node) -> None:
        key = self._key(turn, node)
        if key is None:
            if turn.param("Digits"):
                return self.fail(turn, node, "menu.invalid", key=turn.language.key_name(turn.param("Digits")))
            if turn.param("SpeechResult"):
                return self.fail(turn, node, "menu.invalid_speech")
            if node.type == "answer" and node.get("next"):
                return self.enter(turn, node.get("next"))    # an offer the caller lets pass
            return self.fail(turn, node, "menu.no_input")
        if key in GLOBAL_KEYS or any(str(opt["key"]) == key for opt in self.options(turn, node)):
            turn.note("x", ("k" if turn.param("Digits") else "w") + key)
        if self._global_key(turn, node, key):
            return
        for opt in self.options(turn, node):
            if str(opt["key"]) == key:
                return self.enter(turn, opt["goto"])
        self.fail(turn, node, "menu.invalid", key=turn.language.key_name(key))

    def _input_answer(self, turn: Turn, node: Node) -> None:
        line = self.flows.lines[turn.state.line]
        if turn.param("Digits") or turn.param("SpeechResult") or self.flows.nodes[line.person].type != "transfer":
            # A line whose "person" is a message (the staff line) has no callback to give: as a menu.
            return self._input_menu(turn, node)
        # Silence after an answer is a caller who has heard what they called for, not a mistake:
        # the choices once more, then a kind goodbye that says when people answer.
        if turn.state.phase != "quiet":
            turn.state.phase = "quiet"
            gather = turn.gather(speech=any("words" in o for o in node.options),
                                 hints=self._hints(turn, node) or None)
            turn.say("answer.quiet", gather)
            self._say_options(turn, node, gather)
            turn.close_gather(gather)
            return
        number = say_phone(self.services.lines["callback_number"], turn.lang)
        turn.say("answer.goodbye", number=number, hours=self.services.hours.describe(turn.lang))
        turn.response.hangup()

    def _global_key(self, turn: Turn, node: Node, key: str) -> bool:
        if key == MORE_TIME or (key == "*" and turn.warned):
            # Star after "your time ran out" (or star twice, or "more time"): more time, and the menu again.
            self.give_more_time(turn)
            getattr(self, f"_enter_{node.type}")(turn, node, reprompt=False)
        elif key == SLOWER:
            self.slow_down(turn)
            getattr(self, f"_enter_{node.type}")(turn, node, reprompt=False)
        elif key == "*":
            getattr(self, f"_enter_{node.type}")(turn, node, reprompt=False)
        elif key == "9":
            # A node may name its own "main menu" (the payment line's dead ends: the call center's).
            self.enter(turn, node.get("home") or self.flows.lines[turn.state.line].home)
        elif key == "0":
            self.person(turn)
        else:
            return False
        return True

    def _key(self, turn: Turn, node: Node) -> str | None:
        """The key pressed, or the option a caller's words match."""
        digits = turn.param("Digits")
        if digits:
            return digits[0] if len(digits) == 1 else None
        said = _norm(turn.param("SpeechResult"))
        if not said:
            return None
        best = None
        for opt in self.options(turn, node):
            for w in opt.get("words", {}).get(turn.lang, []):
                size, pattern = _word(w)
                if pattern.search(said) and (best is None or size > best[0]):
                    best = (size, str(opt["key"]))
        if best:
            return best[1]     # a menu's own words win over the words that work everywhere
        key = self._global_said(turn, said)
        if key is not None:
            return key
        language = turn.language
        tokens = said.split()
        for digit, word in enumerate(language.digits):
            if word in tokens or str(digit) in tokens:
                return str(digit)
        return None

    def _global_said(self, turn: Turn, said: str) -> str | None:
        """The key that works everywhere whose words `said` has (`global_words` of language.yaml)."""
        said = _norm(said)
        words = turn.language.global_words
        for key in GLOBAL_KEYS:
            if any(_word(w)[1].search(said) for w in words[key]):
                return key
        return None

    # --- transfers -------------------------------------------------------------------------
    def _target(self, turn: Turn, node: Node) -> tuple[str, str, str, str | None]:
        """(who, spoken name, number to dial, number to tell the caller or None) of a transfer node."""
        office_id = node.get("office") or turn.vars.get(node.get("office_var"))
        office = self.services.directory.offices.get(office_id)
        if node.get("to") == "agents" or office is None:
            # The number told is the one dialed, unless config/lines.yaml names another (`tell`: an
            # agents' queue number that is internal).
            agents = self.services.lines["agents"]
            tell = agents.get("tell") or agents["phone"]
            return "agents", agents["name"][turn.lang], agents["phone"], self.number_to_tell(turn, tell)
        return office.id, office.name[turn.lang], office.phone, self.number_to_tell(turn, office.phone)

    def number_to_tell(self, turn: Turn, number: str) -> str | None:
        """`number`, unless it is the one this call came in on: a caller is never told to call the
        number they are on (a handover keeps the number first dialed)."""
        called = re.sub(r"\D", "", turn.param("To") or turn.param("Called"))[-10:]
        if called and called == re.sub(r"\D", "", number)[-10:]:   # Twilio's E.164 and config's
            return None
        return number

    def _enter_transfer(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        who, name, phone, public = self._target(turn, node)
        spoken_phone = say_phone(public, turn.lang) if public else ""
        hours = self.services.hours
        if turn.state.phase == "dialed":
            # Only a stale or out-of-order request lands here while a dial is under way: never dial twice.
            turn.state.phase = "failed"
        if turn.state.phase in ("closed", "failed", "done"):    # never dial twice on a repeat
            return self._transfer_options(turn, node, reprompt)
        closure = self.services.closures.for_transfer(turn.state.line, who)
        if closure is not None:
            # An emergency closure (the console) replaces every transfer to `who` by its message, then
            # what the node offers when no one can be reached (a call back).
            turn.state.phase = "closed"
            turn.note("t", who, turn.why, "closed")
            self._ended(turn, who, "closure")
            turn.say_text(closure.text.get(turn.lang) or next(iter(closure.text.values())))
            return self._transfer_options(turn, node, reprompt=False)
        if not hours.is_open(who):
            turn.note("t", who, turn.why, "closed")
            if "closed" in (node.get("on") or {}):
                return self.enter(turn, node.get("on")["closed"])   # that node says when people answer
            turn.state.phase = "closed"
            holiday = hours.holiday(hours.now().date())
            self._ended(turn, who, "closure" if holiday == "closure" else "holiday" if holiday else "closed")
            pid = "xfer.closed_holiday" if holiday else "xfer.closed"
            if who == "agents":
                pid += ".agents"          # no number in it: people are reached through this line
            elif not public:
                pid += ".here"
            turn.say(pid, name=name, hours=hours.describe(turn.lang, who), phone=spoken_phone)
            return self._transfer_options(turn, node, reprompt=False)
        turn.state.phase = "dialed"
        turn.note("t", who, turn.why, "dial")
        turn.say("xfer.connecting" if public else "xfer.connecting.here", name=name, phone=spoken_phone)
        dial = turn.response.dial(action=turn.action_url(), method="POST",
                                  timeout=self.services.lines["dial"]["timeout"])
        dial.number(phone)

    @staticmethod
    def _ended(turn: Turn, who: str, result: str) -> None:
        """How the last transfer ended, for the steps its options lead to (a call back asked for that
        office, for that reason): `xfer_office`, `xfer_result` (closed, holiday, closure, busy, no_answer,
        failed, completed) and `xfer_reached`."""
        turn.vars.update(xfer_office=who, xfer_result=result, xfer_reached=result == "completed")

    def _transfer_options(self, turn: Turn, node: Node, reprompt: bool) -> None:
        gather = turn.gather()
        told = self._target(turn, node)[3] is not None
        # The node's own options first (a call back, a text), in the words of every menu.
        self._say_options(turn, node, gather, globals_=False)
        if turn.state.phase == "done":
            turn.close_gather(gather)       # silence: the goodbye (_input_transfer)
            return
        if turn.state.phase == "failed":
            # No "hear the number again" for a number the caller is on.
            pid = "xfer.options.failed" if told else "xfer.options.failed.here"
        elif self._target(turn, node)[0] == "agents" or not told:
            pid = "xfer.options.closed.agents"   # no number to give: just the menu
        else:
            pid = "xfer.options.closed"
        turn.say(pid, gather)
        turn.close_gather(gather)

    def _input_transfer(self, turn: Turn, node: Node) -> None:
        if turn.state.phase == "dialed":
            status = turn.param("DialCallStatus") or "failed"
            who = self._target(turn, node)[0]
            turn.note("d", who, status if status in DIAL_STATUSES else "failed")
            if status in ("completed", "answered"):
                self._ended(turn, who, "completed")
                if self.options(turn, node):
                    turn.state.phase = "done"       # the caller is still on the line: what the node offers
                    return self._transfer_options(turn, node, reprompt=False)
                turn.say("xfer.done")
                turn.response.hangup()
                return
            self._ended(turn, who, status.replace("-", "_") if status in ("busy", "no-answer") else "failed")
            turn.state.phase = "failed"
            event = {"busy": "busy", "no-answer": "no_answer"}.get(status, "failed")
            turn.say(f"xfer.{event}", name=self._target(turn, node)[1])
            if event in (node.get("on") or {}):
                return self.enter(turn, node.get("on")[event])
            return self._transfer_options(turn, node, reprompt=False)
        key = self._key(turn, node)
        for opt in self.options(turn, node) if key else ():
            if str(opt["key"]) == key:
                return self.enter(turn, opt["goto"])
        if turn.state.phase == "done":
            # After a call that was answered: anything but an option is goodbye.
            turn.say("xfer.done")
            turn.response.hangup()
            return
        if key is None:
            if turn.param("Digits"):
                return self.fail(turn, node, "menu.invalid", key=turn.language.key_name(turn.param("Digits")))
            return self.fail(turn, node, "menu.no_input")
        if key == "1" and self._target(turn, node)[3] is not None:
            _, name, _, public = self._target(turn, node)
            turn.say("xfer.number", name=name, phone=say_phone(public, turn.lang))
            return self._transfer_options(turn, node, reprompt=True)
        if key == "2" and turn.state.phase == "failed":
            turn.state.phase = ""
            turn.why = "again"
            return self._enter_transfer(turn, node)
        if key == MORE_TIME or (key == "*" and turn.warned):
            self.give_more_time(turn)
            return self._transfer_options(turn, node, reprompt=True)
        if key == SLOWER:
            self.slow_down(turn)
            return self._transfer_options(turn, node, reprompt=True)
        if key == "*":
            return self._transfer_options(turn, node, reprompt=True)
        if key == "0" and node.get("to") == "agents":
            # Already the person path: say when people answer instead of looping.
            turn.state.phase = ""
            turn.why = "zero"
            return self._enter_transfer(turn, node)
        if key in ("0", "9"):
            return self._global_key(turn, node, key)
        self.fail(turn, node, "menu.invalid", key=turn.language.key_name(key))

    # --- collecting digits or words --------------------------------------------------------
    def _enter_collect(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        if turn.state.phase == "confirm":
            return self._ask_confirm(turn, node)
        speech = "speech" in node.get("input", ["dtmf"])
        # No numDigits: prompts say "then press pound", and a pound after the last digit must not spill
        # into the next question. A caller who does not press it is taken at the timeout.
        gather = turn.gather(num_digits=None, speech=speech,
                             hints=self.hints.get(node.get("hints")) if speech else None,
                             finish_on_key="#",
                             timeout=node.get("timeout") or self.services.lines["menu"].get("digit_timeout", 15))
        if not reprompt or not node.get("short_prompt"):
            for pid in as_list(node.get("prompt")):
                turn.say(pid, gather)
        else:
            turn.say(node.get("short_prompt"), gather)
        turn.close_gather(gather)

    def _ask_confirm(self, turn: Turn, node: Node) -> None:
        gather = turn.gather()
        turn.say(node.get("confirm_prompt", "collect.confirm"), gather,
                 digits=say_digits(self._sealer.unseal(turn.vars.get("_pending", "")) or ""))
        turn.close_gather(gather)

    def _input_collect(self, turn: Turn, node: Node) -> None:
        if turn.state.phase == "confirm":
            key = turn.param("Digits")[:1]
            if key == "1":
                value = self._sealer.unseal(turn.vars.pop("_pending", "")) or ""
                turn.state.phase = ""
                return self._accept(turn, node, value)
            if key == "2":
                turn.vars.pop("_pending", None)
                turn.state.phase = ""
                return self._enter_collect(turn, node)
            if key == "*" and turn.warned:
                self.give_more_time(turn)
            elif key == SLOWER:
                self.slow_down(turn)
            if key in ("*", SLOWER):
                return self._ask_confirm(turn, node)
            if key in ("0", "9"):   # the keys that work in every menu (docs/interface.md)
                turn.vars.pop("_pending", None)
                turn.state.phase = ""
                return self._global_key(turn, node, key)
            return self.fail(turn, node, "collect.confirm_invalid" if key else "menu.no_input")
        digits = turn.param("Digits").rstrip("#")
        said = turn.param("SpeechResult")
        if not digits and not said:
            return self.fail(turn, node, "collect.no_input")   # a question, not a menu: no "choice"
        if digits == MORE_TIME or (said and self._global_said(turn, said) == MORE_TIME):
            # Star twice, never a number's end (pound) nor a lone star (`skip`, or the question again):
            # the question again, with more time for this one and every later one.
            self.give_more_time(turn)
            return self._enter_collect(turn, node)
        if digits == "*":
            if node.get("skip"):
                return self.enter(turn, node.get("skip"))
            return self._enter_collect(turn, node)   # star repeats, here as in every menu
        spec = node.get("digits") or {}
        lo, hi = int(spec.get("min", 1)), int(spec.get("max", 20))
        if digits in ("0", "9") and lo > 1:
            return self._global_key(turn, node, digits)   # a lone 0 or 9 is a way out, not a number
        if digits:
            if not (digits.isascii() and digits.isdigit()):   # Twilio sends 0-9; "²".isdigit() too
                return self.fail(turn, node, "collect.digits_only")
            if not lo <= len(digits) <= hi:
                return self.fail(turn, node, "collect.wrong_length", got=turn.language.count(len(digits)),
                                 want=turn.language.count(lo, hi))
            if node.get("confirm"):
                turn.vars["_pending"] = self._sealer.seal(digits)   # a case or inmate number, maybe
                turn.state.phase = "confirm"
                return self._ask_confirm(turn, node)
            return self._accept(turn, node, digits)
        return self._accept(turn, node, said[:200])

    def _accept(self, turn: Turn, node: Node, value: str) -> None:
        turn.note("x", "given")    # never the value: digits and words are the caller's own
        if node.get("handler"):
            return self.apply(turn, node, self.handlers[node.get("handler")](turn, value))
        if node.get("var"):
            turn.vars[node.get("var")] = value
        self.enter(turn, node.get("next"))

    # --- recordings ------------------------------------------------------------------------
    def _enter_record(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        for pid in as_list(node.get("prompt")):
            turn.say(pid)
        turn.response.record(action=turn.action_url(), method="POST", max_length=node.get("max_length", 120),
                             finish_on_key="#", play_beep=True, trim="trim-silence", timeout=5)
        turn.response.redirect(turn.action_url(), method="POST")

    def _input_record(self, turn: Turn, node: Node) -> None:
        url = turn.param("RecordingUrl")
        if not url:
            if node.get("skip") and turn.state.tries >= 1:
                return self.enter(turn, node.get("skip"))   # an optional message: silent twice, go on
            return self.fail(turn, node, "record.none")
        turn.note("x", "recorded")
        if node.get("handler"):
            return self.apply(turn, node, self.handlers[node.get("handler")](turn, url))
        turn.vars[node.get("var", "recording")] = url
        self.enter(turn, node.get("next"))

    # --- code, handovers, goodbyes ---------------------------------------------------------
    def _enter_action(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        self.apply(turn, node, self.handlers[node.get("handler")](turn, None))

    def _input_action(self, turn: Turn, node: Node) -> None:
        self._enter_action(turn, node)

    def _enter_handover(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        for pid in as_list(node.get("prompt")):
            turn.say(pid)
        line = node.get("line")
        if line not in turn.vars.get("_announced", ()):
            # The other line's greeting is skipped, not its announcement ("payment information is
            # delayed this week"); one the caller heard earlier in this call is not said again.
            turn.state.line = line
            self._announce(turn, turn.response)
        self.enter(turn, self.flows.lines[line].entry)

    def _enter_hangup(self, turn: Turn, node: Node, reprompt: bool = False) -> None:
        for pid in as_list(node.get("prompt")):
            turn.say(pid, number=say_phone(self.services.lines["callback_number"], turn.lang),
                     hours=self.services.hours.describe(turn.lang))
        turn.note("h", "node")
        turn.response.hangup()

    def _input_hangup(self, turn: Turn, node: Node) -> None:
        turn.response.hangup()

    _input_handover = _input_hangup


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9 ]", " ", text).strip()


@lru_cache(maxsize=1024)
def _word(word: str) -> tuple[int, re.Pattern]:
    """A menu's or a global word, normalised and compiled once rather than on every spoken step:
    (its normalised length, which decides between two matches; the whole-word pattern)."""
    normed = _norm(word)
    return len(normed), re.compile(rf"\b{re.escape(normed)}\b")
