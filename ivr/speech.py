"""Words for the text-to-speech voice: money, dates, digit strings, phone numbers and the SDU's enums,
in English (`en`) and Spanish (`es`).

The TTS voice reads "206.00" or "2026-11-14" badly, so everything a caller hears about an amount or a
date goes through here. Any language other than Spanish falls back to English.
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

CT_TZ = ZoneInfo("America/New_York")


def _lang(lang: str | None) -> str:
    return "es" if (lang or "").lower().startswith("es") else "en"


# --- numbers and money ------------------------------------------------------------------------------


def _cardinal(n: int, lang: str) -> str:
    """A whole number as words, in the form used right before a masculine noun."""
    if lang == "es":
        words = num2words(n, lang="es")
        # Apocope before a noun (and before "mil"/"millones"): "veintiún dólares", "treinta y un mil".
        words = re.sub(r"\bveintiuno\b", "veintiún", words)
        return re.sub(r"\buno\b", "un", words)
    # US style: "two hundred six", not "two hundred and six"; no commas, which TTS reads as pauses.
    words = num2words(n, lang="en")
    return re.sub(r"\s+", " ", words.replace(",", "").replace(" and ", " ")).strip()


def _units(n: int, lang: str, one: str, many: str) -> str:
    words = _cardinal(n, lang)
    if lang == "es" and re.search(r"\b(millón|millones)$", words):
        return f"{words} de {many}"  # "un millón de dólares"
    return f"{words} {one if n == 1 else many}"


def say_money(amount: Decimal | int | str, lang: str) -> str:
    """`Decimal("206.50")` -> "two hundred six dollars and fifty cents" /
    "doscientos seis dólares con cincuenta centavos". Rounds to the cent."""
    lang = _lang(lang)
    value = Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = ""
    if value < 0:
        sign = "menos " if lang == "es" else "minus "
        value = -value
    dollars = int(value)
    cents = int((value - dollars) * 100)
    if lang == "es":
        dollar_words = _units(dollars, lang, "dólar", "dólares")
        cent_words = _units(cents, lang, "centavo", "centavos")
        joiner = " con "
    else:
        dollar_words = _units(dollars, lang, "dollar", "dollars")
        cent_words = _units(cents, lang, "cent", "cents")
        joiner = " and "
    if cents == 0:
        return sign + dollar_words
    if dollars == 0:
        return sign + cent_words  # "fifty cents", not "zero dollars and fifty cents"
    return sign + dollar_words + joiner + cent_words


# --- dates ------------------------------------------------------------------------------------------

_DATE_PATTERNS = {
    # (lang, weekday, year) -> babel pattern
    ("en", True, False): "EEEE, MMMM d",
    ("en", True, True): "EEEE, MMMM d, y",
    ("en", False, False): "MMMM d",
    ("en", False, True): "MMMM d, y",
    ("es", True, False): "EEEE d 'de' MMMM",
    ("es", True, True): "EEEE d 'de' MMMM 'de' y",
    ("es", False, False): "d 'de' MMMM",
    ("es", False, True): "d 'de' MMMM 'de' y",
}


def today_in_connecticut() -> date:
    return datetime.now(CT_TZ).date()


def say_date(d: date, lang: str, weekday: bool = True, *, today: date | None = None) -> str:
    """`date(2026, 11, 13)` -> "Friday, November 13" / "viernes 13 de noviembre". The year is said only
    when it is not the current year (`today` defaults to today in Connecticut)."""
    lang = _lang(lang)
    this_year = (today or today_in_connecticut()).year
    pattern = _DATE_PATTERNS[(lang, weekday, d.year != this_year)]
    if lang == "es" and d.day == 1:
        pattern = pattern.replace("d 'de'", "'primero de'")  # "primero de noviembre", as callers say it
    return _format_date(d, pattern, "en_US" if lang == "en" else "es_US")


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

_SOURCES = {
    "income_withholding": (
        "from an employer's paycheck withholding",
        "de una retención de salario hecha por un empleador",
    ),
    "unemployment_compensation": ("from unemployment benefits", "de beneficios de desempleo"),
    "workers_compensation": ("from workers' compensation", "de compensación laboral"),
    "federal_tax_refund": ("from a federal tax refund", "de un reembolso de impuestos federales"),
    "state_tax_refund": ("from a state tax refund", "de un reembolso de impuestos estatales"),
    "lottery": ("from lottery winnings", "de un premio de lotería"),
    "bank_seizure": ("from a bank account seizure", "de un embargo de cuenta bancaria"),
    "direct_payment": ("from a direct payment", "de un pago directo"),
    "other_state": ("from another state's child support agency", "de la agencia de otro estado"),
    "other": ("from another source", "de otra fuente"),
}

_METHODS = {
    "debit_card": ("to your debit card", "a su tarjeta de débito"),
    "direct_deposit": ("by direct deposit to your bank account", "por depósito directo a su cuenta bancaria"),
    "check": ("by check in the mail", "por cheque, por correo"),
}


def _word(table: dict[str, tuple[str, str]], value: str, lang: str, what: str) -> str:
    try:
        en, es = table[value]
    except KeyError:
        raise ValueError(f"unknown {what}: {value!r}") from None
    return es if _lang(lang) == "es" else en


def say_source(source: str, lang: str) -> str:
    """Where a payment came from: "from an employer's paycheck withholding"."""
    return _word(_SOURCES, source, lang, "payment source")


def say_method(method: str, lang: str) -> str:
    """How money reaches the payee: "to your debit card" / "a su tarjeta de débito"."""
    return _word(_METHODS, method, lang, "disbursement method")
