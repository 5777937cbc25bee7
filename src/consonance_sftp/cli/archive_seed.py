"""``archive restore --seed-sandbox``: the restored metadata loaded into a fresh Consonance
sandbox under ``DIR/sandbox``, read back through the client and compared field by field
(``sandbox.consonance.restored``). Prints what matched and every difference; exit 1 on any.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console

from consonance_sftp.formats.wording import counted

console = Console(highlight=False, emoji=False, soft_wrap=True)
SANDBOX_DIR = "sandbox"
SHOWN = 200  # differences printed one per line; the rest counted


def seed_sandbox_from(bag: Path, *, as_json: bool = False) -> None:
    """Prove the restore in ``bag`` through a fresh sandbox; exit 1 on any difference."""
    from consonance_sftp.sandbox.consonance.restored import prove_restore

    data_dir = bag / SANDBOX_DIR
    check = prove_restore(bag, data_dir)
    serve = f"consonance-sftp sandbox serve --data-dir {shlex.quote(str(data_dir))}"
    if as_json:
        data = {
            "seed_sandbox": {
                "ok": check.ok,
                "data_dir": str(data_dir),
                "serve": serve,
                "kinds": {k: asdict(c) for k, c in check.kinds.items()},
                "differences": [{**asdict(d), "message": str(d)} for d in check.differences],
            }
        }
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        console.print(
            f"fresh sandbox seeded in {data_dir / 'consonance'}, read back through the client "
            f"from {check.url}:",
            markup=False,
        )
        for kind, c in check.kinds.items():
            fields = counted(c.fields, "field", sep=True)
            console.print(
                f"  {kind}: {c.archived} archived, {c.read_back} read back, "
                f"{c.matched} identical in every field ({fields} compared)",
                markup=False,
            )
        for d in check.differences[:SHOWN]:
            console.print(f"  DIFFERENT {d}", markup=False)
        if len(check.differences) > SHOWN:
            console.print(
                f"  ... and {len(check.differences) - SHOWN} more (--json lists them all)",
                markup=False,
            )
        console.print(
            "SAME AS ARCHIVED"
            if check.ok
            else f"DIFFERENCES FOUND: {counted(len(check.differences), 'difference')}",
            markup=False,
        )
        console.print(f"serve this sandbox: {serve}", markup=False)
        console.print(
            f"verify the archived audit trail: consonance-sftp audit verify --archive "
            f"{shlex.quote(str(bag))}",
            markup=False,
        )
    if not check.ok:
        raise typer.Exit(1)
