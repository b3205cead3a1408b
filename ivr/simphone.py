"""The simulated phone: places a call against the app the way Twilio would, and shows what is heard.

It signs every request as Twilio does, follows `action` and `Redirect`, answers `<Gather>` with keys
or typed speech, `<Record>` with a fake recording and `<Dial>` with a chosen DialCallStatus. The
end-to-end tests walk the call tree with it; `ivr call` is how a person tries the system.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urljoin

from twilio.request_validator import RequestValidator

from .settings import DEV_ACCOUNT_SID

MAX_REQUESTS = 300
SILENCE = ("", "-")


@dataclass
class Event:
    kind: str           # say, play, input, dial, hangup, end, error, record
    text: str = ""
    attrs: dict = field(default_factory=dict)


@dataclass
class Call:
    sid: str
    events: list[Event] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    @property
    def said(self) -> str:
        """Everything the caller heard, as one text (recordings as `[play URL]`)."""
        return " ".join(e.text if e.kind == "say" else f"[play {e.text}]"
                        for e in self.events if e.kind in ("say", "play"))

    @property
    def dialed(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "dial"]

    @property
    def hung_up(self) -> bool:
        return any(e.kind == "hangup" for e in self.events)

    def said_after(self, n_inputs: int) -> str:
        """What was heard after the n-th input (0: from the start)."""
        seen, out = 0, []
        for e in self.events:
            if e.kind == "input":
                seen += 1
            elif seen >= n_inputs and e.kind == "say":
                out.append(e.text)
        return " ".join(out)


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


class SimPhone:
    def __init__(self, transport: Transport, *, to: str, caller: str = "+18605550199",
                 keys: Iterable[str] | None = None, dial_status: str = "completed",
                 show: Callable[[str], None] | None = None, ask: Callable[[str], str] | None = None,
                 account_sid: str | None = None):
        self.transport = transport
        self.to = to
        self.caller = caller
        self.keys = list(keys) if keys is not None else None
        self.dial_status = dial_status
        self.show = show or (lambda line: None)
        self.ask = ask
        self.account_sid = account_sid or getattr(transport, "account_sid", DEV_ACCOUNT_SID)

    def _next_input(self, prompt: str) -> str | None:
        """The caller's next action; None means the caller hangs up."""
        if self.keys is not None:
            return self.keys.pop(0) if self.keys else None
        if self.ask is None:
            return None
        try:
            return self.ask(prompt)
        except EOFError:
            return None

    def place(self, sid: str | None = None) -> Call:
        call = Call(sid or "CA" + uuid.uuid4().hex)
        base = {"CallSid": call.sid, "AccountSid": self.account_sid, "From": self.caller, "To": self.to,
                "Direction": "inbound", "CallStatus": "in-progress", "ApiVersion": "2010-04-01"}
        self.show(f"--- calling {self.to} from {self.caller} ---")
        url, params = "/voice", {}
        for _ in range(MAX_REQUESTS):
            status, body = self.transport.post(url, {**base, **params})
            call.statuses.append(status)
            if status != 200:
                call.events.append(Event("error", f"HTTP {status} from {url}"))
                self.show(f"!! HTTP {status} from {url}: the caller would hear Twilio's application error")
                break
            call.documents.append(body)
            nxt = self._play(call, url, body)
            if nxt is None:
                break
            url, params = nxt
        else:
            call.events.append(Event("error", "too many requests"))
        self.transport.post("/voice/status", {**base, "CallStatus": "completed", "CallDuration": "60"})
        return call

    def _play(self, call: Call, url: str, body: str) -> tuple[str, dict] | None:
        """Act out one TwiML document; return the next request, or None when the call is over."""
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            call.events.append(Event("error", f"bad TwiML: {exc}"))
            self.show(f"!! bad TwiML: {exc}")
            return None
        for verb in root:
            tag = verb.tag
            if tag in ("Say", "Play"):
                self._speak(call, verb)
            elif tag == "Pause":
                continue
            elif tag == "Gather":
                for child in verb:
                    self._speak(call, child)
                answer = self._next_input("keys (or 'say words', empty for silence, 'q' to hang up)> ")
                if answer is None or answer == "q":
                    return self._caller_hangs_up(call)
                if answer in SILENCE:
                    call.events.append(Event("input", "(silence)"))
                    self.show("   ... (silence)")
                    continue  # Twilio goes on to the verb after <Gather>
                call.events.append(Event("input", answer))
                action = urljoin(url, verb.get("action", url))
                if answer.startswith("say "):
                    self.show(f"   caller says: {answer[4:]}")
                    return action, {"SpeechResult": answer[4:], "Confidence": "0.9"}
                digits = answer
                finish = verb.get("finishOnKey", "#")
                if finish and digits.endswith(finish):
                    digits = digits[: -len(finish)]
                self.show(f"   caller presses: {answer}")
                return action, {"Digits": digits}
            elif tag == "Record":
                answer = self._next_input("(recording) press enter to record, or '-' for silence> ")
                if answer is None or answer == "q":
                    return self._caller_hangs_up(call)
                if answer in SILENCE:
                    call.events.append(Event("input", "(silence)"))
                    continue
                call.events.append(Event("input", answer))
                rec = "RE" + uuid.uuid4().hex
                url_rec = f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}/Recordings/{rec}"
                self.show(f"   (caller records a message: {rec})")
                call.events.append(Event("record", url_rec))
                return urljoin(url, verb.get("action", url)), {
                    "RecordingUrl": url_rec, "RecordingSid": rec, "RecordingDuration": "42", "Digits": "#"}
            elif tag == "Dial":
                number = "".join(n.text or "" for n in verb if n.tag == "Number") or (verb.text or "").strip()
                call.events.append(Event("dial", number, dict(verb.attrib)))
                status = self.dial_status
                if self.keys and self.keys[0].startswith("dial:"):
                    status = self.keys.pop(0)[5:]
                self.show(f"   >>> TRANSFER: dialing {number} ... ({status})")
                if verb.get("action"):
                    return urljoin(url, verb.get("action")), {"DialCallStatus": status,
                                                               "DialCallDuration": "30"}
                return None
            elif tag == "Redirect":
                return urljoin(url, (verb.text or "").strip()), {}
            elif tag in ("Hangup", "Reject"):
                call.events.append(Event("hangup"))
                self.show("--- the system hangs up ---")
                return None
            else:
                call.events.append(Event("error", f"unknown verb {tag}"))
        call.events.append(Event("end"))
        self.show("--- end of instructions: the call ends ---")
        return None

    def _speak(self, call: Call, verb: ET.Element) -> None:
        if verb.tag == "Say":
            text = " ".join((verb.text or "").split())
            call.events.append(Event("say", text, dict(verb.attrib)))
            self.show(f"   [{verb.get('language', '?')}] {text}")
        elif verb.tag == "Play":
            call.events.append(Event("play", (verb.text or "").strip()))
            self.show(f"   [plays] {(verb.text or '').strip()}")

    def _caller_hangs_up(self, call: Call) -> None:
        call.events.append(Event("input", "(hang up)"))
        self.show("--- the caller hangs up ---")
        return None
