"""A broken call tree stops start-up with a message naming the file and the node."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ivr.app import create_app
from ivr.callflow import flow
from ivr.callflow.flow import FlowError
from ivr.callflow.prompts import PromptError
from ivr.domain.directory import DirectoryError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path, redis_client):
    """A copy of config/ and prompts/ to break, and a function that starts the app on it."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")

    def start():
        return create_app({"IVR_ENV": "test", "CONFIG_DIR": tmp_path / "config",
                           "PROMPTS_DIR": tmp_path / "prompts", "SDU_BASE_URL": "http://127.0.0.1:9"},
                          redis_client=redis_client)
    return tmp_path, start


def edit(path: Path, fn) -> None:
    data = flow.read(path) if "flows" in path.parts else yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def refused(start, error=FlowError) -> str:
    """The message start-up stops with."""
    with pytest.raises(error) as err:
        start()
    return str(err.value)


def test_the_shipped_tree_loads(tree):
    _, start = tree
    assert start().extensions["ivr"].flows.lines.keys() >= {"callcenter", "payments", "staff"}


def test_a_goto_to_a_missing_node(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["cc_pay_menu"]["options"][1].update(goto="faq_nowhere"))
    message = refused(start)
    assert f"{flow}: node 'cc_pay_menu': option 2 goes to 'faq_nowhere', which is not a node" in message


def test_a_prompt_missing_in_one_language(tree):
    root, start = tree
    path = root / "prompts/es/faq.yaml"
    edit(path, lambda d: d.pop("faq.ends"))
    message = refused(start, PromptError)
    assert "prompt 'faq.ends' is missing in Spanish" in message
    assert str(root / "prompts/es") in message


def test_a_node_whose_prompt_exists_nowhere(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["faq_ends"].update(prompt="faq.when_it_ends"))
    message = refused(start)
    assert f"{flow}: node 'faq_ends': prompt 'faq.when_it_ends' is missing in en" in message
    assert "is missing in es" in message


def test_two_options_on_one_key(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["cc_enforce_menu"]["options"][2].update(key=1))
    message = refused(start)
    assert f"{flow}: node 'cc_enforce_menu': options 1 and 3 both use key 1" in message


def test_more_than_five_options(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["cc_main"]["options"].append(
        {"key": 6, "prompt": "cc.main.opt.office", "goto": "cc_office_menu"}))
    message = refused(start)
    assert "node 'cc_main': 6 options; a menu has at most 5" in message


def test_reserved_keys_cannot_be_options(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["cc_main"]["options"][0].update(key=9))
    message = refused(start)
    assert "node 'cc_main': option 1 key '9' must be one digit 1-8" in message


def test_a_fourth_menu_level_is_refused(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"

    def deepen(d):
        # main -> enforcement -> medical -> (new) deeper menu
        d["nodes"]["cc_deeper"] = {"type": "menu", "prompt": "cc.medical.intro",
                                   "options": [{"key": 1, "prompt": "cc.medical.opt.order", "goto": "faq_medical"}]}
        d["nodes"]["cc_medical_menu"]["options"][0]["goto"] = "cc_deeper"
    edit(flow, deepen)
    message = refused(start)
    assert f"{flow}: node 'cc_deeper' is 4 menus deep; at most 3 are allowed" in message


def test_an_unknown_handler_and_an_unknown_office(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"

    def breakit(d):
        d["nodes"]["cc_town"]["handler"] = "office_by_star_sign"
        d["nodes"]["xfer_putnam"]["office"] = "pluto"
    edit(flow, breakit)
    message = refused(start)
    assert "node 'cc_town': handler 'office_by_star_sign' is not a registered handler" in message
    assert "node 'xfer_putnam': unknown office 'pluto'" in message


def test_an_office_phone_number_that_is_not_one(tree):
    root, start = tree
    path = root / "config/offices.yaml"
    edit(path, lambda d: d["offices"]["putnam"].update(phone="860-963-258"))
    message = refused(start, DirectoryError)
    assert f"{path}: office 'putnam': '860-963-258' is not a valid phone number" in message


def test_every_office_number_is_stored_in_e164(app):
    for office in app.extensions["ivr"].directory.offices.values():
        assert office.phone.startswith("+1") and len(office.phone) == 12


def test_every_connecticut_town_routes_to_a_known_office(app):
    directory = app.extensions["ivr"].directory
    assert len(directory.towns) == 169
    for town in directory.towns:
        assert directory.route(town).office.id in directory.offices


def test_the_readme_diagrams_match_the_configuration(capsys):
    from ivr.cli.main import main

    assert main(["tree", "--check", str(ROOT / "README.md")]) == 0, capsys.readouterr().out


def test_ivr_tree_prints_an_outline_with_keys_and_destinations(capsys):
    from ivr.cli.main import main

    assert main(["tree", "--line", "callcenter"]) == 0
    out = capsys.readouterr().out
    assert "cc_office_menu  menu: \"S E S offices.\"" in out
    assert "transfer: the Hartford main office (+18605668723)" in out
    assert "handover: the payments line" in out



def test_an_optional_question_without_somewhere_to_go(tree):
    root, start = tree
    flow = root / "config/flows/inmate.yaml"
    edit(flow, lambda d: d["nodes"]["inm_case"].pop("skip"))
    message = refused(start)
    assert f"{flow}: node 'inm_case': an optional question needs `skip`" in message


def test_a_person_that_is_not_a_node(tree):
    root, start = tree
    flow = root / "config/flows/inmate.yaml"
    edit(flow, lambda d: d["nodes"]["inm_who"].update(person="inm_nobody"))
    message = refused(start)
    assert f"{flow}: node 'inm_who': `person` (key 0) goes to 'inm_nobody', which is not a node" in message


def test_ivr_tree_draws_every_way_out_a_node_names(tree):
    # A `skip` (an unanswered message goes on to the goodbye) is drawn too, beside its handler's events.
    from ivr.cli.tree import markdown, outline

    root, start = tree
    rt = start().extensions["ivr"]
    lines = outline(rt.flows, "callcenter", rt.prompts, rt.directory)
    at = next(i for i, text in enumerate(lines) if "inm_message  record" in text)
    assert lines[at + 1].strip().startswith("(recorded) inm_finish  action"), lines[at:at + 2]
    assert "  inm_message --> inm_finish" in markdown(rt.flows, rt.prompts, rt.directory).splitlines()


# --- events: every way out of a handler's node is named in the flow file -------------------------------

def test_an_event_the_node_does_not_map_is_refused(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["cc_town_route"]["on"].pop("no_town"))
    assert (f"{flow}: node 'cc_town_route': `on` does not say where event 'no_town' of handler 'route_town' goes"
            in refused(start))


def test_an_event_mapped_to_no_node_is_refused(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["cc_town_route"]["on"].update(routed="xfer_nowhere"))
    assert f"{flow}: node 'cc_town_route': event 'routed' goes to 'xfer_nowhere', which is not a node" in refused(start)


def test_an_event_the_handler_never_names_is_refused(tree):
    root, start = tree
    flow = root / "config/flows/callcenter.yaml"
    edit(flow, lambda d: d["nodes"]["cc_town"]["on"].update(lost="cc_main"))
    assert (f"{flow}: node 'cc_town': `on` maps 'lost', which handler 'office_by_town' never names (it names found)"
            in refused(start))


def test_an_unknown_field_in_a_node_is_refused(tree):
    """A misspelt field (`skp:`) used to load silently, and the call then went nowhere the author meant."""
    root, start = tree
    flow_file = root / "config/flows/callcenter.yaml"
    edit(flow_file, lambda d: d["nodes"]["cc_town"].update(skp="cc_office_menu"))
    assert f"{flow_file}: node 'cc_town': unknown field `skp` for a node of type collect" in refused(start)


def test_every_field_of_every_node_type_is_described_in_the_guide():
    guide = flow.guide()
    for name, kind in flow.NODE_TYPES.items():
        assert f"  {name} " in guide
        for field in kind.fields:
            assert field in flow.FIELDS, f"{name}.{field} has no description"


def test_goes_is_gone_every_route_is_an_event():
    """`goes:` was a hand-written list nothing checked; a node that still has one is refused."""
    assert "goes" not in flow.FIELDS
    assert all("goes" not in kind.fields for kind in flow.NODE_TYPES.values())


def test_every_handler_declares_its_events():
    from ivr.lines import load_all

    for name, fn in load_all().items():
        assert isinstance(getattr(fn, "events", None), frozenset), f"handler {name} declares no events"
