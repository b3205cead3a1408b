"""TwiML documents as text, written straight from twilio's `VoiceResponse` objects.

The same document `str(response)` gives, character for character (tests/test_twiml_valid.py checks it
over generated trees): twilio's `TwiML.xml()` rules (attributes sorted, booleans lower-case, a dict
value as JSON, strings nested as text) and ElementTree's escaping and empty elements. twilio builds an
ElementTree and serialises it through a byte stream; writing the text directly costs a third as much,
and every webhook answers with a document (bench/RESULTS.md).
"""

from __future__ import annotations

import json

from twilio.twiml import TwiML

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def render(response: TwiML) -> str:
    """The TwiML document, declaration included."""
    out = [XML_DECLARATION]
    _write(response, out)
    return "".join(out)


def _write(node: TwiML, out: list[str]) -> None:
    out.append("<" + node.name)
    attrs = node.attrs
    for name in sorted(attrs):
        value = attrs[name]
        value = str(value).lower() if isinstance(value, bool) else str(value)
        out.append(f' {name}="{_escape(value, _ATTRIBUTE)}"')
    # As TwiML.xml(): a string among the children is the text before the first child element, or the
    # tail of the element before it; a later string replaces an earlier one in the same place.
    text = node.value or None
    if isinstance(text, dict):
        text = json.dumps(text)
    children: list[list] = []
    for child in node.verbs:
        if not isinstance(child, str):
            children.append([child, None])
        elif children:
            children[-1][1] = child
        else:
            text = child
    if not text and not children:
        out.append(" />")
        return
    out.append(">")
    if text:
        out.append(_escape(text, _TEXT))
    for child, tail in children:
        _write(child, out)
        if tail:
            out.append(_escape(tail, _TEXT))
    out.append(f"</{node.name}>")


# ElementTree's escaping, in its order ("&" first): character data, then attribute values.
_TEXT = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_ATTRIBUTE = (*_TEXT, ('"', "&quot;"), ("\r", "&#13;"), ("\n", "&#10;"), ("\t", "&#09;"))


def _escape(text: str, table: tuple[tuple[str, str], ...]) -> str:
    for char, entity in table:
        if char in text:   # most strings have none: skip the copy
            text = text.replace(char, entity)
    return text
