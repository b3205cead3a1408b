"""A language is prompts and config only: a toy third language, added to copies of prompts/ and config/
without a line of Python, is chosen at the greeting and heard for the rest of the call."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ivr.callflow import flow
from ivr.callflow.prompts import PromptError
from ivr.callflow.simphone import Phone
from tests.conftest import LINES
from tests.walk import spoken_ref

ROOT = Path(__file__).resolve().parents[1]
MARK = "Zork"                                 # begins every sentence of the toy language
VOICE = {"voice": "Polly.Zork", "language": "xx-ZK"}


def _dump(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


def toy_language(root: Path, code: str = "xx", locale: str = "de") -> tuple[Path, Path]:
    """Copies of config/ and prompts/ under `root` with a third language `code`: the English texts behind
    a marker, its own key (3), words, digits and hours wording, and German (`locale`) numbers and dates."""
    config, prompts = root / "config", root / "prompts"
    shutil.copytree(ROOT / "config", config)
    shutil.copytree(ROOT / "prompts", prompts)
    (prompts / code).mkdir()
    for path in (prompts / "en").glob("*.yaml"):
        texts = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.name != "language.yaml":
            texts = {pid: f"{MARK} {text}" for pid, text in texts.items()}
        _dump(prompts / code / path.name, texts)
    system = yaml.safe_load((prompts / code / "system.yaml").read_text(encoding="utf-8"))
    system["lang.offer"] = f"{MARK}: for Zorkish, press 3."
    _dump(prompts / code / "system.yaml", system)
    lang = yaml.safe_load((prompts / code / "language.yaml").read_text(encoding="utf-8"))
    lang.update(name="Zorkish", key=3, words=["zorkish"], locale=locale,
                hours=f"{MARK} hours {{first}} to {{last}}, {{open}} to {{close}}")
    lang["global_words"]["*"] = ["zork again"]
    lang["digits"] = [f"zork{n}" for n in range(10)]
    lang["money"].update(dollar=["zollar", "zollars"], cent=["zent", "zents"], minus="zminus ")
    lang["key_names"]["*"] = "zstar"
    lang["digit_count"] = {"one": "{n} zigit", "many": "{n} zigits", "range": "{low} to {high} zigits"}
    _dump(prompts / code / "language.yaml", lang)

    lines = yaml.safe_load((config / "lines.yaml").read_text(encoding="utf-8"))
    lines["voices"][code] = VOICE
    lines["agents"]["name"][code] = lines["agents"]["name"]["en"]
    _dump(config / "lines.yaml", lines)
    offices = yaml.safe_load((config / "offices.yaml").read_text(encoding="utf-8"))
    for office in offices["offices"].values():
        office["name"][code] = office["name"]["en"]
    _dump(config / "offices.yaml", offices)
    for path in (config / "flows").glob("*.yaml"):
        doc = flow.read(path)
        for node in doc["nodes"].values():
            for option in node.get("options") or []:
                if "words" in option:
                    option["words"][code] = option["words"]["en"]
        for texts in ((doc.get("settings") or {}).get("how_to_pay") or {}).values():
            texts[code] = texts["en"]
        _dump(path, doc)
    return config, prompts


@pytest.fixture
def toy(make_app, tmp_path):
    config, prompts = toy_language(tmp_path)
    app = make_app(CONFIG_DIR=config, PROMPTS_DIR=prompts)

    def place(line: str, keys: list[str]):
        return Phone(app, to=LINES[line]).place(keys)
    return app, place


def heard(call, after: int = 0) -> list[tuple[str, str]]:
    """(voice, words) of everything said after the `after`-th input."""
    out, inputs = [], 0
    for e in call.events:
        if e.kind == "input":
            inputs += 1
        elif e.kind == "say" and inputs >= after:
            out.append((e.attrs.get("voice"), e.text))
    return out


def test_a_third_language_is_offered_chosen_and_heard_in_its_own_voice(toy):
    app, place = toy
    prompts = app.extensions["ivr"].prompts
    # Choose it at the greeting; its repeat word; a digit said in it; an answer.
    call = place("callcenter", ["3", "say zork again", "say zork2", "5"])
    greeting = heard(call)[: len(heard(call)) - len(heard(call, 1))]
    assert ("Polly.Lupe", "Para español, oprima 2.") in greeting           # Spanish still offered as before
    assert (VOICE["voice"], f"{MARK}: for Zorkish, press 3.") in greeting
    after = heard(call, 1)
    assert after and all(voice == VOICE["voice"] and text.startswith(MARK) for voice, text in after), after
    intro = prompts.text("cc.main.intro", "xx")
    assert [text for _, text in heard(call, 1)[:1]] == [intro]
    assert [text for _, text in heard(call, 2)[:1]] == [intro]            # "zork again": the menu again
    assert heard(call, 3)[0][1] == prompts.text("cc.change.intro", "xx")  # "zork2": option 2
    assert heard(call, 4)[0][1] == prompts.text("faq.ends", "xx")         # its answer
    assert not call.dialed and not call.hung_up


def test_a_third_language_names_keys_and_says_hours_its_own_way(toy, clock):
    _, place = toy
    clock.set("2026-11-28 23:30")                                        # Saturday night: closed
    call = place("callcenter", ["3", "*5", "0"])
    said = " ".join(text for _, text in heard(call, 1))
    assert f"{MARK} Sorry, zstar is not one of the choices." in said      # its name of the key
    assert f"{MARK} hours Montag to Freitag" in said                      # its wording, the locale's day names
    assert not call.dialed


def test_a_third_language_says_counts_amounts_and_dates_its_own_way(toy):
    _, place = toy
    # A payer (the stub's fixture case), in the toy language, keys a short number, then hears the last payment.
    call = place("payments", ["3", "12#", "123456789#", "1", "1234#", "1"])
    said = " ".join(text for voice, text in heard(call, 1) if voice == VOICE["voice"])
    assert f"{MARK} You entered 2 zigits. Please enter 9 zigits." in said
    assert " zollars" in said, said
    assert "dollars" not in said and "hundred" not in said                # German numbers, its own units
    assert any(day in said for day in ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag")), said


def test_a_language_folder_without_a_voice_is_refused(make_app, tmp_path):
    config, prompts = toy_language(tmp_path)
    lines = yaml.safe_load((config / "lines.yaml").read_text(encoding="utf-8"))
    del lines["voices"]["xx"]
    _dump(config / "lines.yaml", lines)
    with pytest.raises(PromptError) as err:
        make_app(CONFIG_DIR=config, PROMPTS_DIR=prompts)
    assert str(prompts / "xx") in str(err.value) and "no voice" in str(err.value)


def test_a_voice_without_a_language_folder_is_refused(make_app, tmp_path):
    config, prompts = toy_language(tmp_path)
    shutil.rmtree(prompts / "xx")
    with pytest.raises(PromptError) as err:
        make_app(CONFIG_DIR=config, PROMPTS_DIR=prompts)
    assert str(config / "lines.yaml") in str(err.value) and "'xx'" in str(err.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"key": 2}, "key 2 is also the key of"),
    ({"locale": "zz_QQ"}, "locale 'zz_QQ'"),
    ({"digits": ["null"]}, "digits must be 10 words"),
    ({"hours": "{first} to {last}"}, "hours must use {first}, {last}, {open} and {close}"),
    ({"colour": "blue"}, "unknown field `colour`"),
])
def test_a_wrong_language_file_is_refused_naming_it(make_app, tmp_path, change, message):
    config, prompts = toy_language(tmp_path)
    path = prompts / "xx" / "language.yaml"
    lang = yaml.safe_load(path.read_text(encoding="utf-8"))
    lang.update(change)
    _dump(path, lang)
    with pytest.raises(PromptError) as err:
        make_app(CONFIG_DIR=config, PROMPTS_DIR=prompts)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


def test_the_staff_tools_know_a_third_language(toy, staff, monkeypatch, capsys):
    app, place = toy
    monkeypatch.setenv("IVR_PROMPTS_DIR", str(app.config["PROMPTS_DIR"]))
    monkeypatch.setenv("IVR_CONFIG_DIR", str(app.config["CONFIG_DIR"]))
    # A relative leaves a request for a parent in prison, in the toy language.
    call = place("callcenter", ["3", "4", "2", "1", "7654321#", "1", "say York", "1", "*", "record"])
    ref = spoken_ref(call.said)
    rc, out, _ = staff("show", ref)
    assert rc == 0 and "language:            Zorkish" in out
    from ivr.cli.main import main
    capsys.readouterr()
    assert main(["prompts", "history", "cc.welcome", "--lang", "xx"]) == 0
    assert "cc.welcome  xx  live now: the computer voice" in capsys.readouterr().out
