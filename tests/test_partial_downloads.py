"""A worker killed mid-download (kill -9: no `finally` runs) leaves nothing behind once a worker starts
again, and a download still in progress in another worker is left alone."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import responses

from ivr.domain import recordings
from ivr.domain.published import audio_dir
from ivr.jobs import worker as jobs
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, ROOT
from tests.conftest import TEST_REDIS_URL
from tests.test_inmate_recordings import AUDIO, message_on, store_of

# A worker whose download is cut short by SIGKILL after Twilio's first bytes arrived.
KILLED_WORKER = """
import io, os, signal, sys
import redis, responses
from ivr.jobs import worker as jobs
from ivr import settings

class Dies(io.RawIOBase):
    reads = 0
    def readable(self):
        return True
    def readinto(self, b):
        self.reads += 1
        if self.reads > 1:
            os.kill(os.getpid(), signal.SIGKILL)
        b[:] = b"\\xff" * len(b)
        return len(b)

config = settings.from_env()
worker = jobs.Worker(jobs.JobContext(config, redis.Redis.from_url(config["REDIS_URL"])), name="doomed")
with responses.RequestsMock() as twilio:
    twilio.get(sys.argv[1] + ".mp3", body=io.BufferedReader(Dies()))
    worker.run_once()
"""


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*")) if folder.exists() else []


def test_a_worker_killed_mid_download_leaves_nothing_once_a_worker_starts(app, redis_client, monkeypatch):
    ref, url = message_on(app, DEV_ACCOUNT_SID)
    env = {**os.environ, "IVR_ENV": "test", "REDIS_URL": TEST_REDIS_URL, "IVR_DATA_DIR": str(app.config["DATA_DIR"])}
    killed = subprocess.run([sys.executable, "-c", KILLED_WORKER, url], env=env, cwd=ROOT, timeout=120)
    assert killed.returncode == -9
    folder = Path(app.config["DATA_DIR"]) / "requests" / ref
    assert len(leftovers(folder)) == 1                     # what the killed download had written
    assert not store_of(app).get(ref).get("recording_file")

    worker = jobs.Worker(jobs.JobContext(app.config, redis_client), name="next")
    worker.start_up()
    assert leftovers(folder) == []
    # The job the killed worker held is claimed again and the message downloaded whole.
    monkeypatch.setattr(jobs, "CLAIM_IDLE_MS", 0)
    with responses.RequestsMock() as twilio:
        twilio.get(url + ".mp3", body=AUDIO)
        assert worker.run_once() == 1
    with open(store_of(app).get(ref)["recording_file"], "rb") as f:
        assert f.read() == AUDIO
    assert [p.name for p in folder.iterdir()] == [url.rsplit("/", 1)[1] + ".mp3"]


class Slow(io.RawIOBase):
    """Twilio's answer, held after its first bytes until `go` is set."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.reads = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self.reads += 1
        if self.reads == 1:
            b[:10] = AUDIO[:10]
            return 10
        if self.reads == 2:
            self.go.wait(30)
            b[:len(AUDIO) - 10] = AUDIO[10:]
            return len(AUDIO) - 10
        return 0


def test_a_starting_worker_leaves_a_download_in_progress_alone_and_removes_a_dead_ones(app, redis_client):
    folder = audio_dir(app.config)
    folder.mkdir(parents=True)
    dead = folder / f".RE{'d' * 32}.k1ll3d_x.part"       # a staff recording's download, killed earlier
    dead.write_bytes(AUDIO[:10])
    url = f"https://api.twilio.com/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Recordings/RE{'a' * 32}"
    body = Slow()
    done: list = []
    with responses.RequestsMock() as twilio:
        twilio.get(url + ".mp3", body=io.BufferedReader(body))
        download = threading.Thread(target=lambda: done.append(
            recordings.download(url, folder, DEV_ACCOUNT_SID, DEV_AUTH_TOKEN)))
        download.start()
        try:
            deadline = time.monotonic() + 20
            # Until the download is inside its locked write (its second read waits on `go`): the file
            # exists a moment before it is locked, and a sweep in that moment takes it, by design.
            while (body.reads < 2 or len(leftovers(folder)) < 2) and time.monotonic() < deadline:
                time.sleep(0.01)
            in_progress = [name for name in leftovers(folder) if name != dead.name]
            assert len(in_progress) == 1
            jobs.Worker(jobs.JobContext(app.config, redis_client), name="starting").start_up()
            assert leftovers(folder) == in_progress          # the live one kept, the dead one gone
        finally:
            body.go.set()
            download.join()
    assert done and done[0].read_bytes() == AUDIO and leftovers(folder) == []
