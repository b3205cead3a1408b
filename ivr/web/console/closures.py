"""Console page for emergency closures (supervisors): a line or an office closed now, with a message, until
a time; the phone lines obey from the next webhook (ivr/domain/closures.py)."""

from __future__ import annotations

from datetime import datetime

from flask import flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm

from ivr.domain.closures import TEXT_MAX, ClosureError
from ivr.web.console import bp
from ivr.web.console.auth import audit, now, services, supervisor_only


def scopes() -> dict[str, str]:
    """Every scope a closure can have, with its words: the public lines, the agents, each office."""
    svc = services()
    out = {f"line:{name}": f"The {name} line (message at the start, every transfer replaced)"
           for name in svc.lines["lines"] if name != "staff"}
    out["office:agents"] = "Transfers to the agents (call center)"
    for oid, office in sorted(svc.directory.offices.items()):
        out[f"office:{oid}"] = f"Transfers to the {office.name.get('en', oid)} office"
    return out


@bp.route("/closures", methods=["GET", "POST"])
@supervisor_only
def closures():
    svc = services()
    langs = list(svc.prompts.languages)
    values = {"scope": "", "until": "", **{f"text_{lang}": "" for lang in langs}}
    errors: dict[str, str] = {}
    if request.method == "POST":
        values.update({k: request.form.get(k, "").strip() for k in values})
        choices = scopes()
        if values["scope"] not in choices:
            errors["scope"] = "Choose what is closed."
        until = None
        try:
            until = datetime.fromisoformat(values["until"]).replace(tzinfo=svc.hours.zone)
            if until <= now():
                errors["until"] = "The end must be in the future."
        except ValueError:
            errors["until"] = "Give the end as a date and time (YYYY-MM-DDTHH:MM)."
        text = {}
        for lang in langs:
            words = values[f"text_{lang}"]
            if not words:
                errors[f"text_{lang}"] = f"Write what callers hear in {svc.prompts.languages[lang].name}."
            elif len(words) > TEXT_MAX:
                errors[f"text_{lang}"] = f"At most {TEXT_MAX} characters."
            text[lang] = words
        if not errors:
            try:
                svc.closures.set(values["scope"], text, until, g.staff.id, g.staff.name)
            except ClosureError as exc:
                errors["until"] = str(exc)
        if not errors:
            audit("closure switched on", f"{values['scope']} until {until:%Y-%m-%d %H:%M}")
            flash(f"Closed now: {choices[values['scope']]}, until {until:%Y-%m-%d %H:%M}. Callers hear the message "
                  "from their next step on.")
            return redirect(url_for("console.closures"), code=303)
    status = 400 if errors else 200
    return render_template("console/closures.html", langs=langs, languages=svc.prompts.languages,
                           scopes=scopes(), values=values, errors=errors, stored=svc.closures.all(),
                           current=now(), form=FlaskForm(), text_max=TEXT_MAX), status


@bp.post("/closures/end")
@supervisor_only
def closure_end():
    scope = request.form.get("scope", "")
    if services().closures.clear(scope):
        audit("closure switched off", scope)
        flash("The closure is off: calls go through as usual again.")
    else:
        flash("That closure was not on.")
    return redirect(url_for("console.closures"), code=303)
