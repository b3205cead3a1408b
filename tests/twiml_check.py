"""What Twilio accepts, taken from the `twilio` package itself, and a checker for TwiML documents.

The grammar is read off `twilio.twiml.voice_response`: for each class, every method that nests a
child (`VoiceResponse.say`, `Gather.play`, `Dial.number` ...) is called once with every parameter set,
and what it builds says which tag it makes, which attributes that tag takes (twilio's own snake_case
to camelCase conversion) and whether it has a text body. A document is then walked against it.
"""

from __future__ import annotations

import inspect
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twilio.twiml import TwiML
from twilio.twiml import voice_response as vr


@dataclass
class Verb:
    cls: type
    attrs: frozenset[str]
    children: dict[str, Verb] = field(default_factory=dict)


def _build(cls: type, cache: dict[type, dict]) -> dict[str, Verb]:
    if cls in cache:
        return cache[cls]
    cache[cls] = out = {}
    base = set(dir(TwiML))
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or name in base:
            continue
        args = {}
        for p in list(inspect.signature(fn).parameters.values())[1:]:
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                args[p.name] = "en-US" if p.name in ("language", "xml_lang") else "x"
        parent = cls.__new__(cls)
        TwiML.__init__(parent)
        child = fn(parent, **args)
        out[child.name] = Verb(type(child), frozenset(child.attrs))
    for verb in out.values():
        verb.children = _build(verb.cls, cache)
    return out


ROOT = Verb(vr.VoiceResponse, frozenset(), _build(vr.VoiceResponse, {}))
INT_ATTRS = {"timeout", "numDigits", "maxLength", "length", "loop", "timeLimit", "maxSpeechTime"}
BOOL_ATTRS = {"actionOnEmptyResult", "playBeep", "bargeIn", "hangupOnStar", "answerOnBridge",
              "profanityFilter", "enhanced", "debug"}
URL_ATTRS = {"action"}


@dataclass
class Voices:
    """The configured voice of each language (config/lines.yaml `voices`)."""
    pairs: dict[str, str]          # language tag -> voice, e.g. "en-US" -> "Polly.Joanna"

    @classmethod
    def from_app(cls, app) -> Voices:
        voices = app.extensions["ivr"].lines_cfg["voices"]
        return cls({v["language"]: v["voice"] for v in voices.values()})


SPANISH = re.compile(r"\b(oprima|para|llame|gracias|usted|por favor)\b", re.I)
ENGLISH = re.compile(r"\b(press|please|thank you|call us|you)\b", re.I)


def check(body: str, voices: Voices, url_ok=None) -> list[str]:
    """Everything wrong with one TwiML document (an empty list when Twilio would take it).
    `url_ok(url, method)`: whether an action/Redirect URL reaches one of our webhooks."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        return [f"not XML: {exc}"]
    if root.tag != "Response":
        return [f"root is <{root.tag}>, not <Response>"]
    problems: list[str] = []
    _walk(root, ROOT, "Response", voices, url_ok, problems)
    if len(root) == 0:
        problems.append("empty <Response>: the call would end in silence")
    return problems


def _walk(el: ET.Element, spec: Verb, path: str, voices: Voices, url_ok, problems: list[str]) -> None:
    for attr, value in el.attrib.items():
        if attr not in spec.attrs:
            problems.append(f"{path}: attribute {attr!r} is not one twilio's {spec.cls.__name__} takes")
        elif attr in INT_ATTRS and not re.fullmatch(r"\d+", value):
            problems.append(f"{path}: {attr}={value!r} is not a whole number")
        elif attr in BOOL_ATTRS and value not in ("true", "false"):
            problems.append(f"{path}: {attr}={value!r} is not true/false")
        elif attr == "method" and value not in ("GET", "POST"):
            problems.append(f"{path}: method={value!r}")
        elif attr == "finishOnKey" and not re.fullmatch(r"[0-9#*]?", value):
            problems.append(f"{path}: finishOnKey={value!r}")
        elif attr == "input" and not set(value.split()) <= {"dtmf", "speech"}:
            problems.append(f"{path}: input={value!r}")
        elif attr in URL_ATTRS and url_ok is not None and not url_ok(value, el.get("method", "POST")):
            problems.append(f"{path}: {attr}={value!r} is not one of our webhooks")
    if el.tag == "Say":
        _check_say(el, path, voices, problems)
    if el.tag == "Redirect" and url_ok is not None and not url_ok((el.text or "").strip(), el.get("method", "POST")):
        problems.append(f"{path}: Redirect to {el.text!r} is not one of our webhooks")
    if el.tag == "Play" and not _is_media_url((el.text or "").strip()):
        problems.append(f"{path}: Play of {el.text!r} is not an http(s) or /audio URL")
    if el.tag in ("Number",) and not re.fullmatch(r"\+1\d{10}", (el.text or "").strip()):
        problems.append(f"{path}: Number {el.text!r} is not an E.164 US number")
    if el.tag == "Gather" and "speech" in el.get("input", "") and el.get("language") not in voices.pairs:
        problems.append(f"{path}: speech Gather in language {el.get('language')!r}")
    for child in el:
        sub = spec.children.get(child.tag)
        if sub is None:
            problems.append(f"{path}: <{child.tag}> may not be inside <{el.tag}> (twilio's "
                            f"{spec.cls.__name__} cannot nest it)")
            continue
        _walk(child, sub, f"{path}/{child.tag}", voices, url_ok, problems)


def _check_say(el: ET.Element, path: str, voices: Voices, problems: list[str]) -> None:
    text = " ".join("".join(el.itertext()).split())     # SSML inside (<prosody>) holds the words
    lang, voice = el.get("language"), el.get("voice")
    if not text:
        problems.append(f"{path}: empty <Say>")
    if lang not in voices.pairs:
        problems.append(f"{path}: <Say> language {lang!r} is not a configured one ({sorted(voices.pairs)})")
    elif voice != voices.pairs[lang]:
        problems.append(f"{path}: <Say> in {lang} with voice {voice!r}, not {voices.pairs[lang]!r}")
    spanish, english = SPANISH.search(text), ENGLISH.search(text)
    if lang and lang.startswith("en") and spanish and not english:
        problems.append(f"{path}: Spanish text in an English voice: {text[:80]!r}")
    if lang and lang.startswith("es") and english and not spanish:
        problems.append(f"{path}: English text in a Spanish voice: {text[:80]!r}")
    if lang and lang.startswith("en") and re.search(r"\boprima\b", text, re.I):
        problems.append(f"{path}: 'oprima' said in {lang}: {text[:80]!r}")
    if lang and lang.startswith("es") and re.search(r"\bpress\b", text, re.I):
        problems.append(f"{path}: 'press' said in {lang}: {text[:80]!r}")
    if "{" in text or "}" in text or "None" in text.split():
        problems.append(f"{path}: a placeholder was not filled in: {text[:80]!r}")


def _is_media_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) or url.startswith("/audio/")


def url_checker(app):
    """`url_ok` for check(): a relative or own-host URL that a POST route of the app answers."""
    adapter = app.url_map.bind("localhost")

    def ok(url: str, method: str) -> bool:
        parts = urlsplit(url)
        if parts.netloc and parts.netloc not in ("localhost", app.config.get("SERVER_NAME") or "localhost"):
            base = app.config.get("PUBLIC_BASE_URL") or ""
            if not base or not url.startswith(base):
                return False
        try:
            adapter.match(parts.path, method=method)
        except Exception:
            return False
        return True
    return ok
