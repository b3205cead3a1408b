"""The inmate requests' background jobs: the caller's message into the system's own storage, then off
Twilio; and, at a worker's start, resealing old requests and sweeping half-downloaded messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import requests

from ivr.domain import recordings
from ivr.domain.requests import DELETE_JOB, RECORDING_JOB, RequestStore
from ivr.jobs.queue import GiveUp, JobContext, RetryLater, at_start, job
from ivr.sealing import Sealer

log = logging.getLogger("ivr.inmate")

# The HTTP sessions recording downloads and deletions use (tests swap in ones without back-off).
http_session: Callable[[], requests.Session] = recordings.session
delete_session: Callable[[], requests.Session] = recordings.delete_session

def _job_store(ctx: JobContext) -> RequestStore:
    return RequestStore(ctx.redis, Sealer.from_config(ctx.config))


def _job_request(payload: dict, ctx: JobContext) -> tuple[RequestStore, str, dict[str, str], str | None]:
    """(store, reference, the request as stored, the job's recording URL or None when it cannot be unsealed);
    GiveUp when the request is gone. The URL is sealed by this version, plain in jobs an older one queued."""
    store, ref = _job_store(ctx), str(payload.get("ref", ""))
    request = store.raw(ref)
    if request is None:
        raise GiveUp(f"no request {ref}")
    return store, ref, request, store.open_url(str(payload.get("url", "")))


@job(RECORDING_JOB)
def fetch_recording(payload: dict, ctx: JobContext) -> None:
    store, ref, request, url = _job_request(payload, ctx)
    account, token = ctx.config["TWILIO_ACCOUNT_SID"], ctx.config["TWILIO_AUTH_TOKEN"]
    if url is None:
        store.recording_failed(ref, "the recording URL cannot be unsealed (was IVR_SECRET_KEY changed?)", True)
        raise GiveUp(f"request {ref}: recording URL cannot be unsealed")
    if store.open_url(request.get("recording_url", "")) != url:
        return      # the caller recorded again: the newer message has its own job
    try:
        sid = recordings.check_url(url, account)
        have = request.get("recording_file")
        if have and Path(have).name == f"{sid}.mp3" and Path(have).exists():
            return      # done already (a redelivered job)
        path = recordings.download(url, Path(ctx.config["DATA_DIR"]) / "requests" / ref, account, token,
                                   http=http_session())
    except recordings.RecordingError as exc:
        store.recording_failed(ref, str(exc), exc.permanent)
        if exc.permanent:
            raise GiveUp(str(exc)) from exc
        raise RetryLater(str(exc)) from exc
    delete = recordings.account_configured(account)
    if not delete:
        _warn_no_account()
    store.recording_saved(ref, str(path), url, delete=delete)


@job(DELETE_JOB)
def delete_twilio_copy(payload: dict, ctx: JobContext) -> None:
    """Delete Twilio's copy of a message the system holds. A failure keeps the request and the file, says so
    on the request (`ivr requests show`), and is tried again (jobs.py: ~25 minutes, then the dead letters)."""
    store, ref, request, url = _job_request(payload, ctx)
    account, token = ctx.config["TWILIO_ACCOUNT_SID"], ctx.config["TWILIO_AUTH_TOKEN"]
    if url is None:
        store.twilio_copy_not_deleted(ref, "the recording URL cannot be unsealed", again=False)
        raise GiveUp(f"request {ref}: recording URL cannot be unsealed")
    if not recordings.account_configured(account):
        _warn_no_account()
        store.twilio_copy_kept(ref)
        return
    try:
        sid = recordings.check_url(url, account)
    except recordings.RecordingError as exc:
        store.twilio_copy_not_deleted(ref, str(exc), again=False)
        raise GiveUp(str(exc)) from exc
    # Never delete the only copy: the system's own file of this very recording must be there.
    have = Path(request.get("recording_file") or "")
    if have.name != f"{sid}.mp3" or not have.is_file() or have.stat().st_size == 0:
        store.twilio_copy_not_deleted(ref, "no local copy of this recording: Twilio's copy is kept", again=False)
        raise GiveUp(f"request {ref}: no local copy, Twilio's copy kept")
    try:
        was_there = recordings.delete(url, account, token, http=delete_session())
    except recordings.RecordingError as exc:
        log.warning("request %s: Twilio's copy of the message was not deleted: %s", ref, exc)
        store.twilio_copy_not_deleted(ref, str(exc), again=not exc.permanent)
        if exc.permanent:
            raise GiveUp(str(exc)) from exc
        raise RetryLater(str(exc)) from exc
    store.twilio_copy_deleted(ref, was_there)


@at_start
def reseal_legacy_requests(ctx: JobContext) -> None:
    _job_store(ctx).reseal_legacy()


@at_start
def reseal_rotated_requests(ctx: JobContext) -> None:
    _job_store(ctx).reseal_rotated()


@at_start
def sweep_partial_messages(ctx: JobContext) -> None:
    """What a worker killed mid-download left (a part of a caller's message) is removed at the next start."""
    recordings.sweep_partial(Path(ctx.config["DATA_DIR"]) / "requests")


_warned_no_account = False


def _warn_no_account() -> None:
    global _warned_no_account
    if not _warned_no_account:
        _warned_no_account = True
        log.warning("TWILIO_ACCOUNT_SID is not configured (development): callers' messages are downloaded "
                    "but not deleted from Twilio")
