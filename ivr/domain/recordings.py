"""Downloading a call recording from Twilio into the system's own storage, and deleting Twilio's copy.

Only Twilio's recording URLs for our own account are fetched (or deleted): a RecordingUrl comes from a
webhook request, so anything else would let whoever can post to us make the server fetch an address of
their choosing.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ivr.settings import DEV_ACCOUNT_SID

log = logging.getLogger("ivr.recordings")

TWILIO_HOST = re.compile(r"^api(\.[a-z0-9-]+)*\.twilio\.com$")
RECORDING_PATH = re.compile(
    r"^/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Recordings/(RE[0-9a-fA-F]{32})(\.(mp3|wav))?$")
# A download's temp file (this version's, with .part; older versions' without): only sweep_partial removes one.
PARTIAL = re.compile(r"^\.RE[0-9a-fA-F]{32}\.\w+(\.part)?$")
MAX_BYTES = 20 * 1024 * 1024   # a 2-minute recording is well under 2 MB as MP3
RETRY_AFTER_MAX = 30.0         # seconds: the job queue retries later anyway; one answer must not stall the worker


class CappedRetry(Retry):
    """urllib3's Retry, but a server's Retry-After is waited for at most RETRY_AFTER_MAX seconds."""

    def get_retry_after(self, response) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, RETRY_AFTER_MAX)


class RecordingError(RuntimeError):
    """The recording cannot be fetched, now or ever (see `permanent`)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def check_url(url: str, account_sid: str) -> str:
    """The recording SID of a Twilio recording URL of our account, or RecordingError (permanent)."""
    parts = urlsplit(url or "")
    match = RECORDING_PATH.match(parts.path)
    twilio_host = TWILIO_HOST.match(parts.hostname or "") and parts.port in (None, 443)
    if parts.scheme != "https" or not twilio_host or parts.username or parts.password or not match:
        raise RecordingError("not a Twilio recording URL", permanent=True)
    if match.group(1) != account_sid:
        raise RecordingError("a recording of another Twilio account", permanent=True)
    return match.group(2)


def _retrying_session(method: str, statuses: tuple[int, ...], retries: int, backoff: float) -> requests.Session:
    s = requests.Session()
    retry = CappedRetry(total=retries, backoff_factor=backoff, status_forcelist=statuses,
                        allowed_methods=frozenset({method}), respect_retry_after_header=True, raise_on_status=False)
    s.mount("https://", HTTPAdapter(max_retries=retry))
    return s


def session(retries: int = 4, backoff: float = 0.5) -> requests.Session:
    # A recording can answer 404 for a few seconds after the call ends, until Twilio has stored it.
    return _retrying_session("GET", (404, 429, 500, 502, 503, 504), retries, backoff)


def delete_session(retries: int = 3, backoff: float = 0.5) -> requests.Session:
    # DELETE is idempotent, so a retry after a lost answer is safe. No 404 here: it means already gone.
    return _retrying_session("DELETE", (429, 500, 502, 503, 504), retries, backoff)


def account_configured(account_sid: str) -> bool:
    """False for no TWILIO_ACCOUNT_SID, or the development placeholder settings.py puts in its place."""
    return bool(account_sid) and account_sid != DEV_ACCOUNT_SID


def delete(url: str, account_sid: str, auth_token: str, http: requests.Session | None = None) -> bool:
    """Delete the recording from Twilio (REST API): True when deleted now, False when it was already gone.

    RecordingError when Twilio did not delete it (the caller keeps it and tries again later).
    """
    sid = check_url(url, account_sid)
    # The recording's own (checked) Twilio host: api.twilio.com, or a regional one for a regional account.
    host = urlsplit(url).hostname
    endpoint = f"https://{host}/2010-04-01/Accounts/{account_sid}/Recordings/{sid}.json"
    http = http or delete_session()
    try:
        resp = http.delete(endpoint, auth=(account_sid, auth_token), timeout=(3, 15), allow_redirects=False)
    except requests.RequestException as exc:
        raise RecordingError(f"deleting recording {sid}: {type(exc).__name__}") from exc
    if resp.status_code == 404:
        log.info("recording %s was already gone from Twilio", sid)
        return False
    if resp.status_code not in (200, 204):
        raise RecordingError(f"deleting recording {sid}: HTTP {resp.status_code}",
                             permanent=resp.status_code in (401, 403))
    log.info("deleted recording %s from Twilio", sid)
    return True


def mp3_url(url: str) -> str:
    """A Twilio recording's URL as MP3 (Twilio serves either; the bare URL gives a larger WAV)."""
    return url if url.endswith(".mp3") else re.sub(r"\.wav$", "", url) + ".mp3"


def download(url: str, dest_dir: Path, account_sid: str, auth_token: str,
             http: requests.Session | None = None) -> Path:
    """Fetch the recording as MP3 into dest_dir (atomically) and return its path."""
    sid = check_url(url, account_sid)
    media = mp3_url(url)
    http = http or session()
    try:
        resp = http.get(media, auth=(account_sid, auth_token), timeout=(3, 20), stream=True,
                        allow_redirects=False)
    except requests.RequestException as exc:
        raise RecordingError(f"recording {sid}: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise RecordingError(f"recording {sid}: HTTP {resp.status_code}",
                             permanent=resp.status_code in (401, 403))
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{sid}.mp3"
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{sid}.", suffix=".part")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            # Locked until renamed, or until this process dies (kill -9 runs no `finally`): a starting
            # worker's sweep_partial removes only the temp files no live download holds.
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)
            try:
                for chunk in resp.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > MAX_BYTES:
                        raise RecordingError(f"recording {sid}: larger than {MAX_BYTES} bytes", permanent=True)
                    out.write(chunk)
            except requests.RequestException as exc:    # cut off mid-body: tried again, shown on the request
                raise RecordingError(f"recording {sid}: {type(exc).__name__} during the download") from exc
            # On disk before the name says it is there: Twilio's copy is deleted once it is (ivr/jobs/recordings.py).
            out.flush()
            os.fsync(out.fileno())
            if size == 0:
                raise RecordingError(f"recording {sid}: empty")
            os.replace(tmp, target)     # while still locked: a sweep never takes a finished file
        _fsync_dir(dest_dir)        # the rename itself, so a crash cannot undo it
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("downloaded recording %s (%d bytes)", sid, size)
    return target


def sweep_partial(folder: Path) -> int:
    """Remove the temp files of downloads whose process died mid-way, in `folder` and below; return how
    many. A download in progress holds its file's lock and is left alone (one that starts in the instant
    between creating its file and locking it fails and is tried again: nothing partial is kept)."""
    removed = 0
    for path in folder.rglob(".RE*") if folder.is_dir() else ():
        if not PARTIAL.match(path.name):
            continue
        try:
            fd = os.open(path, os.O_RDWR)   # writable: an exclusive lock over NFS needs it
        except OSError:
            continue                        # renamed or removed meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue                        # a live download's
        else:
            path.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    if removed:
        log.warning("removed %d partial download(s) under %s left by a worker stopped mid-download", removed, folder)
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
