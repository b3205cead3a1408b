"""Masking of personal data before it can reach a log line or an error message."""

from __future__ import annotations


def mask_digits(value: str | None, keep: int = 2) -> str:
    """`123456789` -> `*******89`: enough to tell two cases apart in a log, not enough to use."""
    if not value:
        return "-"
    value = str(value)
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


def mask_phone(number: str | None) -> str:
    """Keep the country code and the last two digits of a caller's number."""
    if not number:
        return "-"
    number = str(number)
    if number.startswith("+1") and len(number) > 4:
        return "+1" + mask_digits(number[2:], keep=2)
    return mask_digits(number, keep=2)
