"""The staff line end to end: sign in, record, listen back, keep; the download job publishes; the next
caller hears the system's copy. Rollback, announcements with an end date, lockout, en/es."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET

import pytest
import responses

from ivr.callflow.flow import successors, targets
from ivr.domain.staffdb import StaffDB
from ivr.jobs import worker as jobs
from tests.walk import everything_in

PIN = "482193"
SIGN_IN = ["-", "1001#", PIN + "#"]            # English greeting (silence), staff ID, PIN
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00fake mp3 audio"


@pytest.fixture
def staffdb(app) -> StaffDB:
    return app.extensions["ivr"].services.staffdb


@pytest.fixture
def staff(staffdb, clock):
    return staffdb.add("1001", "Ana Ruiz", PIN, clock())


TWILIO_MP3 = re.compile(r"^https://api\.twilio\.com/2010-04-01/Accounts/AC0+/Recordings/RE\w+\.mp3$")


def run_jobs(app, redis_client, status: int = 200, body: bytes = MP3) -> tuple[int, int]:
    """Run the queued jobs with Twilio's recording downloads mocked; (jobs handled, downloads tried)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(TWILIO_MP3, body=body, status=status)
        handled = jobs.Worker(jobs.JobContext(app.config, redis_client)).run_once()
        return handled, len(mock.calls)


def recorded(call) -> list[str]:
    return [e.text for e in call.events if e.kind == "record"]


def plays(call) -> list[str]:
    return [e.text for e in call.events if e.kind == "play"]


def copy_url(recording_url: str) -> str:
    return f"http://localhost/audio/{recording_url.rsplit('/', 1)[1]}.mp3"


def record_prompt(call, code: str, *, spanish: bool = False, keys_after=("1",)):
    """Sign in, choose the prompt by its code, record, keep (or what `keys_after` says)."""
    switch = ["3"] if spanish else []
    return call("staff", SIGN_IN + switch + ["1", code + "#", "2", "rec"] + list(keys_after))


def review_gathers(call) -> list[ET.Element]:
    """The <Gather> of each listen-back document (the one that plays the fresh recording)."""
    found = []
    for doc in call.documents:
        for gather in ET.fromstring(doc).iter("Gather"):
            if any(v.tag == "Play" and "/Recordings/RE" in (v.text or "") for v in gather):
                found.append(gather)
    return found


def test_listening_back_waits_a_moment_the_first_time_and_plays_the_mp3(call, staff):
    """Twilio may not have stored a recording yet when <Record>'s action comes: the first listen-back
    pauses before the <Play>; a repeat (*) plays at once. Both play Twilio's MP3 form of the URL."""
    c = record_prompt(call, "201", keys_after=("*", "2", "rec", "3"))
    first_rec, second_rec = recorded(c)
    first, repeat, second = review_gathers(c)
    verbs = [(v.tag, (v.text or "").strip(), v.get("length")) for v in first]
    assert verbs[:3] == [("Say", "Here is your recording.", None), ("Pause", "", "1"),
                         ("Play", first_rec + ".mp3", None)]
    assert [v.tag for v in repeat][:2] == ["Say", "Play"]           # * : no pause the second time
    assert repeat.find("Play").text == first_rec + ".mp3"
    assert [v.tag for v in second][:3] == ["Say", "Pause", "Play"]  # a new recording: a pause again
    assert second.find("Play").text == second_rec + ".mp3"
    assert c.said.count("Here is your recording.") == 3
    assert "Canceled. Nothing was changed." in c.said


def test_a_kept_recording_is_published_after_its_download_and_the_next_caller_hears_it(
        app, call, redis_client, staff, prompts):
    staff_call = record_prompt(call, "201")
    [rec] = recorded(staff_call)
    said = staff_call.said
    assert "Hello, Ana Ruiz." in said
    assert "Prompt 2 0 1, in English. It begins:" in said
    assert "Thank you for calling the Connecticut Child Support Call Center" in said   # its first words
    assert "Callers hear the computer voice." in said
    assert f"Here is your recording. [play {rec}.mp3]" in said                            # listened back
    assert "Your recording will be live in about a minute." in said

    before = call("callcenter", [])
    assert plays(before) == [] and prompts.text("cc.welcome", "en") in before.said       # not yet

    assert run_jobs(app, redis_client) == (1, 1)
    after = call("callcenter", [])
    assert plays(after) == [copy_url(rec)]                      # <Play> of the system's copy
    assert prompts.text("cc.welcome", "en") not in after.said
    assert "Para español, oprima 2." in after.said              # the rest is unchanged
    audio = app.test_client().get(copy_url(rec).removeprefix("http://localhost"))   # no signature
    assert audio.status_code == 200 and audio.data == MP3 and audio.mimetype == "audio/mpeg"

    # The staff line now says which version callers hear, and plays it.
    again = call("staff", SIGN_IN + ["1", "201#", "1"])
    assert "Callers hear recording number 1, kept by Ana Ruiz on Tuesday, November 24." in again.said
    assert plays(again) == [copy_url(rec)]


def test_a_failed_download_publishes_nothing(app, call, redis_client, staff, prompts, tmp_path):
    [rec] = recorded(record_prompt(call, "201"))
    handled, tries = run_jobs(app, redis_client, status=503)
    assert handled == 1 and tries == 5                          # urllib3 retries, then the job fails
    assert plays(call("callcenter", [])) == []
    assert not list((tmp_path / "var" / "prompts").glob("*.mp3"))  # no file, not even a partial one
    # The job stays queued: when Twilio has the recording, the retry publishes it.
    with responses.RequestsMock() as mock:
        mock.get(rec + ".mp3", body=MP3)
        assert jobs.Worker(jobs.JobContext(app.config, redis_client)).retry_pending() == 1
    assert plays(call("callcenter", [])) == [copy_url(rec)]


def test_a_recording_twilio_refuses_goes_to_the_dead_letters_unpublished(app, call, redis_client, staff):
    record_prompt(call, "201")
    assert run_jobs(app, redis_client, status=401) == (1, 1)    # permanent: no retry
    assert redis_client.xlen(jobs.DEAD) == 1
    assert plays(call("callcenter", [])) == []


def test_cancel_and_re_record_publish_only_the_recording_kept(app, call, redis_client, staff):
    cancelled = record_prompt(call, "201", keys_after=["3"])
    assert "Canceled. Nothing was changed." in cancelled.said
    assert redis_client.xlen("ivr:jobs") == 0
    twice = record_prompt(call, "201", keys_after=["2", "rec", "1"])
    first, second = recorded(twice)
    assert run_jobs(app, redis_client)[0] == 1
    assert plays(call("callcenter", [])) == [copy_url(second)]


def test_rollback_restores_the_previous_audio(app, call, redis_client, staff):
    [v1] = recorded(record_prompt(call, "201"))
    run_jobs(app, redis_client)
    [v2] = recorded(record_prompt(call, "201"))
    run_jobs(app, redis_client)
    assert plays(call("callcenter", [])) == [copy_url(v2)]

    rolled = call("staff", SIGN_IN + ["1", "201#", "3"])
    assert "Done. Callers now hear recording number 1." in rolled.said
    assert plays(call("callcenter", [])) == [copy_url(v1)]
    # v2's file is still served: a caller who got its URL a moment ago still hears it whole.
    assert app.test_client().get(copy_url(v2).removeprefix("http://localhost")).status_code == 200

    rolled = call("staff", SIGN_IN + ["1", "201#", "3"])
    assert "Done. Callers now hear the computer voice." in rolled.said
    assert plays(call("callcenter", [])) == []
    nothing = call("staff", SIGN_IN + ["1", "201#", "3"])
    assert "There is no earlier version to go back to." in nothing.said


def test_spanish_and_english_versions_are_independent(app, call, redis_client, staff, prompts):
    es_staff = record_prompt(call, "202", spanish=True)          # cc.main.intro, "Menú principal."
    assert "You are working on the Spanish recordings." in es_staff.said
    assert "Prompt 2 0 2, in Spanish. It begins:" in es_staff.said
    [es_rec] = recorded(es_staff)
    run_jobs(app, redis_client)

    english = call("callcenter", ["-"])
    spanish = call("callcenter", ["2"])
    assert plays(english) == [] and "Main menu." in english.said
    assert plays(spanish) == [copy_url(es_rec)] and "Menú principal." not in spanish.said

    [en_rec] = recorded(record_prompt(call, "202"))
    run_jobs(app, redis_client)
    assert plays(call("callcenter", ["-"])) == [copy_url(en_rec)]
    call("staff", SIGN_IN + ["3", "1", "202#", "3"])               # roll back the Spanish one only
    assert plays(call("callcenter", ["2"])) == []
    assert plays(call("callcenter", ["-"])) == [copy_url(en_rec)]


def test_a_staff_member_on_the_spanish_greeting_hears_the_line_in_spanish(call, staff):
    c = call("staff", ["2", "1001#", PIN + "#"])
    assert "Hola, Ana Ruiz." in c.said
    assert "Está trabajando con las grabaciones en español." in c.said
    assert "Para trabajar con las grabaciones en inglés, oprima 3." in c.said


def test_a_prompt_with_parts_that_change_cannot_be_recorded(call, staff):
    c = call("staff", SIGN_IN + ["1", "102#", "999#"])             # menu.option: "{option}, press {key}."
    assert "Prompt 1 0 2 has parts that change on every call" in c.said
    assert "There is no prompt number 9 9 9." in c.said


def test_an_announcement_plays_at_the_start_of_its_line_until_its_end_date(
        app, call, redis_client, staff, clock, prompts):
    c = call("staff", SIGN_IN + ["2", "1", "1126", "rec", "1"])
    assert "The call center line has no announcement." in c.said
    assert "It will play through Thursday, November 26." in c.said
    [rec] = recorded(c)
    run_jobs(app, redis_client)

    caller = call("callcenter", ["-"])
    assert plays(caller) == [copy_url(rec)]
    first = caller.events[0]
    assert first.kind == "play"                                   # before the greeting
    assert plays(call("payments", [])) == []                      # only the line chosen
    assert plays(call("callcenter", ["2"])) == [copy_url(rec)]    # the English one; no Spanish one yet

    status = call("staff", SIGN_IN + ["2", "4"])
    assert "The call center line plays an announcement through Thursday, November 26." in status.said
    assert f"On the call center line: [play {copy_url(rec)}]" in status.said

    clock.set("2026-11-26 23:59")
    assert plays(call("callcenter", [])) == [copy_url(rec)]       # all of its last day
    clock.set("2026-11-27 00:00")
    assert plays(call("callcenter", [])) == []
    assert "The call center line has no announcement." in call("staff", SIGN_IN + ["2"]).said


def test_an_announcement_for_both_lines_in_spanish_until_cleared(app, call, redis_client, staff, clock):
    c = call("staff", SIGN_IN + ["3", "2", "3", "*", "rec", "1"])   # Spanish, announcements, both, no end
    [rec] = recorded(c)
    run_jobs(app, redis_client)
    for line in ("callcenter", "payments"):
        assert plays(call(line, ["-"])) == []                     # English callers: none
        spanish = call(line, ["2"])
        assert plays(spanish) == [copy_url(rec)]                  # said once they choose Spanish
    clock.set("2027-06-01 10:00")
    assert plays(call("payments", ["2"])) == [copy_url(rec)]      # no end date: still on

    cleared = call("staff", SIGN_IN + ["3", "2", "5", "2"])       # clear: the payment line
    assert "Done. The announcement is cleared." in cleared.said
    assert plays(call("payments", ["2"])) == []
    assert plays(call("callcenter", ["2"])) == [copy_url(rec)]


def test_an_end_date_that_is_not_a_date_is_asked_again(call, staff):
    c = call("staff", SIGN_IN + ["2", "2", "1340", "0230", "0101"])
    assert "Sorry, 1 3 4 0 is not a date." in c.said
    assert "Sorry, 0 2 3 0 is not a date." in c.said
    assert "It will play through Friday, January 1, 2027." in c.said   # the next January 1


def test_wrong_pins_end_the_call_then_lock_the_number_for_15_minutes(call, staff, clock, redis_client, caplog):
    """Three wrong PINs in a call end it; five from one number lock it (more in tests/test_staff_guessing.py)."""
    caplog.set_level(logging.INFO)
    c = call("staff", ["-", "1001#", "806452#", "1001#", "913570#", "1001#", "640218#"])
    assert c.said.count("That staff ID and PIN do not match.") == 2
    assert "Sorry, that is too many tries. Goodbye." in c.said and c.hung_up
    c = call("staff", ["-", "1001#", "806452#", "1001#", "913570#"])
    assert "signing in is paused for a while" in c.said and c.hung_up
    assert 890 <= redis_client.ttl("ivr:staff:lock:1001") <= 900

    locked = call("staff", SIGN_IN)                                  # even the right PIN, asked first
    assert "Now enter your PIN" in locked.said and "signing in is paused for a while" in locked.said
    assert "Hello" not in locked.said

    clock.set("2026-11-24 10:16")
    assert "Hello, Ana Ruiz." in call("staff", SIGN_IN).said
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "sign-in failed for staff ID **01" in logged     # masked: it may be a mistyped PIN
    assert not any(pin in logged for pin in (PIN, "806452", "913570", "640218"))


def test_an_unknown_staff_id_gets_the_same_answer_and_the_pin_is_never_stored(call, staff, redis_client):
    c = call("staff", ["-", "5555#", "777777#", "1001#", PIN + "#"], sid="CA" + "5" * 32)
    assert "That staff ID and PIN do not match." in c.said and "Hello, Ana Ruiz." in c.said
    stored = everything_in(redis_client)    # every key and value, lists, sets and streams included
    assert b"Ana Ruiz" in stored            # the scan sees the accounts...
    assert PIN.encode() not in stored and b"777777" not in stored   # ...and no PIN, in a value or a key name


def test_a_disabled_account_cannot_sign_in_and_three_failures_end_the_call(call, staff, staffdb):
    staffdb.set_disabled("1001", True)
    c = call("staff", ["-", "1001#", PIN + "#", "1002#", "111111#", "1003#", "222222#"])
    assert c.said.count("That staff ID and PIN do not match.") == 2
    assert "Sorry, that is too many tries. Goodbye." in c.said and c.hung_up


def test_the_staff_menu_is_never_reached_without_signing_in(call, staff):
    # Three bad staff IDs lead to the help message; its "9, main menu" must ask for the staff ID again.
    c = call("staff", ["-", "12#", "1#", "3#", "9"])
    assert "ask the phone system administrator" in c.said
    assert "Please enter your staff ID" in c.said_after(5)
    assert "Staff menu" not in c.said


def test_the_staff_line_is_in_no_callers_menu(app):
    flows = app.extensions["ivr"].flows
    staff_nodes = {nid for nid, line in flows.node_line.items() if line == "staff"}
    for nid, node in flows.nodes.items():
        if flows.node_line[nid] == "staff":
            continue
        assert not staff_nodes & set(targets(successors(flows, node))), nid
        if node.type == "handover":
            assert node.get("line") != "staff"


def test_an_announcement_node_naming_an_unknown_line_stops_start_up(tmp_path, redis_client):
    import shutil
    from pathlib import Path

    from ivr.app import create_app
    from ivr.callflow.flow import FlowError

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "config", tmp_path / "config")
    flow = tmp_path / "config/flows/staff.yaml"
    flow.write_text(flow.read_text().replace("lines: [payments]", "lines: [payment]"))
    with pytest.raises(FlowError) as err:
        create_app({"IVR_ENV": "test", "CONFIG_DIR": tmp_path / "config", "SDU_BASE_URL": "http://127.0.0.1:9",
                    "DATA_DIR": tmp_path / "var"}, redis_client=redis_client)
    assert f"{flow}: node 'st_ann_payments': `lines` must list some of" in str(err.value)


# Where each step behind the sign-in check runs: the keys after signing in that lead to the moment
# before it, then the input that runs it ("*" says a menu again, which runs its handler).
STEPS = {
    "staff_main": (["1", "201#"], "9"),             # 9 at the prompt's menu: back to the staff menu
    "staff_switch": ([], "3"),
    "staff_code": (["1"], "201#"),
    "staff_prompt": (["1", "201#"], "*"),
    "staff_hear": (["1", "201#"], "1"),
    "staff_rollback": (["1", "201#"], "3"),
    "staff_recorded": (["1", "201#", "2"], "record"),
    "staff_review": (["1", "201#", "2", "record"], "*"),
    "staff_keep": (["1", "201#", "2", "record"], "1"),
    "staff_cancel": (["1", "201#", "2", "record"], "3"),
    "staff_ann_status": (["2"], "*"),
    "staff_ann_new": (["2"], "1"),
    "staff_ann_until": (["2", "1"], "1226#"),
    "staff_ann_hear": (["2"], "4"),
    "staff_ann_clear": (["2", "5"], "1"),
}


@pytest.mark.parametrize("step", sorted(STEPS))
def test_an_account_disabled_during_the_call_is_asked_for_the_staff_id_at_its_next_step(
        step, app, staffdb, staff, redis_client):
    from tests.walk import Phone, line_number, state_of

    before, trigger = STEPS[step]
    phone = Phone(app, to=line_number(app, "staff")).start()
    for keys in SIGN_IN + before:
        phone.press(keys)
    assert "Hello, Ana Ruiz." in phone.said
    staffdb.set_disabled("1001", True)
    mark = len(phone.heard)
    phone.press(trigger)
    assert phone.said_since(mark).startswith("Please enter your staff ID"), (step, phone.said_since(mark))
    assert redis_client.xlen(jobs.STREAM) == 0, step     # nothing was kept for a signed-out caller
    assert "_staff" not in state_of(app, phone.sid).vars


def test_announcement_lines_named_outside_args_stop_start_up(tmp_path, redis_client):
    # A node's parameters for its handler go under `args`; lines left beside it would be ignored.
    import shutil
    from pathlib import Path

    from ivr.app import create_app
    from ivr.callflow.flow import FlowError

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "config", tmp_path / "config")
    flow = tmp_path / "config/flows/staff.yaml"
    text = flow.read_text()
    node = text.index("  st_clear_both:")
    flow.write_text(text[:node] + text[node:].replace("args: {lines: [callcenter, payments]}",
                                                      "lines: [callcenter, payments]", 1))
    with pytest.raises(FlowError) as err:
        create_app({"IVR_ENV": "test", "CONFIG_DIR": tmp_path / "config", "SDU_BASE_URL": "http://127.0.0.1:9",
                    "DATA_DIR": tmp_path / "var"}, redis_client=redis_client)
    # The loader refuses any field a node type does not have, before the staff steps' own check.
    assert f"{flow}: node 'st_clear_both': unknown field `lines` for a node of type action" in str(err.value)
