"""Retention: deleting what is kept past its period (`ivr purge`, and the worker once an hour).

What is kept, and how long (days, `IVR_RETAIN_<KIND>_DAYS`; defaults in ivr/settings.py and the README):

- REQUESTS: a done request, with its audit trail and its message file, after that many days from `done`.
  Open and taken requests are never deleted, nor one on legal hold (`ivr requests hold`). What is left
  is the reference alone in `ivr:req:purged` (see ivr/domain/requests.py).
- RECORDINGS: the caller's message of a done request (their voice, name and date of birth), sooner:
  the file goes, the request says when.
- PROMPT_AUDIO: staff recordings no caller has heard for that long (replaced, rolled back, cleared),
  except the version a rollback goes back to.
- DEAD_LETTERS: jobs in `ivr:jobs:dead` older than that.
- CALLBACKS: a done or expired callback, with its history and the caller's message, after that many days
  from when it was closed (open and taken callbacks are never deleted; callbacks have no legal hold).
  The message goes sooner when RECORDINGS is shorter. Only the reference is left (ivr/domain/callbacks.py).
- TEXTS: the record of a text (sealed number, consent time, delivery status) after that many days without
  a change. The STOP and landline markers are kept (they name no number, and keep an opted-out number
  from being texted).

Call state, PIN-guess counters and locks expire by themselves (TTL); staff accounts are kept (audit
trails name them, and a kept ID is never given to someone else).

Every deletion is checked and done in one Redis transaction per item (WATCH), files after the index,
so purges may run on several workers at once and again after a crash: each item goes once.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from ivr.domain import callbacks as cb
from ivr.domain.published import Library, audio_dir
from ivr.domain.requests import PURGED, RequestStore
from ivr.domain.texts import TextStore
from ivr.domain.workitems import REF_RE
from ivr.jobs import queue as jobs
from ivr.sealing import Sealer

log = logging.getLogger("ivr.retention")

DUE = "ivr:retention:due"      # set for an hour by the worker that purges: the others wait for it to expire
EVERY = 3600                   # seconds between purges by the workers
clock: Callable[[], datetime] = lambda: datetime.now(UTC)   # noqa: E731 (tests set their own)


@dataclass
class Report:
    """How many of each kind were (or, in a dry run, would be) deleted. Counts only: no personal data."""
    requests: int = 0
    messages: int = 0
    prompt_audio: int = 0
    dead_letters: int = 0
    held: int = 0          # done requests past a period, kept for a legal hold
    callbacks: int = 0
    callback_messages: int = 0
    texts: int = 0

    def total(self) -> int:
        return (self.requests + self.messages + self.prompt_audio + self.dead_letters + self.callbacks
                + self.callback_messages + self.texts)


def days(config: Mapping, kind: str) -> timedelta:
    return timedelta(days=config[f"RETAIN_{kind}_DAYS"])


def due_dates(req: Mapping[str, str], config: Mapping) -> tuple[datetime, datetime] | None:
    """When a done request's message, then the request itself, may be deleted; None when not done (or
    its done time cannot be read: kept)."""
    if req.get("status") != "done":
        return None
    try:
        done = datetime.fromisoformat(req.get("done_at", ""))
    except ValueError:
        return None
    request = done + days(config, "REQUESTS")
    return min(done + days(config, "RECORDINGS"), request), request       # a message never outlives its request


def purge(r: redis.Redis, config: Mapping, now: datetime, dry_run: bool = False) -> Report:
    """Delete (or count, with `dry_run`) everything past its retention period at `now`."""
    report = Report()
    _requests(r, config, now, dry_run, report)
    report.prompt_audio = Library(r).purge_audio(audio_dir(config), now - days(config, "PROMPT_AUDIO"), dry_run)
    report.dead_letters = _dead_letters(r, now - days(config, "DEAD_LETTERS"), dry_run)
    _callbacks(r, config, now, dry_run, report)
    _texts(r, config, now, dry_run, report)
    return report


def _requests(r: redis.Redis, config: Mapping, now: datetime, dry_run: bool, report: Report) -> None:
    store = RequestStore(r, Sealer(config["IVR_SECRET_KEY"]), clock=lambda: now)
    folder = Path(config["DATA_DIR"]) / "requests"
    request_cut, message_cut = now - days(config, "REQUESTS"), now - days(config, "RECORDINGS")
    detail = f"kept {config['RETAIN_RECORDINGS_DAYS']} days after the request was done"
    for ref, req in store.retention_view():
        dates = due_dates(req, config)
        if dates is None or dates[0] > now:
            continue
        if req["hold_at"]:
            report.held += 1
        elif dates[1] <= now:
            if dry_run:
                report.requests += 1
            elif (path := store.delete(ref, request_cut)) is not None:
                report.requests += 1
                _remove(folder / ref, path, ref)
        elif req["recording_file"]:
            if dry_run:
                report.messages += 1
            elif (path := store.delete_message(ref, message_cut, detail)) is not None:
                report.messages += 1
                _remove(folder / ref, path, ref)
        elif req["recording_deleted"] and not dry_run:
            _remove(folder / ref, "", ref)         # a purge cut off between the index and the file
    if not dry_run and folder.is_dir():
        # Folders of requests deleted by a purge cut off before their files went. A folder with no request
        # and no record of its deletion is kept: after a loss of Redis it may be all there is.
        names = [p.name for p in folder.iterdir() if p.is_dir()]
        pipe = r.pipeline(transaction=False)
        for name in names:
            pipe.zscore(PURGED, name)
        for name, purged in zip(names, pipe.execute(), strict=True):
            if purged is not None:
                _remove(folder / name, "", name)


def callback_due_dates(data: Mapping[str, str], config: Mapping) -> tuple[datetime, datetime] | None:
    """When a closed callback's message, then the callback itself, may be deleted; None while it is open
    or taken (or its closing time cannot be read: kept)."""
    closed = cb.closed_at(data)
    if closed is None:
        return None
    whole = closed + days(config, "CALLBACKS")
    return min(closed + days(config, "RECORDINGS"), whole), whole


def _callbacks(r: redis.Redis, config: Mapping, now: datetime, dry_run: bool, report: Report) -> None:
    store = cb.CallbackStore(r, Sealer(config["IVR_SECRET_KEY"]), None, clock=lambda: now)

    def queue(pipe, kind: str, payload: dict) -> None:
        jobs.enqueue(r, kind, payload, pipe=pipe)
    folder = Path(config["DATA_DIR"]) / "callbacks"
    cut, message_cut = now - days(config, "CALLBACKS"), now - days(config, "RECORDINGS")
    detail = f"kept {config['RETAIN_RECORDINGS_DAYS']} days after the callback was closed"
    for ref, data in store.retention_view():
        dates = callback_due_dates(data, config)
        if dates is None or dates[0] > now:
            continue
        if dates[1] <= now:
            if dry_run:
                report.callbacks += 1
            elif (path := store.delete(ref, cut, queue=queue)) is not None:
                report.callbacks += 1
                _remove(folder / ref, path, ref, "callbacks")
        elif data["recording_file"]:
            if dry_run:
                report.callback_messages += 1
            elif (path := store.delete_message(ref, message_cut, detail)) is not None:
                report.callback_messages += 1
                _remove(folder / ref, path, ref, "callbacks")
        elif data["recording_deleted"] and not dry_run:
            _remove(folder / ref, "", ref, "callbacks")     # a purge cut off between the record and the file
    if not dry_run and folder.is_dir():
        # Folders of callbacks deleted by a purge cut off before their files went; as for requests, a
        # folder with no callback and no record of its deletion is kept.
        names = [p.name for p in folder.iterdir() if p.is_dir() and REF_RE.match(p.name)]
        for name in names:
            if store.purged_at(name):
                _remove(folder / name, "", name, "callbacks")


def _texts(r: redis.Redis, config: Mapping, now: datetime, dry_run: bool, report: Report) -> None:
    store = TextStore(r, Sealer(config["IVR_SECRET_KEY"]), clock=lambda: now)
    cut = now - days(config, "TEXTS")
    for tid, changed in store.retention_view():
        try:
            due = datetime.fromisoformat(changed) <= cut
        except ValueError:
            continue                                        # its time cannot be read: kept
        if due and (dry_run or store.delete(tid, cut)):
            report.texts += 1


def _remove(folder: Path, path: str, ref: str, kind: str = "requests") -> None:
    """A request's (or callback's) message file and its folder DATA_DIR/<kind>/REF (`path` as the record
    named it, only when it is in a folder of that record, wherever DATA_DIR was then)."""
    file = Path(path) if path else None
    if file is not None and file.parent.name == ref and file.parent.parent.name == kind:
        file.unlink(missing_ok=True)
        if file.parent != folder:
            shutil.rmtree(file.parent, ignore_errors=True)
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:      # left for the next run, which finds the folder again
        log.error("could not delete a %s message folder: %s", kind[:-1], type(exc).__name__)


def _dead_letters(r: redis.Redis, before: datetime, dry_run: bool) -> int:
    """Dead letters are stream entries, whose ids are the time they were added (ms)."""
    cutoff = f"{int(before.timestamp() * 1000)}-0"
    if not dry_run:
        return r.xtrim(jobs.DEAD, minid=cutoff, approximate=False)
    count, start = 0, "-"
    while batch := r.xrange(jobs.DEAD, min=start, max=f"({cutoff}", count=1000):
        count += len(batch)
        start = "(" + batch[-1][0].decode()
    return count


@jobs.periodic
def hourly_purge(ctx: jobs.JobContext) -> None:
    """Run by every worker about once a minute: the first to set DUE purges, the others skip for the hour."""
    if not ctx.redis.set(DUE, "1", nx=True, ex=EVERY):
        return
    report = purge(ctx.redis, ctx.config, clock())
    if report.total() or report.held:
        log.info("retention purge: deleted %d request(s), %d message(s), %d prompt audio file(s), %d dead "
                 "letter(s), %d callback(s), %d callback message(s), %d text record(s); %d request(s) kept "
                 "on legal hold", report.requests, report.messages, report.prompt_audio, report.dead_letters,
                 report.callbacks, report.callback_messages, report.texts, report.held)
