"""A private stub SDU over real HTTP that can be made to fail on demand.

It serves the bundled stub (ivr/sdu/stub.py: the contract and fixtures) with its own state, so that
wrong PINs sent by these tests never lock a case in the session-wide stub other tests use. `fail(...)`
makes chosen endpoints slow, 5xx, 429/503 with Retry-After or garbage (for good, or for the next
`times` requests); `hits` counts the requests each endpoint got.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from ivr.sdu.stub import create_stub_app, serve_in_thread


def endpoint_of(path: str) -> str:
    if path.startswith("/v1/pin-verifications"):
        return "pin"
    if path.endswith("/summary"):
        return "summary"
    if path.endswith("/payments"):
        return "payments"
    return "health"


class FaultySDU:
    def __init__(self) -> None:
        self.app = create_stub_app()
        self.mode: str | None = None
        self.endpoints: set[str] = set()
        self.retry_after = "1"
        self.delay = 4.0
        self.times: int | None = None      # failures left before it answers normally again; None: no end
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        inner = self.app.wsgi_app
        self.app.wsgi_app = lambda environ, start_response: self._serve(inner, environ, start_response)
        self.url, self._stop = serve_in_thread(app=self.app)

    def fail(self, mode: str | None, endpoints=("pin", "summary", "payments"), *,
             retry_after: str = "1", delay: float = 4.0, times: int | None = None) -> None:
        """mode: slow, 500, 502, 429, 503, garbage, bad_json, or None (answer normally); `times`: only
        the next so many requests to `endpoints` fail."""
        with self._lock:
            self.mode, self.endpoints, self.retry_after, self.delay = mode, set(endpoints), retry_after, delay
            self.times = times

    def stop(self) -> None:
        self._stop()

    @property
    def data_hits(self) -> int:
        return self.hits["summary"] + self.hits["payments"]

    def _serve(self, inner, environ, start_response):
        endpoint = endpoint_of(environ.get("PATH_INFO", ""))
        with self._lock:
            self.hits[endpoint] += 1
            mode = self.mode if endpoint in self.endpoints else None
            if mode is not None and self.times is not None:
                mode = mode if self.times > 0 else None
                self.times = max(self.times - 1, 0)
        if mode is None:
            return inner(environ, start_response)
        if mode == "slow":
            time.sleep(self.delay)
            return inner(environ, start_response)
        if mode == "garbage":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"<html>Service temporarily unavailable</html>"]
        if mode == "bad_json":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"case_number": 12, "match": "maybe", "payments": "none"}']
        status = {"500": "500 Internal Server Error", "502": "502 Bad Gateway",
                  "429": "429 Too Many Requests", "503": "503 Service Unavailable"}[mode]
        headers = [("Content-Type", "application/json")]
        if mode in ("429", "503"):
            headers.append(("Retry-After", self.retry_after))
        start_response(status, headers)
        return [b'{"error": "unavailable", "message": "simulated"}']
