"""Before a resume continues, the segments the journal records are checked on the server by
hash, with what each server offers (issue 13, "never trust bytes you cannot see"): ProFTPD's
ranged ``check-file``, where its answers can be trusted, else each range read back (paramiko,
and every server without ranged hashing). A segment the server holds is kept whatever the
server's check-file says of it; one it lost is sent again."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.resume import reconcile_journal
from consonance_sftp.adapters.sftp.segmented import SegmentJournal
from consonance_sftp.models import Verification
from tests.fixtures.interop_servers import MIB, InteropServer

SEGMENTS = 4


@pytest.mark.parametrize("interop_server", ["proftpd-overwrite", "paramiko"], indirect=True)
async def test_a_resume_keeps_every_segment_the_server_holds_and_only_those(
    server_at: InteropServer, tmp_path: Path
) -> None:
    data = os.urandom(SEGMENTS * MIB)
    temp = f".resume-{server_at.kind}.pdf.part"
    async with SftpRemoteFS(server_at.endpoint(), state_dir=tmp_path / "state") as fs:
        outcomes = []
        for lost in (None, 1):
            # What an interrupted upload left: every segment on the server (one zeroed behind
            # its back, the second time), all of them in the journal with their hashes.
            held = bytearray(data)
            if lost is not None:
                held[lost * MIB : (lost + 1) * MIB] = bytes(MIB)
            server_at.local(temp).write_bytes(held)
            journal = SegmentJournal(
                tmp_path / f"journal-{lost}",
                file_size=len(data),
                segment_size=MIB,
                source_id="test",
            )
            for i in range(SEGMENTS):
                journal.mark_hashed(i, hashlib.sha256(data[i * MIB : (i + 1) * MIB]).hexdigest())
            async with fs._lease(None) as pc:
                kept, how = await reconcile_journal(fs, pc.sftp, temp, journal)
            assert journal.done() == kept
            outcomes.append((kept, how))
    assert outcomes[0][0] == set(range(SEGMENTS))
    assert outcomes[1][0] == set(range(SEGMENTS)) - {1}
    # ProFTPD's check-file answers for a middle range (it hashes to the end of the file) are
    # read back, and ranged check-file is dropped; paramiko has none: read back from the start.
    assert {how for _, how in outcomes} == {Verification.READ_BACK}
