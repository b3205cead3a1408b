"""Office hours and holidays changed in the console, kept in Redis on top of config/hours.yaml (no deploy).

Redis: `ivr:hours:edits` hash: "schedule:<office id or agents>" -> JSON {"days": ["mon", ...], "open":
"08:30", "close": "16:30", "by", "at"}; "holidays" -> JSON list of the holiday names that close the
offices; "closures" -> JSON list of extra closed days (ISO dates). `ivr:hours:rev` is bumped in the same
MULTI as each change; web processes read it with each call's state (Runtime.extra_keys) and apply the
edits to their Hours only when it changed, so callers hear the new hours from their next step.
"""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, time

import redis

from ivr import store
from ivr.domain.hours import DAYS, Hours, Schedule, holiday_choices

log = logging.getLogger("ivr.hours")

EDITS = "ivr:hours:edits"
REV = "ivr:hours:rev"


class HoursError(ValueError):
    """Bad input for hours (said next to the field)."""


def parse_schedule(days: list[str], opens: str, closes: str) -> Schedule:
    days = [d for d in DAYS if d in days]
    if not days:
        raise HoursError("Choose at least one day (to close for a day, add a closed day below).")
    try:
        start, end = time.fromisoformat(opens), time.fromisoformat(closes)
    except ValueError:
        raise HoursError("Give the times as HH:MM (24-hour clock).") from None
    if start >= end:
        raise HoursError("Opening must be before closing.")
    return Schedule(tuple(DAYS.index(d) for d in days), start, end)


class HoursEdits:
    def __init__(self, client: redis.Redis, hours: Hours) -> None:
        self.redis = client
        self.hours = hours
        self._reloader = store.Reloader(self._load, "the hours edited in the console")

    # --- the console ----------------------------------------------------------------------------
    def raw(self) -> dict[str, object]:
        out = {}
        for k, v in self.redis.hgetall(EDITS).items():
            try:
                out[k.decode()] = json.loads(v)
            except ValueError:
                log.error("unreadable hours edit %r: ignored", k)
        return out

    def set_schedule(self, who: str, schedule: Schedule, by: str, at: datetime) -> None:
        value = {"days": [DAYS[d] for d in schedule.days], "open": schedule.open.strftime("%H:%M"),
                 "close": schedule.close.strftime("%H:%M"), "by": by, "at": at.isoformat(timespec="seconds")}
        self._write(lambda pipe: pipe.hset(EDITS, f"schedule:{who}", json.dumps(value)))

    def reset_schedule(self, who: str) -> None:
        self._write(lambda pipe: pipe.hdel(EDITS, f"schedule:{who}"))

    def set_holidays(self, names: set[str]) -> None:
        unknown = names - holiday_choices()
        if unknown:
            raise HoursError(f"Not a Connecticut legal holiday: {', '.join(sorted(unknown))}.")
        self._write(lambda pipe: pipe.hset(EDITS, "holidays", json.dumps(sorted(names))))

    def closed_days(self) -> list[date]:
        return sorted(date.fromisoformat(d) for d in self.raw().get("closures", []))

    def add_closed_day(self, day: date) -> None:
        days = {d.isoformat() for d in self.closed_days()} | {day.isoformat()}
        self._write(lambda pipe: pipe.hset(EDITS, "closures", json.dumps(sorted(days))))

    def remove_closed_day(self, day: date) -> bool:
        days = {d.isoformat() for d in self.closed_days()}
        if day.isoformat() not in days:
            return False
        days.discard(day.isoformat())
        self._write(lambda pipe: pipe.hset(EDITS, "closures", json.dumps(sorted(days))))
        return True

    def _write(self, change) -> None:
        pipe = self.redis.pipeline(transaction=True)
        change(pipe)
        pipe.incr(REV)
        pipe.execute()

    # --- the phone lines ----------------------------------------------------------------------------
    def refresh(self, rev) -> None:
        """Called on every webhook with the revision read in the call state's round trip."""
        self._reloader.refresh(rev or b"0")

    def _load(self, _rev: object) -> None:
        edits = self.raw()
        overrides = {}
        for key, value in edits.items():
            if key.startswith("schedule:"):
                try:
                    overrides[key.split(":", 1)[1]] = parse_schedule(value["days"], value["open"], value["close"])
                except (HoursError, KeyError, TypeError):
                    log.error("unreadable schedule %r edited in the console: ignored", key)
        names = set(edits["holidays"]) if isinstance(edits.get("holidays"), list) else None
        closures = set()
        for d in edits.get("closures", []) if isinstance(edits.get("closures"), list) else []:
            try:
                closures.add(date.fromisoformat(d))
            except (TypeError, ValueError):
                log.error("unreadable closed day %r edited in the console: ignored", d)
        self.hours.edited(overrides, names, closures)
