"""`invoke audit`: the licence policy, the vulnerability report check, and a real offline run."""

from __future__ import annotations

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

from ops.core.runner import Runner
from ops.release import audit
from tests._support.tools import require_tool


@pytest.mark.parametrize(
    ("licence", "verdict"),
    [
        ("MIT", "ok"),
        ("MIT License", "ok"),
        ("Apache-2.0 OR BSD-2-Clause", "ok"),
        ("BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0", "ok"),
        ("Python Software Foundation License", "ok"),
        ("LGPL-3.0-only", "review"),
        ("Mozilla Public License 2.0 (MPL 2.0)", "review"),
        ("GPL-3.0-or-later", "fail"),
        ("GNU General Public License v3 (GPLv3)", "fail"),
        ("MIT AND GPL-2.0-only", "fail"),
        ("AGPL-3.0", "fail"),
        ("UNKNOWN", "fail"),
        ("", "fail"),
        ("Proprietary", "fail"),
    ],
)
def test_licence_policy(licence: str, verdict: str) -> None:
    assert audit.classify("somepackage", licence) == verdict


def test_a_reviewed_exception_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "EXCEPTIONS", {"oddpkg": "reviewed: dual-licensed, we use MIT"})
    assert audit.classify("OddPkg", "Proprietary") == "ok"


def test_an_unreachable_vulnerability_api_is_a_failure_not_a_pass() -> None:
    # What pip-audit 2.x reports (exit 0!) when the PyPI JSON API answers 404 for everything.
    report = {
        "dependencies": [
            {
                "name": "fastapi",
                "version": "0.121.0",
                "skip_reason": "Dependency not found on PyPI and could not be audited: fastapi",
            },
            {"name": "httpx", "version": "0.28.1", "vulns": []},
        ]
    }
    with pytest.raises(Exit) as raised:
        audit.check_vulnerability_report(report)
    message = str(raised.value.message)
    assert "1 of 2 dependencies could not be audited" in message
    assert "invoke audit --offline" in message


def test_a_vulnerable_dependency_is_named_with_its_fix() -> None:
    report = {
        "dependencies": [
            {
                "name": "jinja2",
                "version": "3.1.2",
                "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}],
            },
        ]
    }
    with pytest.raises(Exit, match=r"jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 \(fixed in 3.1.3\)"):
        audit.check_vulnerability_report(report)


def test_a_clean_report_passes(capsys: pytest.CaptureFixture[str]) -> None:
    audit.check_vulnerability_report({"dependencies": [{"name": "a", "version": "1", "vulns": []}]})
    assert "no known vulnerabilities in 1 locked dependencies" in capsys.readouterr().out


def test_dry_run_prints_every_command_and_runs_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    audit.run(Runner(ctx=Context(), dry_run=True), offline=False)
    err = capsys.readouterr().err
    assert "sync --locked --no-default-groups --package=llm-optimizer-service" in err
    assert "pip-licenses" in err
    assert "export --quiet --locked" in err
    assert "pip-audit --disable-pip" in err


@pytest.mark.slow
def test_offline_licence_review_of_what_we_ship_passes() -> None:
    """The real thing: install the shipped packages from uv.lock and review their licences."""
    require_tool("uv")
    runner = Runner(ctx=Context(), echo=False)
    audit.install_shipped(runner)
    classified = audit.licences(runner)
    names = {f.name.lower() for f in classified}
    assert {"fastapi", "sqlalchemy", "httpx"} <= names
    assert [f for f in classified if f.verdict == "fail"] == []
