"""``partner probe`` and ``partner test`` on an upload-only drop box (OpenSSH ``internal-sftp
-P remove,rmdir``: files may be written and renamed, never removed), and the probe's
tidiness on a server that allows removes."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.cli import CLI
from tests.fixtures.sshd import shell_endpoint
from tests.settings import offline_settings, openssh_partner

pytestmark = pytest.mark.sshd


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sftp-dropbox-") as name:
        yield Path(name)


def _probe_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".consonance-probe-"))


async def test_the_probe_uses_one_name_and_reports_what_it_could_not_remove(
    openssh_dropbox: OpenSshServer, folder: Path, tmp_path: Path
) -> None:
    ep = shell_endpoint(openssh_dropbox, partner="dropbox", folders=(str(folder),))
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    left = _probe_files(folder)
    assert left, "the drop box refuses removes: something must be left"
    # every file it left is reported, by its full path
    assert sorted(Path(p).name for p in report.leftovers) == left
    # one name per run: the files of a run share it (a second file only where the server
    # refuses a rename over an existing file)
    stem = left[0].split(".", 2)[1]
    assert all(name.split(".", 2)[1] == stem for name in left), left
    assert len(left) <= 2, left
    assert any("could not remove" in note and str(len(left)) in note for note in report.notes)
    # the probe still learned what the server does
    assert report.posix_rename and report.folders[str(folder)] == {"list": True, "write": True}


async def test_the_probe_leaves_nothing_where_removes_are_allowed(
    openssh_multikey: OpenSshServer, folder: Path, tmp_path: Path
) -> None:
    ep = shell_endpoint(openssh_multikey, partner="tidy", folders=(str(folder),))
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    assert list(folder.iterdir()) == []
    assert report.leftovers == ()
    assert not any("could not remove" in note for note in report.notes)


async def test_partner_test_on_a_drop_box_is_delivered_not_failed(
    openssh_dropbox: OpenSshServer, folder: Path, tmp_path: Path
) -> None:
    ep = shell_endpoint(openssh_dropbox, partner="dropbox", folders=(str(folder),))
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        sent = await fs.send_test_file()
        assert not sent.removed
        assert sent.left_behind == (sent.upload.remote_path,)
        assert sent.cleanup_error and "ermission" in sent.cleanup_error
        # delivered: the bytes are there under the final name, and nothing else
        [delivered] = list(folder.iterdir())
        assert str(delivered) == sent.upload.remote_path
        assert delivered.stat().st_size == sent.upload.size > 0
        # a real failure is still a failure
        with pytest.raises(errors.RemotePathNotFound):
            await fs.send_test_file(str(folder / "no-such-folder"))


async def test_partner_test_removes_its_file_where_it_may(
    openssh_multikey: OpenSshServer, folder: Path, tmp_path: Path
) -> None:
    ep = shell_endpoint(openssh_multikey, partner="tidy", folders=(str(folder),))
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        sent = await fs.send_test_file()
    assert sent.removed and sent.left_behind == () and sent.cleanup_error is None
    assert list(folder.iterdir()) == []


def test_cli_partner_test_on_a_drop_box_says_delivered_and_exits_0(
    openssh_dropbox: OpenSshServer, folder: Path, tmp_path: Path
) -> None:
    partner = openssh_partner(openssh_dropbox, {"send": str(folder)})
    config = tmp_path / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(offline_settings(tmp_path, partners={"dropbox": partner})))
    proc = subprocess.run(
        [*CLI, "--config", str(config), "partner", "test", "dropbox"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ok: sent " in out and "delivered, could not clean up" in out, out
    [left] = list(folder.iterdir())
    assert f"refused to remove {left}" in out, out
