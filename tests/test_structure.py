"""Structural speed guards (issue 6), none of them timed: every webhook reads a call's state in one
Redis round trip and writes it in one; flows, prompts and other configuration are parsed at start-up,
never per request; every key a call leaves in Redis expires. The calls walked are the benchmark's
own paths (bench/paths.py), so what is measured under load is what is guarded here. A smoke run of
the benchmark itself closes the file (real processes; it checks what the run reports, not speed)."""

from __future__ import annotations

import builtins
import io
import json
import shutil
from types import SimpleNamespace

import pytest
import redis
import yaml

from bench.driver import BROKEN  # what the system says when something broke, en and es
from bench.paths import PATHS
from bench.run import DURABLE_KEYS  # records kept for staff on purpose (inmate requests, jobs)
from ivr.callflow import flow
from ivr.callflow.prompts import Prompts
from ivr.callflow.simphone import Phone, Transport
from ivr.settings import DEV_AUTH_TOKEN, ROOT
from tests.conftest import TEST_REDIS_URL


def counting_client(monkeypatch) -> tuple[redis.Redis, SimpleNamespace]:
    """A real Redis client, and a count of the round trips sent on any connection of its kind: each
    command or pipeline leaves in one write (redis-py's `send_packed_command`), whether it came
    through the client or a pipeline."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    counter = SimpleNamespace(n=0, trips=[])
    connection_class = client.connection_pool.connection_class
    send = connection_class.send_packed_command

    def counted_send(self, command, *args, **kwargs):
        counter.n += 1
        counter.trips.append(_names(_commands_in(command)))
        return send(self, command, *args, **kwargs)

    monkeypatch.setattr(connection_class, "send_packed_command", counted_send)
    return client, counter


def _commands_in(packed) -> list[list[bytes]]:
    """The commands in what redis-py writes to the socket (RESP arrays of bulk strings)."""
    data = packed if isinstance(packed, bytes) else b"".join(bytes(p) for p in packed)
    commands, i = [], 0
    while i < len(data):
        end = data.index(b"\r\n", i)
        count, i = int(data[i + 1:end]), end + 2
        args = []
        for _ in range(count):
            end = data.index(b"\r\n", i)
            size, i = int(data[i + 1:end]), end + 2
            args.append(data[i:i + size])
            i += size + 2
        commands.append(args)
    return commands


def _names(commands) -> str:
    """ "GET ivr:call:*" for a round trip's commands (call ids hidden), for the failure messages."""
    out = []
    for args in commands:
        name = str(args[0], "utf-8", "replace").upper()
        at = 3 if name in ("EVAL", "EVALSHA") else 1    # a script's first key comes after it and the key count
        key = str(args[at], "utf-8", "replace") if len(args) > at else ""
        out.append(f"{name} {key.split('CA')[0]}*" if "CA" in key else f"{name} {key}")
    return " + ".join(out)


class CountingTransport(Transport):
    """The in-process transport, noting (route, Redis round trips, HTTP status) for every webhook."""

    def __init__(self, app, counter: SimpleNamespace, hold: bool = False) -> None:
        super().__init__(DEV_AUTH_TOKEN, app=app)
        self.counter, self.hold, self.log = counter, hold, []

    def post(self, url: str, params: dict, sign: bool = True) -> tuple[int, str]:
        if self.hold and url == "/voice/status":
            return 204, ""   # the caller is still on the line: no status callback yet
        self.counter.n, self.counter.trips = 0, []
        status, body = super().post(url, params, sign)
        self.log.append((url.split("?")[0], self.counter.n, status, self.counter.trips))
        return status, body


@pytest.fixture
def counted(make_app, redis_client, clock, monkeypatch):
    """The app on a counting Redis client, and the benchmark paths its call tree has."""
    client, counter = counting_client(monkeypatch)
    app = make_app(redis=client)
    nodes = app.extensions["ivr"].flows.nodes
    paths = [p for p in PATHS if all(n in nodes for n in p.needs)]
    for path in paths:
        if path.staff:
            app.extensions["ivr"].services.staffdb.add(*path.staff, clock())
    yield SimpleNamespace(app=app, counter=counter, paths=paths, redis=redis_client)
    client.close()


def walk(counted, path, hold: bool = False):
    transport = CountingTransport(counted.app, counted.counter, hold=hold)
    keys = list(path.keys[:-1] if hold else path.keys)
    call = Phone(transport=transport, to=path.to, caller=path.caller).place(keys)
    assert not any(b in call.said for b in BROKEN), f"{path.name}: {call.said[-300:]}"
    assert all(status in (200, 204) for _, _, status, _ in transport.log), (path.name, transport.log)
    return call, transport.log


def test_the_benchmark_paths_are_here(counted):
    # The call center's paths exist from the start; the other lines' join as their flows land.
    assert {"faq_en", "faq_es_speech", "office_by_town"} <= {p.name for p in counted.paths}


# Round trips a handler may add to a webhook besides the call's state, and why: storing a durable
# record for staff (the inmate intake's request, its audit entry, the recording download job, and
# waiting for Redis to have it on disk); the payment line's guard against PIN guessing (locks and
# failure counts per case and per caller number, which outlive the call); the staff line's sign-in
# (account, failures, lock) and its reading of what is published for a prompt; a call back's request
# (its caps, the number's open one, the request and its audit). Waiting for a durable
# write's replica (ivr/store.py `replicated`) adds a write of its own (ivr:replicated) and, at most
# every 30 s, an INFO asking whether the server has replicas.
HANDLER_KEYS = ("ivr:req:", "ivr:cb:", "ivr:jobs", "WAITAOF", "ivr:replicated", "INFO", "ivr:pay:lock:",
                "ivr:pay:tries:", "ivr:staff:", "ivr:prompts:")


def test_each_webhook_reads_the_call_in_one_round_trip_and_writes_it_in_one(counted):
    # A process refreshes what staff published (prompt recordings) once, on its first request after a
    # change; from then on a webhook reads the call with that revision number in the same round trip.
    # Each path once first, too: the pool's connections are opened once (the inmate intake holds two at
    # once: one WATCHes while the other reads), not on every call.
    for path in counted.paths:
        walk(counted, path)
    for path in counted.paths:
        _, log = walk(counted, path)
        assert len(log) >= len(path.keys), (path.name, log)
        for route, _, _, names in log:
            where = (path.name, route, names)
            if route == "/voice/status":
                assert len(names) == 1 and names[0].startswith("EXPIRE ivr:call:*"), where
                assert names[0].endswith("XADD ivr:an:events"), where     # the call's end, for analytics
                continue
            # First the call's state (and the values read with it), in one pipeline; last its write.
            assert names[0].startswith(("GET ivr:call:*", "MGET ivr:call:*")), where
            assert names[-1].startswith("SET ivr:call:*"), where
            # The step's call events ride the state's write (issue 16): no round trip of their own.
            assert names[-1] == "SET ivr:call:* + XADD ivr:an:events", where
            assert sum("ivr:call:" in n for n in names) == 2, where
            assert all(any(k in n for k in HANDLER_KEYS) for n in names[1:-1]), where
        if path.line == "callcenter":
            # Menus and answers: the call's read and its write. A request stored for staff (the inmate
            # intake's, a call back) adds its transaction: the WATCH, its reads in one pipeline, the open
            # one's status when there is one, the EXEC.
            stores = any(n.startswith(("inm_", "cb_")) for n in path.needs)
            assert max(trips for _, trips, _, _ in log) <= (6 if stores else 2), (path.name, log)
        if path.line == "payments":
            # The PIN step: the call, the attempt counted (and the locks read) in one transaction, the
            # attempt given back after a right PIN in one script, the call written.
            assert max(trips for _, trips, _, _ in log) <= 4, (path.name, log)


def test_the_round_trip_counter_counts(counted):
    client = counted.app.extensions["ivr"].redis
    client.ping()   # the connection made (its handshake is round trips too), then counted from here
    counted.counter.n, counted.counter.trips = 0, []
    client.set("ivr:test:x", "1", ex=5)
    pipe = client.pipeline(transaction=False)
    pipe.get("ivr:test:x")
    pipe.ttl("ivr:test:x")
    pipe.execute()
    assert counted.counter.n == 2
    assert counted.counter.trips == ["SET ivr:test:x", "GET ivr:test:x + TTL ivr:test:x"]
    store = counted.app.extensions["ivr"].store
    store.load("CA" + "0" * 32)
    counted.counter.n, counted.counter.trips = 0, []
    store.load("CA" + "0" * 32)
    assert counted.counter.n == 1 and counted.counter.trips[0].startswith("MGET ivr:call:*")


@pytest.fixture
def no_parsing(monkeypatch):
    """After start-up: any YAML parse, flow or prompt load, or opening a file of config/ or prompts/
    is noted (and fails that request, which the caller would hear)."""
    seen: list[str] = []

    def forbid(name, real=None):
        def guard(*args, **kwargs):
            if real is not None and not _config_file(args[0] if args else kwargs.get("file")):
                return real(*args, **kwargs)
            seen.append(f"{name}({str(args[0])[:80] if args else ''})")
            raise AssertionError(f"{name} called while answering a webhook")
        return guard

    for name in ("safe_load", "load", "full_load", "unsafe_load", "safe_load_all", "load_all"):
        monkeypatch.setattr(yaml, name, forbid(f"yaml.{name}"))
    monkeypatch.setattr(flow, "load", forbid("flow.load"))
    monkeypatch.setattr(Prompts, "load", classmethod(forbid("Prompts.load")))
    monkeypatch.setattr(builtins, "open", forbid("open", builtins.open))
    monkeypatch.setattr(io, "open", forbid("io.open", io.open))
    return seen


def _config_file(name) -> bool:
    try:
        path = (ROOT / str(name)).resolve()
    except (TypeError, ValueError, OSError):
        return False
    return any(path.is_relative_to(ROOT / d) for d in ("config", "prompts"))


def test_nothing_is_parsed_while_answering_calls(counted, no_parsing):
    with pytest.raises(AssertionError):
        yaml.safe_load("a: 1")           # the guard is in place ...
    with pytest.raises(AssertionError):
        open(ROOT / "config" / "lines.yaml")
    no_parsing.clear()                   # ... and what it caught here was the test's own doing
    for path in counted.paths:
        walk(counted, path)
        walk(counted, path, hold=True)
    assert no_parsing == []


def test_every_key_a_call_leaves_in_redis_expires(counted):
    r = counted.redis
    for path in counted.paths:
        walk(counted, path, hold=True)
    held = list(r.scan_iter(count=1000))
    assert any(k.startswith(b"ivr:call:") for k in held), "held calls keep their state in Redis"
    for path in counted.paths:
        walk(counted, path)
    keys = [k.decode() for k in r.scan_iter(count=1000)]
    assert set(k.decode() for k in held) <= set(keys)
    forever = {k: r.type(k).decode() for k in keys if r.ttl(k) < 0 and not DURABLE_KEYS.match(k)}
    assert forever == {}


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="the benchmark starts its own redis-server")
def test_the_benchmark_runs_and_reports(tmp_path):
    from bench import run

    out = tmp_path / "bench.json"
    lines: list[str] = []
    parser = __import__("argparse").ArgumentParser()
    run.add_arguments(parser)
    args = parser.parse_args(["--quick", "--out", str(out), "--paths", "faq_en,office_by_town", "--per-path", "2"])
    assert run.run(args, lines.append) == 0, "\n".join(lines)
    result = json.loads(out.read_text())
    assert {"commit", "machine", "settings", "levels", "memory", "targets"} <= set(result)
    assert {"nproc", "cpu_model", "python"} <= set(result["machine"])
    level = result["levels"][0]
    assert level["calls"] == 4 and level["ratio"] is not None
    for target in ("system", "floor"):
        assert level[target]["error_total"] == 0, level[target]["error_examples"]
        assert level[target]["requests"] > 0
        assert {"/voice", "/voice/step", "/voice/status"} <= set(level[target]["latency_ms"])
        assert {"p50", "p95", "p99", "max"} <= set(level[target]["latency_ms"]["/voice/step"])
    memory = result["memory"]
    assert memory["held_calls"] == 10 and memory["bytes_per_call"] > 0
    assert memory["all_keys_expire"] is True
    assert any("ratio system/floor" in line for line in lines)
    # Each path alone, as --per-path asks: both paths measured against the floor, without errors.
    assert set(result["per_path"]) == {"faq_en", "office_by_town"}
    for name, alone in result["per_path"].items():
        assert alone["ratio"] is not None and alone["system"]["error_total"] == 0, name
        assert any(line.lstrip().startswith(name) for line in lines), name


def test_services_are_one_typed_object_built_once_and_no_module_wires_itself_in():
    """The steps' services are named and typed (no untyped bag); no handler module edits the app at start-up."""
    import typing

    from ivr import lines
    from ivr.services import Services

    hints = typing.get_type_hints(Services)
    assert len(hints) >= 10
    assert not [name for name, kind in hints.items() if kind is typing.Any]
    lines.load_all()
    for name in ("inmate", "offices", "payments", "staff"):
        module = __import__(f"ivr.lines.{name}", fromlist=["x"])
        assert not hasattr(module, "setup"), f"ivr/lines/{name}.py still wires itself into the app"


def test_the_web_layer_knows_no_node_type_and_no_sdu():
    """webhooks.py turns requests into turns; what a node type allows and the SDU's time budget are the
    engine's (the late <Record> action and the shared budget are tested end to end elsewhere)."""
    source = (ROOT / "ivr" / "web" / "webhooks.py").read_text()
    assert "node.type" not in source and ".type ==" not in source and ".type !=" not in source
    assert "budget" not in source and "rt.flows" not in source


# What each folder may import of the others: the layout is the architecture (README "Code layout").
MAY_NOT_IMPORT = {
    "callflow": ("web", "lines", "domain", "jobs", "cli", "sdu", "app"),
    "domain": ("web", "lines", "cli", "app", "jobs.worker"),
    "sdu": ("web", "lines", "domain", "jobs", "cli", "callflow", "app"),
    "web": ("lines", "jobs", "cli"),
    "lines": ("web", "cli", "app", "jobs.worker"),
    "jobs": ("web", "lines", "cli", "app"),
}


def _imports(path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ivr."):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ivr."))
    return found


def test_each_folder_imports_only_what_is_below_it():
    broken = []
    for folder, banned in MAY_NOT_IMPORT.items():
        for path in sorted((ROOT / "ivr" / folder).glob("*.py")):
            for name in _imports(path):
                if any(name == f"ivr.{b}" or name.startswith(f"ivr.{b}.") for b in banned):
                    broken.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not broken, broken


def test_each_module_says_its_one_job_in_its_first_line():
    import ast

    silent = []
    for path in sorted((ROOT / "ivr").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if path.name == "__init__.py" and not path.read_text().strip():
            continue        # an empty package marker
        if not doc or len(doc.split("\n")[0].split()) < 4:
            silent.append(str(path.relative_to(ROOT)))
    assert not silent, silent


def test_staff_lists_read_every_item_in_one_round_trip(monkeypatch, redis_client):
    """`ivr requests list`, the console's lists and exports: the index, then every item in one pipeline,
    however many there are; done ones left out of the open list, unsealed as `get` gives them."""
    from ivr.domain.requests import RequestStore
    from ivr.sealing import Sealer
    from ivr.settings import DEV_SECRET_KEY

    client, counter = counting_client(monkeypatch)
    store = RequestStore(client, Sealer(DEV_SECRET_KEY))
    refs = [store.open_request(f"CA{i}", f"765432{i}", lang="en", source="main menu") for i in range(5)]
    store.done(refs[1], "ana")
    client.ping()
    counter.n, counter.trips = 0, []
    listed = list(store.items())
    assert counter.n == 2, counter.trips
    assert [ref for ref, _ in listed] == [r for r in refs if r != refs[1]]
    assert all(item == store.get(ref) and item["inmate"].startswith("765432") for ref, item in listed)
    assert [ref for ref, _ in store.items(("done",))] == [refs[1]]
