"""Call analytics in Redis: the worker folds the call events stream into hourly figures, each call once.

Webhooks append their calls' events to a capped stream (ivr/callflow/calllog.py). `fold` reads the
stream from where it stopped, keeps each call's progress until it ends (OPEN), and adds figures to
one hash per hour (HOUR, the UTC hour the call started in: a call is counted in the hour it started,
on the line it started on). Everything one batch changes (the figures, the calls' progress, the
cursor) is written in one MULTI/EXEC under WATCH of the cursor, so a worker that dies mid-way, or
two workers at once, never count an entry twice or lose one.

Exactly once: a step of a call is taken once (its step number; Twilio's retries are answered from
the call's state without a new entry, and an entry sent twice on a reconnect has the same number);
a call is closed once (CLOSED: a second status callback finds it counted). A call whose status
callback never comes is closed by `sweep` once its state has expired (no event for longer than the
call state's TTL), and counted like the others.

Kept: raw events `ANALYTICS_RAW_DAYS` (default 30; the stream is trimmed by age, never past what was
folded), hourly figures `ANALYTICS_KEEP_MONTHS` (default 25) from their hour.

An hour's fields are `<line>|<figure>` or `<line>|<figure>|<name>`; `ivr report` (ivr/domain/callreport.py)
reads them. The figures are counts of names from the call tree and the code's named events, never
personal data.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis

from ivr.callflow.calllog import STREAM

log = logging.getLogger("ivr.callstats")

CURSOR = "ivr:an:cursor"          # the id of the last stream entry folded
OPEN = "ivr:an:open"              # hash: call tag -> the call so far (JSON)
ACTIVE = "ivr:an:active"          # sorted set: call tag -> unix time of its last event (the sweep's order)
CLOSED = "ivr:an:closed:"         # + tag: counted already; later events of the call are not
HOUR = "ivr:an:h:"                # + UTC hour YYYYMMDDHH: the figures of the calls started in it
TOTALS = "ivr:an:totals"          # hash: "<line>|<outcome>" -> calls ended, for ever (/metrics)

OUTCOMES = ("self_service", "transferred", "abandoned", "request_left", "ended_by_system")
RESULTS = ("answered", "busy", "no_answer", "failed")
DIAL_RESULT = {"completed": "answered", "answered": "answered", "busy": "busy", "no-answer": "no_answer"}
SYSTEM_HANGUPS = ("giveup", "handler", "error")   # calllog "h": the line ended the call
# Upper bounds (seconds) of the duration buckets; medians and p90s are read to a bucket's bound.
BUCKETS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 420, 600, 900, 1200, 1800, 2700, 3600, 7200)
BATCH = 500
SWEEP_GRACE = 60          # seconds beyond the state's TTL before a silent call is closed
CLOSED_LINGER = 3600      # a counted call stays marked this long past the state TTL (repeats come in seconds)
MONTH_DAYS = 31


def hour_key(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%d%H")


def bucket(seconds: float) -> str:
    for bound in BUCKETS:
        if seconds <= bound:
            return str(bound)
    return "more"


@dataclass
class Batch:
    """What one fold transaction adds: figures per (hour, field), the calls changed and closed."""
    figures: Counter = field(default_factory=Counter)
    totals: Counter = field(default_factory=Counter)
    calls: dict = field(default_factory=dict)        # tag -> progress, or None once closed
    closed: set = field(default_factory=set)

    def add(self, call: dict, name: str, n: int = 1) -> None:
        self.figures[(call["hr"], f"{call['ln']}|{name}")] += n


def outcome(call: Mapping) -> str:
    """Exactly one outcome per call, the first that holds: a request stored; a transfer dialed; an answer
    heard; the line gave up (after repeated no-input or wrong keys, or a step in code ended the call);
    else the caller hung up before any answer."""
    if call["rq"]:
        return "request_left"
    if call["dl"]:
        return "transferred"
    if call["an"]:
        return "self_service"
    if call["sy"]:
        return "ended_by_system"
    return "abandoned"


def _new_call(tag: str, ts: int, event: list) -> dict:
    _, line, lang, after_hours = (event + [None, None, 0])[:4]
    return {"t0": ts, "tl": ts, "hr": hour_key(ts), "ln": str(line), "lg": str(lang), "ah": int(after_hours == 1),
            "q": -1, "nd": "", "fa": None, "an": [], "rq": 0, "dl": 0, "pd": None, "sy": 0}


def _finish_dial(batch: Batch, call: dict, result: str) -> None:
    who, why = call["pd"]
    call["pd"] = None
    batch.add(call, f"xfer|{who}|total")
    batch.add(call, f"xfer|{who}|{result}")
    batch.add(call, f"xwhy|{why}|{result}")


def _apply(batch: Batch, call: dict, ts: int, events: list) -> bool:
    """Add one entry's events; True when the call ended."""
    call["tl"] = max(call["tl"], ts)
    for event in events:
        kind, args = event[0], event[1:]
        if kind == "l" and args:
            call["lg"] = str(args[0])
        elif kind == "n" and args:
            call["nd"] = args[0]
            batch.add(call, f"visit|{args[0]}")
        elif kind == "a":
            node = call["nd"]
            if node not in call["an"]:
                call["an"].append(node)
                batch.add(call, f"answer|{node}")
            if call["fa"] is None:
                call["fa"] = ts - call["t0"]
        elif kind == "x" and args and args[0] in ("silence", "wrong"):
            batch.add(call, f"{args[0]}|{call['nd']}")
        elif kind == "g":
            batch.add(call, f"giveup|{call['nd']}")
        elif kind == "t" and len(args) == 3:
            who, why, how = args
            if how == "closed":
                batch.add(call, f"xfer|{who}|closed")
                batch.add(call, f"xwhy|{why}|closed")
            else:
                if call["pd"]:       # dialed again without a result for the last dial: not answered
                    _finish_dial(batch, call, "no_answer")
                call["dl"] = 1
                call["pd"] = [who, why]
        elif kind == "d" and len(args) == 2:
            if not call["pd"]:
                call["pd"] = [args[0], "unknown"]
            _finish_dial(batch, call, DIAL_RESULT.get(args[1], "failed"))
        elif kind == "h" and args and args[0] in SYSTEM_HANGUPS:
            call["sy"] = 1
        elif kind == "i" and args:
            batch.add(call, f"ident|{args[0]}")
        elif kind == "r":
            call["rq"] += 1
            batch.add(call, "requests")
        elif kind == "u" and len(args) == 2:
            batch.add(call, "sdu|lookups")
            if not args[1]:
                batch.add(call, "sdu|failures")
        elif kind == "p":
            batch.add(call, "staff_pin_failures")
        elif kind == "e":
            seconds = args[1] if len(args) > 1 and isinstance(args[1], int) and args[1] >= 0 else ts - call["t0"]
            _close(batch, call, seconds)
            return True
    return False


def _close(batch: Batch, call: dict, seconds: int, swept: bool = False) -> None:
    if call["pd"]:
        # The call ended while a transfer rang, with no result from Twilio: it was not answered.
        _finish_dial(batch, call, "no_answer")
    result = outcome(call)
    batch.add(call, "calls")
    batch.add(call, f"lang|{call['lg']}")
    batch.add(call, f"out|{result}")
    batch.add(call, f"ended_at|{call['nd']}")
    if result == "abandoned":
        batch.add(call, f"aband|{call['nd']}")
    if call["ah"]:
        batch.add(call, "after_hours")
    if swept:
        batch.add(call, "swept")
    batch.add(call, f"dur|{bucket(seconds)}")
    if call["fa"] is not None:
        batch.add(call, f"first|{bucket(call['fa'])}")
    batch.totals[f"{call['ln']}|{result}"] += 1


class Folder:
    """Folds the stream into the hourly figures (`fold`), closes calls gone silent (`sweep`), trims."""

    def __init__(self, client: redis.Redis, config: Mapping) -> None:
        self.redis = client
        self.call_ttl = int(config.get("CALL_TTL", 14400))
        self.raw_days = int(config.get("ANALYTICS_RAW_DAYS", 30))
        self.keep_seconds = int(config.get("ANALYTICS_KEEP_MONTHS", 25)) * MONTH_DAYS * 86400

    def run(self, now: float | None = None) -> tuple[int, int]:
        """Everything due: fold what is new, then sweep (never before: a call's end may be in the
        stream yet), then trim the raw events. (entries folded, calls swept)."""
        folded = 0
        while (n := self.fold_batch()) > 0:
            folded += n
        swept = 0
        while (n := self.sweep_batch(time.time() if now is None else now)) > 0:
            swept += n
        self.trim()
        return folded, swept

    # --- folding -------------------------------------------------------------------------------------
    def fold_batch(self, count: int = BATCH) -> int:
        """Fold up to `count` entries after the cursor, in one transaction; how many were folded."""
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(CURSOR)
                    cursor = _text(pipe.get(CURSOR) or b"0-0")
                    entries = pipe.xrange(STREAM, min="(" + cursor, count=count)
                    if not entries:
                        pipe.unwatch()
                        return 0
                    parsed = [(_text(msg_id), _parse(fields)) for msg_id, fields in entries]
                    tags = sorted({p[0] for _, p in parsed if p})
                    known = self._known(pipe, tags)
                    batch = Batch()
                    for _, item in parsed:
                        if item:
                            self._take(batch, known, *item)
                    pipe.multi()
                    self._write(pipe, batch)
                    pipe.set(CURSOR, parsed[-1][0])
                    pipe.execute()
                    return len(entries)
                except redis.WatchError:
                    continue      # another worker folded meanwhile: read again from its cursor

    @staticmethod
    def _known(pipe, tags: list[str]) -> dict:
        """Each tag's progress (a dict), "closed" when counted already, or None when not seen yet."""
        if not tags:
            return {}
        progress = pipe.hmget(OPEN, tags)
        closed = pipe.mget([CLOSED + t for t in tags])
        out = {}
        for tag, raw, done in zip(tags, progress, closed, strict=True):
            out[tag] = "closed" if done else json.loads(raw) if raw else None
        return out

    @staticmethod
    def _take(batch: Batch, known: dict, tag: str, seq: int, ts: int, events: list) -> None:
        call = known.get(tag)
        if call == "closed":
            return                        # a repeated status callback, a late action: counted already
        if call is None:
            start = next((e for e in events if e and e[0] == "s"), None)
            if start is None:
                return                    # its start was never seen (before this version, or trimmed)
            call = known[tag] = _new_call(tag, ts, start)
        if seq >= 0:
            lost = any(e and e[0] == "lost" for e in events)
            if seq <= call["q"] and not lost:
                return                    # this step was taken already (sent twice)
            call["q"] = seq
        batch.calls[tag] = call
        if _apply(batch, call, ts, events):
            known[tag] = "closed"
            batch.calls[tag] = None
            batch.closed.add(tag)

    def _write(self, pipe, batch: Batch) -> None:
        hours = set()
        for (hour, name), n in batch.figures.items():
            pipe.hincrby(HOUR + hour, name, n)
            hours.add(hour)
        for hour in hours:
            start = datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC).timestamp()
            pipe.expireat(HOUR + hour, int(start) + self.keep_seconds)
        for name, n in batch.totals.items():
            pipe.hincrby(TOTALS, name, n)
        still = {t: c for t, c in batch.calls.items() if c is not None}
        if still:
            pipe.hset(OPEN, mapping={t: json.dumps(c, separators=(",", ":")) for t, c in still.items()})
            pipe.zadd(ACTIVE, {t: c["tl"] for t, c in still.items()})
        if batch.closed:
            pipe.hdel(OPEN, *batch.closed)
            pipe.zrem(ACTIVE, *batch.closed)
            for tag in batch.closed:
                pipe.set(CLOSED + tag, 1, ex=self.call_ttl + CLOSED_LINGER)

    # --- calls whose end never came ------------------------------------------------------------------
    def sweep_batch(self, now: float, count: int = BATCH) -> int:
        """Close up to `count` calls silent for longer than the call state lives: their state is gone
        (every webhook writes it with the TTL, and an event with it), so no status callback is coming."""
        cutoff = now - self.call_ttl - SWEEP_GRACE
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(CURSOR)
                    cursor = pipe.get(CURSOR)
                    tags = [_text(t) for t in pipe.zrangebyscore(ACTIVE, "-inf", cutoff, start=0, num=count)]
                    if not tags:
                        pipe.unwatch()
                        return 0
                    batch = Batch()
                    for tag, raw in zip(tags, pipe.hmget(OPEN, tags), strict=True):
                        if raw:
                            call = json.loads(raw)
                            _close(batch, call, max(0, call["tl"] - call["t0"]), swept=True)
                        batch.calls[tag] = None
                        batch.closed.add(tag)
                    pipe.multi()
                    self._write(pipe, batch)
                    if cursor is not None:
                        pipe.set(CURSOR, cursor)   # unchanged, but a concurrent fold's WATCH fails: no double close
                    pipe.execute()
                    return len(tags)
                except redis.WatchError:
                    continue

    def trim(self) -> None:
        """Raw events older than ANALYTICS_RAW_DAYS go, but never one not folded yet."""
        cursor = _text(self.redis.get(CURSOR) or b"0-0")
        cutoff_ms = int((time.time() - self.raw_days * 86400) * 1000)
        folded_ms = int(cursor.split("-")[0])
        minid = f"{min(cutoff_ms, folded_ms)}-0"
        if min(cutoff_ms, folded_ms) > 0:
            self.redis.xtrim(STREAM, minid=minid, approximate=True)


def _parse(fields: Mapping) -> tuple | None:
    raw = fields.get(b"d") or fields.get("d")
    try:
        tag, seq, ts, events = json.loads(raw)
        if isinstance(tag, str) and type(seq) is int and type(ts) is int and isinstance(events, list):
            return tag, seq, ts, [e for e in events if isinstance(e, list) and e]
    except (TypeError, ValueError):
        pass
    log.warning("call analytics: an unreadable stream entry was skipped")
    return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

