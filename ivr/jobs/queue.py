"""The job queue: a Redis stream with a consumer group, the jobs registered on it, and how to add one.

A webhook must answer in milliseconds, so slow work (downloading recordings) is queued here and done
by `ivr worker` (ivr/jobs/worker.py). A job stays pending until a worker acknowledges it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis

STREAM = "ivr:jobs"
DEAD = "ivr:jobs:dead"
GROUP = "workers"
HEARTBEAT = "ivr:worker:heartbeat"   # unix time of a worker's last round (/metrics reads it)
HANDLERS: dict[str, Callable[[dict, JobContext], None]] = {}
STARTUP: list[Callable[[JobContext], None]] = []     # run once when a worker starts (data upgrades)
PERIODIC: list[Callable[[JobContext], None]] = []    # run by each worker every PERIODIC_S (each decides if due)


class RetryLater(Exception):
    """Raised by a job that failed for now: it is tried again, up to MAX_DELIVERIES times."""


class GiveUp(Exception):
    """Raised by a job that can never succeed: it goes to the dead-letter stream at once."""


@dataclass
class JobContext:
    config: Mapping
    redis: redis.Redis


def job(kind: str) -> Callable:
    def register(fn: Callable[[dict, JobContext], None]) -> Callable:
        HANDLERS[kind] = fn
        return fn
    return register


def at_start(fn: Callable[[JobContext], None]) -> Callable[[JobContext], None]:
    """Register a task a worker runs once when it starts (e.g. upgrading what an older version stored)."""
    STARTUP.append(fn)
    return fn


def periodic(fn: Callable[[JobContext], None]) -> Callable[[JobContext], None]:
    """Register a task every worker runs about once a minute; it decides itself (with a Redis key) whether
    it is due, so that several workers do not all do it."""
    PERIODIC.append(fn)
    return fn


def ensure_group(r: redis.Redis) -> None:
    try:
        r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def enqueue(r: redis.Redis, kind: str, payload: dict, pipe=None) -> None:
    """Queue a job; with `pipe`, as part of the caller's own transaction."""
    (pipe or r).xadd(STREAM, {"kind": kind, "payload": json.dumps(payload)})
