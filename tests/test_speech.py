"""What the caller hears for amounts, dates, digits and the SDU's enums, word for word."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.callflow.speech import (
    say_date,
    say_digits,
    say_method,
    say_money,
    say_phone,
    say_source,
)
from ivr.sdu import schema

MONEY = [
    ("206.00", "two hundred six dollars", "doscientos seis dólares"),
    ("206.50", "two hundred six dollars and fifty cents", "doscientos seis dólares con cincuenta centavos"),
    ("1.00", "one dollar", "un dólar"),
    ("1.01", "one dollar and one cent", "un dólar con un centavo"),
    ("0.00", "zero dollars", "cero dólares"),
    ("0.50", "fifty cents", "cincuenta centavos"),
    ("0.01", "one cent", "un centavo"),
    ("21.00", "twenty-one dollars", "veintiún dólares"),
    ("21.21", "twenty-one dollars and twenty-one cents", "veintiún dólares con veintiún centavos"),
    ("31.00", "thirty-one dollars", "treinta y un dólares"),
    ("100.00", "one hundred dollars", "cien dólares"),
    ("101.00", "one hundred one dollars", "ciento un dólares"),
    ("95.00", "ninety-five dollars", "noventa y cinco dólares"),
    ("-45.00", "minus forty-five dollars", "menos cuarenta y cinco dólares"),
    ("-0.50", "minus fifty cents", "menos cincuenta centavos"),
    ("1001.01", "one thousand one dollars and one cent", "mil un dólares con un centavo"),
    ("3412.57", "three thousand four hundred twelve dollars and fifty-seven cents",
     "tres mil cuatrocientos doce dólares con cincuenta y siete centavos"),
    ("12840.33", "twelve thousand eight hundred forty dollars and thirty-three cents",
     "doce mil ochocientos cuarenta dólares con treinta y tres centavos"),
    ("21000.00", "twenty-one thousand dollars", "veintiún mil dólares"),
    ("31000.00", "thirty-one thousand dollars", "treinta y un mil dólares"),
    ("1000000.00", "one million dollars", "un millón de dólares"),
    ("2500000.00", "two million five hundred thousand dollars", "dos millones quinientos mil dólares"),
    ("3000000.00", "three million dollars", "tres millones de dólares"),
]


@pytest.mark.parametrize(("amount", "en", "es"), MONEY, ids=[m[0] for m in MONEY])
def test_say_money(amount, en, es):
    assert say_money(Decimal(amount), "en") == en
    assert say_money(Decimal(amount), "es") == es


def test_say_money_rounds_to_the_cent_and_accepts_language_tags():
    assert say_money(Decimal("1.005"), "en") == "one dollar and one cent"
    assert say_money(Decimal("206"), "es-US") == "doscientos seis dólares"
    assert say_money(Decimal("206"), "fr") == "two hundred six dollars"  # English fallback


@given(st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("99999999.99"), places=2))
def test_say_money_never_leaves_digits_or_a_stray_uno(amount):
    en, es = say_money(amount, "en"), say_money(amount, "es")
    assert not any(c.isdigit() for c in en + es)
    assert " and " not in en.replace(" dollars and ", " ").replace(" dollar and ", " ")
    assert "uno" not in es.split()  # always apocopated before a noun or mil/millones
    assert es.endswith(("dólar", "dólares", "centavo", "centavos"))


TODAY = date(2026, 11, 13)
DATES = [
    (date(2026, 11, 13), True, "Friday, November 13", "viernes 13 de noviembre"),
    (date(2026, 11, 16), True, "Monday, November 16", "lunes 16 de noviembre"),
    (date(2026, 10, 9), True, "Friday, October 9", "viernes 9 de octubre"),
    (date(2026, 11, 16), False, "November 16", "16 de noviembre"),
    (date(2026, 11, 1), True, "Sunday, November 1", "domingo primero de noviembre"),
    (date(2026, 12, 1), False, "December 1", "primero de diciembre"),
    (date(2027, 1, 4), True, "Monday, January 4, 2027", "lunes 4 de enero de 2027"),
    (date(2025, 12, 31), False, "December 31, 2025", "31 de diciembre de 2025"),
]


@pytest.mark.parametrize(("d", "weekday", "en", "es"), DATES, ids=[str(d[0]) + str(d[1]) for d in DATES])
def test_say_date(d, weekday, en, es):
    assert say_date(d, "en", weekday=weekday, today=TODAY) == en
    assert say_date(d, "es", weekday=weekday, today=TODAY) == es


def test_say_date_year_depends_on_today():
    d = date(2026, 11, 14)
    assert say_date(d, "en", today=date(2026, 1, 1)) == "Saturday, November 14"
    assert say_date(d, "en", today=date(2027, 1, 1)) == "Saturday, November 14, 2026"


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [("123456789", "1 2 3, 4 5 6, 7 8 9"), ("012345678", "0 1 2, 3 4 5, 6 7 8"), ("0417", "0 4 1 7"),
     ("12-34", "1 2 3 4"), ("", "")],
)
def test_say_digits(raw, spoken):
    assert say_digits(raw) == spoken


@pytest.mark.parametrize(
    ("number", "spoken"),
    [("+18605668723", "8 6 0, 5 6 6, 8 7 2 3"), ("(860) 566-8723", "8 6 0, 5 6 6, 8 7 2 3"),
     # toll-free numbers are said the way they are dialled and advertised, with the 1
     ("+18002285437", "1, 8 0 0, 2 2 8, 5 4 3 7"), ("+18882337223", "1, 8 8 8, 2 3 3, 7 2 2 3")],
)
def test_say_phone(number, spoken):
    assert say_phone(number, "en") == spoken
    assert say_phone(number, "es") == spoken


@pytest.mark.parametrize("number", ["+442071838750", "not a number", "+1860566"])
def test_say_phone_refuses_what_is_not_a_us_number(number):
    with pytest.raises(ValueError):
        say_phone(number, "en")


def _enum(*path: str) -> list[str]:
    node = schema.contract()["components"]["schemas"]
    for key in path:
        node = node[key]
    return node["enum"]


def test_every_contract_enum_has_words_in_both_languages():
    cases = [
        (say_source, _enum("Payment", "properties", "source")),
        (say_method, _enum("DisbursementMethod")),
    ]
    for say, values in cases:
        for value in values:
            en, es = say(value, "en"), say(value, "es")
            assert en and es and en != es and "_" not in en + es
    with pytest.raises(ValueError):
        say_source("gift", "en")


@pytest.mark.parametrize(
    ("say", "value", "en", "es"),
    [
        (say_source, "income_withholding", "from an employer's paycheck withholding",
         "de una retención de salario hecha por un empleador"),
        (say_source, "federal_tax_refund", "from a federal tax refund", "de un reembolso de impuestos federales"),
        (say_method, "debit_card", "to your debit card", "a su tarjeta de débito"),
        (say_method, "direct_deposit", "by direct deposit to your bank account",
         "por depósito directo a su cuenta bancaria"),
        (say_method, "check", "by check in the mail", "por cheque, por correo"),
    ],
)
def test_enum_words(say, value, en, es):
    assert say(value, "en") == en
    assert say(value, "es") == es
