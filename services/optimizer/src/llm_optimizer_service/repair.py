"""``llm-optimizer-service db repair``: find the stored state this release cannot use, and rebuild
what can be rebuilt.

The running service quarantines such state instead of stopping (``runtime.py``): an arm whose
statistics row cannot be read decides from no evidence, a workload whose spec cannot be used is
not served. Statistics are a fold over the decision and feedback logs, so an unreadable row is
rebuilt by replaying them (feedback whose values this release refuses is skipped and counted). A
spec is what an operator wrote: repair names it and the fix, and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from llm_optimizer_service.runtime import SPEC_ERRORS, unusable_spec_note
from llm_optimizer_service.specs import to_engine
from llm_optimizer_service.storage.repository import Repository


@dataclass(frozen=True)
class Finding:
    workload: str
    arm: str | None
    problem: str
    fix: str
    repairable: bool


@dataclass(frozen=True)
class Repaired:
    workload: str
    arm: str
    feedback: int
    decisions: int
    skipped: int


def find_problems(engine: Engine) -> list[Finding]:
    """Everything stored that this release cannot use; reads only."""
    findings: list[Finding] = []
    for stored in Repository(engine).load():
        name = stored.record.name
        try:
            to_engine(name, stored.record.spec)
        except SPEC_ERRORS as exc:
            findings.append(
                Finding(name, None, unusable_spec_note(name, exc), "PATCH or delete it", False)
            )
        for arm, why in sorted(stored.unreadable.items()):
            fix = "rebuild from the decision and feedback logs"
            findings.append(Finding(name, arm, why, fix, True))
    return findings


def repair(engine: Engine) -> tuple[list[Repaired], list[Finding]]:
    """Rebuild every unreadable arm's statistics; returns what was rebuilt and what is left."""
    repository = Repository(engine)
    ids = {record.name: record.id for record in repository.list_workloads()}
    repaired: list[Repaired] = []
    left: list[Finding] = []
    for finding in find_problems(engine):
        if not finding.repairable or finding.arm is None:
            left.append(finding)
            continue
        stats, skipped = repository.rebuild_arm_stats(ids[finding.workload], finding.arm)
        repaired.append(
            Repaired(finding.workload, finding.arm, stats.feedback, stats.decisions, skipped)
        )
    return repaired, left
