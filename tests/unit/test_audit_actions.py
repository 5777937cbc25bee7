"""Every audit action the code writes is an ``AuditAction`` and is documented.

The docs page (docs/how-to/audit.md, "What the actions mean") lists each action; the code writes
them through ``models.AuditAction``, or as a literal in a module not yet moved to the enum, or
as ``delivery.<outcome>`` / ``intake.<outcome>`` of a ledger row.
"""

from __future__ import annotations

import re
from pathlib import Path

from consonance_sftp.models import AuditAction, DeliveryOutcome, IntakeOutcome

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "how-to" / "audit.md"
SRC = ROOT / "src" / "consonance_sftp"
# A quoted action literal: a known family, a dot, lower-case words.
LITERAL = re.compile(
    r"""["']((?:delivery|intake|package|onix|flow|partner|ledger|finance|archive|alert|user)(?:\.[a-z_-]+)+)["']"""
)


def documented() -> set[str]:
    text = DOC.read_text()
    section = text.split("## What the actions mean", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([a-z_.-]+)`", row.split("|")[1])}


def test_every_action_is_documented() -> None:
    missing = sorted(a.value for a in AuditAction if a.value not in documented())
    assert missing == [], f"add these to {DOC.relative_to(ROOT)}: {missing}"


def test_the_doc_lists_no_action_the_code_does_not_know() -> None:
    known = {a.value for a in AuditAction}
    assert sorted(documented() - known) == []


def test_ledger_outcomes_are_actions() -> None:
    """``delivery.<outcome>`` and ``intake.<outcome>`` are written for every ledger row."""
    known = {a.value for a in AuditAction}
    outcomes = {f"delivery.{o.value}" for o in DeliveryOutcome}
    outcomes |= {f"intake.{o.value}" for o in IntakeOutcome}
    assert sorted(outcomes - known) == []


def test_every_action_literal_in_the_code_is_an_action() -> None:
    """An action written as a plain string (``append_audit(..., "onix.feed.sent", ...)``)
    must be one of ``AuditAction``, so it is documented too."""
    known = {a.value for a in AuditAction}
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        for literal in LITERAL.findall(path.read_text()):
            found.setdefault(literal, str(path.relative_to(ROOT)))
    assert found, "the scan found no action at all: the pattern is wrong"
    unknown = {name: where for name, where in found.items() if name not in known}
    assert unknown == {}
