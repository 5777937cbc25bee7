"""``archive list|verify|restore|drill``: the archives the flows wrote, and reading one back
(``app.archive_handler``): every file re-hashed against the bag's manifest, every missing or
damaged file named; exit 1 on any problem. ``verify`` and ``restore`` need no config; with one,
each verification is recorded on the audit trail (``archive list`` shows the latest). With
``--partner`` the partner's copy is downloaded and read (a config is needed then). ``drill``
runs a restore drill now (``app.archive_drill``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.cli.main import acting_user, load_app, state

if TYPE_CHECKING:
    from consonance_sftp.app.archive_handler import ArchiveCheck, ArchiveEntry, ReadBack

archive_app = typer.Typer(
    help="Archives: list them, verify one file by file, restore one into a folder, or run a "
    "restore drill.",
    no_args_is_help=True,
)
console = Console(highlight=False, emoji=False, soft_wrap=True)

ArchiveArg = Annotated[
    Path,
    typer.Argument(
        help="The archive file (.tar, .tar.zst, .tar.zst.age); with --partner, its name.",
        dir_okay=False,
    ),
]
Partner = Annotated[
    str | None,
    typer.Option(help="Read the copy this partner holds (downloaded, then removed)."),
]
Identity = Annotated[
    Path | None,
    typer.Option(help="The age identity (age-keygen's file) or SSH private key, if encrypted."),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(archive_app, name="archive")


def _show(check: ArchiveCheck, verb: str, as_json: bool, source: str = "local") -> None:
    r = check.report
    if as_json:
        problems = [{"kind": p.kind, "path": p.path, "message": p.message} for p in r.problems]
        data = {
            "archive": check.path.name if source != "local" else str(check.path),
            "source": source,
            "ok": check.ok,
            "sidecar": check.sidecar,
            "files_verified": r.files_verified,
            "files_skipped": r.files_skipped,
            "bytes_verified": r.bytes_verified,
            "referenced": len(r.referenced),
            "files_fetched": r.files_fetched,
            "problems": [{"kind": "sidecar", "path": "", "message": m} for m in check.problems]
            + problems,
        }
        sys.stdout.write(json.dumps(data) + "\n")
    else:
        where = f" (from {source})" if source != "local" else ""
        console.print(
            f"{check.path.name}{where}: bag {r.name or '?'}, sidecar {check.sidecar}, "
            f"{r.files_verified} file(s) {verb} ({r.bytes_verified:,} bytes)"
            + (f", {r.files_skipped} not sampled" if r.files_skipped else "")
            + (
                f", {len(r.referenced)} referenced in fetch.txt ({r.files_fetched} fetched)"
                if r.referenced
                else ""
            ),
            markup=False,
        )
        for message in check.problems:
            console.print(f"  sidecar: {message}", markup=False)
        for p in r.problems:
            console.print(f"  {p.kind}: {p.path or '(archive)'}: {p.message}", markup=False)
        console.print("OK" if check.ok else "PROBLEMS FOUND", markup=False)
    if not check.ok:
        raise typer.Exit(1)


@contextlib.contextmanager
def _copy(archive: Path, partner: str | None, *, keep: bool = False) -> Iterator[ReadBack]:
    """The archive to read: the file given, or (``--partner``) the archive of that name
    downloaded from the partner into a folder under the state folder, removed afterwards.
    With a config, the ledger's SHA-256 and size of the archive come along."""
    from consonance_sftp.app.archive_handler import (
        ReadBack,
        expected_of,
        fetch,
        staged,
        written,
    )

    if partner is None:
        store = load_app().store if state.config_path.exists() else None
        expected = expected_of(written(store, archive.name)) if store is not None else None
        yield ReadBack(archive, "local", expected, store)
        return
    app = load_app()
    expected = expected_of(written(app.store, archive.name))
    with staged(app.state_dir) as folder:
        path = asyncio.run(fetch(app, archive.name, partner, folder))
        yield ReadBack(path, f"partner:{partner}", expected, app.store)


def _where(a: ArchiveEntry) -> str:
    places = [a.path if a.local else f"{a.path} (gone)"]
    places += [f"partner:{p}" for p in a.partners]
    return "\n".join(places)


@archive_app.command("list")
def list_cmd(
    flow: Annotated[str | None, typer.Option(help="Only this archive flow's.")] = None,
    partner: Annotated[
        str | None, typer.Option(help="Only the archives this partner holds a copy of.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """Every archive the flows wrote, newest first: where it is (the local file, and each
    partner the delivery ledger says holds a copy), its size and files, and when it was last
    verified, by whom (a user or a drill), from which copy, and with what outcome."""
    from consonance_sftp.app.archive_handler import list_archives

    found = list_archives(load_app().store, flow=flow, partner=partner)
    if as_json:
        sys.stdout.write(json.dumps([asdict(a) for a in found], default=str) + "\n")
        return
    if not found:
        console.print("no archives yet (an archive flow writes one per run)")
        return
    table = Table("archive", "flow", "written", "size", "files", "where", "last verified")
    for a in found:
        last = (
            f"{a.verified_at:%Y-%m-%d %H:%M} by {a.verified_by}"
            + (f" from {a.verified_from}" if a.verified_from != "local" else "")
            + (": ok" if a.verified_ok else ": PROBLEMS")
            if a.verified_at
            else "never"
        )
        table.add_row(
            escape(a.name),
            escape(a.flow),
            f"{a.written_at:%Y-%m-%d %H:%M}",
            f"{a.size:,}",
            str(a.files),
            escape(_where(a)),
            escape(last),
        )
    console.print(table)


@archive_app.command("verify")
def verify_cmd(
    archive: ArchiveArg,
    identity: Identity = None,
    partner: Partner = None,
    sample: Annotated[
        float, typer.Option(help="Percent of the files to re-hash (a drill); 100: all.")
    ] = 100.0,
    by: Annotated[str | None, typer.Option("--by", help="Who verifies (default: $USER).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-read an archive: its .sha256 sidecar, then each file against the bag's manifest;
    every missing, damaged or unexpected file is named. Exit 1 on any problem. With
    --partner, ARCHIVE is the archive's name (as 'archive list' shows it) and the partner's
    copy is downloaded and read. With a config, the verification is recorded on the audit
    trail (``archive list`` shows it) and the archive's hash and size are compared with the
    ledger's."""
    from consonance_sftp.app.archive_handler import record_verification, verify

    if not 0 < sample <= 100:
        raise typer.BadParameter("a percentage above 0, at most 100", param_hint="--sample")
    with _copy(archive, partner) as read:
        check = verify(read.path, identity=identity, sample=sample / 100, expected=read.expected)
        if read.store is not None:
            record_verification(
                read.store, check, by=acting_user(by), sample=sample / 100, source=read.source
            )
    _show(check, "verified", as_json, read.source)


@archive_app.command("restore")
def restore_cmd(
    archive: ArchiveArg,
    to: Annotated[Path, typer.Option("--to", help="A new or empty folder.", file_okay=False)],
    identity: Identity = None,
    partner: Partner = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    seed_sandbox: Annotated[
        bool,
        typer.Option(
            "--seed-sandbox",
            help="Then load the metadata into a fresh Consonance sandbox under DIR/sandbox, read "
            "it back through the client and compare field by field (with --json: a second line).",
        ),
    ] = False,
) -> None:
    """Unpack an archive into a folder, re-hashing every file: only files that match the
    manifest are kept. With --partner, ARCHIVE is the archive's name and the partner's copy
    is downloaded first (removed afterwards). Exit 1 on any problem."""
    from consonance_sftp.app.archive_handler import restore

    with _copy(archive, partner) as read:
        check = restore(read.path, to, identity=identity, expected=read.expected)
    _show(check, "restored", as_json, read.source)
    if seed_sandbox:
        from consonance_sftp.cli.archive_seed import seed_sandbox_from

        seed_sandbox_from(to, as_json=as_json)


@archive_app.command("drill")
def drill_cmd(
    flow: Annotated[
        str | None, typer.Option(help="Only this archive flow (default: every archive flow).")
    ] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who asks (default: $USER).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """A restore drill now: a random sample of each archive flow's archives (its drill
    settings) fetched from every partner holding a copy (else the local copy), decrypted,
    unpacked, re-hashed and compared with the ledger; recorded on the audit trail
    (archive.drill), an alert when it fails. Then each archive flow's overdue check (an
    alert when no drill succeeded within its overdue_after). Exit 1 when a drill fails."""
    from consonance_sftp.app.archive_drill import check_all, run_drill
    from consonance_sftp.config.flows import ArchiveFlow

    app = load_app()
    names = (
        [flow]
        if flow is not None
        else [n for n, f in app.settings.flows.items() if isinstance(f, ArchiveFlow)]
    )
    if not names:
        raise typer.BadParameter("the config has no archive flow", param_hint="--flow")
    trigger = f"manual:{acting_user(by)}"
    reports = [asyncio.run(run_drill(app, name, trigger=trigger)) for name in names]
    # Then every archive flow's overdue check (the drills just run count), as serve makes it.
    overdue = [c.overdue for c in asyncio.run(check_all(app, drill=False)) if c.overdue]
    if as_json:
        sys.stdout.write(json.dumps([r.as_json() for r in reports]) + "\n")
    else:
        for r in reports:
            console.print(
                f"drill of {r.flow}: {r.outcome}, {len(r.archives)} archive(s), "
                f"{r.bytes_verified:,} bytes verified in {r.seconds:.1f}s",
                markup=False,
            )
            for c in r.copies:
                mark = "ok" if c.ok else "PROBLEMS"
                console.print(f"  {c.archive} from {c.source} ({c.mode}): {mark}", markup=False)
                for p in c.problems:
                    console.print(f"    {p}", markup=False)
            for note in r.notes:
                console.print(f"  note: {note}", markup=False)
        for alert in overdue:
            console.print(f"alert raised: {alert.message}", markup=False)
    if any(r.copies and not r.ok for r in reports):
        raise typer.Exit(1)
