"""GET /metrics: the Prometheus text format, to the addresses in IVR_METRICS_ALLOW only.

Counted in each web process (prometheus_client; in multiprocess mode under gunicorn, where
ivr/gunicorn_conf.py gives the workers a PROMETHEUS_MULTIPROC_DIR): webhooks' latency per kind,
calls started per line, SDU lookups and the breaker's state, transfers per result, Redis errors and
wrong PINs. Read from Redis when scraped (one round trip): calls ended per line and outcome (the
worker's fold, ivr/domain/callstats.py), the worker's heartbeat, the job queue's length and its oldest
job's age, the analytics stream's oldest unfolded event. No label carries personal data.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Iterable

import redis
from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ivr.callflow.calllog import CallLog

log = logging.getLogger("ivr.metrics")
bp = Blueprint("metrics", __name__)

# A webhook's budget is a few hundred milliseconds (README, Performance): buckets around it.
WEBHOOK_SECONDS = Histogram("ivr_webhook_seconds", "Time to answer a Twilio webhook, by kind", ["kind"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))
CALLS_STARTED = Counter("ivr_calls_started", "Calls answered, by the line they started on", ["line"])
SDU_LOOKUPS = Counter("ivr_sdu_lookups", "SDU API calls, by operation and result (ok, failed)", ["op", "result"])
SDU_BREAKER = Gauge("ivr_sdu_breaker_state", "The SDU circuit breaker: 0 closed, 1 half-open, 2 open "
                    "(the highest of the live web processes)", multiprocess_mode="livemax")
TRANSFERS = Counter("ivr_transfers", "Transfers dialed, by result (answered, busy, no_answer, failed)", ["result"])
REDIS_ERRORS = Counter("ivr_redis_errors", "Redis commands that failed in a web process, by where", ["where"])
PIN_FAILURES = Counter("ivr_pin_failures", "Wrong PINs, by line (payments: SDU PIN; staff: sign-in)", ["line"])
BREAKER_VALUES = {"closed": 0, "half-open": 1, "open": 2}
DIAL_RESULTS = {"completed": "answered", "answered": "answered", "busy": "busy", "no-answer": "no_answer"}


def observe_sdu(op: str, ok: bool, breaker: str) -> None:
    """SDUClient.observer: one lookup done (or refused by the open breaker)."""
    SDU_LOOKUPS.labels(op, "ok" if ok else "failed").inc()
    SDU_BREAKER.set(BREAKER_VALUES.get(breaker, 0))


def observe_turn(events: CallLog) -> None:
    """What a webhook's call events say that /metrics counts."""
    for event in events.events:
        kind = event[0]
        if kind == "s":
            CALLS_STARTED.labels(event[1]).inc()
        elif kind == "d":
            TRANSFERS.labels(DIAL_RESULTS.get(event[2], "failed")).inc()
        elif kind == "i" and event[1] == "wrong_pin":
            PIN_FAILURES.labels("payments").inc()
        elif kind == "p":
            PIN_FAILURES.labels("staff").inc()


def allowed(address: str | None, networks: Iterable) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


@bp.get("/metrics")
def metrics() -> Response:
    # Not a Twilio webhook: no signature. The peer's own address (not X-Forwarded-For, which anyone can
    # write): a Prometheus behind a proxy needs the proxy's address allowed.
    if not allowed(request.remote_addr, current_app.config["METRICS_ALLOW"]):
        abort(403)
    extra = CollectorRegistry(auto_describe=False)
    rt = current_app.extensions["ivr"]
    extra.register(RedisFigures(rt.redis, rt.queue_keys))
    from_redis = generate_latest(extra)      # first: a Redis error it meets is in this very scrape
    return Response(generate_latest(_process_registry()) + from_redis, mimetype=CONTENT_TYPE_LATEST)


def _process_registry():
    """Every web process's figures in multiprocess mode (gunicorn), else this process's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class RedisFigures:
    """The figures kept in Redis, read at scrape time in one round trip."""

    def __init__(self, client: redis.Redis, queue: dict[str, str]) -> None:
        self.redis = client
        self.queue = queue        # the job queue's keys: jobs, dead, heartbeat (app.py: the web knows no jobs)

    def collect(self):
        from ivr.domain import callstats

        up = GaugeMetricFamily("ivr_redis_up", "Whether Redis answered this scrape")
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall(callstats.TOTALS)
            pipe.get(self.queue["heartbeat"])
            pipe.xlen(self.queue["jobs"])
            pipe.xrange(self.queue["jobs"], count=1)
            pipe.xlen(self.queue["dead"])
            pipe.get(callstats.CURSOR)
            totals, beat, jobs, first_job, dead, cursor = pipe.execute()
            unfolded = self.redis.xrange(callstats.STREAM, min="(" + _text(cursor or b"0-0"), count=1)
        except redis.RedisError as exc:
            REDIS_ERRORS.labels("metrics").inc()
            log.warning("/metrics: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        now = time.time()
        ended = CounterMetricFamily("ivr_calls_ended", "Calls ended, by the line they started on and outcome "
                                    "(counted by the worker's fold)", labels=["line", "outcome"])
        for field, value in sorted(totals.items()):
            line, _, outcome = _text(field).partition("|")
            ended.add_metric([line, outcome], int(value))
        yield ended
        seen = GaugeMetricFamily("ivr_worker_last_seen_timestamp_seconds", "When a worker last went round its loop")
        seen.add_metric([], float(beat or 0))
        yield seen
        length = GaugeMetricFamily("ivr_queue_length", "Entries waiting, by queue", labels=["queue"])
        length.add_metric(["jobs"], jobs)
        length.add_metric(["dead_letters"], dead)
        yield length
        age = GaugeMetricFamily("ivr_queue_oldest_age_seconds", "Age of the oldest entry not done, by queue "
                                "(0 when empty)", labels=["queue"])
        age.add_metric(["jobs"], _age(first_job, now))
        age.add_metric(["analytics"], _age(unfolded, now))
        yield age


def _age(entries: list, now: float) -> float:
    if not entries:
        return 0.0
    ms = int(_text(entries[0][0]).split("-")[0])
    return max(0.0, round(now - ms / 1000, 3))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
