"""Are people answering now? Office hours and Connecticut's legal holidays (CGS 1-4)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import yaml
from babel.dates import format_time, get_day_names

from ivr.callflow.language import Language

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Schedule:
    days: tuple[int, ...]
    open: time
    close: time


class Hours:
    def __init__(self, zone: ZoneInfo, default: Schedule, overrides: dict[str, Schedule],
                 holiday_names: set[str], closures: set[date],
                 clock: Callable[[], datetime] | None = None,
                 languages: Mapping[str, Language] | None = None) -> None:
        self.zone = zone
        self.default = default
        self.overrides = overrides
        self.holiday_names = holiday_names
        self.closures = closures
        self.clock = clock or (lambda: datetime.now(self.zone))
        self._described: dict[tuple[str, str], str] = {}
        # As config/hours.yaml has them: what the console's edits (`edited`) apply on top of.
        self._file = (dict(overrides), set(holiday_names), set(closures))
        if languages is None:
            from ivr.callflow.prompts import bundled_languages
            languages = bundled_languages()
        self.languages = languages     # how each language words the hours (prompts/<lang>/language.yaml)

    @classmethod
    def load(cls, path: Path, clock: Callable[[], datetime] | None = None,
             languages: Mapping[str, Language] | None = None) -> Hours:
        cfg = yaml.safe_load(path.read_text()) or {}

        def schedule(d: dict) -> Schedule:
            return Schedule(tuple(DAYS.index(x) for x in d["days"]),
                            time.fromisoformat(d["open"]), time.fromisoformat(d["close"]))

        known = holiday_choices()
        names = set(cfg.get("holidays", []))
        unknown = names - known
        if unknown:
            raise ValueError(f"{path}: unknown holiday names {sorted(unknown)}; known: {sorted(known)}")
        return cls(ZoneInfo(cfg.get("timezone", "America/New_York")), schedule(cfg["default"]),
                   {k: schedule(v) for k, v in (cfg.get("overrides") or {}).items()},
                   names, {date.fromisoformat(str(d)) for d in cfg.get("closures") or []}, clock, languages)

    def edited(self, overrides: Mapping[str, Schedule], holiday_names: set[str] | None,
               closures: set[date]) -> None:
        """Apply what staff changed in the console (ivr/domain/hours_edits.py) on top of the file: a
        schedule per office or for the agents, which holidays close, and extra closed days."""
        file_overrides, file_names, file_closures = self._file
        self.overrides = {**file_overrides, **overrides}
        self.holiday_names = set(holiday_names) if holiday_names is not None else set(file_names)
        self.closures = set(file_closures) | set(closures)
        self._described = {}

    def now(self) -> datetime:
        return self.clock().astimezone(self.zone)

    def schedule(self, who: str = "agents") -> Schedule:
        return self.overrides.get(who, self.default)

    def holiday(self, day: date) -> str | None:
        """The name of the legal holiday observed on `day`, if any."""
        for name in _ct_holidays(day.year).get_list(day):
            base = name.replace(" (observed)", "")
            if base in self.holiday_names:
                return base
        return "closure" if day in self.closures else None

    def is_open(self, who: str = "agents", at: datetime | None = None) -> bool:
        at = (at or self.now()).astimezone(self.zone)
        s = self.schedule(who)
        if at.weekday() not in s.days or self.holiday(at.date()):
            return False
        return s.open <= at.time() < s.close

    def describe(self, lang: str, who: str = "agents") -> str:
        """The hours in words: "Monday through Friday, from 8:30 AM to 4:30 PM"."""
        # The schedules never change while the process runs: word each once (babel is slow).
        key = (lang, who)
        if key not in self._described:
            self._described[key] = self._describe(lang, who)
        return self._described[key]

    def _describe(self, lang: str, who: str) -> str:
        s = self.schedule(who)
        language = self.languages[lang]
        names = get_day_names("wide", locale=language.locale)
        pattern = language.dates["time"]
        return language.hours.format(first=names[s.days[0]], last=names[s.days[-1]],
                                     open=format_time(s.open, pattern, locale=language.locale),
                                     close=format_time(s.close, pattern, locale=language.locale))


def holiday_choices() -> set[str]:
    """The names of Connecticut's legal holidays (CGS 1-4) as the `holidays` package gives them."""
    return set(holidays.US(subdiv="CT", years=2026).values())


@lru_cache(maxsize=8)
def _ct_holidays(year: int) -> holidays.HolidayBase:
    # Observance per CGS 1-4 (Sunday -> Monday, Saturday -> Friday before) is the package's US rule.
    return holidays.US(subdiv="CT", years=[year - 1, year, year + 1], observed=True)
