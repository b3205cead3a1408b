"""Production refuses to start on development secrets, short keys and malformed Twilio settings (issue 13)."""

from __future__ import annotations

import pytest

from ivr.app import create_app
from ivr.sdu.client import DEV_API_KEY
from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, DEV_SECRET_KEY, ConfigError, from_env

GOOD = {
    "IVR_ENV": "production",
    "TWILIO_ACCOUNT_SID": "AC" + "5f3e" * 8,
    "TWILIO_AUTH_TOKEN": "0123456789abcdef" * 2,
    "IVR_SECRET_KEY": "k7Qw9Zr2Lm4Xp8Vt1Bn6Hy3Jd5Fs0Gc!",
    "SDU_BASE_URL": "https://sdu.example.org/api",
    "SDU_API_KEY": "a-real-looking-sdu-key-0123456789",
    "PUBLIC_BASE_URL": "https://ivr.example.org",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def test_a_complete_production_environment_is_accepted():
    config = from_env(GOOD)
    assert config["IVR_ENV"] == "production" and config["PUBLIC_BASE_URL"] == "https://ivr.example.org"


@pytest.mark.parametrize("name, value, says", [
    ("TWILIO_AUTH_TOKEN", DEV_AUTH_TOKEN, "TWILIO_AUTH_TOKEN is the development value"),
    ("TWILIO_AUTH_TOKEN", "", "TWILIO_AUTH_TOKEN must be set"),
    ("TWILIO_AUTH_TOKEN", "   ", "TWILIO_AUTH_TOKEN must be set"),
    ("TWILIO_AUTH_TOKEN", "short", "TWILIO_AUTH_TOKEN must be Twilio's 32 hexadecimal"),
    ("IVR_SECRET_KEY", DEV_SECRET_KEY, "IVR_SECRET_KEY is the development value"),
    ("IVR_SECRET_KEY", "x", "IVR_SECRET_KEY must be at least 32 characters"),
    ("IVR_SECRET_KEY", "a" * 40, "IVR_SECRET_KEY must not be one character repeated"),
    ("TWILIO_ACCOUNT_SID", DEV_ACCOUNT_SID, "TWILIO_ACCOUNT_SID is the development value"),
    ("TWILIO_ACCOUNT_SID", "AC123", "TWILIO_ACCOUNT_SID must be AC followed by 32 hexadecimal"),
    ("TWILIO_ACCOUNT_SID", "SK" + "5f3e" * 8, "TWILIO_ACCOUNT_SID must be AC followed by 32 hexadecimal"),
    ("PUBLIC_BASE_URL", "https://", "PUBLIC_BASE_URL must be the public https:// origin"),
    ("PUBLIC_BASE_URL", "https://ivr.example.org/voice", "PUBLIC_BASE_URL must be the public https:// origin"),
    ("PUBLIC_BASE_URL", "https://user:pw@ivr.example.org", "PUBLIC_BASE_URL must be the public https:// origin"),
    ("PUBLIC_BASE_URL", "http://ivr.example.org", "PUBLIC_BASE_URL must be the public https:// origin"),
    ("SDU_API_KEY", DEV_API_KEY, "SDU_API_KEY is the development value"),
    ("SDU_BASE_URL", "sdu.example.org", "SDU_BASE_URL must be an https:// URL"),
    ("SDU_BASE_URL", "http://sdu.example.org", "SDU_BASE_URL must be an https:// URL"),
    ("IVR_SECRET_KEY_PREVIOUS", DEV_SECRET_KEY, "IVR_SECRET_KEY_PREVIOUS is the development value"),
    ("IVR_SECRET_KEY_PREVIOUS", "tooshort", "IVR_SECRET_KEY_PREVIOUS must be at least 32 characters"),
])
def test_production_refuses_development_and_malformed_values(name, value, says):
    with pytest.raises(ConfigError, match=says):
        from_env({**GOOD, name: value})


def test_every_problem_is_named_at_once():
    """An operator fixes a deploy in one round, not one variable per restart."""
    with pytest.raises(ConfigError) as err:
        from_env({"IVR_ENV": "production", "IVR_SECRET_KEY": "x", "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN})
    text = str(err.value)
    for name in ("IVR_SECRET_KEY", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "PUBLIC_BASE_URL", "SDU_API_KEY"):
        assert name in text
    assert DEV_AUTH_TOKEN not in text and "x" not in text.split(":")[0]   # values are never echoed


def test_the_factory_itself_refuses_a_production_environment_with_the_development_token(monkeypatch):
    """The attack: production started with the development token answers requests signed with it."""
    for name, value in {**GOOD, "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="development value"):
        create_app()


def test_the_readme_names_data_dir_as_the_code_reads_it():
    """The README once said DATA_DIR while the code read IVR_DATA_DIR: recordings went to a throwaway disk."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "IVR_DATA_DIR" in readme
    assert "One `DATA_DIR`" not in readme and "`DATA_DIR/" not in readme and "Back up `DATA_DIR`" not in readme


def test_data_dir_without_its_ivr_prefix_is_refused_in_production_and_warned_about_elsewhere(caplog):
    with pytest.raises(ConfigError, match="DATA_DIR is not read: set IVR_DATA_DIR"):
        from_env({**GOOD, "DATA_DIR": "/srv/ivr"})
    config = from_env({"DATA_DIR": "/srv/ivr"})
    assert "DATA_DIR is not read" in caplog.text and str(config["DATA_DIR"]) != "/srv/ivr"
    assert str(from_env({**GOOD, "IVR_DATA_DIR": "/srv/ivr", "DATA_DIR": "/srv/ivr"})["DATA_DIR"]) == "/srv/ivr"


# --- development keys never serve beyond loopback unless development is stated --------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _web_line(port: int, host: str) -> list[str]:
    """The Procfile's web: line as a deploy runs it, on `host`."""
    import shlex
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    line = next(ln for ln in (root / "Procfile").read_text().splitlines() if ln.startswith("web:"))
    argv = shlex.split(line.split(":", 1)[1].replace("${PORT:-5000}", str(port)).replace(
        "${WEB_CONCURRENCY:-2}", "1").replace("${WEB_THREADS:-4}", "1"))
    argv[argv.index("--bind") + 1] = f"{host}:{port}"
    return [str(Path(sys.executable).parent / "gunicorn"), *argv[1:]]


@pytest.mark.parametrize("ivr_env, refused", [(None, True), ("development", False)])
def test_the_web_line_refuses_a_public_bind_when_ivr_env_was_forgotten(ivr_env, refused, tmp_path):
    """A deploy that forgot IVR_ENV would serve development secrets to the world: it stops instead."""
    import os
    import signal
    import subprocess
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "TWILIO_", "SDU_", "PUBLIC_"))}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"     # nothing answers: the app starts on its fallback
    env["TMPDIR"] = str(tmp_path)
    if ivr_env:
        env["IVR_ENV"] = ivr_env
    port = _free_port()
    proc = subprocess.Popen(_web_line(port, "0.0.0.0"), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        if refused:
            out, _ = proc.communicate(timeout=30)
            assert proc.returncode != 0
            assert "refusing to listen on 0.0.0.0 with development secrets" in out
        else:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                import requests
                try:
                    if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    time.sleep(0.2)
            assert proc.poll() is None, proc.stdout.read()
            # Its own control socket, named by its master: a second web host or the stub never shares it.
            assert (tmp_path / f"ivr-web-{proc.pid}.ctl").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)


def test_the_sdu_stub_opens_no_control_socket_of_its_own(tmp_path):
    """gunicorn's default control socket is one path per user: the stub took the web server's."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import requests

    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ivr"), "sdu-stub", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        assert proc.poll() is None
        assert not (tmp_path / ".gunicorn").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_ivr_serve_refuses_a_public_host_unless_development_is_stated(monkeypatch, capsys):
    from ivr.cli.main import main

    monkeypatch.delenv("IVR_ENV", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", str(_free_port())]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err


# --- the secret key rotates without losing what was sealed ---------------------------------------------

def test_a_rotated_secret_key_still_opens_old_requests_and_reseal_moves_them_to_the_new_key(
        redis_client, monkeypatch, capsys):
    from ivr.cli.main import main
    from ivr.domain.requests import RequestStore
    from ivr.sealing import Sealer

    old, new = "old-key-" + "1" * 30 + "x", "new-key-" + "2" * 30 + "y"
    ref = RequestStore(redis_client, Sealer(old)).open_request("CA" + "a" * 32, "7654321", lang="en",
                                                               source="main menu", caller="+18605550177")
    import os
    monkeypatch.setenv("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9"))
    monkeypatch.setenv("IVR_SECRET_KEY", new)
    assert main(["requests", "list"]) == 0
    assert "inmate *****21" not in capsys.readouterr().out           # the new key alone cannot open it
    monkeypatch.setenv("IVR_SECRET_KEY_PREVIOUS", old)
    assert main(["requests", "list"]) == 0
    assert "inmate *****21" in capsys.readouterr().out               # during the rotation it can
    assert main(["requests", "reseal"]) == 0
    assert "resealed 1 request(s)" in capsys.readouterr().out
    assert RequestStore(redis_client, Sealer(new)).get(ref)["inmate"] == "7654321"   # the old key is no longer needed
    assert main(["requests", "reseal"]) == 0
    assert "resealed 0 request(s)" in capsys.readouterr().out


# --- ivr call against a server behind a TLS proxy -------------------------------------------------------

def test_ivr_call_signs_the_public_url_it_is_given_while_posting_to_another(make_app, capsys):
    """Behind a proxy the server checks signatures against PUBLIC_BASE_URL: a synthetic call must sign that."""
    import threading

    from werkzeug.serving import make_server

    from ivr.cli.main import main

    app = make_app(PUBLIC_BASE_URL="https://ivr.example.org")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert main(["call", "--url", url, "--keys", "q"]) != 0               # signed for the URL posted to: 403
        capsys.readouterr()
        assert main(["call", "--url", url, "--sign-url", "https://ivr.example.org", "--keys", "q"]) == 0
        assert "Connecticut" in capsys.readouterr().out
    finally:
        server.shutdown()
