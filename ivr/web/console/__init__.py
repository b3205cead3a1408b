"""The SES staff console (`/console/...`): a blueprint of Jinja pages served by the same app as the webhooks.

Sign-in, sessions, CSRF and roles are in auth.py; each area's pages in its own module. Every page but
the sign-in pages and the static files needs a signed-in staff member (else a redirect to
/console/login, docs/interface.md); every form carries a CSRF token (Flask-WTF), checked before any
view runs; supervisor pages answer 403 to caseworkers, decided on the server from the account record.
"""

from __future__ import annotations

from flask import Blueprint, Flask

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")


def install(app: Flask) -> None:
    """Register the console on `app` (create_app calls it unless IVR_SERVE=webhooks)."""
    from ivr.web.console import auth, callbacks, closures, hours, numbers, prompts, requests, staff  # noqa: F401 - routes

    auth.configure(app)
    app.register_blueprint(bp)
