"""Dependency and licence review for what we ship (the service and CLI packages' runtime deps).

What runs offline and what needs the network:

- **Licences (offline)**: the packages are installed from ``uv.lock`` into a dedicated venv
  under the cache dir (PyPI is needed only for wheels not cached yet), then ``pip-licenses``
  reads each installed distribution's metadata and the policy below classifies it: permissive
  licences pass; weak copyleft (LGPL, MPL) passes with a review note (used unmodified, as
  libraries); anything else — strong copyleft, unknown, missing — fails, naming the packages.
- **Vulnerabilities (network)**: ``pip-audit`` checks the locked versions (exported from
  ``uv.lock`` with hashes) against the PyPI vulnerability API at pypi.org. Without access to
  it the audit says so and fails, unless ``--offline`` was asked for, which skips that part
  and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from ops.core import project, python_tools
from ops.core.runner import Runner

PERMISSIVE = re.compile(
    r"\b(MIT|BSD|0BSD|Apache|ISC|ISCL|PSF|Python Software Foundation|Unlicense|Zlib|HPND|"
    r"CC0|Public Domain)\b",
    re.IGNORECASE,
)
WEAK_COPYLEFT = re.compile(r"\b(LGPL|Lesser General Public|MPL|Mozilla Public)\b", re.IGNORECASE)

# Reviewed exceptions: distribution name -> why it is acceptable. Empty today.
EXCEPTIONS: Mapping[str, str] = {}


@dataclass(frozen=True)
class Finding:
    """One distribution and what the policy says about its licence."""

    name: str
    version: str
    licence: str
    verdict: str  # "ok", "review" or "fail"


def classify(name: str, licence: str) -> str:
    """The policy: ok (permissive), review (weak copyleft), fail (anything else)."""
    if name.lower() in EXCEPTIONS:
        return "ok"
    text = licence.strip()
    if not text or text.upper() == "UNKNOWN":
        return "fail"
    # An SPDX expression or a list: every alternative must be acceptable (strictest wins).
    parts = [p for p in re.split(r"\s+(?:AND|OR)\s+|;\s*", text) if p.strip("() ")]
    verdicts = {_classify_one(p.strip("() ")) for p in parts}
    if "fail" in verdicts:
        return "fail"
    return "review" if "review" in verdicts else "ok"


def _classify_one(licence: str) -> str:
    if WEAK_COPYLEFT.search(licence):
        return "review"
    if re.search(r"\bGPL\b|General Public License|AGPL|SSPL", licence, re.IGNORECASE):
        return "fail"
    return "ok" if PERMISSIVE.search(licence) else "fail"


def findings(report: Iterable[Mapping[str, str]]) -> list[Finding]:
    """Classify pip-licenses' JSON report."""
    return [
        Finding(row["Name"], row["Version"], row["License"], classify(row["Name"], row["License"]))
        for row in report
    ]


def audit_venv() -> Path:
    """The venv holding exactly the shipped packages and their runtime dependencies."""
    return project.cache_dir() / "audit-venv"


def install_shipped(runner: Runner) -> None:
    """Install the service and CLI packages (locked versions) into ``audit_venv()``."""
    packages = [project.SERVICE_DIST, project.CLI_DIST]
    runner.run(
        python_tools.uv(
            "sync", "--locked", "--no-default-groups", *(f"--package={p}" for p in packages)
        ),
        env={"UV_PROJECT_ENVIRONMENT": str(audit_venv()), "VIRTUAL_ENV": str(audit_venv())},
        cwd=project.ROOT,
    )


def licences(runner: Runner) -> list[Finding]:
    """Run pip-licenses on the audit venv; print and return the classified findings."""
    python = audit_venv() / "bin" / "python"
    argv = python_tools.uv_run(
        ["audit"], "pip-licenses", f"--python={python}", "--format=json", "--with-urls"
    )
    if runner.dry_run:
        runner.run(argv, cwd=project.ROOT)
        return []
    result = runner.run(argv, cwd=project.ROOT, capture=True)
    assert result is not None
    classified = findings(json.loads(result.stdout))
    for finding in sorted(classified, key=lambda f: (f.verdict != "fail", f.name.lower())):
        print(f"  {finding.verdict:<6} {finding.name} {finding.version}: {finding.licence}")
    return classified


def requirements_file(runner: Runner) -> Path:
    """Export the shipped packages' locked, hashed requirements for pip-audit."""
    path = project.cache_dir() / "audit-requirements.txt"
    if not runner.dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
    runner.run(
        python_tools.uv(
            "export",
            "--quiet",
            "--locked",
            "--no-default-groups",
            "--no-emit-workspace",
            f"--package={project.SERVICE_DIST}",
            f"--output-file={path}",
        ),
        cwd=project.ROOT,
    )
    return path


def vulnerabilities(runner: Runner) -> None:
    """pip-audit against PyPI's vulnerability API (network); fails on any package not audited.

    pip-audit exits 0 when it cannot reach the API at all (every package is "not found on
    PyPI" and skipped), so the JSON report is checked: a skip is a failure, never a pass.
    """
    requirements = requirements_file(runner)
    argv = python_tools.uv_run(
        ["audit"],
        "pip-audit",
        "--disable-pip",
        f"--requirement={requirements}",
        "--vulnerability-service=pypi",
        "--progress-spinner=off",
        "--format=json",
    )
    result = runner.run(argv, cwd=project.ROOT, check=False, capture=True)
    if result is None:  # dry run
        return
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise Exit(
            f"pip-audit failed (exit {result.exited}):\n{_last_lines(result.stderr)}", code=1
        ) from None
    check_vulnerability_report(report)


def check_vulnerability_report(report: Mapping[str, Any]) -> None:
    """Fail when a dependency is vulnerable or could not be audited; else print the count."""
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if d.get("skip_reason")]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    if vulnerable:
        lines = [
            f"{d['name']} {d['version']}: "
            + ", ".join(
                f"{v['id']} (fixed in {', '.join(v.get('fix_versions') or ['-'])})"
                for v in d["vulns"]
            )
            for d in vulnerable
        ]
        raise Exit("vulnerable dependencies:\n  " + "\n  ".join(lines), code=1)
    if skipped:
        raise Exit(
            f"{len(skipped)} of {len(dependencies)} dependencies could not be audited, e.g. "
            f"{skipped[0]['name']}: {skipped[0]['skip_reason']}\n"
            "the vulnerability scan needs the PyPI JSON API (https://pypi.org/pypi/NAME/VERSION/"
            "json), which is not reachable from here; run `invoke audit --offline` for the "
            "offline part only, or run the audit where pypi.org is reachable",
            code=1,
        )
    print(f"no known vulnerabilities in {len(dependencies)} locked dependencies")


def _last_lines(text: str, count: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


def run(runner: Runner, *, offline: bool) -> None:
    """The whole audit: licences (offline), then vulnerabilities (network) unless offline."""
    print("licence review (offline: installed metadata via pip-licenses):")
    install_shipped(runner)
    classified = licences(runner)
    failed = [f for f in classified if f.verdict == "fail"]
    review = [f for f in classified if f.verdict == "review"]
    if review:
        print(
            "weak copyleft, acceptable as unmodified libraries: "
            + ", ".join(f"{f.name} ({f.licence})" for f in review)
        )
    if failed:
        raise Exit(
            "licence review failed for: "
            + "; ".join(f"{f.name} {f.version} ({f.licence or 'no licence'})" for f in failed)
            + "\nreplace the dependency, or record a reviewed exception in "
            "ops/release/audit.py EXCEPTIONS",
            code=1,
        )
    if offline:
        print("vulnerability scan skipped (--offline): it needs the PyPI vulnerability API")
        return
    print("vulnerability scan (network: pip-audit against the PyPI vulnerability API):")
    vulnerabilities(runner)


def summary(classified: Sequence[Finding]) -> str:
    """One line: how many packages passed, need review, failed."""
    counts = {v: sum(1 for f in classified if f.verdict == v) for v in ("ok", "review", "fail")}
    return ", ".join(f"{n} {v}" for v, n in counts.items())
