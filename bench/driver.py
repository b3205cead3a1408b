"""The load driver: many simulated calls at once, each a simulated `Phone` walking one path, over HTTP.

`ivr.simphone.Phone` acts out the TwiML as Twilio would (Gather, Redirect, Dial, Record, Hangup);
this module gives it a lean transport (one keep-alive socket per call, signed as Twilio signs) that
times every request by kind, and runs calls back to back on threads, without the pauses a real
caller makes (or, for the paced run, with a short fixed pause), so that the numbers are the
server's. Every loop is bounded in time and requests.
"""

from __future__ import annotations

import itertools
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

from twilio.request_validator import RequestValidator

from ivr.callflow.simphone import Phone

from .paths import Path

ACCOUNT_SID = "AC00000000000000000000000000000000"

def broken_phrases() -> tuple[str, ...]:
    """What the system says, in either language, when something broke inside it (an error, lost
    state): a webhook whose answer says it counts as an error. Read from the prompts themselves."""
    from ivr.callflow.prompts import Prompts
    from ivr.settings import ROOT

    prompts = Prompts.load(ROOT / "prompts")
    return tuple(prompts.text(pid, lang).split(".")[0] for pid in ("sys.error", "sys.state_lost")
                 for lang in ("en", "es"))


BROKEN = broken_phrases()


def sdu_down_phrase() -> str:
    """What a payment caller hears when the SDU cannot answer (or every SDU slot is taken)."""
    from ivr.callflow.prompts import Prompts
    from ivr.settings import ROOT

    return Prompts.load(ROOT / "prompts").text("pay.sdu.down", "en").split(".")[0]


SDU_DOWN = sdu_down_phrase()


class Stop(Exception):
    """Raised inside a call when it must end now (the phase is over, or the call is to be held)."""


class Connection:
    """A minimal HTTP/1.1 client on one socket: keep-alive when the server allows it, else reconnects."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.reader = None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = self.reader = None

    def _connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def post(self, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        reused = self.sock is not None
        head = [f"POST {target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                "Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        try:
            if not reused:
                self._connect()
            self.sock.sendall(data)
            return self._read()
        except (ConnectionError, EOFError):
            self.close()
            if not reused:
                raise
            # The server closed an idle keep-alive connection: once more on a new one.
            self._connect()
            self.sock.sendall(data)
            return self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> tuple[int, bytes]:
        line = self.reader.readline(65537)
        if not line:
            raise EOFError("connection closed before a response")
        version, status = line.split(None, 2)[:2]
        headers = {}
        while True:
            line = self.reader.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        code = int(status)
        if "content-length" in headers:
            body = self.reader.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        elif code in (204, 304) or code < 200:
            body = b""
        else:
            body = self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close" or version == b"HTTP/1.0":
            self.close()
        return code, body

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.reader.readline().split(b";")[0], 16)
            if size == 0:
                while self.reader.readline() not in (b"\r\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.reader.read(size))
            self.reader.readline()


@dataclass
class Phase:
    """One measured run: requests that start at or after `t0` and end by `t1` are counted."""
    t0: float
    t1: float
    max_requests: int
    sent: itertools.count = field(default_factory=itertools.count)
    stopped: threading.Event = field(default_factory=threading.Event)

    def over(self) -> bool:
        return self.stopped.is_set() or time.perf_counter() >= self.t1


@dataclass
class Tally:
    """What one driver thread measured; merged after the phase (no locks while measuring)."""
    latencies: dict[str, list[float]] = field(default_factory=dict)
    requests: int = 0
    calls: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    heard: dict[str, int] = field(default_factory=dict)    # answers that are no error, counted ("sdu_down")

    def error(self, kind: str, example: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(example[:300])

    def merge(self, other: Tally) -> None:
        for kind, values in other.latencies.items():
            self.latencies.setdefault(kind, []).extend(values)
        self.requests += other.requests
        self.calls += other.calls
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])
        for what, n in other.heard.items():
            self.heard[what] = self.heard.get(what, 0) + n


class BenchTransport:
    """The `Transport` interface the phone uses (`post(url, params)`), for one call, timed by kind."""

    def __init__(self, base_url: str, auth_token: str, path: Path, *, phase: Phase | None = None,
                 tally: Tally | None = None, hold_at: int | None = None, timeout: float = 20.0,
                 pause: float = 0.0, by_line: bool = False) -> None:
        split = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.conn = Connection(split.hostname or "127.0.0.1", split.port or 80, timeout)
        self.path = path
        self.phase = phase
        self.tally = tally or Tally()
        self.hold_at = hold_at     # stop (without hanging up) before answering the key at this index
        self.pause = pause         # seconds the caller waits before each request after the first
        self.posted = 0
        self.phone: Phone | None = None
        self.by_line = by_line     # kinds named by line too ("callcenter /voice/step"): --capacity

    def bind(self, phone: Phone) -> None:
        self.phone = phone   # its `keys` are the path's keys not pressed yet

    def _key_index(self) -> int:
        """The index of the key the next request answers (-1: none yet, the call's first request)."""
        remaining = self.phone.keys if self.phone is not None else None
        return len(self.path.keys) - len(remaining or []) - 1

    def kind(self, url: str) -> str:
        route = url.split("?", 1)[0]
        mark = self.path.marks.get(self._key_index()) if route == "/voice/step" else None
        kind = f"{route} {mark}" if mark else route
        return f"{self.path.line} {kind}" if self.by_line else kind

    def post(self, url: str, params: dict, sign: bool = True) -> tuple[int, str]:
        phase = self.phase
        if url != "/voice/status":
            if self.hold_at is not None and self._key_index() >= self.hold_at:
                raise Stop("hold")
            if self.pause and self.posted:
                # Jittered, so that callers do not fall into step and arrive in bursts.
                time.sleep(random.uniform(0.5, 1.5) * self.pause)
            if phase is not None and (phase.over() or next(phase.sent) >= phase.max_requests):
                raise Stop("phase over")
        self.posted += 1
        full = urljoin(self.base_url + "/", url)
        headers = {"X-Twilio-Signature": self.validator.compute_signature(full, params)} if sign else {}
        target = full[len(self.base_url):] or "/"
        kind = self.kind(url)
        started = time.perf_counter()
        try:
            status, body = self.conn.post(target, urlencode(params).encode(), headers)
        except (OSError, EOFError, ValueError) as exc:
            self.tally.error("transport", f"{kind}: {type(exc).__name__}: {exc}")
            raise Stop("transport error") from exc
        ended = time.perf_counter()
        if phase is None or (started >= phase.t0 and ended <= phase.t1):
            self.tally.latencies.setdefault(kind, []).append(ended - started)
            self.tally.requests += 1
            if status not in (200, 204):
                self.tally.error(f"http {status}", f"{kind}: HTTP {status}: {body[:200]!r}")
        text = body.decode("utf-8", "replace")
        if SDU_DOWN in text:
            self.tally.heard["sdu_down"] = self.tally.heard.get("sdu_down", 0) + 1
        if status == 200 and any(b in text for b in BROKEN):
            self.tally.error("app", f"{kind} ({self.path.name}): {text[:240]}")
        return status, text

    def close(self) -> None:
        self.conn.close()


def status_params(path: Path, sid: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": path.caller, "To": path.to,
            "Direction": "inbound", "CallStatus": "completed", "CallDuration": "60", "ApiVersion": "2010-04-01"}


def place(base_url: str, auth_token: str, path: Path, *, phase: Phase | None = None,
          tally: Tally | None = None, hold: bool = False,
          pause: float = 0.0, by_line: bool = False) -> tuple[Phone | None, BenchTransport, str]:
    """One call along `path`. With `hold`, the caller stays on the line at the path's last key (no
    status callback yet; end it with `hang_up`). Returns (the Phone, its call over, or None; transport, sid)."""
    transport = BenchTransport(base_url, auth_token, path, phase=phase, tally=tally,
                               hold_at=len(path.keys) - 1 if hold else None, pause=pause, by_line=by_line)
    sid = "CA" + uuid.uuid4().hex
    phone = Phone(transport=transport, to=path.to, caller=path.caller_id(), sid=sid, account_sid=ACCOUNT_SID)
    transport.bind(phone)
    try:
        call = phone.place(path.keys)
    except Stop:
        if not hold:
            # The caller hangs up mid-call, as at the end of a phase: the status callback ends it.
            hang_up(transport, sid)
        return None, transport, sid
    if not hold:
        transport.close()
    transport.tally.calls += 1
    return call, transport, sid


def hang_up(transport: BenchTransport, sid: str) -> None:
    saved, transport.phase, transport.hold_at, transport.pause = transport.phase, None, None, 0.0
    tally, transport.tally = transport.tally, Tally()   # not measured
    try:
        transport.post("/voice/status", status_params(transport.path, sid))
    except Stop:
        pass
    finally:
        transport.phase, transport.tally = saved, tally
        transport.close()


def run_phase(base_url: str, auth_token: str, paths: Iterable[Path], calls: int, *, warmup: float,
              duration: float, max_requests: int, pause: float = 0.0, by_line: bool = False) -> tuple[Tally, float]:
    """`calls` simultaneous callers, each placing calls back to back along the paths in turn, for
    `warmup` + `duration` seconds (or until `max_requests`), pausing `pause` seconds before each
    request after a call's first. Returns the merged tally of the measured window and its length."""
    # The mix: each path as often as its weight, in an order fixed for every run (comparable runs).
    paths = [p for p in paths for _ in range(max(1, p.weight))]
    random.Random(6).shuffle(paths)
    start = time.perf_counter()
    phase = Phase(t0=start + warmup, t1=start + warmup + duration, max_requests=max_requests)
    tallies = [Tally() for _ in range(calls)]

    def caller(i: int) -> None:
        tally = tallies[i]
        if pause:
            time.sleep(random.uniform(0, pause))   # callers start spread out, as calls arrive
        for n in itertools.count():
            if phase.over():
                return
            counted = time.perf_counter() >= phase.t0
            call, _, _ = place(base_url, auth_token, paths[(i + n) % len(paths)], phase=phase, tally=tally,
                               pause=pause, by_line=by_line)
            if call is not None and not counted:
                tally.calls -= 1   # finished a call that started in the warm-up: count only whole calls
            if call is not None and any(e.kind == "error" for e in call.events):
                tally.error("call", f"{paths[(i + n) % len(paths)].name}: "
                            + "; ".join(e.text for e in call.events if e.kind == "error"))

    threads = [threading.Thread(target=caller, args=(i,), name=f"caller-{i}", daemon=True) for i in range(calls)]
    for t in threads:
        t.start()
    hard_stop = phase.t1 + 30
    for t in threads:
        t.join(max(0.0, hard_stop - time.perf_counter()))
    phase.stopped.set()
    total = Tally()
    for t in tallies:
        total.merge(t)
    if any(t.is_alive() for t in threads):
        total.error("stuck", "a caller thread did not finish within 30 s of the end of the phase")
    window = min(phase.t1, time.perf_counter()) - phase.t0
    return total, window


def percentiles(values: list[float]) -> dict[str, float]:
    """n, p50, p95, p99 and max in milliseconds (nearest rank)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
    return {"n": len(ordered), "p50": round(rank(50) * 1000, 2), "p95": round(rank(95) * 1000, 2),
            "p99": round(rank(99) * 1000, 2), "max": round(ordered[-1] * 1000, 2)}
