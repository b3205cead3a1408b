"""Masking of personal data before it can reach a log line or an error message."""

from __future__ import annotations

import re

# A run of digits that may be a phone, case or inmate number, with the separators people write.
_NUMBER = re.compile(r"\+?\d[\d\s().-]{3,}\d")


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


def mask_numbers(text: str | None) -> str:
    """Every run of 5 characters or more of digits and phone punctuation (spaces, dots, dashes, brackets),
    starting and ending with a digit, in a text from outside (an error message that may quote the number it
    was about) masked as `mask_digits` masks its digits, so the text can be shown, logged or kept. It errs
    on the side of masking: a short code such as 21211 is masked too."""
    def mask(match: re.Match) -> str:
        return mask_digits(re.sub(r"\D", "", match.group()))
    return _NUMBER.sub(mask, text or "")


def printable(value: object, limit: int = 200) -> str:
    """Text from a request made safe for a log line: at most `limit` characters, and every character that
    is not printable (newlines, NUL, terminal escapes, bidi marks, line separators) written as its escape
    (`\\n`, `\\x00`, `\\u202e`), so a field can neither forge a log line nor reorder one."""
    text = str(value)[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
