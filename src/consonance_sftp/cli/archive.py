"""``archive list|verify|restore``: the archives the flows wrote, and reading one back
(``app.archive_handler``): every file re-hashed against the bag's manifest, every missing or
damaged file named; exit 1 on any problem. ``verify`` and ``restore`` need no config; with one,
each verification is recorded on the audit trail (``archive list`` shows the latest).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.cli.main import acting_user, load_app, state

if TYPE_CHECKING:
    from consonance_sftp.app.archive_handler import ArchiveCheck

archive_app = typer.Typer(
    help="Archives: list them, verify one file by file, or restore one into a folder.",
    no_args_is_help=True,
)
console = Console(highlight=False, soft_wrap=True)

ArchiveArg = Annotated[
    Path, typer.Argument(help="The archive file (.tar, .tar.zst, .tar.zst.age).", dir_okay=False)
]
Identity = Annotated[
    Path | None,
    typer.Option(help="The age identity (age-keygen's file) or SSH private key, if encrypted."),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(archive_app, name="archive")


def _show(check: ArchiveCheck, verb: str, as_json: bool) -> None:
    r = check.report
    if as_json:
        problems = [{"kind": p.kind, "path": p.path, "message": p.message} for p in r.problems]
        data = {
            "archive": str(check.path),
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
        console.print(
            f"{check.path.name}: bag {r.name or '?'}, sidecar {check.sidecar}, "
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


@archive_app.command("list")
def list_cmd(
    flow: Annotated[str | None, typer.Option(help="Only this archive flow's.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """Every archive the flows wrote, newest first: where it is, its size and files, and when
    it was last verified, by whom, and with what outcome."""
    from consonance_sftp.app.archive_handler import list_archives

    found = list_archives(load_app().store, flow=flow)
    if as_json:
        sys.stdout.write(json.dumps([asdict(a) for a in found], default=str) + "\n")
        return
    if not found:
        console.print("no archives yet (an archive flow writes one per run)")
        return
    table = Table("archive", "flow", "written", "size", "files", "last verified")
    for a in found:
        last = (
            f"{a.verified_at:%Y-%m-%d %H:%M} by {a.verified_by}: "
            + ("ok" if a.verified_ok else "PROBLEMS")
            if a.verified_at
            else "never"
        )
        table.add_row(
            escape(a.path),
            escape(a.flow),
            f"{a.written_at:%Y-%m-%d %H:%M}",
            f"{a.size:,}",
            str(a.files),
            escape(last),
        )
    console.print(table)


@archive_app.command("verify")
def verify_cmd(
    archive: ArchiveArg,
    identity: Identity = None,
    sample: Annotated[
        float, typer.Option(help="Percent of the files to re-hash (a drill); 100: all.")
    ] = 100.0,
    by: Annotated[str | None, typer.Option("--by", help="Who verifies (default: $USER).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Re-read an archive: its .sha256 sidecar, then each file against the bag's manifest;
    every missing, damaged or unexpected file is named. Exit 1 on any problem. With a config,
    the verification is recorded on the audit trail (``archive list`` shows it)."""
    from consonance_sftp.app.archive_handler import record_verification, verify

    if not 0 < sample <= 100:
        raise typer.BadParameter("a percentage above 0, at most 100", param_hint="--sample")
    check = verify(archive, identity=identity, sample=sample / 100)
    if state.config_path.exists():
        store = load_app().store
        record_verification(store, check, by=acting_user(by), sample=sample / 100)
    _show(check, "verified", as_json)


@archive_app.command("restore")
def restore_cmd(
    archive: ArchiveArg,
    to: Annotated[Path, typer.Option("--to", help="A new or empty folder.", file_okay=False)],
    identity: Identity = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Unpack an archive into a folder, re-hashing every file: only files that match the
    manifest are kept. Exit 1 on any problem."""
    from consonance_sftp.app.archive_handler import restore

    _show(restore(archive, to, identity=identity), "restored", as_json)
