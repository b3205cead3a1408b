"""Console page for the numbers: the call analytics of a chosen period as charts (Chart.js, kept in the
repository) with the same figures in tables, and the live view (calls in progress per line, the SDU
breaker, the worker's queue).

The figures come from the analytics module through one function, `report_for`: the page shows "no data"
when that module is not installed or has nothing for the period, never an error.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import date, timedelta

import redis
from flask import current_app, render_template, request

from ivr.callflow.callstate import ENDED, KEY
from ivr.jobs.queue import DEAD, GROUP, STREAM
from ivr.web.console import bp
from ivr.web.console.auth import now, services

log = logging.getLogger("ivr.console")
MAX_DAYS = 366
LIVE_SCAN_LIMIT = 20_000        # call states looked at for the live view (far above any real load)


def report_for(client: redis.Redis, since: date, until: date, line: str | None) -> dict | None:
    """The analytics report of a period (`ivr report --json`'s figures), or None when there is none.

    The one place the console reads analytics: `ivr.domain.callreport.read(client, since, until)` gives
    the hourly figures and `build(figures, line=...)` the report."""
    try:
        callreport = importlib.import_module("ivr.domain.callreport")
    except ImportError:
        return None
    try:
        figures = callreport.read(client, since, until)
        if not figures:
            return None
        return callreport.build(figures, line=line)
    except Exception as exc:   # a figure the page cannot read must not take the page down
        log.error("console: cannot read the call analytics: %s", exc)
        return None


def live_view(client: redis.Redis) -> dict:
    """Calls in progress per line, the SDU breaker, and the worker's queue, read now."""
    per_line: Counter = Counter()
    keys = []
    for key in client.scan_iter(match=KEY.format(sid="*"), count=1000):
        keys.append(key)
        if len(keys) >= LIVE_SCAN_LIMIT:
            break
    if keys:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            sid = key.decode().split(":", 2)[2]
            pipe.get(key)
            pipe.exists(ENDED.format(sid=sid))
        results = pipe.execute()
        for raw, ended in zip(results[::2], results[1::2], strict=True):
            if raw and not ended:
                try:
                    per_line[json.loads(raw).get("l", "?")] += 1
                except (ValueError, AttributeError):
                    per_line["?"] += 1
    queue = {"waiting": 0, "being handled": 0, "failed for good": 0}
    try:
        queue["failed for good"] = int(client.xlen(DEAD))
        groups = {g["name"].decode() if isinstance(g["name"], bytes) else g["name"]: g
                  for g in client.xinfo_groups(STREAM)}
        group = groups.get(GROUP)
        if group is None:
            queue["waiting"] = int(client.xlen(STREAM))       # no worker has started yet
        else:
            queue["being handled"] = int(group.get("pending", 0))
            lag = group.get("lag")
            queue["waiting"] = int(lag) if lag is not None else int(client.xlen(STREAM))
    except redis.ResponseError:
        pass        # no stream yet: nothing queued
    lines = [name for name in services().lines["lines"]]
    return {"calls": {name: per_line.get(name, 0) for name in lines}, "sdu": services().sdu.breaker.state,
            "queue": queue}


def _period(args: Mapping[str, str]) -> tuple[date, date, str | None, dict[str, str]]:
    today = now().date()
    errors: dict[str, str] = {}
    since, until = today - timedelta(days=6), today
    for name in ("since", "until"):
        raw = args.get(name, "").strip()
        if not raw:
            continue
        try:
            value = date.fromisoformat(raw)
        except ValueError:
            errors[name] = "Give a date as YYYY-MM-DD."
            continue
        if name == "since":
            since = value
        else:
            until = value
    if not errors and since > until:
        errors["until"] = "The end must not be before the start."
    if not errors and (until - since).days >= MAX_DAYS:
        errors["since"] = f"Choose at most {MAX_DAYS} days."
    if errors:
        since, until = today - timedelta(days=6), today
    line = args.get("line", "").strip() or None
    if line is not None and line not in services().lines["lines"]:
        errors["line"] = "Choose a line."
        line = None
    return since, until, line, errors


def charts(report: Mapping) -> list[dict]:
    """What each chart draws: a title, labels, one or more series (the tables show the same figures)."""
    out = []
    calls = report.get("calls") or {}
    out.append({"id": "calls", "title": "Calls per line", "type": "bar", "labels": list(calls),
                "series": [{"name": "calls", "data": list(calls.values())}]})
    outcomes = report.get("outcomes") or {}
    out.append({"id": "outcomes", "title": "How calls ended", "type": "doughnut", "labels": list(outcomes),
                "series": [{"name": "calls", "data": list(outcomes.values())}]})
    transfers = report.get("transfers") or {}
    results = ("answered", "busy", "no_answer", "failed")
    out.append({"id": "transfers", "title": "Transfers per office", "type": "stacked", "labels": list(transfers),
                "series": [{"name": r.replace("_", " "), "data": [transfers[w].get(r, 0) for w in transfers]}
                           for r in results]})
    aband = dict(list((report.get("abandoned_at") or {}).items())[:15])
    out.append({"id": "abandoned", "title": "Where callers hung up (top 15 steps)", "type": "hbar",
                "labels": list(aband), "series": [{"name": "calls", "data": list(aband.values())}]})
    by_hour = report.get("by_hour") or {}
    out.append({"id": "hours", "title": "Calls by hour of the day (Connecticut)", "type": "bar",
                "labels": list(by_hour), "series": [{"name": "calls", "data": list(by_hour.values())}]})
    return out


@bp.get("/numbers")
def numbers():
    since, until, line, errors = _period(request.args)
    r = current_app.extensions["ivr"].redis
    report = report_for(r, since, until, line)
    total = sum((report or {}).get("calls", {}).values()) if report else 0
    summary = {}
    if report and total:
        outcomes = report.get("outcomes", {})
        summary = {"calls": total,
                   "contained": f"{100 * outcomes.get('self_service', 0) / total:.0f}%",
                   "abandoned": f"{100 * outcomes.get('abandoned', 0) / total:.0f}%",
                   "transferred": f"{100 * outcomes.get('transferred', 0) / total:.0f}%"}
    try:
        live = live_view(r)
    except redis.RedisError as exc:
        log.error("console: live view: %s", exc)
        live = None
    status = 400 if errors else 200
    return render_template("console/numbers.html", report=report if total else None, summary=summary,
                           charts=charts(report) if report and total else [], live=live, since=since,
                           until=until, line=line or "", lines=list(services().lines["lines"]),
                           errors=errors, values=request.args), status
