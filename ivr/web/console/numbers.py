"""Console page for the numbers: call analytics as charts (Chart.js, kept in the repository) for a period,
and the live view (calls in progress per line, the SDU breaker, the worker's queue)."""

from __future__ import annotations

from flask import render_template

from ivr.web.console import bp


@bp.get("/numbers")
def numbers():
    return render_template("console/numbers.html", report=None, live=None, problems=[])
