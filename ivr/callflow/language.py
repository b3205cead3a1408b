"""One language's own words and rules, read from prompts/<lang>/language.yaml: what of a language is not
a prompt (the key that chooses it, the words that work like keys, how it says counts, lists, amounts,
dates and hours). ivr/callflow/prompts.py finds the languages and checks them with the prompts."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from babel import Locale, UnknownLocaleError
from num2words import num2words

GLOBAL_KEYS = ("*", "0", "9")    # keys that work in every menu, in the order their words are tried
NAMED_KEYS = ("*", "#")          # keys said by name when they are not a choice


@dataclass(frozen=True)
class Language:
    code: str
    name: str                                   # in the staff tools (English)
    key: str                                    # chooses the language at a line's greeting
    words: tuple[str, ...]                      # ... and so does saying one of these
    locale: str                                 # num2words and babel
    global_words: Mapping[str, tuple[str, ...]]  # "*", "0", "9" -> words
    digits: tuple[str, ...]                     # "zero" ... "nine"
    key_names: Mapping[str, str]                # "*" -> "star"
    digit_count: Mapping[str, str]              # one, many, range
    conjunctions: Mapping[str, str]             # "and", "or" -> " and ", " or "
    before: Mapping[str, tuple[tuple[re.Pattern, str], ...]]   # "and"/"or" -> (next item's start, word)
    hours: str
    rewrite: tuple[tuple[re.Pattern, str], ...]       # number words before a noun
    before_unit: tuple[tuple[re.Pattern, str], ...]   # the joiner of a number and its unit
    money: Mapping[str, object]
    dates: Mapping[str, str]
    payment_sources: Mapping[str, str] = field(default_factory=dict)
    disbursement_methods: Mapping[str, str] = field(default_factory=dict)

    # --- what the engine and handlers say --------------------------------------------------------
    def count(self, n: int, upto: int | None = None) -> str:
        """"1 digit", "9 digits", "5 to 8 digits" (es: "1 dígito", "de 5 a 8 dígitos")."""
        if upto is not None and upto != n:
            return self.digit_count["range"].format(low=n, high=upto)
        return self.digit_count["one" if n == 1 else "many"].format(n=n)

    def key_name(self, key: str) -> str:
        """The first key of `key` as it is said: "star", "7"."""
        key = (key or "")[:1]
        return self.key_names.get(key, key)

    def join(self, items: list[str], conjunction: str = "and") -> str:
        """"a, b and c"; the conjunction may change before the last item (es: "Hartford u Osborn")."""
        if len(items) < 2:
            return "".join(items)
        word = self.conjunctions[conjunction]
        for pattern, instead in self.before.get(conjunction, ()):
            if pattern.match(items[-1]):
                word = instead
                break
        return ", ".join(items[:-1]) + word + items[-1]


# --- reading language.yaml -----------------------------------------------------------------------
FIELDS = {
    "name": "its name, in the staff tools (English)",
    "key": "the key (1-8) that chooses it at a line's greeting, where its `lang.offer` prompt says so",
    "words": "words a caller may say at the greeting instead",
    "locale": "num2words' and babel's locale: numbers, dates, day names, times of day",
    "global_words": "words that work like the keys *, 0 and 9 in every menu",
    "digits": "the ten digits said as words, zero to nine",
    "key_names": "how * and # are said",
    "digit_count": "one, many, range: how a count of digits is said ({n}; {low}, {high})",
    "and": "the conjunction of a list: \" and \"",
    "or": "the conjunction of a choice: \" or \"",
    "and_before": "a different `and` before an item that begins so (regular expression: word)",
    "or_before": "a different `or` before an item that begins so (regular expression: word)",
    "hours": "office hours in words ({first}, {last}, {open}, {close})",
    "numbers": "rewrite, before_unit: regular expressions applied to the locale's number words",
    "money": "dollar, cent ([one, many]), and, minus",
    "dates": "babel patterns: weekday, day, first_day (optional), year, time",
    "payment_sources": "the SDU's payment sources in words",
    "disbursement_methods": "the SDU's disbursement methods in words",
}
REQUIRED = set(FIELDS) - {"and_before", "or_before"}
TEMPLATES = {"one": {"n"}, "many": {"n"}, "range": {"low", "high"}}


def parse(code: str, data: object, where: str) -> tuple[Language | None, list[str]]:
    """A Language from a language.yaml's contents, or the list of what is wrong with it (each naming
    `where` and the field)."""
    if not isinstance(data, dict):
        return None, [f"{where}: must map fields to values ({', '.join(FIELDS)})"]
    errors = [f"{where}: unknown field `{k}` (a language file has: {', '.join(FIELDS)})"
              for k in data if k not in FIELDS]
    errors += [f"{where}: `{k}` is missing: {FIELDS[k]}" for k in sorted(REQUIRED - set(data))]
    if errors:
        return None, errors

    def text(value, what: str) -> str:
        if not isinstance(value, str) or not value:
            errors.append(f"{where}: {what} must be a text")
            return ""
        return value

    def texts(value, what: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            errors.append(f"{where}: {what} must be a list of words")
            return ()
        return tuple(text(v, f"{what} entry") for v in value)

    def table(value, what: str, keys=None) -> dict:
        if not isinstance(value, dict):
            errors.append(f"{where}: {what} must be a mapping")
            return {}
        if keys is not None and set(map(str, value)) != set(keys):
            errors.append(f"{where}: {what} must give exactly {', '.join(keys)}")
        return {str(k): v for k, v in value.items()}

    def patterns(value, what: str) -> tuple[tuple[re.Pattern, str], ...]:
        out = []
        for pattern, replacement in table(value or {}, what).items():
            try:
                out.append((re.compile(pattern, re.IGNORECASE), text(replacement, f"{what} {pattern!r}")
                            if replacement != "" else ""))
            except re.error as exc:
                errors.append(f"{where}: {what} {pattern!r} is not a regular expression: {exc}")
        return tuple(out)

    def template(value, what: str, names: set[str]) -> str:
        value = text(value, what)
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(value) if name}
        except ValueError:
            used = set()
        if used != names:
            errors.append(f"{where}: {what} must use {_braces(names)}")
        return value

    key = str(data["key"])
    if len(key) != 1 or key not in "12345678":
        errors.append(f"{where}: key {key!r} must be one digit 1-8")
    locale = text(data["locale"], "locale")
    if locale:
        try:
            Locale.parse(locale)
            num2words(1, lang=locale)
        except (UnknownLocaleError, ValueError, NotImplementedError) as exc:
            errors.append(f"{where}: locale {locale!r} is not known to babel and num2words ({exc})")
    global_words = table(data["global_words"], "global_words", GLOBAL_KEYS)
    digits = texts(data["digits"], "digits")
    if len(digits) != 10:
        errors.append(f"{where}: digits must be 10 words, zero to nine")
    count = table(data["digit_count"], "digit_count", TEMPLATES)
    numbers = table(data["numbers"], "numbers")
    for k in sorted(set(numbers) - {"rewrite", "before_unit"}):
        errors.append(f"{where}: numbers.{k} is unknown (rewrite, before_unit)")
    money = table(data["money"], "money", ("dollar", "cent", "and", "minus"))
    for unit in ("dollar", "cent"):
        if len(texts(money.get(unit), f"money.{unit}")) != 2:
            errors.append(f"{where}: money.{unit} must be [one, many]")
    dates = table(data["dates"], "dates")
    for k in sorted({"weekday", "day", "year", "time"} - set(dates)):
        errors.append(f"{where}: dates.{k} is missing")
    for k in sorted(set(dates) - {"weekday", "day", "first_day", "year", "time"}):
        errors.append(f"{where}: dates.{k} is unknown (weekday, day, first_day, year, time)")
    language = Language(
        code=code,
        name=text(data["name"], "name"),
        key=key,
        words=texts(data["words"], "words"),
        locale=locale,
        global_words={k: texts(global_words.get(k), f"global_words {k!r}") for k in GLOBAL_KEYS},
        digits=digits,
        key_names={str(k): text(v, f"key_names {k!r}")
                   for k, v in table(data["key_names"], "key_names", NAMED_KEYS).items()},
        digit_count={k: template(count.get(k), f"digit_count.{k}", names) for k, names in TEMPLATES.items()},
        conjunctions={"and": text(data["and"], "and"), "or": text(data["or"], "or")},
        before={c: patterns(data.get(f"{c}_before"), f"{c}_before") for c in ("and", "or")},
        hours=template(data["hours"], "hours", {"first", "last", "open", "close"}),
        rewrite=patterns(numbers.get("rewrite"), "numbers.rewrite"),
        before_unit=patterns(numbers.get("before_unit"), "numbers.before_unit"),
        money={"dollar": tuple(money.get("dollar") or ()), "cent": tuple(money.get("cent") or ()),
               "and": text(money.get("and"), "money.and"), "minus": text(money.get("minus"), "money.minus")},
        dates={k: text(v, f"dates.{k}") for k, v in dates.items()},
        payment_sources={k: text(v, f"payment_sources.{k}")
                         for k, v in table(data["payment_sources"], "payment_sources").items()},
        disbursement_methods={k: text(v, f"disbursement_methods.{k}")
                              for k, v in table(data["disbursement_methods"], "disbursement_methods").items()},
    )
    return (None if errors else language), errors


def _braces(names: set[str]) -> str:
    ordered = [f"{{{n}}}" for n in sorted(names, key=["n", "low", "high", "first", "last", "open", "close"].index)]
    return ordered[0] if len(ordered) == 1 else ", ".join(ordered[:-1]) + " and " + ordered[-1]
