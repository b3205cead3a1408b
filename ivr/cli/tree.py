"""`ivr tree`: the call tree as an outline and as Mermaid diagrams, straight from config/."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ivr import settings
from ivr.callflow import flow
from ivr.callflow.flow import Edge, FlowSet, Node, successors, targets
from ivr.callflow.prompts import Prompts
from ivr.domain.directory import Directory
from ivr.lines import load_all

START, END = "<!-- call-tree:start -->", "<!-- call-tree:end -->"


def load_tree() -> tuple[FlowSet, Prompts, Directory]:
    config = settings.from_env({})
    prompts = Prompts.load(config["PROMPTS_DIR"], config["CONFIG_DIR"] / "lines.yaml")
    directory = Directory.load(config["CONFIG_DIR"], prompts.languages)
    flows = flow.load(config["CONFIG_DIR"] / "flows", prompts, load_all(), directory.offices)
    return flows, prompts, directory


def first_words(prompts: Prompts, node: Node | None = None, pid: str | None = None, n: int = 8) -> str:
    pid = pid or (node.get("prompt") if node else None)
    if isinstance(pid, list):
        pid = pid[0]
    if not pid:
        return ""
    words = re.sub(r"\{\w+\}", "…", prompts.texts[prompts.default][pid]).split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


def describe(node: Node, prompts: Prompts, directory: Directory) -> str:
    if node.type == "transfer":
        if node.get("to") == "agents":
            return "transfer: call center agents"
        if node.get("office_var"):
            return f"transfer: the office in `{node.get('office_var')}`"
        office = directory.offices[node.get("office")]
        return f"transfer: {office.name[prompts.default]} ({office.phone})"
    if node.type == "handover":
        return f"handover: the {node.get('line')} line"
    if node.type == "action":
        return f"action: {node.get('handler')}"
    if node.type == "collect":
        extra = f" -> {node.get('handler')}" if node.get("handler") else ""
        return f"collect: \"{first_words(prompts, node)}\"{extra}"
    return f"{node.type}: \"{first_words(prompts, node)}\""


# Drawn as plain arrows, each target once; the global keys 9 and 0 are left out of the drawings.
PLAIN = ("next", "skip")


def option_label(edge: Edge, prompts: Prompts, directory: Directory) -> str:
    if edge.office:
        return directory.offices[edge.office].name[prompts.default]
    return prompts.texts[prompts.default][edge.prompt]


def named_events(edges: list[Edge]) -> dict[str, str]:
    """The nodes a handler's events lead to, each with the events that lead there ("a / b")."""
    out: dict[str, list[str]] = {}
    for edge in edges:
        if edge.kind == "on":
            out.setdefault(edge.target, []).append(edge.key)
        elif edge.kind == "giveup":
            out.setdefault(edge.target, []).append("3 tries")
    return {target: " / ".join(events) for target, events in out.items()}


def outline(flows: FlowSet, line: str, prompts: Prompts, directory: Directory) -> list[str]:
    out = [f"{line} line (starts at {flows.lines[line].start})"]
    seen: set[str] = set()

    def walk(nid: str, depth: int, label: str) -> None:
        node = flows.nodes[nid]
        pad = "  " * depth
        if nid in seen:
            out.append(f"{pad}{label}{nid} (see above)")
            return
        seen.add(nid)
        out.append(f"{pad}{label}{nid}  {describe(node, prompts, directory)}")
        edges = successors(flows, node)
        for edge in edges:
            if edge.kind == "option":
                walk(edge.target, depth + 1, f"[{edge.key}] ")
        for target, events in named_events(edges).items():
            walk(target, depth + 1, f"({events}) ")
        for target in targets(edges, PLAIN):
            walk(target, depth + 1, "-> ")

    walk(flows.lines[line].start, 1, "")
    return out


def mermaid(flows: FlowSet, line: str, prompts: Prompts, directory: Directory) -> str:
    def mid(nid: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", nid)

    def esc(text: str) -> str:
        return text.replace('"', "'").replace("…", "...")

    lines = ["flowchart LR"]
    ids = [nid for nid, ln in flows.node_line.items() if ln == line]
    for nid in ids:
        node = flows.nodes[nid]
        label = esc(describe(node, prompts, directory))
        shape = ('{{"%s"}}' if node.type == "menu" else '["%s"]') % f"{nid}<br/>{label}"
        lines.append(f"  {mid(nid)}{shape}")
    for nid in ids:
        edges = successors(flows, flows.nodes[nid])
        for edge in edges:
            if edge.kind == "option":
                lines.append(f"  {mid(nid)} -- \"{edge.key}: {esc(option_label(edge, prompts, directory))}\" "
                             f"--> {mid(edge.target)}")
        for target, events in named_events(edges).items():
            lines.append(f"  {mid(nid)} -- \"{events}\" --> {mid(target)}")
        for target in targets(edges, PLAIN):
            lines.append(f"  {mid(nid)} --> {mid(target)}")
        for target in targets(edges, ("handover",)):
            lines.append(f"  {mid(nid)} -.-> {mid(target)}")
    return "\n".join(lines)


def markdown(flows: FlowSet, prompts: Prompts, directory: Directory, only: str | None = None) -> str:
    parts = [START, "<!-- Made by `ivr tree --mermaid README.md`; a test fails when it differs. -->"]
    for line in flows.lines:
        if only and line != only:
            continue
        parts += [f"\n#### The {line} line\n", "```mermaid", mermaid(flows, line, prompts, directory), "```"]
    parts.append(END)
    return "\n".join(parts)


def splice(existing: str, block: str) -> str:
    """Put the diagrams between the markers of a document, or append them."""
    if START in existing and END in existing:
        head, rest = existing.split(START, 1)
        return head + block + rest.split(END, 1)[1]
    return existing.rstrip("\n") + "\n\n" + block + "\n"


def main(args: argparse.Namespace) -> int:
    if getattr(args, "node_types", False):
        print(flow.guide())
        return 0
    flows, prompts, directory = load_tree()
    lines = [args.line] if args.line else list(flows.lines)
    for line in lines:
        if line not in flows.lines:
            print(f"ivr tree: no line {line!r}; lines: {', '.join(flows.lines)}")
            return 2
    block = markdown(flows, prompts, directory)
    if args.check:
        path = Path(args.check)
        current = path.read_text() if path.exists() else ""
        if splice(current, block) != current:
            print(f"{path}: the call-tree diagrams differ from config/; run `ivr tree --mermaid {path}`")
            return 1
        print(f"{path}: the call-tree diagrams match config/")
        return 0
    for line in lines:
        print("\n".join(outline(flows, line, prompts, directory)))
        print()
    if args.mermaid:
        path = Path(args.mermaid)
        path.write_text(splice(path.read_text() if path.exists() else "", block))
        print(f"wrote the Mermaid diagrams to {path}")
    return 0
