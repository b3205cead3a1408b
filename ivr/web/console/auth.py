"""Console sign-in and sessions: password (and a TOTP code for supervisors), server-side sessions with an
idle timeout in secure HTTP-only SameSite cookies, CSRF on every form, roles, and the audit log.

A session is a random token in Flask's signed cookie; Redis holds what it stands for
(`ivr:console:session:<sha256 of the token>`, expiring after IVR_CONSOLE_IDLE_MINUTES without a request,
and never living past SESSION_MAX_HOURS). Signing out deletes it; so the cookie alone, copied or replayed,
is worth nothing once the session is gone. The role is read from the account on every request: a
supervisor made a caseworker loses the supervisor pages at their next click.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import redis
from flask import Flask, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from ivr.domain.accounts import Account, Accounts, SignIn, new_session_token, password_pepper
from ivr.domain.audit import AuditLog
from ivr.web.console import bp

log = logging.getLogger("ivr.console")

SESSION = "ivr:console:session:{digest}"
PENDING = "ivr:console:pending:{digest}"     # right password, waiting for a supervisor's code
PENDING_SECONDS = 300
SESSION_MAX_HOURS = 12
PUBLIC_ENDPOINTS = {"console.login", "console.login_code", "console.static"}
csrf = CSRFProtect()


# --- wiring ------------------------------------------------------------------------------------
class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only under the cookie's own path: a webhook (a browser never
    sends the cookie there) gets the null session without Flask building a signer for it on every
    request (19 us of a webhook's ~1.5 ms, bench/RESULTS.md)."""

    def open_session(self, app: Flask, request):  # noqa: ANN001, ANN201 - Flask's signature
        if not request.path.startswith(app.config["SESSION_COOKIE_PATH"]):
            return self.make_null_session(app)
        return super().open_session(app, request)


def configure(app: Flask) -> None:
    config = app.config
    secret = str(config["IVR_SECRET_KEY"]).encode()
    # Signs the session cookie; derived, so the sealing key itself is never used for this.
    app.secret_key = hmac.new(secret, b"ivr console session cookie", hashlib.sha256).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="ivr_console",
        SESSION_COOKIE_SECURE=config.get("CONSOLE_COOKIE_SECURE", True),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/console",
        WTF_CSRF_CHECK_DEFAULT=False,          # checked for console forms only (webhooks are signed instead)
        WTF_CSRF_TIME_LIMIT=None,              # valid while the session is: the idle timeout ends both
        WTF_CSRF_SSL_STRICT=True,
    )
    app.session_interface = ConsoleSessions()
    csrf.init_app(app)
    accounts = Accounts(app.extensions["ivr"].redis, password_pepper(config), app.extensions["ivr"].sealer)
    app.extensions["ivr.console"] = {"accounts": accounts, "audit": AuditLog(app.extensions["ivr"].redis)}


def accounts() -> Accounts:
    return current_app.extensions["ivr.console"]["accounts"]


def audit_log() -> AuditLog:
    return current_app.extensions["ivr.console"]["audit"]


def services():
    return current_app.extensions["ivr"].services


def now() -> datetime:
    return services().hours.now()


def idle_seconds() -> int:
    return int(current_app.config.get("CONSOLE_IDLE_MINUTES", 15)) * 60


def audit(action: str, detail: str = "", by: str | None = None) -> None:
    """Write who (the signed-in staff ID), what and when to the audit log."""
    who = by if by is not None else (g.staff.id if g.get("staff") else "?")
    try:
        audit_log().write(who, action, detail, now())
    except redis.RedisError as exc:
        log.error("console: cannot write the audit log (%s): %s %s", exc, action, detail)
        raise


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- every console request ---------------------------------------------------------------------
@bp.before_request
def guard():
    """Signed out: to the sign-in page. Signed in: the account loaded, the idle timer restarted. Every
    POST: its CSRF token checked first."""
    if request.method == "POST":
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    account = _session_account()
    if account is None:
        session.pop("t", None)
        target = url_for("console.login", next=_safe_next(request.full_path))
        return redirect(target, code=303 if request.method == "POST" else 302)
    g.staff = account
    return None


def _session_account() -> Account | None:
    token = session.get("t")
    if not token:
        return None
    key = SESSION.format(digest=_digest(token))
    r = current_app.extensions["ivr"].redis
    pipe = r.pipeline()
    pipe.hgetall(key)
    pipe.expire(key, idle_seconds(), xx=True)
    data, _ = pipe.execute()
    if not data:
        return None
    data = {k.decode(): v.decode() for k, v in data.items()}
    started = float(data.get("started", 0))
    if now().timestamp() - started > SESSION_MAX_HOURS * 3600:
        r.delete(key)
        return None
    account = accounts().get(data.get("staff", ""))
    if account is None or account.disabled or not account.has_password:
        r.delete(key)
        return None
    return account


def _start_session(account: Account) -> None:
    session.clear()                     # a new cookie (and a new CSRF token): no fixation
    token = new_session_token()
    r = current_app.extensions["ivr"].redis
    r.hset(SESSION.format(digest=_digest(token)), mapping={"staff": account.id, "started": now().timestamp()})
    r.expire(SESSION.format(digest=_digest(token)), idle_seconds())
    session["t"] = token
    g.staff = account


def session_id() -> str:
    """Names this session (for tokens bound to it), revealing nothing of the cookie."""
    return _digest(session.get("t", ""))[:32]


def _safe_next(target: str | None) -> str:
    """Only a console path of this site: never an open redirect."""
    target = (target or "").rstrip("?")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console/") or target.startswith("/console/login"):
        return ""
    return target


def supervisor_only(view: Callable) -> Callable:
    """A page or form for supervisors: 403 (and an audit line) for anyone else."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        if not g.staff.supervisor:
            audit("refused (supervisors only)", request.path)
            abort(403)
        return view(*args, **kwargs)
    wrapper.supervisor_only = True
    return wrapper


def client_address() -> str:
    """The browser's address: behind IVR_CONSOLE_PROXY_HOPS trusted proxies, the one the nearest of them
    saw (X-Forwarded-For, counted from the right: entries further left are the client's to forge)."""
    hops = int(current_app.config.get("CONSOLE_PROXY_HOPS", 0))
    if hops:
        chain = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
        if len(chain) >= hops:
            return chain[-hops]
    return request.remote_addr or "?"


def client_tag() -> str:
    """The client's address, as a tag (the throttle's key names no address)."""
    key = current_app.secret_key.encode()
    return hmac.new(key, client_address().encode(), hashlib.sha256).hexdigest()[:20]


# --- the pages -------------------------------------------------------------------------------
class LoginForm(FlaskForm):
    staff_id = StringField("Staff ID", validators=[
        DataRequired("Enter your staff ID."), Regexp(r"^\s*\d{3,10}\s*$", message="A staff ID is 3 to 10 digits.")])
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=200)])


class CodeForm(FlaskForm):
    code = StringField("Code from your authenticator app",
                       validators=[DataRequired("Enter the 6-digit code."),
                                   Regexp(r"^\s*\d{3}\s?\d{3}\s*$", message="The code is 6 digits.")])


WRONG = "That staff ID and password do not match an account that can sign in."
LOCKED = ("This account is locked for a while after 5 wrong passwords or codes in a row. Try again later, "
          "or ask a supervisor to unlock it.")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    nxt = _safe_next(request.args.get("next"))
    if request.method == "GET" and _session_account() is not None:
        return redirect(nxt or url_for("console.queue"))
    if not form.validate_on_submit():
        return render_template("console/login.html", form=form, next=nxt)
    if not accounts().throttle(client_tag(), now()):
        log.warning("console: sign-in tries over the limit from one address")
        return render_template("console/login.html", form=form, next=nxt,
                               message="Too many sign-in tries from this computer. Wait a few minutes."), 429
    staff_id = form.staff_id.data.strip()
    result, account = accounts().sign_in(staff_id, form.password.data, now())
    if result is SignIn.OK:
        _start_session(account)
        audit("signed in")
        return redirect(nxt or url_for("console.queue"), code=303)
    if result is SignIn.NEEDS_CODE:
        if not account.has_totp:
            audit("sign-in refused: no second factor enrolled", by=staff_id)
            return render_template("console/login.html", form=form, next=nxt, message=(
                "Supervisors sign in with a code from an authenticator app, and this account has none yet. "
                "Ask an administrator to run `ivr staff set-password ID`, which sets it up.")), 200
        session.clear()
        token = new_session_token()
        current_app.extensions["ivr"].redis.set(PENDING.format(digest=_digest(token)), account.id,
                                                ex=PENDING_SECONDS)
        session["p"] = token
        return redirect(url_for("console.login_code", next=nxt or None), code=303)
    if result is SignIn.LOCKED:
        audit("sign-in refused: account locked", by=staff_id)
        message = LOCKED
    else:
        audit("sign-in failed", by=staff_id)
        message = WRONG
    return render_template("console/login.html", form=form, next=nxt, message=message), 200


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    token = session.get("p")
    r = current_app.extensions["ivr"].redis
    staff_id = r.get(PENDING.format(digest=_digest(token))) if token else None
    nxt = _safe_next(request.args.get("next"))
    if staff_id is None:
        flash("Sign in again: the code must follow the password within 5 minutes.")
        return redirect(url_for("console.login"))
    staff_id = staff_id.decode()
    form = CodeForm()
    if not form.validate_on_submit():
        return render_template("console/code.html", form=form, next=nxt)
    result = accounts().check_code(staff_id, form.code.data, now())
    if result is SignIn.OK:
        r.delete(PENDING.format(digest=_digest(token)))
        account = accounts().get(staff_id)
        if account is None or account.disabled:
            return redirect(url_for("console.login"))
        _start_session(account)
        audit("signed in (password and code)")
        return redirect(nxt or url_for("console.queue"), code=303)
    if result is SignIn.LOCKED:
        r.delete(PENDING.format(digest=_digest(token)))
        session.pop("p", None)
        audit("sign-in refused: account locked", by=staff_id)
        flash(LOCKED)
        return redirect(url_for("console.login"), code=303)
    audit("sign-in failed: wrong code", by=staff_id)
    form.code.errors = ["That code is not right (or was used already). Wait for the next one."]
    return render_template("console/code.html", form=form, next=nxt), 200


@bp.post("/logout")
def logout():
    token = session.get("t")
    if token:
        current_app.extensions["ivr"].redis.delete(SESSION.format(digest=_digest(token)))
    audit("signed out")
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("console.login"), code=303)


@bp.get("/")
def home():
    return redirect(url_for("console.queue"))


# --- what every page shows, and errors as pages ----------------------------------------------------
@bp.app_context_processor
def page_context() -> dict:
    if not request.blueprint == "console":
        return {}
    banner = []
    try:
        banner = services().closures.active()
    except redis.RedisError:
        pass
    return {"staff": g.get("staff"), "closures_on": banner, "zone": services().hours.zone}


def _error(code: int, title: str, message: str):
    return render_template("console/error.html", code=code, title=title, message=message), code


@bp.errorhandler(CSRFError)
def csrf_error(exc: CSRFError):
    return _error(400, "Form refused", "This form was refused: its security token was missing or had "
                  "expired. Go back, reload the page and send it again.")


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    messages = {403: ("Not allowed", "This page is for supervisors."),
                404: ("Not found", "There is no such page or item in the console."),
                413: ("Too large", "That upload is too large."),
                405: ("Not allowed", "That action is not available here.")}
    title, message = messages.get(exc.code or 500, (exc.name, exc.description or ""))
    return _error(exc.code or 500, title, message)


@bp.errorhandler(redis.RedisError)
def redis_error(exc: redis.RedisError):
    log.error("console: Redis error on %s: %s", request.path, exc)
    return _error(503, "Unavailable", "The console cannot reach its data store just now. Nothing was "
                  "changed; try again in a minute.")
