"""`ivr report`'s figures: the hourly call figures of a period (ivr/domain/callstats.py) summed into one report.

Dates are Connecticut's (America/New_York), `until` included; the hours are read from Redis in one
round trip, so any period the hourly figures are kept for can be reported, not only the raw events' days.
`build` gives one dict of integer counts (what `--json` prints: the contract's keys first); `text` the
same for people, with rates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import redis

from ivr.domain.callstats import BUCKETS, HOUR, OUTCOMES, RESULTS

ZONE = ZoneInfo("America/New_York")
LINES = ("callcenter", "payments", "staff")
IDENTIFICATION = ("success", "wrong_pin", "locked", "sdu_down")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOP = 10


def hours(since: date, until: date) -> list[str]:
    """The UTC hour keys from the start of `since` to the end of `until`, in Connecticut."""
    start = datetime.combine(since, time(0), ZONE).astimezone(UTC)
    end = datetime.combine(until + timedelta(days=1), time(0), ZONE).astimezone(UTC)
    out = []
    while start < end:
        out.append(start.strftime("%Y%m%d%H"))
        start += timedelta(hours=1)
    return out


def read(client: redis.Redis, since: date, until: date) -> dict[str, dict[str, int]]:
    """{UTC hour key: {field: count}} of the period's hours that have figures."""
    keys = hours(since, until)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(HOUR + key)
    out = {}
    for key, fields in zip(keys, pipe.execute(), strict=True):
        if fields:
            out[key] = {_text(k): int(v) for k, v in fields.items()}
    return out


def build(by_hour: Mapping[str, Mapping[str, int]], line: str | None = None,
          lines: Iterable[str] = LINES) -> dict:
    """The report: the contract's keys (`calls`, `outcomes`, `transfers`, `abandoned_at`,
    `identification`), then the rest of the figures; every value an integer count (seconds for times)."""
    total: Counter = Counter()
    per_hour: Counter = Counter()
    calls = {name: 0 for name in lines}
    for hour, fields in by_hour.items():
        for name, n in fields.items():
            who, _, figure = name.partition("|")
            if line is not None and who != line:
                continue
            if figure == "calls":
                calls[who] = calls.get(who, 0) + n
                per_hour[hour] += n
            total[figure] += n
    parts = _split(total)
    xfer, xwhy = _split(parts["xfer"]), _split(parts["xwhy"])
    transfers = {who: {"total": c.get("total", 0), **{r: c.get(r, 0) for r in RESULTS}}
                 for who, c in sorted(xfer.items(), key=lambda wc: (wc[0] != "agents", wc[0]))
                 if c.get("total") or c.get("closed")}
    by_clock, by_weekday = Counter(), Counter()
    for hour, n in per_hour.items():
        local = datetime.strptime(hour, "%Y%m%d%H").replace(tzinfo=UTC).astimezone(ZONE)
        by_clock[local.hour] += n
        by_weekday[local.weekday()] += n
    flat = parts[""]
    return {
        "calls": calls,
        "outcomes": {o: parts["out"].get(o, 0) for o in OUTCOMES},
        "transfers": transfers,
        "abandoned_at": _top(parts["aband"], None),
        "identification": {k: parts["ident"].get(k, 0) for k in IDENTIFICATION},
        # --- beyond the contract: integer counts too ---
        "languages": dict(sorted(parts["lang"].items())),
        "after_hours": flat.get("after_hours", 0),
        "transfers_closed": {who: c["closed"] for who, c in sorted(xfer.items()) if c.get("closed")},
        "transfer_reasons": {why: {r: c.get(r, 0) for r in (*RESULTS, "closed")} for why, c in sorted(xwhy.items())},
        "visits": dict(sorted(parts["visit"].items())),
        "no_input": dict(sorted(parts["silence"].items())),
        "wrong_key": dict(sorted(parts["wrong"].items())),
        "gave_up_at": dict(sorted(parts["giveup"].items())),
        "answers_heard": _top(parts["answer"], None),
        "ended_at": _top(parts["ended_at"], None),
        "requests": flat.get("requests", 0),
        "sdu": {"lookups": parts["sdu"].get("lookups", 0), "failures": parts["sdu"].get("failures", 0)},
        "staff_pin_failures": flat.get("staff_pin_failures", 0),
        "seconds": {"first_answer_median": _quantile(parts["first"], 0.5),
                    "first_answer_p90": _quantile(parts["first"], 0.9),
                    "duration_median": _quantile(parts["dur"], 0.5),
                    "duration_p90": _quantile(parts["dur"], 0.9)},
        "by_hour": {f"{h:02d}": by_clock[h] for h in range(24)},
        "by_weekday": {WEEKDAYS[d]: by_weekday[d] for d in range(7)},
        "closed_by_sweep": flat.get("swept", 0),
    }


def _split(counts: Mapping[str, int]) -> defaultdict:
    """{"a|b": n, "c": m} -> {"a": {"b": n}, "": {"c": m}}."""
    out: defaultdict = defaultdict(Counter)
    for name, n in counts.items():
        head, sep, rest = name.partition("|")
        if sep:
            out[head][rest] += n
        else:
            out[""][head] += n
    return out


def _top(counts: Mapping[str, int], n: int | None = TOP) -> dict[str, int]:
    ranked = sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:n] if n else ranked)


def _quantile(buckets: Mapping[str, int], q: float) -> int:
    """The upper bound (seconds) of the bucket holding the q-th quantile; 0 without calls."""
    total = sum(buckets.values())
    if not total:
        return 0
    seen = 0
    for bound in (*BUCKETS, "more"):
        seen += buckets.get(str(bound), 0)
        if seen >= q * total:
            return BUCKETS[-1] if bound == "more" else bound
    return BUCKETS[-1]


def text(report: Mapping, since: date, until: date, line: str | None) -> str:
    """The report for people: counts with their rates."""
    calls = sum(report["calls"].values())
    out = [f"Calls {since} to {until} (Connecticut time), {('line ' + line) if line else 'all lines'}: {calls}"]
    out.append("  by line: " + ", ".join(f"{k} {v}" for k, v in report["calls"].items()))
    out.append("  by language: " + (", ".join(f"{k} {v}" for k, v in report["languages"].items()) or "-"))
    out.append(f"  after hours: {report['after_hours']}{_pct(report['after_hours'], calls)}")
    out.append("Outcomes (each call once)")
    for name, n in report["outcomes"].items():
        out.append(f"  {name:16} {n:6}{_pct(n, calls)}")
    contained = f"{100 * report['outcomes']['self_service'] / calls:.0f}%" if calls else "-"
    out.append(f"  containment: {contained} (self_service of all calls)")
    out.append(f"Abandoned at (top {TOP})")
    out += [f"  {node:24} {n:6}" for node, n in list(report["abandoned_at"].items())[:TOP]] or ["  -"]
    out.append("No input and wrong keys, per menu or question (of its visits)")
    nodes = sorted(set(report["no_input"]) | set(report["wrong_key"]),
                   key=lambda k: -(report["no_input"].get(k, 0) + report["wrong_key"].get(k, 0)))
    for node in nodes:
        visits = report["visits"].get(node, 0)
        silent, wrong = report["no_input"].get(node, 0), report["wrong_key"].get(node, 0)
        out.append(f"  {node:24} visits {visits:5}  no input {silent:4}{_pct(silent, visits)}"
                   f"  wrong {wrong:4}{_pct(wrong, visits)}")
    if not nodes:
        out.append("  -")
    out.append(f"Answers heard most (calls, top {TOP})")
    out += [f"  {node:24} {n:6}" for node, n in list(report["answers_heard"].items())[:TOP]] or ["  -"]
    out.append("Transfers             dialed answered   busy no_answer failed closed")
    for who, t in report["transfers"].items():
        closed = report["transfers_closed"].get(who, 0)
        out.append(f"  {who:19} {t['total']:6} {t['answered']:8} {t['busy']:6} {t['no_answer']:9} "
                   f"{t['failed']:6} {closed:6}")
    if not report["transfers"]:
        out.append("  -")
    for why, t in report["transfer_reasons"].items():
        out.append(f"  why: {why:14} " + ", ".join(f"{k} {v}" for k, v in t.items() if v))
    ident = report["identification"]
    tries = sum(ident.values())
    out.append(f"Payment identification: {tries} attempts; success {ident['success']}{_pct(ident['success'], tries)}, "
               f"wrong PIN {ident['wrong_pin']}, locked {ident['locked']}, SDU down {ident['sdu_down']}")
    sdu = report["sdu"]
    out.append(f"SDU lookups: {sdu['lookups']}, failed {sdu['failures']}{_pct(sdu['failures'], sdu['lookups'])}")
    out.append(f"Inmate requests and callbacks left: {report['requests']}")
    s = report["seconds"]
    out.append(f"Time to first answer: median <= {s['first_answer_median']} s, p90 <= {s['first_answer_p90']} s")
    out.append(f"Call duration: median <= {s['duration_median']} s, p90 <= {s['duration_p90']} s")
    out.append("Calls per hour of day: " + (", ".join(f"{h}h {n}" for h, n in report["by_hour"].items() if n) or "-"))
    out.append("Calls per weekday: " + (", ".join(f"{d} {n}" for d, n in report["by_weekday"].items() if n) or "-"))
    if report["closed_by_sweep"]:
        out.append(f"(of which {report['closed_by_sweep']} closed without Twilio's status callback)")
    return "\n".join(out)


def _pct(n: int, of: int) -> str:
    return f" ({100 * n / of:.0f}%)" if of else ""


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
