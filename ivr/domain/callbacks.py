"""The queue of callbacks callers ask for when no person can take their call now (issue 18).

Kept like the inmate requests (ivr/domain/requests.py): durable, sealed, never popped, audited; what the
two share (the reference, the audit trail, take and done) is in ivr/domain/workitems.py.

Redis layout:
  ivr:cb:{ref}              hash: one callback. The number to call and the caller ID are kept only sealed
                            (ivr/domain/sealing.py), and so is the Twilio URL of the caller's message.
  ivr:cb:{ref}:audit        stream: every change with who and when (the caller, staff, the worker), and
                            every attempt to call (`attempt`).
  ivr:cb:call:{sid}         the reference a call made: one callback per CallSid, whatever Twilio retries.
  ivr:cb:number:{tag}       the open callback of one number (the tag names it, never the number): a
                            second request for that number updates it rather than adding another.
  ivr:cb:open               sorted set: references not done yet (open or taken), by creation time.
  ivr:cb:all                sorted set: every reference, by creation time (export).
  ivr:cb:cap:{bucket}:{day} requests counted against a day's cap (CallbackCaps); expire two days later.

Retention (ivr/jobs/retention.py) deletes a done or expired callback with its history once its period is
over, leaving only `ivr:cb:{ref}` = {status: purged, purged_at}: so the reference is never drawn for
another callback, and staff asking for it are told it was deleted.

Every write that a caller is told about waits for Redis to make it durable (`_durable`): a reference is
said only for a callback that survives a Redis crash.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, NoReturn

import phonenumbers
import redis
import yaml

from ivr.domain import workitems
from ivr.domain.hours import Hours
from ivr.domain.workitems import BY_CALL_TTL, CAP_TTL, OPEN_STATUSES, PURGED, Quota, WorkItemStore
from ivr.redact import mask_phone
from ivr.sealing import Sealer

log = logging.getLogger("ivr.callbacks")

PREFIX = "ivr:cb:"
OPEN = PREFIX + "open"
ALL = PREFIX + "all"
BY_CALL = PREFIX + "call:{sid}"
BY_NUMBER = PREFIX + "number:{tag}"
SEALED = ("number", "caller", "recording_url")
STATUSES = ("open", "taken", "done", "expired")
CLOSED_AT = {"done": "done_at", "expired": "expired_at"}   # when a closed callback was closed
RETENTION_FIELDS = ("status", "done_at", "expired_at", "recording_file", "recording_deleted", "number_tag",
                    "recording_url", "twilio_copy")
BEST_TIMES = ("morning", "afternoon")
RESULTS = ("no_answer", "left_message", "reached")
# Why the caller was offered a callback (field `source`).
SOURCES = ("closed", "holiday", "closure", "busy", "no_answer", "failed", "office", "gave_up")
RECORDING_JOB = "callback.recording"
TWILIO_COPY_JOB = "callback.twilio_copy"     # a purged callback's message still at Twilio: delete it there


class CallbackError(Exception):
    """What a staff command (or the console) tells a person: unknown reference, taken by someone else..."""


class CallbackCapped(Exception):
    """A day's cap is used up: nothing was stored."""


class NumberRefused(Exception):
    """A number the system will not call back; `reason` names why (a prompt suffix: invalid, toll_free...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CallbackCaps:
    per_number: int = 3
    per_caller: int = 5
    withheld: int = 50
    per_day: int = 500


@dataclass(frozen=True)
class CallbackSettings:
    noon: time = time(12, 0)
    caps: CallbackCaps = CallbackCaps()
    expire_days: int = 7
    message_seconds: int = 60


def load_settings(path: Path) -> CallbackSettings:
    """config/callbacks.yaml, checked: a bad value stops start-up naming the file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CallbackError(f"{path}: cannot read: {exc}") from exc

    def whole(value: Any, where: str, least: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise CallbackError(f"{path}: {where} must be a whole number, {least} or more, not {value!r}")
        return value

    caps = doc.get("caps") or {}
    if not isinstance(caps, dict) or set(caps) - set(CallbackCaps.__dataclass_fields__):
        raise CallbackError(f"{path}: caps takes {', '.join(CallbackCaps.__dataclass_fields__)}")
    try:
        noon = time.fromisoformat(str(doc.get("noon", "12:00")))
    except ValueError:
        raise CallbackError(f"{path}: noon must be a time like \"12:00\"") from None
    return CallbackSettings(noon=noon, caps=CallbackCaps(**{k: whole(v, f"caps.{k}") for k, v in caps.items()}),
                            expire_days=whole(doc.get("expire_days", 7), "expire_days", 1),
                            message_seconds=whole(doc.get("message_seconds", 60), "message_seconds", 5))


# --- the number to call ------------------------------------------------------------------------------

def check_number(raw: str, refused: Iterable[str] = ()) -> str:
    """A number a person may call back, in E.164, or NumberRefused with the reason: `invalid` (not a valid
    US number), `premium` (900 or 976), `n11` (411, 911 ...), `toll_free`, `facility` (in `refused`: an
    inmate phone's caller ID)."""
    digits = re.sub(r"\D", "", raw or "")
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) != 10:
        raise NumberRefused("invalid")
    area, exchange = digits[:3], digits[3:6]
    if area[1:] == "11" or exchange[1:] == "11":
        raise NumberRefused("n11")
    try:
        number = phonenumbers.parse("+1" + digits, None)
    except phonenumbers.NumberParseException:
        raise NumberRefused("invalid") from None
    kind = phonenumbers.number_type(number)
    if area == "900" or exchange == "976" or kind == phonenumbers.PhoneNumberType.PREMIUM_RATE:
        raise NumberRefused("premium")
    if kind in (phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.SHARED_COST):
        raise NumberRefused("toll_free")
    if not phonenumbers.is_valid_number(number) or phonenumbers.region_code_for_number(number) != "US":
        raise NumberRefused("invalid")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if e164 in set(refused):
        raise NumberRefused("facility")
    return e164


# --- when a callback is due --------------------------------------------------------------------------

def due_time(hours: Hours, best: str, noon: time, now: datetime | None = None) -> datetime:
    """The start of the first `best` window (morning: opening to noon; afternoon: noon to closing) on a
    business day (a day of the agents' schedule, not a Connecticut legal holiday or closure) that starts
    after `now`: "the next business morning"."""
    if best not in BEST_TIMES:
        raise ValueError(f"best time must be one of {BEST_TIMES}")
    now = (now or hours.now()).astimezone(hours.zone)
    schedule = hours.schedule("agents")
    start = schedule.open if best == "morning" else max(noon, schedule.open)
    day = now.date()
    for _ in range(60):     # a fortnight of holidays and weekends is far beyond any calendar
        at = datetime.combine(day, start, tzinfo=hours.zone)
        if day.weekday() in schedule.days and not hours.holiday(day) and at > now:
            return at
        day += timedelta(days=1)
    raise ValueError("no business day in the next 60 days")


# --- the store ---------------------------------------------------------------------------------------

def check_ref(ref: str) -> str:
    return workitems.check_ref(ref, "callback", CallbackError)


class CallbackStore(WorkItemStore):
    """Callbacks: what they share with inmate requests is WorkItemStore's (ivr/domain/workitems.py)."""
    PREFIX, OPEN, ALL, SEALED, STATUSES = PREFIX, OPEN, ALL, SEALED, STATUSES
    NOUN, Error = "callback", CallbackError
    RETENTION_FIELDS = RETENTION_FIELDS
    log = log

    def __init__(self, client: redis.Redis, sealer: Sealer, hours: Hours | None,
                 settings: CallbackSettings | None = None, clock: Callable[[], datetime] | None = None,
                 new_ref: Callable[[], str] | None = None,
                 staff_exists: Callable[[str], bool] | None = None) -> None:
        # hours None (retention): a clock must be given
        super().__init__(client, sealer, clock or hours.now, new_ref, "callback")
        self.hours = hours
        self.settings = settings or CallbackSettings()
        self.staff_exists = staff_exists     # None: any well-formed staff ID is taken

    def number_tag(self, e164: str) -> str:
        return self.sealer.tag("callback:" + e164)

    # --- the caller's side ----------------------------------------------------------------------
    def request(self, sid: str, number: str, *, lang: str, best: str, source: str, office: str = "",
                caller: str = "", number_how: str = "", quotas: Iterable[Quota] = ()) -> tuple[str, bool]:
        """Store a callback to `number` (E.164, checked) for this call, or update the open one of this call
        or of this number; return (reference, new). Durable before it returns. A new callback counts
        against every quota; an update of another call's callback for the same number against the
        number's own (first of `quotas`) only; this call's own again (a Twilio retry, a changed best
        time) against none. CallbackCapped with nothing stored at a cap."""
        if best not in BEST_TIMES:
            raise ValueError(f"best time must be one of {BEST_TIMES}")
        quotas = [q for q in quotas if q.limit > 0]
        day = self.clock().astimezone(self.hours.zone).date().isoformat()
        by_call, by_number = BY_CALL.format(sid=sid), BY_NUMBER.format(tag=self.number_tag(number))
        due = due_time(self.hours, best, self.settings.noon, self.clock()).astimezone(UTC)
        for _ in range(50):
            try:
                with self.redis.pipeline() as pipe:
                    cap_keys = {q.bucket: f"{PREFIX}cap:{q.bucket}:{day}" for q in quotas}
                    fresh = self.new_ref()      # watched too: two callbacks drawing it at once cannot both keep it
                    pipe.watch(by_call, by_number, self.key(fresh), *cap_keys.values())
                    # Read after the WATCH, so whatever changes them from now on fails the EXEC; in one round
                    # trip on another connection rather than one each on the watching one (8 -> 3 a request).
                    reads = self.redis.pipeline(transaction=False)
                    reads.get(by_call)
                    reads.get(by_number)
                    reads.exists(self.key(fresh))
                    for key in cap_keys.values():
                        reads.get(key)
                    mine, theirs, taken, *counts = reads.execute()
                    used = dict(zip(cap_keys, counts, strict=True))
                    existing = (mine or theirs or b"").decode()
                    if existing and self.redis.hget(self.key(existing), "status") not in (b"open", b"taken"):
                        existing = "" if not mine else existing
                    counted = [] if mine else quotas[:1] if existing else quotas
                    for q in counted:
                        if int(used[q.bucket] or 0) >= q.limit:
                            pipe.unwatch()
                            self._capped(q, cap_keys[q.bucket])
                    ref = existing or fresh
                    if not existing and taken:
                        continue            # the reference is taken: draw another
                    now = self._now()
                    values = {"updated": now, "lang": lang, "best": best, "due": due.isoformat(timespec="seconds"),
                              "number": self.sealer.seal(number), "number_tag": self.number_tag(number),
                              "number_how": number_how, "source": source, "office": office}
                    pipe.multi()
                    for q in counted:
                        pipe.incr(cap_keys[q.bucket])
                        pipe.expire(cap_keys[q.bucket], CAP_TTL)
                    if existing:
                        pipe.hset(self.key(ref), mapping=values)
                        pipe.hincrby(self.key(ref), "requests", 1)
                        self._audit(pipe, ref, "caller", "asked again" if not mine else "changed",
                                    f"{best}, due {self._local(due)}, from {source}")
                    else:
                        values.update(ref=ref, sid=sid, status="open", created=now, complete="0", requests="1",
                                      attempts="0", caller=self.sealer.seal(caller) if caller else "")
                        pipe.hset(self.key(ref), mapping=values)
                        score = self.clock().timestamp()
                        pipe.zadd(OPEN, {ref: score})
                        pipe.zadd(ALL, {ref: score})
                        detail = f"{best}, due {self._local(due)}, from {source}" + (f" ({office})" if office else "")
                        self._audit(pipe, ref, "caller", "asked", detail)
                    pipe.set(by_call, ref, ex=BY_CALL_TTL)
                    pipe.set(by_number, ref)
                    pipe.execute()
            except redis.WatchError:
                continue
            self._durable()
            return ref, not existing
        raise RuntimeError("could not store the callback (the queue changes too often)")

    def full(self, quotas: Iterable[Quota]) -> bool:
        """Whether any of `quotas` is used up today (read only: the caller hears so before keying)."""
        day = self.clock().astimezone(self.hours.zone).date().isoformat()
        quotas = [q for q in quotas if q.limit > 0]
        if not quotas:
            return False
        keys = [f"{PREFIX}cap:{q.bucket}:{day}" for q in quotas]
        for quota, key, count in zip(quotas, keys, self.redis.mget(keys), strict=True):
            if int(count or 0) >= quota.limit:
                self._alert(quota, key, "callbacks")
                return True
        return False

    def now_text(self) -> str:
        return self._now()

    def _capped(self, quota: Quota, cap_key: str) -> NoReturn:
        self._alert(quota, cap_key, "callbacks")
        raise CallbackCapped(f"{quota.who}: {quota.limit} today")

    def add_message(self, ref: str, url: str, queue: Callable[[Any, str, dict], None] | None = None) -> None:
        """Keep the caller's message URL (sealed); `queue(pipe, kind, payload)` queues its download in the
        same transaction."""
        token = self.sealer.seal(url)
        pipe = self.redis.pipeline()
        pipe.hset(self.key(ref), mapping={"recording_url": token, "recording_file": "", "updated": self._now()})
        self._audit(pipe, ref, "caller", "message recorded")
        if queue is not None:
            queue(pipe, RECORDING_JOB, {"ref": ref, "url": token})
        pipe.execute()
        self._durable()

    def finish(self, ref: str) -> dict[str, str]:
        """The caller is about to hear the reference: mark it complete, durably; the callback as stored."""
        self.update(ref, "confirmed to the caller", complete="1")
        data = self.get(ref)
        if data is None:
            raise CallbackError(f"no callback {ref}")
        return data

    def note(self, ref: str, by: str, action: str, detail: str = "") -> None:
        """An entry in the history only (a text sent or refused ...)."""
        self._audit(self.redis, ref, by, action, detail)

    # --- staff ----------------------------------------------------------------------------------
    def missing(self, ref: str) -> CallbackError:
        """What staff are told about a reference with no callback: never given, or deleted."""
        if self.purged_at(ref):
            return CallbackError(f"callback {ref} was deleted at the end of its retention period")
        return CallbackError(f"no callback {ref}")

    def purged_at(self, ref: str) -> str:
        """When retention deleted callback `ref` ("" if it did not)."""
        status, at = self.redis.hmget(self.key(ref), "status", "purged_at")
        return (at or b"").decode() if status == PURGED.encode() else ""

    def listing(self, statuses: Iterable[str] = OPEN_STATUSES) -> list[dict[str, str]]:
        """Callbacks, oldest first, the number masked (for lists anyone may glance at)."""
        out = []
        for _, data in self.items(statuses):
            data["number"] = mask_phone(data.get("number"))
            data.pop("caller", None)
            data.pop("recording_url", None)
            out.append(data)
        return out

    def attempt(self, ref: str, result: str, by: str) -> str:
        """Log an attempt to call (no_answer, left_message, reached); taking the callback if nobody had."""
        ref, by = check_ref(ref), self.check_staff(by)
        if result not in RESULTS:
            raise CallbackError(f"--result must be one of {', '.join(RESULTS)}")

        def change(pipe, status: str, owner: str) -> str | None:
            if status not in OPEN_STATUSES:
                raise CallbackError(self._closed(ref, status, "attempt"))
            if status == "taken" and owner != by:
                raise CallbackError(f"callback {ref} is taken by {owner}; only they log its attempts")
            now = self._now()
            pipe.multi()
            values = {"last_attempt": now, "last_result": result, "updated": now}
            if status == "open":
                values.update(status="taken", taken_by=by, taken_at=now)
                self._audit(pipe, ref, by, "taken")
            pipe.hset(self.key(ref), mapping=values)
            pipe.hincrby(self.key(ref), "attempts", 1)
            self._audit(pipe, ref, by, "attempt", result.replace("_", " "))
            return None
        self._transition(ref, change)
        return f"attempt logged: {result.replace('_', ' ')}"

    def _closed(self, ref: str, status: str, doing: str) -> str:
        """"is done" to one taking it or logging an attempt; "is already done" to one closing it."""
        return f"callback {ref} is {'already ' if doing == 'done' else ''}{status}"

    def _closing(self, pipe, ref: str) -> Callable[[Any], None]:
        """A closed callback frees its number to ask again (the number's index entry goes)."""
        tag = (pipe.hget(self.key(ref), "number_tag") or b"").decode()
        return lambda pipe: _drop_index(pipe, BY_NUMBER.format(tag=tag), ref) if tag else None

    def expire_old(self) -> list[str]:
        """Open or taken callbacks asked more than `expire_days` ago: expired, each with a note in its
        history, and their number free to ask again. Returns their references."""
        days = self.settings.expire_days
        before = (self.clock() - timedelta(days=days)).timestamp()
        expired = []
        for raw in self.redis.zrangebyscore(OPEN, "-inf", before):
            ref = raw.decode()

            def change(pipe, status: str, owner: str, ref=ref) -> str | None:
                if status not in OPEN_STATUSES:
                    pipe.multi()
                    pipe.zrem(OPEN, ref)
                    return None
                closing = self._closing(pipe, ref)
                now = self._now()
                pipe.multi()
                pipe.hset(self.key(ref), mapping={"status": "expired", "expired_at": now, "updated": now})
                pipe.zrem(OPEN, ref)
                closing(pipe)
                self._audit(pipe, ref, "system", "expired",
                            f"not done within {days} days of the request; the caller was not reached by then")
                return None
            try:
                self._transition(ref, change)
                expired.append(ref)
            except CallbackError:
                continue
        if expired:
            log.warning("callbacks: %d expired after %d days without being done", len(expired), days)
        return expired

    # --- retention (ivr/jobs/retention.py) ------------------------------------------------------
    @staticmethod
    def _due(cb: Mapping[str, str], closed_before: datetime) -> bool:
        """Closed (done or expired) before `closed_before`."""
        at = closed_at(cb)
        return at is not None and at <= closed_before

    def delete(self, ref: str, closed_before: datetime,
               queue: Callable[[Any, str, dict], None] | None = None) -> str | None:
        """Delete a callback closed before `closed_before`, with its history and index entries, in one
        transaction, leaving only its reference (PURGED). Returns the path of its message file ("" for none:
        the caller deletes the folder), None when the callback is not due (any more) or gone. When Twilio
        may still hold the caller's message (never downloaded, or its deletion failed), `queue(pipe, kind,
        payload)` queues its deletion there in the same transaction: the sealed URL is the last pointer."""
        def change(pipe, cb: dict[str, str]) -> str | None:
            if not self._due(cb, closed_before):
                return None
            pipe.multi()
            if queue is not None and cb["recording_url"] and cb["twilio_copy"] != "deleted":
                queue(pipe, TWILIO_COPY_JOB, {"ref": ref, "url": cb["recording_url"]})
            pipe.delete(self.key(ref), self.audit_key(ref), f"{PREFIX}{ref}:calling")
            pipe.hset(self.key(ref), mapping={"ref": ref, "status": PURGED, "purged_at": self._now()})
            pipe.zrem(OPEN, ref)
            pipe.zrem(ALL, ref)
            if cb["number_tag"]:
                _drop_index(pipe, BY_NUMBER.format(tag=cb["number_tag"]), ref)
            return cb["recording_file"]
        return self._retention_change(ref, change)

    def check_staff(self, by: str) -> str:
        """A staff ID that may act on callbacks (well-formed, and an account when the store knows them)."""
        by = workitems.check_staff_id(by, CallbackError)
        if self.staff_exists is not None and not self.staff_exists(by):
            raise CallbackError(f"no staff member with ID {by} (see `ivr staff list`)")
        return by

    # --- internals ------------------------------------------------------------------------------
    def _local(self, at: datetime) -> str:
        return at.astimezone(self.hours.zone).strftime("%a %Y-%m-%d %H:%M")


def _drop_index(pipe, key: str, ref: str) -> None:
    """Delete a number's index entry only if it still names `ref` (queued inside MULTI: compare by Lua)."""
    pipe.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
              1, key, ref)


def closed_at(cb: Mapping[str, str]) -> datetime | None:
    """When a done or expired callback was closed; None while it is open or taken (or unreadable: kept)."""
    field = CLOSED_AT.get(cb.get("status", ""))
    try:
        return datetime.fromisoformat(cb.get(field, "")) if field else None
    except ValueError:
        return None


def describe_due(data: Mapping[str, str], zone) -> str:
    """"Wed 2026-11-25 morning" for staff; "" when not set."""
    try:
        at = datetime.fromisoformat(data.get("due", "")).astimezone(zone)
    except ValueError:
        return ""
    return f"{at:%a %Y-%m-%d} {data.get('best', '')}".strip()
