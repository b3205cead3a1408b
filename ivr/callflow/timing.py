"""How long each menu and answer takes to say: `ivr tree --timing`, and the targets tests/test_timing.py holds.

A voice says about 2.5 words a second. Numbers count as the words the language reads them with
(num2words in the language's locale: "18" is "eighteen", "100" is "one hundred" / "cien"); a digit
string written with spaces ("1, 8 8 8") is read digit by digit, one word each; spelled letters
("S E S") are a word each. A `{field}` counts as two words (a town's or an office's name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from num2words import num2words

from ivr.callflow.flow import FlowSet, Node, as_list
from ivr.callflow.language import Language
from ivr.callflow.prompts import Prompts

WORDS_PER_SECOND = 2.5
FIELD_WORDS = 2
# The targets (issue 15): a menu's options, and an answer's first part (the rest is behind "for more").
MENU_OPTIONS_MAX_S = 20.0
ANSWER_FIRST_PART_MAX_S = 30.0
SENTENCE_MAX_WORDS = 24          # "sentences under 25 words"

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def spoken_words(text: str, language: Language) -> list[str]:
    """The words a voice says for `text`, numbers read in the language."""
    text = re.sub(r"\{\w+\}", " field " * FIELD_WORDS, text)
    out: list[str] = []
    for token in text.split():
        core = token.strip(".,;:!?¿¡()\"'")
        if _NUMBER.fullmatch(core):
            value = core.replace(",", "")
            number = float(value) if "." in value else int(value)
            out += re.sub(r"[-,]", " ", num2words(number, lang=language.locale)).split()
        elif core:
            out.append(core)
    return out


def seconds(text: str, language: Language) -> float:
    return len(spoken_words(text, language)) / WORDS_PER_SECOND


def sentences(text: str) -> list[str]:
    """`text` cut at each sentence's end (a period, question or exclamation mark before a space)."""
    return [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if s.strip()]


@dataclass(frozen=True)
class Timing:
    node: str
    kind: str               # "menu" or "answer"
    lang: str
    intro_s: float          # the node's own prompt(s): a menu's title, an answer's first part
    options_s: float        # "For ..., press 1." for each option
    whole_s: float          # intro, options and the keys every menu has (star, 9, 0)
    by_code: bool           # a handler says more than its prompts (figures from the SDU)


def option_text(prompts: Prompts, node: Node, lang: str, directory_names: dict[str, dict[str, str]]) -> list[str]:
    """What each option of `node` says ("For your payments, press 1."), as the engine says it."""
    out = []
    for opt in node.options:
        if "office" in opt:
            phrase = prompts.text("menu.opt.office", lang, office=directory_names[opt["office"]][lang])
        else:
            phrase = prompts.text(opt["prompt"], lang)
        out.append(prompts.text("menu.option", lang, option=phrase, key=opt["key"]))
    return out


def globals_prompt(flows: FlowSet, node: Node) -> str:
    line = flows.lines[flows.node_line[node.id]]
    if node.type == "answer":
        return "menu.globals.answer"
    return "menu.globals.home" if node.id == line.home else "menu.globals"


def node_timing(flows: FlowSet, prompts: Prompts, node: Node, lang: str,
                directory_names: dict[str, dict[str, str]]) -> Timing:
    language = prompts.language(lang)
    intro = " ".join(prompts.text(pid, lang) for pid in as_list(node.get("prompt")))
    options = " ".join(option_text(prompts, node, lang, directory_names))
    tail = prompts.text(globals_prompt(flows, node), lang)
    return Timing(node.id, node.type, lang, seconds(intro, language), seconds(options, language),
                  seconds(" ".join((intro, options, tail)), language), bool(node.get("handler")))


def timings(flows: FlowSet, prompts: Prompts, directory_names: dict[str, dict[str, str]],
            line: str | None = None) -> list[Timing]:
    """Every menu and answer of `line` (default: every line), in each language, in file order."""
    out = []
    for nid, node in flows.nodes.items():
        if node.type not in ("menu", "answer") or (line and flows.node_line[nid] != line):
            continue
        for lang in prompts.languages:
            out.append(node_timing(flows, prompts, node, lang, directory_names))
    return out


def table(rows: list[Timing], langs: list[str]) -> list[str]:
    """A Markdown table: one row a node, a column per language for its options, its whole and an
    answer's first part (seconds; `+` where code says more, such as payment figures)."""
    by_node: dict[str, dict[str, Timing]] = {}
    for t in rows:
        by_node.setdefault(t.node, {})[t.lang] = t
    head = ["node", "kind"]
    for lang in langs:
        head += [f"options {lang}", f"whole {lang}", f"answer {lang}"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for nid, per in by_node.items():
        kind = next(iter(per.values())).kind
        cells = [nid, kind]
        for lang in langs:
            t = per[lang]
            plus = "+" if t.by_code else ""
            cells += [f"{t.options_s:.1f}" if t.options_s else "–", f"{t.whole_s:.1f}{plus}",
                      f"{t.intro_s:.1f}{plus}" if kind == "answer" else "–"]
        out.append("| " + " | ".join(cells) + " |")
    return out
