"""The WSGI factory: `ivr.app:create_app()` (docs/interface.md). Everything is loaded and checked here, once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

import redis
import yaml
from flask import Flask
from twilio.twiml.voice_response import VoiceResponse

from ivr import settings, store
from ivr.callflow import calllog, flow
from ivr.callflow.callstate import CallStore
from ivr.callflow.engine import Engine
from ivr.callflow.prompts import Prompts
from ivr.callflow.speech import say_phone
from ivr.domain import closures, hours_edits
from ivr.domain.callbacks import CallbackStore
from ivr.domain.callbacks import load_settings as load_callback_settings
from ivr.domain.directory import Directory, DirectoryError, parse_phone
from ivr.domain.facilities import load_facilities
from ivr.domain.hours import Hours
from ivr.domain.payline import load_settings
from ivr.domain.published import REV, Library
from ivr.domain.requests import RequestStore
from ivr.domain.staffdb import StaffDB, pepper_for
from ivr.domain.texts import SmsConfig, TextStore
from ivr.jobs import queue
from ivr.lines import load_all, offices, staff
from ivr.sdu.client import client_from_env
from ivr.sealing import Sealer
from ivr.services import Services
from ivr.web import audio, callnow, limits, metrics, signature, sms, webhooks
from ivr.web.health import HealthCache
from ivr.web.mirror import Mirror

log = logging.getLogger("ivr")
DEV_SDU_URL = "http://127.0.0.1:5001"
HEALTH_PROBE_SECONDS = 1.0


class Runtime:
    """Everything a webhook needs, built once per process."""

    def __init__(self, config: Mapping, clock: Callable[[], datetime] | None = None, redis_client=None):
        cfg_dir: Path = config["CONFIG_DIR"]
        self.config = config
        self.lines_cfg = load_lines(cfg_dir / "lines.yaml")
        self.numbers = {line["number"]: name for name, line in self.lines_cfg["lines"].items()}
        self.prompts = Prompts.load(config["PROMPTS_DIR"], cfg_dir / "lines.yaml")
        languages = self.prompts.languages
        check_agents_name(self.lines_cfg, cfg_dir / "lines.yaml", languages)
        self.directory = Directory.load(cfg_dir, languages)
        self.hours = Hours.load(cfg_dir / "hours.yaml", clock=clock, languages=languages)
        handlers = load_all()
        self.flows = flow.load(cfg_dir / "flows", self.prompts, handlers, self.directory.offices)
        missing = set(self.lines_cfg["lines"]) - set(self.flows.lines)
        if missing:
            raise flow.FlowError(f"{cfg_dir / 'lines.yaml'}: no flow file for line(s) {sorted(missing)}")
        self.redis = redis_client if redis_client is not None else store.connect(config)
        self.store = CallStore(self.redis, config["CALL_TTL"], config.get("ANALYTICS_MAX_EVENTS", 2_000_000))
        self.sealer = Sealer.from_config(config)
        self._tags: dict[str, str] = {}     # CallSid -> its analytics name (call_tag)
        library = Library(self.redis)
        callback_settings = load_callback_settings(cfg_dir / "callbacks.yaml")
        self.services = Services(
            config=config, prompts=self.prompts, directory=self.directory, hours=self.hours,
            lines=self.lines_cfg, redis=self.redis, sealer=self.sealer, sdu=client_from_env(config),
            facilities=load_facilities(cfg_dir / "facilities.yaml"),
            requests=RequestStore(self.redis, self.sealer, clock=self.hours.now),
            payments=load_settings(cfg_dir / "flows" / "payments.yaml", self.prompts.languages),
            library=library, published=Mirror(library, self.prompts, self.hours.now),
            staffdb=StaffDB(self.redis, pepper_for(config)),
            callbacks=CallbackStore(self.redis, self.sealer, self.hours, callback_settings, clock=self.hours.now),
            callback_settings=callback_settings,
            texts=TextStore(self.redis, self.sealer, clock=self.hours.now),
            sms=sms_config(config),
            closures=closures.Closures(self.redis, self.hours.now),
            hours_edits=hours_edits.HoursEdits(self.redis, self.hours))
        if self.services.sdu is not None:
            self.services.sdu.observer = _sdu_observer
        staff.check_flows(self.flows)
        offices.check_flows(self.flows, self.directory.offices)
        self.engine = Engine(self.flows, self.services, handlers)
        self.health = HealthCache({"redis": self._redis_ok, "sdu": self._sdu_ok},
                                  ttl=float(config.get("HEALTH_TTL", 5.0)))
        # Read in the same round trip as each call's state: the revisions of the published prompts, the
        # closures and the hours edited in the console.
        self.extra_keys: tuple[str, ...] = (REV, closures.REV, hours_edits.REV)
        # What /metrics reads of the job queue (the web layer knows no jobs: ivr/web/metrics.py).
        self.queue_keys = {"jobs": queue.STREAM, "dead": queue.DEAD, "heartbeat": queue.HEARTBEAT}

    def call_tag(self, sid: str) -> str:
        """The name a call has in analytics: a keyed hash of its CallSid (the CallSid is never kept).
        Kept for the process's recent calls: their next webhooks come here too, half the time or more."""
        tag = self._tags.get(sid)
        if tag is None:
            if len(self._tags) >= 4096:
                self._tags.clear()
            tag = self._tags[sid] = self.sealer.tag("call:" + sid)[:16]
        return tag

    def _redis_ok(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    def _sdu_ok(self) -> bool:
        sdu = self.services.sdu
        with sdu.budget_scope(HEALTH_PROBE_SECONDS):   # a stalled SDU holds one thread this long, no more
            return bool(sdu.health())

    def refresh(self, values: list) -> None:
        self.services.published.refresh(values[0])
        self.services.closures.refresh(values[1])
        self.services.hours_edits.refresh(values[2])

    def fallback_response(self) -> VoiceResponse:
        """What a caller hears when Redis (or anything else) is down: no state, no SDU needed."""
        response = VoiceResponse()
        number = self.lines_cfg["callback_number"]
        # Asked once: what is said and whether a person is dialed must agree, even at closing time.
        is_open = self.hours.is_open("agents")
        key = "sys.fallback_open" if is_open else "sys.fallback_closed"
        for lang in self.prompts.languages:
            voice = self.lines_cfg["voices"][lang]
            response.say(self.prompts.text(key, lang, number=say_phone(number, lang),
                                           hours=self.hours.describe(lang)),
                         voice=voice["voice"], language=voice["language"])
        if is_open:
            response.dial(self.lines_cfg["agents"]["phone"], timeout=self.lines_cfg["dial"]["timeout"])
        response.hangup()
        return response


def sms_config(config: Mapping) -> SmsConfig:
    """IVR_SMS_FROM checked at start-up (a wrong number would fail every text); the status callback URL
    needs the public origin (PUBLIC_BASE_URL): without it texts go without one."""
    sender = config.get("SMS_FROM") or ""
    if not sender:
        return SmsConfig()
    try:
        sender = parse_phone(sender, "IVR_SMS_FROM")
    except DirectoryError as exc:
        raise settings.ConfigError(str(exc)) from None
    base = config.get("PUBLIC_BASE_URL") or ""
    return SmsConfig(sender, f"{base}/sms/status" if base else "")


def _sdu_observer(op: str, ok: bool, breaker: str) -> None:
    """Each SDU lookup: counted in /metrics, and noted in the call's analytics events."""
    metrics.observe_sdu(op, ok, breaker)
    calllog.note("u", op, int(ok))


def load_lines(path: Path) -> dict:
    cfg = yaml.safe_load(path.read_text()) or {}
    for name, line in cfg.get("lines", {}).items():
        line["number"] = parse_phone(line["number"], f"{path}: line {name!r}")
    cfg["agents"]["phone"] = parse_phone(cfg["agents"]["phone"], f"{path}: agents")
    if cfg["agents"].get("tell"):
        cfg["agents"]["tell"] = parse_phone(cfg["agents"]["tell"], f"{path}: agents.tell")
    cfg["callback_number"] = parse_phone(cfg["callback_number"], f"{path}: callback_number")
    if cfg.get("default_line") not in cfg.get("lines", {}):
        raise flow.FlowError(f"{path}: default_line {cfg.get('default_line')!r} is not a line")
    return cfg


def check_agents_name(cfg: Mapping, path: Path, languages: Mapping) -> None:
    """The agents' name is said in every language (a transfer to them names them)."""
    names = (cfg.get("agents") or {}).get("name")
    missing = [lang for lang in languages if not isinstance(names, Mapping) or not names.get(lang)]
    if missing:
        raise flow.FlowError(f"{path}: agents.name must be given in {' and '.join(languages)} "
                             f"(missing: {', '.join(missing)})")


def create_app(overrides: Mapping | None = None, *, clock: Callable[[], datetime] | None = None,
               redis_client=None) -> Flask:
    config = settings.from_env()
    config.update(overrides or {})
    if config["IVR_ENV"] == "production" and not config["VALIDATE_SIGNATURES"]:
        raise settings.ConfigError("signature validation cannot be turned off when IVR_ENV=production")
    if config["IVR_ENV"] == "development" and not config["SDU_BASE_URL"]:
        config["SDU_BASE_URL"] = DEV_SDU_URL
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config.update(config)
    # In this order: a request without a signature is refused before its body is read; a body beyond the
    # limits before it is parsed (ivr/web/limits.py).
    signature.install(app)
    limits.install(app)
    app.extensions["ivr"] = Runtime(config, clock=clock, redis_client=redis_client)
    store.check_persistence(app.extensions["ivr"].redis, config)
    # IVR_SERVE: "all" (default), "webhooks" (the public host) or "console" (an internal host): the same
    # code, so an operator can keep the console off the host Twilio reaches.
    serve = config.get("SERVE", "all")
    if serve in ("all", "webhooks"):
        app.register_blueprint(webhooks.bp)
        app.register_blueprint(audio.bp)
        app.register_blueprint(sms.bp)
        app.register_blueprint(callnow.bp)
    else:
        app.add_url_rule("/health", "health", webhooks.health)    # the load balancer's, on every host
    if serve in ("all", "console"):
        from ivr.web import console
        console.install(app)
    app.register_blueprint(metrics.bp)      # its own allowlist (IVR_METRICS_ALLOW), on every host
    return app
