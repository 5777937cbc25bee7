"""The README's first command: the demo runs a real exchange end to end and exits by itself."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from tests.cli import CLI


def test_help_lists_the_commands() -> None:
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("init", "config", "demo", "sandbox", "partner", "audit"):
        assert command in out


def test_demo_delivers_a_production_package_and_says_where_to_look(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    run = subprocess.run(
        [*CLI, "demo", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert "demo finished" in run.stdout
    assert "Where to look" in run.stdout

    # The package is on the printer's (sandbox) SFTP server, whole, with nothing temporary left.
    printer_in = folder / "var" / "sandbox" / "sftp" / "printer" / "in"
    landed = sorted(p.name for p in printer_in.rglob("*") if p.is_file())
    assert any(n.endswith("_interior.pdf") for n in landed)
    assert any(n.endswith("_cover.pdf") for n in landed)
    assert not [n for n in landed if n.startswith(".") or n.endswith(".part")]

    # One ledger row per file, all sent; the audit trail names each delivery.
    with sqlite3.connect(folder / "var" / "consonance-sftp.db") as db:
        rows = db.execute("SELECT remote_path, outcome FROM delivery_ledger").fetchall()
        actions = [a for (a,) in db.execute("SELECT action FROM audit_events")]
    assert len(rows) == len(landed)
    assert {outcome for _, outcome in rows} == {"sent"}
    assert actions.count("delivery.sent") == len(landed)

    verify = subprocess.run(
        [*CLI, "--config", str(folder / "consonance-sftp.toml"), "audit", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # Then the designer's revised cover lands on the printed title as its designer's cover,
    # attached in Consonance, with its to-do completed; the misnamed file waits in quarantine.
    out = " ".join(run.stdout.split())
    isbn = landed[0].split("_")[0].split(".")[0]
    cover = f"{isbn}_cover_v2.pdf"
    assert f"/out/{cover}: attached: version 2 of the cover of ISBN {isbn}" in out, out
    assert "(the partner's version 2), superseding version 1; matched by pattern" in out
    assert "to-do 'Cover brief' completed" in out
    assert "read back from Consonance: to-do 'Cover brief' completed" in out
    assert "/out/final artwork.pdf: unmatched" in out
    assert "why: unmatched:" in out and "isbn: no ISBN in the name" in out
    with sqlite3.connect(folder / "var" / "consonance-sftp.db") as db:
        intakes = {
            path: (outcome, row_id)
            for path, outcome, row_id in db.execute(
                "SELECT remote_path, outcome, id FROM intake_ledger"
            )
        }
        versions = db.execute(
            "SELECT kind, version, partner, original_name, isbn, intake_id FROM asset_versions "
            "WHERE kind LIKE 'cover%' ORDER BY kind, version"
        ).fetchall()
    assert {p: o for p, (o, _) in intakes.items()} == {
        f"/out/{cover}": "attached",
        "/out/final artwork.pdf": "quarantined",
    }
    # The printer's cover (from Consonance) is version 1, the designer's version 2 of it;
    # the designer's names who sent it, under which name, for which ISBN, from which intake.
    assert versions == [
        ("cover_pdf", 1, None, None, None, None),
        ("cover_pdf", 2, "designer", cover, isbn, intakes[f"/out/{cover}"][1]),
    ]
    config = str(folder / "consonance-sftp.toml")
    listed = subprocess.run(
        [*CLI, "--config", config, "quarantine", "list", "--json"], capture_output=True, text=True
    )
    entry = json.loads(listed.stdout)  # the one file in quarantine
    assert (entry["remote_path"], entry["label"]) == ("/out/final artwork.pdf", "unmatched")
    assets = subprocess.run(
        [*CLI, "--config", config, "assets", isbn, "--offline", "--json"],
        capture_output=True,
        text=True,
    )
    assert assets.returncode == 0, assets.stdout + assets.stderr
    assert f'"original_name": "{cover}"' in assets.stdout


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    run = subprocess.run(
        [*CLI, "demo", "--dir", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 1
    assert "was not made by the demo" in run.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
