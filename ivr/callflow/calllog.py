"""What a call does, as named events for analytics: noted during a webhook, written with the call's state.

A webhook's events travel in the same Redis round trip as the call's state (ivr/callflow/callstate.py), as one
entry of a capped stream (STREAM); the worker folds the stream into hourly figures (ivr/domain/callstats.py).

An entry is `[call tag, step number, unix time, [event, ...]]`, one JSON text in the field `d`. The call
is named by a keyed hash of its CallSid (`Sealer.tag`), never the CallSid. An event is a short list:

    ["s", line, lang, after_hours]   the call started (after_hours 1 when the agents are closed)
    ["lost"]                         its state was lost: the line starts again under the same call
    ["l", lang]                      the caller chose a language
    ["n", node]                      a node was entered (the events after it, up to the next, are its own)
    ["a"]                            an answer was said there (an `answer` node, unless `counts_as_answer: false`)
    ["x", how]                       what left the node: k<key>, w<key> (said), silence, wrong, given,
                                     recorded, e:<handler event>, l:<lang> or default (a language node)
    ["g"]                            the tries at the node were used up (the line gives up)
    ["t", who, reason, "dial"|"closed"]  a transfer to an office id or `agents`; reason menu, zero, giveup, again
    ["d", who, DialCallStatus]       how that transfer ended
    ["h", why]                       the system hung up: giveup, handler, node, error
    ["i", result]                    payment-line identification: success, wrong_pin, locked, sdu_down
    ["p", "staff"]                   a failed staff sign-in (a wrong PIN)
    ["r", kind]                      a request was stored (kind: inmate; a callback too): `turn.note("r", ...)`
    ["u", op, ok]                    an SDU lookup, ok 1 or 0
    ["e", CallStatus, seconds]       Twilio's status callback: the call ended

No value may be personal data: every value is checked to be a short name (`note`), never digits a
caller keyed, a phone, case or inmate number, a PIN or words said.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from functools import lru_cache

STREAM = "ivr:an:events"
# A short name: node ids, office ids, event names, keys. Three digits in a row are refused, and numbers
# above 99, so that a PIN, a case, inmate or phone number cannot get in by mistake.
_NAME = re.compile(r"^(?!.*\d{3})[A-Za-z0-9_*#:.-]{1,48}$")
END_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
_current: ContextVar[CallLog | None] = ContextVar("ivr_calllog", default=None)


class CallLog:
    """The events of one webhook of one call, in order."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[list] = []

    def note(self, kind: str, *values: str | int) -> None:
        """Add an event; a value that is not a short name or a small number is left out (as "?")."""
        event = [kind]
        for v in values:
            event.append(v if (_safe_name(v) if type(v) is str else _safe_number(v)) else "?")
        self.events.append(event)

    def has(self, kind: str) -> bool:
        return any(e[0] == kind for e in self.events)

    def entry(self, tag: str, seq: int, at: float) -> str:
        """The stream entry's text: this webhook's events, for call `tag`'s step `seq`, at `at`."""
        return json.dumps([tag, seq, int(at), self.events], separators=(",", ":"))

    def bind(self):
        """Make this the log that `note()` adds to, in this thread (a token for `unbind`)."""
        return _current.set(self)

    @staticmethod
    def unbind(token) -> None:
        _current.reset(token)


def note(kind: str, *values: str | int) -> None:
    """Note an event in the current webhook's log, if a webhook is being answered (else nothing)."""
    log = _current.get()
    if log is not None:
        log.note(kind, *values)


def end_entry(tag: str, at: float, status: str, duration: str | None) -> str:
    """The stream entry of a status callback (step -1: not a step of the call's own)."""
    status = status if status in END_STATUSES else "other"
    seconds = int(duration) if duration and duration.isdigit() and len(duration) < 7 else -1
    return json.dumps([tag, -1, int(at), [["e", status, seconds]]], separators=(",", ":"))


def xadd(entry: str, max_entries: int) -> tuple:
    """The XADD that appends `entry`, capped near `max_entries` (the worker also trims by age)."""
    return ("XADD", STREAM, "MAXLEN", "~", max_entries, "*", "d", entry)


@lru_cache(maxsize=4096)
def _safe_name(value: str) -> bool:
    # Cached: the same node ids and event names come by on every call (a webhook's cost, bench/).
    return _NAME.match(value) is not None


def _safe_number(value: object) -> bool:
    return type(value) is int and -1 <= value < 100
