"""What callers hear: prompt texts from prompts/<lang>/*.yaml, each language's own words
(prompts/<lang>/language.yaml, ivr/callflow/language.py), and published staff recordings."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ivr.callflow import language
from ivr.callflow.language import Language
from ivr.settings import ROOT

LANGUAGE_FILE = "language.yaml"
CODES = "codes"         # prompts/codes/: the prompts' numeric codes, not a language


class PromptError(RuntimeError):
    pass


@dataclass(frozen=True)
class Spoken:
    """One thing to say: text for text-to-speech, or the URL of a recording to play."""
    text: str
    audio: str | None = None


class Prompts:
    def __init__(self, texts: dict[str, dict[str, str]], codes: dict[str, int],
                 languages: Mapping[str, Language] | None = None) -> None:
        self.texts = texts          # lang -> id -> text
        self.codes = codes          # id -> short numeric code (staff line)
        self._ids = {code: pid for pid, code in codes.items()}
        self.recordings: dict[tuple[str, str], str] = {}   # (id, lang) -> audio URL
        # code -> Language, the default (a new call's) first, then in the order of their keys
        self.languages: dict[str, Language] = dict(languages or {})
        self.default: str = next(iter(self.languages), "")

    def by_code(self, code: str) -> str | None:
        """The prompt id a staff member keys in as digits ("201"), or None."""
        return self._ids.get(int(code)) if code.isascii() and code.isdigit() else None

    @classmethod
    def load(cls, folder: Path, lines: Path | None = None) -> Prompts:
        """prompts/<lang>/*.yaml (id: text) of every language (`load_languages`) and prompts/codes/*.yaml
        (id: numeric code)."""
        languages = load_languages(folder, lines)
        texts = {lang: _merge(folder / lang, str) for lang in languages}
        codes = _merge(folder / CODES, int)
        prompts = cls(texts, codes, languages)
        prompts.check(folder)
        return prompts

    def language(self, code: str) -> Language:
        return self.languages[code]

    def check(self, folder: Path) -> None:
        errors = []
        first = self.texts[self.default]
        for lang, texts in self.texts.items():
            if lang == self.default:
                continue
            name, first_name = self.languages[lang].name, self.languages[self.default].name
            for pid in sorted(set(first) - set(texts)):
                errors.append(f"{folder / lang}: prompt {pid!r} is missing in {name}")
            for pid in sorted(set(texts) - set(first)):
                errors.append(f"{folder / self.default}: prompt {pid!r} is missing in {first_name}")
            for pid in sorted(set(first) & set(texts)):
                if _fields(first[pid]) != _fields(texts[pid]):
                    errors.append(f"{folder}: prompt {pid!r} uses different {{fields}} in {self.default} and {lang}")
        for pid in sorted(set(first) - set(self.codes)):
            errors.append(f"{folder / 'codes'}: prompt {pid!r} has no numeric code")
        seen: dict[int, str] = {}
        for pid, code in self.codes.items():
            if code in seen:
                errors.append(f"{folder / 'codes'}: code {code} is used by {seen[code]!r} and {pid!r}")
            seen[code] = pid
        if errors:
            raise PromptError("\n".join(errors))

    def has_parts(self, pid: str, lang: str) -> bool:
        """Whether the prompt has variable parts ({name}): such a prompt is always the computer voice."""
        template = self.texts.get(lang, {}).get(pid)
        return template is not None and bool(_fields(template))

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


def load_languages(folder: Path, lines: Path | None = None) -> dict[str, Language]:
    """The languages: each folder of `folder` (but codes/) with its language.yaml. With `lines`
    (config/lines.yaml), each must have a voice there and each voice a folder, and the default is its
    `default_language` (else its first voice); without, the language of the lowest key. The default
    comes first, then the others in the order of their keys. Anything wrong stops start-up, named."""
    errors: list[str] = []
    found: dict[str, Language] = {}
    folders = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != CODES) if folder.is_dir() else []
    for path in folders:
        file = path / LANGUAGE_FILE
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            errors.append(f"{path}: a language folder needs {LANGUAGE_FILE} (see prompts/en/{LANGUAGE_FILE})")
            continue
        except (OSError, yaml.YAMLError) as exc:
            errors.append(f"{file}: cannot read: {exc}")
            continue
        lang, wrong = language.parse(path.name, data, str(file))
        errors += wrong
        if lang is not None:
            found[lang.code] = lang
    keys: dict[str, str] = {}
    for lang in found.values():
        if lang.key in keys:
            errors.append(f"{folder / lang.code / LANGUAGE_FILE}: key {lang.key} is also the key of "
                          f"{found[keys[lang.key]].name} ({folder / keys[lang.key] / LANGUAGE_FILE})")
        keys.setdefault(lang.key, lang.code)
    default = min(found.values(), key=lambda lg: lg.key).code if found else None
    if lines is not None:
        try:
            cfg = yaml.safe_load(lines.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PromptError(f"{lines}: cannot read: {exc}") from None
        voices = cfg.get("voices") or {}
        for code in sorted(set(found) - set(voices)):
            errors.append(f"{folder / code}: language {code!r} has no voice in {lines} (`voices`)")
        for code in sorted(set(voices) - {p.name for p in folders}):
            errors.append(f"{lines}: voice {code!r} has no language folder {folder / code} "
                          f"(with its prompts and {LANGUAGE_FILE})")
        default = str(cfg.get("default_language") or next(iter(voices), ""))
        if default not in voices:
            errors.append(f"{lines}: default_language {default!r} has no voice")
    if not found and not errors:
        errors.append(f"{folder}: no language folder (prompts/<lang>/ with {LANGUAGE_FILE})")
    if errors:
        raise PromptError("\n".join(errors))
    rest = sorted((lg for code, lg in found.items() if code != default), key=lambda lg: lg.key)
    return {default: found[default], **{lg.code: lg for lg in rest}}


@lru_cache(maxsize=8)
def language_codes(folder: Path) -> frozenset[str]:
    """The codes of the languages in a prompts folder, by their files alone (a worker checking a job)."""
    return frozenset(p.parent.name for p in Path(folder).glob(f"*/{LANGUAGE_FILE}"))


@lru_cache(maxsize=1)
def bundled_languages() -> dict[str, Language]:
    """The languages of the prompts and config shipped in this checkout (tools and plain `lang` codes)."""
    return load_languages(ROOT / "prompts", ROOT / "config" / "lines.yaml")


def __getattr__(name: str):
    if name == "LANGS":   # the shipped languages' codes, for tests and tools that name no prompts folder
        return tuple(bundled_languages())
    raise AttributeError(name)


def _merge(folder: Path, kind: type) -> dict:
    merged: dict = {}
    where: dict[str, Path] = {}
    for path in sorted(folder.glob("*.yaml")):
        if path.name == LANGUAGE_FILE:
            continue
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
