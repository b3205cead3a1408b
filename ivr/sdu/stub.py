"""A stub SDU server: the whole SDU contract (`contract.yaml`) served from `fixtures.json`.

For development (`ivr sdu-stub`, default port 5001), the simulated phone and the end-to-end tests.
Every case has a payer and a payee, each with their own PIN; the payer's view has no
`next_disbursement` and no payment `disbursement_method`.

Trigger case numbers (PINs work unless said otherwise; see `simulate` in fixtures.json):
- `999000503`: summary and payments answer 503 with `Retry-After: 1` (the nightly batch window).
- `999000429`: summary and payments answer 429 with `Retry-After: 1`.
- `999000500`: PIN verification answers 503 with `Retry-After: 1` (the SDU is down at sign-in).
- `999000200`: flaky; every other summary/payments request answers 503 with `Retry-After: 0`.
- `999000408`: slow; summary and payments answer after 3 seconds.

Five consecutive wrong PINs for one case number lock it (423) until the stub restarts or
`StubState.reset_locks()` is called; a right PIN before that resets the count.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from ivr.sdu import schema
from ivr.sdu.client import DEV_API_KEY, MaskCaseNumbers, mask_case_numbers

FIXTURES_PATH = Path(__file__).with_name("fixtures.json")
DEFAULT_PORT = 5001
LOCK_AFTER = 5

log = logging.getLogger("ivr.sdu.stub")

_CASE_RE = re.compile(r"^[0-9]{9}$")
_LIMIT_RE = re.compile(r"^[0-9]{1,3}$")
_PIN_PATH = "/v1/pin-verifications"


def load_fixtures(path: str | Path | None = None) -> dict[str, Any]:
    """The fixture document (see `_about` in fixtures.json)."""
    with Path(path or FIXTURES_PATH).open(encoding="utf-8") as fh:
        return json.load(fh)


class StubState:
    """The stub's mutable state, shared by the request threads: PIN failure counts and the request
    counts behind the flaky trigger."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pin_failures: dict[str, int] = {}
        self._hits: dict[tuple[str, str], int] = {}

    def locked(self, case_number: str) -> bool:
        with self._lock:
            return self._pin_failures.get(case_number, 0) >= LOCK_AFTER

    def pin_result(self, case_number: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._pin_failures.pop(case_number, None)
            else:
                self._pin_failures[case_number] = self._pin_failures.get(case_number, 0) + 1

    def hit(self, case_number: str, endpoint: str) -> int:
        """Count one request; returns its 1-based number for this case and endpoint."""
        with self._lock:
            n = self._hits.get((case_number, endpoint), 0) + 1
            self._hits[(case_number, endpoint)] = n
            return n

    def reset_locks(self) -> None:
        with self._lock:
            self._pin_failures.clear()


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    resp = jsonify({"error": code, "message": message})
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    if status == 401:
        resp.headers["WWW-Authenticate"] = "Bearer"
    return resp


def _payment_view(payment: dict[str, Any], role: str) -> dict[str, Any]:
    view = dict(payment)
    if role == "payer":
        view["disbursement_method"] = None
    return view


def create_stub_app(
    fixtures_path: str | Path | None = None,
    api_key: str | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Flask:
    """The stub SDU as a Flask app. `api_key` defaults to `SDU_API_KEY` from the environment, then to
    the development key; `sleep` is what the slow trigger waits with (tests shorten it)."""
    fixtures = load_fixtures(fixtures_path)
    cases: dict[str, dict[str, Any]] = {c["case_number"]: c for c in fixtures["cases"]}
    key = api_key or os.environ.get("SDU_API_KEY") or DEV_API_KEY
    state = StubState()
    schema.prepare()

    app = Flask("ivr.sdu.stub")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["sdu_stub"] = state

    @app.before_request
    def _authenticate() -> Response | None:
        if request.path == "/v1/health":  # `security: []` in the contract
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
            return _error(401, "unauthorized", "missing or wrong bearer key")
        return None

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # Unknown paths and methods answer in the contract's error shape, not Flask's HTML.
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.code or 500, "invalid_request")
        return _error(exc.code or 500, code, exc.description or "error")

    def _simulate(case_number: str, endpoint: str) -> Response | None:
        sim = cases.get(case_number, {}).get("simulate")
        if not sim or endpoint not in sim["endpoints"]:
            return None
        if "delay_seconds" in sim:
            sleep(float(sim["delay_seconds"]))
            return None
        if sim["mode"] == "alternate" and state.hit(case_number, endpoint) % 2 == 0:
            return None
        return _error(sim["status"], sim["error"], "simulated by the stub", retry_after=sim["retry_after"])

    def _lookup_args(case_number: str) -> tuple[str | None, Response | None]:
        if not _CASE_RE.match(case_number):
            return None, _error(400, "invalid_request", "case_number must be 9 digits")
        role = request.args.get("role")
        if role not in ("payer", "payee"):
            return None, _error(400, "invalid_request", "role must be payer or payee")
        return role, None

    @app.get("/v1/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.post(_PIN_PATH)
    def pin_verifications() -> Response:
        body = request.get_json(silent=True)
        if body is None or not schema.request_body_validator("POST", _PIN_PATH).is_valid(body):
            return _error(400, "invalid_request", "body must be {case_number: 9 digits, pin: 4 digits}")
        case_number, pin = body["case_number"], body["pin"]
        if (simulated := _simulate(case_number, "pin")) is not None:
            return simulated
        if state.locked(case_number):
            return _error(423, "locked", "too many failed PIN attempts")
        case = cases.get(case_number)
        for role, party in (case or {}).get("parties", {}).items():
            if hmac.compare_digest(party["pin"].encode(), pin.encode()):
                state.pin_result(case_number, ok=True)
                return jsonify(
                    {"match": True, "role": role, "preferred_language": party["preferred_language"]}
                )
        # Unknown case and wrong PIN answer alike, and both count towards the lock.
        state.pin_result(case_number, ok=False)
        return jsonify({"match": False})

    @app.get("/v1/cases/<case_number>/summary")
    def summary(case_number: str) -> Response:
        role, bad = _lookup_args(case_number)
        if bad is not None:
            return bad
        if (simulated := _simulate(case_number, "summary")) is not None:
            return simulated
        case = cases.get(case_number)
        if case is None:
            return _error(404, "not_found", "no such case")
        payments = case["payments"]
        answer: dict[str, Any] = {
            "case_number": case_number,
            "role": role,
            "status": case["status"],
            "as_of": case["as_of"],
            "weekly_order": case["weekly_order"],
            "arrears_balance": case["arrears_balance"],
            "last_payment": _payment_view(payments[0], role) if payments else None,
            "next_disbursement": case["next_disbursement"] if role == "payee" else None,
        }
        if "income_withholding_active" in case:
            answer["income_withholding_active"] = case["income_withholding_active"]
        return jsonify(answer)

    @app.get("/v1/cases/<case_number>/payments")
    def payments(case_number: str) -> Response:
        role, bad = _lookup_args(case_number)
        if bad is not None:
            return bad
        raw_limit = request.args.get("limit", "5")
        if not _LIMIT_RE.match(raw_limit) or not 1 <= int(raw_limit) <= 20:
            return _error(400, "invalid_request", "limit must be an integer from 1 to 20")
        if (simulated := _simulate(case_number, "payments")) is not None:
            return simulated
        case = cases.get(case_number)
        if case is None:
            return _error(404, "not_found", "no such case")
        listed = case["payments"][: int(raw_limit)]
        return jsonify({"case_number": case_number, "payments": [_payment_view(p, role) for p in listed]})

    return app


class _MaskingRequestHandler(WSGIRequestHandler):
    """Werkzeug's access log, with case numbers in paths masked."""

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 - werkzeug's signature
        super().log(type, "%s", mask_case_numbers(message % args))


def serve_in_thread(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    app: Flask | None = None,
    fixtures_path: str | Path | None = None,
    api_key: str | None = None,
) -> tuple[str, Callable[[], None]]:
    """Serve the stub over real HTTP on a daemon thread (port 0: any free port). Returns its base URL
    and a function that stops it."""
    app = app or create_stub_app(fixtures_path, api_key)
    server = make_server(host, port, app, threaded=True, request_handler=_MaskingRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="sdu-stub", daemon=True)
    thread.start()
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{server.server_port}"

    def shutdown() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return base_url, shutdown


def main(argv: Sequence[str] | None = None) -> int:
    """`ivr sdu-stub`: serve the stub SDU until interrupted, under gunicorn (one process, since the PIN
    lock counts live in it; threads for concurrent lookups; connections kept open between requests, as
    a client keeps them to the real SDU: werkzeug's server closes each one after a single answer,
    which cost both sides a TCP connection per lookup)."""
    parser = argparse.ArgumentParser(prog="ivr sdu-stub", description="Serve the stub SDU API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SDU_STUB_PORT", DEFAULT_PORT)))
    parser.add_argument("--fixtures", default=None, help="fixture file (default: the bundled one)")
    parser.add_argument("--api-key", default=None, help="bearer key (default: $SDU_API_KEY or the dev key)")
    parser.add_argument("--threads", type=int, default=16, help="requests served at once (default: 16)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_stub_app(args.fixtures, args.api_key)
    host = f"[{args.host}]" if ":" in args.host else args.host
    log.info("stub SDU listening on http://%s:%d", host, args.port)
    _StubServer(app, {"bind": f"{host}:{args.port}", "workers": 1, "worker_class": "gthread",
                      "threads": args.threads, "keepalive": 75, "accesslog": "-",
                      "logger_class": _MaskingGunicornLogger, "graceful_timeout": 2,
                      # gunicorn's default control socket is per user: it would be the web server's too.
                      "control_socket_disable": True}).run()
    return 0


class _MaskingGunicornLogger(GunicornLogger):
    """gunicorn's logs with case numbers masked: request lines in the access log, and the request URI
    its error log names when a request fails."""

    def setup(self, cfg) -> None:  # noqa: ANN001 - gunicorn's signature
        super().setup(cfg)
        if not any(isinstance(f, MaskCaseNumbers) for f in self.error_log.filters):
            self.error_log.addFilter(MaskCaseNumbers())

    def atoms(self, resp, req, environ, request_time):  # noqa: ANN001 - gunicorn's signature
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q"):
            atoms[key] = mask_case_numbers(atoms[key])
        return atoms


class _StubServer(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application, self.options = app, options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


if __name__ == "__main__":
    raise SystemExit(main())
