"""How long callers listen (issue 15): every menu's choices in 20 s or less, every answer's first part in
30 s or less, 0 said early in the main menu, short sentences and plain words, in every language.

Measured as `ivr tree --timing` measures (ivr/callflow/timing.py: 2.5 words a second, numbers read as
the language reads them), on what the simulated phone hears, and on the whole tree from config/.
"""

from __future__ import annotations

import re

import pytest

from ivr.callflow import timing
from ivr.callflow.speech import say_phone, say_source
from ivr.cli.main import main as ivr
from tests.test_callcenter import lang_prefix, paths_to

LANGS = ["en", "es"]
PRESS = {"en": re.compile(r", press ([1-8])\.$"), "es": re.compile(r", oprima ([1-8])\.$")}


def choices(text: str, lang: str) -> list[str]:
    """The "<option>, press N." sentences of what a menu said."""
    return [s for s in timing.sentences(text) if PRESS[lang].search(s)]


@pytest.mark.parametrize("lang", LANGS)
def test_every_call_center_menu_says_its_choices_in_20_seconds_or_less(app, call, prompts, lang):
    language = prompts.language(lang)
    menus = paths_to(app, "menu")
    assert len(menus) >= 12
    slow = []
    for keys, node in menus:
        c = call("callcenter", lang_prefix(lang) + keys)
        said = choices(c.said_after(len(keys) + 1), lang)
        assert len(said) == len(node.options), (node.id, said)
        seconds = timing.seconds(" ".join(said), language)
        if seconds > timing.MENU_OPTIONS_MAX_S:
            slow.append(f"{node.id} ({lang}): {seconds:.1f} s")
    assert not slow, slow


@pytest.mark.parametrize("lang", LANGS)
def test_the_main_menu_says_first_that_0_reaches_a_person(call, prompts, lang):
    c = call("callcenter", lang_prefix(lang))
    menu = timing.sentences(c.said_after(1))
    zero = next(i for i, s in enumerate(menu) if re.search(r"\b(press|oprimir?) 0\b", s))
    before = timing.seconds(" ".join(menu[:zero + 1]), prompts.language(lang))
    assert zero <= 1 and before <= 6, (menu[:zero + 1], before)


@pytest.mark.parametrize("lang", LANGS)
def test_every_answer_s_first_part_takes_30_seconds_or_less(app, call, prompts, lang):
    """Heard through the phone: what an answer says before its choices; what does not fit is behind
    "For more, press 1", which leads to the rest."""
    language = prompts.language(lang)
    more = prompts.text("menu.option", lang, option=prompts.text("cc.opt.more", lang), key=1)
    long = []
    for keys, node in paths_to(app, "answer"):
        if not node.get("prompt"):
            continue    # the offices' addresses (config/offices.yaml): tests/test_callers_hear.py
        c = call("callcenter", lang_prefix(lang) + keys)
        first = prompts.text(node.get("prompt"), lang)
        assert c.said_after(len(keys) + 1).startswith(first)
        if timing.seconds(first, language) > timing.ANSWER_FIRST_PART_MAX_S:
            long.append(f"{node.id} ({lang}): {timing.seconds(first, language):.1f} s")
        for opt in node.options:
            if opt.get("prompt") == "cc.opt.more":
                assert str(opt["key"]) == "1" and more in c.said_after(len(keys) + 1)
                rest = call("callcenter", lang_prefix(lang) + keys + ["1"])
                target = app.extensions["ivr"].flows.nodes[opt["goto"]]
                assert rest.said_after(len(keys) + 2).startswith(prompts.text(target.get("prompt"), lang))
    assert not long, long


def test_every_menu_and_answer_of_every_line_is_within_the_targets(app, prompts):
    """The whole tree from config/ (what `ivr tree --timing` prints), every line, every language."""
    rt = app.extensions["ivr"]
    names = {oid: office.name for oid, office in rt.directory.offices.items()}
    over = set()
    for t in timing.timings(rt.flows, prompts, names):
        if t.kind == "menu" and t.options_s > timing.MENU_OPTIONS_MAX_S:
            over.add(f"{t.node} ({t.lang}): choices {t.options_s:.1f} s")
        if t.kind == "answer" and t.intro_s > timing.ANSWER_FIRST_PART_MAX_S:
            over.add(t.node)
    assert not over, over


def first_part(said: str, lang: str) -> str:
    """What an answer said before its first "<option>, press N." (or the keys every answer has)."""
    out = []
    for s in timing.sentences(said):
        if PRESS[lang].search(s) or re.search(r"\b(press|oprima) (star|asterisco)\.$", s):
            break
        out.append(s)
    return " ".join(out)


# The prison path's facts, as the parent and for the parent: (keys from the main menu, the facts' prompts).
PRISON = {"parent": (["4", "1"], ["inm.facts", "inm.facts.more"]),
          "for": (["4", "2"], ["inm.facts.for", "inm.facts.for.more"])}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("who", sorted(PRISON))
def test_the_prison_path_says_its_facts_in_30_second_parts_and_1_starts_the_request_from_each(
        call, prompts, lang, who):
    """Heard through the phone (the facts' node runs code too): what the court looks at is behind 2,
    every fact of the path is still said, and 1 asks for the inmate number from either part."""
    language = prompts.language(lang)
    keys, pids = PRISON[who]
    c = call("callcenter", lang_prefix(lang) + keys)
    facts = first_part(c.said_after(len(keys) + 1), lang)
    assert facts == prompts.text(pids[0], lang).strip()
    assert timing.seconds(facts, language) <= timing.ANSWER_FIRST_PART_MAX_S, facts
    more = call("callcenter", lang_prefix(lang) + keys + ["2"])
    rest = first_part(more.said_after(len(keys) + 2), lang)
    assert rest == prompts.text(pids[1], lang).strip()
    assert timing.seconds(rest, language) <= timing.ANSWER_FIRST_PART_MAX_S, rest
    ask = prompts.text("inm.number.ask", lang)
    for start in (keys + ["1"], keys + ["2", "1"]):
        c = call("callcenter", lang_prefix(lang) + start)
        assert c.said_after(len(start) + 1).startswith(ask), start


# Payers of the stub SDU (ivr/sdu/fixtures.json): paid from unemployment, from workers' compensation,
# no withholding, withholding working.
PAYERS = {"unemployment": ("456789123", "4826"), "workers_comp": ("567891234", "5791"),
          "no_withholding": ("012345678", "0417"), "withholding": ("123456789", "1234")}
HOW_TO_PAY = ["1", "1"]                 # after the payment menu's 4 ("how to pay"): "for more" twice


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("payer", sorted(PAYERS))
def test_how_to_pay_says_each_part_in_30_seconds_or_less_and_every_fact_in_all(call, prompts, lang, payer):
    """The payment line's "how to pay" (said by code, with the SDU's answer): a payer paid from benefits
    heard 71 seconds (Spanish 77) before their choices. Now the ways and what the SDU says of their
    withholding come first; mail and credit, then how withholding works, behind "for more, press 1"."""
    language = prompts.language(lang)
    case, pin = PAYERS[payer]
    sign_in = [lang_prefix(lang)[0], case + "#", "1", pin + "#", "4"]
    c = call("payments", sign_in + HOW_TO_PAY)
    more = prompts.text("menu.option", lang, option=prompts.text("cc.opt.more", lang), key=1)
    parts = []
    for n in range(len(HOW_TO_PAY) + 1):
        said = c.said_at(len(sign_in) + n)          # this part only: the next one's offer does not count
        part = first_part(said, lang)
        assert part and timing.seconds(part, language) <= timing.ANSWER_FIRST_PART_MAX_S, \
            f"{payer} ({lang}), part {n + 1}: {timing.seconds(part, language):.1f} s: {part}"
        # Each part but the last offers the rest.
        assert (more in said.split(part, 1)[1]) == (n < 2), (n, said)
        parts.append(part)
    website = "C T dot smart child support dot com" if lang == "en" else "C T punto smart child support punto com"
    number = say_phone("+18002285437", lang)
    facts = [prompts.text("pay.how.intro", lang, website=website),
             prompts.text("pay.how.mail_unknown.call", lang, website=website, number=number),
             prompts.text("pay.how.credit", lang), prompts.text("pay.how.withholding", lang)]
    if payer in ("unemployment", "workers_comp"):
        source = "unemployment_compensation" if payer == "unemployment" else "workers_compensation"
        theirs = prompts.text("pay.how.iw_benefits", lang, source=say_source(source, language))
    else:
        theirs = prompts.text("pay.how.iw_active" if payer == "withholding" else "pay.how.iw_inactive", lang)
    heard = " ".join(parts)
    for fact in [*facts, theirs]:
        assert fact.strip() in heard, fact
    # What the SDU says of this payer comes in the first part; 2 there is how withholding works at once.
    assert parts[0].startswith(prompts.text("pay.how.intro", lang, website=website))
    assert theirs.strip() in parts[0]
    withholding = call("payments", sign_in + ["2"])
    assert first_part(withholding.said_after(len(sign_in) + 1), lang) == parts[2]


def call_center_texts(prompts, lang: str) -> dict[str, str]:
    """The call center's own words: its menus, answers and offices, and what an answer says after
    (the town lookup's are the dead-ends part of issue 15)."""
    return {pid: t for pid, t in prompts.texts[lang].items()
            if pid.startswith(("cc.", "faq.", "office.", "answer."))}


@pytest.mark.parametrize("lang", LANGS)
def test_every_call_center_sentence_is_under_25_words(prompts, lang):
    language = prompts.language(lang)
    long = [(pid, s) for pid, text in call_center_texts(prompts, lang).items()
            for s in timing.sentences(text) if len(timing.spoken_words(s, language)) > timing.SENTENCE_MAX_WORDS]
    assert not long, long


# Each term, and words that say what it means, in the same answer (a caller may hear only that one).
JARGON = {
    "en": {"S D U": "state office", "Disbursement": "state office",
           "family support magistrate": "decides child support cases", "purge amount": "a set sum",
           "civil awards": "from a lawsuit", "arrearage": "past due"},
    "es": {"S D U": "oficina del estado", "Desembolsos": "oficina del estado",
           "magistrado de manutención familiar": "decide casos de manutención",
           "demanda civil": "dinero que una persona recibe", "atrasos": "ya vencidos"},
}


@pytest.mark.parametrize("lang", LANGS)
def test_jargon_is_said_in_plain_words_where_it_is_used(prompts, lang):
    unexplained = [(pid, term) for pid, text in call_center_texts(prompts, lang).items()
                   for term, plain in JARGON[lang].items()
                   if term.lower() in text.lower() and plain.lower() not in text.lower()]
    assert not unexplained, unexplained
    # Spanish says it without the legal terms the English needs to name.
    assert "purga" not in " ".join(call_center_texts(prompts, "es").values())


def test_ivr_tree_timing_prints_every_menu_and_answer_in_every_language(capsys):
    assert ivr(["tree", "--timing", "--line", "callcenter"]) == 0
    out = capsys.readouterr().out
    assert "| options en | whole en | answer en | options es | whole es | answer es |" in out
    row = next(line for line in out.splitlines() if line.startswith("| cc_main |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) <= 20 and float(cells[5]) <= 20
    assert "| faq_not_paid | answer |" in out and "| faq_not_paid_more | answer |" in out


def test_numbers_are_counted_as_the_language_says_them(prompts):
    en, es = prompts.language("en"), prompts.language("es")
    assert timing.spoken_words("costs 100 dollars, form 2 18", en) == \
        ["costs", "one", "hundred", "dollars", "form", "two", "eighteen"]
    assert timing.spoken_words("cuesta 100 dólares", es) == ["cuesta", "cien", "dólares"]
    assert timing.seconds("1, 8 8 8", en) == 4 / timing.WORDS_PER_SECOND
