"""Configuration from the environment (docs/interface.md), with development defaults that production refuses."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEV_AUTH_TOKEN = "dev-twilio-auth-token"
DEV_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_SECRET_KEY = "dev-ivr-secret-key-not-for-production"
DEV_SDU_KEY = "dev-sdu-key"          # the stub's key (ivr/sdu/client.py DEV_API_KEY)
MIN_SECRET_LENGTH = 32

ACCOUNT_SID_RE = re.compile(r"^AC[0-9a-f]{32}$")
AUTH_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")

log = logging.getLogger("ivr.settings")


class ConfigError(RuntimeError):
    """The environment asks for something the system refuses to run with."""


def from_env(environ: Mapping[str, str] | None = None) -> dict:
    env = dict(os.environ if environ is None else environ)
    ivr_env = env.get("IVR_ENV", "development")
    if ivr_env not in ("development", "test", "production"):
        raise ConfigError(f"IVR_ENV must be development, test or production, not {ivr_env!r}")
    validate = env.get("IVR_VALIDATE_SIGNATURES", "1")
    if validate not in ("0", "1"):
        raise ConfigError("IVR_VALIDATE_SIGNATURES must be 1 or 0")
    if ivr_env == "production":
        check_production(env)
    elif env.get("DATA_DIR") and not env.get("IVR_DATA_DIR"):
        log.warning("DATA_DIR is not read: set IVR_DATA_DIR (recordings go to %s)", ROOT / "var")
    return {
        "IVR_ENV": ivr_env,
        # Stated, not defaulted: only an explicit IVR_ENV=development may listen beyond loopback.
        "IVR_ENV_EXPLICIT": "IVR_ENV" in env,
        "REDIS_URL": env.get("REDIS_URL", "redis://localhost:6379/0"),
        **redis_settings(env),
        "SDU_BASE_URL": env.get("SDU_BASE_URL", ""),
        "SDU_API_KEY": env.get("SDU_API_KEY", ""),
        # SDU lookups waiting at once per web process, beyond which a lookup fails fast to the SDU-down
        # path: the web line's threads a slow SDU can hold (2 of each worker's 4), bench/RESULTS.md.
        "SDU_MAX_CONCURRENT": _number(env, "IVR_SDU_MAX_CONCURRENT", 2, 1, 64),
        "TWILIO_ACCOUNT_SID": env.get("TWILIO_ACCOUNT_SID", DEV_ACCOUNT_SID),
        "TWILIO_AUTH_TOKEN": env.get("TWILIO_AUTH_TOKEN", DEV_AUTH_TOKEN),
        "PUBLIC_BASE_URL": env.get("PUBLIC_BASE_URL", "").rstrip("/"),
        "VALIDATE_SIGNATURES": validate == "1",
        "IVR_SECRET_KEY": env.get("IVR_SECRET_KEY", DEV_SECRET_KEY),
        # Still opens what was sealed before a key rotation, until `ivr requests reseal` has rewritten it.
        "IVR_SECRET_KEY_PREVIOUS": env.get("IVR_SECRET_KEY_PREVIOUS", ""),
        "CONFIG_DIR": Path(env.get("IVR_CONFIG_DIR", ROOT / "config")),
        "PROMPTS_DIR": Path(env.get("IVR_PROMPTS_DIR", ROOT / "prompts")),
        "DATA_DIR": Path(env.get("IVR_DATA_DIR", ROOT / "var")),
        "CALL_TTL": int(env.get("IVR_CALL_TTL", "14400")),
        **retention_days(env),
        # "" derives the staff PIN pepper from IVR_SECRET_KEY (ivr/domain/staffdb.py).
        "IVR_PIN_PEPPER": env.get("IVR_PIN_PEPPER", ""),
        "ALLOW_NO_PERSISTENCE": _flag(env, "IVR_ALLOW_NO_PERSISTENCE", "0"),
        "MAX_WEBHOOK_BYTES": _webhook_limit(env, "IVR_MAX_WEBHOOK_BYTES", 65536, at_least=8192),
        "MAX_WEBHOOK_FIELDS": _webhook_limit(env, "IVR_MAX_WEBHOOK_FIELDS", 200, at_least=50),
        # The auth token Twilio may still sign with while a new one is rolled out (ivr/web/signature.py).
        "TWILIO_AUTH_TOKEN_PREVIOUS": env.get("IVR_TWILIO_AUTH_TOKEN_PREVIOUS", "").strip(),
        # The messaging number texts are sent from (E.164, registered for texting: toll-free verification
        # or 10DLC). Unset: no text is ever offered.
        "SMS_FROM": env.get("IVR_SMS_FROM", "").strip(),
        # Call analytics (ivr/domain/callstats.py): raw events kept this many days, hourly figures this
        # many months; the event stream is capped near this many entries whatever the worker does.
        "ANALYTICS_RAW_DAYS": _whole(env, "IVR_ANALYTICS_RAW_DAYS", 30, at_least=1),
        "ANALYTICS_KEEP_MONTHS": _whole(env, "IVR_ANALYTICS_KEEP_MONTHS", 25, at_least=1),
        "ANALYTICS_MAX_EVENTS": _whole(env, "IVR_ANALYTICS_MAX_EVENTS", 2_000_000, at_least=10_000),
        "METRICS_ALLOW": metrics_allow(env.get("IVR_METRICS_ALLOW", "")),
        **console_settings(env),
    }


SERVE_CHOICES = ("all", "webhooks", "console")


def console_settings(env: Mapping[str, str]) -> dict:
    """The staff console's settings (ivr/web/console/): what this process serves, the password pepper,
    the idle timeout, the proxies in front (for the sign-in throttle's client address), and (development
    over plain http only) cookies without the Secure flag."""
    serve = env.get("IVR_SERVE", "all").strip() or "all"
    if serve not in SERVE_CHOICES:
        raise ConfigError(f"IVR_SERVE must be {', '.join(SERVE_CHOICES)}, not {serve!r}")
    raw = env.get("IVR_CONSOLE_IDLE_MINUTES", "15").strip() or "15"
    if not raw.isdigit() or not 1 <= int(raw) <= 480:
        raise ConfigError(f"IVR_CONSOLE_IDLE_MINUTES must be a whole number of minutes from 1 to 480, not {raw!r}")
    insecure = _flag(env, "IVR_CONSOLE_INSECURE_COOKIE", "0")
    hops = env.get("IVR_CONSOLE_PROXY_HOPS", "0").strip() or "0"
    if not hops.isdigit() or int(hops) > 5:
        raise ConfigError(f"IVR_CONSOLE_PROXY_HOPS must be the number of proxies in front, 0 to 5, not {hops!r}")
    return {"SERVE": serve, "CONSOLE_IDLE_MINUTES": int(raw), "CONSOLE_COOKIE_SECURE": not insecure,
            "CONSOLE_PROXY_HOPS": int(hops),
            # "" derives the console password pepper from IVR_SECRET_KEY (ivr/domain/accounts.py).
            "IVR_PASSWORD_PEPPER": env.get("IVR_PASSWORD_PEPPER", "")}


def check_production(env: Mapping[str, str]) -> None:
    """Every reason this environment must not serve real calls, named together (values never echoed)."""
    problems: list[str] = []
    if env.get("IVR_VALIDATE_SIGNATURES", "1") == "0":
        problems.append("IVR_VALIDATE_SIGNATURES=0 is refused when IVR_ENV=production")
    for name in ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "SDU_BASE_URL", "SDU_API_KEY", "IVR_SECRET_KEY"):
        if not env.get(name, "").strip():
            problems.append(f"{name} must be set when IVR_ENV=production")
    development = {"TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN, "IVR_TWILIO_AUTH_TOKEN_PREVIOUS": DEV_AUTH_TOKEN,
                   "TWILIO_ACCOUNT_SID": DEV_ACCOUNT_SID,
                   "IVR_SECRET_KEY": DEV_SECRET_KEY, "IVR_SECRET_KEY_PREVIOUS": DEV_SECRET_KEY,
                   "SDU_API_KEY": DEV_SDU_KEY}
    for name, value in development.items():
        if env.get(name, "").strip() == value:
            problems.append(f"{name} is the development value (it is in the public source)")
    for name in ("TWILIO_AUTH_TOKEN", "IVR_TWILIO_AUTH_TOKEN_PREVIOUS"):
        token = env.get(name, "").strip()
        if token and token != DEV_AUTH_TOKEN and not AUTH_TOKEN_RE.match(token):
            problems.append(f"{name} must be Twilio's 32 hexadecimal characters (Console > Account Info)")
    sid = env.get("TWILIO_ACCOUNT_SID", "").strip()
    if sid and sid != DEV_ACCOUNT_SID and not ACCOUNT_SID_RE.match(sid):
        problems.append("TWILIO_ACCOUNT_SID must be AC followed by 32 hexadecimal characters")
    for name in ("IVR_SECRET_KEY", "IVR_SECRET_KEY_PREVIOUS"):
        secret = env.get(name, "")
        if not secret or secret == DEV_SECRET_KEY:
            continue
        if len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"{name} must be at least {MIN_SECRET_LENGTH} characters (e.g. `openssl rand -hex 32`)")
        elif len(set(secret)) == 1:
            problems.append(f"{name} must not be one character repeated")
    if not _is_origin(env.get("PUBLIC_BASE_URL", ""), "https"):
        # Behind a TLS proxy Flask sees http://, Twilio signs https://: every webhook would be 403.
        problems.append("PUBLIC_BASE_URL must be the public https:// origin (https://host[:port], no path) "
                        "when IVR_ENV=production")
    sdu = urlsplit(env.get("SDU_BASE_URL", "").strip())
    if env.get("SDU_BASE_URL", "").strip() and (sdu.scheme != "https" or not sdu.hostname):
        problems.append("SDU_BASE_URL must be an https:// URL when IVR_ENV=production (PINs go to it)")
    if env.get("IVR_CONSOLE_INSECURE_COOKIE", "0") != "0":
        problems.append("IVR_CONSOLE_INSECURE_COOKIE is refused when IVR_ENV=production (console sessions go "
                        "over https only)")
    for name in ("IVR_PIN_PEPPER", "IVR_PASSWORD_PEPPER"):
        pepper = env.get(name, "")
        if pepper and len(pepper) < MIN_SECRET_LENGTH:
            problems.append(f"{name} must be at least {MIN_SECRET_LENGTH} characters when IVR_ENV=production")
    if env.get("DATA_DIR") and not env.get("IVR_DATA_DIR"):
        problems.append("DATA_DIR is not read: set IVR_DATA_DIR to the shared volume for recordings")
    if problems:
        raise ConfigError("refusing to start with IVR_ENV=production:\n  - " + "\n  - ".join(problems))


def _is_origin(url: str, scheme: str) -> bool:
    try:
        parts = urlsplit(url.strip().rstrip("/"))
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    return (parts.scheme == scheme and bool(parts.hostname) and not parts.path and not parts.query
            and not parts.fragment and parts.username is None and parts.password is None)


def is_loopback(host: str) -> bool:
    """Whether a listening address is reachable only from this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(config: Mapping, hosts: list[str]) -> None:
    """Development keys on a public address would let anyone sign as Twilio: only when stated outright."""
    if config["IVR_ENV"] != "development" or config.get("IVR_ENV_EXPLICIT"):
        return
    public = [h for h in hosts if not is_loopback(h)]
    if public:
        raise ConfigError(
            f"refusing to listen on {', '.join(public)} with development secrets: IVR_ENV is not set. "
            "Set IVR_ENV=production (with its secrets) for a real deploy, or IVR_ENV=development to "
            "serve development on this address anyway.")


def redis_settings(env: Mapping[str, str]) -> dict:
    """Sentinel (docs/interface.md) and how long a write that must survive a failover waits for a replica.
    A mistyped Sentinel list would leave every process on a master that is no longer one: refused."""
    raw = env.get("REDIS_SENTINELS", "").strip()
    master = env.get("REDIS_SENTINEL_MASTER", "").strip()
    url = env.get("REDIS_URL", "redis://localhost:6379/0")
    sentinels: list[tuple[str, int]] = []
    if raw or master:
        if not raw or not master:
            raise ConfigError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER go together: set both (the Sentinels' "
                              "host:port list and the master's name) or neither")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", master):
            raise ConfigError("REDIS_SENTINEL_MASTER must be the master's name as in sentinel.conf "
                              "(letters, digits, '.', '_', '-'), not " + repr(master[:40]))
        for item in raw.split(","):
            sentinels.append(_host_port(item.strip(), "REDIS_SENTINELS"))
    auth = sentinel_auth(env, bool(sentinels))
    try:
        db = redis_db(url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL is not a Redis URL ({exc})") from None
    return {"REDIS_SENTINELS": tuple(sentinels), "REDIS_SENTINEL_MASTER": master, "REDIS_DB": db, **auth,
            # A write callers are told about (a request's reference) waits this long for one replica.
            "REDIS_WAIT_MS": _number(env, "IVR_REDIS_WAIT_MS", 500, 10, 10_000),
            # With Sentinel: how long a command keeps trying while a new master is chosen.
            "REDIS_FAILOVER_SECONDS": _number(env, "IVR_REDIS_FAILOVER_SECONDS", 6, 0, 15)}


def sentinel_auth(env: Mapping[str, str], with_sentinels: bool) -> dict:
    """What the Sentinels themselves ask for (their `requirepass`, or an ACL user); the master's own password
    stays in REDIS_URL. Values are never echoed: a message names the variable only."""
    password = env.get("REDIS_SENTINEL_PASSWORD", "")
    username = env.get("REDIS_SENTINEL_USERNAME", "")
    for name, value in (("REDIS_SENTINEL_PASSWORD", password), ("REDIS_SENTINEL_USERNAME", username)):
        if value and not with_sentinels:
            raise ConfigError(f"{name} is set but REDIS_SENTINELS is not: set REDIS_SENTINELS and "
                              "REDIS_SENTINEL_MASTER too, or leave it unset")
        if value != value.strip():
            # A secret file's trailing newline would otherwise be a wrong password with no visible cause.
            raise ConfigError(f"{name} begins or ends with a space or a line break: remove it")
    if username and not password:
        raise ConfigError("REDIS_SENTINEL_USERNAME needs REDIS_SENTINEL_PASSWORD: an ACL user signs in with both")
    return {"REDIS_SENTINEL_PASSWORD": password, "REDIS_SENTINEL_USERNAME": username}


def redis_db(url: str) -> int:
    """The database number of a Redis URL (`/3` or `?db=3`), ValueError when it is not one."""
    import redis.connection

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("it must start with redis://, rediss:// or unix://")
    return int(redis.connection.parse_url(url).get("db", 0) or 0)


def _host_port(item: str, name: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in host):
        raise ConfigError(f"{name} must be comma-separated host:port pairs (e.g. "
                          f"10.0.0.5:26379,10.0.0.6:26379), not {item[:60]!r}")
    return host, int(port)


def _number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


# Days each kind is kept (ivr/jobs/retention.py); the defaults are in the README.
RETENTION_DEFAULTS = {"REQUESTS": 1095, "RECORDINGS": 365, "PROMPT_AUDIO": 180, "DEAD_LETTERS": 90,
                      "CALLBACKS": 365, "TEXTS": 1460}


def retention_days(env: Mapping[str, str]) -> dict[str, int]:
    """`IVR_RETAIN_<KIND>_DAYS` -> {"RETAIN_<KIND>_DAYS": days}; a purge on a mistyped value could
    delete what must be kept, so anything but a whole number of days, 1 or more, is refused."""
    out = {}
    for kind, default in RETENTION_DEFAULTS.items():
        name = f"IVR_RETAIN_{kind}_DAYS"
        raw = env.get(name, "").strip() or str(default)
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{name} must be a whole number of days, 1 or more (not {raw!r})")
        out[f"RETAIN_{kind}_DAYS"] = int(raw)
    return out


def metrics_allow(raw: str) -> tuple:
    """IVR_METRICS_ALLOW: the networks (comma-separated CIDRs or addresses) that may read /metrics;
    loopback when unset."""
    out = []
    for part in (raw.strip() or "127.0.0.0/8,::1/128").split(","):
        if not part.strip():
            continue
        try:
            out.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"IVR_METRICS_ALLOW: {part.strip()[:60]!r} is not an address or a CIDR "
                              "(e.g. 10.0.0.0/8)") from None
    return tuple(out)


def _whole(env: Mapping[str, str], name: str, default: int, at_least: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < at_least:
        raise ConfigError(f"{name} must be a whole number, {at_least} or more (not {raw[:20]!r})")
    return int(raw)


def _flag(env: Mapping[str, str], name: str, default: str) -> bool:
    value = env.get(name, default)
    if value not in ("0", "1"):
        raise ConfigError(f"{name} must be 1 or 0, not {value!r}")
    return value == "1"


def _webhook_limit(env: Mapping[str, str], name: str, default: int, at_least: int) -> int:
    """A request limit (ivr/web/limits.py). Twilio's webhooks are 1-8 KB of 30-45 fields; a limit below
    `at_least` would refuse Twilio's own requests."""
    raw = env.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < at_least:
        raise ConfigError(f"{name} must be at least {at_least} (Twilio's own requests would be refused)")
    return value
