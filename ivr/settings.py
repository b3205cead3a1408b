"""Configuration from the environment (CONTRACT.md), with development defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_AUTH_TOKEN = "dev-twilio-auth-token"
DEV_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_SECRET_KEY = "dev-ivr-secret-key-not-for-production"


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
        if validate == "0":
            raise ConfigError("IVR_VALIDATE_SIGNATURES=0 is refused when IVR_ENV=production")
        for name in ("TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "SDU_BASE_URL", "SDU_API_KEY",
                     "IVR_SECRET_KEY"):
            if not env.get(name):
                raise ConfigError(f"{name} must be set when IVR_ENV=production")
        if not env.get("PUBLIC_BASE_URL", "").startswith("https://"):
            # Behind a TLS proxy Flask sees http://, Twilio signs https://: every webhook would be 403.
            raise ConfigError("PUBLIC_BASE_URL must be the public https:// origin when IVR_ENV=production")
    return {
        "IVR_ENV": ivr_env,
        "REDIS_URL": env.get("REDIS_URL", "redis://localhost:6379/0"),
        "SDU_BASE_URL": env.get("SDU_BASE_URL", ""),
        "SDU_API_KEY": env.get("SDU_API_KEY", ""),
        "TWILIO_ACCOUNT_SID": env.get("TWILIO_ACCOUNT_SID", DEV_ACCOUNT_SID),
        "TWILIO_AUTH_TOKEN": env.get("TWILIO_AUTH_TOKEN", DEV_AUTH_TOKEN),
        "PUBLIC_BASE_URL": env.get("PUBLIC_BASE_URL", "").rstrip("/"),
        "VALIDATE_SIGNATURES": validate == "1",
        "IVR_SECRET_KEY": env.get("IVR_SECRET_KEY", DEV_SECRET_KEY),
        "CONFIG_DIR": Path(env.get("IVR_CONFIG_DIR", ROOT / "config")),
        "PROMPTS_DIR": Path(env.get("IVR_PROMPTS_DIR", ROOT / "prompts")),
        "DATA_DIR": Path(env.get("IVR_DATA_DIR", ROOT / "var")),
        "CALL_TTL": int(env.get("IVR_CALL_TTL", "14400")),
        "MAX_WEBHOOK_BYTES": _webhook_limit(env, "IVR_MAX_WEBHOOK_BYTES", 65536, at_least=8192),
        "MAX_WEBHOOK_FIELDS": _webhook_limit(env, "IVR_MAX_WEBHOOK_FIELDS", 200, at_least=50),
        "TWILIO_AUTH_TOKEN_PREVIOUS": _previous_token(env, ivr_env),
    }


def _webhook_limit(env: Mapping[str, str], name: str, default: int, at_least: int) -> int:
    """A request limit (ivr/limits.py). Twilio's webhooks are 1-8 KB of 30-45 fields; a limit below
    `at_least` would refuse Twilio's own requests."""
    raw = env.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < at_least:
        raise ConfigError(f"{name} must be at least {at_least} (Twilio's own requests would be refused)")
    return value


def _previous_token(env: Mapping[str, str], ivr_env: str) -> str:
    """The auth token Twilio may still sign with while a new one is rolled out (ivr/signature.py)."""
    token = env.get("IVR_TWILIO_AUTH_TOKEN_PREVIOUS", "")
    if ivr_env == "production" and token == DEV_AUTH_TOKEN:
        raise ConfigError("IVR_TWILIO_AUTH_TOKEN_PREVIOUS is the development token: refused when IVR_ENV=production")
    return token
