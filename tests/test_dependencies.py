"""Dependencies (issue 13): the packages installed are the ones requirements.lock pins, the lock was
compiled from pyproject.toml's current dependency lists, and the audit of the pins against PyPI's
advisory data fails on a known vulnerability and says so when it skipped for want of that data."""

from __future__ import annotations

import re
from importlib import metadata

import requests
import responses

from scripts import deps

FLASK_VULN = {
    "id": "GHSA-m2qf-hxjv-5gpq", "aliases": ["CVE-2023-30861"], "fixed_in": ["2.2.5", "2.3.2"],
    "summary": "Flask vulnerable to possible disclosure of permanent session cookie", "withdrawn": None,
}


def test_the_installed_packages_are_the_locked_ones():
    pinned = deps.pins()
    assert {"flask", "twilio", "redis", "pytest", "setuptools"} <= set(pinned)
    wrong = {name: (version, metadata.version(name)) for name, version in pinned.items()
             if metadata.version(name) != version}
    assert not wrong, f"installed versions differ from requirements.lock (run scripts/setup): {wrong}"


def test_the_lock_was_compiled_from_this_pyproject():
    assert deps.lock_problem() is None


def test_a_dependency_added_without_locking_is_reported(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    text = deps.PYPROJECT.read_text()
    pyproject.write_text(text.replace('"flask>=3.0",', '"flask>=3.0",\n    "rich>=13",'))
    problem = deps.lock_problem(deps.LOCK, pyproject)
    assert problem and "run scripts/lock" in problem
    # Comments and layout are not dependencies: only the lists count.
    pyproject.write_text(text.replace('"flask>=3.0",', '"flask>=3.0",   # the webhooks'))
    assert deps.lock_problem(deps.LOCK, pyproject) is None


def lock_of(tmp_path, *pins: str):
    lock = tmp_path / "requirements.lock"
    lock.write_text("".join(f"{pin} \\\n    --hash=sha256:{'0' * 64}\n    # via x\n" for pin in pins))
    return lock


def pyproject_ignoring(tmp_path, table: str):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(deps.PYPROJECT.read_text() + f"\n[tool.ivr.audit-ignore]\n{table}\n")
    return pyproject


def pypi(mock, name: str, version: str, vulns=(), latest: str | None = None, per_version: bool = True):
    """PyPI's JSON for name==version; per_version=False: a mirror that serves only the project page."""
    url = f"https://pypi.org/pypi/{name}/{version}/json"
    if per_version:
        mock.get(url, json={"info": {"version": version}, "vulnerabilities": list(vulns)})
    else:
        mock.get(url, status=404)
        mock.get(f"https://pypi.org/pypi/{name}/json",
                 json={"info": {"version": latest or version}, "vulnerabilities": list(vulns)})


def audit(capsys, lock, pyproject=None) -> tuple[int, str]:
    code = deps.main(["audit", "--lock", str(lock), "--pyproject", str(pyproject or deps.PYPROJECT)])
    return code, capsys.readouterr().out


def test_a_known_vulnerability_fails_the_audit(tmp_path, capsys):
    lock = lock_of(tmp_path, "flask==2.2.4", "six==1.17.0")
    with responses.RequestsMock() as mock:
        # PyPI lists an advisory once per database that has it (here OSV's PYSEC, and GitHub's): one finding.
        pysec = dict(FLASK_VULN, id="PYSEC-2023-62", aliases=["CVE-2023-30861", "GHSA-m2qf-hxjv-5gpq"])
        pypi(mock, "flask", "2.2.4", [pysec, FLASK_VULN])
        pypi(mock, "six", "1.17.0")
        code, out = audit(capsys, lock)
    assert code == 1
    assert "flask==2.2.4: PYSEC-2023-62 (CVE-2023-30861, GHSA-m2qf-hxjv-5gpq), fixed in 2.2.5, 2.3.2" in out
    assert "1 known vulnerability in 1 of the 2 packages" in out and "scripts/lock --upgrade-package" in out


def test_no_known_vulnerability_passes(tmp_path, capsys):
    lock = lock_of(tmp_path, "flask==3.1.3", "six==1.17.0")
    withdrawn = dict(FLASK_VULN, withdrawn="2024-01-01T00:00:00Z")
    with responses.RequestsMock() as mock:
        pypi(mock, "flask", "3.1.3", [withdrawn])
        pypi(mock, "six", "1.17.0")
        code, out = audit(capsys, lock)
    assert code == 0
    assert "no known vulnerabilities in the 2 packages pinned" in out


def test_an_advisory_ignored_with_a_reason_passes_and_is_named(tmp_path, capsys):
    lock = lock_of(tmp_path, "flask==2.2.4")
    pyproject = pyproject_ignoring(tmp_path, '"CVE-2023-30861" = "we set no permanent session cookie"')
    with responses.RequestsMock() as mock:
        pypi(mock, "flask", "2.2.4", [FLASK_VULN])
        code, out = audit(capsys, lock, pyproject)
    assert code == 0
    assert "ignored GHSA-m2qf-hxjv-5gpq in flask==2.2.4: we set no permanent session cookie" in out


def test_an_ignore_without_a_reason_is_refused(tmp_path, capsys):
    lock = lock_of(tmp_path, "flask==2.2.4")
    pyproject = pyproject_ignoring(tmp_path, '"CVE-2023-30861" = " "')
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        pypi(mock, "flask", "2.2.4", [FLASK_VULN])
        code, out = audit(capsys, lock, pyproject)
    assert code == 2
    assert "CVE-2023-30861" in out and "reason" in out


def test_unreachable_advisory_data_skips_the_audit_and_says_so(tmp_path, capsys):
    lock = lock_of(tmp_path, "flask==3.1.3", "six==1.17.0")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(re.compile(r"https://pypi\.org/.*"), body=requests.ConnectionError("Connection refused"))
        code, out = audit(capsys, lock)
    assert code == 0
    assert out.strip().splitlines()[-1].startswith("dependency audit skipped: advisory data unreachable (")
    assert "Connection refused" in out


def test_a_mirror_without_per_version_data_is_read_for_latest_pins_only(tmp_path, capsys):
    lock = lock_of(tmp_path, "flask==2.2.4", "six==1.17.0", "idna==3.21")
    with responses.RequestsMock() as mock:
        pypi(mock, "flask", "2.2.4", [], latest="3.1.3", per_version=False)      # not the latest: no data
        pypi(mock, "six", "1.17.0", [], per_version=False)                        # the latest: its advisories
        pypi(mock, "idna", "3.21", [], per_version=False)
        code, out = audit(capsys, lock)
    assert code == 0
    assert "no known vulnerabilities in 2 of the 3 packages pinned" in out
    assert ("dependency audit skipped for 1 package: advisory data unreachable "
            "(no advisory data from PyPI for flask==2.2.4)") in out

    with responses.RequestsMock() as mock:
        pypi(mock, "flask", "3.1.3", [FLASK_VULN], per_version=False)
        code, out = audit(capsys, lock_of(tmp_path, "flask==3.1.3"))
    assert code == 1 and "flask==3.1.3: GHSA-m2qf-hxjv-5gpq" in out

