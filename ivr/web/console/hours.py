"""Console page for office hours and holidays (supervisors): per office and for the agents, which legal
holidays close, and extra closed days; applied by the phone lines from the next webhook, no deploy."""

from __future__ import annotations

from datetime import date

from flask import flash, g, redirect, render_template, request, url_for

from ivr.domain.hours import DAYS, holiday_choices
from ivr.domain.hours_edits import REV, HoursError, parse_schedule
from ivr.web.console import bp
from ivr.web.console.auth import audit, now, services, supervisor_only


def _who_names() -> dict[str, str]:
    svc = services()
    names = {"agents": "Agents (call center)"}
    names.update({oid: office.name.get("en", oid) for oid, office in sorted(svc.directory.offices.items())})
    return names


@bp.get("/hours")
@supervisor_only
def hours(errors: dict | None = None, status: int = 200):
    svc = services()
    edits = svc.hours_edits.raw()
    rows = []
    for who, name in _who_names().items():
        s = svc.hours.schedule(who)
        rows.append({"who": who, "name": name, "days": [DAYS[d] for d in s.days], "open": s.open.strftime("%H:%M"),
                     "close": s.close.strftime("%H:%M"), "edited": edits.get(f"schedule:{who}")})
    return render_template("console/hours.html", rows=rows, days=DAYS, errors=errors or {},
                           holidays=sorted(h for h in holiday_choices() if "(observed)" not in h),
                           closing=svc.hours.holiday_names,
                           closed_days=svc.hours_edits.closed_days(), today=now().date()), status


@bp.post("/hours/<who>")
@supervisor_only
def hours_set(who: str):
    if who not in _who_names():
        flash("There is no such office.")
        return redirect(url_for("console.hours"), code=303)
    svc = services()
    if request.form.get("action") == "reset":
        svc.hours_edits.reset_schedule(who)
        audit("hours reset to the file", who)
        flash(f"{_who_names()[who]}: back to the hours in config/hours.yaml.")
    else:
        try:
            schedule = parse_schedule(request.form.getlist("days"), request.form.get("open", ""),
                                      request.form.get("close", ""))
        except HoursError as exc:
            return hours(errors={who: str(exc)}, status=400)
        svc.hours_edits.set_schedule(who, schedule, g.staff.id, now())
        audit("hours changed", f"{who}: {','.join(DAYS[d] for d in schedule.days)} "
                               f"{schedule.open:%H:%M}-{schedule.close:%H:%M}")
        flash(f"{_who_names()[who]}: new hours saved; callers hear them from their next step.")
    return _applied()


@bp.post("/hours-holidays")
@supervisor_only
def holidays_set():
    svc = services()
    try:
        svc.hours_edits.set_holidays(set(request.form.getlist("holiday")))
    except HoursError as exc:
        return hours(errors={"holidays": str(exc)}, status=400)
    audit("holidays changed", f"{len(request.form.getlist('holiday'))} holidays close the offices")
    flash("Holidays saved.")
    return _applied()


@bp.post("/hours-closed-days")
@supervisor_only
def closed_day():
    svc = services()
    raw = request.form.get("day", "").strip()
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return hours(errors={"day": "Give the day as a date (YYYY-MM-DD)."}, status=400)
    if request.form.get("action") == "remove":
        removed = svc.hours_edits.remove_closed_day(day)
        if removed:
            audit("closed day removed", day.isoformat())
        flash(f"{day}: open as usual." if removed else f"{day} was not a closed day.")
    else:
        if day < now().date():
            return hours(errors={"day": "The day cannot be in the past."}, status=400)
        svc.hours_edits.add_closed_day(day)
        audit("closed day added", day.isoformat())
        flash(f"{day}: closed all day (callers hear the holiday message).")
    return _applied()


def _applied():
    """This process's hours too, at once (the page shows them), then back to the page."""
    svc = services()
    svc.hours_edits.refresh(svc.redis.get(REV))
    return redirect(url_for("console.hours"), code=303)
