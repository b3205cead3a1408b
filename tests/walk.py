"""Walking every path of a line, and what the tests know, for the fault, fuzz, TwiML and secrets tests.

The calls are placed with the one simulated phone (`ivr.simphone.Phone`), one input at a time.
`explore()` visits every place a line can wait for input, in each language, by copying a call's
Redis keys to a new CallSid at each branch (`Phone.fork`), so that each branch costs one request
instead of a whole call from the start.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ivr.callflow.callstate import CallState
from ivr.callflow.flow import successors, targets
from ivr.callflow.simphone import Phone
from ivr.settings import DEV_ACCOUNT_SID

ACCOUNT_SID = DEV_ACCOUNT_SID   # the account the simulated phone's requests name
DIAL_STATUSES = ("completed", "busy", "no-answer", "failed")


def line_number(app, line: str) -> str:
    return app.extensions["ivr"].lines_cfg["lines"][line]["number"]


def state_of(app, sid: str) -> CallState | None:
    return app.extensions["ivr"].store.load(sid)[0]


def forget_summary(app, sid: str) -> None:
    """Drop the case summary a payment call keeps, as if its minute had passed: the next figure asks
    the SDU again."""
    store = app.extensions["ivr"].store
    state = store.load(sid)[0]
    assert state is not None and state.vars.pop("_summary", None), "the call kept no summary"
    store.save(state)


# --- the call tree as a graph, and the inputs that move a call on it ------------------------------

def offered(flows, node, variables: dict) -> list:
    """The option edges of `node` a caller with `variables` is offered."""
    return [e for e in successors(flows, node)
            if e.kind == "option" and all(variables.get(k) == v for k, v in e.when)]


def collect_inputs(node, pool: Iterable[str]) -> list[str]:
    """Values worth keying at a collect node: those of `pool` that fit its length, the first ones
    first, then wrong ones (too short, not digits, silence, star, speech)."""
    spec = node.get("digits") or {}
    lo, hi = int(spec.get("min", 1)), int(spec.get("max", 20))
    fits = [v for v in pool if not v.startswith("say ") and lo <= len(v.rstrip("#")) <= hi]
    fits = fits[:4] or [("7391846250" * 2)[:hi]]
    if "speech" in (node.get("input") or []):
        fits += [v for v in pool if v.startswith("say ")]
    fixed = lo == hi and not node.get("finish")
    return [v if fixed or v.startswith("say ") else v + "#" for v in fits] + ["1#", "*", "-"]


def menu_inputs(offered_keys: list[str]) -> list[str]:
    invalid = next(k for k in "87654321" if k not in offered_keys)
    return offered_keys + ["*", "0", "9", invalid, "-", "say mumble"]


@dataclass
class Exploration:
    documents: list[str] = field(default_factory=list)
    waits: set[str] = field(default_factory=set)          # nodes where a call waited for input or ended
    states: int = 0
    requests: int = 0
    phones: list[Phone] = field(default_factory=list)     # one per branch, to read what was heard


def explore(app, line: str, *, pool: Iterable[str] = (), caller: str = "+18605550199",
            max_states: int = 400, new_caller: Callable[[], str] | None = None,
            skip: Callable[[object, str], bool] | None = None, hang_up: bool = True,
            seen: set | None = None) -> Exploration:
    """Walk every place where a call to `line` waits for input, each once per language, phase and
    set of offered options; at each, try every key that means something there and a few that do
    not. `pool`: values for collect nodes (known good ones first). `skip(node, answer)`: inputs
    not to try. `new_caller()`: the From number of each branch (so per-caller limits don't end
    the walk). Every branch is hung up at the end unless `hang_up=False`. `seen`: places already
    walked (shared by several walks, e.g. a line and the line it hands callers over to)."""
    rt = app.extensions["ivr"]
    flows = rt.flows
    pool = list(pool)
    result = Exploration()
    seen = set() if seen is None else seen
    first = Phone(app, to=line_number(app, line), caller=caller).start()
    queue = deque([first])
    while queue and result.states < max_states:
        phone = queue.popleft()
        if phone.ended:
            continue
        state = state_of(app, phone.sid)
        if state is None:
            continue
        node = flows.nodes.get(state.node)
        if node is None:
            continue
        options = offered(flows, node, state.vars)
        keys = [e.key for e in options]
        # Where the call is, and the counts and flags among its variables (wrong PINs so far,
        # blocked ...): each combination is walked once.
        small = tuple(sorted((k, v) for k, v in state.vars.items()
                             if not k.startswith("_") and isinstance(v, (bool, int))))
        mark = (state.node, state.phase, state.lang, tuple((e.key, e.target) for e in options),
                min(state.tries, 2), small)
        if mark in seen:
            continue
        seen.add(mark)
        result.states += 1
        result.waits.add(state.node)
        if state.tries:                      # only what leads to "too many tries"
            answers = ["-"] + (collect_inputs(node, pool)[-4:-3] if node.type == "collect" else [])
        elif phone.waiting_for == "Dial":
            answers = [f"dial:{s}" for s in DIAL_STATUSES]
        elif phone.waiting_for == "Record":
            answers = ["record", "-"]
        elif node.type == "language":
            answers = ["1", "2"]
        elif node.type == "collect" and state.phase != "confirm":
            answers = collect_inputs(node, pool)
        elif node.type == "collect" or node.type == "transfer":
            answers = ["1", "2", "*", "0", "9", "5", "-"]
        elif state.lang == "en" or node.id == flows.lines[state.line].home:
            answers = menu_inputs(keys)
        else:                                # the global keys are the same code in every language
            answers = keys + ["-"]
        for answer in answers:
            if skip is not None and skip(node, answer):
                continue
            branch = phone.fork(app)
            if new_caller is not None:
                branch.base["From"] = new_caller()
            branch.press(answer)
            if branch.ended and (after := state_of(app, branch.sid)) is not None:
                result.waits.add(after.node)     # a goodbye: the call ended there
            result.requests += 1
            result.documents.extend(branch.documents)
            result.phones.append(branch)
            queue.append(branch)
    result.documents = first.documents + result.documents
    result.phones.insert(0, first)
    if hang_up:
        for phone in result.phones:
            if not phone.ended:
                phone.hang_up()
    return result


LANGUAGE_KEYS = {"en": "1", "es": "2"}    # the answer to the language question that chooses each


def explore_in(app, line: str, lang: str, *, skip: Callable[[object, str], bool] | None = None,
               **kwargs) -> Exploration:
    """`explore` for callers of one language: the language question only gets that language's key."""
    def only_lang(node, answer: str) -> bool:
        if node.type == "language":
            return answer != LANGUAGE_KEYS[lang]
        return skip is not None and skip(node, answer)
    return explore(app, line, skip=only_lang, **kwargs)


def settles(flows, node_id: str) -> set[str]:
    """Where a call that enters `node_id` can be waiting next with no input from the caller: that node,
    or, when it acts on its own (an action, a handover, a handler), wherever that may take it."""
    out, todo = set(), [node_id]
    while todo:
        nid = todo.pop()
        if nid in out:
            continue
        out.add(nid)
        node = flows.nodes[nid]
        if node.type in ("action", "handover") or node.get("handler"):
            todo += targets(successors(flows, node), ("next", "on", "handover"))
    return out


# --- known values: what a caller keys, and what must never leak --------------------------------
CASE = "456789123"           # a case of the stub SDU (ivr/sdu/fixtures.json)
PAYER_PIN, PAYEE_PIN = "4826", "6284"
WRONG_PIN = "9173"
INMATE = "381927"
CALLER = "+18605551234"
STAFF_ID, STAFF_PIN = "471", "582946"     # a 3-digit ID: not mistaken for a payment PIN


def caller_numbers(start: int = 5550100):
    """A new caller number each time (fictional 860-555-xxxx numbers), for `explore(new_caller=)`."""
    n = start
    def nxt() -> str:
        nonlocal n
        n += 1
        return f"+1860{n:07d}"
    return nxt


def known_values(app) -> list[str]:
    """Values for the collect nodes of every line, the good ones first. Makes a staff account when
    the app has a staff line, so that its menus can be walked too."""
    from ivr.sdu.stub import load_fixtures

    staffdb = app.extensions["ivr"].services.staffdb
    pool = []
    if staffdb is not None:
        if staffdb.get(STAFF_ID) is None:
            staffdb.add(STAFF_ID, "Test Staff", STAFF_PIN, app.extensions["ivr"].hours.now())
        pool += [STAFF_ID, STAFF_PIN]
    cases = {c["case_number"]: c for c in load_fixtures()["cases"]}
    assert cases[CASE]["parties"]["payer"]["pin"] == PAYER_PIN, "the stub's fixtures changed"
    assert cases[CASE]["parties"]["payee"]["pin"] == PAYEE_PIN, "the stub's fixtures changed"
    codes = app.extensions["ivr"].prompts.codes
    if codes:
        pool.append(str(codes.get("cc.welcome", min(codes.values()))))
    pool += [CASE, PAYER_PIN, PAYEE_PIN, WRONG_PIN, INMATE, "say Hartford", "06103", "say cheshire", "243"]
    return pool


def snapshot(rdb) -> dict[bytes, object]:
    """Every key of the database with its value, whatever its type (for before/after comparisons
    and for scanning what is stored). Three round trips, whatever the number of keys."""
    keys = rdb.keys("*")
    pipe = rdb.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = pipe.execute()
    readers = {b"string": lambda p, k: p.get(k), b"hash": lambda p, k: p.hgetall(k),
               b"list": lambda p, k: p.lrange(k, 0, -1), b"set": lambda p, k: p.smembers(k),
               b"zset": lambda p, k: p.zrange(k, 0, -1, withscores=True), b"stream": lambda p, k: p.xrange(k)}
    pipe = rdb.pipeline(transaction=False)
    read = []
    for key, kind in zip(keys, kinds, strict=True):
        if kind in readers:
            readers[kind](pipe, key)
            read.append(key)
    values = pipe.execute()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in zip(read, values, strict=True)}


def everything_in(rdb) -> bytes:
    """Every key and value in Redis (`snapshot`), whatever its type, as one text to search.
    Stream ids and sorted-set scores are left out: they are times, whose digits could match by chance."""
    parts: list[bytes] = []
    for key, value in snapshot(rdb).items():
        parts.append(key)
        if isinstance(value, dict):                       # hash
            parts += [k + b"=" + v for k, v in value.items()]
        elif isinstance(value, list):                     # list, set, sorted set (with scores), stream
            for item in value:
                if not isinstance(item, tuple):
                    parts.append(item)
                elif isinstance(item[1], dict):           # a stream entry: (id, fields)
                    parts += [k + b"=" + v for k, v in item[1].items()]
                else:                                     # a sorted-set member: (member, score)
                    parts.append(item[0])
        else:                                             # string
            parts.append(value)
    return b"\n".join(parts)


def spoken_ref(said: str) -> str:
    """The reference the caller heard ("Your request number is 4 8 3, 9 2 0.")."""
    m = re.search(r"request number is (\d) (\d) (\d), (\d) (\d) (\d)", said)
    assert m, "no request number was said"
    return "".join(m.groups())


def capped_calls(app, redis_client, lang_keys=("1", "2", "2")) -> list[Phone]:
    """The one place walks from fresh caller IDs never get to: the inmate path of a caller ID at its
    day's cap of new requests (config/facilities.yaml `request_caps`). The cap is set to 1 for the app,
    so the first call's request uses the day's one up; each key of `lang_keys` places one call."""
    import dataclasses

    facilities = app.extensions["ivr"].services.facilities
    caps = facilities.caps
    facilities.caps = dataclasses.replace(caps, per_caller=1)
    redis_client.flushdb()
    phones = []
    try:
        for lang_key in lang_keys:
            phone = Phone(app, to=line_number(app, "callcenter"), caller="+18605550144").start()
            for key in (lang_key, "4", "1", "1", "7654321#", "1"):
                phone.press(key)
            phones.append(phone)
    finally:
        facilities.caps = caps          # the calls have met the cap; later walks get the app's own
    return phones
