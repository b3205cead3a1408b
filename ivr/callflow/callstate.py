"""Where a call is, kept in Redis under its CallSid: one read and one write per webhook."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis

from ivr.callflow import calllog
from ivr.sealing import Sealer

KEY = "ivr:call:{sid}"
ENDED = "ivr:ended:{sid}"   # the status callback came: only a late <Record> action is still taken


@dataclass
class CallState:
    sid: str
    line: str
    lang: str = "en"
    node: str = ""
    seq: int = 0          # the step number; every action URL carries it (Twilio retries, stale steps)
    tries: int = 0        # failed tries at the current node
    phase: str = ""       # a node's own sub-step (confirming, dialed, closed ...)
    vars: dict = field(default_factory=dict)
    last: str = ""        # compressed TwiML answered at step seq-1, replayed to a Twilio retry
    new: bool = False     # not stored yet
    ended: bool = False   # Twilio reported the end of the call
    token: str = ""       # the request answered last (`last`): webhooks.retry_digest of its idempotency token

    def to_json(self) -> str:
        data = {"l": self.line, "g": self.lang, "n": self.node, "s": self.seq, "t": self.tries,
                "p": self.phase, "v": self.vars, "r": self.last}
        if self.token:
            data["k"] = self.token
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, sid: str, raw: bytes | str) -> CallState:
        d = json.loads(raw)
        if not (all(isinstance(d[k], str) for k in "lgnp") and type(d["s"]) is int and type(d["t"]) is int
                and isinstance(d["v"], dict) and isinstance(d.get("r", ""), str) and isinstance(d.get("k", ""), str)):
            raise ValueError("call state of the wrong shape")   # tampered with, or another version's
        return cls(sid=sid, line=d["l"], lang=d["g"], node=d["n"], seq=d["s"], tries=d["t"],
                   phase=d["p"], vars=d["v"], last=d.get("r", ""), token=d.get("k", ""))

    def remember_response(self, twiml: str, sealer: Sealer) -> None:
        # Sealed: a read-back of a case or inmate number is in it, and Redis is no place for those.
        self.last = sealer.seal_compressed(twiml)

    def replay(self, sealer: Sealer) -> str | None:
        return sealer.unseal_compressed(self.last) if self.last else None


class CallStore:
    """Reads and writes call state; each is a single Redis round trip (one pipeline)."""

    def __init__(self, client: redis.Redis, ttl: int, events_max: int = 2_000_000) -> None:
        # redis-py's own pooled client: a thread-local connection that skipped the pool (~80 us a command
        # on the benchmark machine) showed no difference in the whole system (bench/RESULTS.md, issue 19),
        # and the pool is what reaches a new master after a Sentinel failover.
        self.redis = client
        self.ttl = ttl
        self.events_max = events_max   # the analytics stream's cap (ivr/callflow/calllog.py)

    def load(self, sid: str, extra_keys: tuple[str, ...] = ()) -> tuple[CallState | None, list]:
        """The call's state and, in the same round trip, the values of `extra_keys`."""
        # One MGET rather than a pipeline of GETs: the same round trip, less client work (bench/RESULTS.md).
        raw, ended, *extra = self.redis.mget(KEY.format(sid=sid), ENDED.format(sid=sid), *extra_keys)
        state = None
        if raw:
            try:
                state = CallState.from_json(sid, raw)
                state.ended = bool(ended)
            except (ValueError, KeyError, TypeError):
                state = None  # unreadable state is treated as lost, never as a crash
        return state, extra

    def save(self, state: CallState, events: str | None = None) -> None:
        """Store the state; with `events` (a calllog entry), append them to the analytics stream in the
        same round trip. Sent twice after a broken connection, the entry is counted once all the same:
        the worker's fold takes each step of a call once (ivr/domain/callstats.py)."""
        # After the end (a hung-up <Record>'s late action) the state keeps the short expiry `end` gave it:
        # a full TTL again would outlive the ENDED mark and show the call as live for hours.
        expiry = {"keepttl": True} if state.ended else {"ex": self.ttl}
        key = KEY.format(sid=state.sid)
        if events is None:
            self.redis.set(key, state.to_json(), **expiry)
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(key, state.to_json(), **expiry)
        pipe.execute_command(*calllog.xadd(events, self.events_max))
        pipe.execute()

    def end(self, sid: str, linger: int = 300, events: str | None = None) -> bool:
        """The call ended. Its state is kept a few minutes, not deleted: Twilio may post a hung-up
        <Record>'s action after the status callback, and that message must still be taken. False when its
        end was already recorded: a repeated status callback keeps nothing longer (LT, NX). `events` (the
        end's calllog entry) go in the same round trip, repeated or not: the fold counts an end once."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.expire(KEY.format(sid=sid), linger, lt=True)
        pipe.set(ENDED.format(sid=sid), 1, ex=linger, nx=True)
        if events is not None:
            pipe.execute_command(*calllog.xadd(events, self.events_max))
        first = pipe.execute()[1]
        return first is not None

    def live(self, sid: str) -> bool:
        """Is the caller still on the line (state kept, no end reported)?"""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(KEY.format(sid=sid))
        pipe.exists(ENDED.format(sid=sid))
        state, ended = pipe.execute()
        return bool(state) and not ended
