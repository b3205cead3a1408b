"""SES offices, and which office serves a Connecticut town (town -> judicial district -> office)."""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import phonenumbers
import yaml


class DirectoryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Office:
    id: str
    name: dict[str, str]
    address: str
    phone: str          # E.164


@dataclass(frozen=True)
class Route:
    town: str
    district: str
    office: Office
    confirmed: bool


def parse_phone(raw: str, where: str) -> str:
    """E.164 of a US number, or a DirectoryError naming where the bad number is."""
    try:
        number = phonenumbers.parse(str(raw), "US")
    except phonenumbers.NumberParseException as exc:
        raise DirectoryError(f"{where}: {raw!r} is not a phone number ({exc})") from exc
    if not phonenumbers.is_valid_number(number):
        raise DirectoryError(f"{where}: {raw!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


ANONYMOUS = "anonymous"


def caller_id(number: str | None) -> str:
    """The caller's number in E.164, or "anonymous" when there is no usable caller ID."""
    try:
        parsed = phonenumbers.parse(number or "", "US")
    except phonenumbers.NumberParseException:
        return ANONYMOUS
    if not phonenumbers.is_possible_number(parsed):
        return ANONYMOUS  # "anonymous", "+266696687" (withheld) and the like share one value
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z ]", "", name.lower().replace("-", " ")).strip()


class Directory:
    def __init__(self, offices: dict[str, Office], towns: dict[str, str],
                 districts: dict[str, tuple[str, bool]], zips: dict[str, str],
                 local_names: dict[str, dict[str, list[str]]] | None = None) -> None:
        self.offices = offices
        self.towns = towns              # town -> judicial district
        self.districts = districts      # district -> (office id, confirmed)
        self.zips = zips                # ZIP -> town
        self.local_names = local_names or {}   # lang -> town -> its names in that language, said first
        self._by_norm = {_norm(t): t for t in towns}
        for names in self.local_names.values():
            for town, said in names.items():
                self._by_norm.update({_norm(name): town for name in said})
        # Compiled once: a spoken town is searched for every town's name (short names left out).
        self._named = [(n, re.compile(rf"\b{re.escape(n)}\b")) for n in self._by_norm if len(n) > 3]

    @classmethod
    def load(cls, config_dir: Path, langs: Iterable[str] | None = None) -> Directory:
        """`langs`: the languages every office's name is given in (by default the shipped ones)."""
        if langs is None:
            from ivr.callflow.prompts import bundled_languages
            langs = bundled_languages()
        langs = list(langs)
        path = config_dir / "offices.yaml"
        raw = (yaml.safe_load(path.read_text()) or {}).get("offices") or {}
        offices = {}
        for oid, o in raw.items():
            where = f"{path}: office {oid!r}"
            if not isinstance(o, dict) or not {"name", "address", "phone"} <= set(o):
                raise DirectoryError(f"{where}: needs name, address and phone")
            if set(o["name"]) != set(langs):
                raise DirectoryError(f"{where}: name must be given in {' and '.join(langs)}")
            offices[oid] = Office(oid, dict(o["name"]), o["address"], parse_phone(o["phone"], where))
        dpath = config_dir / "districts.yaml"
        districts = {}
        for name, d in (yaml.safe_load(dpath.read_text()) or {}).get("districts", {}).items():
            if d.get("office") not in offices:
                raise DirectoryError(f"{dpath}: district {name!r} names unknown office {d.get('office')!r}")
            districts[name] = (d["office"], bool(d.get("confirmed", False)))
        tpath = config_dir / "towns.csv"
        towns = {}
        with tpath.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["judicial_district"] not in districts:
                    raise DirectoryError(f"{tpath}: town {row['town']!r} is in district "
                                         f"{row['judicial_district']!r}, which districts.yaml lacks")
                towns[row["town"]] = row["judicial_district"]
        zips = {}
        with (config_dir / "zips.csv").open(newline="") as f:
            for row in csv.DictReader(f):
                zips[row["2020zip5"].zfill(5)] = row["Town_Name"]
        npath = config_dir / "town_names.yaml"
        local: dict[str, dict[str, list[str]]] = {}
        if npath.exists():
            for lang, names in (yaml.safe_load(npath.read_text(encoding="utf-8")) or {}).items():
                for town, said in (names or {}).items():
                    if town not in towns or not isinstance(said, list) or not said \
                            or not all(isinstance(n, str) and n for n in said):
                        raise DirectoryError(f"{npath}: {lang}: {town!r} must be a town of towns.csv "
                                             "with a list of names")
                    local.setdefault(str(lang), {})[town] = said
        return cls(offices, towns, districts, zips, local)

    def spoken(self, town: str, lang: str) -> str:
        """A town's name as said in `lang`: its own name there, if it has one, else its name."""
        return self.local_names.get(lang, {}).get(town, [town])[0]

    def heard_names(self) -> list[str]:
        """Every name a town may be said by (for speech recognition hints)."""
        return sorted({*self.towns, *(n for names in self.local_names.values() for said in names.values()
                                      for n in said)})

    def route(self, town: str) -> Route:
        district = self.towns[town]
        office_id, confirmed = self.districts[district]
        return Route(town, district, self.offices[office_id], confirmed)

    def town_for_zip(self, zip_code: str) -> str | None:
        return self.zips.get(zip_code)

    def match_town(self, spoken: str) -> str | None:
        """The town a caller most likely said, tolerating speech-recognition noise."""
        said = _norm(spoken)
        if not said:
            return None
        if said in self._by_norm:
            return self._by_norm[said]
        # "I live in West Hartford" -> West Hartford, not Hartford: the longest town named wins.
        named = [n for n, pattern in self._named if pattern.search(said)]
        if named:
            return self._by_norm[max(named, key=len)]
        close = difflib.get_close_matches(said, self._by_norm, n=1, cutoff=0.86)   # "Boston" must not become Bolton
        return self._by_norm[close[0]] if close else None
