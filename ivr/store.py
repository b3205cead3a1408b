"""The Redis connection: a server or Sentinel's master, or in development only an embedded stand-in."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from urllib.parse import urlsplit

import redis
import redis.connection
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from ivr import settings
from ivr.settings import ConfigError

log = logging.getLogger("ivr.store")


def redis_config(where: str | Mapping) -> Mapping:
    """The Redis part of the configuration: `where` is the config (settings.from_env) or, for callers
    that only hold REDIS_URL, that URL, with Sentinel read from the environment (so no command can
    miss it)."""
    if isinstance(where, str):
        return {**settings.redis_settings({**os.environ, "REDIS_URL": where}), "REDIS_URL": where}
    return where


def client(where: str | Mapping, *, socket_timeout: float = 1.0, connect_timeout: float = 0.5) -> redis.Redis:
    """A client of the master: REDIS_URL's server, or with Sentinel whichever server the Sentinels name
    master now. With Sentinel, redis-py's SentinelConnectionPool asks them again on every new connection,
    and a command that finds its master gone keeps trying, for REDIS_FAILOVER_SECONDS, so every thread
    of every process reaches the new master after a failover without a restart."""
    config = redis_config(where)
    made = _client(config, socket_timeout, connect_timeout)
    made.ivr_wait_ms = config.get("REDIS_WAIT_MS", DEFAULT_WAIT_MS)   # read by `replicated`
    return made


def _client(config: Mapping, socket_timeout: float, connect_timeout: float) -> redis.Redis:
    url = config["REDIS_URL"]
    if not config.get("REDIS_SENTINELS"):
        return redis.Redis.from_url(url, socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout,
                                    health_check_interval=30)
    options = redis.connection.parse_url(url)   # db, username, password, ssl ... of REDIS_URL; not host/port
    for ignored in ("host", "port", "path", "connection_class"):
        options.pop(ignored, None)
    if url.startswith("rediss://"):
        options["ssl"] = True
    options["db"] = config["REDIS_DB"]
    # The Sentinels' own connections take only sentinel_kwargs (the socket options too, once it is given);
    # the master's take REDIS_URL's password, through master_for.
    asked = {"socket_timeout": connect_timeout, "socket_connect_timeout": connect_timeout}
    if config.get("REDIS_SENTINEL_PASSWORD"):
        asked["password"] = config["REDIS_SENTINEL_PASSWORD"]
        asked["username"] = config.get("REDIS_SENTINEL_USERNAME") or None
    sentinel = CheckedSentinel(list(config["REDIS_SENTINELS"]), sentinel_kwargs=asked,
                               socket_timeout=connect_timeout, socket_connect_timeout=connect_timeout)
    patience = float(config.get("REDIS_FAILOVER_SECONDS", 6))
    return sentinel.master_for(config["REDIS_SENTINEL_MASTER"], socket_timeout=socket_timeout,
                               socket_connect_timeout=connect_timeout, health_check_interval=30,
                               retry=Patience(patience), **options)


def describe(where: str | Mapping) -> str:
    """Where Redis is, for a message (never the URL's password)."""
    config = redis_config(where)
    if config.get("REDIS_SENTINELS"):
        names = ",".join(f"{h}:{p}" for h, p in config["REDIS_SENTINELS"])
        return f"master {config['REDIS_SENTINEL_MASTER']!r} of the Sentinels {names}"
    parts = urlsplit(config["REDIS_URL"])
    return f"Redis at {parts.hostname}:{parts.port or 6379}"


class SentinelRefused(redis.AuthenticationError):
    """The Sentinels refused this process's credentials (REDIS_SENTINEL_PASSWORD, REDIS_SENTINEL_USERNAME):
    not retried, since a password does not come right in a few seconds; the message names the settings,
    never their values."""


class CheckedSentinel(Sentinel):
    """redis-py's Sentinel, telling a refused password from Sentinels that are down: when none named the
    master, each is asked once more for a PING, and one refusing the credentials is a SentinelRefused."""

    answered = False     # once a Sentinel named the master, its credentials are right: no more probes

    def discover_master(self, service_name: str):  # noqa: ANN201 - redis-py's signature
        try:
            found = super().discover_master(service_name)
        except MasterNotFoundError:
            # During a failover the Sentinels answer but name no master yet: asking each for a PING then
            # would only lengthen the wait (a wrong password shows from the first connection on).
            if self.answered or not any(self._refuses(one) for one in self.sentinels):
                raise
        else:
            self.answered = True
            return found
        if self.sentinel_kwargs.get("username"):
            raise SentinelRefused("the Sentinels refused the user in REDIS_SENTINEL_USERNAME with the password in "
                                  "REDIS_SENTINEL_PASSWORD: they must be an ACL user of the Sentinels and its "
                                  "password") from None
        if self.sentinel_kwargs.get("password"):
            raise SentinelRefused("the Sentinels refused the password in REDIS_SENTINEL_PASSWORD: it must be the "
                                  "`requirepass` of their sentinel.conf") from None
        raise SentinelRefused("the Sentinels ask for a password: set REDIS_SENTINEL_PASSWORD to the `requirepass` "
                              "of their sentinel.conf (and REDIS_SENTINEL_USERNAME for an ACL user)") from None

    @staticmethod
    def _refuses(sentinel: redis.Redis) -> bool:
        try:
            sentinel.ping()
        except redis.AuthenticationError:
            return True
        except redis.RedisError:
            return False
        return False


class Patience(Retry):
    """Retries a command that lost its server (connection refused or reset, no master known yet) until
    `seconds` have passed since its first try: a Sentinel failover takes a few seconds, and a caller
    waiting that long in silence still goes on with the call, where the fallback would end it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(ExponentialBackoff(cap=0.5, base=0.05), retries=1_000_000,
                         supported_errors=(redis.ConnectionError, redis.TimeoutError, socket.timeout))
        self.seconds = seconds

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):  # noqa: ANN001
        deadline = time.monotonic() + self.seconds

        def bounded(error: Exception) -> bool:
            return (time.monotonic() < deadline and not isinstance(error, SentinelRefused)
                    and (is_retryable is None or is_retryable(error)))
        return super().call_with_retry(do, fail, is_retryable=bounded, with_failure_count=with_failure_count)


def connect(where: str | Mapping, ivr_env: str | None = None, socket_timeout: float = 1.0) -> redis.Redis:
    """The Redis of a long-running process (web, worker). Outside development it is returned even when
    it does not answer (the outage is logged); in development an embedded stand-in replaces it."""
    config = redis_config(where)
    ivr_env = ivr_env or config.get("IVR_ENV", "development")
    real = client(config, socket_timeout=socket_timeout)
    try:
        real.ping()
        return real
    except redis.RedisError as exc:
        if ivr_env != "development" or config.get("REDIS_SENTINELS"):
            # Outside development a missing Redis is an outage the operator must see, but the app
            # still starts: /voice/fallback and /health keep answering without it.
            if isinstance(exc, SentinelRefused):
                log.error("%s: %s; calls will get the fallback message", describe(config), exc)
            else:
                log.error("%s does not answer (%s); calls will get the fallback message", describe(config), exc)
            return real
        import fakeredis

        log.warning("=" * 72)
        log.warning("NO REDIS: %s (%s).", describe(config), exc)
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


def for_command(where: str | Mapping) -> redis.Redis:
    """The real Redis for a command people run (never the development stand-in: what a command stores
    there would be lost), or Unreachable. `where` is the config, or REDIS_URL (Sentinel then from the
    environment)."""
    config = redis_config(where)
    found = client(config, socket_timeout=5, connect_timeout=2)
    try:
        found.ping()
    except SentinelRefused as exc:
        raise Unreachable(f"cannot reach {describe(config)}: {exc}") from exc
    except redis.RedisError as exc:
        hint = "REDIS_SENTINELS and REDIS_SENTINEL_MASTER" if config.get("REDIS_SENTINELS") else "REDIS_URL"
        raise Unreachable(f"cannot reach {describe(config)}: it does not answer ({exc}); start it or set "
                          f"{hint}") from exc
    return found

# --- writes that must survive a failover ------------------------------------------------------------
# Written just before WAIT on the same connection: WAIT counts the replicas that have everything this
# connection wrote, and a pooled connection may not be the one that made the write itself. This later
# write is, in the master's one replication stream, after it: acknowledged, so is the write.
MARK_KEY = "ivr:replicated"
DEFAULT_WAIT_MS = 500
_REPLICA_CHECK_SECONDS = 30.0


class Replication:
    """Counts, for /health and /metrics, the writes no replica acknowledged in time (per process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.unacknowledged = 0
        self.last_unacknowledged: float | None = None   # time.time() of the last one
        self.last_what = ""
        self.replicas_seen: dict[int, tuple[float, bool]] = {}   # id(client) -> (checked at, any replica)

    def missed(self, what: str) -> None:
        with self.lock:
            self.unacknowledged += 1
            self.last_unacknowledged = time.time()
            self.last_what = what

    def snapshot(self) -> dict:
        with self.lock:
            ago = None if self.last_unacknowledged is None else round(time.time() - self.last_unacknowledged, 1)
            return {"unacknowledged_writes": self.unacknowledged, "last_unacknowledged_seconds_ago": ago,
                    "last_unacknowledged_kind": self.last_what or None}


REPLICATION = Replication()


def unacknowledged_writes() -> int:
    """How many durable writes of this process no replica acknowledged in time (a counter for /metrics)."""
    return REPLICATION.unacknowledged


def _expects_replica(client: redis.Redis) -> bool:
    """With Sentinel a replica is always expected; otherwise when the server had one at the last look
    (INFO, at most every 30 s per client: a single server has none to wait for)."""
    if isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool):
        return True
    now = time.monotonic()
    seen = REPLICATION.replicas_seen.get(id(client))
    if seen is None or now - seen[0] > _REPLICA_CHECK_SECONDS:
        try:
            any_replica = int(client.info("replication").get("connected_slaves", 0)) > 0
        except (redis.RedisError, AttributeError, ValueError):
            any_replica = False
        seen = REPLICATION.replicas_seen[id(client)] = (now, any_replica)
    return seen[1]


def replicated(client: redis.Redis, what: str, wait_ms: int | None = None) -> bool | None:
    """After a write callers rely on (a request whose reference they hear, a callback, a published
    prompt): wait up to `wait_ms` for one replica to have it. True when one has; None when there is no
    replica to wait for; False when none acknowledged in time: the write still stands on the master,
    and this is logged at error level and counted (`unacknowledged_writes`, /health). `what` names the
    kind of record, never its content."""
    if not _expects_replica(client):
        return None
    wait_ms = wait_ms or getattr(client, "ivr_wait_ms", DEFAULT_WAIT_MS)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.set(MARK_KEY, "1", px=60_000)
        pipe.execute_command("WAIT", 1, int(wait_ms))
        acked = int(pipe.execute()[1])
    except redis.ResponseError:     # a server without WAIT (the development stand-in)
        return None
    except redis.RedisError as exc:
        acked, detail = 0, f" ({type(exc).__name__})"
    else:
        detail = ""
    if acked >= 1:
        return True
    REPLICATION.missed(what)
    log.error("write not replicated: %s written to the Redis master, but no replica acknowledged it within %d ms%s; "
              "it would be lost if the master failed now (%d such writes since start)",
              what, wait_ms, detail, REPLICATION.unacknowledged)
    return False


class Durable:
    """Makes a write callers are told about (a reference they hear) durable before they hear it: waits for
    this Redis to fsync its AOF (WAITAOF), then for one replica where there are replicas (`replicated`).
    One per store: it remembers whether the server can confirm fsyncs at all."""

    def __init__(self, client: redis.Redis, what: str) -> None:
        self.client = client
        self.what = what                     # the kind of record, for the log: never its content
        self.waitaof: bool | None = None     # None: not tried yet

    def __call__(self) -> None:
        self._fsync()
        replicated(self.client, self.what)

    def _fsync(self) -> None:
        if self.waitaof is False:
            return
        try:
            # After a write of its own on the same connection: WAITAOF counts what that connection wrote,
            # and a pooled connection need not be the one the record was written on (MARK_KEY).
            pipe = self.client.pipeline(transaction=False)
            pipe.set(MARK_KEY, "1", px=60_000)
            pipe.execute_command("WAITAOF", 1, 0, 2000)
            local, _ = pipe.execute()[1]
        except redis.ResponseError as exc:
            # Redis < 7.2 has no WAITAOF, and it refuses one when AOF is off: durability then rests on
            # the server's appendfsync setting.
            self.waitaof = False
            if not _WARNED_NO_WAITAOF:
                _WARNED_NO_WAITAOF.append(True)
                log.warning("cannot confirm AOF fsync (%s); relying on the server's appendfsync setting", exc)
            return
        self.waitaof = True
        if not local:
            log.error("Redis did not confirm the fsync of a %s within 2 s", self.what)


_WARNED_NO_WAITAOF: list[bool] = []     # warned once per process


class Reloader:
    """This process's copy of something staff change in Redis (closures, edited hours, published prompts),
    loaded again only when the revision read with each call's state changes. Threads of one worker may see
    a new revision at once: one loads (an older snapshot never lands last); if Redis fails, the copy
    loaded before stays and the next webhook tries again."""

    def __init__(self, load: Callable[[Hashable], None], what: str) -> None:
        self.load = load          # load(key): reads Redis and replaces the copy (RedisError: nothing replaced)
        self.what = what          # for the log: "the closures"
        self.seen: Hashable = None
        self._lock = threading.Lock()

    def refresh(self, key: Hashable) -> None:
        if key == self.seen:
            return
        with self._lock:
            if key == self.seen:
                return
            try:
                self.load(key)
            except redis.RedisError as exc:
                log.error("cannot load %s: %s", self.what, exc)
                return
            self.seen = key
