"""What callers hear: prompt texts from prompts/<lang>.yaml, and published staff recordings."""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

LANGS = ("en", "es")


class PromptError(RuntimeError):
    pass


@dataclass(frozen=True)
class Spoken:
    """One thing to say: text for text-to-speech, or the URL of a recording to play."""
    text: str
    audio: str | None = None


class Prompts:
    def __init__(self, texts: dict[str, dict[str, str]], codes: dict[str, int]) -> None:
        self.texts = texts          # lang -> id -> text
        self.codes = codes          # id -> short numeric code (staff line)
        self._ids = {code: pid for pid, code in codes.items()}
        self.recordings: dict[tuple[str, str], str] = {}   # (id, lang) -> audio URL

    def by_code(self, code: str) -> str | None:
        """The prompt id a staff member keys in as digits ("201"), or None."""
        return self._ids.get(int(code)) if code.isascii() and code.isdigit() else None

    @classmethod
    def load(cls, folder: Path) -> Prompts:
        """prompts/<lang>/*.yaml (id: text) and prompts/codes/*.yaml (id: numeric code)."""
        texts = {lang: _merge(folder / lang, str) for lang in LANGS}
        codes = _merge(folder / "codes", int)
        prompts = cls(texts, codes)
        prompts.check(folder)
        return prompts

    def check(self, folder: Path) -> None:
        errors = []
        en, es = self.texts["en"], self.texts["es"]
        for pid in sorted(set(en) - set(es)):
            errors.append(f"{folder / 'es'}: prompt {pid!r} is missing in Spanish")
        for pid in sorted(set(es) - set(en)):
            errors.append(f"{folder / 'en'}: prompt {pid!r} is missing in English")
        for pid in sorted(set(en) & set(es)):
            if _fields(en[pid]) != _fields(es[pid]):
                errors.append(f"{folder}: prompt {pid!r} uses different {{fields}} in en and es")
        for pid in sorted(set(en) - set(self.codes)):
            errors.append(f"{folder / 'codes'}: prompt {pid!r} has no numeric code")
        seen: dict[int, str] = {}
        for pid, code in self.codes.items():
            if code in seen:
                errors.append(f"{folder / 'codes'}: code {code} is used by {seen[code]!r} and {pid!r}")
            seen[code] = pid
        if errors:
            raise PromptError("\n".join(errors))

    def has(self, pid: str, lang: str) -> bool:
        return pid in self.texts.get(lang, {})

    def text(self, pid: str, lang: str, _sentence: bool = False, **fields: object) -> str:
        """The prompt's words; `_sentence`: it is said whole, so a field that begins a sentence gets a
        capital ("{name} is closed" with "the Norwich office"). Fragments keep their case."""
        template = self.texts[lang][pid]
        if "{" not in template:
            return template
        out = []
        for literal, name, spec, _ in _parse(template):
            if literal.startswith(".") and out and out[-1].endswith("."):
                literal = literal[1:]   # "... 4:30 p. m." then the sentence's own period: say one
            out.append(literal)
            if name is None:
                continue
            value = format(fields.get(name, ""), spec or "")   # a missing field is said as nothing, not a crash
            if _sentence and _starts_sentence("".join(out)):
                # "{name} is closed" with name "the Norwich office": a sentence starts with a capital.
                value = value[:1].upper() + value[1:]
            out.append(value)
        return "".join(out)

    def spoken(self, pid: str, lang: str, **fields: object) -> Spoken:
        # A recording can only stand in for a prompt without variable parts (most prompts have no
        # recording: look that up first, the template's fields only when there is one).
        audio = self.recordings.get((pid, lang))
        if audio and _fields(self.texts[lang][pid]):
            audio = None
        return Spoken(self.text(pid, lang, _sentence=True, **fields), audio)


@lru_cache(maxsize=4096)
def _parse(template: str) -> tuple:
    return tuple(string.Formatter().parse(template))


def _starts_sentence(before: str) -> bool:
    stripped = before.rstrip()
    return not stripped or (stripped[-1] in ".!?" and before != stripped)


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in _parse(template) if name}


def _merge(folder: Path, kind: type) -> dict:
    merged: dict = {}
    where: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PromptError(f"{path}: cannot read prompts: {exc}") from exc
        if not isinstance(data, dict):
            raise PromptError(f"{path}: must map prompt ids to values")
        for key, value in data.items():
            key = str(key)
            if key in merged:
                raise PromptError(f"{path}: prompt {key!r} is already defined in {where[key]}")
            try:
                merged[key] = kind(value).strip() if kind is str else kind(value)
            except (TypeError, ValueError) as exc:
                raise PromptError(f"{path}: prompt {key!r}: {exc}") from exc
            where[key] = path
    return merged
