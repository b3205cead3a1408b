"""The one client of the SDU API (`contract.yaml`).

Every public call:
- fails fast with `SDUUnavailable` while the circuit breaker is open (no network at all), and when
  `max_concurrent` lookups of this process are already waiting on the SDU: a slow SDU then holds at
  most that many of the web threads, and the other lines' webhooks keep the rest (bench/RESULTS.md);
- finishes within a time budget (default 2.5 s, the most a caller should wait on a webhook), counting
  connect/read timeouts, retries and `Retry-After` waits; the budget can be shared by several calls
  of one webhook with `budget_scope()`;
- retries idempotent GETs on connection errors, timeouts, 429 and 502/503/504 (honouring
  `Retry-After` when it fits in the budget); the PIN POST only when the request never left;
- validates the answer against the contract and returns dataclasses (`Decimal` money, `date` dates).

Callers catch `SDUError` and tell the caller plainly. Nothing here logs a PIN, a full case number or
a response body.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NoReturn

import requests
import urllib3
from jsonschema import ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ivr.redact import mask_digits
from ivr.sdu import schema
from ivr.settings import DEV_SDU_KEY

log = logging.getLogger("ivr.sdu")

DEV_API_KEY = DEV_SDU_KEY
DEV_BASE_URL = "http://127.0.0.1:5001"

_CASE_RE = re.compile(r"^[0-9]{9}$")
_PIN_RE = re.compile(r"^[0-9]{4}$")
_ROLES = ("payer", "payee")
_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
# An attempt needs at least this much of the budget to be worth making.
_MIN_ATTEMPT = 0.25
_BACKOFF = 0.1  # seconds before the first retry without Retry-After; doubles each time

_PIN_PATH = "/v1/pin-verifications"
_SUMMARY_PATH = "/v1/cases/{case_number}/summary"
_PAYMENTS_PATH = "/v1/cases/{case_number}/payments"
_HEALTH_PATH = "/v1/health"


# --- errors -----------------------------------------------------------------------------------------


class SDUError(Exception):
    """Anything that keeps us from answering the caller from SDU data. Messages never hold personal
    data, so they may be logged."""


class SDUUnavailable(SDUError):
    """The SDU cannot answer now: timeout, connection error, 5xx, 429, 401 (our key), open breaker,
    or an answer that breaks the contract."""


class SDUNoAnswer(SDUUnavailable):
    """The request may have reached the SDU, which may have acted on it, but no usable answer came
    back: a timeout or a broken connection after sending, a 5xx other than 503, or an answer that
    breaks the contract. (A wrong PIN sent this way may count towards the SDU's lock.)"""


class SDULocked(SDUError):
    """423: the SDU has locked the case after too many wrong PINs."""


class SDUNotFound(SDUError):
    """404: no such case."""


class SDUBadRequest(SDUError):
    """400, or an argument we refuse to send (not a 9-digit case number, a 4-digit PIN, a role)."""


# --- results ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinResult:
    match: bool
    role: str | None = None
    preferred_language: str | None = None


@dataclass(frozen=True)
class WeeklyOrder:
    current_support: Decimal
    medical_support: Decimal
    child_care: Decimal
    arrears_payment: Decimal
    total: Decimal


@dataclass(frozen=True)
class Payment:
    payment_id: str
    received_date: date
    amount: Decimal
    source: str
    status: str
    disbursed_date: date | None = None
    disbursement_method: str | None = None


@dataclass(frozen=True)
class Disbursement:
    date: date
    amount: Decimal
    method: str


_SUMMARY_FIELDS = ("case_number", "role", "status", "as_of", "weekly_order", "arrears_balance", "last_payment",
                   "next_disbursement", "income_withholding_active")


@dataclass(frozen=True)
class Summary:
    case_number: str
    role: str
    status: str
    as_of: datetime
    weekly_order: WeeklyOrder
    arrears_balance: Decimal
    last_payment: Payment | None
    next_disbursement: Disbursement | None
    income_withholding_active: bool | None
    # The SDU's answer as the contract has it, to keep (sealed) and rebuild this from: from_body(body).
    body: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Summary:
        """A summary from the SDU's answer (already checked against the contract)."""
        order = body["weekly_order"]
        nd = body.get("next_disbursement")
        return cls(
            case_number=body["case_number"],
            role=body["role"],
            status=body["status"],
            as_of=datetime.fromisoformat(body["as_of"]),
            weekly_order=WeeklyOrder(
                current_support=_money(order["current_support"]),
                medical_support=_money(order["medical_support"]),
                child_care=_money(order["child_care"]),
                arrears_payment=_money(order["arrears_payment"]),
                total=_money(order["total"]),
            ),
            arrears_balance=_money(body["arrears_balance"]),
            last_payment=_payment(body["last_payment"]) if body.get("last_payment") else None,
            next_disbursement=(
                Disbursement(date.fromisoformat(nd["date"]), _money(nd["amount"]), nd["method"]) if nd else None
            ),
            income_withholding_active=body.get("income_withholding_active"),
            body={k: body[k] for k in _SUMMARY_FIELDS if k in body},   # what is kept: only what is read
        )


# --- log hygiene ------------------------------------------------------------------------------------

_NINE_DIGITS = re.compile(r"(?<![0-9])[0-9]{9}(?![0-9])")


def mask_case_numbers(text: str) -> str:
    """Mask every 9-digit run (a case number) in free text."""
    return _NINE_DIGITS.sub(lambda m: mask_digits(m.group()), text)


class MaskCaseNumbers(logging.Filter):
    """urllib3 logs request paths at DEBUG, and SDU paths hold case numbers."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        record.msg, record.args = mask_case_numbers(message), None
        return True


def _install_log_filter() -> None:
    pool_log = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, MaskCaseNumbers) for f in pool_log.filters):
        pool_log.addFilter(MaskCaseNumbers())


_install_log_filter()


# --- circuit breaker --------------------------------------------------------------------------------


class CircuitBreaker:
    """Consecutive-failure breaker, shared by all threads of a process.

    closed -> (threshold consecutive failures) -> open -> (reset seconds) -> half-open: exactly one
    trial call goes through; its success closes the breaker, its failure opens it again."""

    def __init__(self, threshold: int, reset: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.reset = reset
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._trial_running or self._clock() - self._opened_at >= self.reset:
                return "half-open"
            return "open"

    def acquire(self) -> None:
        """Permission for one call; SDUUnavailable when the breaker is open."""
        with self._lock:
            if self._opened_at is None:
                return
            if self._trial_running or self._clock() - self._opened_at < self.reset:
                raise SDUUnavailable("SDU circuit breaker is open")
            self._trial_running = True
            log.info("SDU circuit breaker half-open: trying one call")

    def release(self, ok: bool) -> None:
        """Report how the permitted call went."""
        with self._lock:
            was_trial, self._trial_running = self._trial_running, False
            if ok:
                if self._opened_at is not None:
                    log.warning("SDU circuit breaker closed: the SDU answers again")
                self._failures = 0
                self._opened_at = None
                return
            self._failures += 1
            if was_trial or self._failures >= self.threshold:
                self._opened_at = self._clock()
                log.error(
                    "SDU circuit breaker open after %d consecutive failures; failing fast for %.0fs",
                    self._failures,
                    self.reset,
                )


# --- the client -------------------------------------------------------------------------------------

# Absolute deadline (on the client's clock) shared by the calls of one webhook; see budget_scope().
_scope_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("sdu_deadline", default=None)


def _money(value: str) -> Decimal:
    return Decimal(value)


def _payment(data: Mapping[str, Any]) -> Payment:
    disbursed = data.get("disbursed_date")
    return Payment(
        payment_id=data["payment_id"],
        received_date=date.fromisoformat(data["received_date"]),
        amount=_money(data["amount"]),
        source=data["source"],
        status=data["status"],
        disbursed_date=date.fromisoformat(disbursed) if disbursed else None,
        disbursement_method=data.get("disbursement_method"),
    )


def _failed_before_send(exc: BaseException) -> bool:
    """True when the connection could not be made, so the request certainly never reached the SDU."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        err = stack.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        # NewConnectionError (and NameResolutionError) subclass ConnectTimeoutError in urllib3 2.
        if isinstance(err, urllib3.exceptions.ConnectTimeoutError):
            return True
        stack.extend(a for a in err.args if isinstance(a, BaseException))
        for linked in (getattr(err, "reason", None), err.__cause__, err.__context__):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return False


class SDUClient:
    """Thread-safe client of the SDU API; make one per process and share it."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 0.5,
        read_timeout: float = 1.5,
        budget: float = 2.5,
        retries: int = 2,
        breaker_threshold: int = 3,
        breaker_reset: float = 30.0,
        max_concurrent: int = 2,
        slot_wait: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.budget = budget
        self.retries = retries
        self._clock = clock
        self._sleep = sleep
        self.breaker = CircuitBreaker(breaker_threshold, breaker_reset, clock)
        # Lookups in flight at once in this process. A lookup waits for a slot only `slot_wait`: long
        # enough for a healthy SDU's lookup (a few ms) to give one back, too short for a thread that
        # waits to be missed by the callers of the other lines.
        self.max_concurrent = max_concurrent
        self.slot_wait = slot_wait
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._busy_lock = threading.Lock()
        self.refused_busy = 0     # lookups refused because every slot was taken (a counter for /metrics)
        # Told of every lookup, (op, answered, breaker state) with no case number: metrics and call
        # analytics (wired by ivr/app.py); None: nobody listens.
        self.observer: Callable[[str, bool, str], None] | None = None
        if session is None:
            session = requests.Session()
            # Retries are ours (they must respect the budget), so the adapter never retries.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=16, max_retries=Retry(0, read=False))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # The environment (proxy, CA bundle) is read once here, not on every request as requests
            # does by default (~2% of a webhook's CPU, bench/RESULTS.md).
            session.proxies.update(requests.utils.get_environ_proxies(self.base_url))
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            session.trust_env = False
        # On the session once, not on every request (a session handed in gets them too).
        session.headers.update({"Authorization": f"Bearer {api_key}", "Accept": "application/json"})
        self.session = session
        schema.prepare()    # the contract read now, not on the first answer a caller waits for

    # -- public API --

    @contextlib.contextmanager
    def budget_scope(self, seconds: float | None = None) -> Iterator[None]:
        """Share one budget (default: this client's) among all calls made inside the block, e.g. the
        summary and payments lookups of one webhook. Nested scopes only ever shrink the deadline."""
        deadline = self._clock() + (self.budget if seconds is None else seconds)
        outer = _scope_deadline.get()
        token = _scope_deadline.set(deadline if outer is None else min(outer, deadline))
        try:
            yield
        finally:
            _scope_deadline.reset(token)

    def verify_pin(self, case_number: str, pin: str) -> PinResult:
        """Check a case number and PIN. `match=False` for a wrong PIN or an unknown case."""
        self._check_case(case_number)
        if not isinstance(pin, str) or not _PIN_RE.match(pin):
            raise SDUBadRequest("a PIN is 4 digits")
        body = self._call(
            "verify_pin",
            "POST",
            _PIN_PATH,
            case_number,
            json={"case_number": case_number, "pin": pin},
            idempotent=False,
        )
        if not body["match"]:
            log.info("SDU PIN verification for case %s: no match", mask_digits(case_number))
            return PinResult(match=False)
        if "role" not in body:
            self._malformed("verify_pin", case_number, "match without a role")
        log.info("SDU PIN verification for case %s: match (%s)", mask_digits(case_number), body["role"])
        return PinResult(True, body["role"], body.get("preferred_language"))

    def summary(self, case_number: str, role: str) -> Summary:
        """The case's account summary as `role` (payer or payee) sees it."""
        self._check_case(case_number)
        self._check_role(role)
        body = self._call(
            "summary", "GET", _SUMMARY_PATH, case_number, params={"role": role}, idempotent=True
        )
        self._check_echo("summary", case_number, body, role)
        try:
            return Summary.from_body(body)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:  # the schema should have caught it
            self._malformed("summary", case_number, type(exc).__name__)

    def payments(self, case_number: str, role: str, limit: int = 5) -> list[Payment]:
        """Recent payments of the case, newest first."""
        self._check_case(case_number)
        self._check_role(role)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 20:
            raise SDUBadRequest("limit must be an integer from 1 to 20")
        body = self._call(
            "payments",
            "GET",
            _PAYMENTS_PATH,
            case_number,
            params={"role": role, "limit": limit},
            idempotent=True,
        )
        self._check_echo("payments", case_number, body)
        try:
            return [_payment(p) for p in body["payments"]]
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            self._malformed("payments", case_number, type(exc).__name__)

    def health(self) -> bool:
        """Whether the SDU answers its health check. A probe: one attempt, no breaker involvement
        (it neither waits for nor moves the breaker), never raises."""
        deadline = self._deadline()
        remaining = deadline - self._clock()
        if remaining <= 0:
            return False
        try:
            resp = self.session.get(
                self.base_url + _HEALTH_PATH,
                timeout=self._timeouts(remaining),
                allow_redirects=False,
            )
            if resp.status_code != 200:
                log.warning("SDU health check answered %d", resp.status_code)
                return False
            body = resp.json()
            schema.response_validator("GET", _HEALTH_PATH, 200).validate(body)
            return True
        except (requests.RequestException, ValueError, ValidationError) as exc:
            log.warning("SDU health check failed: %s", type(exc).__name__)
            return False

    # -- plumbing --

    @staticmethod
    def _check_case(case_number: str) -> None:
        # Also keeps anything but digits out of the URL path.
        if not isinstance(case_number, str) or not _CASE_RE.match(case_number):
            raise SDUBadRequest("a case number is 9 digits")

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in _ROLES:
            raise SDUBadRequest("role must be payer or payee")

    def _deadline(self) -> float:
        own = self._clock() + self.budget
        scoped = _scope_deadline.get()
        return own if scoped is None else min(own, scoped)

    def _timeouts(self, remaining: float) -> tuple[float, float]:
        """Connect and read timeouts whose sum fits in what is left of the budget."""
        connect, read = self.connect_timeout, self.read_timeout
        if connect + read > remaining:
            scale = max(remaining, 0.0) / (connect + read)
            connect, read = connect * scale, read * scale
        return connect, read

    def _malformed(self, op: str, case_number: str | None, detail: str) -> NoReturn:
        # `detail` names the broken field or rule, never its value (it may be personal data); `from
        # None` keeps the decoder's or validator's exception, which may hold the body, out of tracebacks.
        log.error("SDU %s answer for case %s breaks the contract: %s", op, mask_digits(case_number), detail)
        raise SDUNoAnswer(f"SDU {op} answer breaks the contract ({detail})") from None

    def _check_echo(
        self, op: str, case_number: str, body: Mapping[str, Any], role: str | None = None
    ) -> None:
        # An answer about another case or party must never be read to this caller.
        if body.get("case_number") != case_number or (role is not None and body.get("role") != role):
            self._malformed(op, case_number, "answer is about another case or role")

    def _call(
        self,
        op: str,
        method: str,
        path: str,
        case_number: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        idempotent: bool,
    ) -> dict[str, Any]:
        """One logical call: slot, breaker, budget, retries, status mapping and contract validation."""
        if not self._slots.acquire(timeout=self.slot_wait):
            with self._busy_lock:
                self.refused_busy += 1
                refused = self.refused_busy
            log.warning("SDU %s refused: all %d SDU slots of this process are waiting on the SDU (%d refused "
                        "since start)", op, self.max_concurrent, refused)
            if self.observer is not None:
                self.observer(op, False, self.breaker.state)
            raise SDUUnavailable(f"SDU {op}: every one of the {self.max_concurrent} SDU slots is in use")
        ok = False
        try:
            deadline = self._deadline()
            self.breaker.acquire()
            try:
                body = self._attempts(op, method, path, case_number, params, json, idempotent, deadline)
                ok = True
                return body
            except SDUUnavailable:
                raise
            except SDUError:
                ok = True  # 400/404/423: the SDU is up and answered
                raise
            finally:
                self.breaker.release(ok)
        finally:
            self._slots.release()
            if self.observer is not None:
                self.observer(op, ok, self.breaker.state)

    def _attempts(
        self,
        op: str,
        method: str,
        path: str,
        case_number: str,
        params: Mapping[str, Any] | None,
        json: Mapping[str, Any] | None,
        idempotent: bool,
        deadline: float,
    ) -> dict[str, Any]:
        url = self.base_url + path.format(case_number=case_number)
        masked = mask_digits(case_number)
        started = self._clock()
        attempt = 0
        while True:
            remaining = deadline - self._clock()
            if remaining < _MIN_ATTEMPT:
                log.warning("SDU %s for case %s: time budget used up", op, masked)
                raise SDUUnavailable(f"SDU {op}: time budget used up")
            retry_after: float | None = None
            try:
                resp = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    timeout=self._timeouts(remaining),
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                # Exception texts hold the URL, hence the case number: log and raise the type only,
                # and drop the chained exception (`from None`) so no traceback carries it either.
                reason = type(exc).__name__
                reached = not _failed_before_send(exc)
                if isinstance(exc, requests.exceptions.ReadTimeout):
                    retryable = idempotent  # the SDU may have acted on it
                elif isinstance(exc, requests.ConnectionError):
                    retryable = idempotent or _failed_before_send(exc)
                else:
                    retryable = idempotent and isinstance(exc, requests.Timeout)
            else:
                status = resp.status_code
                reason = f"HTTP {status}"
                # 429 and 503: the SDU did not act (the contract); 401: it refused us.
                reached = status >= 500 and status != 503
                if 200 <= status < 300:
                    log.debug(
                        "SDU %s for case %s: %d after %.3fs (attempt %d)",
                        op, masked, status, self._clock() - started, attempt + 1,
                    )
                    return self._parse(op, method, path, case_number, resp)
                self._log_error_code(op, masked, resp)
                if status == 400:
                    raise SDUBadRequest(f"SDU {op}: the SDU refused the request (400)")
                if status == 404:
                    raise SDUNotFound(f"SDU {op}: no such case (404)")
                if status == 423:
                    raise SDULocked(f"SDU {op}: case locked after too many wrong PINs (423)")
                if status == 401:
                    log.critical(
                        "SDU rejected our API key (401): configuration error, check SDU_API_KEY"
                    )
                    raise SDUUnavailable(f"SDU {op}: our API key was rejected (401)")
                # A 429/503 means the SDU did not act, but the contract lets us retry the POST
                # only when it never left: keep to that.
                retryable = idempotent and status in _RETRYABLE_STATUSES
                if retryable and "Retry-After" in resp.headers:
                    try:
                        retry_after = Retry().parse_retry_after(resp.headers["Retry-After"])
                    except urllib3.exceptions.InvalidHeader:
                        retry_after = None
            log.warning("SDU %s for case %s failed: %s (attempt %d)", op, masked, reason, attempt + 1)
            if not retryable or attempt >= self.retries:
                raise (SDUNoAnswer if reached else SDUUnavailable)(f"SDU {op} failed: {reason}") from None
            wait = retry_after if retry_after is not None else _BACKOFF * 2**attempt
            if wait + _MIN_ATTEMPT > deadline - self._clock():
                # Sleeping would blow the budget: give up now rather than keep the caller waiting.
                log.warning(
                    "SDU %s for case %s: retry in %.1fs does not fit the time budget", op, masked, wait
                )
                raise SDUUnavailable(f"SDU {op} failed: {reason}; retry does not fit the time budget")
            self._sleep(wait)
            attempt += 1

    @staticmethod
    def _log_error_code(op: str, masked: str, resp: requests.Response) -> None:
        # Only the machine code of the error body, and only when it looks like one.
        code = "-"
        try:
            err = resp.json().get("error")
            if isinstance(err, str) and re.fullmatch(r"[a-z_]{1,40}", err):
                code = err
        except (ValueError, AttributeError):
            pass
        log.info("SDU %s for case %s answered %d (%s)", op, masked, resp.status_code, code)

    def _parse(
        self, op: str, method: str, path: str, case_number: str, resp: requests.Response
    ) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            self._malformed(op, case_number, "body is not JSON")
        try:
            validator = schema.response_validator(method, path, resp.status_code)
        except KeyError:
            self._malformed(op, case_number, f"status {resp.status_code} is not in the contract")
        error = next(iter(validator.iter_errors(body)), None)
        if error is not None:
            self._malformed(op, case_number, f"{error.json_path} fails '{error.validator}'")
        return body


def client_from_env(config: Mapping[str, Any]) -> SDUClient:
    """The client configured from `SDU_BASE_URL` and `SDU_API_KEY` (e.g. the Flask config). Outside
    production they default to the bundled stub and its key; in production both are required."""
    production = config.get("IVR_ENV", "development") == "production"
    base_url = config.get("SDU_BASE_URL") or None
    api_key = config.get("SDU_API_KEY") or None
    if production and (not base_url or not api_key):
        raise ValueError("SDU_BASE_URL and SDU_API_KEY must be set in production")
    if production and api_key == DEV_API_KEY:
        raise ValueError("the development SDU key is refused in production")
    return SDUClient(base_url or DEV_BASE_URL, api_key or DEV_API_KEY,
                     max_concurrent=int(config.get("SDU_MAX_CONCURRENT", 2)))
