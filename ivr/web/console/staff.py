"""Console pages for supervisors: the staff accounts (role, lock, enabled) and the audit log."""

from __future__ import annotations

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_wtf import FlaskForm

from ivr.domain.accounts import ROLES
from ivr.domain.staffdb import StaffError
from ivr.web.console import bp
from ivr.web.console.auth import accounts, audit, audit_log, now, services, supervisor_only


@bp.get("/staff")
@supervisor_only
def staff_list():
    rows = []
    for s in services().staffdb.all():
        account = accounts().get(s.id)
        if account is None:
            continue
        rows.append({"account": account, "locked": accounts().locked_until(s.id, now())})
    return render_template("console/staff.html", rows=rows, roles=ROLES, form=FlaskForm())


@bp.post("/staff/<staff_id>")
@supervisor_only
def staff_change(staff_id: str):
    account = accounts().get(staff_id)
    if account is None:
        abort(404)
    what = request.form.get("action", "")
    try:
        if what == "role":
            role = request.form.get("role", "")
            if role not in ROLES:
                flash(f"Choose a role: {', '.join(ROLES)}.")
                return redirect(url_for("console.staff_list"), code=303)
            if staff_id == g.staff.id and role != "supervisor":
                flash("You cannot take your own supervisor role away (another supervisor can).")
                return redirect(url_for("console.staff_list"), code=303)
            accounts().set_role(staff_id, role)
            result = f"is now a {role}"
            if role == "supervisor" and not account.has_totp:
                result += " (they need `ivr staff set-password` to set up their second factor before signing in)"
        elif what == "unlock":
            accounts().unlock(staff_id)
            result = "can sign in to the console again"
        elif what in ("disable", "enable"):
            if staff_id == g.staff.id:
                flash("You cannot disable your own account.")
                return redirect(url_for("console.staff_list"), code=303)
            services().staffdb.set_disabled(staff_id, what == "disable")
            result = f"is {what}d"
        else:
            flash("Unknown action.")
            return redirect(url_for("console.staff_list"), code=303)
    except StaffError as exc:
        flash(str(exc))
        return redirect(url_for("console.staff_list"), code=303)
    audit(f"staff account: {what}", f"{staff_id}" + (f" -> {request.form.get('role')}" if what == "role" else ""))
    flash(f"Staff ID {staff_id} {result}.")
    return redirect(url_for("console.staff_list"), code=303)


@bp.get("/audit")
@supervisor_only
def audit_page():
    by = request.args.get("by", "").strip()
    problem = ""
    if by and not (by.isdigit() and 3 <= len(by) <= 10):
        problem, by = "A staff ID is 3 to 10 digits: showing everyone.", ""
    entries = audit_log().recent(300, by=by)
    return render_template("console/audit.html", entries=entries, by=by, problem=problem)
