"""The Redis connection: a real server, or in development only an embedded stand-in."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import redis

from ivr.settings import ConfigError

log = logging.getLogger("ivr.store")


def connect(url: str, ivr_env: str, socket_timeout: float = 1.0) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=socket_timeout,
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


def check_persistence(client: redis.Redis, config: Mapping) -> None:
    """In production, refuse to start on a Redis that forgets on a restart (the request references
    callers were told, the queued jobs), unless IVR_ALLOW_NO_PERSISTENCE=1 says to start anyway."""
    if config["IVR_ENV"] != "production":
        return
    try:
        aof = _aof_enabled(client)
    except (redis.ConnectionError, redis.TimeoutError):
        return      # down now: the process starts and answers the fallback (connect logged the outage)
    if aof:
        return
    problem = ("Redis keeps no append-only file" if aof is False else
               "Redis refuses both CONFIG GET and INFO, so whether it keeps its data cannot be checked")
    message = (f"{problem}: a restart of Redis would lose the request references callers were told and the "
               "queued jobs. Set `appendonly yes` (with `appendfsync always`) on the Redis server "
               "(RDB snapshots alone lose what was written since the last one), or set "
               "IVR_ALLOW_NO_PERSISTENCE=1 to start without it")
    if config.get("ALLOW_NO_PERSISTENCE"):
        log.error("%s. Starting anyway: IVR_ALLOW_NO_PERSISTENCE=1 is set.", message)
        return
    raise ConfigError(message)


def _aof_enabled(client: redis.Redis) -> bool | None:
    """Whether Redis writes an append-only file; None when it will not say."""
    try:
        value = client.config_get("appendonly").get("appendonly")
        if value is not None:
            return (value.decode() if isinstance(value, bytes) else value) == "yes"
    except redis.ResponseError:     # CONFIG renamed or forbidden (managed Redis): INFO says it too
        pass
    try:
        return str(client.info("persistence").get("aof_enabled", 0)) == "1"
    except redis.ResponseError:
        return None



class Unreachable(RuntimeError):
    """A command for people found no Redis: one line for them, the URL's password left out."""


def for_command(url: str) -> redis.Redis:
    """The real Redis for a command people run (never the development stand-in: what a command stores
    there would be lost), or Unreachable."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        parts = urlsplit(url)   # never print a password that may be in the URL
        raise Unreachable(f"cannot reach Redis at {parts.hostname}:{parts.port or 6379}: it does not answer "
                          f"({exc}); start it or set REDIS_URL") from exc
    return client

class Direct:
    """Commands sent on a connection of the calling thread's own, for what every webhook does (read and
    write a call's state). redis-py's client spends ~80 us of CPU per command on top of the round trip
    itself on the benchmark machine (pool checkout and its socket poll, retry wrapper, metrics;
    bench/RESULTS.md), as much as the rest of a menu's work. The connection is redis-py's own (its
    protocol, parser, timeouts and health check); only that per-command machinery is left out.

    Every command sent this way must be safe to send twice: a connection found broken (Redis restarted,
    an idle connection dropped) is reconnected and the command sent once more. A timeout is not retried:
    a caller waits on it. A client with another kind of pool (client-side caching, say) gets its
    commands through the client as usual."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        pool = getattr(client, "connection_pool", None)
        self.pool = pool if type(pool) is redis.ConnectionPool and \
            issubclass(pool.connection_class, redis.connection.AbstractConnection) \
            and getattr(pool, "cache", None) is None else None
        self.local = threading.local()

    def _connection(self) -> redis.connection.AbstractConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None or conn.pid != os.getpid():   # none yet in this thread, or made before a fork
            conn = self.local.conn = self.pool.connection_class(**self.pool.connection_kwargs)
        return conn

    def command(self, *args):
        return self.pipeline([args])[0]

    def pipeline(self, commands: Sequence[tuple]) -> list:
        """Several commands in one round trip, their replies in order (each reply an error raises)."""
        if self.pool is None:
            if len(commands) == 1:
                return [self.client.execute_command(*commands[0])]
            pipe = self.client.pipeline(transaction=False)
            for args in commands:
                pipe.execute_command(*args)
            return pipe.execute()
        conn = self._connection()
        try:
            return self._send(conn, commands)
        except redis.ConnectionError:
            conn.disconnect()   # the connection redis-py found broken; the next send reconnects
            return self._send(conn, commands)

    @staticmethod
    def _send(conn, commands: Sequence[tuple]) -> list:
        if len(commands) == 1:
            conn.send_command(*commands[0])
        else:
            conn.send_packed_command(conn.pack_commands(commands))
        try:
            return [conn.read_response() for _ in commands]
        except redis.ResponseError:
            conn.disconnect()   # replies of the commands after the failed one are still unread
            raise
