"""The local SFTP partner server for the demo, the sandbox and the tests (asyncssh).

One server holds every sandbox partner: each login user is chrooted into its own folder
``<root>/<user>/`` (created on first login), so a partner never sees another's files. The
chroot holds for symlinks too: any path that resolves (following every link, in the final name
and in every folder on the way) outside the partner's folder is refused with "permission
denied", whatever the operation. Users log
in with a key from one authorized-keys file (``consonance-sftp init`` creates the client key);
tests may also give passwords, which enables password and keyboard-interactive logins.

    server = await start_sandbox_sftp("127.0.0.1", 0, root, host_key_path, authorized_keys_path,
                                      users=["printer", "distributor"])
    server.port, server.known_hosts_line, server.fingerprint
    server.close(); await server.wait_closed()

``PartnerSSHServer`` and ``PartnerSFTPServer`` are meant to be subclassed (the tests' fault
server injects failures by overriding their methods).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from consonance_sftp.config import Settings
from consonance_sftp.errors import ConfigError, ConfigProblem


def ensure_host_key(path: Path) -> asyncssh.SSHKey:
    """Load the ed25519 host key at ``path``, creating it (mode 0600) when missing."""
    if path.exists():
        return asyncssh.read_private_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(path)
    os.chmod(path, 0o600)
    return key


def _prepare(
    root: Path, host_key_path: Path, authorized_keys_path: Path | None
) -> tuple[asyncssh.SSHKey, asyncssh.SSHAuthorizedKeys | None]:
    root.mkdir(parents=True, exist_ok=True)
    host_key = ensure_host_key(host_key_path)
    authorized = (
        asyncssh.read_authorized_keys(str(authorized_keys_path))
        if authorized_keys_path is not None and authorized_keys_path.exists()
        else None
    )
    return host_key, authorized


@dataclass
class ServerSettings:
    """What every connection of one sandbox server shares."""

    root: Path
    users: frozenset[str]
    authorized_keys: asyncssh.SSHAuthorizedKeys | None
    passwords: Mapping[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # for subclasses (fault settings)
    folders: tuple[str, ...] = ()  # created in every home, e.g. ("in", "out")

    def home(self, user: str) -> Path:
        home = self.root / user
        if not home.is_dir():
            home.mkdir(parents=True, exist_ok=True)
            for folder in self.folders:
                (home / folder).mkdir(parents=True, exist_ok=True)
        return home


class PartnerSSHServer(asyncssh.SSHServer):
    """Accepts the configured users: by authorized key, or by password when one is given."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        if username in self.settings.users and self.settings.authorized_keys is not None:
            assert self.conn is not None
            self.conn.set_authorized_keys(self.settings.authorized_keys)
        return True

    def password_auth_supported(self) -> bool:
        return bool(self.settings.passwords)

    def validate_password(self, username: str, password: str) -> bool:
        expected = self.settings.passwords.get(username)
        return expected is not None and username in self.settings.users and expected == password

    def kbdint_auth_supported(self) -> bool:
        return bool(self.settings.passwords)

    def get_kbdint_challenge(
        self, username: str, lang: str, submethods: str
    ) -> tuple[str, str, str, list[tuple[str, bool]]]:
        return ("", "", "", [("Password: ", False)])

    def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> bool:
        return len(responses) == 1 and self.validate_password(username, responses[0])


class PartnerSFTPServer(asyncssh.SFTPServer):
    """SFTP chrooted into the logged-in user's folder, links included.

    asyncssh's chroot is lexical: it folds ``..`` so a client path cannot climb above the
    root, but the operating system then follows any symlink found on the way, so a link
    placed in the partner's folder (``leak -> /etc/shadow``, or ``in/up -> ../..`` leading to
    another partner) reaches outside it. Every client path passes through ``map_path``, which
    here also resolves the local path with ``realpath`` and refuses it unless it stays inside.
    That covers open, stat, lstat, listing, rename, remove, mkdir, setstat, readlink and both
    ends of a new link. A link pointing outside cannot be used, and cannot be read, renamed or
    removed through SFTP either (its owner on the host removes it).

    A check-then-use race remains (a folder swapped for a link between the check and the
    system call, by a second session of the same partner): this server is for trying the
    service and for tests, not a hardened partner server; partners can create no link whose
    target resolves outside, so the race needs a link placed on the host.
    """

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], settings: ServerSettings) -> None:
        self.settings = settings
        self.username: str = chan.get_extra_info("username")
        home = settings.home(self.username)
        self._root = os.fsencode(os.path.realpath(home))
        super().__init__(chan, chroot=os.fsencode(home))

    def _inside(self, local: bytes) -> bool:
        resolved = os.path.realpath(local)
        return resolved == self._root or resolved.startswith(self._root + b"/")

    def _confine(self, local: bytes) -> bytes:
        if not self._inside(local):
            raise asyncssh.SFTPPermissionDenied(
                "permission denied: the path leads outside the partner's folder"
            )
        return local

    def map_path(self, path: bytes) -> bytes:
        """The local path of a client path; refused when it resolves outside the root."""
        return self._confine(super().map_path(path))

    def readlink(self, path: bytes) -> bytes:
        """The link's target as a client path. asyncssh resolves a relative target against
        the server's working folder; it is relative to the link's own folder."""
        link = self.map_path(path)  # the link itself resolves inside, or this raised
        target = os.readlink(link)
        resolved = os.path.realpath(os.path.join(os.path.dirname(link), target))
        return self.reverse_map_path(self._confine(resolved))

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        """Create a link, refused when its target would resolve outside the root.

        An absolute target is the partner's own path (``/in/a.pdf`` is in its folder) and is
        stored as the local path; a relative one is kept as written when it resolves inside
        (asyncssh would quietly rewrite one that climbs out; refusing says what happened).
        """
        link = self.map_path(newpath)
        if posixpath.isabs(oldpath):
            os.symlink(self.map_path(oldpath), link)
            return
        self._confine(os.path.join(os.path.dirname(link), oldpath))
        os.symlink(oldpath, link)


@dataclass
class SandboxSftpServer:
    """A running sandbox server and what a client needs to pin and reach it."""

    acceptor: asyncssh.SSHAcceptor
    host: str
    port: int
    host_key: asyncssh.SSHKey
    settings: ServerSettings

    @property
    def known_hosts_line(self) -> str:
        public = self.host_key.export_public_key("openssh").decode().split()
        return f"[{self.host}]:{self.port} {public[0]} {public[1]}"

    @property
    def fingerprint(self) -> str:
        value: str = self.host_key.get_fingerprint("sha256")
        return value.rstrip("=")

    def home(self, user: str) -> Path:
        return self.settings.home(user)

    def close(self) -> None:
        self.acceptor.close()

    async def wait_closed(self) -> None:
        await self.acceptor.wait_closed()


async def start_sandbox_sftp(
    host: str,
    port: int,
    root: Path,
    host_key_path: Path,
    authorized_keys_path: Path | None,
    users: Iterable[str],
    *,
    passwords: Mapping[str, str] | None = None,
    server_class: type[PartnerSSHServer] = PartnerSSHServer,
    sftp_class: type[PartnerSFTPServer] = PartnerSFTPServer,
    extra: dict[str, Any] | None = None,
    folders: Iterable[str] = (),
) -> SandboxSftpServer:
    """Listen on ``host:port`` (0 picks a free port); each user is chrooted in ``root/user``.

    ``folders`` are created in every user's home (the starter config uses ``in`` and ``out``).
    """
    host_key, authorized = await asyncio.to_thread(
        _prepare, root, host_key_path, authorized_keys_path
    )
    settings = ServerSettings(
        root=root,
        users=frozenset(users),
        authorized_keys=authorized,
        passwords=dict(passwords or {}),
        extra=dict(extra or {}),
        folders=tuple(f.strip("/") for f in folders),
    )
    for user in settings.users:
        settings.home(user)

    def sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> PartnerSFTPServer:
        return sftp_class(chan, settings)

    acceptor = await asyncssh.listen(
        host,
        port,
        server_factory=lambda: server_class(settings),
        server_host_keys=[host_key],
        sftp_factory=sftp_factory,
        allow_scp=False,
        # Shell and exec are refused: a partner account on the sandbox is SFTP-only.
        process_factory=None,
        agent_forwarding=False,
        allow_pty=False,
        x509_trusted_certs=None,
        x509_trusted_cert_paths=None,
        config=[],
    )
    bound_port = acceptor.sockets[0].getsockname()[1]
    return SandboxSftpServer(acceptor, host, bound_port, host_key, settings)


async def start_configured_sandbox_sftp(settings: Settings) -> SandboxSftpServer:
    """The sandbox SFTP server as ``[sandbox]`` describes it (``consonance-sftp sandbox``).

    Files live in ``<data_dir>/sftp/<partner>/``; every configured folder of the sandbox
    partners (``/in``, ``/out`` in the starter config) exists from the start.
    """
    sandbox = settings.sandbox
    if sandbox is None:
        raise ConfigError(
            "the config has no [sandbox] table",
            [ConfigProblem("sandbox", "missing; `consonance-sftp init` writes one")],
        )
    folders = sorted(
        {
            folder.strip("/")
            for name in sandbox.partners
            if name in settings.partners
            for folder in settings.partners[name].folders.values()
            if folder.strip("/")
        }
    )
    return await start_sandbox_sftp(
        sandbox.sftp_host,
        sandbox.sftp_port,
        Path(sandbox.data_dir) / "sftp",
        Path(sandbox.host_key),
        Path(sandbox.authorized_keys),
        sandbox.partners,
        folders=folders,
    )


async def serve_forever(server: SandboxSftpServer) -> None:
    """Run until cancelled (the ``sandbox`` command)."""
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await server.wait_closed()
