"""The Redis connection: a real server, or in development only an embedded stand-in."""

from __future__ import annotations

import logging

import redis

log = logging.getLogger("ivr.store")


def connect(url: str, ivr_env: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0,
                                  health_check_interval=30)
    try:
        client.ping()
        return client
    except redis.RedisError as exc:
        if ivr_env != "development":
            # Outside development a missing Redis is an outage the operator must see, but the app
            # still starts: /voice/fallback and /health keep answering without it.
            log.error("Redis at %s does not answer (%s); calls will get the fallback message", url, exc)
            return client
        import fakeredis

        log.warning("=" * 72)
        log.warning("NO REDIS at %s (%s).", url, exc)
        log.warning("Using an EMBEDDED in-process store: call state is lost on restart and NOT")
        log.warning("shared between workers. Development only; start redis-server for real use.")
        log.warning("=" * 72)
        return fakeredis.FakeRedis()
