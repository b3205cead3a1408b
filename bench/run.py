"""`ivr bench` (or `python -m bench.run`): a load benchmark of whole calls, and its floor.

It starts the real thing on this machine, each as its own process on a free loopback port: a private
`redis-server` (no persistence), the SDU stub (`ivr sdu-stub`), the system under gunicorn exactly as
the Procfile's `web:` line runs it, and the floor (bench/floor_app.py) under the same gunicorn line.
Then, for each number of simultaneous calls in the sweep, it drives the system and then the floor
with calls along the paths of bench/paths.py (signed as Twilio signs, without callers' pauses) and
prints requests per second, latency per webhook kind, errors, server CPU per request and the ratio
system/floor; then a paced run (callers pausing between steps: latency without a queue); then it
holds calls mid-way to measure Redis memory per active call and checks that every key expires. The
same goes to a JSON file (bench/results/) to compare commits. bench/RESULTS.md has what it measured.

Every process it starts is stopped at the end, also on an error or Ctrl-C. Load goes to 127.0.0.1
only, and every loop is bounded in requests and seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path as FsPath

import redis
import requests

from . import driver
from .paths import PATHS, Path

ROOT = FsPath(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SYSTEM_APP = "ivr.app:create_app()"
FLOOR_APP = "bench.floor_app:create_app()"
FLOOR_SDU_APP = "bench.floor_app:create_sdu_app()"   # the payment line's floor: one SDU lookup a step
FLOOR_STATE_APP = "bench.floor_app:create_state_app()"   # --state-floor: a read, then a write, a step
BENCH_TOKEN = "bench-twilio-auth-token"
BENCH_SECRET = "bench-ivr-secret-key-0123456789abcdef"
BENCH_CAP = 10**9           # the daily caps of requests and call backs in the bench's config: never reached
SDU_KEY = "dev-sdu-key"
TARGETS = {"calls": 50, "ratio": 0.75, "p99_ms": 25.0, "bytes_per_call": 2048}
# Each path alone against the floor doing the same outside work (the speed targets, per path): the
# call center's against the minimal floor, the payment line's against the floor with an SDU lookup a
# step. The staff line is left out: its sign-in's scrypt is slow on purpose.
PATH_FLOORS = {"callcenter": "floor", "payments": "floor_sdu"}
CAPACITY_P99_MS = 50.0     # the call center's webhooks, at human pace, for `--capacity`
# What must outlast a call, on purpose: the inmate intake's requests and the call backs for staff, their audit streams
# and indexes (ivr/domain/requests.py), the job queue (ivr/jobs/worker.py), staff accounts (ivr/domain/staffdb.py)
# and what staff publish (ivr/domain/published.py). Everything else a call writes is the call's own and
# must expire (tests/test_structure.py checks the same).
DURABLE_KEYS = re.compile(r"^ivr:req:(\d{6}|\d{6}:audit|open|all)$|^ivr:jobs(:dead)?$|^ivr:staff(:\d+)?$"
                          # Call backs until staff close them or they expire (ivr/domain/callbacks.py), and
                          # the open one of each number.
                          r"|^ivr:cb:(\d{6}|\d{6}:audit|open|all|number:[0-9a-f]{24})$"
                          r"|^ivr:prompts:(published|rev|history:.*)$|^ivr:announcements(:log)?$|^ivr:audio:files$"
                          # Call analytics: the event stream is capped and trimmed by age, the open calls
                          # closed by the worker's sweep (ivr/domain/callstats.py); the hours expire.
                          r"|^ivr:an:(events|cursor|open|active|totals)$")


class BenchError(RuntimeError):
    """The benchmark could not run (a process did not start, a tool is missing)."""


# --- the machine and the code measured ---------------------------------------------------------------
def machine() -> dict:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in FsPath("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    import gunicorn
    return {"nproc": nproc, "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "gunicorn": gunicorn.__version__,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


# --- processes ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name: str) -> str:
    """A command from this Python's environment first (the venv), then from PATH."""
    here = FsPath(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise BenchError(f"{name} not found (install it, or run from the project's .venv)")
    return found


class Processes:
    """The processes this run started; `stop_all` ends each one (and its children) by its own id."""

    def __init__(self, logdir: FsPath) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.logdir / f"{name}.log").open("wb")
        # A session of its own: the process group id is the process id, so its workers go with it.
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.logdir / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.procs.clear()


def path_floors(args: argparse.Namespace) -> dict[str, str]:
    """Which floor each line's paths are measured against: PATH_FLOORS, or with --state-floor the call
    center's against the floor that reads a call's state before writing it (a figure, not the target)."""
    return {**PATH_FLOORS, "callcenter": "floor_state"} if args.state_floor else PATH_FLOORS


def web_command(port: int, workers: int, app: str = SYSTEM_APP) -> list[str]:
    """The Procfile's `web:` line with PORT and WEB_CONCURRENCY filled in, bound to loopback, serving
    `app` instead of the system's factory (the floor runs under the very same settings)."""
    procfile = ROOT / "Procfile"
    line = next((ln.split(":", 1)[1] for ln in procfile.read_text().splitlines() if ln.startswith("web:")), None)
    if line is None:
        raise BenchError(f"{procfile}: no web: line")
    values = {"PORT": str(port), "WEB_CONCURRENCY": str(workers)}
    line = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: values.get(m.group(1), m.group(2) or ""), line)
    line = re.sub(r"\$(\w+)", lambda m: values.get(m.group(1), ""), line)
    argv = shlex.split(line)
    if argv[0] != "gunicorn" or SYSTEM_APP not in argv:
        raise BenchError(f"{procfile}: the web: line is not `gunicorn ... '{SYSTEM_APP}'`: {line.strip()}")
    argv[0] = tool("gunicorn")
    argv[argv.index(SYSTEM_APP)] = app
    return [re.sub(r"^(0\.0\.0\.0|\[::\]|localhost):", "127.0.0.1:", a) for a in argv]


def wait_http(procs: Processes, name: str, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs.check(name)
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"{name} did not answer {url} within {timeout:.0f}s:\n{procs.log_tail(name)}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its direct children (gunicorn's master and workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in FsPath("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        this, ppid = int(stat.parent.name), int(fields[1])
        if this == pid or ppid == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) ticks of all CPUs since boot: on a virtual machine, time the host gave to others."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = [int(x) for x in FsPath("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])
    return 0, 0


def children(pid: int) -> list[int]:
    out = []
    for stat in FsPath("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out


# --- the benchmark -----------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
        self.args = args
        self.say = out
        self.logdir = FsPath(tempfile.mkdtemp(prefix="ivr-bench-"))
        self.procs = Processes(self.logdir)
        self.deadline = time.monotonic() + args.max_seconds

    def run(self) -> dict:
        args = self.args
        redis_port, stub_port = free_port(), free_port()
        self.system_port, self.floor_port, floor_sdu_port = free_port(), free_port(), free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "TWILIO_", "SDU_"))}
        base_env["PYTHONPATH"] = str(ROOT) + os.pathsep + base_env.get("PYTHONPATH", "")
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.say(f"starting redis-server, the SDU stub, the system and the floor (logs: {self.logdir})")
        load = os.getloadavg()[0]
        if load > 0.5:
            self.say(f"   note: load average {load:.2f} before the run: other work on this machine skews the numbers")
        self.procs.start("redis", [tool("redis-server"), "--port", str(redis_port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--protected-mode", "yes"], base_env)
        self.redis = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._wait_redis()
        stub_env = {**base_env, "SDU_API_KEY": SDU_KEY}
        stub_argv = [tool("ivr"), "sdu-stub", "--host", "127.0.0.1", "--port", str(stub_port)]
        if args.sdu_delay:
            stub_argv += ["--fixtures", str(self.slow_fixtures(args.sdu_delay))]
        self.procs.start("sdu-stub", stub_argv, stub_env)
        app_env = {**base_env, "IVR_ENV": "test", "REDIS_URL": redis_url,
                   "SDU_BASE_URL": f"http://127.0.0.1:{stub_port}", "SDU_API_KEY": SDU_KEY,
                   "TWILIO_ACCOUNT_SID": driver.ACCOUNT_SID, "TWILIO_AUTH_TOKEN": BENCH_TOKEN,
                   "IVR_SECRET_KEY": BENCH_SECRET, "IVR_DATA_DIR": str(self.logdir / "data"),
                   "IVR_VALIDATE_SIGNATURES": "1", "IVR_CONFIG_DIR": str(self.uncapped_config())}
        self.commands = {"system": web_command(self.system_port, args.workers),
                         "floor": web_command(self.floor_port, args.workers, FLOOR_APP)}
        if args.per_path:
            self.commands["floor_sdu"] = web_command(floor_sdu_port, args.workers, FLOOR_SDU_APP)
        if args.per_path and args.state_floor:
            floor_state_port = free_port()
            self.commands["floor_state"] = web_command(floor_state_port, args.workers, FLOOR_STATE_APP)
        self.urls = {"system": f"http://127.0.0.1:{self.system_port}",
                     "floor": f"http://127.0.0.1:{self.floor_port}",
                     "floor_sdu": f"http://127.0.0.1:{floor_sdu_port}"}
        if "floor_state" in self.commands:
            self.urls["floor_state"] = f"http://127.0.0.1:{floor_state_port}"
        for name, command in self.commands.items():
            self.procs.start(name, command, app_env)
        wait_http(self.procs, "sdu-stub", f"http://127.0.0.1:{stub_port}/v1/health")
        for name in self.commands:
            wait_http(self.procs, name, self.urls[name] + "/health")

        self.seeded = [p.staff for p in self.chosen_paths() if p.staff]
        self.reset()
        paths, skipped = self.probe(self.chosen_paths())
        if not paths:
            raise BenchError("no path works: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
        result = {
            "schema": 1, "commit": commit(), "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {**machine(), "redis": self.redis.info("server").get("redis_version")},
            "settings": {"workers": args.workers, "warmup_s": args.warmup, "duration_s": args.duration,
                         "rounds": args.rounds,
                         "sdu_delay_s": args.sdu_delay,
                         "max_requests": args.max_requests, "web_command": shlex.join(self.commands["system"]),
                         "paths": {p.name: {"line": p.line, "keys": list(p.keys), "weight": p.weight,
                                            "marks": {str(i): m for i, m in sorted(p.marks.items())}}
                                   for p in paths},
                         "skipped_paths": skipped},
            "levels": [],
        }
        if args.capacity:
            result["capacity"] = self.capacity(paths, args.capacity)
            result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
            result["memory"] = {"hold_errors": 0}
            result["targets"] = {}
            return result
        for calls in args.calls:
            if time.monotonic() > self.deadline:
                self.say(f"!! --max-seconds reached: level {calls} and after not run")
                break
            level = with_ratios({"calls": calls, **self.measure_both(paths, calls)})
            result["levels"].append(level)
            self.show_level(level)
        if args.per_path and time.monotonic() < self.deadline:
            result["per_path"] = self.per_path(paths, args.per_path)
        if args.paced_calls and time.monotonic() < self.deadline:
            paced = {"calls": args.paced_calls, "pause_s": args.pause,
                     **self.measure_both(paths, args.paced_calls, pause=args.pause)}
            result["paced"] = paced
            self.show_level(paced, f"{args.paced_calls} simultaneous calls, each pausing {args.pause:g} s "
                                   "before each step (latency without a queue)")
        result["memory"] = self.memory(paths, args.hold)
        result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["targets"] = targets(result)
        self.show_summary(result)
        return result

    def slow_fixtures(self, delay: float) -> FsPath:
        """The stub's fixtures with every ordinary case answering after `delay` seconds (PIN checks,
        summaries, payments): how the system behaves when the real SDU is slow."""
        from ivr.sdu.stub import load_fixtures

        fixtures = load_fixtures()
        for case in fixtures["cases"]:
            case.setdefault("simulate", {"endpoints": ["pin", "summary", "payments"], "delay_seconds": delay})
        path = self.logdir / "slow-fixtures.json"
        path.write_text(json.dumps(fixtures))
        return path

    def uncapped_config(self) -> FsPath:
        """config/ as it is, but for the daily caps of inmate requests and call backs, set far above what a run
        places: the benchmark places thousands of intakes from one facility's phone and call backs, and past
        a cap (200 a day from a facility, 500 call backs) it would measure the refusal (a shorter call that
        stores nothing) instead of the path it names. High rather than off (0), so that each request still
        reads and counts its caps as in production."""
        import yaml

        from ivr.domain.callbacks import CallbackCaps
        from ivr.domain.facilities import RequestCaps

        target = self.logdir / "config"
        shutil.copytree(ROOT / "config", target)
        for name, key, caps in (("facilities.yaml", "request_caps", RequestCaps),
                                ("callbacks.yaml", "caps", CallbackCaps)):
            path = target / name
            data = yaml.safe_load(path.read_text())
            data[key] = dict.fromkeys(caps.__dataclass_fields__, BENCH_CAP)
            for facility in (data.get("facilities") or {}).values():
                facility.pop("requests_per_day", None)
            path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        return target

    def reset(self) -> None:
        """An empty Redis (its memory measured from nothing), with the staff accounts the paths use."""
        self.redis.flushall()
        if self.seeded:
            try:
                from ivr.domain.staffdb import StaffDB, pepper_for
            except ImportError:
                return   # no staff line yet: the probe leaves its path out
            db = StaffDB(self.redis, pepper_for({"IVR_SECRET_KEY": BENCH_SECRET}))   # the server's pepper
            for staff_id, name, pin in self.seeded:
                db.add(staff_id, name, pin, datetime.now(UTC))

    def chosen_paths(self) -> list[Path]:
        if not self.args.paths:
            return list(PATHS)
        names = {p.name: p for p in PATHS}
        unknown = [n for n in self.args.paths if n not in names]
        if unknown:
            raise BenchError(f"unknown path(s) {unknown}; known: {sorted(names)}")
        return [names[n] for n in self.args.paths]

    def _wait_redis(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            self.procs.check("redis")
            try:
                self.redis.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise BenchError("redis-server did not answer:\n" + self.procs.log_tail("redis")) from None
                time.sleep(0.05)

    def probe(self, candidates: list[Path]) -> tuple[list[Path], dict[str, str]]:
        """Place each path once; keep those that work (a line still being built is left out, said why)."""
        ok, skipped = [], {}
        for path in candidates:
            tally = driver.Tally()
            call, _, _ = driver.place(self.urls["system"], BENCH_TOKEN, path, tally=tally)
            problem = None
            if tally.errors or call is None:
                problem = "; ".join(tally.examples) or "the call did not finish"
            elif any(e.kind == "error" for e in call.events):
                problem = "; ".join(e.text for e in call.events if e.kind == "error")
            elif len([e for e in call.events if e.kind in ("input", "dial", "record", "passed")]) < len(path.keys):
                heard = call.said[-200:]
                problem = f"the call ended before all {len(path.keys)} keys were used (last heard: {heard!r})"
            if problem:
                skipped[path.name] = problem
                self.say(f"   path {path.name}: LEFT OUT: {problem}")
            else:
                ok.append(path)
                dialed = f", dialed {len(call.dialed)}" if call.dialed else ""
                self.say(f"   path {path.name}: ok ({len(call.statuses)} webhooks{dialed})")
        self.reset()
        return ok, skipped

    def measure_both(self, paths: list[Path], calls: int, pause: float = 0.0, floor: str = "floor") -> dict:
        """The system and the floor, each measured in `--rounds` runs taken in turns (S F F S S F ...),
        so that a change in this machine's speed during the level (a neighbour on the host, say)
        falls on both alike rather than on whichever ran second. Each round's ratio is kept, to show
        how much the machine moved. `floor`: which floor (PATH_FLOORS); its figures are under "floor"."""
        runs: dict[str, list] = {"system": [], "floor": []}
        server = {"system": "system", "floor": floor}
        for i in range(self.args.rounds):
            for target in ("system", "floor") if i % 2 == 0 else ("floor", "system"):
                self.reset()
                runs[target].append(self.measure(server[target], paths, calls, pause, profile=i == 0))
        out = {target: combine(runs[target]) for target in runs}
        out["round_ratios"] = [round(rps(s) / rps(f), 3) if rps(f) else None
                               for s, f in zip(runs["system"], runs["floor"], strict=True)]
        return out

    def capacity(self, paths: list[Path], levels: list[int]) -> dict:
        """Simultaneous human-paced calls (--pause seconds between keys, jittered) against the one web
        host, level by level: the call center's p99 (every webhook of its paths), the payment line's,
        errors, and how many answers said the SDU cannot answer. The capacity is the most calls with
        the call center's p99 under CAPACITY_P99_MS and no error."""
        out: dict = {"pause_s": self.args.pause, "sdu_delay_s": self.args.sdu_delay, "levels": []}
        self.say(f"\n== capacity: simultaneous calls pausing ~{self.args.pause:g} s between keys, SDU answering "
                 f"in {self.args.sdu_delay:g} s ==")
        self.say(f"   {'calls':>6}{'req/s':>8}{'call center p99 ms':>20}{'payments p99 ms':>17}{'errors':>8}"
                 f"{'SDU-down answers':>18}")
        best = None
        for calls in levels:
            if time.monotonic() > self.deadline:
                self.say("!! --max-seconds reached: the other levels not run")
                break
            self.reset()
            tally, window = driver.run_phase(self.urls["system"], BENCH_TOKEN, paths, calls, warmup=self.args.warmup,
                                             duration=self.args.duration, max_requests=self.args.max_requests,
                                             pause=self.args.pause, by_line=True)
            lines = {}
            for line in ("callcenter", "payments"):
                lines[line] = driver.percentiles([v for k, vs in tally.latencies.items()
                                                  if k.startswith(line + " ") for v in vs])
            errors = sum(tally.errors.values())
            level = {"calls": calls, "rps": round(tally.requests / window, 1) if window > 0 else 0,
                     "callcenter_ms": lines["callcenter"], "payments_ms": lines["payments"], "errors": errors,
                     "error_examples": tally.examples, "sdu_down_answers": tally.heard.get("sdu_down", 0),
                     "latency_ms": {k: driver.percentiles(v) for k, v in sorted(tally.latencies.items())}}
            out["levels"].append(level)
            p99 = lines["callcenter"].get("p99")
            self.say(f"   {calls:>6}{level['rps']:>8}{p99!s:>20}{lines['payments'].get('p99')!s:>17}{errors:>8}"
                     f"{level['sdu_down_answers']:>18}")
            if p99 is not None and p99 < CAPACITY_P99_MS and not errors:
                best = calls
        out["capacity_calls"] = best
        self.say(f"   capacity: {best} simultaneous calls (call center p99 < {CAPACITY_P99_MS:g} ms, 0 errors)")
        return out

    def per_path(self, paths: list[Path], calls: int) -> dict:
        """Each path alone, system and floor in rounds as for a level: which paths cost what the
        mix's one ratio hides (a payment call's SDU lookups, a staff sign-in's scrypt)."""
        out = {}
        self.say(f"\n== each path alone, {calls} simultaneous calls, no pauses, against the floor doing the "
                 "same outside work ==")
        self.say(f"   {'path':18}{'floor':>10}{'system req/s':>14}{'floor req/s':>13}{'ratio':>8}"
                 f"{'server CPU ms/req system / floor':>36}{'SDU stub':>10}")
        for path in paths:
            floor = path_floors(self.args).get(path.line)
            if floor is None and path.name not in (self.args.paths or ()):
                continue    # the staff line: its sign-in is slow on purpose (measured only when named)
            if time.monotonic() > self.deadline:
                self.say("!! --max-seconds reached: the other paths not run")
                break
            level = out[path.name] = with_ratios(self.measure_both([path], calls, floor=floor or "floor"))
            level["floor_kind"] = floor or "floor"
            s, f = level["system"], level["floor"]
            self.say(f"   {path.name:18}{level['floor_kind']:>10}{s['rps']:>14}{f['rps']:>13}{level['ratio']!s:>8}"
                     f"{s.get('server_cpu_ms_per_request', '-')!s:>24} / {f.get('server_cpu_ms_per_request', '-')!s:<9}"
                     f"{s.get('sdu_stub_cpu_ms_per_request', '-')!s:>10}")
        return out

    def measure(self, target: str, paths: list[Path], calls: int, pause: float = 0.0,
                profile: bool = True) -> dict:
        """One run against `target`: what the driver measured and the CPU each process used."""
        args = self.args
        pid = self.procs.procs[target].pid
        marks: dict[str, dict] = {}
        profiler: list[subprocess.Popen] = []

        def mark(name: str) -> None:
            marks[name] = {"cpu": cpu_seconds(pid), "driver_cpu": time.process_time(),
                           "redis_cpu": cpu_seconds(self.procs.procs["redis"].pid),
                           "stub_cpu": cpu_seconds(self.procs.procs["sdu-stub"].pid),
                           "redis_cmds": sum(v.get("calls", 0) for v in self.redis.info("commandstats").values())}
            marks[name]["steal"], marks[name]["ticks"] = cpu_ticks()
            if name == "t0" and profile and args.profile and calls == args.profile_calls and not pause:
                profiler.extend(self.start_profiler(pid, f"{target}-{calls}calls"))

        self.procs.check(target)
        tally, window = run_phase_marked(self.urls[target], paths, calls, args, mark, pause)
        for p in profiler:
            p.wait(args.duration + 30)
        if profiler:
            self.say("   profile of the " + summarise_profiles(args.profile, f"{target}-{calls}calls"))
        self.procs.check(target)
        t0, t1 = marks.get("t0"), marks.get("t1")
        used = {k: t1[k] - t0[k] for k in t0} if t0 and t1 else {}
        if used:
            used["redis_cmds"] -= 1   # the INFO that read the counter
        return {"tally": tally, "window": window, "used": used}


    def start_profiler(self, master: int, label: str) -> list[subprocess.Popen]:
        """py-spy on each worker for the measured window: CPU samples (--gil), raw stacks per worker."""
        outdir = FsPath(self.args.profile)
        outdir.mkdir(parents=True, exist_ok=True)
        procs = []
        for worker in children(master):
            out = outdir / f"{label}-worker{worker}.txt"
            procs.append(subprocess.Popen(
                [tool("py-spy"), "record", "--pid", str(worker), "--duration", str(int(self.args.duration)),
                 "--rate", "200", "--format", "raw", "--gil", "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return procs

    def memory(self, paths: list[Path], hold: int) -> dict:
        """Redis memory per active call: hold `hold` calls mid-way and compare what Redis stores
        (`stored_bytes`: used_memory without connection buffers). Records kept
        for staff on purpose (DURABLE_KEYS: an inmate intake's request) are then deleted and measured
        apart, so the figure is what calls cost while they last. Every other key must expire."""
        leftover = key_ttls(self.redis)   # keys the sweep's calls (all ended) left behind
        self.reset()
        if not hold:
            return {"held_calls": 0, "hold_errors": 0, "bytes_per_call": None, "all_keys_expire": not no_ttl(leftover),
                    "keys_without_ttl_after_sweep": no_ttl(leftover)}
        time.sleep(0.2)
        seeded = set(key_ttls(self.redis))   # the staff accounts the paths sign in with
        before = stored_bytes(self.redis)
        url = self.urls["system"]

        def hold_one(i: int) -> tuple[driver.BenchTransport, str]:
            _, transport, sid = driver.place(url, BENCH_TOKEN, paths[i % len(paths)], hold=True)
            return transport, sid

        with ThreadPoolExecutor(8) as pool:
            held = list(pool.map(hold_one, range(hold)))
        time.sleep(0.2)
        with_records = stored_bytes(self.redis)
        ttls = key_ttls(self.redis)
        durable = [k for k, ttl in ttls.items() if ttl < 0 and DURABLE_KEYS.match(k) and k not in seeded]
        for key in durable:
            self.redis.delete(key)
        time.sleep(0.2)
        after = stored_bytes(self.redis)
        call_keys = [k for k in ttls if k.startswith("ivr:call:")]
        usage = [self.redis.memory_usage(k) or 0 for k in call_keys[:200]]
        errors = sum(sum(t.tally.errors.values()) for t, _ in held)
        for transport, sid in held:
            driver.hang_up(transport, sid)
        after_end = key_ttls(self.redis)
        problems = no_ttl(ttls) + no_ttl(after_end) + no_ttl(leftover)
        result = {
            "held_calls": hold, "hold_errors": errors,
            "used_memory_before": before, "used_memory_held": after,
            "bytes_per_call": round((after - before) / hold) if hold else None,
            "durable_record_keys": len(durable),
            "durable_record_bytes_per_call": round((with_records - after) / hold) if hold else None,
            "keys_per_call": round((len(ttls) - len(durable) - len(seeded)) / hold, 2) if hold else None,
            "call_key_memory_usage": {"n": len(usage), "mean": round(sum(usage) / len(usage)) if usage else None,
                                      "max": max(usage, default=None)},
            "keys_without_ttl_held": no_ttl(ttls),
            "keys_left_after_end": len(after_end),
            "keys_without_ttl_after_end": no_ttl(after_end),
            "keys_without_ttl_after_sweep": no_ttl(leftover),
            "all_keys_expire": not problems,
            "key_patterns": sorted({pattern(k) for k in list(ttls) + list(after_end) + list(leftover)}),
        }
        self.say(f"\nRedis memory: {result['bytes_per_call']} bytes per active call ({hold} calls held mid-way; "
                 f"call state key MEMORY USAGE mean {result['call_key_memory_usage']['mean']}, "
                 f"max {result['call_key_memory_usage']['max']}; {result['keys_per_call']} keys per call)")
        if durable:
            self.say(f"   plus records kept for staff on purpose: {len(durable)} keys, "
                     f"{result['durable_record_bytes_per_call']} bytes per held call on average")
        self.say("   every other key expires" if not problems else f"   KEYS WITHOUT EXPIRY: {problems}")
        return result

    # --- printing ----------------------------------------------------------------------------------
    def show_level(self, level: dict, title: str | None = None) -> None:
        s, f = level["system"], level["floor"]
        self.say(f"\n== {title or str(level['calls']) + ' simultaneous calls, no pauses'} ==")
        self.say(f"   {'':34}{'system':>12}{'floor':>12}")
        ratio = f"   ratio system/floor: {level['ratio']}" if "ratio" in level else ""
        if len(level.get("round_ratios", [])) > 1:
            ratio += f" (rounds: {' '.join(str(r) for r in level['round_ratios'])})"
        self.say(f"   {'requests/s':34}{s['rps']:>12}{f['rps']:>12}{ratio}")
        self.say(f"   {'errors':34}{s['error_total']:>12}{f['error_total']:>12}")
        for key, label in (("server_cpu_ms_per_request", "server CPU ms/request"),
                           ("redis_commands_per_request", "Redis commands/request"),
                           ("redis_cpu_ms_per_request", "redis-server CPU ms/request"),
                           ("sdu_stub_cpu_ms_per_request", "SDU stub CPU ms/request"),
                           ("driver_cpu_ms_per_request", "driver CPU ms/request"),
                           ("cpu_stolen_pct", "CPU taken by the host (steal) %")):
            extra = ""
            if key == "server_cpu_ms_per_request" and level.get("server_cpu_ratio"):
                extra = f"   floor/system: {level['server_cpu_ratio']}"
            self.say(f"   {label:34}{s.get(key, '-'):>12}{f.get(key, '-'):>12}{extra}")
        self.say("   latency ms (n, p50 / p95 / p99 / max):")
        for who, data in (("system", s), ("floor", f)):
            for kind, p in data["latency_ms"].items():
                if p["n"]:
                    self.say(f"     {who:7}{kind:22}{p['n']:>7}  {p['p50']:>7} / {p['p95']:>7} / "
                             f"{p['p99']:>7} / {p['max']:>7}")
        for example in s["error_examples"] + f["error_examples"]:
            self.say(f"   !! {example}")

    def show_summary(self, result: dict) -> None:
        self.say("\nTargets:")
        for name, t in result["targets"].items():
            mark = "ok  " if t["met"] else ("n/a " if t["met"] is None else "MISS")
            self.say(f"   [{mark}] {name}: {t['value']} (target {t['target']})")


def with_ratios(level: dict) -> dict:
    """A level measured without pauses, with system/floor throughput and floor/system server CPU."""
    s_rps, f_rps = level["system"]["rps"], level["floor"]["rps"]
    level["ratio"] = round(s_rps / f_rps, 3) if f_rps else None
    s_cpu, f_cpu = (level[t].get("server_cpu_ms_per_request") for t in ("system", "floor"))
    level["server_cpu_ratio"] = round(f_cpu / s_cpu, 3) if s_cpu and f_cpu else None
    return level


def rps(run: dict) -> float:
    """Requests per second of one run (what `measure` returns)."""
    return run["tally"].requests / run["window"] if run["window"] > 0 else 0.0


def combine(runs: list[dict]) -> dict:
    """Runs of one target merged: requests per second over all their measured windows, latency over
    all their requests, CPU per request from the sums (a round without its CPU marks leaves CPU out)."""
    tally, window = driver.Tally(), 0.0
    for r in runs:
        tally.merge(r["tally"])
        window += r["window"]
    n = tally.requests
    per = {}
    if n and all(r["used"] for r in runs):
        used = {k: sum(r["used"][k] for r in runs) for k in runs[0]["used"]}
        per = {"server_cpu_ms_per_request": round(used["cpu"] * 1000 / n, 3),
               "redis_cpu_ms_per_request": round(used["redis_cpu"] * 1000 / n, 3),
               "sdu_stub_cpu_ms_per_request": round(used["stub_cpu"] * 1000 / n, 3),
               "driver_cpu_ms_per_request": round(used["driver_cpu"] * 1000 / n, 3),
               "redis_commands_per_request": round(used["redis_cmds"] / n, 2),
               "cpu_stolen_pct": round(100 * used["steal"] / used["ticks"], 1) if used["ticks"] else None}
    return {"rps": round(rps({"tally": tally, "window": window}), 1), "requests": n, "calls_completed": tally.calls,
            "window_s": round(window, 2), "errors": dict(tally.errors), "error_total": sum(tally.errors.values()),
            "error_examples": tally.examples,
            "latency_ms": {k: driver.percentiles(v) for k, v in sorted(tally.latencies.items())}, **per}


def run_phase_marked(url: str, paths: list[Path], calls: int, args: argparse.Namespace,
                     mark: Callable[[str], None], pause: float = 0.0) -> tuple[driver.Tally, float]:
    """`driver.run_phase`, with `mark("t0")` and `mark("t1")` called as the measured window opens
    and closes (server CPU, Redis counters, the profiler)."""
    start = time.perf_counter()

    def marker() -> None:
        time.sleep(max(0.0, start + args.warmup - time.perf_counter()))
        mark("t0")
        time.sleep(max(0.0, start + args.warmup + args.duration - time.perf_counter()))
        mark("t1")

    thread = threading.Thread(target=marker, daemon=True)
    thread.start()
    result = driver.run_phase(url, BENCH_TOKEN, paths, calls, warmup=args.warmup, duration=args.duration,
                              max_requests=args.max_requests, pause=pause)
    thread.join(5)
    return result


def stored_bytes(client: redis.Redis) -> int:
    """Redis `used_memory` without its clients' connection buffers: Redis grows and frees those on its
    own schedule (an idle connection's query buffer is freed after a while), and with a connection
    per worker thread that moved the figure by tens of KB either way; they are not the calls'."""
    info = client.info("memory")
    return info["used_memory"] - info.get("mem_clients_normal", 0) - info.get("mem_clients_slaves", 0)


def key_ttls(client: redis.Redis) -> dict[str, int]:
    keys = [k.decode() for k in client.scan_iter(count=1000)]
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.ttl(k)
    return dict(zip(keys, pipe.execute(), strict=True))


def no_ttl(ttls: dict[str, int]) -> list[str]:
    """Keys that never expire and are not records kept for staff on purpose (by pattern)."""
    return sorted({pattern(k) for k, ttl in ttls.items()
                   if ttl is not None and ttl < 0 and not DURABLE_KEYS.match(k)})[:20]


def pattern(key: str) -> str:
    """A key name with its call- or caller-specific part hidden: ivr:call:CA1f... -> ivr:call:*."""
    return re.sub(r"(CA[0-9a-f]{32}|[0-9a-f]{16,}|[0-9A-Za-z_-]{20,}|\d{4,})", "*", key)


def _frame(frame: str) -> tuple[str, str]:
    """("function (dir/file.py)", owner) of a py-spy frame "function (path/file.py:line)"; the owner
    is the installed package, "ivr" or "bench" for the project's code, "" for the standard library."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame, ""
    func, path = m.groups()
    name = f"{func} ({'/'.join(path.split('/')[-2:])})"
    if "site-packages/" in path:
        path = path.split("site-packages/")[1]
    elif path.startswith("/"):   # a file py-spy could not place on sys.path: the project's, or Python's
        own = next((o for o in ("ivr", "bench") if f"/{o}/" in path), "")
        return name, own
    top = path.split("/")[0].removesuffix(".py")
    return name, "" if top in sys.stdlib_module_names or top.startswith("<") else top


def summarise_profiles(folder: str, label: str, top: int = 15) -> str:
    """Where the workers spent their CPU (py-spy raw stacks sampled with --gil). Time in the standard
    library is charged to the package that called it (ElementTree to twilio, logging to whoever logs),
    then the heaviest functions, inclusive, without the frames every sample shares."""
    owners: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for path in FsPath(folder).glob(f"{label}-worker*.txt"):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_frame(f) for f in stack.split(";")]
            owner = next((o for _, o in reversed(frames) if o), "stdlib")
            owners[owner] = owners.get(owner, 0) + n
            for name in {name for name, _ in frames}:
                inclusive[name] = inclusive.get(name, 0) + n
    if not total:
        return f"{label}: no samples (py-spy needs permission to attach: run as root or allow ptrace)"
    lines = [f"{label}: {total} samples holding the GIL; CPU by package (stdlib charged to its caller):"]
    lines += [f"   {100 * n / total:5.1f}%  {owner}" for owner, n in sorted(owners.items(), key=lambda kv: -kv[1])[:8]]
    lines.append("   heaviest functions, inclusive:")
    shared = 0.9 * total
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1]):
        if n < shared and top > 0:
            lines.append(f"   {100 * n / total:5.1f}%  {name}")
            top -= 1
    report = "\n".join(lines)
    (FsPath(folder) / f"summary-{label}.txt").write_text(report + "\n")
    return report


# Webhook kinds the p99 target leaves out, and why (marks in bench/paths.py).
EXEMPT = {"sdu": "calls the SDU", "scrypt": "checks a staff PIN against its scrypt hash, slow on purpose"}


def _worst_p99(data: dict) -> tuple[float | None, str | None]:
    return max(((p["p99"], k) for k, p in data["latency_ms"].items()
                if p["n"] and k.rpartition(" ")[2] not in EXEMPT), default=(None, None))


def targets(result: dict) -> dict:
    levels = result["levels"]
    at = min(levels, key=lambda lv: abs(lv["calls"] - TARGETS["calls"]), default=None)
    out = {}
    limit = TARGETS["p99_ms"]
    if at is not None:
        where = f" at {at['calls']} calls"
        # The mix's one ratio is shown, not judged: the per-path targets below replaced it.
        out["throughput system/floor, the mix" + where] = {"value": at["ratio"], "target": "(per path)", "met": None}
        for name, level in (result.get("per_path") or {}).items():
            floor = level.get("floor_kind") if PATH_FLOORS.get(
                result["settings"]["paths"].get(name, {}).get("line")) else None
            if floor is None:
                continue
            ratio = level["ratio"]
            if floor == "floor_state":     # --state-floor: measured instead of the minimal floor; shown, never judged
                out[f"{name} alone, system/{floor}"] = {"value": ratio, "target": "(a figure)", "met": None}
                continue
            out[f"{name} alone, system/{floor}"] = {"value": ratio, "target": f">= {TARGETS['ratio']}",
                                                    "met": None if ratio is None else ratio >= TARGETS["ratio"]}
        paced = result.get("paced")
        if paced:
            worst, kind = _worst_p99(paced["system"])
            name = f"p99 ms of webhooks without the SDU (or scrypt) at {paced['calls']} calls pausing " \
                   f"{paced['pause_s']:g} s"
            out[name] = {"value": f"{worst} ({kind})", "target": f"< {limit}",
                         "met": None if worst is None else worst < limit}
        worst, kind = _worst_p99(at["system"])
        floor_worst, _ = _worst_p99(at["floor"])
        # Without pauses every request queues behind the others: latency ~ calls / throughput.
        out["p99 ms without the SDU" + where + ", no pauses (queueing; the floor's: "
            + f"{floor_worst})"] = {"value": f"{worst} ({kind})", "target": f"< {limit}",
                                    "met": None if worst is None else worst < limit}
        errors = sum(lv["system"]["error_total"] + lv["floor"]["error_total"] for lv in levels)
        if paced:
            errors += paced["system"]["error_total"] + paced["floor"]["error_total"]
        out["errors (all runs)"] = {"value": errors, "target": "0", "met": errors == 0}
    mem = result.get("memory") or {}
    if mem.get("bytes_per_call") is not None:
        limit = TARGETS["bytes_per_call"]
        out["Redis bytes per active call"] = {"value": mem["bytes_per_call"], "target": f"< {limit}",
                                              "met": mem["bytes_per_call"] < limit}
        out["every key of a call expires"] = {"value": mem["all_keys_expire"], "target": True,
                                              "met": mem["all_keys_expire"]}
    return out


def compare(old: dict, new: dict, say: Callable[[str], None]) -> None:
    """Requests per second and p99 per kind, earlier -> now, for the runs both results have."""
    say(f"\nCompared with {old.get('commit')} ({old.get('when')}):")
    def runs(result: dict) -> dict:
        out = {f"{lv['calls']} calls": lv for lv in result.get("levels", [])}
        if result.get("paced"):
            out[f"{result['paced']['calls']} calls paced"] = result["paced"]
        return out
    before, now = runs(old), runs(new)
    common = [name for name in now if name in before]
    if not common:
        say("   no run with the same number of calls in both")
    for name in common:
        for target in ("system", "floor"):
            a, b = before[name][target], now[name][target]
            say(f"   {name:>16} {target:7} req/s {a['rps']} -> {b['rps']}; p99 " + ", ".join(
                f"{k} {a['latency_ms'].get(k, {}).get('p99')} -> {p.get('p99')}" for k, p in b["latency_ms"].items()))


# --- command line ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    def levels(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError("give numbers of calls like 10,50,200") from None
        if not values or any(not 1 <= v <= 1000 for v in values):
            raise argparse.ArgumentTypeError("each number of calls must be from 1 to 1000")
        return values

    parser.add_argument("--calls", type=levels, default=[10, 50, 200],
                        help="simultaneous calls to sweep, comma-separated (default: 10,50,200)")
    parser.add_argument("--duration", type=float, default=4.0,
                        help="measured seconds per run: per round, for each of system and floor (default: 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run (default: 1)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="runs of each of system and floor per level, taken in turns (default: 4)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests per run at most (default: 200000)")
    parser.add_argument("--max-seconds", type=float, default=600,
                        help="start no new run after this many seconds (default: 600)")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY for gunicorn (default: 2)")
    parser.add_argument("--paced-calls", type=int, default=50,
                        help="simultaneous calls of the paced run, 0 for none (default: 50)")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds a caller of the paced run waits before each step (default: 0.2)")
    parser.add_argument("--hold", type=int, default=200, help="calls held mid-way for Redis memory (default: 200)")
    parser.add_argument("--sdu-delay", type=float, default=0.0, metavar="SECONDS",
                        help="the SDU stub answers after this long, as a slow SDU would (default: 0)")
    parser.add_argument("--paths", type=lambda t: [p.strip() for p in t.split(",") if p.strip()], default=None,
                        help="only these paths of bench/paths.py, comma-separated (default: all that work)")
    parser.add_argument("--out", help="JSON file to write (default: bench/results/<time>-<commit>.json)")
    parser.add_argument("--no-out", action="store_true", help="do not write a JSON file")
    parser.add_argument("--compare", metavar="JSON", help="an earlier result to compare with")
    parser.add_argument("--profile", metavar="DIR",
                        help="py-spy the workers (system and floor) during one run, into DIR, and summarise")
    parser.add_argument("--profile-calls", type=int, default=50, help="the run to profile (default: 50 calls)")
    parser.add_argument("--per-path", type=int, default=50, metavar="CALLS",
                        help="also measure each path alone with this many calls against the floor doing the "
                             "same outside work: the per-path speed targets (default: 50; ~40 s a path; "
                             "0 for none)")
    parser.add_argument("--state-floor", action="store_true",
                        help="measure the call center's paths alone against a floor that reads a call's state "
                             "before writing it (two Redis round trips a step, bench/floor_app.py) instead of "
                             "the minimal floor: a figure for comparison, not the speed target")
    parser.add_argument("--capacity", type=levels, default=None, metavar="CALLS",
                        help="instead of the sweep: simultaneous human-paced calls (--pause, e.g. 3) at these "
                             "levels (e.g. 50,100,200), each for --warmup + --duration seconds; the most calls "
                             f"with the call center's p99 under {CAPACITY_P99_MS:g} ms and no error")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 4 calls, 1 s each for system and floor, 10 calls held; "
                             "writes JSON only with --out")


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    if args.capacity:
        args.per_path, args.paced_calls, args.hold = 0, 0, 0
    if args.quick:
        args.calls, args.duration, args.warmup, args.hold, args.rounds = [4], 1.0, 0.3, 10, 1
        args.paced_calls, args.pause, args.profile = 4, 0.05, None
        args.per_path = args.per_path and 4
    if args.duration <= 0 or args.warmup < 0 or args.max_requests < 1 or not 1 <= args.workers <= 64 \
            or not 1 <= args.rounds <= 20 \
            or not 0 <= args.hold <= 5000 or args.max_seconds <= 0 or not 0 <= args.paced_calls <= 1000 \
            or not 0 <= args.pause <= 10 or not 0 <= args.sdu_delay <= 2 \
            or not 0 <= args.per_path <= 1000:
        out("ivr bench: --duration, --max-requests and --max-seconds must be positive, --warmup not negative, "
            "--rounds 1-20, --workers 1-64, --hold 0-5000, --paced-calls 0-1000, --pause 0-10, --sdu-delay 0-2, "
            "--per-path 0-1000")
        return 2
    if args.profile:
        tool("py-spy")
        if args.profile_calls not in args.calls:
            out(f"ivr bench: --profile-calls {args.profile_calls} is not one of --calls {args.calls}")
            return 2
    old = None
    if args.compare:
        try:
            old = json.loads(FsPath(args.compare).read_text())
        except (OSError, ValueError) as exc:
            out(f"ivr bench: cannot read {args.compare}: {exc}")
            return 2
    bench = Bench(args, out)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = bench.run()
    except BenchError as exc:
        out(f"ivr bench: {exc}")
        out(f"   logs kept in {bench.logdir}")
        return 1
    except KeyboardInterrupt:
        out("ivr bench: interrupted; the processes it started are stopped")
        return 130
    finally:
        bench.procs.stop_all()
        signal.signal(signal.SIGTERM, previous)
    shutil.rmtree(bench.logdir, ignore_errors=True)
    if old:
        compare(old, result, out)
    if not args.no_out and not (args.quick and not args.out):   # a smoke run keeps no file unless asked
        path = FsPath(args.out) if args.out else RESULTS / (
            f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{result['commit'].replace('+', '-')}"
            + ("-quick" if args.quick else "") + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")
        out(f"\nwrote {path}")
    runs = result["levels"] + ([result["paced"]] if "paced" in result else [])
    errors = sum(run[t]["error_total"] for run in runs for t in ("system", "floor"))
    return 1 if errors or result["memory"]["hold_errors"] else 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    try:
        return run(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
