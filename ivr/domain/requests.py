"""The queue of requests callers leave for SES staff (incarcerated parents asking for a modification).

Redis layout:
  ivr:req:{ref}           hash: one request. The inmate number, case number and caller ID are kept
                          only sealed (ivr/sealing.py): a Redis dump or backup shows none of them. So is
                          the Twilio URL of the caller's message (their name and date of birth), here and
                          in the jobs that fetch and then delete it; requests written before that keep a
                          plain URL until the worker reseals it (`reseal_legacy`, at its start).
  ivr:req:{ref}:audit     stream: every change, with who and when (the caller, the worker, staff).
  ivr:req:call:{sid}      the reference a call made: one request per CallSid, whatever Twilio retries
                          (expires a day later, like everything kept for a call).
  ivr:req:open            sorted set: references not done yet (open or taken), by creation time.
  ivr:req:all             sorted set: every reference, by creation time (export).
  ivr:req:purged          sorted set: references deleted at the end of their retention period, by when.
                          Only the 6 digits (no personal data): a reference is never given again, and
                          staff asking for it hear that it was deleted rather than "no request".
  ivr:req:cap:{tag}:{day} the new requests one caller ID (or a facility's phones) left that day (`Quota`;
                          the tag names it, never the number); expires two days later.

What requests share with callbacks (the reference, the audit trail, take and done) is in
ivr/domain/workitems.py. A request is never popped: `take` and `done` change its status in one
WATCH/MULTI transaction, so nothing can be lost between "stored" and a person finishing it (this is
the acknowledgement: `done` is the only thing that takes a request out of `ivr:req:open`). Only the
retention purge deletes one (ivr/jobs/retention.py): a done request past its period and not on legal
hold (`hold`/`release`). After each write the store waits for Redis to fsync its append-only file
(WAITAOF, Redis >= 7.2) so that a reference is spoken only for a request that survives a crash; on
older Redis run the server with `appendonly yes` and `appendfsync always` for the same guarantee.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NoReturn

import redis

from ivr.domain import workitems
from ivr.domain.workitems import BY_CALL_TTL, CAP_TTL, NOTE, Quota, WorkItemStore
from ivr.jobs import queue as jobs
from ivr.sealing import TOKEN, Sealer

log = logging.getLogger("ivr.requests")

PREFIX = "ivr:req:"
OPEN = PREFIX + "open"
ALL = PREFIX + "all"
PURGED = PREFIX + "purged"
BY_CALL = PREFIX + "call:{sid}"
RECORDING_JOB = "inmate.recording"
DELETE_JOB = "inmate.recording.delete"        # Twilio's copy, once the system has its own
SEALED = ("inmate", "case", "caller")          # fields kept only sealed
RESEALED = (*SEALED, "recording_url")           # every sealed field, for a key rotation
STATUSES = ("open", "taken", "done")
NAME_RE = re.compile(r"^(\d{3,10}|[A-Za-z][A-Za-z0-9 .'_@-]{0,39})$")   # a staff ID, or a name (older entries)
REASON_MAX = 200
NOTE_MAX = 1000
WHO_CALLED = ("parent", "for the parent")     # the parent in prison or jail, or someone calling for them
# Field `stage` (how far a caller got): number, facility, case, message, finished.
# Field `twilio_copy` (what became of Twilio's copy of the message; none on requests from before): deleting,
# deleted, already gone, delete failed, not deleted, kept.
# Fields `hold_by`, `hold_at`, `hold_reason`: a legal hold (no retention period applies while set);
# `recording_deleted`: when the message file was deleted at the end of its retention period.
KEPT = {"twilio_copy": "kept", "twilio_copy_error": "TWILIO_ACCOUNT_SID is not configured"}   # development


class RequestError(Exception):
    """What a staff command tells a person (unknown reference, taken by someone else ...)."""


class RequestCapped(Exception):
    """The caller ID has left as many new requests today as its `Quota` allows: none was stored."""


def check_ref(ref: str) -> str:
    return workitems.check_ref(ref, "request", RequestError)


def check_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_MAX:
        raise RequestError(f"--reason is at most {REASON_MAX} characters")
    if not reason.isprintable():
        raise RequestError("--reason must be one line of plain text")
    return reason


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise RequestError("--by must be a staff ID (3 to 10 digits) or a name: a letter first, then up to "
                           "39 letters, digits, spaces or . ' _ @ -")
    return name


def check_note(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise RequestError("a note cannot be empty")
    if len(text) > NOTE_MAX:
        raise RequestError(f"a note is at most {NOTE_MAX} characters")
    if not all(c.isprintable() or c in "\r\n\t" for c in text):
        raise RequestError("a note must be plain text")
    return text


class RequestStore(WorkItemStore):
    """Inmate requests: what they share with callbacks is WorkItemStore's (ivr/domain/workitems.py)."""
    PREFIX, OPEN, ALL, SEALED, STATUSES = PREFIX, OPEN, ALL, SEALED, STATUSES
    NOUN, Error = "request", RequestError
    log = log
    RETENTION_FIELDS = ("status", "done_at", "hold_at", "recording_file", "recording_deleted")

    def __init__(self, client: redis.Redis, sealer: Sealer, clock: Callable[[], datetime] | None = None,
                 new_ref: Callable[[], str] | None = None) -> None:
        super().__init__(client, sealer, clock or (lambda: datetime.now(UTC)), new_ref, "inmate request")

    # --- the caller's side ----------------------------------------------------------------------
    def open_request(self, sid: str, inmate: str, *, lang: str, source: str, caller: str = "",
                     facility: str = "", facility_how: str = "", who: str = "",
                     quota: Quota | None = None) -> str:
        """Store a new request for this call, or update the one it already has; return its reference.

        Called as soon as the inmate number is confirmed, so a caller who hangs up later still leaves
        a request staff can work on (flagged incomplete). `who`: one of WHO_CALLED. A new request
        counts against `quota` (a call's own request again, as Twilio retries or replays, does not);
        RequestCapped when it is used up, with nothing stored.
        """
        by_call = BY_CALL.format(sid=sid)
        capped = quota is not None and quota.limit > 0
        cap_key = f"{PREFIX}cap:{quota.bucket}:{self.clock().date().isoformat()}" if capped else ""
        for _ in range(50):
            ref = self.new_ref()
            try:
                with self.redis.pipeline() as pipe:
                    # The day's count is watched with the call's key: requests made at the same moment on
                    # other workers cannot together pass the cap.
                    pipe.watch(by_call, self.key(ref), *([cap_key] if capped else []))
                    # Read after the WATCH, so whatever changes them from now on fails the EXEC; in one round
                    # trip on another connection rather than one each on the watching one (7 -> 3 a request).
                    reads = self.redis.pipeline(transaction=False)
                    reads.get(by_call)
                    reads.exists(self.key(ref))
                    reads.zscore(PURGED, ref)
                    if capped:
                        reads.get(cap_key)
                    existing, taken, purged, *used = reads.execute()
                    if existing:
                        pipe.unwatch()
                        break           # this call's request already (Twilio retried, the caller said it again)
                    if taken or purged is not None:
                        continue        # the reference is (was) taken
                    if capped and int(used[0] or 0) >= quota.limit:
                        pipe.unwatch()
                        self._capped(quota, cap_key)
                    now = self._now()
                    fields = {"ref": ref, "sid": sid, "status": "open", "created": now, "updated": now,
                              "lang": lang, "source": source, "stage": "number", "complete": "0",
                              "inmate": self._seal(inmate), "caller": self._seal(caller),
                              "facility": facility, "facility_how": facility_how, "who_called": who}
                    pipe.multi()
                    if capped:
                        pipe.incr(cap_key)
                        pipe.expire(cap_key, CAP_TTL)
                    pipe.hset(self.key(ref), mapping=fields)
                    pipe.set(by_call, ref, ex=BY_CALL_TTL)
                    score = self.clock().timestamp()
                    pipe.zadd(OPEN, {ref: score})
                    pipe.zadd(ALL, {ref: score})
                    self._audit(pipe, ref, "caller", "created",
                                f"from {source}" + (f", by {who}" if who else "")
                                + (f", facility {facility} ({facility_how})" if facility else ""))
                    pipe.execute()
            except redis.WatchError:
                continue        # another webhook of this call won, or the day's count moved: read again
            self._durable()
            return ref
        else:
            raise RuntimeError("could not find a free request reference")
        ref = existing.decode()
        self.update(ref, "inmate number given again", stage="number", inmate=inmate,
                    **({"who_called": who} if who else {}))
        return ref

    def _capped(self, quota: Quota, cap_key: str) -> NoReturn:
        self._alert(quota, cap_key, "inmate requests", " new requests")
        raise RequestCapped(f"{quota.who}: {quota.limit} new requests today")

    def add_recording(self, ref: str, url: str) -> None:
        """Keep the caller's message URL (sealed) and queue its download, in one transaction."""
        token = self.sealer.seal(url)
        pipe = self.redis.pipeline()
        pipe.hset(self.key(ref), mapping={"recording_url": token, "recording_file": "", "recording_error": "",
                                         "twilio_copy": "", "twilio_copy_error": "",
                                         "stage": "message", "updated": self._now()})
        self._audit(pipe, ref, "caller", "message recorded")
        jobs.enqueue(self.redis, RECORDING_JOB, {"ref": ref, "url": token}, pipe=pipe)
        pipe.execute()
        self._durable()

    def open_url(self, value: str) -> str | None:
        """A recording URL as kept in a request or a job: sealed, or plain from an older version.
        None when it cannot be opened (another IVR_SECRET_KEY)."""
        if not value:
            return None
        if _plain_url(value):
            return value
        return self.sealer.unseal(value)

    def finish(self, ref: str) -> None:
        self.update(ref, "request finished", stage="finished", complete="1")

    # --- the worker's side ----------------------------------------------------------------------
    def recording_saved(self, ref: str, path: str, url: str, delete: bool) -> None:
        """The message is in the system's own storage; with `delete`, queue the deletion of Twilio's copy
        in the same transaction (so it happens after a download, and only then)."""
        key, audit = self.key(ref), self.audit_key(ref)
        for _ in range(20):
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(key, audit)
                    stored = (pipe.hget(key, "recording_url") or b"").decode()
                    now = self._now()
                    values = {"recording_file": path, "recording_error": "", "updated": now}
                    legacy = stored == url and _plain_url(stored)      # written by an older version
                    trail = pipe.xrange(audit) if legacy else []
                    pipe.multi()
                    if legacy:
                        # Its audit trail too: once the hash is sealed, reseal_legacy no longer looks here.
                        values["recording_url"] = self.sealer.seal(url)
                        _drop_url_from_trail(pipe, audit, url, trail)
                    self._audit(pipe, ref, "worker", "recording downloaded", path)
                    if delete:
                        values.update(twilio_copy="deleting", twilio_copy_error="", twilio_copy_at=now)
                        jobs.enqueue(self.redis, DELETE_JOB, {"ref": ref, "url": self.sealer.seal(url)}, pipe=pipe)
                    else:
                        values.update(KEPT, twilio_copy_at=now)
                        self._audit(pipe, ref, "worker", "recording kept on Twilio", KEPT["twilio_copy_error"])
                    pipe.hset(key, mapping=values)
                    pipe.execute()
            except redis.WatchError:
                continue
            self._durable()
            return
        raise RuntimeError(f"request {ref} is changing too often")

    def twilio_copy_kept(self, ref: str) -> None:
        self.update(ref, "recording kept on Twilio", by="worker", detail=KEPT["twilio_copy_error"], **KEPT,
                    twilio_copy_at=self._now())

    def twilio_copy_deleted(self, ref: str, was_there: bool) -> None:
        state = "deleted" if was_there else "already gone"
        self.update(ref, f"recording {state} from Twilio", by="worker", twilio_copy=state, twilio_copy_error="",
                    twilio_copy_at=self._now())

    def twilio_copy_not_deleted(self, ref: str, reason: str, again: bool) -> None:
        """`again`: the worker tries again ("delete failed"); else a person must ("not deleted")."""
        self.update(ref, "deleting the recording from Twilio failed" + (", will retry" if again else " for good"),
                    by="worker", detail=reason, twilio_copy="delete failed" if again else "not deleted",
                    twilio_copy_error=reason, twilio_copy_at=self._now())

    def recording_failed(self, ref: str, reason: str, permanent: bool) -> None:
        self.update(ref, "recording download failed" + (" for good" if permanent else ", will retry"),
                    by="worker", detail=reason, recording_error=reason)

    def reseal_legacy(self) -> tuple[int, int]:
        """Requests written before recording URLs were sealed: seal the URL kept in plain, and queue the
        deletion of Twilio's copy of messages already downloaded (the local file is there). Idempotent;
        returns (URLs sealed, deletions queued). The worker runs it when it starts."""
        sealed = queued = 0
        # One round trip finds the few (if any) still in plain; only those are worked on, each watched.
        refs = [raw.decode() for raw in self.redis.zrange(ALL, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hget(self.key(ref), "recording_url")
        for ref in [ref for ref, url in zip(refs, pipe.execute(), strict=True) if _plain_url((url or b"").decode())]:
            key, audit = self.key(ref), self.audit_key(ref)
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(key, audit)
                    url, file, copy = (v.decode() if v else "" for v in
                                       pipe.hmget(key, "recording_url", "recording_file", "twilio_copy"))
                    if not _plain_url(url):
                        continue
                    trail = pipe.xrange(audit)
                    pipe.multi()
                    pipe.hset(key, "recording_url", self.sealer.seal(url))
                    _drop_url_from_trail(pipe, audit, url, trail)
                    self._audit(pipe, ref, "worker", "recording URL sealed")
                    downloaded = bool(file) and os.path.isfile(file)
                    if downloaded and not copy:
                        pipe.hset(key, mapping={"twilio_copy": "deleting", "twilio_copy_at": self._now()})
                        jobs.enqueue(self.redis, DELETE_JOB, {"ref": ref, "url": self.sealer.seal(url)}, pipe=pipe)
                    pipe.execute()
            except redis.WatchError:
                continue        # changed meanwhile: the next start looks again
            sealed += 1
            queued += int(downloaded and not copy)
        if sealed:
            self._durable()
            log.info("sealed %d recording URL(s) kept in plain by an older version; %d deletion(s) queued",
                     sealed, queued)
        return sealed, queued

    def reseal_rotated(self) -> int:
        """Requests holding values only a previous IVR_SECRET_KEY opens: seal them with the current key
        (each request watched, so a concurrent change wins). Idempotent; returns how many requests were
        rewritten. The worker runs it when it starts; `ivr requests reseal` runs it on demand."""
        rewritten = 0
        for ref in (raw.decode() for raw in self.redis.zrange(ALL, 0, -1)):
            key = self.key(ref)
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(key)
                    values = pipe.hmget(key, *RESEALED)
                    fresh = {name: self.sealer.reseal(v.decode()) for name, v in zip(RESEALED, values, strict=True)
                             if v}
                    fresh = {name: token for name, token in fresh.items() if token}
                    if not fresh:
                        continue
                    pipe.multi()
                    pipe.hset(key, mapping=fresh)
                    pipe.execute()
            except redis.WatchError:
                continue        # changed meanwhile: the next run looks again
            rewritten += 1
        if rewritten:
            self._durable()
            log.info("resealed %d request(s) with the current IVR_SECRET_KEY", rewritten)
        return rewritten

    # --- staff ----------------------------------------------------------------------------------
    def check_staff(self, by: str) -> str:
        return check_name(by)

    def note(self, ref: str, by: str, text: str) -> None:
        """A staff note on a request, kept (sealed) in its history with who and when."""
        ref, by, text = check_ref(ref), check_name(by), check_note(text)
        if not self.redis.exists(self.key(ref)):
            raise self.missing(ref)
        pipe = self.redis.pipeline()
        pipe.hset(self.key(ref), "updated", self._now())
        pipe.xadd(self.audit_key(ref), {"at": self._now(), "by": by, "action": NOTE, "detail": self.sealer.seal(text)})
        pipe.execute()
        self._durable()

    # --- legal hold and retention (ivr/jobs/retention.py decides what is due) -------------------------
    def hold(self, ref: str, by: str, reason: str = "") -> str:
        """Keep a request (and its message) past any retention period until `release`."""
        ref, by, reason = check_ref(ref), check_name(by), check_reason(reason)

        def change(pipe, status: str, owner: str) -> str | None:
            held_by, held_at = (v.decode() if v else "" for v in pipe.hmget(self.key(ref), "hold_by", "hold_at"))
            if held_at:
                return f"already on legal hold (by {held_by} since {held_at[:10]})"
            now = self._now()
            pipe.multi()
            pipe.hset(self.key(ref), mapping={"hold_by": by, "hold_at": now, "hold_reason": reason, "updated": now})
            self._audit(pipe, ref, by, "legal hold placed", reason)
            return None

        return self._transition(ref, change) or "on legal hold"

    def release(self, ref: str, by: str) -> str:
        ref, by = check_ref(ref), check_name(by)

        def change(pipe, status: str, owner: str) -> str | None:
            if not pipe.hget(self.key(ref), "hold_at"):
                raise RequestError(f"request {ref} is not on legal hold")
            pipe.multi()
            pipe.hdel(self.key(ref), "hold_by", "hold_at", "hold_reason")
            pipe.hset(self.key(ref), "updated", self._now())
            self._audit(pipe, ref, by, "legal hold released")
            return None

        return self._transition(ref, change) or "legal hold released"

    def missing(self, ref: str) -> RequestError:
        """What staff are told about a reference with no request: never given, or deleted (when)."""
        purged = self.redis.zscore(PURGED, ref)
        if purged is None:
            return RequestError(f"no request {ref}")
        day = datetime.fromtimestamp(purged, UTC).date().isoformat()
        return RequestError(f"request {ref} was deleted on {day} at the end of its retention period")

    def delete(self, ref: str, done_before: datetime) -> str | None:
        """Delete a request done before `done_before` and not on hold, with its audit trail and index entries,
        in one transaction, leaving its reference in PURGED. Returns the path of its message file ("" for
        none: the caller deletes the folder), None when the request is not due (any more) or gone."""
        def change(pipe, req: dict[str, str]) -> str | None:
            if not self._due(req, done_before):
                return None
            pipe.multi()
            pipe.delete(self.key(ref), self.audit_key(ref))
            pipe.zrem(OPEN, ref)
            pipe.zrem(ALL, ref)
            pipe.zadd(PURGED, {ref: self.clock().timestamp()})
            return req["recording_file"]
        return self._retention_change(ref, change)

    @staticmethod
    def _due(req: Mapping[str, str], done_before: datetime) -> bool:
        """Done before `done_before` and not on legal hold: open and taken requests are never due."""
        if req.get("status") != "done" or req.get("hold_at") or not req.get("done_at"):
            return False
        try:
            return datetime.fromisoformat(req["done_at"]) <= done_before
        except ValueError:
            return False        # unreadable: kept, rather than deleted on a guess


def _drop_url_from_trail(pipe, audit: str, url: str, trail: list) -> None:
    """The older version wrote the URL in the "message recorded" entry: the trail is written again (in the
    caller's transaction) with the same entries and ids, without it."""
    if not any(url.encode() in fields.get(b"detail", b"") for _, fields in trail):
        return
    pipe.delete(audit)
    for entry_id, fields in trail:
        detail = fields.get(b"detail", b"")
        pipe.xadd(audit, {**fields, b"detail": b"" if url.encode() in detail else detail}, id=entry_id)


def _plain_url(value: str) -> bool:
    """A recording URL kept in plain by an older version: anything stored that is not a sealed token."""
    return bool(value) and not TOKEN.fullmatch(value)
