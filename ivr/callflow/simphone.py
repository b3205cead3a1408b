"""The simulated phone: one caller on one call, acting out the app's TwiML as Twilio would.

It signs every request as Twilio does, follows `action` and `Redirect`, goes on to the verb after a
`<Gather>` or `<Record>` the caller leaves silent, answers `<Gather>` with keys or typed speech,
`<Record>` with a fake recording and `<Dial>` with a chosen DialCallStatus. A test drives it one
input at a time (`start`, then `press`), and may copy a call (`fork`), resend a request (`repost`)
or use Twilio's Fallback URL (`fallback`) between two steps; `place` runs a whole call, scripted or
typed at a prompt, and prints what the caller hears as it goes (`ivr call`, the benchmark).
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin

from twilio.request_validator import RequestValidator

from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN

if TYPE_CHECKING:
    from flask import Flask

MAX_REQUESTS = 300   # webhooks in one whole call (`place`): more is a loop
MAX_FOLLOW = 20      # Redirects followed without the caller's input: more is a loop
SILENCE = ("", "-")
CALLER = "+18605550199"
GATHER_PROMPT = "keys (or 'say words', empty for silence, 'q' to hang up)> "
RECORD_PROMPT = "(recording) press enter to record, or '-' for silence> "


@dataclass
class Event:
    kind: str           # say, play, input, dial, hangup, end, error, record, passed (a dial: key with no transfer)
    text: str = ""
    attrs: dict = field(default_factory=dict)


def _plain(text: str) -> str:
    return " ".join(text.lower().split())


class CallFailed(AssertionError):
    """Where Twilio would play its application error: an HTTP error, TwiML it cannot read, a loop."""


class Poster(Protocol):
    base_url: str

    def post(self, url: str, params: dict, sign: bool = True) -> tuple[int, str]: ...


class Transport:
    """Posts signed form requests, either in process (Flask test client) or over HTTP. Like every request
    of Twilio's, each names the account (`AccountSid`), unless it names one itself."""

    def __init__(self, auth_token: str, *, app=None, base_url: str = "http://localhost",
                 sign_url: str | None = None, account_sid: str = DEV_ACCOUNT_SID):
        self.validator = RequestValidator(auth_token)
        self.account_sid = account_sid
        self.app = app
        self.base_url = base_url.rstrip("/")
        self.sign_url = (sign_url or base_url).rstrip("/")   # what the server believes its URL is
        self.client = app.test_client() if app is not None else None
        if app is None:
            import requests
            self.session = requests.Session()

    def post(self, url: str, params: dict, sign: bool = True) -> tuple[int, str]:
        signed_url = urljoin(self.sign_url + "/", url)
        url = urljoin(self.base_url + "/", url)
        params = {"AccountSid": self.account_sid, **params}
        headers = {"X-Twilio-Signature": self.validator.compute_signature(signed_url, params)} if sign else {}
        if self.client is not None:
            path = url[len(self.base_url):]
            resp = self.client.post(path, data=params, headers=headers, base_url=self.base_url)
            return resp.status_code, resp.get_data(as_text=True)
        resp = self.session.post(url, data=params, headers=headers, timeout=20)
        return resp.status_code, resp.text


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def recording_url(account_sid: str = DEV_ACCOUNT_SID) -> str:
    return f"https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Recordings/RE{uuid.uuid4().hex}"


class Phone:
    """One caller on one call. `start()` dials; `press()` gives the next input: digits ("123#"),
    "say words", "-" (silence), "dial:<status>" (how a transfer ended), "record" (a recording; or a
    recording's URL), or a dict of raw request parameters posted to the pending action. `place()`
    runs the whole call. What the caller heard and did is `events`; `said`, `heard`, `dialed` ... read it.

    `app` (in process, signed with `token`) or `transport` carries the requests; `show` gets each line
    of the printed transcript."""

    def __init__(self, app: Flask | None = None, *, to: str, caller: str = CALLER, sid: str | None = None,
                 transport: Poster | None = None, token: str = DEV_AUTH_TOKEN,
                 base_url: str = "http://localhost", account_sid: str | None = None,
                 dial_status: str = "completed", show: Callable[[str], None] | None = None) -> None:
        self.transport = transport or Transport(token, app=app, base_url=base_url)
        self.sid = sid or new_sid()
        self.account_sid = account_sid or getattr(self.transport, "account_sid", DEV_ACCOUNT_SID)
        self.base = {"CallSid": self.sid, "AccountSid": self.account_sid, "From": caller, "To": to,
                     "Direction": "inbound", "CallStatus": "in-progress", "ApiVersion": "2010-04-01"}
        self.dial_status = dial_status    # how a transfer ends when the caller's answer does not say
        self.show = show or (lambda line: None)
        self.events: list[Event] = []
        self.statuses: list[int] = []
        self.documents: list[str] = []
        self.url = "/voice"                        # of the last document: its relative URLs resolve here
        self.pending: ET.Element | None = None    # the verb waiting for the caller (Gather/Record/Dial)
        self.rest: list[ET.Element] = []          # verbs after it (what silence leads to)
        self.ended = False
        self.last_request: tuple[str, dict] | None = None
        self.keys: list[str] | None = None        # a scripted call's answers not given yet (`place`)

    # --- what a test looks at -----------------------------------------------------------------
    @property
    def heard(self) -> list[tuple[str, str]]:
        """(language, text) of every <Say>; ("", URL) of every <Play>. Its length marks a point in the call."""
        return [(e.attrs.get("language", ""), e.text) if e.kind == "say" else ("", e.text)
                for e in self.events if e.kind in ("say", "play")]

    @property
    def said(self) -> str:
        """Everything the caller heard, as one text (recordings as `[play URL]`)."""
        return self.said_since(0)

    def said_since(self, mark: int) -> str:
        """What was heard after the first `mark` things heard (`len(phone.heard)` taken earlier)."""
        heard = [e for e in self.events if e.kind in ("say", "play")][mark:]
        return " ".join(e.text if e.kind == "say" else f"[play {e.text}]" for e in heard)

    def said_after(self, n_inputs: int) -> str:
        """What was said (not played) after the caller's n-th input (0: from the start)."""
        seen, out = 0, []
        for e in self.events:
            if e.kind == "input":
                seen += 1
            elif seen >= n_inputs and e.kind == "say":
                out.append(e.text)
        return " ".join(out)

    def said_at(self, n_inputs: int) -> str:
        """What was said (not played) after the caller's n-th input and before the next one."""
        seen, out = 0, []
        for e in self.events:
            if e.kind == "input":
                seen += 1
            elif seen == n_inputs and e.kind == "say":
                out.append(e.text)
        return " ".join(out)

    @property
    def dialed(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "dial"]

    @property
    def hung_up(self) -> bool:
        """The system hung up (<Hangup> or <Reject>)."""
        return any(e.kind == "hangup" for e in self.events)

    @property
    def waiting_for(self) -> str | None:
        return None if self.pending is None else self.pending.tag

    def unmet(self, expect: Sequence[str] = (), end: str | None = None) -> list[str]:
        """What a scripted call did not do that was expected of it (a synthetic monitoring call):
        `expect`, words heard in this order (case and spacing aside); `end`, how it ended: `hangup` (the
        system hung up), `transfer` or `transfer:+1...` (a person dialed), `keys` (every key used and
        the call still waiting for the caller: the script reached where it meant to)."""
        problems = [e.text for e in self.events if e.kind == "error"]
        heard, at = _plain(self.said), 0
        for text in expect:
            found = heard.find(_plain(text), at)
            if found < 0:
                problems.append(f"never heard {text!r}" + (" (after what was expected before it)" if at else ""))
            else:
                at = found + len(_plain(text))
        if end == "hangup" and not self.hung_up:
            problems.append("the system did not hang up")
        elif end is not None and end.startswith("transfer"):
            number = end.partition(":")[2]
            if not self.dialed or (number and number not in self.dialed):
                problems.append(f"no transfer to {number or 'a person'} (dialed: {', '.join(self.dialed) or 'none'})")
        elif end == "keys":
            if self.keys:
                problems.append(f"the call ended with {len(self.keys)} key(s) of the script unused")
            elif self.hung_up or self.pending is None:
                problems.append("the call ended before the caller did")
        return problems

    # --- placing the call one step at a time --------------------------------------------------
    def start(self) -> Phone:
        self.show(f"--- calling {self.base['To']} from {self.base['From']} ---")
        return self._post("/voice", {})

    def press(self, answer: str | dict) -> Phone:
        """Give the pending verb the caller's answer and follow the TwiML until it waits again."""
        if self.ended:
            raise AssertionError(f"call {self.sid[-6:]} is over; cannot press {answer!r}")
        verb = self.pending
        if isinstance(answer, dict):
            action = verb.get("action") if verb is not None else None
            return self._post(urljoin(self.url, action or self.url), answer)
        if verb is None:
            raise AssertionError("nothing is waiting for input")
        action = urljoin(self.url, verb.get("action") or self.url)
        if verb.tag == "Dial":
            status = answer[5:] if answer.startswith("dial:") else self.dial_status
            self.show(f"   >>> TRANSFER: dialing {self.dialed[-1]} ... ({status})")
            return self._post(action, {"DialCallStatus": status, "DialCallDuration": "30"})
        if answer in SILENCE:
            self.events.append(Event("input", "(silence)"))
            if verb.tag == "Gather":
                self.show("   ... (silence)")
            self._run(self.rest)                   # Twilio goes on to the verb after the Gather/Record
            return self
        self.events.append(Event("input", answer))
        if verb.tag == "Record":
            rec = answer if answer.startswith("https://") else recording_url(self.account_sid)
            rec_sid = rec.rsplit("/", 1)[-1][:34]
            self.events.append(Event("record", rec))
            self.show(f"   (caller records a message: {rec_sid})")
            return self._post(action, {"RecordingUrl": rec, "RecordingSid": rec_sid,
                                       "RecordingDuration": "42", "Digits": "#"})
        if answer.startswith("say "):
            self.show(f"   caller says: {answer[4:]}")
            return self._post(action, {"SpeechResult": answer[4:], "Confidence": "0.9"})
        self.show(f"   caller presses: {answer}")
        finish = verb.get("finishOnKey", "#")
        digits = answer[:-len(finish)] if finish and answer.endswith(finish) else answer
        return self._post(action, {"Digits": digits})

    def hang_up(self) -> None:
        """The call is over (whoever ended it): Twilio's status callback."""
        self.transport.post("/voice/status", {**self.base, "CallStatus": "completed", "CallDuration": "60"})
        self.ended = True

    def fallback(self, error_code: str = "11200") -> Phone:
        """Twilio's Fallback URL in place of the last request (its worker died, or it timed out)."""
        url, _ = self.last_request
        return self._post("/voice/fallback", {"ErrorCode": error_code,
                                              "ErrorUrl": urljoin(self.transport.base_url + "/", url)})

    def repost(self) -> tuple[int, str]:
        """Send the last request again, as Twilio does when it did not get an answer in time."""
        url, params = self.last_request
        return self.transport.post(url, params)

    def fork(self, app: Flask) -> Phone:
        """A copy of this call under a new CallSid, its Redis keys copied too (a branch of a walk:
        tests/walk.explore)."""
        other = Phone(transport=self.transport, to=self.base["To"], caller=self.base["From"],
                      account_sid=self.account_sid, dial_status=self.dial_status, show=self.show)
        rdb = app.extensions["ivr"].redis
        for key in rdb.keys(f"*{self.sid}*"):     # one round trip: a test database is small
            dumped = rdb.dump(key)
            if dumped is not None:
                ttl = max(rdb.pttl(key), 0)
                rdb.restore(key.replace(self.sid.encode(), other.sid.encode()), ttl, dumped, replace=True)
        other.url, other.pending, other.rest = self.url, self.pending, list(self.rest)
        other.events = list(self.events)
        return other

    # --- a whole call -------------------------------------------------------------------------
    def place(self, keys: Iterable[str] | None = None, *,
              ask: Callable[[str], str] | None = None) -> Phone:
        """The whole call, to its end: each answer is the next of `keys` (what is left of them stays in
        `self.keys`), else typed at `ask`'s prompt; when there is none, or it is "q", the caller hangs
        up. A transfer ends as the next key says if it is "dial:<status>", else as `dial_status`; a
        "dial:<status>" key where no transfer is waiting is passed over.
        Where Twilio would play its application error the call ends with an "error" event."""
        self.keys = list(keys) if keys is not None else None
        try:
            self.start()
            while not self.ended:
                if len(self.statuses) >= MAX_REQUESTS:
                    self.events.append(Event("error", "too many requests"))
                    break
                if self.waiting_for == "Dial":
                    self.press("dial:" + self._dial_status())
                    continue
                answer = self._next_input(GATHER_PROMPT if self.waiting_for == "Gather" else RECORD_PROMPT, ask)
                if answer is not None and answer.startswith("dial:"):
                    # How a transfer ends, where none was made (the office was closed): passed over, so one
                    # script walks a path at any hour.
                    self.events.append(Event("passed", answer))
                    self.show(f"   (no transfer was made: {answer} passed over)")
                    continue
                if answer is None or answer == "q":
                    self.events.append(Event("input", "(hang up)"))
                    self.show("--- the caller hangs up ---")
                    break
                self.press(answer)
        except CallFailed:
            pass                                  # noted in `events` and shown
        self.hang_up()
        return self

    def _next_input(self, prompt: str, ask: Callable[[str], str] | None) -> str | None:
        """The caller's next action; None means the caller hangs up."""
        if self.keys is not None:
            return self.keys.pop(0) if self.keys else None
        if ask is None:
            return None
        try:
            return ask(prompt)
        except EOFError:
            return None

    def _dial_status(self) -> str:
        if self.keys and self.keys[0].startswith("dial:"):
            return self.keys.pop(0)[5:]
        return self.dial_status

    # --- acting out TwiML ---------------------------------------------------------------------
    def _fail(self, message: str, shown: str | None = None) -> CallFailed:
        self.events.append(Event("error", message))
        self.show(f"!! {shown or message}")
        return CallFailed(message)

    def _post(self, url: str, params: dict) -> Phone:
        for _ in range(MAX_FOLLOW):
            request = {**self.base, **params}
            self.last_request = (url, request)
            status, body = self.transport.post(url, request)
            self.statuses.append(status)
            if status != 200:
                raise self._fail(f"HTTP {status} from {url}",
                                 f"HTTP {status} from {url}: the caller would hear Twilio's application error")
            self.documents.append(body)
            self.url = url
            try:
                root = ET.fromstring(body)
            except ET.ParseError as exc:
                raise self._fail(f"bad TwiML: {exc}") from None
            nxt = self._run(list(root), follow=False)
            if nxt is None:
                return self
            url, params = nxt
        raise self._fail(f"more than {MAX_FOLLOW} redirects without input at {url}")

    def _run(self, verbs: list[ET.Element], follow: bool = True) -> tuple[str, dict] | None:
        """Act out verbs until one waits for the caller or the call ends; a Redirect is followed
        (`follow`) or returned."""
        self.pending, self.rest = None, []
        for i, verb in enumerate(verbs):
            if verb.tag in ("Say", "Play"):
                self._hear(verb)
            elif verb.tag == "Pause":
                continue
            elif verb.tag in ("Gather", "Record"):
                for child in verb:
                    self._hear(child)
                self.pending, self.rest = verb, verbs[i + 1:]
                return None
            elif verb.tag == "Dial":
                number = "".join(n.text or "" for n in verb if n.tag == "Number") or (verb.text or "").strip()
                self.events.append(Event("dial", number, dict(verb.attrib)))
                if verb.get("action"):
                    self.pending, self.rest = verb, verbs[i + 1:]
                    return None
                self.show(f"   >>> TRANSFER: dialing {number} ... ({self._dial_status()})")
                self.ended = True                  # Twilio ends the call when the dialed party hangs up
                return None
            elif verb.tag == "Redirect":
                target = (urljoin(self.url, (verb.text or "").strip()), {})
                if follow:
                    self._post(*target)
                    return None
                return target
            elif verb.tag in ("Hangup", "Reject"):
                self.events.append(Event("hangup"))
                self.show("--- the system hangs up ---")
                self.ended = True
                return None
            else:
                self.events.append(Event("error", f"unknown verb {verb.tag}"))
        self.events.append(Event("end"))
        self.show("--- end of instructions: the call ends ---")
        self.ended = True
        return None

    def _hear(self, verb: ET.Element) -> None:
        if verb.tag == "Say":
            # SSML inside (<prosody rate="slow">): the words are its text; its settings join the attributes.
            text = " ".join("".join(verb.itertext()).split())
            attrs = dict(verb.attrib)
            for ssml in verb:
                attrs.update({f"{ssml.tag}.{k}": v for k, v in ssml.attrib.items()})
            self.events.append(Event("say", text, attrs))
            self.show(f"   [{verb.get('language', '?')}] {text}")
        elif verb.tag == "Play":
            url = (verb.text or "").strip()
            self.events.append(Event("play", url))
            self.show(f"   [plays] {url}")
