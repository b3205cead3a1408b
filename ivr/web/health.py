"""The dependencies' status for /health: probed by one thread at a time, cached a few seconds, time-bounded.

A load balancer (or anyone: /health is not signed) may poll it many times a second. Each probe of a
stalled SDU or a frozen Redis holds a web thread for up to its timeout, so uncached polling alone can
take every thread from the callers. Here at most one thread per process probes, at most every
`ttl` seconds, for at most `probe_seconds`; every other request gets the last answer at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Probe = Callable[[], "bool | None"]


@dataclass
class Status:
    checks: dict[str, bool | None]
    at: float                       # monotonic time of the probe; 0 when never probed
    details: dict[str, str] = field(default_factory=dict)


class HealthCache:
    def __init__(self, probes: dict[str, Probe], ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.probes = probes
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._status = Status({name: None for name in probes}, 0.0)

    def status(self) -> Status:
        current = self._status
        if current.at and self.clock() - current.at < self.ttl:
            return current
        if not self._lock.acquire(blocking=False):
            return current          # another thread is probing: answer with what is known
        try:
            checks: dict[str, bool | None] = {}
            for name, probe in self.probes.items():
                try:
                    checks[name] = probe()
                except Exception:   # a probe reports; it never fails /health
                    checks[name] = False
            self._status = Status(checks, self.clock())
            return self._status
        finally:
            self._lock.release()
