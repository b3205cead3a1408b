"""Words for the text-to-speech voice: money, dates, digit strings, phone numbers and the SDU's enums,
in the caller's language: its locale and rules come from prompts/<lang>/language.yaml (ivr/callflow/language.py).

The TTS voice reads "206.00" or "2026-11-14" badly, so everything a caller hears about an amount or a
date goes through here. `lang` is a Language, or a code or tag of a shipped language ("es", "es-US");
any other code is said in the default language.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from babel.dates import format_date
from num2words import num2words

from ivr.callflow.language import Language

CT_TZ = ZoneInfo("America/New_York")


def language(lang: str | Language | None) -> Language:
    """`lang` itself, or the shipped language a code or tag names (the default one for any other)."""
    if isinstance(lang, Language):
        return lang
    from ivr.callflow.prompts import bundled_languages
    languages = bundled_languages()
    code = re.split(r"[-_]", (lang or "").lower())[0]
    return languages.get(code) or next(iter(languages.values()))


# --- numbers and money ------------------------------------------------------------------------------


def _cardinal(n: int, lang: Language) -> str:
    """A whole number as words, in the form used right before a noun (the language's rewrites)."""
    words = num2words(n, lang=lang.locale)
    for pattern, replacement in lang.rewrite:
        words = pattern.sub(replacement, words)
    return re.sub(r"\s+", " ", words).strip()


def _units(n: int, lang: Language, forms: tuple[str, ...]) -> str:
    words = _cardinal(n, lang)
    joiner = next((j for pattern, j in lang.before_unit if pattern.search(words)), " ")
    return f"{words}{joiner}{forms[0] if n == 1 else forms[1]}"   # es: "un millón de dólares"


def say_money(amount: Decimal | int | str, lang: str | Language) -> str:
    """`Decimal("206.50")` -> "two hundred six dollars and fifty cents" /
    "doscientos seis dólares con cincuenta centavos". Rounds to the cent."""
    lang = language(lang)
    money = lang.money
    value = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = ""
    if value < 0:
        sign = money["minus"]
        value = -value
    dollars = int(value)
    cents = int((value - dollars) * 100)
    dollar_words = _units(dollars, lang, money["dollar"])
    cent_words = _units(cents, lang, money["cent"])
    if cents == 0:
        return sign + dollar_words
    if dollars == 0:
        return sign + cent_words  # "fifty cents", not "zero dollars and fifty cents"
    return sign + dollar_words + money["and"] + cent_words


# --- dates ------------------------------------------------------------------------------------------


def today_in_connecticut() -> date:
    return datetime.now(CT_TZ).date()


def say_date(d: date, lang: str | Language, weekday: bool = True, *, today: date | None = None) -> str:
    """`date(2026, 11, 13)` -> "Friday, November 13" / "viernes 13 de noviembre". The year is said only
    when it is not the current year (`today` defaults to today in Connecticut)."""
    lang = language(lang)
    this_year = (today or today_in_connecticut()).year
    dates = lang.dates
    day = dates.get("first_day", dates["day"]) if d.day == 1 else dates["day"]   # es: "primero de noviembre"
    pattern = (dates["weekday"] if weekday else "") + day + (dates["year"] if d.year != this_year else "")
    return _format_date(d, pattern, lang.locale)


@lru_cache(maxsize=512)
def _format_date(d: date, pattern: str, locale: str) -> str:
    # babel parses the pattern and looks up the locale on every call (~1% of a webhook's CPU).
    return format_date(d, pattern, locale=locale)


# --- digits -----------------------------------------------------------------------------------------


def say_digits(s: str) -> str:
    """"123456789" -> "1 2 3, 4 5 6, 7 8 9" (a 9-digit case number in groups of three, the commas give
    the voice a pause); other lengths digit by digit: "0417" -> "0 4 1 7". Non-digits are ignored."""
    digits = [c for c in s if c.isdigit()]
    if len(digits) == 9:
        return ", ".join(" ".join(digits[i : i + 3]) for i in (0, 3, 6))
    return " ".join(digits)


@lru_cache(maxsize=128)   # only the lines' own numbers are said (callback, offices): a few, said often
def say_phone(e164: str, lang: str) -> str:
    """A US number digit by digit in its groups: "+18605668723" -> "8 6 0, 5 6 6, 8 7 2 3".
    The digits are the same in both languages (the voice says them); ValueError if not a US number."""
    try:
        number = phonenumbers.parse(e164, "US")
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    national = str(number.national_number)
    if number.country_code != 1 or len(national) != 10:
        raise ValueError("not a US phone number")
    groups = ", ".join(" ".join(group) for group in (national[:3], national[3:6], national[6:]))
    # Toll-free numbers are dialled with the 1 first, and that is how callers know them.
    toll_free = phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.TOLL_FREE
    return f"1, {groups}" if toll_free else groups


# --- the SDU's enums --------------------------------------------------------------------------------


def say_source(source: str, lang: str | Language) -> str:
    """Where a payment came from: "from an employer's paycheck withholding"."""
    return _enum(language(lang).payment_sources, source, "payment source")


def say_method(method: str, lang: str | Language) -> str:
    """How money reaches the payee: "to your debit card" / "a su tarjeta de débito"."""
    return _enum(language(lang).disbursement_methods, method, "disbursement method")


def _enum(words: dict[str, str], value: str, what: str) -> str:
    try:
        return words[value]
    except KeyError:
        raise ValueError(f"unknown {what}: {value!r}") from None
