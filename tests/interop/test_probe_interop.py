"""The probe learns each server's write model, and its recommendations work (issue 13).

What each server is known to do (rclone's and ProFTPD's documentation, and issue 13's trials):
ProFTPD's default ``AllowOverwrite off`` refuses to open an existing file for writing; rclone
without a write cache refuses writes out of order and reopening; rclone caps reads at 32 KiB.
"""

from __future__ import annotations

import random
from pathlib import Path

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from tests.fixtures.interop_servers import InteropServer, InteropSize
from tests.interop.test_upload_interop import _write_random, read_back

EXPECTED = {
    # kind: (reopen_write, random_write, max_read)
    "proftpd": (False, True, 261_120),
    "proftpd-overwrite": (True, True, 261_120),
    "rclone": (False, False, 32_768),
    "rclone-writes": (True, True, 32_768),
    "paramiko": (True, True, 261_120),
}


async def test_probe_learns_the_write_model_and_its_advice_takes_a_large_file(
    server_at: InteropServer, interop_size: InteropSize, tmp_path: Path
) -> None:
    async with SftpRemoteFS(server_at.endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    model = report.write_model
    reopen, random_write, max_read = EXPECTED[server_at.kind]
    assert (model["reopen_write"], model["random_write"]) == (reopen, random_write)
    assert model["max_write"] == 261_120
    assert model["max_read"] == max_read
    assert model["remove"] is True
    # Content is verified by hash wherever the server offers one (issue item 9: rclone answers
    # md5sum and sha1sum over exec, not sha256sum, except of a file still in its write cache;
    # ProFTPD answers check-file), and read back where it offers none: the probe never
    # recommends a size-only check.
    expected_checksum = {
        "proftpd": "check_file",
        "proftpd-overwrite": "check_file",
        # sha1sum answered by rclone itself: quicker than reading back a file just written
        "rclone": "shell",
        "rclone-writes": "auto",
        "paramiko": "auto",
    }
    checksum = report.recommended.get("checksum", fs.settings.checksum.value)
    assert checksum == expected_checksum[server_at.kind]
    if server_at.kind == "rclone":
        assert report.recommended["shell_hash_command"] in {"sha1sum", "md5sum"}
    if reopen and random_write:
        assert "segment_connections" not in report.recommended
    else:
        assert report.recommended["segment_connections"] == 1
    # No probe file is left behind.
    assert not [p for p in server_at.root.iterdir() if p.name.startswith(".consonance-probe")]

    # The recommended settings, untouched by hand, take a large file.
    settings = {**interop_size.transfer, **report.recommended}
    local = tmp_path / "print.pdf"
    sha = _write_random(local, interop_size.size)
    name = f"probed-{random.randrange(10**9)}.pdf"
    async with SftpRemoteFS(
        server_at.endpoint(**settings), state_dir=tmp_path / "state", retries=0
    ) as fs:
        result = await fs.upload(local, name)
    assert result.sha256 == sha
    if checksum == "auto":
        assert result.verified_by == "read_back"
    else:
        assert result.verified_by in {"check_file", "shell-sha1", "shell-md5"}
    assert await read_back(server_at, name) == (interop_size.size, sha)
