"""No node id lives in Python: renaming every node of every line in the flow files (and nothing else)
leaves every call the same."""

from __future__ import annotations

import itertools
import re
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from ivr.callflow import flow
from ivr.domain import workitems
from tests.sdu_faults import FaultySDU
from tests.walk import caller_numbers, explore, known_values

ROOT = Path(__file__).resolve().parents[1]
NODE_FIELDS = ("next", "skip", "home", "person", "giveup")
LINE_FIELDS = ("start", "home", "person", "entry", "giveup")


def renamed_copy(dest: Path) -> dict[str, str]:
    """config/ copied to `dest` with every node id replaced by a random one, consistently; the map."""
    shutil.copytree(ROOT / "config", dest)
    docs = {path: flow.read(path) for path in sorted((dest / "flows").glob("*.yaml"))}
    new = {nid: f"n{uuid.uuid4().hex[:10]}" for doc in docs.values() for nid in doc["nodes"]}
    for path, doc in docs.items():
        for key in LINE_FIELDS:
            if key in doc:
                doc[key] = new[doc[key]]
        nodes = {}
        for nid, node in doc["nodes"].items():
            for key in NODE_FIELDS:
                if key in node:
                    node[key] = new[node[key]]
            if "on" in node:
                node["on"] = {event: new[t] for event, t in node["on"].items()}
            for option in node.get("options") or []:
                option["goto"] = new[option["goto"]]
            nodes[new[nid]] = node
        doc["nodes"] = nodes
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return new


@pytest.fixture
def numbered_refs(monkeypatch):
    """Request references drawn from a counter the test restarts, so two walks say the same ones."""
    counter = itertools.count(1)

    def restart() -> None:
        nonlocal counter
        counter = itertools.count(1)
    monkeypatch.setattr(workitems.secrets, "randbelow", lambda n: next(counter) % n)
    return restart


@pytest.mark.parametrize("line", ["callcenter", "payments", "staff"])
def test_renaming_every_node_id_leaves_every_call_the_same(make_app, redis_client, tmp_path, numbered_refs, line):
    renamed = renamed_copy(tmp_path / "config")
    assert len(renamed) > 100
    documents = []
    for config in (ROOT / "config", tmp_path / "config"):
        sdu = FaultySDU()           # its own PIN counts, so the first walk's wrong PINs lock nothing for the second
        try:
            redis_client.flushdb()
            numbered_refs()
            app = make_app(CONFIG_DIR=config, SDU_BASE_URL=sdu.url)
            walk = explore(app, line, pool=known_values(app), max_states=120, new_caller=caller_numbers())
            documents.append(walk.documents)
        finally:
            sdu.stop()
    # The simulated phone's recordings get random Twilio ids: the only thing two walks may not share.
    original, after = ([re.sub(r"RE[0-9a-f]{32}", "RE…", doc) for doc in docs] for docs in documents)
    assert len(original) > 50
    for i, (a, b) in enumerate(zip(original, after, strict=True)):
        assert a == b, f"answer {i} differs after renaming the nodes"
