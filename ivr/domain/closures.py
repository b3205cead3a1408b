"""Emergency closures: a line or an office closed now, with a message, until a time (set in the console).

A closure's scope is `line:<line>` (a public line: its callers hear the message at the start and in
place of every transfer on it; answers, the payment line's self-service and the menus keep working) or
`office:<office id>` / `office:agents` (every transfer to that office, or to the agents, is replaced by
the message). The message is text in every language of the system, spoken with the caller's voice.

Redis: `ivr:closures` hash, scope -> JSON {"text": {lang: text}, "until": ISO time, "by", "name", "at"};
`ivr:closures:rev` is bumped in the same MULTI as each change. Web processes read the revision in the
same round trip as a call's state (Runtime.extra_keys) and reload the hash only when it changed, so a
closure is obeyed from the next webhook on, at no cost per webhook otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import redis

from ivr import store

log = logging.getLogger("ivr.closures")

CLOSURES = "ivr:closures"
REV = "ivr:closures:rev"
TEXT_MAX = 500


class ClosureError(ValueError):
    """Bad input for a closure (said next to the field)."""


@dataclass(frozen=True)
class Closure:
    scope: str
    text: dict[str, str]
    until: datetime
    by: str = ""
    name: str = ""
    at: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.scope.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.scope.split(":", 1)[1]

    def to_json(self) -> str:
        return json.dumps({"text": self.text, "until": self.until.isoformat(), "by": self.by, "name": self.name,
                           "at": self.at}, ensure_ascii=False, separators=(",", ":"))


def _parse(scope: str, raw) -> Closure | None:
    try:
        d = json.loads(raw)
        return Closure(scope, dict(d["text"]), datetime.fromisoformat(d["until"]), d.get("by", ""),
                       d.get("name", ""), d.get("at", ""))
    except (ValueError, KeyError, TypeError):
        log.error("unreadable closure %r: ignored", scope)
        return None


class Closures:
    """The closures in Redis, and this process's copy of them (`refresh`, `for_line`, `for_transfer`)."""

    def __init__(self, client: redis.Redis, now: Callable[[], datetime]) -> None:
        self.redis = client
        self.now = now
        self._loaded: dict[str, Closure] = {}
        self._reloader = store.Reloader(self._load, "the closures")

    # --- staff: the console -------------------------------------------------------------------
    def all(self) -> list[Closure]:
        """Every closure stored, ended or not, by scope."""
        raw = self.redis.hgetall(CLOSURES)
        found = (_parse(k.decode(), v.decode()) for k, v in sorted(raw.items()))
        return [c for c in found if c is not None]

    def active(self) -> list[Closure]:
        now = self.now()
        return [c for c in self.all() if c.until > now]

    def set(self, scope: str, text: dict[str, str], until: datetime, by: str, name: str) -> Closure:
        if until <= self.now():
            raise ClosureError("the end must be in the future")
        for lang, words in text.items():
            words = " ".join((words or "").split())
            if not words:
                raise ClosureError(f"the message in {lang} is missing")
            if len(words) > TEXT_MAX:
                raise ClosureError(f"a message is at most {TEXT_MAX} characters")
            text[lang] = words
        closure = Closure(scope, text, until, by, name, self.now().isoformat(timespec="seconds"))
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(CLOSURES, scope, closure.to_json())
        pipe.incr(REV)
        pipe.execute()
        return closure

    def clear(self, scope: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(CLOSURES, scope)
        pipe.incr(REV)
        return bool(pipe.execute()[0])

    # --- the phone lines ---------------------------------------------------------------------
    def refresh(self, rev) -> None:
        """Called on every webhook with the revision read in the call state's round trip."""
        self._reloader.refresh(rev or b"0")     # never set yet: nothing closed, loaded once

    def _load(self, _rev: object) -> None:
        found = (_parse(k.decode(), v.decode()) for k, v in self.redis.hgetall(CLOSURES).items())
        self._loaded = {c.scope: c for c in found if c is not None}

    def _current(self, scopes: Iterable[str]) -> list[Closure]:
        now = self.now()
        return [c for s in scopes if (c := self._loaded.get(s)) is not None and c.until > now]

    def for_line(self, line: str) -> list[Closure]:
        """Closures a caller hears at the start of `line`."""
        return self._current([f"line:{line}"])

    def for_transfer(self, line: str, target: str) -> Closure | None:
        """The closure that replaces a transfer to `target` (an office id or "agents") on `line`."""
        found = self._current([f"office:{target}", f"line:{line}"])
        return found[0] if found else None
