"""Helpers for the console tests: staff accounts, a browser-like test client that signs in with the form's
CSRF token, and an inmate's request left through the simulated phone."""

from __future__ import annotations

import re
from datetime import datetime

import pyotp

from ivr.callflow.simphone import Phone, Transport
from ivr.domain.accounts import Accounts
from ivr.settings import DEV_AUTH_TOKEN
from tests.conftest import LINES, OPEN

HTTPS = "https://localhost"
PASSWORD = "correct horse battery"
SUPERVISOR, CASEWORKER = "4001", "4002"
YORK = "+19595550113"           # a facility's inmate phone (config/facilities.yaml)
INMATE = "7654321"
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def accounts_of(app) -> Accounts:
    return app.extensions["ivr.console"]["accounts"]


def add_staff(app, staff_id: str, role: str = "caseworker", name: str = "Pat Doe",
              password: str = PASSWORD) -> str | None:
    """A staff account with a console password; a supervisor's TOTP secret is returned."""
    services = app.extensions["ivr"].services
    services.staffdb.add(staff_id, name, "480213", OPEN)
    acc = accounts_of(app)
    acc.set_role(staff_id, role)
    acc.set_password(staff_id, password, OPEN)
    if role == "supervisor":
        return acc.new_totp(staff_id)[0]
    return None


class Browser:
    """A test client over https that keeps cookies and sends each form's CSRF token, as a browser does."""

    def __init__(self, app) -> None:
        self.app = app
        self.client = app.test_client()
        self.token = ""

    def get(self, path: str, **kw):
        r = self.client.get(path, base_url=HTTPS, **kw)
        self._remember(r)
        return r

    def post(self, path: str, data: dict | None = None, csrf: bool = True, **kw):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.token or self._fresh_token())
        headers = kw.pop("headers", {})
        headers.setdefault("Referer", HTTPS + "/console/")
        r = self.client.post(path, data=data, base_url=HTTPS, headers=headers, **kw)
        self._remember(r)
        return r

    def _fresh_token(self) -> str:
        self.get("/console/login")
        return self.token

    def _remember(self, r) -> None:
        if r.mimetype == "text/html":
            m = CSRF_RE.search(r.get_data(as_text=True))
            if m:
                self.token = m.group(1) or m.group(2)

    def sign_in(self, staff_id: str, password: str = PASSWORD, totp: str | None = None, at: datetime = OPEN):
        self.get("/console/login")
        r = self.post("/console/login", {"staff_id": staff_id, "password": password})
        if totp and r.status_code in (302, 303) and "/login/code" in r.headers["Location"]:
            self.get("/console/login/code")
            r = self.post("/console/login/code", {"code": pyotp.TOTP(totp).at(at)})
        if r.status_code in (302, 303) and "/login" not in r.headers["Location"]:
            self.get(r.headers["Location"])      # a new session has a new CSRF token: read it, as a page would
        return r


def signed_in(app, role: str = "caseworker") -> Browser:
    """A console session of the caseworker (or the supervisor, with their TOTP code)."""
    staff_id = CASEWORKER if role == "caseworker" else SUPERVISOR
    secret = add_staff(app, staff_id, role)
    browser = Browser(app)
    browser.sign_in(staff_id, totp=secret)
    return browser


def inmate_request(app, keys: list[str] | None = None) -> tuple[str, Phone]:
    """An inmate's request left through the simulated phone: (its reference, the phone)."""
    phone = Phone(transport=Transport(DEV_AUTH_TOKEN, app=app), to=LINES["callcenter"], caller=YORK)
    phone.place(keys or ["-", "1", f"{INMATE}#", "1", "*", "record"])
    m = re.search(r"request number is (\d) (\d) (\d), (\d) (\d) (\d)", phone.said)
    return "".join(m.groups()), phone
