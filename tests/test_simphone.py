"""The one simulated phone: a call pressed step by step (as the tests drive it) is the call `ivr call`
places, and what it prints keeps the transcript's format."""

from __future__ import annotations

import re

from ivr.callflow.simphone import Phone
from tests.conftest import LINES

NORWICH = ["-", "5", "1", "say I live in Norwich"]        # the README's first call, to the town's read-back
YORK, INMATE = "+19595550113", "7654321"                  # a facility's caller ID (config/facilities.yaml)


def test_a_call_pressed_step_by_step_is_the_call_ivr_call_places(app):
    placed_lines, stepped_lines = [], []
    placed = Phone(app, to=LINES["callcenter"], show=placed_lines.append).place(NORWICH)
    stepped = Phone(app, to=LINES["callcenter"], show=stepped_lines.append).start()
    for key in NORWICH:
        stepped.press(key)
    assert "caller says: I live in Norwich" in "\n".join(placed_lines)
    # The same lines, events and webhooks; only `place` goes on to hang up when its keys run out.
    assert placed_lines[-1] == "--- the caller hangs up ---" and stepped_lines == placed_lines[:-1]
    assert [(e.kind, e.text) for e in placed.events][:-1] == [(e.kind, e.text) for e in stepped.events]
    assert placed.documents == stepped.documents and placed.statuses == stepped.statuses
    assert stepped.said_after(3) == placed.said_after(3) and stepped.heard == placed.heard


def test_the_printed_transcript_keeps_its_format(app):
    """Every kind of line `ivr call` prints (README's demos): what is said, keys, speech, silence, a
    transfer and how it ended, a recording, and who hung up."""
    lines: list[str] = []
    Phone(app, to=LINES["callcenter"], show=lines.append).place(NORWICH + ["q"])
    Phone(app, to=LINES["callcenter"], show=lines.append).place(["1", "0", "dial:busy", "9"])
    Phone(app, to=LINES["callcenter"], caller=YORK, show=lines.append).place(
        ["-", "1", f"{INMATE}#", "1", "*", "record"])
    formats = [r"--- calling \+18002285437 from \+1(8605550199|9595550113) ---",
               r"   \[(en|es)-US\] \S.*", r"   \.\.\. \(silence\)", r"   caller presses: (\d|\*|#)+",
               r"   caller says: I live in Norwich", r"   >>> TRANSFER: dialing \+1\d{10} \.\.\. \(busy\)",
               r"   \(caller records a message: RE[0-9a-f]{32}\)", "--- the caller hangs up ---",
               "--- the system hangs up ---"]
    assert [line for line in lines if not any(re.fullmatch(f, line) for f in formats)] == []
    assert {f for f in formats if not any(re.fullmatch(f, line) for line in lines)} == set()


def test_one_script_asks_for_a_call_back_open_or_closed(app, clock, prompts):
    """A transfer's result in the keys ("dial:no-answer") is used when the agents are dialed and passed
    over when they are closed: the benchmark's and the failover harness's call back path, at any hour."""
    keys = ["-", "0", "dial:no-answer", "3", "1", "1", "2"]
    saved = prompts.text("cb.done", "en").split(".")[0]
    for when in ("2026-11-24 10:00", "2026-11-28 23:30"):       # a Tuesday morning, a Saturday night
        clock.set(when)
        lines: list[str] = []
        call = Phone(app, to=LINES["callcenter"], caller="+18605550123", show=lines.append).place(keys)
        assert saved in call.said, (when, call.said[-300:])
        assert "not one of the choices" not in call.said
        assert any("TRANSFER" in line for line in lines) == (when.endswith("10:00")), when
