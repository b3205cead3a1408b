"""gunicorn settings for the `web:` line: refuse a public bind on implicit development, one control socket
each, and /metrics summed over the workers (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

from ivr import settings

# gunicorn's control socket defaults to one path per user: the web server, the SDU stub and a second
# web host on the same machine would all answer `gunicornc` on the same socket. One per master.
control_socket = os.path.join(tempfile.gettempdir(), f"ivr-web-{os.getpid()}.ctl")
_made: list[str] = []      # the metrics directory this master made (removed on exit)


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """Before any worker: a deploy that forgot IVR_ENV fails here, loudly, instead of serving dev keys."""
    hosts = []
    for address in server.cfg.address:
        if isinstance(address, tuple):
            hosts.append(str(address[0]))
    try:
        config = settings.from_env()      # production's checks too (and Sentinel's), once, in the master
        settings.check_listen(config, hosts)
    except settings.ConfigError as exc:
        server.log.error("%s", exc)
        raise SystemExit(3) from exc
    metrics_dir(server)


def metrics_dir(server) -> str:  # noqa: ANN001
    """The directory where each worker keeps its metrics for /metrics to sum (prometheus_client's
    multiprocess mode): PROMETHEUS_MULTIPROC_DIR when set, else a new private one. Set before the
    workers fork, so they inherit it; emptied first, or a restarted server would add its last run's
    counts (one directory per master: two servers sharing one would wipe each other's)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = tempfile.mkdtemp(prefix="ivr-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        _made.append(path)
    server.log.info("metrics of the workers in %s", path)
    return path


def on_exit(server) -> None:  # noqa: ANN001
    """The private metrics directory goes with the server that made it."""
    for path in _made:
        shutil.rmtree(path, ignore_errors=True)


def child_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """A worker gone (killed, restarted): its live gauges (the SDU breaker's state) stop counting; its
    counters and histograms are kept, summed with the others'."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
