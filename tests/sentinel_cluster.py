"""A private Redis master, its replicas and three Sentinels on free loopback ports, for failover tests.

    with SentinelCluster(tmp_path) as cluster:
        env = cluster.env(db=15)          # REDIS_SENTINELS, REDIS_SENTINEL_MASTER, REDIS_URL
        cluster.kill_master()             # kill -9; cluster.wait_failover() returns the new master's port

With `sentinel_password` the Sentinels ask for it (sentinel.conf `requirepass`, which they also use with
each other); with `master_password` the master and replicas ask for theirs (`requirepass`, `masterauth`)
and the Sentinels are given it (`sentinel auth-pass`). `cluster.client(port)` signs in as each needs.

Every process is started here and stopped by its own pid; nothing touches the shared test Redis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.redis_server import free_port

NAME = "ivrtest"
DOWN_AFTER_MS = 1000


class SentinelCluster:
    def __init__(self, directory: Path, replicas: int = 2, sentinels: int = 3, *,
                 sentinel_password: str | None = None, master_password: str | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            pytest.skip("redis-server is not installed")
        self.dir = Path(directory)
        self.ports = [free_port() for _ in range(1 + replicas)]     # the first starts as master
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.procs: dict[int, subprocess.Popen] = {}
        self.master_port = self.ports[0]
        self.sentinel_password = sentinel_password
        self.master_password = master_password

    # --- processes ---
    def _start(self, port: int, args: list[str]) -> None:
        folder = self.dir / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen([self.binary, *args], cwd=folder, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

    def start(self) -> SentinelCluster:
        for port in self.ports:
            # No diskless-sync delay: by default a master waits 5 s for more replicas before the first sync.
            args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                    "--appendfsync", "always", "--dir", str(self.dir / str(port)), "--loglevel", "warning",
                    "--logfile", "redis.log", "--repl-diskless-sync-delay", "0"]
            if port != self.master_port:
                args += ["--replicaof", "127.0.0.1", str(self.master_port)]
            if self.master_password:
                args += ["--requirepass", self.master_password, "--masterauth", self.master_password]
            self._start(port, args)
        # Sentinels started after the replicas are in sync list them from their first INFO of the master,
        # not 10 s later at the next.
        self.wait_ready(sentinels=False)
        for port in self.sentinel_ports:
            folder = self.dir / str(port)
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {folder}", "logfile sentinel.log",
                f"sentinel monitor {NAME} 127.0.0.1 {self.master_port} 2",
                f"sentinel down-after-milliseconds {NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {NAME} 4000",
                f"sentinel parallel-syncs {NAME} 2",
                *([f"sentinel auth-pass {NAME} {self.master_password}"] if self.master_password else []),
                *([f"requirepass {self.sentinel_password}"] if self.sentinel_password else []), ""]))
            self._start(port, [str(conf), "--sentinel"])
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30, sentinels: bool = True) -> None:
        """Replicas online and acknowledging writes, and (`sentinels`) every Sentinel knowing the replicas and
        the other Sentinels (without those, a failover finds no majority to elect its leader)."""
        deadline = time.monotonic() + timeout
        want_replicas, want_others = len(self.ports) - 1, len(self.sentinel_ports) - 1
        while True:
            try:
                master = self.client(self.master_port)
                replication = master.info("replication")
                states = [replication.get(f"slave{i}", {}).get("state") for i in range(want_replicas)]
                # "online" and acknowledging: WAIT counts a replica only once its initial sync is done,
                # which takes seconds on a loaded machine even after INFO lists it.
                up = states == ["online"] * want_replicas
                if up:
                    master.set("ivrtest:ready", "1")
                    up = int(master.execute_command("WAIT", want_replicas, 200)) == want_replicas
                for port in self.sentinel_ports if sentinels else ():
                    s = self.client(port)
                    up = up and len(s.sentinel_slaves(NAME)) == want_replicas \
                        and len(s.sentinel_sentinels(NAME)) == want_others
                if up:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Sentinel cluster did not get ready in {timeout:.0f}s (logs: {self.dir})")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    def __enter__(self) -> SentinelCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what a test does ---
    def client(self, port: int, db: int = 0) -> redis.Redis:
        password = self.sentinel_password if port in self.sentinel_ports else self.master_password
        return redis.Redis(host="127.0.0.1", port=port, db=db, password=password, socket_timeout=2,
                           socket_connect_timeout=1)

    def env(self, db: int) -> dict[str, str]:
        """The app's Redis settings, the Sentinels' password (if any) left for the test to give or not."""
        # REDIS_URL names a port nothing listens on: with Sentinel only its database number and password count.
        secret = f":{self.master_password}@" if self.master_password else ""
        return {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports),
                "REDIS_SENTINEL_MASTER": NAME, "REDIS_URL": f"redis://{secret}127.0.0.1:1/{db}"}

    def kill_master(self) -> int:
        """kill -9 the current master; its port."""
        port = self.master_port
        os.kill(self.procs[port].pid, signal.SIGKILL)
        self.procs[port].wait(5)
        return port

    def pause(self, port: int) -> None:
        os.kill(self.procs[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self.procs[port].pid, signal.SIGCONT)

    def wait_failover(self, old: int, timeout: float = 30) -> float:
        """Seconds until the Sentinels name a master other than `old` and it answers as master."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(redis.RedisError, TypeError):
                _, port = self.client(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(NAME)
                if int(port) != old and self.client(int(port)).info("replication")["role"] == "master":
                    self.master_port = int(port)
                    return time.monotonic() - started
            time.sleep(0.1)
        raise RuntimeError(f"no failover within {timeout:.0f}s (logs: {self.dir})")
