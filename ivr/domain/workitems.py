"""What staff's two kinds of work item share: inmate requests (requests.py) and callbacks (callbacks.py).

Both are kept the same way in Redis, under their own prefix (`ivr:req:`, `ivr:cb:`):
  {PREFIX}{ref}         hash: one item, its personal fields sealed (ivr/sealing.py).
  {PREFIX}{ref}:audit   stream: every change with who and when (fields at, by, action, detail); the
                        detail of a staff note (action `note`) is kept sealed.
  {PREFIX}open          sorted set: references not done yet (open or taken), by creation time.
  {PREFIX}all           sorted set: every reference, by creation time.

`WorkItemStore` holds what the two share: the 6-digit reference, the audit trail (written and read), reading
items, the day's cap alert, and the take / done transitions (one WATCH/MULTI transaction each, made durable
before it returns). Each kind keeps its own rules: who may act (`check_staff`), what else closing one
undoes (`_closing`), when retention may delete one (`_due`); requests their legal hold, callbacks their due
times, attempts, per-number index and expiry.
"""

from __future__ import annotations

import csv
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from ivr import store
from ivr.sealing import Sealer

REF_RE = re.compile(r"^\d{6}$")
STAFF_ID_RE = re.compile(r"^\d{3,10}$")      # the staff IDs of ivr/domain/staffdb.py
OPEN_STATUSES = ("open", "taken")
NOTE = "note"               # an audit entry whose detail is a staff note, kept sealed (it may name anyone)
PURGED = "purged"           # the status of what retention leaves of a deleted callback
BY_CALL_TTL = 24 * 3600     # only needed while the call lasts (IVR_CALL_TTL, 4 h): every key of a call expires
CAP_TTL = 2 * 24 * 3600     # a day's count against a cap outlives its day, then expires


@dataclass(frozen=True)
class Quota:
    """A cap a new item counts against per day: `bucket` names it (a tag, never a phone number), `who` says
    it in the alert (a masked number or a facility), `limit` 0 means no cap."""
    bucket: str
    limit: int
    who: str


def _stored(data: dict[bytes, bytes]) -> dict[str, str] | None:
    """An item's hash as text; None when there is none (or only what retention left of it)."""
    if not data or data.get(b"status") == PURGED.encode():
        return None
    return {k.decode(): v.decode() for k, v in data.items()}


@dataclass
class AuditEntry:
    at: str
    by: str
    action: str
    detail: str


def check_ref(ref: str, noun: str, error: type[Exception]) -> str:
    ref = (ref or "").strip()
    if not REF_RE.match(ref):
        raise error(f"{ref!r} is not a {noun} reference (6 digits)")
    return ref


def check_staff_id(staff_id: str, error: type[Exception]) -> str:
    staff_id = (staff_id or "").strip()
    if not STAFF_ID_RE.match(staff_id):
        raise error("--by must be your staff ID (3 to 10 digits, as in `ivr staff list`)")
    return staff_id


class WorkItemStore:
    """The store of one kind of work item; a subclass names the kind in its class attributes."""
    PREFIX: str                         # its Redis keys start with this
    OPEN: str                           # {PREFIX}open and {PREFIX}all
    ALL: str
    NOUN: str                           # what staff are told it is: "request", "callback"
    Error: type[Exception]              # what a staff command (or the console) tells a person
    SEALED: tuple[str, ...]             # the fields kept only sealed
    STATUSES: tuple[str, ...]
    RETENTION_FIELDS: tuple[str, ...]   # what retention reads of each item; status first
    log: logging.Logger

    def __init__(self, client: redis.Redis, sealer: Sealer, clock: Callable[[], datetime],
                 new_ref: Callable[[], str] | None, durable_what: str) -> None:
        self.redis = client
        self.sealer = sealer
        self.clock = clock
        self.new_ref = new_ref or (lambda: str(100000 + secrets.randbelow(900000)))
        # THE one place a write is made durable before the caller (or staff) is told about it.
        self._durable = store.Durable(client, durable_what)

    def key(self, ref: str) -> str:
        return f"{self.PREFIX}{ref}"

    def audit_key(self, ref: str) -> str:
        return f"{self.PREFIX}{ref}:audit"

    def check_ref(self, ref: str) -> str:
        return check_ref(ref, self.NOUN, self.Error)

    def check_staff(self, by: str) -> str:
        """Who may act on this kind of item (as kept in its history)."""
        raise NotImplementedError

    def missing(self, ref: str) -> Exception:
        """What staff are told about a reference with no item."""
        raise NotImplementedError

    # --- writing --------------------------------------------------------------------------------
    def update(self, ref: str, action: str, by: str = "caller", detail: str = "", **fields: str) -> None:
        """Change fields of an item (sealing the personal ones) and write the change to its history."""
        values = {k: self._seal(v) if k in self.SEALED else v for k, v in fields.items()}
        values["updated"] = self._now()
        pipe = self.redis.pipeline()
        pipe.hset(self.key(ref), mapping=values)
        self._audit(pipe, ref, by, action, detail)
        pipe.execute()
        self._durable()

    def _alert(self, quota: Quota, cap_key: str, kind: str, unit: str = "") -> None:
        """The first refusal of the day at a cap raises the alert; later ones only say so at info level."""
        if self.redis.set(cap_key + ":alerted", 1, nx=True, ex=CAP_TTL):
            self.log.error("%s: %s reached its cap of %d%s today: further requests are refused until tomorrow "
                           "(a flood, or a cap too low?)", kind, quota.who, quota.limit, unit)
        else:
            self.log.info("%s: %s is at its cap of %d today: request refused", kind, quota.who, quota.limit)

    # --- reading --------------------------------------------------------------------------------
    def raw(self, ref: str) -> dict[str, str] | None:
        """An item as stored; None when there is none (or only what retention left of it)."""
        return _stored(self.redis.hgetall(self.key(ref)))

    def get(self, ref: str) -> dict[str, str] | None:
        """An item with its personal fields unsealed ("" when not given, "?" when unreadable)."""
        return self._unsealed(self.raw(ref))

    def _unsealed(self, data: dict[str, str] | None) -> dict[str, str] | None:
        if data is None:
            return None
        for name in self.SEALED:
            token = data.get(name, "")
            data[name] = "" if not token else self.sealer.unseal(token) or "?"
        return data

    def _index(self, statuses: set[str]) -> list[str]:
        # Open and taken items are in the open index; any other status needs the index of all.
        index = self.OPEN if statuses <= set(OPEN_STATUSES) else self.ALL
        return [r.decode() for r in self.redis.zrange(index, 0, -1)]

    def refs(self, statuses: Iterable[str] = OPEN_STATUSES) -> list[str]:
        """References in order of creation."""
        statuses = set(statuses)
        refs = self._index(statuses)
        if statuses >= set(self.STATUSES):
            return refs
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hget(self.key(ref), "status")
        return [ref for ref, st in zip(refs, pipe.execute(), strict=True)
                if st is not None and st.decode() in statuses]

    def items(self, statuses: Iterable[str] = OPEN_STATUSES) -> Iterator[tuple[str, dict[str, str]]]:
        """(reference, item unsealed) of those in `statuses`, in order of creation: two round trips in all
        (the index, then every item in one pipeline), not one an item."""
        statuses = set(statuses)
        refs = self._index(statuses)
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hgetall(self.key(ref))
        for ref, raw in zip(refs, pipe.execute(), strict=True):
            data = _stored(raw)
            if data is not None and data.get("status") in statuses:
                yield ref, self._unsealed(data)

    def history(self, ref: str) -> list[AuditEntry]:
        out = []
        for _, fields in self.redis.xrange(self.audit_key(ref)):
            f = {k.decode(): v.decode() for k, v in fields.items()}
            detail = f.get("detail", "")
            if f.get("action") == NOTE and detail:
                detail = self.sealer.unseal(detail) or "(a note sealed with another key)"
            out.append(AuditEntry(f.get("at", ""), f.get("by", ""), f.get("action", ""), detail))
        return out

    # --- staff: take and done -------------------------------------------------------------------
    def take(self, ref: str, by: str) -> str:
        """Give an open item to `by`; an error if someone else has it or it is closed."""
        ref, by = self.check_ref(ref), self.check_staff(by)

        def change(pipe, status: str, owner: str) -> str | None:
            if status == "taken" and owner == by:
                return "already yours"
            if status == "taken":
                raise self.Error(f"{self.NOUN} {ref} is already taken by {owner}")
            if status != "open":
                raise self.Error(self._closed(ref, status, "take"))
            now = self._now()
            pipe.multi()
            pipe.hset(self.key(ref), mapping={"status": "taken", "taken_by": by, "taken_at": now, "updated": now})
            self._audit(pipe, ref, by, "taken")
            return None

        return self._transition(ref, change) or "taken"

    def done(self, ref: str, by: str) -> str:
        """Mark an item done (taking it first if nobody had); an error if someone else has it."""
        ref, by = self.check_ref(ref), self.check_staff(by)

        def change(pipe, status: str, owner: str) -> str | None:
            if status not in OPEN_STATUSES:
                raise self.Error(self._closed(ref, status, "done"))
            if status == "taken" and owner != by:
                raise self.Error(f"{self.NOUN} {ref} is taken by {owner}; only they can mark it done")
            now = self._now()
            closing = self._closing(pipe, ref)
            pipe.multi()
            values = {"status": "done", "done_by": by, "done_at": now, "updated": now}
            if status == "open":
                values.update(taken_by=by, taken_at=now)
                self._audit(pipe, ref, by, "taken")
            pipe.hset(self.key(ref), mapping=values)
            pipe.zrem(self.OPEN, ref)
            closing(pipe)
            self._audit(pipe, ref, by, "done")
            return None

        return self._transition(ref, change) or "done"

    def _closed(self, ref: str, status: str, doing: str) -> str:
        """What staff are told when they `doing` (take, done ...) an item that is closed (`status`)."""
        return f"{self.NOUN} {ref} is already {status}"

    def _closing(self, pipe, ref: str) -> Callable[[object], None]:
        """Read (under WATCH) what closing `ref` must also change; returns what queues that (inside MULTI)."""
        return lambda pipe: None

    def _transition(self, ref: str, change) -> str | None:
        """`change(pipe, status, owner)` under WATCH of the item: it queues its writes after `pipe.multi()`
        and returns None (they are made, durably), or returns a result with nothing to write."""
        key = self.key(ref)
        for _ in range(20):
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(key)
                    status, owner = pipe.hmget(key, "status", "taken_by")
                    if status is None or status == PURGED.encode():
                        raise self.missing(ref)
                    result = change(pipe, status.decode(), (owner or b"").decode())
                    if result is None:
                        pipe.execute()
                        self._durable()
                    return result
            except redis.WatchError:
                continue        # someone changed it at the same moment: look again
        raise self.Error(f"{self.NOUN} {ref} is changing too often; try again")

    # --- retention (ivr/jobs/retention.py decides what is due) ---------------------------------------
    def retention_view(self) -> list[tuple[str, dict[str, str]]]:
        """Every item's reference with the fields retention looks at, in two round trips."""
        refs = [r.decode() for r in self.redis.zrange(self.ALL, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hmget(self.key(ref), *self.RETENTION_FIELDS)
        return [(ref, {k: (v or b"").decode() for k, v in zip(self.RETENTION_FIELDS, values, strict=True)})
                for ref, values in zip(refs, pipe.execute(), strict=True) if values[0] is not None]

    def delete_message(self, ref: str, before: datetime, detail: str) -> str | None:
        """Forget the caller's message of an item due for retention at `before` (`_due`; the caller deletes
        the file): its former path, or None when there is nothing to do (any more)."""
        def change(pipe, item: dict[str, str]) -> str | None:
            if not self._due(item, before) or not item["recording_file"]:
                return None
            now = self._now()
            pipe.multi()
            pipe.hset(self.key(ref), mapping={"recording_file": "", "recording_deleted": now, "updated": now})
            self._audit(pipe, ref, "retention", "message deleted (retention period)", detail)
            return item["recording_file"]
        return self._retention_change(ref, change)

    def _due(self, item: Mapping[str, str], before: datetime) -> bool:
        """Whether retention may delete (the message of) an item closed before `before`."""
        raise NotImplementedError

    def _retention_change(self, ref: str, change) -> str | None:
        """Check and change under WATCH: a hold placed, or a second purge, at the same moment wins or waits."""
        key = self.key(ref)
        for _ in range(20):
            try:
                with self.redis.pipeline() as pipe:
                    pipe.watch(key)
                    values = pipe.hmget(key, *self.RETENTION_FIELDS)
                    if values[0] is None:
                        return None         # gone: another purge got there first
                    result = change(pipe, {k: (v or b"").decode()
                                           for k, v in zip(self.RETENTION_FIELDS, values, strict=True)})
                    if result is None:
                        pipe.unwatch()
                        return None
                    pipe.execute()
            except redis.WatchError:
                continue
            self._durable()
            return result
        return None                         # changing all the time: the next purge looks again

    # --- internals ------------------------------------------------------------------------------
    def _audit(self, pipe, ref: str, by: str, action: str, detail: str = "") -> None:
        pipe.xadd(self.audit_key(ref), {"at": self._now(), "by": by, "action": action, "detail": detail[:300]})

    def _seal(self, value: str) -> str:
        return self.sealer.seal(value) if value else ""

    def _now(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds")


# --- shown to staff (the console and the CLI) -----------------------------------------------------

def local(stamp: str, zone) -> str:  # noqa: ANN001 - a tzinfo
    """A stored time in `zone` to the minute ("" for none; as stored when it cannot be read)."""
    try:
        return datetime.fromisoformat(stamp).astimezone(zone).strftime("%Y-%m-%d %H:%M") if stamp else ""
    except (ValueError, TypeError):
        return stamp or ""


def write_csv(out, fields: Sequence[str], rows: Iterable[Mapping[str, str]]) -> int:  # noqa: ANN001 - a text file
    """Items as CSV (a header, then one row each) with no cell a spreadsheet would run as a formula; how many."""
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({k: cell(v) for k, v in row.items()})
        count += 1
    return count


def cell(value: str) -> str:
    """A spreadsheet must not run a cell as a formula (CSV injection)."""
    if not isinstance(value, str) or not value:
        return value
    if value[0] in "=@\t\r" or (value[0] in "+-" and not value[1:].replace(".", "", 1).isdigit()):
        return "'" + value
    return value
