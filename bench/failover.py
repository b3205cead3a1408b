"""`scripts/failover` (or `python -m bench.failover`): the system on several machines, and what a caller
notices when one of them dies.

It builds, on this machine, network namespaces of its own (`ip netns`, veth pairs on a bridge; no
address outside them, nothing on the host's own network), one per machine:
  redis1..3   a Redis master and two replicas (AOF, fsync always), each with a Sentinel beside it
  web1..3     the Procfile's `web:` line (gunicorn), finding the master through the Sentinels
  worker      the Procfile's `worker:` line
  sdu         the Procfile's `sdu:` line (the SDU stub)
  lb          HAProxy, health-checking each web host on /health
  client      this program's callers
Simultaneous simulated calls with human pacing (a few seconds between keys) walk the benchmark's
paths (bench/paths.py) through the load balancer while, phase by phase, the Redis master is killed
(kill -9), then a web host (kill -9 of its gunicorn), then the SDU is frozen (SIGSTOP). It reports
calls answered with a 5xx, calls that heard the fallback message, payment calls that heard "the SDU
cannot answer", the time each failure took to recover from, inmate requests and call backs whose
reference a caller heard that are missing afterwards (must be 0), and p99 per webhook kind in each
phase. Then it backs up a replica's AOF, restores it into a fresh server and looks for every one there.

Needs root (namespaces), iproute2, redis-server and haproxy. Bounded: each phase lasts --phase
seconds, callers stop at the end, stragglers are cut off after 30 s. Every process is stopped by its
own pid and every namespace deleted at the end, also on an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path as FsPath

import redis
import requests

from . import driver
from .paths import PATHS, Path
from .run import commit, machine, tool

ROOT = FsPath(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PREFIX = "ivrfo-"
NET = "10.77.0"
BRIDGE_NS = PREFIX + "net"
MASTER_NAME = "ivr"
TOKEN = "failover-twilio-auth-token"
SECRET = "failover-ivr-secret-key-0123456789abcdef"
SDU_KEY = "dev-sdu-key"
# Passwords, as production sets them (README "Several hosts, Redis Sentinel, backups"): the Redis servers'
# (requirepass, and masterauth for the replicas) and the Sentinels' own.
REDIS_PASSWORD = "failover-redis-password-0123456789"
SENTINEL_PASSWORD = "failover-sentinel-password-0123456789"
HOSTS = {"redis1": 11, "redis2": 12, "redis3": 13, "web1": 21, "web2": 22, "web3": 23, "worker": 31,
         "sdu": 41, "lb": 51, "client": 61}
WEB_PORT, SDU_PORT, LB_PORT, REDIS_PORT, SENTINEL_PORT = 5000, 5001, 8080, 6379, 26379
CLONE_NEWNET = 0x40000000
# What a caller hears once a record for staff is stored, and where it is kept: an inmate request, a call back.
REF_RES = ((re.compile(r"request number is (\d) (\d) (\d), (\d) (\d) (\d)"), "ivr:req:"),
           (re.compile(r"reference number is (\d) (\d) (\d), (\d) (\d) (\d)"), "ivr:cb:"))
SLOW = 1.0      # a webhook slower than this counts as not yet recovered (a caller hears dead air)


class HarnessError(RuntimeError):
    """The harness could not build or run its machines."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def addr(host: str) -> str:
    return f"{NET}.{HOSTS[host]}"


# --- machines -----------------------------------------------------------------------------------------
class Network:
    """The namespaces: one per machine, each with a veth whose other end is on a bridge in BRIDGE_NS."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def build(self) -> None:
        self.cleanup_leftovers()
        ip("netns", "add", BRIDGE_NS)
        self.made.append(BRIDGE_NS)
        ns = ["ip", "netns", "exec", BRIDGE_NS]
        subprocess.run([*ns, "ip", "link", "add", "br0", "type", "bridge"], check=True)
        subprocess.run([*ns, "ip", "link", "set", "br0", "up"], check=True)
        for i, host in enumerate(HOSTS):
            name = PREFIX + host
            ip("netns", "add", name)
            self.made.append(name)
            # Made in the bridge's namespace, one end then moved: nothing ever appears on the host.
            subprocess.run([*ns, "ip", "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0",
                            "netns", name], check=True)
            subprocess.run([*ns, "ip", "link", "set", f"v{i}", "master", "br0", "up"], check=True)
            inside = ["ip", "netns", "exec", name, "ip"]
            subprocess.run([*inside, "addr", "add", f"{addr(host)}/24", "dev", "eth0"], check=True)
            subprocess.run([*inside, "link", "set", "eth0", "up"], check=True)
            subprocess.run([*inside, "link", "set", "lo", "up"], check=True)

    def cleanup_leftovers(self) -> None:
        """Namespaces a killed earlier run left behind (ours only: the prefix)."""
        for line in ip("netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.strip() else ""
            if name.startswith(PREFIX):
                ip("netns", "delete", name, check=False)

    def teardown(self) -> None:
        for name in reversed(self.made):
            ip("netns", "delete", name, check=False)
        self.made.clear()


def enter(host: str) -> None:
    """Move the calling thread into a machine's namespace (threads it starts later go with it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{PREFIX}{host}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise HarnessError(f"setns into {host}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


class Processes:
    """Processes started in namespaces, each in a session of its own (its children go with it)."""

    def __init__(self, logdir: FsPath) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, host: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: FsPath = ROOT) -> subprocess.Popen:
        log = (self.logdir / f"{name}.log").open("wb")
        # `ip netns exec` execs the program: the pid is the program's own.
        proc = subprocess.Popen(["ip", "netns", "exec", PREFIX + host, *argv], cwd=cwd, env=env or os.environ.copy(),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def signal(self, name: str, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)

    def tail(self, name: str, lines: int = 12) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.logdir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.signal(name, signal.SIGCONT)      # a frozen process cannot act on SIGTERM
                self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.signal(name, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
        self.procs.clear()


def procfile(name: str, values: dict[str, str]) -> list[str]:
    """A Procfile line, its ${VAR:-default} filled in, its program from this Python's environment."""
    line = next((ln.split(":", 1)[1] for ln in (ROOT / "Procfile").read_text().splitlines()
                 if ln.startswith(name + ":")), None)
    if line is None:
        raise HarnessError(f"Procfile: no {name}: line")
    line = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: values.get(m.group(1), m.group(2) or ""), line)
    argv = shlex.split(line)
    argv[0] = tool(argv[0])
    return argv


# --- the callers ------------------------------------------------------------------------------------------
@dataclass
class Record:
    start: float
    end: float
    kind: str
    status: int            # 0: no answer at all (connection refused, reset, timeout)
    fallback: bool = False
    sdu_down: bool = False
    path: str = ""
    call: str = ""


@dataclass
class Heard:
    """Phrases the callers listen for, from the prompts themselves."""
    fallback: str
    sdu_down: str

    @classmethod
    def load(cls) -> Heard:
        from ivr.callflow.prompts import Prompts

        prompts = Prompts.load(ROOT / "prompts")
        first = lambda pid: prompts.text(pid, "en", number="", hours="").split(".")[0]   # noqa: E731
        return cls(first("sys.fallback_closed"), first("pay.sdu.down"))


class CallerTransport(driver.BenchTransport):
    """One call's requests through the load balancer, each recorded (time, kind, status, what was heard)."""

    def __init__(self, base_url: str, path: Path, records: list[Record], heard: Heard, stop: threading.Event,
                 pause: float) -> None:
        super().__init__(base_url, TOKEN, path, timeout=20.0)
        self.records, self.heard, self.stop, self.human_pause = records, heard, stop, pause

    def post(self, url: str, params: dict, sign: bool = True) -> tuple[int, str]:
        from urllib.parse import urlencode, urljoin
        if url != "/voice/status":
            if self.posted:
                time.sleep(random.uniform(0.6, 1.4) * self.human_pause)    # a caller listening, then pressing
            if self.stop.is_set():
                raise driver.Stop("over")
        self.posted += 1
        full = urljoin(self.base_url + "/", url)
        headers = {"X-Twilio-Signature": self.validator.compute_signature(full, params)} if sign else {}
        kind = self.kind(url)
        started = time.monotonic()
        try:
            status, body = self.conn.post(full[len(self.base_url):], urlencode(params).encode(), headers)
        except (OSError, EOFError, ValueError):
            self.records.append(Record(started, time.monotonic(), kind, 0, path=self.path.name, call=self.phone.sid))
            raise driver.Stop("no answer") from None
        text = body.decode("utf-8", "replace")
        self.records.append(Record(started, time.monotonic(), kind, status, self.heard.fallback in text,
                                   self.heard.sdu_down in text, self.path.name, self.phone.sid))
        if status >= 500:
            raise driver.Stop("5xx")    # Twilio would go to the Fallback URL: this call is counted errored
        return status, text


@dataclass
class Calls:
    records: list[Record] = field(default_factory=list)
    refs: list[tuple[str, float]] = field(default_factory=list)    # (the record's key, when its reference was heard)
    placed: int = 0
    finished: int = 0


def callers(base_url: str, n: int, pause: float, stop: threading.Event, out: Calls,
            heard: Heard) -> list[threading.Thread]:
    from ivr.callflow.simphone import Phone

    mix = [p for p in PATHS if p.line != "staff" for _ in range(max(1, p.weight))]

    def caller(i: int) -> None:
        rng = random.Random(i)
        time.sleep(rng.uniform(0, pause * 2))     # calls arrive spread out
        while not stop.is_set():
            path = rng.choice(mix)
            # Each call from a number of its own: the PIN guard's per-number limits are not what is tested.
            caller_id = path.caller_id(rng) if path.line != "payments" else f"+1860555{rng.randrange(1000, 9999)}"
            transport = CallerTransport(base_url, path, out.records, heard, stop, pause)
            phone = Phone(transport=transport, to=path.to, caller=caller_id, sid="CA" + uuid.uuid4().hex,
                          account_sid=driver.ACCOUNT_SID)
            transport.bind(phone)
            out.placed += 1
            try:
                phone.place(path.keys)
                out.finished += 1
            except driver.Stop:
                with contextlib.suppress(driver.Stop, OSError):
                    transport.stop = threading.Event()      # the status callback still goes
                    transport.post("/voice/status", driver.status_params(path, phone.sid))
            finally:
                transport.close()
            for pattern, prefix in REF_RES:
                found = pattern.search(phone.said)
                if found:
                    out.refs.append((prefix + "".join(found.groups()), time.monotonic()))

    threads = [threading.Thread(target=caller, args=(i,), daemon=True, name=f"caller-{i}") for i in range(n)]
    for t in threads:
        t.start()
    return threads


# --- the harness -------------------------------------------------------------------------------------------
class Harness:
    def __init__(self, args: argparse.Namespace, say: Callable[[str], None] = print) -> None:
        self.args = args
        self.say = say
        self.workdir = FsPath(tempfile.mkdtemp(prefix="ivr-failover-"))
        self.net = Network()
        self.procs = Processes(self.workdir)
        self.killed: set[str] = set()
        self.started = time.monotonic()
        self.backup_refs: list[str] = []

    # -- building --
    def start_redis(self) -> None:
        for host in ("redis1", "redis2", "redis3"):
            folder = self.workdir / host
            folder.mkdir()
            argv = [tool("redis-server"), "--bind", addr(host), "--port", str(REDIS_PORT), "--dir", str(folder),
                    "--protected-mode", "no", "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                    "--requirepass", REDIS_PASSWORD, "--masterauth", REDIS_PASSWORD]
            if host != "redis1":
                argv += ["--replicaof", addr("redis1"), str(REDIS_PORT)]
            self.procs.start(host, host, argv)
            conf = folder / "sentinel.conf"
            conf.write_text("\n".join([
                f"bind {addr(host)}", f"port {SENTINEL_PORT}", f"dir {folder}", "protected-mode no",
                f"requirepass {SENTINEL_PASSWORD}",
                f"sentinel monitor {MASTER_NAME} {addr('redis1')} {REDIS_PORT} 2",
                f"sentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.args.down_after}",
                f"sentinel failover-timeout {MASTER_NAME} 10000",
                f"sentinel parallel-syncs {MASTER_NAME} 1", ""]))
            self.procs.start(f"sentinel-{host}", host, [tool("redis-server"), str(conf), "--sentinel"])

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "TWILIO_", "SDU_", "REDIS_"))}
        return {**base, "IVR_ENV": "test", "PYTHONPATH": str(ROOT),
                # The host and port here are not used: the Sentinels name the master (db 0 is).
                "REDIS_URL": f"redis://:{REDIS_PASSWORD}@{addr('redis1')}:{REDIS_PORT}/0",
                "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
                "REDIS_SENTINELS": ",".join(f"{addr(h)}:{SENTINEL_PORT}" for h in ("redis1", "redis2", "redis3")),
                "REDIS_SENTINEL_MASTER": MASTER_NAME,
                "SDU_BASE_URL": f"http://{addr('sdu')}:{SDU_PORT}", "SDU_API_KEY": SDU_KEY,
                "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_ACCOUNT_SID": driver.ACCOUNT_SID, "IVR_SECRET_KEY": SECRET,
                "IVR_DATA_DIR": str(self.workdir / "data"), "IVR_VALIDATE_SIGNATURES": "1"}

    def start_system(self) -> None:
        env = self.env()
        sdu = procfile("sdu", {"SDU_STUB_PORT": str(SDU_PORT)})
        sdu[sdu.index("--host") + 1] = "0.0.0.0"      # the stub's own machine: reached over its network
        self.procs.start("sdu", "sdu", sdu, {**env, "SDU_API_KEY": SDU_KEY})
        for host in ("web1", "web2", "web3"):
            self.procs.start(host, host, procfile("web", {"PORT": str(WEB_PORT)}), env)
        self.procs.start("worker", "worker", procfile("worker", {}), env)
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(HAPROXY.format(
            bind=f"{addr('lb')}:{LB_PORT}",
            servers="\n".join(f"  server {h} {addr(h)}:{WEB_PORT}" for h in ("web1", "web2", "web3"))))
        self.procs.start("lb", "lb", [tool("haproxy"), "-f", str(cfg), "-db"])

    def wait(self, what: str, ok: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.procs.items():
                if proc.poll() is not None and name not in self.killed:
                    raise HarnessError(f"{name} exited with {proc.returncode}:\n{self.procs.tail(name)}")
            with contextlib.suppress(Exception):
                if ok():
                    return
            time.sleep(0.2)
        raise HarnessError(f"timed out waiting for {what} (logs: {self.workdir})")

    def redis_ready(self) -> bool:
        master = redis.Redis(host=addr("redis1"), port=REDIS_PORT, socket_timeout=1, password=REDIS_PASSWORD)
        if int(master.info("replication")["connected_slaves"]) != 2:
            return False
        for h in ("redis1", "redis2", "redis3"):
            s = redis.Redis(host=addr(h), port=SENTINEL_PORT, socket_timeout=1, password=SENTINEL_PASSWORD)
            if len(s.sentinel_slaves(MASTER_NAME)) != 2 or len(s.sentinel_sentinels(MASTER_NAME)) != 2:
                return False
        return True

    def master(self) -> tuple[str, int]:
        for h in ("redis1", "redis2", "redis3"):
            with contextlib.suppress(redis.RedisError):
                host, port = redis.Redis(host=addr(h), port=SENTINEL_PORT, socket_timeout=0.5,
                                         password=SENTINEL_PASSWORD) \
                    .sentinel_get_master_addr_by_name(MASTER_NAME)
                return host.decode() if isinstance(host, bytes) else host, int(port)
        raise HarnessError("no Sentinel answers")

    def lb_ready(self) -> bool:
        up = 0
        for h in ("web1", "web2", "web3"):
            up += requests.get(f"http://{addr(h)}:{WEB_PORT}/health", timeout=1).status_code == 200
        return up == 3 and requests.get(f"http://{addr('lb')}:{LB_PORT}/health", timeout=1).status_code == 200

    # -- running --
    def run(self) -> dict:
        args = self.args
        self.say(f"building {len(HOSTS)} machines in network namespaces {PREFIX}* (logs: {self.workdir})")
        self.net.build()
        self.start_redis()
        self.start_system()
        enter("client")     # from here on this process is the callers' machine
        self.wait("Redis, its replicas and the Sentinels", self.redis_ready)
        self.wait("three web hosts and the load balancer", self.lb_ready)
        heard = Heard.load()
        calls, stop = Calls(), threading.Event()
        base = f"http://{addr('lb')}:{LB_PORT}"
        self.say(f"{args.calls} simultaneous callers, {args.pause:g} s between keys, through HAProxy at {base}")
        threads = callers(base, args.calls, args.pause, stop, calls, heard)
        t0 = time.monotonic()
        phases = [("steady", t0)]
        faults: dict[str, dict] = {}
        try:
            self.sleep_until(t0 + args.phase)
            faults["redis master killed"] = self.kill_master()
            phases.append(("redis master killed", faults["redis master killed"]["at"]))
            self.sleep_until(phases[-1][1] + args.phase)
            at = time.monotonic()
            self.procs.signal("web2", signal.SIGKILL)
            self.killed.add("web2")
            self.say(f"   {self.clock(at)} kill -9 web host web2 (its gunicorn master and workers)")
            faults["web host killed"] = {"at": at}
            phases.append(("web host killed", at))
            self.sleep_until(at + args.phase)
            at = time.monotonic()
            self.procs.signal("sdu", signal.SIGSTOP)
            self.say(f"   {self.clock(at)} SIGSTOP the SDU (frozen: connections accepted, never answered)")
            faults["SDU frozen"] = {"at": at}
            phases.append(("SDU frozen", at))
            self.sleep_until(at + args.phase)
        finally:
            stop.set()
            end = time.monotonic()
            self.procs.signal("sdu", signal.SIGCONT)
            for t in threads:
                t.join(max(0.0, end + 30 - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
        phases.append(("end", end))
        result = self.report(calls, phases, faults, stuck)
        result["requests_check"] = self.check_requests(calls)
        result["aof_backup_restore"] = self.backup_and_restore(calls)
        return result

    def clock(self, at: float) -> str:
        return f"[{at - self.started:6.1f}s]"

    def sleep_until(self, when: float) -> None:
        while (left := when - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))

    def kill_master(self) -> dict:
        host, _ = self.master()
        name = next(h for h in ("redis1", "redis2", "redis3") if addr(h) == host)
        at = time.monotonic()
        self.procs.signal(name, signal.SIGKILL)
        self.killed.add(name)
        self.say(f"   {self.clock(at)} kill -9 the Redis master ({name})")
        while time.monotonic() - at < 60:
            with contextlib.suppress(HarnessError):
                new, _ = self.master()
                if new != host:
                    took = time.monotonic() - at
                    self.say(f"   {self.clock(time.monotonic())} the Sentinels name a new master "
                             f"({new}) {took:.1f} s after the kill")
                    return {"at": at, "sentinel_failover_s": round(took, 2), "old": name, "new": new}
            time.sleep(0.05)
        return {"at": at, "sentinel_failover_s": None, "old": name}

    # -- what it found --
    def report(self, calls: Calls, phases: list[tuple[str, float]], faults: dict, stuck: int) -> dict:
        def phase_of(r: Record) -> str:
            name = phases[0][0]
            for n, at in phases[:-1]:
                if r.start >= at:
                    name = n
            return name

        bad = lambda r: r.status == 0 or r.status >= 500 or r.fallback or (r.end - r.start) > SLOW  # noqa: E731
        out = {"phases": {}, "faults": {}}
        for name, _ in phases[:-1]:
            rs = [r for r in calls.records if phase_of(r) == name]
            kinds = sorted({r.kind for r in rs})
            out["phases"][name] = {
                "requests": len(rs),
                "http_5xx": sum(r.status >= 500 for r in rs),
                "no_answer": sum(r.status == 0 for r in rs),
                "fallback_heard": sum(r.fallback for r in rs),
                "sdu_down_heard": sum(r.sdu_down for r in rs),
                "latency_ms": {k: driver.percentiles([r.end - r.start for r in rs if r.kind == k]) for k in kinds}}
        for name, fault in faults.items():
            at = fault["at"]
            nxt = min((t for n, t in phases if t > at), default=at)
            after = [r for r in calls.records if at <= r.start < nxt]
            relevant = [r for r in after if "sdu" not in r.kind] if name == "SDU frozen" else after
            worst = max((r.end for r in relevant if bad(r)), default=None)
            fault = {k: v for k, v in fault.items() if k != "at"}
            # Until the last webhook that failed, answered the fallback or kept a caller waiting > 1 s.
            fault["recovered_after_s"] = round(worst - at, 2) if worst else 0.0
            out["faults"][name] = fault
        out["calls"] = {"placed": calls.placed, "finished": calls.finished, "stuck_callers": stuck,
                        "calls_with_a_5xx": len({r.call for r in calls.records if r.status >= 500}),
                        "calls_unanswered": len({r.call for r in calls.records if r.status == 0}),
                        "calls_that_heard_the_fallback": len({r.call for r in calls.records if r.fallback}),
                        "requests_5xx": sum(r.status >= 500 for r in calls.records),
                        "requests_unanswered": sum(r.status == 0 for r in calls.records),
                        "fallback_heard": sum(r.fallback for r in calls.records),
                        "sdu_down_heard": sum(r.sdu_down for r in calls.records),
                        "references_heard": len(calls.refs)}
        return out

    def check_requests(self, calls: Calls) -> dict:
        """Every inmate request and call back whose reference a caller heard, on the master the Sentinels
        name now."""
        host, port = self.master()
        master = redis.Redis(host=host, port=port, socket_timeout=5, password=REDIS_PASSWORD)
        keys = [key for key, _ in calls.refs]
        pipe = master.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        found = pipe.execute() if keys else []
        missing = [key for key, there in zip(keys, found, strict=True) if not there]
        self.backup_refs = [key for key, there in zip(keys, found, strict=True) if there]
        return {"acknowledged": len(keys), "missing": len(missing), "missing_refs": missing[:20],
                "inmate_requests": sum(k.startswith("ivr:req:") for k in keys),
                "callbacks": sum(k.startswith("ivr:cb:") for k in keys),
                "callbacks_missing": sum(k.startswith("ivr:cb:") for k in missing)}

    def backup_and_restore(self, calls: Calls) -> dict:
        """The README's procedure, once: a replica's AOF directory copied after a rewrite (automatic
        rewrites paused meanwhile), then a fresh redis-server started on the copy, which must have every
        request the master has."""
        host, _ = self.master()
        replica = next((h for h in ("redis1", "redis2", "redis3") if addr(h) != host and h not in self.killed), None)
        if replica is None:
            return {"ok": False, "why": "no live replica"}
        r = redis.Redis(host=addr(replica), port=REDIS_PORT, socket_timeout=10, password=REDIS_PASSWORD)
        r.config_set("auto-aof-rewrite-percentage", 0)
        try:
            r.bgrewriteaof()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                info = r.info("persistence")
                if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                    break
                time.sleep(0.2)
            folder = FsPath(r.config_get("dir")["dir"]) / r.config_get("appenddirname")["appenddirname"]
            backup = self.workdir / "backup" / "appendonlydir"
            shutil.copytree(folder, backup)
        finally:
            r.config_set("auto-aof-rewrite-percentage", 100)
        size = sum(f.stat().st_size for f in backup.iterdir())
        restored = self.procs.start("restored", "client", [tool("redis-server"), "--bind", "127.0.0.1", "--port",
                                                           "6390", "--dir", str(backup.parent), "--appendonly", "yes",
                                                           "--save", ""])
        try:
            fresh = redis.Redis(host="127.0.0.1", port=6390, socket_timeout=5)
            self.wait("the restored server", lambda: fresh.ping() and fresh.info("persistence")["loading"] == 0, 30)
            keys = self.backup_refs
            pipe = fresh.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key)
            found = pipe.execute() if keys else []
            missing = [key for key, there in zip(keys, found, strict=True) if not there]
            return {"ok": not missing, "from": replica, "files": sorted(f.name for f in backup.iterdir()),
                    "bytes": size, "records_looked_for": len(keys), "missing": len(missing),
                    "keys_restored": fresh.dbsize()}
        finally:
            self.procs.signal("restored", signal.SIGTERM)
            restored.wait(10)

    def close(self) -> None:
        self.procs.stop_all()
        self.net.teardown()


HAPROXY = """global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 16s
  timeout check 3s
  # A request whose web host died before answering goes to another (the webhooks are safe to repeat:
  # each carries its step number).
  retries 3
  option redispatch 1
  retry-on all-retryable-errors
  option http-buffer-request
frontend ivr
  bind {bind}
  default_backend web
backend web
  balance roundrobin
  option httpchk GET /health
  http-check expect status 200
  default-server check inter 1s fall 2 rise 2
{servers}
"""


def show(result: dict, say: Callable[[str], None]) -> None:
    c = result["calls"]
    say(f"\ncalls placed {c['placed']}, finished {c['finished']}; webhooks answered 5xx: {c['requests_5xx']}, "
        f"unanswered: {c['requests_unanswered']}; fallback heard: {c['fallback_heard']}; "
        f"'the SDU cannot answer' heard: {c['sdu_down_heard']}; callers stuck at the end: {c['stuck_callers']}")
    for name, f in result["faults"].items():
        extra = (f", the Sentinels named a new master after {f['sentinel_failover_s']} s"
                 if "sentinel_failover_s" in f else "")
        say(f"   {name}: recovered {f['recovered_after_s']} s after it{extra}")
    for name, p in result["phases"].items():
        say(f"\n== {name}: {p['requests']} webhooks, 5xx {p['http_5xx']}, unanswered {p['no_answer']}, "
            f"fallback {p['fallback_heard']}, SDU-down {p['sdu_down_heard']} ==")
        for kind, lat in p["latency_ms"].items():
            if lat["n"]:
                say(f"   {kind:24} n {lat['n']:5}  p50 {lat['p50']:8} ms  p99 {lat['p99']:8} ms  max {lat['max']:8} ms")
    q = result["requests_check"]
    say(f"\ninmate requests and call backs whose reference a caller heard: {q['acknowledged']} "
        f"({q.get('inmate_requests')} requests, {q.get('callbacks')} call backs); missing afterwards: {q['missing']}")
    b = result["aof_backup_restore"]
    say(f"AOF backup of {b.get('from')} restored into a fresh server: {b.get('records_looked_for')} records "
        f"looked for, {b.get('missing')} missing ({b.get('bytes')} bytes in {b.get('files')})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/failover", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=24, help="simultaneous callers (default: 24)")
    parser.add_argument("--pause", type=float, default=2.5, help="seconds a caller waits between keys (default: 2.5)")
    parser.add_argument("--phase", type=float, default=25, help="seconds of each phase (default: 25)")
    parser.add_argument("--down-after", type=int, default=1000,
                        help="Sentinel's down-after-milliseconds (default: 1000)")
    parser.add_argument("--out", help="JSON file (default: bench/results/failover-<time>.json)")
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 200 or not 0.2 <= args.pause <= 10 or not 5 <= args.phase <= 120 \
            or not 200 <= args.down_after <= 30000:
        print("scripts/failover: --calls 1-200, --pause 0.2-10, --phase 5-120, --down-after 200-30000", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("scripts/failover: needs root (it makes network namespaces)", file=sys.stderr)
        return 2
    for needed in ("ip", "redis-server", "haproxy"):
        try:
            tool(needed)
        except Exception:
            print(f"scripts/failover: {needed} not found (Debian: apt-get install iproute2 redis-server haproxy)",
                  file=sys.stderr)
            return 2
    harness = Harness(args)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = harness.run()
    except (HarnessError, subprocess.CalledProcessError) as exc:
        print(f"scripts/failover: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("scripts/failover: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        harness.close()
        signal.signal(signal.SIGTERM, previous)
    result = {"schema": 1, "commit": commit(), "when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine(), "settings": vars(args), **result}
    show(result, print)
    path = FsPath(args.out) if args.out else RESULTS / f"failover-{datetime.now(UTC):%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {path}")
    shutil.rmtree(harness.workdir, ignore_errors=True)
    lost = result["requests_check"]["missing"] + (result["aof_backup_restore"].get("missing") or 0)
    return 1 if result["calls"]["requests_5xx"] or lost else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
