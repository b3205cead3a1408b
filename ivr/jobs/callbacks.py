"""The worker's part of callbacks and texts (issue 18): sending a text, fetching a callback's message, expiry.

Sending: Twilio's Messages API (`twilio` Client `messages.create`, with a status callback when the public
origin is known), from IVR_SMS_FROM, in the caller's language. A text is sent at most once: Twilio's own
"not processed" answers (429, 5xx) are tried again; anything else, including no answer at all (it may
have been sent), is recorded and not tried again. A number Twilio says is a landline (30006, or 21614
when sending) or that replied STOP (21610) is never texted again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import phonenumbers
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from ivr.callflow.prompts import load_languages
from ivr.callflow.speech import say_date
from ivr.domain import recordings
from ivr.domain.callbacks import RECORDING_JOB, TWILIO_COPY_JOB, CallbackStore, load_settings
from ivr.domain.directory import Directory
from ivr.domain.hours import Hours
from ivr.domain.texts import LANDLINE_ERROR, TEXT_JOB, TextStore, load_templates, record_on_callback
from ivr.jobs.queue import GiveUp, JobContext, RetryLater, enqueue, job, periodic
from ivr.redact import mask_phone
from ivr.sealing import Sealer

log = logging.getLogger("ivr.texts")

STOPPED_CODE = "21610"          # "Attempt to send to unsubscribed recipient"
NOT_MOBILE_CODES = ("21614", LANDLINE_ERROR)   # "not a valid mobile number"; "landline or unreachable carrier"
EXPIRY_EVERY_S = 3600
http_session = recordings.session       # tests swap in one without back-off


@lru_cache(maxsize=4)
def _resources(config_dir: Path, prompts_dir: Path) -> tuple[dict, Directory, Hours]:
    languages = load_languages(prompts_dir, config_dir / "lines.yaml")
    return (load_templates(prompts_dir, languages), Directory.load(config_dir, languages),
            Hours.load(config_dir / "hours.yaml", languages=languages))


def _stores(ctx: JobContext) -> tuple[TextStore, CallbackStore, dict, Directory, Hours]:
    templates, directory, hours = _resources(Path(ctx.config["CONFIG_DIR"]), Path(ctx.config["PROMPTS_DIR"]))
    sealer = Sealer.from_config(ctx.config)
    settings = load_settings(Path(ctx.config["CONFIG_DIR"]) / "callbacks.yaml")
    callbacks = CallbackStore(ctx.redis, sealer, hours, settings)
    return TextStore(ctx.redis, sealer), callbacks, templates, directory, hours


def text_body(text: Mapping[str, str], templates: Mapping[str, Mapping[str, str]], directory: Directory,
              hours: Hours, callbacks: CallbackStore) -> str:
    """The words of a text, made from its template and nothing else: an office's name, phone, address and
    hours, or a callback's reference and when to expect the call."""
    lang = text.get("lang") if text.get("lang") in templates else next(iter(templates))
    words = templates[lang]
    if text.get("kind") == "office":
        office = directory.offices.get(text.get("office", ""))
        if office is None:
            raise GiveUp(f"text {text.get('id')}: no office {text.get('office')!r}")
        name = office.name[lang]
        phone = phonenumbers.format_number(phonenumbers.parse(office.phone, "US"),
                                           phonenumbers.PhoneNumberFormat.NATIONAL)
        return words["office"].format(office=name[:1].upper() + name[1:], phone=phone, address=office.address,
                                      hours=hours.describe(lang, office.id))
    callback = callbacks.raw(text.get("ref", ""))
    if callback is None:
        raise GiveUp(f"text {text.get('id')}: no callback {text.get('ref')!r}")
    due = datetime.fromisoformat(callback["due"]).astimezone(hours.zone)
    day = say_date(due.date(), lang, today=hours.now().date())
    when = words[f"when.{callback.get('best', 'morning')}"].format(day=day)
    return words["callback"].format(ref=callback["ref"], when=when)


@job(TEXT_JOB)
def send_text(payload: dict, ctx: JobContext) -> None:
    texts, callbacks, templates, directory, hours = _stores(ctx)
    tid = str(payload.get("id", ""))
    text = texts.get(tid)
    if text is None:
        raise GiveUp(f"no text {tid}")
    if text.get("status") != "queued":
        return              # sent already (a redelivered job): a text is never sent twice
    number, sender = text.get("number", ""), ctx.config.get("SMS_FROM", "")
    if not number or not sender:
        texts.set_status(tid, "not sent", "no number" if not number else "IVR_SMS_FROM is not set")
        return
    if not texts.may_text(number):
        texts.set_status(tid, "not sent", "the number replied STOP, or is a landline")
        record_on_callback(callbacks, text, "text not sent",
                           "the number replied STOP, or is a landline", text_status="not sent")
        return
    body = text_body(text, templates, directory, hours, callbacks)
    base = (ctx.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    extra = {"status_callback": f"{base}/sms/status"} if base else {}
    client = Client(ctx.config["TWILIO_ACCOUNT_SID"], ctx.config["TWILIO_AUTH_TOKEN"])
    try:
        message = client.messages.create(to=number, from_=sender, body=body, **extra)
    except TwilioRestException as exc:
        code = str(exc.code or "")
        if exc.status == 429 or exc.status >= 500:
            raise RetryLater(f"text {tid}: Twilio answered {exc.status}") from exc      # not processed: again
        reason = f"Twilio error {code or exc.status}: {exc.msg}"[:300]
        if code == STOPPED_CODE:
            texts.opt(number, "stop")
        elif code in NOT_MOBILE_CODES:
            texts.landline(text["tag"])
        texts.set_status(tid, "not sent", reason)
        record_on_callback(callbacks, text, "text not sent", reason, text_status="not sent", text_error=reason)
        log.warning("text %s to %s not sent: %s", tid, mask_phone(number), reason)
        return
    except requests.RequestException as exc:
        # No answer: it may have been sent. Creating a message is not idempotent: never sent again blindly.
        reason = f"no answer from Twilio ({type(exc).__name__}): not sent again, it may have been sent"
        texts.set_status(tid, "failed", reason)
        record_on_callback(callbacks, text, "text may not have been sent", reason,
                           text_status="failed", text_error=reason)
        raise GiveUp(f"text {tid}: {reason}") from exc
    texts.set_status(tid, "sent", message_sid=message.sid or "")
    record_on_callback(callbacks, text, "text sent", text_status="sent")
    log.info("text %s (%s) sent to %s", tid, text.get("kind"), mask_phone(number))


@job(RECORDING_JOB)
def fetch_callback_message(payload: dict, ctx: JobContext) -> None:
    """The caller's message, into $IVR_DATA_DIR/callbacks/REF/; then Twilio's copy is deleted."""
    _, callbacks, *_ = _stores(ctx)
    ref = str(payload.get("ref", ""))
    data = callbacks.get(ref)
    if data is None:
        raise GiveUp(f"no callback {ref}")
    url = callbacks.sealer.unseal(str(payload.get("url", "")))
    if url is None:
        raise GiveUp(f"callback {ref}: the message URL cannot be unsealed")
    if data.get("recording_url") != url:
        return              # recorded again: the newer message has its own job
    account, token = ctx.config["TWILIO_ACCOUNT_SID"], ctx.config["TWILIO_AUTH_TOKEN"]
    try:
        recordings.check_url(url, account)
        path = recordings.download(url, Path(ctx.config["DATA_DIR"]) / "callbacks" / ref, account, token,
                                   http=http_session())
    except recordings.RecordingError as exc:
        callbacks.update(ref, "message download failed", by="worker", detail=str(exc), recording_error=str(exc))
        if exc.permanent:
            raise GiveUp(str(exc)) from exc
        raise RetryLater(str(exc)) from exc
    callbacks.update(ref, "message downloaded", by="worker", detail=str(path), recording_file=str(path),
                     recording_error="")
    if not recordings.account_configured(account):
        return                  # development: no account to delete it from
    # The system has its own copy now: Twilio's (the caller's name and question) goes. A failure keeps the
    # file, says so on the callback and queues the deletion alone, tried again until Twilio answers (the
    # download is not repeated for it).
    try:
        recordings.delete(url, account, token, http=recordings.delete_session())
    except recordings.RecordingError as exc:
        callbacks.update(ref, "Twilio's copy of the message not deleted: tried again", by="worker",
                         detail=str(exc), twilio_copy="not deleted")
        enqueue(ctx.redis, TWILIO_COPY_JOB, {"ref": ref, "url": str(payload.get("url", ""))})
        return
    callbacks.update(ref, "Twilio's copy of the message deleted", by="worker", twilio_copy="deleted")


@job(TWILIO_COPY_JOB)
def delete_twilio_copy(payload: dict, ctx: JobContext) -> None:
    """Twilio's copy of a callback's message, deleted there, tried again until Twilio answers: after its
    deletion failed once the message was downloaded, or when retention deleted a callback whose message
    Twilio still held. The callback, if it is still kept, says so."""
    url = Sealer.from_config(ctx.config).unseal(str(payload.get("url", "")))
    if url is None:
        raise GiveUp(f"callback {payload.get('ref')}: the message URL cannot be unsealed")
    account, token = ctx.config["TWILIO_ACCOUNT_SID"], ctx.config["TWILIO_AUTH_TOKEN"]
    if not recordings.account_configured(account):
        return                  # development: no account to delete it from
    try:
        deleted = recordings.delete(url, account, token, http=recordings.delete_session())
    except recordings.RecordingError as exc:
        if exc.permanent:
            raise GiveUp(str(exc)) from exc
        raise RetryLater(str(exc)) from exc
    ref = str(payload.get("ref", ""))
    callbacks = _stores(ctx)[1]
    if callbacks.get(ref) is not None:
        callbacks.update(ref, "Twilio's copy of the message deleted", by="worker", twilio_copy="deleted")
    log.info("callback %s: Twilio's copy of its message %s", ref, "deleted" if deleted else "was already gone")


@periodic
def expire_callbacks(ctx: JobContext) -> None:
    """Once an hour (one worker of all): callbacks past `expire_days` expire, with a note."""
    if not ctx.redis.set("ivr:cb:expiry:lock", 1, nx=True, ex=EXPIRY_EVERY_S):
        return
    _, callbacks, *_ = _stores(ctx)
    callbacks.expire_old()
