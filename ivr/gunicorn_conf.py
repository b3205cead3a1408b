"""gunicorn settings for the `web:` line: refuse a public bind on implicit development, one control socket each."""

from __future__ import annotations

import os
import tempfile

from ivr import settings

# gunicorn's control socket defaults to one path per user: the web server, the SDU stub and a second
# web host on the same machine would all answer `gunicornc` on the same socket. One per master.
control_socket = os.path.join(tempfile.gettempdir(), f"ivr-web-{os.getpid()}.ctl")


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
