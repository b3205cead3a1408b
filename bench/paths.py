"""The calls the benchmark places: one small data record per realistic path through the system.

`keys` are the caller's answers, one per prompt that takes input, exactly as for `ivr call --keys`
and the tests' `call()` fixture: digits ("123456789#"), "say words" for speech, "-" for silence,
"dial:completed" for a transfer's result, "record" to leave a message. When the keys run out the
caller hangs up.

`marks` names the keys (by 0-based index) whose webhook does something slow on purpose, so that
those requests are timed as their own kind: "sdu" (it calls the SDU API: its latency is the SDU's
as much as ours), "scrypt" (a staff PIN checked against its scrypt hash, deliberately slow).

`own_number`: each call comes from a caller ID of its own, drawn at random (a call back asked from one
number again updates the open one instead of storing another).

`needs` names flow nodes that must exist for the path to make sense; the benchmark also places each
path once before measuring and leaves out (and reports) any path that does not work yet, so a line
still being built never turns into a wall of errors. `weight` is how often a path comes up in the
mix of calls; `staff` is a staff account (id, name, PIN) the path signs in with, created first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

NUMBERS = {"callcenter": "+18002285437", "payments": "+18882337223", "staff": "+18605550142"}


@dataclass(frozen=True)
class Path:
    name: str
    line: str                       # a key of NUMBERS: which number the caller dials
    keys: tuple[str, ...]
    marks: dict[int, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()     # flow node ids this path walks through
    caller: str = "+18605550199"
    weight: int = 10
    staff: tuple[str, str, str] | None = None
    own_number: bool = False        # each call from a caller ID of its own (a new call back each time)

    @property
    def to(self) -> str:
        return NUMBERS[self.line]

    def caller_id(self, rng: random.Random | None = None) -> str:
        """The caller ID of one call: `caller`, or with `own_number` a Hartford-area number drawn at random."""
        if not self.own_number:
            return self.caller
        return f"+1860{(rng or random).randrange(2_000_000, 10_000_000)}"


PATHS: tuple[Path, ...] = (
    # Call center FAQ in English: payments menu, a spoken answer, main menu, another answer, repeat.
    Path("faq_en", "callcenter", ("-", "1", "2", "9", "2", "3", "*"),
         needs=("cc_main", "faq_withholding", "faq_job_loss")),
    # The same line in Spanish, by speech: "pagos", then "retención", then back by "menú principal".
    Path("faq_es_speech", "callcenter", ("2", "say pagos", "say retención", "say menú principal", "3", "1"),
         needs=("cc_main", "faq_withholding", "faq_not_paid")),
    # Office transfer with the town lookup: offices menu, "by town", say the town, confirm, dial.
    # Outside office hours the office is closed: the caller hears the hours and hangs up instead.
    Path("office_by_town", "callcenter", ("-", "5", "1", "say I live in West Hartford", "1", "dial:completed"),
         needs=("cc_town", "cc_town_confirm", "xfer_by_town")),
    # Inmate intake from a facility's inmate phone (York CI's caller ID: the facility is known): start,
    # inmate number read back and confirmed (the request is stored), case number confirmed, a message.
    Path("inmate_intake", "callcenter", ("-", "1", "7654321#", "1", "246813579#", "1", "record"),
         needs=("inm_welcome", "inm_number", "inm_case", "inm_message"), caller="+19595550113"),
    # A call back: 0 for a person, who does not answer (after hours the agents are closed and that key is
    # passed over), 3 for a call back, this number, the morning, no message: a reference is said.
    Path("callback", "callcenter", ("-", "0", "dial:no-answer", "3", "1", "1", "2"),
         needs=("cc_agents", "cb_start", "cb_finish"), weight=5, own_number=True),
    # Payment line: case number, read-back confirmed, PIN (the SDU checks it, then the case summary),
    # last payment (SDU), payment menu, balance (SDU).
    Path("payment_pin", "payments", ("-", "123456789", "1", "1234", "1", "9", "3"),
         marks={3: "sdu", 4: "sdu", 6: "sdu"}, needs=("pay_case", "pay_pin", "pay_last", "pay_balance")),
    # Staff line, rarely called: sign in (ID, PIN), prompts, a prompt by its code, hear it, another code.
    Path("staff_prompt", "staff", ("-", "1001#", "482193#", "1", "201#", "1", "4"),
         marks={2: "scrypt"}, needs=("st_id", "st_pin", "st_code", "st_hear"), weight=1,
         staff=("1001", "Bench Staff", "482193")),
)
