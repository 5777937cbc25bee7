"""Royalty statements end to end: a batch of 50 payees (three agencies, eight authors with
their own servers, two with no destination) plus three bad files, taken in and resolved
against the Consonance sandbox over HTTP, approved, and delivered by a real engine to a real
OpenSSH ``sshd`` with one chrooted account per agency, per author and for finance.

* every account's tree holds exactly its own payees' statements (by SHA-256 against the
  originals and by the PDF text), no statement twice, and the finance copy holds all;
* a statement naming two payees, one naming an unknown contact and one with no text layer
  are quarantined with their reasons and sent nowhere; the two unrouted payees are held;
* nothing leaves before ``finance approve``; after a partial failure ``send --unsent`` sends
  only the rest; ``resend`` sends one again and records who and why;
* an age-encrypted statement decrypts with its recipient's key and not with another's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pyrage
import pytest
import pytest_asyncio
import tomlkit
from pypdf import PdfReader

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.finance_handler import find_batch, resend, send
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.models import Contact
from consonance_sftp.sandbox.consonance.statements import (
    no_text_layer,
    statement_catalogue,
    statement_payees,
    two_payees,
    unknown_payee,
    write_statements,
)
from consonance_sftp.sandbox.openssh import OpenSshServer, OpenSshUnavailable, start_openssh
from tests.cli import CLI
from tests.fixtures.consonance_sandbox import SandboxHandle, start_sandbox

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.sshd, pytest.mark.slow]

AGENCIES = {"agency-a": (0, 15), "agency-b": (15, 30), "agency-c": (30, 40)}
OWN = range(40, 48)  # authors with their own servers
HELD = range(48, 50)  # no destination configured
BATCH = "2026H1"


def _user(partner: str) -> str:
    return f"csf-{partner}"


@dataclass
class World:
    app: App
    runner: DeliveryRunner
    sshd: OpenSshServer
    sandbox: SandboxHandle
    config: Path
    payees: list[Contact]
    routed: dict[str, set[int]]  # partner -> contact IDs it should receive
    originals: dict[int, str]  # contact ID -> SHA-256 of its statement as exported
    age_partner: str
    age_identity: pyrage.x25519.Identity

    def tree(self, partner: str) -> list[Path]:
        root = self.sshd.chroots[_user(partner)] / "upload"
        return sorted(p for p in root.rglob("*") if p.is_file())

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--config", str(self.config), "finance", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "250"},
        )

    def show(self) -> dict[str, Any]:
        done = self.cli("show", BATCH, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("finance")
    catalogue = statement_catalogue(50, seed=1)
    payees = statement_payees(catalogue, 50)
    assert len(payees) == 50
    routed: dict[str, set[int]] = {
        name: {p.id for p in payees[a:b]} for name, (a, b) in AGENCIES.items()
    }
    for i in OWN:
        routed[f"author-{i}"] = {payees[i].id}
    partners = [*routed, "finance"]
    try:
        sshd = start_openssh(root / "sshd", chroot=False, chroot_users=[_user(p) for p in partners])
    except OpenSshUnavailable as exc:
        pytest.skip(f"OpenSSH sshd with chrooted accounts is not available: {exc}")
    sandbox = start_sandbox(catalogue)
    identity = pyrage.x25519.Identity.generate()
    age_partner = f"author-{OWN[0]}"

    # The batch as finance exports it, then the three bad files in it.
    batch = root / "statements" / BATCH
    write_statements(catalogue, batch, payees=50, period=BATCH)
    two_payees(catalogue, batch, contact_ids=(payees[0].id, payees[1].id), period=BATCH)
    no_text_layer(catalogue, batch, contact_id=payees[2].id, period=BATCH)
    unknown_payee(catalogue, batch, period=BATCH)
    originals = {
        p.id: hashlib.sha256((batch / f"statement_{BATCH}_{p.id}.pdf").read_bytes()).hexdigest()
        for p in payees
    }

    token = root / "token"
    token.write_text(sandbox.token)
    partner = {
        "host": sshd.host,
        "port": sshd.port,
        "host_keys": [sshd.known_hosts_line],
        "auth": {"key": str(sshd.client_key_path)},
        "folders": {"send": "/upload"},
    }
    raw: dict[str, Any] = {
        "state_dir": str(root / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "engine": {"retry_max_attempts": 2, "retry_initial_interval_s": 0.1},
        "partners": {p: {**partner, "user": _user(p)} for p in partners},
        "flows": {
            "royalties": {
                "kind": "finance_out",
                "statements": str(root / "statements"),
                "statement_pattern": "statement_*_{contact}.pdf",
                "settle_seconds": 0,
                "publisher": "Sandbox Books",
                "agents": {
                    name: {"partner": name, "payees": sorted(ids)}
                    for name, ids in routed.items()
                    if name.startswith("agency")
                },
                "payees": {
                    str(payees[i].id): {"partner": f"author-{i}"}
                    | (
                        {"encrypt": "age", "age_recipients": [str(identity.to_public())]}
                        if f"author-{i}" == age_partner
                        else {}
                    )
                    for i in OWN
                }
                # One payee without a server: held for e-mail, never guessed.
                | {str(payees[HELD[0]].id): {"email": "rob@example.org"}},
                "finance_copy": {"partner": "finance"},
            }
        },
    }
    config = root / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(raw))
    app = App(Settings.model_validate(raw), config)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        yield World(
            app, runner, sshd, sandbox, config, payees, routed, originals, age_partner, identity
        )
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()
        sandbox.stop()
        sshd.stop()


def _text(data: bytes) -> str:
    return "\n".join(page.extract_text() or "" for page in PdfReader(BytesIO(data)).pages)


async def test_a_batch_is_resolved_and_the_bad_files_quarantined_with_their_reasons(
    world: World,
) -> None:
    await run_flow(world.app, "royalties", trigger="test", runner=world.runner)
    shown = world.show()
    states = {s["file"]: s for s in shown["statements"]}
    assert len(states) == 51  # 50 payees' files (two replaced by bad ones) and one unknown
    p = world.payees
    two = states[f"statement_{BATCH}_{p[0].id}.pdf"]
    assert two["state"] == "quarantined"
    assert "also another payee" in two["reason"] and f"contact {p[1].id}" in two["reason"]
    blank = states[f"statement_{BATCH}_{p[2].id}.pdf"]
    assert blank["state"] == "quarantined" and "no text layer" in blank["reason"]
    unknown = [s for s in shown["statements"] if "no Consonance contact" in (s["reason"] or "")]
    assert len(unknown) == 1 and unknown[0]["state"] == "quarantined"
    by_mail, unrouted = (states[f"statement_{BATCH}_{p[i].id}.pdf"] for i in HELD)
    assert by_mail["state"] == "held" and "e-mail to rob@example.org" in by_mail["reason"]
    assert unrouted["state"] == "held" and "no destination" in unrouted["reason"]
    resolved = [s for s in shown["statements"] if s["state"] == "resolved"]
    assert len(resolved) == 50 - 2 - 2  # two quarantined payees, two held
    for s in resolved:
        roles = sorted(d["role"] for d in s["destinations"])
        assert roles[-1] == "payee" or roles[0].startswith("agent:")
        assert "finance" in roles
    listed = world.cli("batches")
    assert listed.returncode == 0, listed.stderr
    assert BATCH in listed.stdout and "46 resolved" in listed.stdout
    # Taking the same batch again takes nothing twice.
    await run_flow(world.app, "royalties", trigger="test", runner=world.runner)
    assert len(world.app.store.list_finance_batches(flow="royalties")) == 1


async def test_nothing_leaves_before_approval_then_a_partial_failure_and_the_unsent(
    world: World,
) -> None:
    with pytest.raises(ConsonanceSftpError, match="nothing approved"):
        await send(world.app, world.runner, BATCH, unsent=False, by="test")
    assert all(not world.tree(p) for p in [*world.routed, "finance"])

    done = world.cli("approve", BATCH, "--by", "alice")
    assert done.returncode == 0, done.stderr
    assert "approved by alice" in done.stdout

    # One author's server refuses writes: its statement fails, every other one is sent.
    broken = f"author-{OWN[1]}"
    upload = world.sshd.chroots[_user(broken)] / "upload"
    upload.chmod(0o555)
    try:
        first = await send(world.app, world.runner, BATCH, unsent=False, by="alice")
    finally:
        upload.chmod(0o755)
    assert len(first.failed) == 1 and len(first.sent) == 45
    failed_name = next(iter(first.failed))
    assert str(world.payees[OWN[1]].id) in failed_name
    before = {p: [f.stat().st_mtime_ns for f in world.tree(p)] for p in world.routed}

    with pytest.raises(ConsonanceSftpError, match="sent before") as refused:
        await send(world.app, world.runner, BATCH, unsent=False, by="alice")
    assert "--unsent" in (refused.value.hint or "")
    rest = await send(world.app, world.runner, BATCH, unsent=True, by="alice")
    assert rest.sent == [failed_name] and not rest.failed
    after = {p: [f.stat().st_mtime_ns for f in world.tree(p)] for p in world.routed}
    assert after == {**before, broken: after[broken]}  # nothing else was written again
    assert before[broken] == [] and len(after[broken]) == 3  # PDF, CSV, JSON


async def test_every_partner_holds_exactly_its_own_payees_statements(world: World) -> None:
    by_hash = {sha: contact for contact, sha in world.originals.items()}
    seen: dict[int, str] = {}
    for partner, expected in world.routed.items():
        got: set[int] = set()
        for path in world.tree(partner):
            if path.suffix not in (".pdf", ".age") or not path.name.endswith((".pdf", ".pdf.age")):
                continue
            data = path.read_bytes()
            if path.name.endswith(".age"):
                data = pyrage.decrypt(data, [world.age_identity])
            contact = by_hash[hashlib.sha256(data).hexdigest()]
            assert contact in expected, f"{partner} holds contact {contact}'s statement"
            assert f"Contact ID: {contact}" in _text(data)
            for other in world.payees:
                if other.id != contact:
                    assert f"Contact ID: {other.id}" not in _text(data)
            assert contact not in seen, f"contact {contact} at {seen.get(contact)} and {partner}"
            seen[contact] = partner
            got.add(contact)
            if partner.startswith("agency"):
                assert path.parent.name.startswith(f"{contact}-")  # each payee its own folder
        quarantined = {world.payees[0].id, world.payees[2].id}
        assert got == expected - quarantined
    finance = [p for p in world.tree("finance") if p.suffix == ".pdf"]
    assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in finance) == sorted(
        world.originals[c] for c in seen
    )
    held = {world.payees[i].id for i in HELD}
    assert not held & set(seen)


async def test_an_age_statement_opens_with_its_recipients_key_only(world: World) -> None:
    files = world.tree(world.age_partner)
    assert files and all(f.name.endswith(".age") for f in files)
    pdf = next(f for f in files if f.name.endswith(".pdf.age"))
    data = pyrage.decrypt(pdf.read_bytes(), [world.age_identity])
    assert data.startswith(b"%PDF")
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(pdf.read_bytes(), [pyrage.x25519.Identity.generate()])
    companion = next(f for f in files if f.name.endswith(".json.age"))
    facts = json.loads(pyrage.decrypt(companion.read_bytes(), [world.age_identity]))
    assert str(world.payees[OWN[0]].id) in json.dumps(facts)


async def test_resend_sends_one_statement_again_and_records_who_and_why(world: World) -> None:
    batch = find_batch(world.app, BATCH)
    target = next(
        s
        for s in world.app.store.list_statements(batch.id, states=("sent",))
        if s.payee_id == world.payees[OWN[2]].id
    )
    out = await resend(world.app, world.runner, target.id, by="bob", reason="author lost it")
    assert out.sent == [target.file_name]
    events = [
        e
        for e in world.app.store.list_audit(subject=f"statement:{target.id}", limit=50)
        if e.details.get("details", {}).get("reason") == "author lost it"
    ]
    assert events and events[0].actor == "user:bob"
    assert events[0].action == "finance.statement_sent"
    assert events[0].details["details"]["generation"] == 1
    rows = [
        r
        for r in world.app.store.list_deliveries(partner=f"author-{OWN[2]}", limit=50)
        if r.generation == 1
    ]
    assert len(rows) == 3  # the PDF and its two companions, one generation up
    with pytest.raises(ConsonanceSftpError, match="reason"):
        await resend(world.app, world.runner, target.id, by="bob", reason=" ")
