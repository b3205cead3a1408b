"""What callers hear on 1-800-228-KIDS (issue 15), end to end through the simulated phone, in English
and Spanish: facts as the seeds give them, each within three menus; where health insurance, child
care, visits and finding a parent are; the offices' street addresses; silence after an answer; and
Spanish in one voice."""

from __future__ import annotations

import re

import pytest

from ivr.callflow.speech import say_phone
from tests.test_callcenter import lang_prefix, paths_to

LANGS = ["en", "es"]
AGENTS = "+18605696233"
SATURDAY_NIGHT = "2026-11-28 23:30"


def one_space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()   # the hours' narrow no-break spaces ("8:30\u202fAM")


def menus_on_the_way(app, keys: list[str]) -> int:
    """How many menus a caller goes through, from the main menu, pressing `keys`."""
    flows = app.extensions["ivr"].flows
    nid, menus = flows.lines["callcenter"].home, 0
    for key in keys:
        node = flows.nodes[nid]
        menus += node.type == "menu"
        nid = next(o["goto"] for o in node.options if str(o["key"]) == key)
    return menus + (flows.nodes[nid].type == "menu")


# Seed facts (/work/shared/seeds): the keys from the main menu, and words the caller hears, in each
# language; and words the seeds do not support, which no caller hears there.
FACTS = {
    "a case is opened at a local DSS office, with its fees": (
        ["3", "1"],
        {"en": ["Department of Social Services child support office for the area where you live",
                "no fee if you get public assistance", "small fee, based on your income"],
         "es": ["oficina de manutención del Departamento de Servicios Sociales de la zona donde vive",
                "No hay cuota si recibe asistencia pública", "cuota pequeña, según sus ingresos"]}, []),
    "the fees are higher at court": (
        ["3", "1", "1"],
        {"en": ["directly at the Superior Court. The fees there are higher"],
         "es": ["directamente en la Corte Superior. Allí las cuotas son más altas"]}, []),
    "SES files for contempt, and both parents get written notice": (
        ["3", "2", "1"],
        {"en": ["S E S can ask the court to find the parent in contempt",
                "Both parents get a written notice of the court date"],
         "es": ["S E S puede pedir a la corte que declare en desacato",
                "Los dos padres reciben un aviso por escrito"]}, []),
    "jail lasts as long as paying the purge takes": (
        ["3", "2", "1", "1"],
        {"en": ["How long the jail lasts depends on how long it takes to pay it"],
         "es": ["El tiempo en la cárcel depende de cuánto tarde en pagar esa suma"]},
        ["however long", "tarde lo que tarde"]),
    "licences: driver's, professional and recreational": (
        ["3", "2", "2", "1"],
        {"en": ["suspend licenses: driver's, professional, and recreational licenses"],
         "es": ["suspender licencias: la de manejar, las profesionales y las recreativas"]},
        ["hunting", "fishing", "caza", "pesca"]),
    "a case filed at court is enforced by that Superior Court": (
        ["3", "2", "3"],
        {"en": ["Then call the Superior Court where it was filed. That court helps with enforcement"],
         "es": ["Entonces llame a la Corte Superior donde se abrió. Esa corte le ayuda a hacer cumplir"]}, []),
    "a more detailed accounting: SES": (
        ["1", "1"],
        {"en": ["For a more detailed accounting of your payments, press 0 to talk with S E S."],
         "es": ["Para un detalle más completo de sus pagos, oprima 0 y hable con S E S."]}, []),
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("fact", list(FACTS))
def test_seed_facts_are_heard_within_three_menus(app, call, fact, lang):
    keys, heard, never = FACTS[fact]
    assert menus_on_the_way(app, keys) <= 3
    c = call("callcenter", lang_prefix(lang) + keys)
    said = c.said
    for words in heard[lang]:
        assert words in said, (fact, words)
    for words in never:
        assert words not in said.lower(), (fact, words)


@pytest.mark.parametrize("lang", LANGS)
def test_after_the_detailed_accounting_0_reaches_ses(call, lang):
    c = call("callcenter", lang_prefix(lang) + ["1", "1", "0"])
    assert c.dialed == [AGENTS]


@pytest.mark.parametrize("lang", LANGS)
def test_no_fact_the_seeds_do_not_give_anywhere_in_the_answers(prompts, lang):
    answers = " ".join(t for pid, t in prompts.texts[lang].items() if pid.startswith("faq.")).lower()
    for words in ("however long", "hunting", "fishing", "tarde lo que tarde", "caza", "pesca"):
        assert words not in answers


# Health insurance, child care, visits and finding a parent: named in the main menu's choice 3 and
# one menu down from it, not under "when support is not paid".
WHERE = {"locate": (["3", "3"], "faq.locate"), "visits": (["3", "5"], "faq.visitation"),
         "health insurance": (["3", "4", "1"], "faq.medical"), "child care": (["3", "4", "3"], "faq.child_care")}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("topic", list(WHERE))
def test_health_care_child_care_visits_and_finding_a_parent_are_where_a_parent_looks(app, call, prompts,
                                                                                      topic, lang):
    keys, pid = WHERE[topic]
    c = call("callcenter", lang_prefix(lang) + keys)
    assert prompts.text(pid, lang) in c.said
    main_menu = c.said_after(1)
    choice_3 = next(s for s in re.split(r"(?<=\.) ", main_menu) if s.endswith(("press 3.", "oprima 3.")))
    named = {"en": {"locate": "get or collect support", "visits": "visits", "health insurance": "health insurance",
                    "child care": "child care"},
             "es": {"locate": "obtener manutención", "visits": "visitas", "health insurance": "seguro médico",
                    "child care": "cuidado de niños"}}
    assert named[lang][topic] in choice_3
    # Not under "when support is not paid": that menu leads to none of them.
    flows = app.extensions["ivr"].flows
    not_paid = next(o["goto"] for o in flows.nodes["cc_support_menu"].options
                    if o["prompt"] == "cc.support.opt.not_paid")
    below = {o["goto"] for o in flows.nodes[not_paid].options}
    assert not below & {"faq_locate", "faq_visitation", "cc_medical_menu", "faq_medical", "faq_child_care"}


REGIONS = {"2": ["hartford", "hartford-court", "new-britain", "rockville"],
           "3": ["new-haven", "waterbury", "middletown", "central-processing"],
           "4": ["bridgeport", "stamford", "danbury"], "5": ["norwich", "putnam", "administration"]}


@pytest.mark.parametrize("lang", LANGS)
def test_every_office_s_street_address_is_heard_in_its_region(app, call, prompts, lang):
    offices = app.extensions["ivr"].directory.offices
    heard = set()
    for region, ids in REGIONS.items():
        last = str(len(ids) + 1)        # the region's last choice: the addresses
        keys = ["5", region, last]
        assert menus_on_the_way(app, keys) <= 3
        c = call("callcenter", lang_prefix(lang) + keys)
        said = c.said_after(len(keys) + 1)
        for oid in ids:
            office = offices[oid]
            street = office.address.split(",")[0]          # "172 Golden Hill Street", from the seed
            assert prompts.spoken("office.address", lang, office=office.name[lang],
                                  address=office.spoken_address(lang)).text in said
            assert street in said
            heard.add(oid)
    assert heard == set(offices)


@pytest.mark.parametrize("lang", LANGS)
def test_the_ses_administration_s_mailing_address_and_fax(call, lang):
    c = call("callcenter", lang_prefix(lang) + ["5", "5", "4"])
    said = c.said
    assert "287 Main Street" in said and "East Hartford, Connecticut, 0 6 1 1 8" in said
    assert {"en": "third floor", "es": "tercer piso"}[lang] in said
    assert say_phone("+18605696557", lang) in said      # (860) 569-6557, the brochure's fax


@pytest.mark.parametrize("when", ["2026-11-24 10:00", SATURDAY_NIGHT])
@pytest.mark.parametrize("lang", LANGS)
def test_silence_after_an_answer_offers_the_choices_once_more_then_a_kind_goodbye(app, call, prompts,
                                                                                   clock, lang, when):
    clock.set(when)
    keys = lang_prefix(lang) + ["2", "5"]               # when support ends: an answer with no "more"
    c = call("callcenter", keys + ["-", "-"])
    answer = prompts.text("faq.ends", lang)
    assert answer in c.said
    again = c.said_after(len(keys) + 1)
    assert again.startswith(prompts.text("answer.quiet", lang))
    assert prompts.text("menu.globals.answer", lang) in again
    hours = app.extensions["ivr"].services.hours.describe(lang)
    goodbye = prompts.text("answer.goodbye", lang, number=say_phone("+18002285437", lang), hours=hours)
    assert one_space(c.said_after(len(keys) + 2)) == one_space(goodbye)
    for pid in ("menu.no_input", "collect.no_input", "menu.giveup_open"):
        assert prompts.text(pid, lang) not in c.said
    assert prompts.text("menu.giveup_closed", lang, number=say_phone("+18002285437", lang),
                        hours=hours) not in c.said
    assert c.hung_up and not c.dialed


@pytest.mark.parametrize("lang", LANGS)
def test_silence_after_an_answer_then_a_key_still_works(call, prompts, lang):
    c = call("callcenter", lang_prefix(lang) + ["3", "2", "1", "-", "1"])
    assert prompts.text("faq.not_paid.more", lang) in c.said and not c.hung_up


# One Spanish voice: the same words for the same things, plain words, one apology, few English names.
NOT_SPANISH_OF_THIS_LINE = [
    r"\bretenid[oa]s?\b", r"\bpueblos?\b", r"cantidad de purga", r"pago global", r"\botro padre\b(?! o madre)",
    r"Lo sentimos", r"Disculpe", r"Enforcement Bureau", r"Correctional",
]


def test_spanish_in_every_call_center_menu_and_answer_is_one_voice(app, call, prompts):
    heard = []
    for kind in ("menu", "answer"):
        for keys, node in paths_to(app, kind):
            if node.id.startswith("inm_"):
                continue    # the prison path is the inmate part of issue 15
            heard.append(call("callcenter", ["2"] + keys).said_after(len(keys) + 1))
    town = call("callcenter", ["2", "5", "1", "say Tombuctú", "say Bridgeport"]).said_after(3)
    assert "ciudad" in town
    said = " ".join(heard + [town])
    found = {p for p in NOT_SPANISH_OF_THIS_LINE if re.search(p, said)}
    assert not found, found
    assert "Perdone" in town                   # the one apology, where one is needed
    assert said.count("otro padre o madre") >= 3
