"""The clamd adapter against a real clamd (Debian's clamav-daemon), offline: the signature
database is one file the fixture writes (an MD5 signature of the EICAR test string)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from consonance_sftp.adapters.clamd import ClamdScanner
from consonance_sftp.config.flows import IntakeScreening
from consonance_sftp.flows.intake_screen import IntakeScreener
from consonance_sftp.ports.intake import FetchedFile, IntakeRequest
from tests.fixtures.clamd import EICAR, FOUND, Clamd


def test_clamd_finds_the_eicar_string_and_passes_a_clean_file(clamd: Clamd, tmp_path: Path) -> None:
    eicar = tmp_path / "cover.pdf"
    eicar.write_bytes(EICAR)
    clean = tmp_path / "interior.pdf"
    clean.write_bytes(b"%PDF-1.7\n" + bytes(300_000))
    scanner = ClamdScanner(clamd.socket, timeout=60)
    assert asyncio.run(scanner.scan(str(eicar))) == FOUND
    assert asyncio.run(scanner.scan(str(clean))) is None
    assert asyncio.run(scanner.ping())

    screening = IntakeScreening(clamd_socket=clamd.socket)
    screener = IntakeScreener(lambda flow: screening, lambda s: ClamdScanner(clamd.socket))
    request = IntakeRequest(
        flow="f", kind="intake", partner="p", remote_path="/in/cover.pdf", size=68, mtime=0.0
    )
    refusal = asyncio.run(
        screener.screen(request, FetchedFile(local_path=str(eicar), size=68, sha256="x"))
    )
    assert refusal is not None and refusal.reason_code == "malware"
    assert FOUND in refusal.detail
