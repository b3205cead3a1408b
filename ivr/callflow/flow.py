"""The call tree: config/flows/*.yaml loaded and checked once, at start-up.

A broken tree stops start-up with a message naming the file and the node, so that a mistake in
configuration is found by whoever deploys it, not by a caller.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ivr.callflow.handler import events_of
from ivr.callflow.prompts import Prompts

MAX_OPTIONS = 5
MAX_MENU_DEPTH = 3
# Every field a node may have. The loader refuses any other, naming the file and the node; `ivr tree
# --node-types` prints this guide.
FIELDS = {
    "type": "the node type (below)",
    "prompt": "a prompt id, or a list of them, said on entering the node",
    "next": "the node the call goes to when this one is done",
    "options": "a menu's or an answer's choices, each with `key` (1-8), `prompt` or `office`, `goto`, "
               "and optionally `words` {<lang>: [...]} (every language) a caller may say and `when` {variable: value}",
    "handler": "a step in code (ivr/lines/): said inside a menu or answer, or deciding at a question",
    "on": "where each event its handler names leads: {event: node}; every event mapped, nothing else",
    "args": "the handler's own parameters at this node (never a node id)",
    "skip": "where star goes, or an optional question or message left unanswered",
    "optional": "true: three tries without an answer go to `skip` rather than giving up",
    "digits": "{min: N, max: M}: how many digits an answer has",
    "input": "[dtmf] (default) or [speech, dtmf]",
    "hints": "words for speech recognition: `towns` or `facilities`",
    "confirm": "true: the digits are read back, 1 to keep them, 2 to key them again",
    "confirm_prompt": "the prompt that reads the digits back (default collect.confirm)",
    "short_prompt": "said instead of `prompt` when asking again",
    "timeout": "seconds of silence before the question is asked again (default 8)",
    "var": "the call variable that keeps the answer, when there is no handler",
    "max_length": "a recording's longest, in seconds (default 120)",
    "office": "the office to dial (config/offices.yaml)",
    "office_var": "the call variable that holds the office to dial",
    "to": "`agents`: dial the call center's agents",
    "line": "the line a handover continues on, in the same call",
    "home": "where 9 goes from this node (default: the line's `home`)",
    "person": "where 0 goes from this node (default: the line's `person`)",
    "counts_as_answer": "false: an answer that tells the caller they cannot be helped here (a lock, an "
                        "outage); call analytics does not count hearing it as self-service",
    "giveup": "where a call goes after 3 tries without a usable answer (default: the line's `giveup`; "
              "without one, a person in open hours, else the hours and goodbye)",
}
ANYWHERE = {"type", "home", "person", "giveup"}
# The ways a transfer can end without the caller being connected, as events its `on` may map (any of
# them; one left out keeps the engine's own choices: hear the number, try again, the main menu).
# `closed` is taken with nothing said (the node it leads to says when people answer); the others
# after the sentence that says what happened ("the line is busy").
TRANSFER_EVENTS = ("closed", "busy", "no_answer", "failed")


@dataclass(frozen=True)
class NodeType:
    doc: str
    required: frozenset[str]
    optional: frozenset[str]

    @property
    def fields(self) -> frozenset[str]:
        return self.required | self.optional | ANYWHERE


def _type(doc: str, required: str, optional: str) -> NodeType:
    return NodeType(doc, frozenset(required.split()), frozenset(optional.split()))


NODE_TYPES = {
    "language": _type("the greeting, then each other language's `lang.offer` in its voice; then `next`",
                      "prompt next", ""),
    "menu": _type("`prompt`, then \"For <option>, press <key>.\" for each option", "options",
                  "prompt handler on args"),
    "answer": _type("information said once; then * repeats, 9 main menu, 0 a person, and any `options`", "",
                    "prompt options handler on args next counts_as_answer"),
    "transfer": _type("dial `office`, `office_var` or `to: agents` within office hours; else say when; "
                      "`on` may map " + ", ".join(TRANSFER_EVENTS), "",
                      "office office_var to next on"),
    "collect": _type("a question answered with digits (and speech); the answer goes to `handler` or `var`",
                     "prompt", "next skip optional digits input hints confirm confirm_prompt short_prompt timeout "
                               "var handler on args"),
    "record": _type("a message recorded after the tone, to `handler` or `var`", "prompt",
                    "next skip max_length var handler on args"),
    "action": _type("a step in code with nothing said first; its events lead on", "handler", "on args next"),
    "handover": _type("the same call continues on another line, at its `entry`", "line", "prompt"),
    "hangup": _type("say `prompt`, then hang up", "prompt", ""),
}
LINKS = ("next", "skip")   # fields naming another node, besides options, `on`, `home` and `person`


def guide() -> str:
    """The node types and their fields, as `ivr tree --node-types` prints them."""
    out = ["Node types (config/flows/*.yaml; checked by ivr/callflow/flow.py):"]
    for name, kind in NODE_TYPES.items():
        needs = ", ".join(sorted(kind.required)) or "nothing"
        out.append(f"  {name:9} {kind.doc}\n            needs: {needs}; may have: "
                   f"{', '.join(sorted(kind.optional | (ANYWHERE - {'type'}))) }")
    out.append("Fields:")
    out += [f"  {name:15} {doc}" for name, doc in FIELDS.items()]
    return "\n".join(out)


class FlowError(RuntimeError):
    pass


class FlowLoader(yaml.SafeLoader):
    """YAML as version 1.2 reads booleans: only true and false. YAML 1.1 (PyYAML's default) reads `on`,
    `off`, `yes` and `no` as booleans, which would turn a node's `on:` into `True:`."""


FlowLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
FlowLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                 list("tTfF"))


@dataclass
class Node:
    id: str
    type: str
    file: str
    data: dict

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    @property
    def options(self) -> list[dict]:
        return self.data.get("options") or []


@dataclass
class Line:
    name: str
    file: str
    start: str
    home: str
    person: str
    entry: str          # where a handover from another line comes in
    giveup: str | None = None   # where 3 tries without an answer go, when not the engine's default


@dataclass
class FlowSet:
    lines: dict[str, Line] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    node_line: dict[str, str] = field(default_factory=dict)


def read(path: Path) -> object:
    """One flow file, read as the loader reads it (FlowLoader)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=FlowLoader)


def load(flow_dir: Path, prompts: Prompts, handlers: Mapping[str, Callable], offices: Container[str],
         hint_sets: Container[str] = ("towns", "facilities")) -> FlowSet:
    flows = FlowSet()
    errors: list[str] = []
    docs = []
    for path in sorted(flow_dir.glob("*.yaml")):
        try:
            docs.append((path, read(path) or {}))
        except yaml.YAMLError as exc:
            errors.append(f"{path}: not valid YAML: {exc}")
    # A line's main file (the one with `start`) first, then the files that add nodes to it.
    docs.sort(key=lambda item: (not (isinstance(item[1], dict) and item[1].get("start")), str(item[0])))
    for path, doc in docs:
        if not isinstance(doc, dict):
            errors.append(f"{path}: must be a mapping with `line` and `nodes`")
            continue
        name = doc.get("line")
        if not name or not isinstance(doc.get("nodes"), dict):
            errors.append(f"{path}: needs `line` and `nodes`")
            continue
        if name in flows.lines:
            # A further file of a line adds nodes to it (e.g. the inmate path of the call center).
            if any(doc.get(k) for k in ("start", "home", "person", "entry", "giveup")):
                errors.append(f"{path}: line {name!r} is already defined in {flows.lines[name].file}; "
                              "a further file of a line may only add nodes")
                continue
        else:
            missing = [k for k in ("start", "home", "person") if not doc.get(k)]
            if missing:
                errors.append(f"{path}: line {name!r} needs {', '.join(missing)}")
                continue
            flows.lines[name] = Line(name, str(path), doc["start"], doc["home"], doc["person"],
                                     doc.get("entry", doc["home"]), doc.get("giveup"))
        for nid, data in doc["nodes"].items():
            if nid in flows.nodes:
                errors.append(f"{path}: node {nid!r} is already defined in {flows.nodes[nid].file}")
                continue
            if not isinstance(data, dict) or data.get("type") not in NODE_TYPES:
                errors.append(f"{path}: node {nid!r} has unknown type "
                              f"{(data or {}).get('type')!r}; known: {sorted(NODE_TYPES)}")
                continue
            flows.nodes[nid] = Node(str(nid), data["type"], str(path), data)
            flows.node_line[str(nid)] = name
    for node in flows.nodes.values():
        errors += _check_node(node, flows, prompts, handlers, offices, hint_sets)
    for line in flows.lines.values():
        for key in ("start", "home", "person", "entry", "giveup"):
            if key == "giveup" and line.giveup is None:
                continue
            if getattr(line, key) not in flows.nodes:
                errors.append(f"{line.file}: {key} {getattr(line, key)!r} is not a node")
    if not errors:
        errors += _check_depth(flows)
    if errors:
        raise FlowError("the call tree is broken:\n  " + "\n  ".join(errors))
    return flows


def _check_node(node: Node, flows: FlowSet, prompts: Prompts, handlers: Mapping[str, Callable],
                offices: Container[str], hint_sets: Container[str]) -> list[str]:
    where = f"{node.file}: node {node.id!r}"
    errors = []
    kind = NODE_TYPES[node.type]
    for key in sorted(kind.required - set(node.data)):
        errors.append(f"{where}: {node.type} needs `{key}`")
    for key in sorted(set(node.data) - kind.fields, key=str):
        errors.append(f"{where}: unknown field `{key}` for a node of type {node.type} "
                      f"(it may have: {', '.join(sorted(kind.fields))})")

    def need_node(target, what):
        if target not in flows.nodes:
            errors.append(f"{where}: {what} goes to {target!r}, which is not a node")

    def need_prompt(pid, what="prompt"):
        for lang in prompts.languages:
            if not prompts.has(pid, lang):
                errors.append(f"{where}: {what} {pid!r} is missing in {lang}")

    for key in LINKS:
        if node.get(key) is not None:
            need_node(node.get(key), f"`{key}`")
    for pid in as_list(node.get("prompt")):
        need_prompt(pid)
    for key, what in (("home", "`home` (key 9)"), ("person", "`person` (key 0)"),
                      ("giveup", "`giveup` (3 tries)")):
        if node.get(key) is not None:
            need_node(node.get(key), what)
    if node.get("counts_as_answer") not in (None, True, False):
        errors.append(f"{where}: counts_as_answer must be true or false")
    if node.get("optional") and node.get("skip") is None:
        errors.append(f"{where}: an optional question needs `skip` (where the call goes without an answer)")
    if node.get("handler") is not None and node.get("handler") not in handlers:
        errors.append(f"{where}: handler {node.get('handler')!r} is not a registered handler")
    elif node.get("handler") is not None:
        errors += _check_events(where, node, handlers[node.get("handler")], need_node)
    elif node.type == "transfer" and node.get("on") is not None:
        on = node.get("on")
        if not isinstance(on, dict):
            errors.append(f"{where}: `on` must map events to nodes")
        else:
            errors += [f"{where}: `on` maps {event!r}; a transfer names only {', '.join(TRANSFER_EVENTS)}"
                       for event in on if event not in TRANSFER_EVENTS]
            for event, target in on.items():
                need_node(target, f"event {event!r}")
    if node.get("hints") is not None and node.get("hints") not in hint_sets:
        errors.append(f"{where}: hints {node.get('hints')!r} is not one of {sorted(hint_sets)}")
    if node.type in ("menu", "answer") and not node.get("prompt") and not node.get("handler"):
        errors.append(f"{where}: {node.type} needs `prompt` or `handler`")
    if node.type in ("menu", "answer"):
        options = node.options
        if not isinstance(options, list):
            return errors + [f"{where}: options must be a list"]
        keys = {str(o.get("key")) for o in options if isinstance(o, dict)}   # `when` twins share a key
        if len(keys) > MAX_OPTIONS:
            errors.append(f"{where}: {len(keys)} options; a menu has at most {MAX_OPTIONS}")
        seen: dict[str, int] = {}
        for i, opt in enumerate(options, 1):
            key = str(opt.get("key", ""))
            if len(key) != 1 or key not in "12345678":
                errors.append(f"{where}: option {i} key {key!r} must be one digit 1-8 "
                              f"(0, 9 and * are the same in every menu)")
            if key in seen and not (opt.get("when") and options[seen[key] - 1].get("when")
                                    and opt["when"] != options[seen[key] - 1]["when"]):
                errors.append(f"{where}: options {seen[key]} and {i} both use key {key}")
            seen[key] = i
            if "goto" not in opt:
                errors.append(f"{where}: option {i} has no goto")
            else:
                need_node(opt["goto"], f"option {i}")
            if "office" in opt:
                if opt["office"] not in offices:
                    errors.append(f"{where}: option {i} names unknown office {opt['office']!r}")
            elif "prompt" in opt:
                need_prompt(opt["prompt"], f"option {i} prompt")
            else:
                errors.append(f"{where}: option {i} needs a prompt or an office")
            words = opt.get("words")
            if words is not None and set(words) != set(prompts.languages):
                errors.append(f"{where}: option {i} words must be given in {' and '.join(prompts.languages)}")
    if node.type == "transfer":
        office = node.get("office")
        if office is not None and office not in offices:
            errors.append(f"{where}: unknown office {office!r}")
        if office is None and node.get("to") != "agents" and node.get("office_var") is None:
            errors.append(f"{where}: transfer needs `office`, `office_var` or `to: agents`")
    if node.type == "handover" and node.get("line") not in flows.lines:
        errors.append(f"{where}: handover to unknown line {node.get('line')!r}")
    if node.type == "collect":
        digits = node.get("digits") or {}
        if digits and not (1 <= int(digits.get("min", 1)) <= int(digits.get("max", 1)) <= 20):
            errors.append(f"{where}: digits min/max must satisfy 1 <= min <= max <= 20")
        if node.get("handler") is None and node.get("next") is None:
            errors.append(f"{where}: collect needs `handler` or `next`")
    return errors


def _check_events(where: str, node: Node, fn: Callable, need_node: Callable) -> list[str]:
    """Every event the node's handler declares is mapped by `on`, to a node; nothing else is."""
    declared = events_of(fn)
    on = node.get("on") or {}
    if not isinstance(on, dict):
        return [f"{where}: `on` must map events to nodes"]
    errors = [f"{where}: `on` does not say where event {event!r} of handler {node.get('handler')!r} goes"
              for event in sorted(declared - set(on))]
    errors += [f"{where}: `on` maps {event!r}, which handler {node.get('handler')!r} never names "
               f"(it names {', '.join(sorted(declared)) or 'none'})" for event in sorted(set(on) - declared)]
    for event, target in on.items():
        need_node(target, f"event {event!r}")
    return errors


def _check_depth(flows: FlowSet) -> list[str]:
    """No answer may be more than MAX_MENU_DEPTH menus away from its line's main menu."""
    errors = []
    for line in flows.lines.values():
        depth = {line.home: 1}
        queue = deque([line.home])
        while queue:
            nid = queue.popleft()
            node = flows.nodes[nid]
            for edge in successors(flows, node):
                target = edge.target
                if edge.kind in GLOBAL_KINDS or target in depth or flows.node_line.get(target) != line.name:
                    continue
                target_node = flows.nodes[target]
                d = depth[nid] + (1 if target_node.type == "menu" else 0)
                if target_node.type == "menu" and d > MAX_MENU_DEPTH:
                    errors.append(f"{target_node.file}: node {target!r} is {d} menus deep; "
                                  f"at most {MAX_MENU_DEPTH} are allowed")
                depth[target] = d
                queue.append(target)
    return errors


@dataclass(frozen=True)
class Edge:
    """One way out of a node: where it leads and what takes a call there."""
    kind: str                   # see EDGE_KINDS
    target: str                 # a node id
    key: str | None = None      # the key that takes it: an option's digit, "9" (home) or "0" (person)
    prompt: str | None = None   # an option's words (a prompt id) ...
    office: str | None = None   # ... or the office it names ("For the <office>, press 1.")
    when: tuple = ()            # an option offered only to some callers: ((variable, value), ...)


EDGE_KINDS = {
    "option": "a menu's or an answer's option (`goto`)",
    "next": "`next`, when the node is done",
    "on": "`on`: an event its handler names, and the node it leads to",
    "skip": "`skip`: star, or an optional question or message left unanswered",
    "handover": "`line`: the other line's entry, in the same call",
    "giveup": "3 tries without a usable answer: the node's own `giveup` or its line's",
    "home": "key 9, the main menu: the node's own `home` or its line's",
    "person": "key 0, a person: the node's own `person` or its line's",
}
GLOBAL_KINDS = ("home", "person")   # the keys that work the same in every menu


def successors(flows: FlowSet, node: Node) -> list[Edge]:
    """Every way out of `node`, in this order: its options, `next`, `on`, `skip`, a handover's line,
    then keys 9 and 0 where the engine (ivr/callflow/engine.py) takes them: menus and answers; a transfer's
    choices after it is closed or fails (0 at the agents' own transfer stays there); a question
    whose answer is never a lone digit (at least 2 digits) or that is read back for confirmation."""
    out = [Edge("option", opt["goto"], str(opt.get("key")), opt.get("prompt"), opt.get("office"),
                tuple(sorted((opt.get("when") or {}).items())))
           for opt in node.options if "goto" in opt]
    out += [Edge("next", node.get("next"))] if node.get("next") else []
    out += [Edge("on", target, key=str(event)) for event, target in (node.get("on") or {}).items()]
    out += [Edge("skip", node.get("skip"))] if node.get("skip") else []
    if node.type == "handover" and node.get("line") in flows.lines:
        out.append(Edge("handover", flows.lines[node.get("line")].entry))
    line = flows.lines.get(flows.node_line.get(node.id, ""))
    if line is None:
        return out
    giveup = node.get("giveup") or line.giveup
    if giveup and node.type in ("menu", "answer", "transfer", "collect", "record"):
        out.append(Edge("giveup", giveup))
    lone_digit_is_an_answer = int((node.get("digits") or {}).get("min", 1)) <= 1 and not node.get("confirm")
    if node.type in ("menu", "answer", "transfer") or (node.type == "collect" and not lone_digit_is_an_answer):
        out.append(Edge("home", node.get("home") or line.home, "9"))
        if not (node.type == "transfer" and node.get("to") == "agents"):
            out.append(Edge("person", node.get("person") or line.person, "0"))
    return out


def targets(edges: list[Edge], kinds: tuple[str, ...] | None = None) -> list[str]:
    """The node ids `edges` lead to (those of `kinds`), each once, in order."""
    return list(dict.fromkeys(e.target for e in edges if kinds is None or e.kind in kinds))


def as_list(value) -> list:
    """A field that holds one value or a list of them (a node's `prompt`), as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
