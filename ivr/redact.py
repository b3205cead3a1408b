"""Masking of personal data before it can reach a log line or an error message."""

from __future__ import annotations


def mask_digits(value: str | None, keep: int = 2) -> str:
    """`123456789` -> `*******89`: enough to tell two cases apart in a log, not enough to use."""
    if not value:
        return "-"
    value = str(value)
    if len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + printable(value[-keep:])


def mask_phone(number: str | None) -> str:
    """Keep the country code and the last two digits of a caller's number."""
    if not number:
        return "-"
    number = str(number)
    if number.startswith("+1") and len(number) > 4:
        return "+1" + mask_digits(number[2:], keep=2)
    return mask_digits(number, keep=2)


def printable(value: object, limit: int = 200) -> str:
    """Text from a request made safe for a log line: at most `limit` characters, and every character that
    is not printable (newlines, NUL, terminal escapes, bidi marks, line separators) written as its escape
    (`\\n`, `\\x00`, `\\u202e`), so a field can neither forge a log line nor reorder one."""
    text = str(value)[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
