"""Where a call is, kept in Redis under its CallSid: one read and one write per webhook."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis

from ivr.sealing import Sealer
from ivr.store import Direct

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

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.direct = Direct(client)   # what is sent here may be sent twice (store.Direct)
        self.ttl = ttl

    def load(self, sid: str, extra_keys: tuple[str, ...] = ()) -> tuple[CallState | None, list]:
        """The call's state and, in the same round trip, the values of `extra_keys`."""
        # One MGET rather than a pipeline of GETs: the same round trip, less client work (bench/RESULTS.md).
        raw, ended, *extra = self.direct.command("MGET", KEY.format(sid=sid), ENDED.format(sid=sid), *extra_keys)
        state = None
        if raw:
            try:
                state = CallState.from_json(sid, raw)
                state.ended = bool(ended)
            except (ValueError, KeyError, TypeError):
                state = None  # unreadable state is treated as lost, never as a crash
        return state, extra

    def save(self, state: CallState) -> None:
        # After the end (a hung-up <Record>'s late action) the state keeps the short expiry `end` gave it:
        # a full TTL again would outlive the ENDED mark and show the call as live for hours.
        expiry = ("KEEPTTL",) if state.ended else ("EX", self.ttl)
        self.direct.command("SET", KEY.format(sid=state.sid), state.to_json(), *expiry)

    def end(self, sid: str, linger: int = 300) -> bool:
        """The call ended. Its state is kept a few minutes, not deleted: Twilio may post a hung-up
        <Record>'s action after the status callback, and that message must still be taken. False when its
        end was already recorded: a repeated status callback keeps nothing longer (LT, NX)."""
        _, first = self.direct.pipeline([("EXPIRE", KEY.format(sid=sid), linger, "LT"),
                                         ("SET", ENDED.format(sid=sid), 1, "EX", linger, "NX")])
        return first is not None

    def live(self, sid: str) -> bool:
        """Is the caller still on the line (state kept, no end reported)?"""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(KEY.format(sid=sid))
        pipe.exists(ENDED.format(sid=sid))
        state, ended = pipe.execute()
        return bool(state) and not ended
