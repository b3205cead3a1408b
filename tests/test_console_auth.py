"""The staff console's doors: sign-in as the contract gives it, the second factor for supervisors, the lock
after five wrong passwords, CSRF on every form, sessions (cookie flags, idle timeout, sign-out), roles
enforced on the server, the audit log, IVR_SERVE, and the `ivr staff` commands that make accounts."""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime

import pyotp
import pytest

from ivr.cli.main import main
from ivr.domain.accounts import LOCK, MAX_FAILS
from ivr.web.console.auth import SESSION
from tests.conftest import OPEN, TEST_REDIS_URL, TZ
from tests.console_helpers import CASEWORKER, PASSWORD, SUPERVISOR, Browser, accounts_of, add_staff


@pytest.fixture
def caseworker(app):
    add_staff(app, CASEWORKER, "caseworker", "Casey Worker")
    return CASEWORKER


@pytest.fixture
def supervisor_secret(app):
    return add_staff(app, SUPERVISOR, "supervisor", "Sam Supervisor")


def console_pages(app) -> list[tuple[str, str]]:
    """(method, path) of every console route but the static files and the sign-in pages, with sample values."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/console") or rule.endpoint in ("console.static", "console.login",
                                                                     "console.login_code"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: {"ref": "123456", "staff_id": CASEWORKER}.get(m.group(1), "x"),
                      rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


# --- the contract's sign-in ---------------------------------------------------------------------
def test_the_sign_in_form_has_the_contracts_fields_and_a_hidden_csrf_token(app):
    page = Browser(app).get("/console/login")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert re.search(r'<input[^>]*name="staff_id"', html) and re.search(r'<input[^>]*name="password"', html)
    assert re.search(r'<input[^>]*name="csrf_token"[^>]*type="hidden"', html)
    assert '<label for="staff_id">' in html and '<label for="password">' in html


def test_a_right_password_signs_in_with_a_redirect_to_a_console_page(app, caseworker):
    browser = Browser(app)
    r = browser.sign_in(caseworker)
    assert r.status_code in (302, 303) and r.headers["Location"].startswith("/console/")
    page = browser.get(r.headers["Location"])
    assert page.status_code == 200 and "Casey Worker" in page.get_data(as_text=True)


@pytest.mark.parametrize("staff_id,password", [(CASEWORKER, "wrong password here"), ("9999", PASSWORD),
                                               ("", PASSWORD), ("abc", PASSWORD), (CASEWORKER, "")])
def test_a_wrong_sign_in_answers_the_form_again_with_a_message(app, caseworker, staff_id, password):
    browser = Browser(app)
    browser.get("/console/login")
    r = browser.post("/console/login", {"staff_id": staff_id, "password": password})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'name="staff_id"' in html
    assert any(m in html for m in ("do not match", "Enter your", "3 to 10 digits"))
    assert browser.get("/console/requests").status_code == 302       # still signed out


def test_a_signed_out_browser_is_sent_to_sign_in_from_every_console_page(app, caseworker):
    browser = Browser(app)
    pages = console_pages(app)
    assert len(pages) > 15
    for method, path in pages:
        r = browser.get(path) if method == "GET" else browser.post(path, {})
        assert r.status_code in (302, 303), (method, path, r.status_code)
        assert r.headers["Location"].startswith("/console/login"), (method, path)
    assert browser.get("/console/static/console.css").status_code == 200      # static files excepted


def test_the_sign_in_never_redirects_off_the_console(app, caseworker):
    browser = Browser(app)
    browser.get("/console/login?next=https://evil.example/x")
    r = browser.post("/console/login?next=https://evil.example/x", {"staff_id": caseworker, "password": PASSWORD})
    assert r.headers["Location"].startswith("/console/")
    browser = Browser(app)
    browser.get("/console/requests?status=done")
    r = browser.post("/console/login?next=/console/requests?status%3Ddone",
                     {"staff_id": caseworker, "password": PASSWORD})
    assert r.headers["Location"] == "/console/requests?status=done"


# --- CSRF ----------------------------------------------------------------------------------------
def test_a_form_posted_without_its_csrf_token_is_refused(app, caseworker, redis_client):
    browser = Browser(app)
    r = browser.post("/console/login", {"staff_id": caseworker, "password": PASSWORD}, csrf=False)
    assert r.status_code == 400 and "security token" in r.get_data(as_text=True)
    assert not redis_client.keys("ivr:console:session:*")
    browser.sign_in(caseworker)
    r = browser.post("/console/logout", {}, csrf=False)
    assert r.status_code == 400
    r = browser.post("/console/logout", {"csrf_token": "forged"}, csrf=False)
    assert r.status_code == 400
    assert browser.get("/console/requests").status_code == 200          # still signed in: nothing happened


# --- the lock -------------------------------------------------------------------------------------
def test_five_wrong_passwords_in_a_row_lock_the_account_with_an_error_line(app, caseworker, redis_client, caplog):
    browser = Browser(app)
    with caplog.at_level(logging.ERROR, logger="ivr.console.accounts"):
        for _ in range(MAX_FAILS):
            r = browser.post("/console/login", {"staff_id": caseworker, "password": "not the password!"})
            assert r.status_code == 200
    assert "locked" in r.get_data(as_text=True)
    errors = [rec for rec in caplog.records if rec.levelno == logging.ERROR and "locked" in rec.getMessage()]
    assert len(errors) == 1 and caseworker not in errors[0].getMessage()       # the ID masked in the log
    r = browser.post("/console/login", {"staff_id": caseworker, "password": PASSWORD})
    assert r.status_code == 200 and "locked" in r.get_data(as_text=True)      # the right password too
    assert redis_client.ttl(LOCK.format(id=caseworker)) > 0
    assert accounts_of(app).unlock(caseworker)
    assert browser.sign_in(caseworker).status_code in (302, 303)


def test_a_right_password_clears_the_count_of_wrong_ones(app, caseworker):
    browser = Browser(app)
    for _ in range(MAX_FAILS - 1):
        browser.post("/console/login", {"staff_id": caseworker, "password": "not the password!"})
    assert browser.sign_in(caseworker).status_code in (302, 303)
    other = Browser(app)
    for _ in range(MAX_FAILS - 1):
        other.post("/console/login", {"staff_id": caseworker, "password": "not the password!"})
    assert Browser(app).sign_in(caseworker).status_code in (302, 303)


def test_sign_in_tries_from_one_address_are_limited_whatever_ids_they_name(app, caseworker):
    browser = Browser(app)
    codes = [browser.post("/console/login", {"staff_id": str(5000 + n), "password": "guess guess guess"}).status_code
             for n in range(35)]
    assert codes[0] == 200 and codes[-1] == 429
    r = browser.post("/console/login", {"staff_id": caseworker, "password": PASSWORD})
    assert r.status_code == 429 and "Too many sign-in tries" in r.get_data(as_text=True)


def test_behind_a_proxy_the_throttle_counts_each_browser_not_the_proxy(make_app):
    app = make_app(CONSOLE_PROXY_HOPS=1)
    add_staff(app, CASEWORKER)
    guesser = Browser(app)
    for n in range(31):
        r = guesser.post("/console/login", {"staff_id": str(5000 + n), "password": "guess guess guess"},
                         headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 429
    r = Browser(app).post("/console/login", {"staff_id": CASEWORKER, "password": PASSWORD},
                          headers={"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 303                          # another browser behind the same proxy
    r = guesser.post("/console/login", {"staff_id": "5999", "password": "guess guess guess"},
                     headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    assert r.status_code == 429                          # a forged entry on the left changes nothing


# --- supervisors' second factor ------------------------------------------------------------------
def test_a_supervisor_needs_the_code_from_their_authenticator(app, supervisor_secret):
    browser = Browser(app)
    browser.get("/console/login")
    r = browser.post("/console/login", {"staff_id": SUPERVISOR, "password": PASSWORD})
    assert r.status_code == 303 and r.headers["Location"].startswith("/console/login/code")
    assert browser.get("/console/requests").status_code == 302            # not signed in on the password alone
    browser.get("/console/login/code")
    r = browser.post("/console/login/code", {"code": "000000" if pyotp.TOTP(supervisor_secret).at(OPEN) != "000000"
                                             else "111111"})
    assert r.status_code == 200 and "not right" in r.get_data(as_text=True)
    r = browser.post("/console/login/code", {"code": "12ab"})
    assert r.status_code == 200 and "6 digits" in r.get_data(as_text=True)
    r = browser.post("/console/login/code", {"code": pyotp.TOTP(supervisor_secret).at(OPEN)})
    assert r.status_code == 303
    assert browser.get("/console/audit").status_code == 200


def test_a_code_is_taken_once(app, supervisor_secret):
    assert Browser(app).sign_in(SUPERVISOR, totp=supervisor_secret).status_code == 303
    r = Browser(app).sign_in(SUPERVISOR, totp=supervisor_secret)
    assert r.status_code == 200 and "not right" in r.get_data(as_text=True)


def test_a_supervisor_without_a_second_factor_cannot_sign_in(app, caseworker):
    accounts_of(app).set_role(caseworker, "supervisor")
    r = Browser(app).sign_in(caseworker)
    assert r.status_code == 200 and "authenticator" in r.get_data(as_text=True)


# --- sessions ---------------------------------------------------------------------------------------
def test_the_session_cookie_is_secure_http_only_and_same_site(app, caseworker):
    browser = Browser(app)
    browser.get("/console/login")
    r = browser.post("/console/login", {"staff_id": caseworker, "password": PASSWORD})
    cookie = r.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_an_idle_session_ends_and_signing_out_ends_it_on_the_server(make_app, redis_client):
    app = make_app(CONSOLE_IDLE_MINUTES=1)
    add_staff(app, CASEWORKER)
    browser = Browser(app)
    browser.sign_in(CASEWORKER)
    [key] = redis_client.keys(SESSION.format(digest="*"))
    assert 0 < redis_client.ttl(key) <= 60                       # idle for a minute: gone
    redis_client.delete(key)                                     # ...as Redis expires it
    assert browser.get("/console/requests").status_code == 302
    browser.sign_in(CASEWORKER)
    saved = browser.client.get_cookie("ivr_console", domain="localhost", path="/console")
    browser.post("/console/logout", {})
    replay = Browser(app)
    replay.client.set_cookie("ivr_console", saved.value, domain="localhost", path="/console", secure=True)
    assert replay.get("/console/requests").status_code == 302    # the old cookie is worth nothing


# --- roles --------------------------------------------------------------------------------------------
def test_a_caseworker_gets_403_on_every_supervisor_page_and_form(app, caseworker, redis_client):
    browser = Browser(app)
    browser.sign_in(caseworker)
    views = app.view_functions
    supervisor_routes = [(m, p) for m, p in console_pages(app)
                         if getattr(views[app.url_map.bind("localhost").match(p, method=m)[0]],
                                    "supervisor_only", False)]
    assert len(supervisor_routes) >= 10
    for method, path in supervisor_routes:
        r = browser.get(path) if method == "GET" else browser.post(path, {"scope": "line:callcenter", "role":
                                                                          "supervisor", "action": "role"})
        assert r.status_code == 403, (method, path, r.status_code)
    assert accounts_of(app).get(caseworker).role == "caseworker"           # the role form changed nothing
    assert not redis_client.exists("ivr:closures")
    assert browser.get("/console/requests").status_code == 200
    page = browser.get("/console/requests").get_data(as_text=True)
    assert "/console/audit" not in page and "/console/closures" not in page    # not offered either


def test_the_audit_log_shows_supervisors_who_did_what(app, caseworker, supervisor_secret):
    Browser(app).post("/console/login", {"staff_id": caseworker, "password": "wrong wrong wrong"})
    Browser(app).sign_in(caseworker)
    sup = Browser(app)
    sup.sign_in(SUPERVISOR, totp=supervisor_secret)
    page = sup.get("/console/audit").get_data(as_text=True)
    assert "sign-in failed" in page and "signed in" in page and CASEWORKER in page
    assert sup.get("/console/audit?by=" + CASEWORKER).status_code == 200
    r = sup.get("/console/audit?by=<script>")
    assert r.status_code == 200 and "3 to 10 digits" in r.get_data(as_text=True) and "<script>" not in \
        r.get_data(as_text=True)


def test_a_supervisor_changes_a_role_and_it_holds_at_the_next_click(app, caseworker, supervisor_secret):
    worker = Browser(app)
    worker.sign_in(caseworker)
    sup = Browser(app)
    sup.sign_in(SUPERVISOR, totp=supervisor_secret)
    sup.get("/console/staff")
    r = sup.post(f"/console/staff/{caseworker}", {"action": "role", "role": "boss"})
    assert "Choose a role" in sup.get(r.headers["Location"]).get_data(as_text=True)
    sup.post(f"/console/staff/{caseworker}", {"action": "disable"})
    assert worker.get("/console/requests").status_code == 302       # disabled: signed out at once


# --- what is served where -------------------------------------------------------------------------------
def test_ivr_serve_keeps_the_console_off_the_webhooks_host_and_back(make_app):
    console_only = make_app(SERVE="console").test_client()
    assert console_only.post("/voice").status_code == 404
    assert console_only.get("/health").status_code == 200
    assert console_only.get("/console/login", base_url="https://localhost").status_code == 200
    webhooks_only = make_app(SERVE="webhooks").test_client()
    assert webhooks_only.get("/console/login").status_code == 404
    assert webhooks_only.post("/voice").status_code == 403      # unsigned, but there


def test_ivr_serve_is_checked(monkeypatch):
    from ivr import settings
    with pytest.raises(settings.ConfigError, match="IVR_SERVE"):
        settings.from_env({"IVR_SERVE": "everything"})
    with pytest.raises(settings.ConfigError, match="IVR_CONSOLE_IDLE_MINUTES"):
        settings.from_env({"IVR_CONSOLE_IDLE_MINUTES": "0"})
    with pytest.raises(settings.ConfigError, match="IVR_CONSOLE_PROXY_HOPS"):
        settings.from_env({"IVR_CONSOLE_PROXY_HOPS": "many"})
    with pytest.raises(settings.ConfigError, match="IVR_CONSOLE_INSECURE_COOKIE"):
        settings.from_env({"IVR_ENV": "production", "IVR_CONSOLE_INSECURE_COOKIE": "1"})
    with pytest.raises(settings.ConfigError, match="IVR_PASSWORD_PEPPER must be at least"):
        settings.check_production({"IVR_PASSWORD_PEPPER": "short"})


# --- the commands ------------------------------------------------------------------------------------
def run_ivr(monkeypatch, capsys, *args: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.delenv("IVR_SECRET_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_ivr_staff_add_with_a_role_and_set_password_from_stdin(app, monkeypatch, capsys):
    rc, out, err = run_ivr(monkeypatch, capsys, "staff", "add", "--name", "Ann Lee", "--role", "supervisor",
                           "--pin-stdin", "5005", stdin="480213\n")
    assert rc == 0, err
    assert accounts_of(app).get("5005").role == "supervisor"
    rc, out, err = run_ivr(monkeypatch, capsys, "staff", "set-password", "5005", "--password-stdin",
                           stdin="too short\n")
    assert rc != 0 and "at least 12" in err
    rc, out, err = run_ivr(monkeypatch, capsys, "staff", "set-password", "5005", "--password-stdin",
                           stdin=PASSWORD + "\n")
    assert rc == 0, err
    secret = re.search(r"secret: ([A-Z2-7]+)", out).group(1)
    assert "otpauth://totp/" in out and PASSWORD not in out
    assert Browser(app).sign_in("5005", totp=secret).status_code == 303
    rc, out, err = run_ivr(monkeypatch, capsys, "staff", "add", "--name", "Bo", "--pin-stdin", "5006",
                           stdin="480213\n")
    assert rc == 0 and accounts_of(app).get("5006").role == "caseworker"
    with pytest.raises(SystemExit) as exc:
        run_ivr(monkeypatch, capsys, "staff", "add", "--name", "Bo", "--role", "boss", "5007")
    assert exc.value.code == 2


def test_a_password_is_never_an_argument(app, monkeypatch, capsys):
    add_staff(app, CASEWORKER)
    with pytest.raises(SystemExit):
        run_ivr(monkeypatch, capsys, "staff", "set-password", CASEWORKER, "--password", PASSWORD)
    rc, out, err = run_ivr(monkeypatch, capsys, "staff", "set-password", CASEWORKER)   # no terminal to ask on
    assert rc != 0 and "--password-stdin" in err


def test_ivr_staff_list_names_supervisors_and_console_locks(app, monkeypatch, capsys, supervisor_secret, caseworker,
                                                           clock):
    clock.now = datetime.now(TZ)        # the command reads the real clock
    for _ in range(MAX_FAILS):
        Browser(app).post("/console/login", {"staff_id": caseworker, "password": "not the password!"})
    rc, out, _ = run_ivr(monkeypatch, capsys, "staff", "list")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "supervisor" in lines[SUPERVISOR] and "console locked" in lines[caseworker]
    rc, out, _ = run_ivr(monkeypatch, capsys, "staff", "unlock-console", caseworker)
    assert rc == 0 and "console locked" not in run_ivr(monkeypatch, capsys, "staff", "list")[1]
