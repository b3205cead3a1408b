"""Text messages a caller asked for (an office's details, a callback's reference): consent, opt-outs, delivery.

A webhook only records the caller's consent and queues the text (`TextStore.consent`); the worker sends
it through Twilio's Messages API (ivr/jobs/callbacks.py `send_text`), so no caller waits on Twilio.

Redis layout:
  ivr:sms:{id}              hash: one text. The number is kept only sealed; the body is not kept at all
                            (it is made again from `kind`, `office` or `ref`, and `lang`). Fields: kind
                            (office|callback), lang, office, ref, sid (the call), consent_at, status
                            (queued, sent, delivered, undelivered, failed, not sent), error, message_sid.
  ivr:sms:call:{sid}:{what} the text a call asked for (one per office or callback): replay-safe.
  ivr:sms:msg:{MessageSid}  the text Twilio's status callback is about.
  ivr:sms:stop:{tag}        the number replied STOP (when): nothing is ever sent to it until START.
  ivr:sms:landline:{tag}    Twilio refused a text to it as a landline (error 30006): never tried again.

Retention (ivr/jobs/retention.py) deletes a text's record (and its message index) once it has not changed
for IVR_RETAIN_TEXTS_DAYS. The STOP and landline markers are kept: they hold no number, only its tag, and
they are what keeps a number that opted out from ever being texted again.

What a text may say is fixed by its template (prompts/<lang>/sms/texts.yaml): an office's name, phone,
address and hours, or a callback's reference and when to expect the call. Never a case number, PIN,
inmate number or payment figure: no template has a field for one.
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis
import yaml

from ivr.domain.callbacks import CallbackStore
from ivr.sealing import Sealer

log = logging.getLogger("ivr.texts")

PREFIX = "ivr:sms:"
BY_CALL = PREFIX + "call:{sid}:{what}"
BY_MESSAGE = PREFIX + "msg:{message_sid}"
STOP = PREFIX + "stop:{tag}"
LANDLINE = PREFIX + "landline:{tag}"
BY_CALL_TTL = 24 * 3600
BY_MESSAGE_TTL = 30 * 24 * 3600
TEXT_JOB = "sms.send"
KINDS = ("office", "callback")
LANDLINE_ERROR = "30006"
# Twilio's default opt-out and opt-in keywords (Messaging: "Advanced Opt-Out"), and their Spanish.
STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke", "parar", "alto"}
START_WORDS = {"start", "yes", "unstop", "subscribe", "optin", "iniciar"}
TEMPLATE_FIELDS = {"office": {"office", "phone", "address", "hours"}, "callback": {"ref", "when"},
                   "when.morning": {"day"}, "when.afternoon": {"day"}}
STATUSES = ("queued", "sent", "delivered", "undelivered", "failed", "not sent")
ID_RE = re.compile(r"[0-9a-f]{16}")


class TextError(RuntimeError):
    pass


def load_templates(prompts_dir: Path, languages: Mapping[str, object]) -> dict[str, dict[str, str]]:
    """prompts/<lang>/sms/texts.yaml of every language, checked: the same ids, each with only its own
    fields (TEMPLATE_FIELDS), so no template can carry anything else into a text."""
    out: dict[str, dict[str, str]] = {}
    for lang in languages:
        path = prompts_dir / lang / "sms" / "texts.yaml"
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TextError(f"{path}: cannot read the text message templates: {exc}") from exc
        if set(doc) != set(TEMPLATE_FIELDS):
            raise TextError(f"{path}: needs exactly {', '.join(sorted(TEMPLATE_FIELDS))}")
        for tid, text in doc.items():
            fields = {f for _, f, _, _ in string.Formatter().parse(str(text)) if f}
            if fields != TEMPLATE_FIELDS[tid]:
                raise TextError(f"{path}: {tid} must use the fields {sorted(TEMPLATE_FIELDS[tid])}, "
                                f"not {sorted(fields)}")
        out[lang] = {str(k): " ".join(str(v).split()) for k, v in doc.items()}
    return out


@dataclass(frozen=True)
class SmsConfig:
    """IVR_SMS_FROM: the messaging number texts are sent from; unset: texts are not offered at all."""
    sender: str = ""
    status_url: str = ""     # absolute URL of /sms/status ("" without PUBLIC_BASE_URL: no status callback)

    @property
    def enabled(self) -> bool:
        return bool(self.sender)


def keyword(body: str) -> str | None:
    """"stop" / "start" for an opt-out or opt-in reply (the first word, as Twilio reads it); else None."""
    words = re.findall(r"[a-záéíóúñ]+", (body or "").strip().lower())
    if not words or len(words) > 2:
        return None
    if words[0] in STOP_WORDS:
        return "stop"
    if words[0] in START_WORDS:
        return "start"
    return None


class TextStore:
    def __init__(self, client: redis.Redis, sealer: Sealer, clock: Callable[[], datetime] | None = None) -> None:
        self.redis = client
        self.sealer = sealer
        self.clock = clock or (lambda: datetime.now(UTC))

    def tag(self, e164: str) -> str:
        return self.sealer.tag("sms:" + e164)

    def may_text(self, e164: str) -> bool:
        """Not stopped, and not found to be a landline."""
        tag = self.tag(e164)
        return not any(self.redis.mget(STOP.format(tag=tag), LANDLINE.format(tag=tag)))

    def consent(self, sid: str, number: str, *, kind: str, lang: str, office: str = "", ref: str = "",
                queue: Callable | None = None) -> tuple[str, bool]:
        """The caller pressed the key to get a text: record their consent with its time and queue the text,
        in one transaction; (text id, new). The same call asking again for the same thing (a Twilio retry)
        queues nothing more."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        what = f"{kind}:{office or ref}"
        by_call = BY_CALL.format(sid=sid, what=what)
        for _ in range(20):
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(by_call)
                    existing = pipe.get(by_call)
                    if existing:
                        return existing.decode(), False
                    tid = secrets.token_hex(8)
                    now = self._now()
                    pipe.multi()
                    pipe.hset(PREFIX + tid, mapping={
                        "id": tid, "kind": kind, "lang": lang, "office": office, "ref": ref, "sid": sid,
                        "number": self.sealer.seal(number), "tag": self.tag(number), "consent_at": now,
                        "status": "queued", "updated": now})
                    pipe.set(by_call, tid, ex=BY_CALL_TTL)
                    if queue is not None:
                        queue(pipe, TEXT_JOB, {"id": tid})
                    pipe.execute()
            except redis.WatchError:
                continue
            return tid, True
        raise RuntimeError("could not record the text")

    def get(self, tid: str) -> dict[str, str] | None:
        data = self.redis.hgetall(PREFIX + tid) if re.fullmatch(r"[0-9a-f]{16}", tid or "") else {}
        if not data:
            return None
        out = {k.decode(): v.decode() for k, v in data.items()}
        out["number"] = self.sealer.unseal(out.get("number", "")) or ""
        return out

    def set_status(self, tid: str, status: str, error: str = "", message_sid: str = "") -> None:
        values = {"status": status, "error": error[:300], "updated": self._now()}
        pipe = self.redis.pipeline()
        if message_sid:
            values["message_sid"] = message_sid
            pipe.set(BY_MESSAGE.format(message_sid=message_sid), tid, ex=BY_MESSAGE_TTL)
        pipe.hset(PREFIX + tid, mapping=values)
        pipe.execute()

    def by_message(self, message_sid: str) -> str | None:
        tid = self.redis.get(BY_MESSAGE.format(message_sid=message_sid[:64]))
        return tid.decode() if tid else None

    def landline(self, tag: str) -> None:
        """Twilio said 30006: this number is never texted again."""
        self.redis.set(LANDLINE.format(tag=tag), self._now())

    def opt(self, e164: str, word: str) -> None:
        """STOP or START from the number (the inbound-SMS webhook)."""
        key = STOP.format(tag=self.tag(e164))
        if word == "stop":
            self.redis.set(key, self._now())
        else:
            self.redis.delete(key)

    # --- retention (ivr/jobs/retention.py) ------------------------------------------------------
    def retention_view(self) -> Iterator[tuple[str, str]]:
        """(id, last change) of every text, found by SCAN (texts have no index; the records of older
        versions neither)."""
        tids = [tid for key in self.redis.scan_iter(match=PREFIX + "?" * 16, count=1000)
                if ID_RE.fullmatch(tid := key.decode()[len(PREFIX):])]
        for start in range(0, len(tids), 1000):
            batch = tids[start:start + 1000]
            pipe = self.redis.pipeline(transaction=False)
            for tid in batch:
                pipe.hmget(PREFIX + tid, "updated", "consent_at")
            for tid, (changed, consent) in zip(batch, pipe.execute(), strict=True):
                yield tid, (changed or consent or b"").decode()

    def delete(self, tid: str, before: datetime) -> bool:
        """Delete text `tid` if it has not changed since before `before` (a status arriving meanwhile keeps
        it), with its message index: whether it was deleted now."""
        key = PREFIX + tid
        for _ in range(20):
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(key)
                    changed, consent, message_sid = pipe.hmget(key, "updated", "consent_at", "message_sid")
                    try:
                        at = datetime.fromisoformat((changed or consent or b"").decode())
                    except ValueError:
                        return False        # gone, or its time cannot be read: kept
                    if at > before:
                        return False
                    pipe.multi()
                    pipe.delete(key)
                    if message_sid:
                        index = BY_MESSAGE.format(message_sid=message_sid.decode())
                        pipe.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) "
                                  "end return 0", 1, index, tid)
                    pipe.execute()
                    return True
            except redis.WatchError:
                continue
        return False

    def _now(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds")


def record_on_callback(callbacks: CallbackStore, text: Mapping[str, str], action: str, detail: str = "",
                       **fields: str) -> None:
    """What became of a callback's text, on the callback too (staff see it in `ivr callbacks show`)."""
    if text.get("kind") == "callback" and text.get("ref") and callbacks.raw(text["ref"]) is not None:
        callbacks.update(text["ref"], action, by="worker", detail=detail, **fields)


def text_status(texts: TextStore, callbacks: CallbackStore, message_sid: str, status: str, error: str) -> None:
    """Twilio's status callback for a text we sent (POST /sms/status): recorded; 30006 (a landline) marks
    the number so no text is ever tried on it again."""
    tid = texts.by_message(message_sid)
    text = texts.get(tid) if tid else None
    if text is None:
        return
    status = status if status in ("queued", "sending", "sent", "delivered", "undelivered", "failed") else "sent"
    reason = f"Twilio error {error}" + (" (a landline: not retried)" if error == LANDLINE_ERROR else "") \
        if error else ""
    if error == LANDLINE_ERROR:
        texts.landline(text["tag"])
    texts.set_status(tid, status, reason, message_sid=message_sid)
    if status in ("delivered", "undelivered", "failed"):
        record_on_callback(callbacks, text, f"text {status}", reason, text_status=status, text_error=reason)
