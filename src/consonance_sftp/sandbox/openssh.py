"""A private OpenSSH ``sshd`` on 127.0.0.1, for tests and the benchmark.

It never touches the system's sshd: its own host key, ``sshd_config``, authorized-keys folder
and pid file live in a work folder, it listens on a free port, and it runs in the foreground
(``-D``) as a child process. ``Subsystem sftp internal-sftp`` serves SFTP in-process, as a
locked-down partner server would.

Two accounts are available:

* the **shell account**: the user running the process (may run commands such as
  ``sha256sum``);
* the **chroot account** (only when running as root): a system user created idempotently with
  ``useradd``, chrooted by ``ChrootDirectory`` and limited to ``ForceCommand internal-sftp``,
  like most managed SFTP partners. It writes into ``upload/`` inside its chroot.

    server = start_openssh(workdir)           # plain function: importable by bench/
    server.port, server.known_hosts_line, server.client_key_path
    server.stop()

``host_key_types`` gives it several host keys, as a stock sshd has (ed25519, ECDSA, RSA),
generated at start; ``sftp_options`` are added to ``internal-sftp`` (``-P remove,rmdir``: an
upload-only drop box).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

SSHD = Path("/usr/sbin/sshd")
CHROOT_USER = "consonance-sftp-chroot"


class OpenSshUnavailable(RuntimeError):
    """sshd is missing or would not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_chroot_user(name: str = CHROOT_USER) -> str:
    """Create the SFTP-only system user when missing (root only); idempotent."""
    try:
        pwd.getpwnam(name)
        exists = True
    except KeyError:
        exists = False
    if not exists:
        if os.geteuid() != 0:
            raise OpenSshUnavailable(f"creating user {name!r} needs root")
        nologin = next(
            (p for p in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(p).exists()),
            "/bin/false",
        )
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", nologin, name],
            capture_output=True,
            text=True,
            check=False,
        )
        # exit 9: another process created it meanwhile
        if result.returncode not in (0, 9):
            raise OpenSshUnavailable(f"useradd {name} failed: {result.stderr.strip()}")
    if os.geteuid() == 0:
        # useradd locks the password ("!"), and sshd without PAM refuses locked accounts even
        # for key logins; "*" means "no password" without the lock.
        subprocess.run(["usermod", "-p", "*", name], capture_output=True, check=False)
    return name


def _chroot_base() -> Path:
    # sshd demands that every component of a ChrootDirectory is root-owned and not writable by
    # others, which rules out anything under /tmp.
    for candidate in (Path("/run"), Path("/var/lib")):
        st = candidate.stat()
        if st.st_uid == 0 and not st.st_mode & 0o022 and os.access(candidate, os.W_OK):
            return candidate
    raise OpenSshUnavailable("no root-owned folder without group/other write for the chroot")


@dataclass
class OpenSshServer:
    """A running private sshd and everything a client needs to reach it."""

    host: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    host_key: asyncssh.SSHKey  # the first of host_keys
    client_key_path: Path
    shell_user: str
    chroot_user: str | None = None
    chroot_dir: Path | None = None  # the chroot; the user writes into chroot_dir / "upload"
    host_keys: dict[str, asyncssh.SSHKey] = field(default_factory=dict)  # key type -> key
    # Each extra chrooted account (``chroot_users``) -> its chroot (it writes into "upload").
    chroots: dict[str, Path] = field(default_factory=dict)
    _cleanup: list[Path] = field(default_factory=list)

    @property
    def known_hosts_line(self) -> str:
        kind, blob = self.host_key.export_public_key("openssh").decode().split()[:2]
        return f"[{self.host}]:{self.port} {kind} {blob}"

    @property
    def fingerprint(self) -> str:
        value: str = self.host_key.get_fingerprint("sha256")
        return value.rstrip("=")

    def fingerprints(self) -> dict[str, str]:
        """``SHA256:...`` of each host key, by key type."""
        return {
            kind: str(key.get_fingerprint("sha256")).rstrip("=")
            for kind, key in self.host_keys.items()
        }

    @property
    def chroot_upload_dir(self) -> Path | None:
        return self.chroot_dir / "upload" if self.chroot_dir else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for path in self._cleanup:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> OpenSshServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_key(key: asyncssh.SSHKey, path: Path) -> None:
    key.write_private_key(path)
    os.chmod(path, 0o600)
    key.write_public_key(path.with_suffix(".pub"))


def start_openssh(
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    chroot: bool | None = None,
    client_key_type: str = "ssh-ed25519",
    host_key_types: Sequence[str] = ("ssh-ed25519",),
    sftp_options: str = "",
    extra_config: str = "",
    timeout: float = 10.0,
    chroot_users: Sequence[str] = (),
) -> OpenSshServer:
    """Start a private sshd; ``chroot=None`` adds the chroot account when running as root.
    ``chroot_users``: more SFTP-only accounts (root only), each chrooted in its own folder,
    as a server with one account per partner is (created with ``useradd`` when missing)."""
    if not SSHD.exists():
        raise OpenSshUnavailable(f"{SSHD} is missing (install openssh-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    host_keys: dict[str, asyncssh.SSHKey] = {}
    host_key_lines = ""
    for kind in host_key_types:
        key = (
            asyncssh.generate_private_key(kind, key_size=3072)
            if kind == "ssh-rsa"
            else asyncssh.generate_private_key(kind)
        )
        host_keys[key.get_algorithm()] = key
        key_path = workdir / f"ssh_host_{kind.replace('-', '_')}_key"
        _write_key(key, key_path)
        host_key_lines += f"HostKey {key_path}\n"
    host_key = next(iter(host_keys.values()))
    client_key = asyncssh.generate_private_key(client_key_type)
    client_key_path = workdir / "client_key"
    _write_key(client_key, client_key_path)
    public = client_key.export_public_key("openssh").decode()

    is_root = os.geteuid() == 0
    chroot = is_root if chroot is None else chroot
    chroot_user = chroot_dir = None
    cleanup: list[Path] = []
    if chroot or chroot_users:
        # sshd reads a user's authorized keys as that user: the chroot user must be able to
        # reach the folder, which a private tmp folder (0700) does not allow.
        auth_dir = Path(tempfile.mkdtemp(prefix="consonance-sftp-keys-", dir=_chroot_base()))
        cleanup.append(auth_dir)
    else:
        auth_dir = workdir / "authorized_keys"
        auth_dir.mkdir(exist_ok=True)
    shell_user = getpass.getuser()
    (auth_dir / shell_user).write_text(public)
    match_block = ""
    chroots: dict[str, Path] = {}
    if chroot_users and not is_root:
        raise OpenSshUnavailable("chrooted accounts need root")
    for user in ([CHROOT_USER] if chroot else []) + list(chroot_users):
        ensure_chroot_user(user)
        jail = Path(tempfile.mkdtemp(prefix="consonance-sftp-chroot-", dir=_chroot_base()))
        os.chmod(jail, 0o755)  # noqa: S103 (sshd requires it)
        cleanup.append(jail)
        upload = jail / "upload"
        upload.mkdir()
        entry = pwd.getpwnam(user)
        os.chown(upload, entry.pw_uid, entry.pw_gid)
        (auth_dir / user).write_text(public)
        match_block += (
            f"Match User {user}\n"
            f"    ChrootDirectory {jail}\n"
            f"    ForceCommand internal-sftp -d /upload {sftp_options}\n"
            "    AllowTcpForwarding no\n"
            "    X11Forwarding no\n"
            "    PermitTTY no\n"
        )
        if user == CHROOT_USER and chroot:
            chroot_user, chroot_dir = user, jail
        else:
            chroots[user] = jail
    # public keys only; readable by the users sshd checks them as
    os.chmod(auth_dir, 0o755)  # noqa: S103
    for f in auth_dir.iterdir():
        os.chmod(f, 0o644)

    pid_file = workdir / "sshd.pid"
    config = workdir / "sshd_config"
    chosen_port = port or free_port(host)
    # sshd keeps the first value of a keyword, so the caller's lines go first.
    config.write_text(
        f"{extra_config}\n"
        f"Port {chosen_port}\n"
        f"ListenAddress {host}\n"
        f"{host_key_lines}"
        f"PidFile {pid_file}\n"
        f"AuthorizedKeysFile {auth_dir}/%u\n"
        "StrictModes no\n"
        "UsePAM no\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "MaxStartups 100:30:200\n"
        "MaxSessions 64\n"
        "LogLevel ERROR\n"
        f"Subsystem sftp internal-sftp {sftp_options}\n"
        f"{match_block}"
    )
    if is_root:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log_file = workdir / "sshd.log"
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config), "-E", str(log_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = OpenSshServer(
        host=host,
        port=chosen_port,
        workdir=workdir,
        process=process,
        host_key=host_key,
        host_keys=host_keys,
        client_key_path=client_key_path,
        shell_user=shell_user,
        chroot_user=chroot_user,
        chroot_dir=chroot_dir,
        chroots=chroots,
        _cleanup=cleanup,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            text = log_file.read_text() if log_file.exists() else ""
            raise OpenSshUnavailable(f"sshd exited with {process.returncode}: {text.strip()}")
        with contextlib.suppress(OSError), socket.create_connection((host, chosen_port), 0.2):
            return server
        time.sleep(0.05)
    server.stop()
    raise OpenSshUnavailable(f"sshd did not listen on {host}:{chosen_port} in {timeout}s")
