"""Keeps requirements.lock honest: compiled from pyproject.toml's current dependency lists, and its pins
audited against PyPI's advisory data (used by scripts/lock, scripts/setup, scripts/audit and the tests).

    python scripts/deps.py stamp    the line scripts/lock writes at the top of the lock
    python scripts/deps.py check    exit 1, saying "run scripts/lock", when the lock is out of date
    python scripts/deps.py audit    exit 1 on a known vulnerability in a pinned version
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
STAMP = "# compiled from pyproject.toml dependencies sha256:"
PYPI = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def inputs_hash(pyproject: Path = PYPROJECT) -> str:
    """The hash of what the lock is compiled from: the dependency lists, not the file's comments or layout."""
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project", {})
    inputs = {
        "build-system.requires": data.get("build-system", {}).get("requires", []),
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def lock_problem(lock: Path = LOCK, pyproject: Path = PYPROJECT) -> str | None:
    """None when the lock was compiled from pyproject's current dependency lists, else what is wrong."""
    if not lock.exists():
        return f"{lock.name} is missing: run scripts/lock"
    found = re.search(re.escape(STAMP) + r" ([0-9a-f]{64})", lock.read_text())
    if not found or found.group(1) != inputs_hash(pyproject):
        return (f"{lock.name} was not compiled from {pyproject.name}'s current dependency lists: "
                "run scripts/lock (then scripts/setup)")
    return None


def pins(lock: Path = LOCK) -> dict[str, str]:
    """name -> version of every package the lock pins (names in PyPI's normalised form)."""
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in PIN.findall(lock.read_text())}


class Unreachable(Exception):
    """PyPI's advisory data could not be read at all."""


def advisories(session, name: str, version: str) -> list[dict] | None:
    """PyPI's advisories (withdrawn ones left out) for name==version; None when PyPI has no data for that
    version. Raises Unreachable when PyPI does not answer."""
    import requests
    from packaging.version import InvalidVersion, Version

    try:
        response = session.get(f"{PYPI}/{name}/{version}/json", timeout=(5, 30))
        if response.status_code == 404:
            # A mirror may serve only the project's page, whose advisories are its latest release's.
            response = session.get(f"{PYPI}/{name}/json", timeout=(5, 30))
            if response.status_code == 404:
                return None
            response.raise_for_status()
            data = response.json()
            try:
                if Version(data["info"]["version"]) != Version(version):
                    return None
            except InvalidVersion:
                return None
        else:
            response.raise_for_status()
            data = response.json()
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    return [v for v in data.get("vulnerabilities") or [] if not v.get("withdrawn")]


def ignored_advisories(pyproject: Path) -> dict[str, str]:
    """[tool.ivr.audit-ignore]: advisory id (or alias) -> the written reason it does not apply."""
    table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("ivr", {}).get("audit-ignore", {})
    bad = [key for key, reason in table.items() if not isinstance(reason, str) or not reason.strip()]
    if bad:
        raise ValueError(f"{pyproject.name} [tool.ivr.audit-ignore]: give the reason each advisory is safe to "
                         f"ignore ({', '.join(bad)})")
    return table


def audit(lock: Path, pyproject: Path, out=print) -> int:
    """Prints what the audit found; 1 on a known vulnerability, 2 on a bad ignore list, else 0."""
    import requests

    try:
        ignore = ignored_advisories(pyproject)
    except ValueError as exc:
        out(f"dependency audit: {exc}")
        return 2
    pinned = pins(lock)
    found, unchecked, unreachable, used = [], [], None, set()
    with requests.Session() as session:
        for name, version in pinned.items():
            try:
                vulns = advisories(session, name, version)
            except Unreachable as exc:
                unreachable = str(exc)
                break
            if vulns is None:
                unchecked.append(f"{name}=={version}")
            seen: set[str] = set()
            for vuln in vulns or []:
                ids = [vuln["id"], *(vuln.get("aliases") or [])]
                if seen & set(ids):   # the same advisory again, from another database (PYSEC, GHSA)
                    continue
                seen.update(ids)
                reason = next((ignore[i] for i in ids if i in ignore), None)
                if reason is not None:
                    used.update(i for i in ids if i in ignore)
                    out(f"ignored {vuln['id']} in {name}=={version}: {reason}")
                    continue
                aliases = f" ({', '.join(ids[1:])})" if ids[1:] else ""
                fixed = vuln.get("fixed_in") or []
                fixed = f"fixed in {', '.join(fixed)}" if fixed else "no fixed release yet"
                summary = " ".join((vuln.get("summary") or vuln.get("details") or "").split())[:160]
                found.append(name)
                out(f"{name}=={version}: {vuln['id']}{aliases}, {fixed}: {summary}")
    for key in sorted(set(ignore) - used):
        if unreachable is None:
            out(f"note: [tool.ivr.audit-ignore] {key} matched no advisory now: remove it when it is no longer needed")
    if found:
        n = len(found)
        out(f"dependency audit failed: {n} known vulnerabilit{'y' if n == 1 else 'ies'} in "
            f"{len(set(found))} of the {len(pinned)} packages pinned in {lock.name}: bump the pin "
            "(scripts/lock --upgrade-package NAME), or list the advisory with the reason it does not apply "
            f"under [tool.ivr.audit-ignore] in {pyproject.name}")
        if unreachable:
            out(f"(the audit stopped early: advisory data unreachable ({unreachable}))")
        return 1
    if unreachable:
        out(f"dependency audit skipped: advisory data unreachable ({unreachable})")
        return 0
    checked = len(pinned) - len(unchecked)
    if unchecked:
        out(f"dependency audit: no known vulnerabilities in {checked} of the {len(pinned)} packages pinned in "
            f"{lock.name} (PyPI advisory data)")
        n = len(unchecked)
        out(f"dependency audit skipped for {n} package{'' if n == 1 else 's'}: advisory data unreachable "
            f"(no advisory data from PyPI for {', '.join(unchecked)})")
    else:
        out(f"dependency audit: no known vulnerabilities in the {len(pinned)} packages pinned in {lock.name} "
            "(PyPI advisory data)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/deps.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["stamp", "check", "audit"])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = parser.parse_args(argv)
    if args.command == "stamp":
        print(f"{STAMP} {inputs_hash(args.pyproject)}")
        return 0
    if args.command == "check":
        problem = lock_problem(args.lock, args.pyproject)
        if problem:
            print(f"warning: {problem}", file=sys.stderr)
        return 1 if problem else 0
    return audit(args.lock, args.pyproject)


if __name__ == "__main__":
    sys.exit(main())
