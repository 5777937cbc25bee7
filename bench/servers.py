"""The server ``bench/transfer.py`` measures against: OpenSSH's sshd, or one a partner runs.

``--server openssh`` (the default) is a private ``sshd`` from ``consonance_sftp.sandbox``;
``proftpd``, ``proftpd-overwrite``, ``rclone``, ``rclone-writes`` and ``paramiko`` are started
by the interop tier's own fixture code (``tests/fixtures/interop_servers.py``, one copy of it),
each on 127.0.0.1 with a generated host key and an ed25519 client key that both OpenSSH's
``sftp`` and our transport log in with. ``Served`` hides the difference: how to reach the
server, and the folder on local disk where its files land (every copy is checked there).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fixtures.interop_servers import KINDS, start_interop_server  # noqa: E402

from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint  # noqa: E402
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS  # noqa: E402
from consonance_sftp.config.transfer import TransferSettings  # noqa: E402
from consonance_sftp.ports.remote_fs import ProbeReport  # noqa: E402
from consonance_sftp.sandbox.openssh import start_openssh  # noqa: E402

SERVERS = ("openssh", *KINDS)

DESCRIPTIONS = {
    "openssh": "OpenSSH sshd (private, no chroot)",
    "proftpd": "ProFTPD mod_sftp, AllowOverwrite off (its default)",
    "proftpd-overwrite": "ProFTPD mod_sftp, AllowOverwrite on",
    "rclone": "rclone serve sftp, default VFS cache mode (off: no random-access writes)",
    "rclone-writes": "rclone serve sftp --vfs-cache-mode writes (rclone's advice for SFTP)",
    "paramiko": "paramiko's SFTPServer (tests/fixtures/paramiko_server.py)",
}


@dataclass
class Served:
    """A running server, how to reach it, and where its files are on local disk."""

    kind: str
    port: int
    user: str
    host_key: asyncssh.SSHKey
    client_key_path: Path
    folder: Path  # a folder on local disk the server serves: uploads land here
    remote_folder: str  # the same folder as the server names it ("" = the login folder)
    stop: Callable[[], None]

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.kind]

    def known_hosts_line(self, port: int | None = None) -> str:
        kind, blob = self.host_key.export_public_key("openssh").decode().split()[:2]
        return f"[127.0.0.1]:{port or self.port} {kind} {blob}"

    def remote(self, name: str) -> str:
        """The server's name for ``folder / name``."""
        return f"{self.remote_folder}/{name}" if self.remote_folder else name

    def endpoint(
        self, settings: TransferSettings, *, port: int | None = None, max_connections: int = 1
    ) -> SftpEndpoint:
        return SftpEndpoint(
            partner=f"bench-{self.kind}",
            host="127.0.0.1",
            port=port or self.port,
            user=self.user,
            host_keys=(self.known_hosts_line(port),),
            key_path=self.client_key_path,
            max_connections=max_connections,
            folders=(self.remote_folder or ".",),
            transfer=settings,
        )


def start_served(kind: str, run_dir: Path) -> Served:
    """Start server ``kind`` (one of ``SERVERS``) with its files under ``run_dir``."""
    if kind == "openssh":
        sshd = start_openssh(run_dir / "sshd", chroot=False)
        folder = run_dir / "served"
        folder.mkdir()
        return Served(
            kind=kind,
            port=sshd.port,
            user=sshd.shell_user,
            host_key=sshd.host_key,
            client_key_path=sshd.client_key_path,
            folder=folder,
            remote_folder=str(folder),  # no chroot: the server names files by their real path
            stop=sshd.stop,
        )
    server = start_interop_server(kind, run_dir / kind)
    return Served(
        kind=kind,
        port=server.port,
        user=server.user,
        host_key=server.host_key,
        client_key_path=server.client_key_path,
        folder=server.root,  # the account's home: remote names are relative to it
        remote_folder="",
        stop=server.stop,
    )


async def _sftp_session(served: Served) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
    conn = await asyncssh.connect(
        "127.0.0.1",
        served.port,
        username=served.user,
        client_keys=[str(served.client_key_path)],
        known_hosts=([served.host_key.convert_to_public()], [], []),
        agent_path=None,
        config=[],
    )
    return conn, await conn.start_sftp_client()


def remote_mkdir(served: Served, name: str) -> None:
    """Create ``folder / name`` through the server, not behind its back: rclone caches its
    listings (``--dir-cache-time``) and would not see a folder made on its disk."""

    async def run() -> None:
        conn, sftp = await _sftp_session(served)
        try:
            await sftp.mkdir(served.remote(name))
        finally:
            sftp.exit()
            conn.close()
            await conn.wait_closed()

    asyncio.run(run())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def wait_for_content(path: Path, size: int, digest: str, timeout: float = 120.0) -> float:
    """Wait until ``path`` on the server's disk holds ``size`` bytes with SHA-256 ``digest``;
    returns the seconds waited. rclone's write cache reaches the disk after the client's
    close (``--vfs-write-back``, 5 s by default); every other server has it at once."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            got_size = path.stat().st_size
        except FileNotFoundError:
            got_size = -1
        if got_size == size and sha256_file(path) == digest:
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{path}: {got_size} bytes, not {size} bytes with SHA-256 {digest}, "
                f"after {timeout:.0f} s"
            )
        time.sleep(0.2)


def probe(served: Served, settings: TransferSettings, state_dir: Path) -> ProbeReport:
    """Run our probe (``partner probe``) once against the server with ``settings``."""

    async def run() -> ProbeReport:
        async with SftpRemoteFS(served.endpoint(settings), state_dir=state_dir) as fs:
            return await fs.probe()

    return asyncio.run(run())


def link_into(served: Served, source: Path, name: str) -> str:
    """Put ``source`` in the served folder (a hard link when it can) for downloads; returns
    its remote name. Done before anything lists the folder (rclone caches listings)."""
    target = served.folder / name
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return served.remote(name)


def probe_advice(server: Served, base: TransferSettings, state_dir: Path) -> dict[str, object]:
    """Our probe, once, against the server: the settings it recommends over ``base`` (what
    ``partner probe --apply`` would write for a user), printed with what it found."""
    t = time.perf_counter()
    report = probe(server, base, state_dir)
    _say(f"probe ({time.perf_counter() - t:.1f} s): server {report.server_version!r}")
    model = ", ".join(f"{k} {v}" for k, v in sorted(report.write_model.items()))
    _say(f"  write model: {model or 'not probed'}")
    for note in report.notes:
        _say(f"  note: {note}")
    advice = ", ".join(f"{k} = {v!r}" for k, v in sorted(report.recommended.items()))
    _say(f"  recommended, applied to our side: {advice or 'nothing to change'}")
    return dict(report.recommended)


def parse_setting(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--set``: VALUE as a number when it is one, else as text."""
    key, sep, text = item.partition("=")
    if not sep:
        raise SystemExit(f"--set wants KEY=VALUE, not {item!r}")
    value: object = text
    for kind in (int, float):
        try:
            value = kind(text)
            break
        except ValueError:
            continue
    return key.strip(), value


def _say(text: str) -> None:
    print(text, flush=True)
