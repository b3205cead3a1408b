"""Correctional facilities (config/facilities.yaml): their names as callers say or spell them, their
inmate phones' numbers, and the caps on requests from them."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ivr.domain.directory import DirectoryError, caller_id, parse_phone

KEYPAD = {c: d for d, letters in {"2": "abc", "3": "def", "4": "ghi", "5": "jkl", "6": "mno",
                                   "7": "pqrs", "8": "tuv", "9": "wxyz"}.items() for c in letters}



class FacilityError(RuntimeError):
    pass


@dataclass(frozen=True)
class Facility:
    id: str
    name: str
    short: str
    words: tuple[str, ...]
    requests_per_day: int | None = None     # None: the default cap for a facility (RequestCaps)
    names: tuple[tuple[str, str], ...] = ()  # (language, its name said in that language's voice)

    def said(self, lang: str) -> str:
        """The name as said to a caller of `lang`: its own name in that language, if it has one."""
        return dict(self.names).get(lang, self.name)

    @property
    def keypad(self) -> tuple[str, ...]:
        """Each spoken word spelled on the keypad ("cheshire" -> "24374473")."""
        return tuple("".join(KEYPAD[c] for c in w if c in KEYPAD) for w in self.words)


@dataclass(frozen=True)
class RequestCaps:
    """New requests per day (config/facilities.yaml `request_caps`); 0: no cap."""
    per_caller: int = 5        # one ordinary caller ID
    per_facility: int = 200    # one facility's inmate phones together, or one shared number
    withheld: int = 100        # every caller without a usable caller ID, together


class Facilities:
    def __init__(self, by_id: dict[str, Facility], numbers: dict[str, str | None],
                 caps: RequestCaps | None = None) -> None:
        self.by_id = by_id
        self.numbers = numbers          # E.164 -> facility id, or None for a facility line shared by several
        self.caps = caps or RequestCaps()

    def for_caller(self, raw: str | None) -> tuple[bool, Facility | None]:
        """(is the caller ID an inmate phone, which facility). Never raises: prison phone systems send
        "anonymous", "Restricted", Twilio's withheld "+266696687", nothing, or other odd strings."""
        raw = (raw or "").strip()[:40]
        e164 = raw if raw in self.numbers else caller_id(raw)   # Twilio sends E.164: parsed only if not
        if e164 not in self.numbers:
            return False, None
        fid = self.numbers[e164]
        return True, self.by_id.get(fid) if fid else None

    def hints(self) -> str:
        return ", ".join(dict.fromkeys(w for f in self.by_id.values() for w in f.words))

    def match_speech(self, said: str) -> list[Facility]:
        text = _norm(said)
        if not text:
            return []
        found = [f for f in self.by_id.values()
                 if any(re.search(rf"\b{re.escape(_norm(w))}\b", text) for w in f.words)]
        if found:
            return _longest_only(found, text)
        # Recognisers misspell proper names ("chesire", "mc dougal"): the closest word, if close enough.
        words = {_norm(w): f for f in self.by_id.values() for w in f.words}
        tokens = text.split()
        candidates = tokens + [" ".join(tokens[i:i + 2]) for i in range(len(tokens) - 1)]
        best: dict[str, Facility] = {}
        for token in candidates:
            for match in difflib.get_close_matches(token, list(words), n=1, cutoff=0.8):
                best[words[match].id] = words[match]
        return list(best.values())

    def match_keys(self, digits: str) -> list[Facility]:
        """Facilities one of whose words starts with these keypad letters."""
        return [f for f in self.by_id.values() if any(k.startswith(digits) for k in f.keypad)]


def _longest_only(found: list[Facility], text: str) -> list[Facility]:
    """"new haven" also contains "haven": keep the facilities whose matching word is the longest."""
    def score(f: Facility) -> int:
        return max(len(w) for w in f.words if re.search(rf"\b{re.escape(_norm(w))}\b", text))
    top = max(score(f) for f in found)
    return [f for f in found if score(f) == top]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", (text or "").lower().replace("-", " ")).split())


def load_facilities(path: Path) -> Facilities:
    """config/facilities.yaml, checked: a bad phone number or entry stops start-up naming the file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise FacilityError(f"{path}: cannot read facilities: {exc}") from exc
    raw = doc.get("facilities") if isinstance(doc, dict) else None
    if not isinstance(raw, dict) or not raw:
        raise FacilityError(f"{path}: needs a `facilities` mapping")
    by_id: dict[str, Facility] = {}
    numbers: dict[str, str | None] = {}

    def add_number(value, fid: str | None, where: str) -> None:
        try:
            e164 = parse_phone(value, where)
        except DirectoryError as exc:
            raise FacilityError(str(exc)) from None
        if e164 in numbers:
            raise FacilityError(f"{where}: {value!r} is listed twice")
        numbers[e164] = fid

    def cap(value, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FacilityError(f"{where} must be a whole number of requests a day (0: no cap), not {value!r}")
        return value

    for fid, f in raw.items():
        where = f"{path}: facility {fid!r}"
        if not isinstance(f, dict) or not f.get("name") or not f.get("words"):
            raise FacilityError(f"{where}: needs `name` and `words`")
        words = tuple(str(w) for w in f["words"])
        per_day = f.get("requests_per_day")
        names = f.get("names") or {}
        if not isinstance(names, dict) or not all(isinstance(n, str) and n for n in names.values()):
            raise FacilityError(f"{where}: `names` maps a language to the facility's name in it")
        by_id[str(fid)] = Facility(str(fid), str(f["name"]), str(f.get("short") or f["name"]), words,
                                   None if per_day is None else cap(per_day, f"{where}: requests_per_day"),
                                   tuple(sorted((str(k), v) for k, v in names.items())))
        for value in f.get("numbers") or []:
            add_number(value, str(fid), where)
    for value in doc.get("shared_numbers") or []:
        add_number(value, None, f"{path}: shared_numbers")
    given = doc.get("request_caps") or {}
    if not isinstance(given, dict) or set(given) - {"per_caller", "per_facility", "withheld"}:
        raise FacilityError(f"{path}: request_caps takes per_caller, per_facility and withheld")
    caps = RequestCaps(**{k: cap(v, f"{path}: request_caps.{k}") for k, v in given.items()})
    return Facilities(by_id, numbers, caps)
