"""The hostile corpus: what a careless or malicious partner can upload, through a real OpenSSH
sshd, taken in by the real intake poll and engine, screened, each quarantined (or left alone)
with its own reason, nothing written outside the state dir's inbox and quarantine folders,
and the service still taking in a good file afterwards.

Every name and content is generated here (no binary blob in the repository). The corpus is
uploaded over SFTP as a partner would (asyncssh, as the partner's account, raw bytes for
names that are not UTF-8). Names no SFTP server can create (a ``/`` inside a name, a name over
255 bytes, an empty name, ``.`` and ``..``) are covered by the name-rule unit tests
(tests/unit/test_intake_screen.py, tests/unit/test_intake_units.py).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import tarfile
import time
import uuid
import warnings
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import pytest_asyncio

from consonance_sftp.app import App
from consonance_sftp.app.intake import InboxReport, poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.formats.names import printable_path
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.clamd import EICAR, FOUND, Clamd
from tests.settings import offline_settings, openssh_partner

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.sshd]

KIB = 1024
MIB = 1024 * KIB
MAX_FILE = 1 * MIB
MAX_ENTRIES = 20
MAX_TOTAL = 512 * KIB
ESCAPE = f"consonance-zip-slip-{uuid.uuid4().hex}"  # where a zip-slip would land, if followed


def pdf(tag: str) -> bytes:
    """A small, harmless PDF-looking file: only its name makes it hostile."""
    return b"%PDF-1.7\n% " + tag.encode("utf-8", "surrogateescape") + b"\n%%EOF\n"


def zipped(*entries: tuple[zipfile.ZipInfo | str, bytes]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": dup.zip, on purpose
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for info, data in entries:
                zf.writestr(info, data)
    return out.getvalue()


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


def encrypted(data: bytes) -> bytes:
    """The encrypted flag (bit 0) set in the local header and the central directory, as an
    encrypting tool leaves it (zipfile cannot write encrypted entries)."""
    raw = bytearray(data)
    raw[raw.index(b"PK\x03\x04") + 6] |= 0x1
    raw[raw.index(b"PK\x01\x02") + 8] |= 0x1
    return bytes(raw)


def tarred(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        member = tarfile.TarInfo(name)
        member.size = len(data)
        tf.addfile(member, io.BytesIO(data))
    return out.getvalue()


def b(name: str) -> bytes:
    return name.encode("utf-8")


# name (raw bytes) -> (content, the reason code expected). Each dangerous-name class, with
# a harmless content, so only the name decides.
NAMES: dict[bytes, str] = {
    b"x\\..\\..\\evil.pdf": "name-traversal",
    b"a\\..\\b.pdf": "name-traversal",
    b"\\etc\\passwd.pdf": "name-absolute",
    b"C:\\Windows\\evil.pdf": "name-absolute",
    b"C:evil.pdf": "name-absolute",
    b"dir\\file.pdf": "name-separator",
    b"bell\x07.pdf": "name-control",
    b"new\nline.pdf": "name-control",
    b"tab\there.pdf": "name-control",
    b"esc\x1b[31mred.pdf": "name-control",
    b"del\x7f.pdf": "name-control",
    b("rtl\u202efdp.exe"): "name-control",
    b("zero\u200bwidth.pdf"): "name-control",
    b("bom\ufeff.pdf"): "name-control",
    b"CON": "name-device",
    b"con.pdf": "name-device",
    b"PRN.txt": "name-device",
    b"AUX.pdf": "name-device",
    b"NUL.tar.gz": "name-device",
    b"COM1.pdf": "name-device",
    b"COM9": "name-device",
    b"LPT1.pdf": "name-device",
    b"lpt9.txt": "name-device",
    b"x" * 210 + b".pdf": "name-too-long",
    b("é" * 120 + ".pdf"): "name-too-long",  # 244 bytes
    b("p\u0430ypal.pdf"): "name-mixed-scripts",  # a Cyrillic "а"
    b("\u0441over.pdf"): "name-mixed-scripts",  # a Cyrillic "с"
    b("c\u03bfver.pdf"): "name-mixed-scripts",  # a Greek "ο"
    b("\uff43\uff4f\uff56\uff45\uff52.pdf"): "name-lookalike",  # fullwidth "cover"
    b("\ufb01nal.pdf"): "name-lookalike",  # the ligature "ﬁ"
    b("art\u2215..\u2215etc.pdf"): "name-lookalike",  # division slashes
    b"report.pdf.": "name-trailing",
    b"report.pdf ": "name-trailing",
    b"report..": "name-trailing",
    b" leading.pdf": "name-whitespace",
    b"-rf.pdf": "name-option",
    b"--help.pdf": "name-option",
    b"r\xe9sum\xe9.pdf": "name-not-utf8",  # Latin-1
    b"\xff\xfe.pdf": "name-not-utf8",
}

# Good names, hostile content (the flow accepts archives, up to its limits, and scans).
bomb = zipped(("zeros.bin", bytes(8 * MIB)))
CONTENTS: dict[bytes, tuple[bytes, str]] = {
    b"empty.pdf": (b"", "zero-bytes"),
    b"empty.zip": (b"", "zero-bytes"),
    b"huge.pdf": (b"%PDF-1.7\n" + os.urandom(MAX_FILE), "too-large"),
    b"eicar.pdf": (EICAR, "malware"),
    b"eicar.zip": (zipped(("eicar.com", EICAR)), "malware"),
    b"sales.csv.gz": (gzip.compress(b"isbn,units\n9781900200011,3\n"), "archive-format"),
    b"files.tar": (tarred("a.pdf", pdf("in a tar")), "archive-format"),
    b"interior.pdf": (tarred("../../etc/cron.d/x", b"* * * * * root x"), "archive-format"),
    b"files.7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + os.urandom(64), "archive-format"),
    b"files.rar": (b"Rar!\x1a\x07\x01\x00" + os.urandom(64), "archive-format"),
    b"files.bz2": (bz2.compress(b"x" * 1000), "archive-format"),
    b"files.xz": (lzma.compress(b"x" * 1000), "archive-format"),
    b"slip-absolute.zip": (zipped((f"/tmp/{ESCAPE}-abs.txt", b"owned")), "zip-slip"),
    b"slip-dotdot.zip": (zipped((f"../../../../../../tmp/{ESCAPE}.txt", b"x")), "zip-slip"),
    b"slip-inner.zip": (zipped(("ok/../../" + ESCAPE, b"x")), "zip-slip"),
    b"slip-drive.zip": (zipped(("C:/Windows/System32/evil.dll", b"MZ")), "zip-slip"),
    b"slip-backslash.zip": (zipped(("..\\..\\evil.bat", b"echo")), "zip-slip"),
    b"slip-book.epub": (zipped(("mimetype", b"application/epub+zip"), ("../x", b"x")), "zip-slip"),
    b"link.zip": (zipped((symlink_entry("passwd"), b"/etc/passwd")), "archive-symlink"),
    b"locked.zip": (encrypted(zipped(("secret.pdf", pdf("secret")))), "archive-encrypted"),
    b"bomb.zip": (bomb, "archive-ratio"),
    b"many.zip": (
        zipped(*((f"f{i:02}.txt", b"x") for i in range(MAX_ENTRIES + 5))),
        "archive-too-many-entries",
    ),
    b"big.zip": (zipped(("noise.bin", os.urandom(MAX_TOTAL + KIB))), "archive-too-large"),
    b"dup.zip": (zipped(("a.pdf", pdf("1")), ("a.pdf", pdf("2"))), "archive-duplicate-entry"),
    b"devices.zip": (zipped(("art/CON.pdf", pdf("con"))), "archive-entry-name"),
    b"hidden-entry.zip": (zipped(("ctl\x1b]0;owned\x07.pdf", pdf("t"))), "archive-entry-name"),
    b"corrupt.zip": (b"PK\x03\x04" + os.urandom(200), "archive-corrupt"),
}

# Left alone by the poll, with a reason (never taken, never silently): hidden names.
HIDDEN: dict[bytes, bytes] = {
    b".hidden.pdf": pdf("hidden"),
    b"...": pdf("dots"),
    b"..\\..\\evil.pdf": pdf("climbing"),
}

# In the flow that does not accept archives.
STRICT: dict[bytes, tuple[bytes, str]] = {
    b"proofs.zip": (zipped(("interior.pdf", pdf("zipped"))), "archive-not-accepted"),
    b"cover.pdf": (zipped(("cover.pdf", pdf("a zip named .pdf"))), "archive-not-accepted"),
}


@dataclass
class World:
    app: App
    runner: DeliveryRunner
    root: Path
    inbox: Path
    strict: Path
    blind: Path
    openssh: OpenSshServer

    async def poll(self, flow_name: str) -> InboxReport:
        flow = self.app.settings.flows[flow_name]
        assert isinstance(flow, IntakeFlow)
        return await poll_inbox(self.app, self.runner, flow_name, flow, trigger="test")

    async def upload(self, folder: Path, files: dict[bytes, bytes]) -> dict[bytes, str]:
        """Upload over SFTP as the partner; returns the names the server refused, with why."""
        refused: dict[bytes, str] = {}
        then = time.time() - 60  # finished a minute ago: past min_age
        async with (
            asyncssh.connect(
                self.openssh.host,
                self.openssh.port,
                username=self.openssh.shell_user,
                client_keys=[str(self.openssh.client_key_path)],
                known_hosts=None,
            ) as conn,
            conn.start_sftp_client() as sftp,
        ):
            for name, data in files.items():
                remote = bytes(folder) + b"/" + name
                try:
                    async with sftp.open(remote, "wb", encoding=None) as fh:
                        await fh.write(data)
                    await sftp.utime(remote, (then, then))
                except asyncssh.SFTPError as exc:
                    refused[name] = str(exc)
        return refused


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    openssh: OpenSshServer, clamd: Clamd, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("hostile")
    inbox = root / "sftp" / "inbox"
    strict = root / "sftp" / "strict"
    inbox.mkdir(parents=True)
    strict.mkdir()
    blind = root / "sftp" / "blind"
    blind.mkdir()

    def partner(folder: Path) -> dict[str, Any]:
        return openssh_partner(
            openssh,
            {"receive": str(folder)},
            max_connections=4,
            transfer={"stable_interval": 0.3},
        )

    settings = Settings.model_validate(
        offline_settings(
            root,
            partners={
                "hostile": partner(inbox),
                "strict": partner(strict),
                "blind": partner(blind),
            },
            flows={
                "hostile-in": {
                    "kind": "intake",
                    "partners": ["hostile"],
                    "screening": {
                        "max_file_size": MAX_FILE,
                        "allow_archives": True,
                        "archive_max_entries": MAX_ENTRIES,
                        "archive_max_total_size": MAX_TOTAL,
                        "clamd_socket": str(clamd.socket),
                        "clamd_timeout": 60,
                    },
                },
                "strict-in": {"kind": "intake", "partners": ["strict"]},
                "blind-in": {  # its clamd is not running
                    "kind": "intake",
                    "partners": ["blind"],
                    "screening": {"clamd_socket": str(root / "no-clamd.sock")},
                },
            },
            engine={"retry_max_attempts": 2, "retry_initial_interval_s": 0.1},
        )
    )
    app = App(settings)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        yield World(app, runner, root, inbox, strict, blind, openssh)
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


def _tree(top: Path) -> set[Path]:
    return {p for p in top.rglob("*")} if top.exists() else set()


def _shown(name: bytes) -> str:
    return printable_path(name.decode("utf-8", "surrogateescape"))


async def test_a_hostile_corpus_is_quarantined_with_reasons_and_the_inbox_keeps_working(
    world: World,
) -> None:
    corpus = {n: pdf(f"name {i}") for i, n in enumerate(NAMES)}
    corpus |= {n: data for n, (data, _) in CONTENTS.items()} | HIDDEN
    expected = NAMES | {n: code for n, (_, code) in CONTENTS.items()}
    assert len(corpus) + len(STRICT) + 1 >= 60  # + the symbolic link below
    state = world.app.state_dir
    before = _tree(world.root)

    refused = await world.upload(world.inbox, corpus)
    refused |= await world.upload(world.strict, {n: d for n, (d, _) in STRICT.items()})
    assert refused == {}, f"the sshd refused names: {refused}"
    os.symlink("/etc/passwd", world.inbox / "passwd.pdf")

    report = await world.poll("hostile-in")
    strict_report = await world.poll("strict-in")
    assert report.errors == {} and strict_report.errors == {}

    # Left alone, with a reason, never taken: the hidden names and the link.
    ignored = {Path(f.path).name: f.reason for f in report.ignored}
    assert ignored == {
        ".hidden.pdf": "a hidden file (its name starts with '.')",
        "...": "a hidden file (its name starts with '.')",
        "..\\..\\evil.pdf": "a hidden file (its name starts with '.')",
        "passwd.pdf": "a symbolic link (an inbox takes regular files only)",
    }

    results: dict[str, dict[str, Any]] = {}
    for item in [*report.taken, *strict_report.taken]:
        results[Path(item.path).name] = await world.runner.wait(item.workflow_id or "", 120)
    wanted = {_shown(n): code for n, code in expected.items()}
    wanted |= {_shown(n): code for n, (_, code) in STRICT.items()}
    assert sorted(results) == sorted(wanted)
    got = {name: (r.get("outcome"), r.get("reason_code")) for name, r in results.items()}
    assert got == {name: ("quarantined", code) for name, code in wanted.items()}
    assert results["eicar.pdf"]["reason"] == f"the malware scan (clamd) found {FOUND}"

    # Every one kept, byte for byte, on the record with its reason, on the audit trail.
    uploads = corpus | {n: d for n, (d, _) in STRICT.items()}
    by_shown = {_shown(n): data for n, data in uploads.items()}
    quarantine = state / "quarantine"
    inbox_store = state / "inbox"
    for name, result in results.items():
        local = Path(result["local_path"])
        assert local.is_relative_to(quarantine) or local.is_relative_to(inbox_store), local
        assert local.read_bytes() == by_shown[name], name
        partner = "strict" if name in {_shown(n) for n in STRICT} else "hostile"
        folder = world.strict if partner == "strict" else world.inbox
        rows = [
            r
            for r in world.app.store.list_intakes(partner=partner)
            if Path(r.remote_path).name == name
        ]
        assert [(r.outcome, r.reason) for r in rows] == [
            (IntakeOutcome.QUARANTINED, result["reason"])
        ], name
        assert rows[0].sha256 == hashlib.sha256(by_shown[name]).hexdigest()
        events = world.app.store.list_audit(
            subject=f"{partner}:{printable_path(str(folder))}/{name}", action="intake.quarantined"
        )
        assert [e.details.get("reason_code") for e in events] == [wanted[name]], name
    # A file whose name is dangerous is kept under a safe name in the quarantine folder.
    for raw in NAMES:
        local = Path(results[_shown(raw)]["local_path"])
        assert local.is_relative_to(quarantine) and local.name.isascii()
        assert not local.name.startswith(("-", ".")) and local.name.split(".")[0].upper() not in (
            "CON",
            "PRN",
            "AUX",
            "NUL",
        )

    # Nothing written outside the staging and quarantine folders: the whole tree, before and
    # after, apart from the partner's own uploads and the service's database.
    after = _tree(world.root)
    database = {  # SQLite's journals beside the store and DBOS databases
        p
        for p in after - before
        if p.parent == state and p.name.startswith(("consonance-sftp.db", "dbos-system.db"))
    }
    new = after - before - database
    outside = sorted(
        p
        for p in new
        if not any(
            p == top or p.is_relative_to(top)
            for top in (quarantine, inbox_store, state / "transfers", world.inbox, world.strict)
        )
    )
    assert outside == [], outside
    assert not list(Path("/tmp").glob(f"{ESCAPE}*"))  # no zip-slip target exists anywhere

    # The service still polls: a good file uploaded now is taken in and stored.
    good = os.urandom(20_000)
    good_zip = zipped(("9781900200011/interior.pdf", pdf("inside")), ("cover.pdf", pdf("c")))
    assert await world.upload(world.inbox, {b"after.pdf": good, b"accepted.zip": good_zip}) == {}
    again = await world.poll("hostile-in")
    assert again.errors == {}
    assert sorted(Path(f.path).name for f in again.taken) == ["accepted.zip", "after.pdf"]
    assert len(again.known) == len(results) - len(STRICT)  # nothing taken twice
    for item in again.taken:
        result = await world.runner.wait(item.workflow_id or "", 60)
        assert (result["outcome"], result["reason_code"]) == ("stored", None)
        assert Path(result["local_path"]).is_relative_to(inbox_store)


async def test_a_file_that_cannot_be_scanned_is_quarantined_unscanned_with_an_alert(
    world: World,
) -> None:
    """clamd is configured but not running: after the engine's retries the file is kept in
    quarantine (``screen-failed``), never processed unscanned, and one alert says why."""
    data = pdf("unscanned")
    assert await world.upload(world.blind, {b"interior.pdf": data}) == {}
    report = await world.poll("blind-in")
    [item] = report.taken
    result = await world.runner.wait(item.workflow_id or "", 60)
    assert "screening failed" in result["error"] and "cannot reach clamd" in result["error"]
    [row] = world.app.store.list_intakes(partner="blind")
    assert row.outcome is IntakeOutcome.QUARANTINED
    assert row.reason and "cannot reach clamd" in row.reason and "unscreened" in row.reason
    assert Path(row.local_path or "").read_bytes() == data
    [event] = world.app.store.list_audit(subject=f"blind:{item.path}", action="intake.quarantined")
    assert event.details["reason_code"] == "screen-failed"
    [alert] = world.app.store.list_alerts(kind="intake_failed", partner="blind")
    assert "screening failed" in alert.message


async def test_the_corpus_covers_every_name_and_content_class() -> None:
    """The corpus names each refusal code the screening has (a new code needs a case)."""
    codes = (
        set(NAMES.values()) | {c for _, c in CONTENTS.values()} | {c for _, c in STRICT.values()}
    )
    assert codes >= {
        "name-traversal",
        "name-absolute",
        "name-separator",
        "name-control",
        "name-device",
        "name-too-long",
        "name-mixed-scripts",
        "name-lookalike",
        "name-trailing",
        "name-whitespace",
        "name-option",
        "name-not-utf8",
        "zero-bytes",
        "too-large",
        "malware",
        "archive-format",
        "archive-not-accepted",
        "zip-slip",
        "archive-symlink",
        "archive-encrypted",
        "archive-ratio",
        "archive-too-many-entries",
        "archive-too-large",
        "archive-duplicate-entry",
        "archive-entry-name",
        "archive-corrupt",
    }
    assert len(bomb) < 64 * KIB  # a bomb: 8 MiB behind a few kilobytes
