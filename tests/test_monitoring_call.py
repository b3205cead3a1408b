"""Issue 19: `ivr call --url ... --sign-url ...` as a synthetic monitoring call. An operator runs a scripted
call every few minutes; it exits 0 only when the call reached its expected end, and otherwise 1 with one
line saying what went wrong (a missing answer, the fallback message, a server that does not answer)."""

from __future__ import annotations

import threading

import pytest
from werkzeug.serving import make_server

from ivr import store
from ivr.cli.main import main
from tests.redis_server import free_port

PUBLIC = "https://ivr.example.org"
# The call center: silence at the language choice, payments (1), income withholding (2).
KEYS = "-,1,2"


@pytest.fixture
def served(make_app):
    servers = []

    def serve(**kwargs) -> str:
        server = make_server("127.0.0.1", 0, make_app(PUBLIC_BASE_URL=PUBLIC, **kwargs), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"
    yield serve
    for server in servers:
        server.shutdown()


def monitor(url: str, *expect: str) -> list[str]:
    args = ["call", "--url", url, "--sign-url", PUBLIC, "--keys", KEYS]
    for item in expect:
        args += ["--expect-end", item[4:]] if item.startswith("end:") else ["--expect", item]
    return args


def test_a_call_that_reaches_its_expected_end_exits_0(served, capsys):
    url = served()
    assert main(monitor(url, "Connecticut", "An income   withholding is a court order", "end:keys")) == 0
    assert "went as expected" in capsys.readouterr().err


@pytest.mark.parametrize("expect", [
    ["words no menu says"],                     # an answer that is not there
    ["end:hangup"],                             # the system should have hung up, and did not
    ["end:transfer"],
    ["payments", "Connecticut"],                # heard, but not in this order
])
def test_a_call_that_does_not_go_as_scripted_exits_1_with_one_line(served, capsys, expect):
    url = served()
    capsys.readouterr()
    assert main(monitor(url, *expect)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ivr call: the call did not go as expected")


def test_the_fallback_message_is_not_the_expected_end(served, capsys):
    # Redis down: every webhook answers the fallback (hours, a number to call, goodbye) and hangs up.
    url = served(redis=store.connect(f"redis://127.0.0.1:{free_port()}/0", "test"))
    assert main(monitor(url, "end:keys")) == 1
    assert "did not go as expected" in capsys.readouterr().err


def test_a_server_that_does_not_answer_exits_non_zero(capsys):
    assert main(monitor(f"http://127.0.0.1:{free_port()}", "end:keys")) != 0
    assert capsys.readouterr().err.strip()


def test_a_mistyped_expected_end_is_refused(capsys):
    with pytest.raises(SystemExit) as refused:
        main(["call", "--expect-end", "hang up"])
    assert refused.value.code == 2
