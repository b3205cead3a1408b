"""The federal notice period of a request: 15 business days (45 CFR 303.8), Connecticut holidays counted."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from ivr.domain.hours import Hours

NOTICE_BUSINESS_DAYS = 15


def is_business_day(day: date, hours: Hours) -> bool:
    """Monday to Friday, and not a Connecticut legal holiday (or a closure) of config/hours.yaml."""
    return day.weekday() < 5 and not hours.holiday(day)


def due_date(created: date, hours: Hours, days: int = NOTICE_BUSINESS_DAYS) -> date:
    """The business day by which the notice is due: the `days`-th business day after `created`."""
    day, left = created, days
    while left:
        day += timedelta(days=1)
        if is_business_day(day, hours):
            left -= 1
    return day


def business_days_left(created: datetime, today: date, hours: Hours) -> int:
    """Business days from `today` (not counted) to the due date (counted); 0 on the due date, negative
    when overdue (business days past it)."""
    due = due_date(created.astimezone(hours.zone).date(), hours)
    if due >= today:
        return sum(1 for n in range(1, (due - today).days + 1) if is_business_day(today + timedelta(n), hours))
    return -sum(1 for n in range(0, (today - due).days) if is_business_day(due + timedelta(n + 1), hours))
