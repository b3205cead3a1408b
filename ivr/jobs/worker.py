"""`ivr worker`: works the job queue (ivr/jobs/queue.py) so that nothing queued is lost.

A job stays pending until a worker acknowledges it; one whose worker died is claimed by another after
`CLAIM_IDLE_MS`; one that keeps failing is moved to a dead-letter stream.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable

import redis

from ivr.jobs import analytics, prompts, recordings, retention  # noqa: F401  (the jobs: importing registers them)
from ivr.jobs.queue import (  # noqa: F401  (the queue's names, for the worker's users)
    DEAD,
    GROUP,
    HANDLERS,
    HEARTBEAT,
    PERIODIC,
    STARTUP,
    STREAM,
    GiveUp,
    JobContext,
    RetryLater,
    at_start,
    enqueue,
    ensure_group,
    job,
    periodic,
)

log = logging.getLogger("ivr.jobs")

# A failed job is tried again about every 5 minutes (its own worker, or another after a crash), so
# MAX_DELIVERIES tries span ~25 minutes of a Twilio or network problem before a dead letter.
CLAIM_IDLE_MS = 300_000
MAX_DELIVERIES = 5
BLOCK_MS = 5000          # how long an idle worker waits on the stream per read
OUTAGE_PAUSE = 2.0       # seconds between tries while Redis does not answer
PERIODIC_S = 60


class Worker:
    _periodic_at = 0.0      # time.monotonic() when the periodic tasks run next

    def __init__(self, ctx: JobContext, name: str | None = None) -> None:
        self.ctx = ctx
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        ensure_group(ctx.redis)

    def start_up(self) -> None:
        """The start-up tasks; one that fails is logged and does not stop the worker (it runs at the next start)."""
        for fn in STARTUP:
            try:
                fn(self.ctx)
            except Exception as exc:  # a data upgrade must not keep the queue from being worked
                log.error("start-up task %s failed: %s", fn.__name__, exc)

    def _regrouped(self, fn: Callable[[], int]) -> int:
        """fn(), and once more after making the group again if Redis lost it (NOGROUP): a Redis restarted
        without its data has neither the stream nor the group, and jobs queued since must still be done."""
        try:
            return fn()
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
            log.error("the job stream's consumer group was gone (Redis lost its data: restarted without "
                      "persistence?); created again")
            ensure_group(self.ctx.redis)
            return fn()

    def run_once(self, block_ms: int | None = None, count: int = 10) -> int:
        """Handle what is waiting (and what a dead worker left); return how many jobs were handled."""
        return self._regrouped(lambda: self._run_once(block_ms, count))

    def _run_once(self, block_ms: int | None, count: int) -> int:
        r = self.ctx.redis
        # Its reply has 3 parts on Redis 7 and 2 on Redis 6.2: the claimed entries are the second.
        claimed = r.xautoclaim(STREAM, GROUP, self.name, min_idle_time=CLAIM_IDLE_MS, count=count)[1]
        batch = list(claimed)
        fresh = r.xreadgroup(GROUP, self.name, {STREAM: ">"}, count=count, block=block_ms)
        for _, entries in fresh or []:
            batch += entries
        for msg_id, fields in batch:
            self._handle(msg_id, fields)
        return len(batch)

    def retry_pending(self) -> int:
        """Run again, now, the jobs this worker holds that failed earlier (tests; `run` waits for
        XAUTOCLAIM's idle time instead)."""
        return self._regrouped(self._retry_pending)

    def _retry_pending(self) -> int:
        r = self.ctx.redis
        entries = r.xreadgroup(GROUP, self.name, {STREAM: "0"}, count=100)
        handled = 0
        for _, items in entries or []:
            for msg_id, fields in items:
                if fields:
                    self._handle(msg_id, fields)
                    handled += 1
        return handled

    def _handle(self, msg_id, fields: dict) -> None:
        r = self.ctx.redis
        kind = _text(fields.get(b"kind") or fields.get("kind"))
        try:
            payload = json.loads(_text(fields.get(b"payload") or fields.get("payload")) or "{}")
            fn = HANDLERS.get(kind)
            if fn is None:
                raise GiveUp(f"no handler for job kind {kind!r}")
            fn(payload, self.ctx)
        except GiveUp as exc:
            self._dead(msg_id, fields, str(exc))
        except Exception as exc:  # any failure is retried, then dead-lettered, never lost
            deliveries = self._deliveries(msg_id)
            log.warning("job %s (%s) failed, delivery %d: %s", _text(msg_id), kind, deliveries, exc)
            if deliveries >= MAX_DELIVERIES:
                self._dead(msg_id, fields, str(exc))
        else:
            pipe = r.pipeline()
            pipe.xack(STREAM, GROUP, msg_id)
            pipe.xdel(STREAM, msg_id)      # done: keep the stream from growing with every call
            pipe.execute()

    def _deliveries(self, msg_id) -> int:
        info = self.ctx.redis.xpending_range(STREAM, GROUP, min=msg_id, max=msg_id, count=1)
        return int(info[0]["times_delivered"]) if info else MAX_DELIVERIES

    def _dead(self, msg_id, fields: dict, reason: str) -> None:
        log.error("job %s moved to %s: %s", _text(msg_id), DEAD, reason)
        pipe = self.ctx.redis.pipeline()
        pipe.xadd(DEAD, {**{_text(k): _text(v) for k, v in fields.items()}, "reason": reason[:500]})
        pipe.xack(STREAM, GROUP, msg_id)
        pipe.xdel(STREAM, msg_id)
        pipe.execute()

    def run_periodic(self) -> None:
        """The periodic tasks, when a minute has passed since they last ran here; a failure is logged."""
        if time.monotonic() < self._periodic_at:
            return
        self._periodic_at = time.monotonic() + PERIODIC_S
        for fn in PERIODIC:
            try:
                fn(self.ctx)
            except Exception as exc:  # a periodic task must not keep the queue from being worked
                log.error("periodic task %s failed: %s", fn.__name__, exc)

    def run(self, stop: Callable[[], bool] = lambda: False, block_ms: int = BLOCK_MS) -> None:
        self.start_up()
        block_ms = self._fit_block(block_ms)
        log.info("worker %s waiting for jobs on %s", self.name, STREAM)
        down_since = None
        while not stop():
            if down_since is None:          # a purge during an outage would only add an error line a minute
                self.run_periodic()
            try:
                # A failed job stays pending; XAUTOCLAIM in run_once hands it back, to this worker or
                # another, once it has been idle CLAIM_IDLE_MS: that spacing is the retry schedule.
                self.run_once(block_ms=block_ms)
            except redis.RedisError as exc:
                if down_since is None:      # once per outage: a line every few seconds would be noise
                    down_since = time.monotonic()
                    log.error("Redis unavailable: %s; trying again every %g s", exc, OUTAGE_PAUSE)
                time.sleep(OUTAGE_PAUSE)
                continue
            if down_since is not None:
                log.info("Redis answers again after %.0f s", time.monotonic() - down_since)
                down_since = None
            self.heartbeat()

    def heartbeat(self) -> None:
        """When this worker last went round its loop, for /metrics (an alert when every worker is silent)."""
        try:
            self.ctx.redis.set(HEARTBEAT, int(time.time()), ex=7 * 86400)
        except redis.RedisError:
            pass   # the next round says so if Redis stays away

    def _fit_block(self, block_ms: int) -> int:
        """A blocking read that outlives the client's socket timeout ends in a timeout error: an idle
        queue would look like an outage. The read is shortened to end well within it."""
        kwargs = getattr(getattr(self.ctx.redis, "connection_pool", None), "connection_kwargs", {})
        timeout = kwargs.get("socket_timeout")
        return max(1, min(block_ms, int(timeout * 750))) if timeout else block_ms


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")
