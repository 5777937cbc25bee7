"""What ``config check`` looks at beyond validation: what would fail, or surprise, later.

Loading (``config.loader``) proves the file is well formed. These checks look at what the
file points to and at how its parts combine, each finding with its TOML path:

* **files**: a private key (``partners.*.auth.key``, the sandbox host key) that is missing, a
  folder, unreadable, not a private key, or needs a passphrase it was not given; the sandbox's
  authorized-keys file the same way (host keys are pinned inline, so there is no pin file);
* **host keys**: a pin written as a bare ``SHA256:...`` fingerprint names no key type: a server
  holding several keys (ed25519, ECDSA, RSA) is then asked for each type in turn until it
  shows the pinned one (a note: it works, at the cost of extra key exchanges);
* **permissions**: a private key or a ``{file = ...}`` secret that its group or others may
  read (the fix is ``chmod 600``);
* **inboxes**: two enabled intake flows polling the same folder of the same SFTP account
  with patterns that share a file name: whichever polls first takes the file, the other never
  sees it. The overlap test is exact for shell patterns (``config.patterns``); a folder is
  compared by host, port, user and path as written (normalised: ``/out/`` is ``/out``), so
  two paths that are one folder on the server (a link there, a path relative to the login
  folder, a case-insensitive file system) are not detected;
* **flow kinds**: a kind this release cannot run (it is refused by ``run`` and skipped by
  ``serve``), and what an intake kind does today (it only stores files).

Severities: ``error`` for what will fail (``config check`` exits 2), ``warning`` for what will
surprise, ``note`` for what the operator should know. The checks read files but change nothing
and connect nowhere.
"""

from __future__ import annotations

import posixpath
import stat
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncssh
from pydantic import SecretStr

from consonance_sftp.config.flows import IntakeFlowBase
from consonance_sftp.config.hostkeys import is_fingerprint, pin_key_type
from consonance_sftp.config.loader import load_settings, toml_path
from consonance_sftp.config.patterns import overlap
from consonance_sftp.config.settings import Settings

Severity = Literal["error", "warning", "note"]
_ORDER: dict[Severity, int] = {"error": 0, "warning": 1, "note": 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing ``config check`` reports about a valid config, located by its TOML path."""

    severity: Severity
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def check_file(path: Path) -> tuple[Settings, list[Finding]]:
    """Load the config (raising ``ConfigError`` as ``load_settings`` does) and check it."""
    settings = load_settings(path)
    # Validation read the file already; it is read again for the raw secret references,
    # which validation turns into values and forgets.
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return settings, check_settings(settings, data, base_dir=Path(path).resolve().parent)


def check_settings(settings: Settings, data: Mapping[str, Any], base_dir: Path) -> list[Finding]:
    """Every finding, errors first, each group in TOML-path order."""
    findings = [
        *_key_files(settings),
        *_host_key_pins(settings),
        *_plaintext_partners(settings),
        *_unpinned_certificates(settings),
        *_ftp_segments(settings),
        *_secret_files(data, base_dir),
        *_inbox_overlaps(settings),
        *_flow_kinds(settings),
    ]
    return sorted(findings, key=lambda f: (_ORDER[f.severity], f.path))


# --- files ---------------------------------------------------------------------------------


def _key_files(settings: Settings) -> Iterator[Finding]:
    for name, partner in settings.partners.items():
        auth = partner.auth
        if auth.key is not None:
            where = toml_path(["partners", name, "auth", "key"])
            yield from _private_key(where, Path(auth.key), auth.passphrase, missing_ok=False)
    sandbox = settings.sandbox
    if sandbox is None:
        return
    # A missing sandbox host key is written on the sandbox's first start.
    yield from _private_key("sandbox.host_key", Path(sandbox.host_key), None, missing_ok=True)
    if sandbox.partners:
        yield from _authorized_keys("sandbox.authorized_keys", Path(sandbox.authorized_keys))


def _host_key_pins(settings: Settings) -> Iterator[Finding]:
    for name, partner in settings.partners.items():
        bare = [
            n
            for n, pin in enumerate(partner.host_keys, 1)
            if is_fingerprint(pin) and not pin_key_type(pin)
        ]
        if bare and len(bare) == len(partner.host_keys):
            yield Finding(
                "note",
                toml_path(["partners", name, "host_keys"]),
                "no pin names its key type (a bare SHA256:... fingerprint): the server is asked "
                "for each key type in turn (ed25519, ECDSA, RSA) until it shows the pinned key; "
                "write it as 'ssh-ed25519 SHA256:...' (as 'partner trust' does) to ask for "
                "that type first",
            )


def _plaintext_partners(settings: Settings) -> Iterator[Finding]:
    for name, partner in settings.partners.items():
        if partner.protocol == "ftp" and partner.insecure_plaintext:
            yield Finding(
                "warning",
                toml_path(["partners", name, "protocol"]),
                "plain FTP: the password and every file cross the network unencrypted and "
                "the server is not authenticated (insecure_plaintext = true); ask the partner "
                "for FTPS or SFTP",
            )


def _unpinned_certificates(settings: Settings) -> Iterator[Finding]:
    for name, partner in settings.partners.items():
        if partner.tls_unpinned:
            yield Finding(
                "warning",
                toml_path(["partners", name, "tls_fingerprints"]),
                "no TLS certificate is pinned and tls_system_ca is off: nothing is sent to "
                f"this partner (no connection, no password) until 'consonance-sftp partner "
                f"trust {name}' shows the server's certificate and, with --fingerprint as the "
                "partner confirmed it, pins it",
            )


# Transfer settings an FTP/FTPS partner does not use: one stream per file (ftp-partners.md).
_SEGMENT_KEYS = ("segment_size", "segmented_threshold", "segment_connections")


def _ftp_segments(settings: Settings) -> Iterator[Finding]:
    for name, partner in settings.partners.items():
        if not partner.is_ftp:
            continue
        for key in _SEGMENT_KEYS:
            if key in partner.transfer.model_fields_set:
                yield Finding(
                    "warning",
                    toml_path(["partners", name, "transfer", key]),
                    "ignored for an FTP/FTPS partner: each file goes as one stream (servers "
                    "differ on REST + STOR into the same file from several connections, "
                    "so parallel segments are not done over FTP); remove it",
                )


def _private_key(
    where: str, path: Path, passphrase: SecretStr | None, *, missing_ok: bool
) -> Iterator[Finding]:
    problem = _unreadable(path, "private key", missing_ok=missing_ok)
    if problem is not None:
        yield Finding("error", where, problem)
        return
    if not path.exists():
        return
    secret = passphrase.get_secret_value() if passphrase is not None else None
    try:
        asyncssh.read_private_key(path, secret)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as exc:
        yield Finding("error", where, _key_error(path, exc, passphrase is not None))
        return
    yield from _mode(where, path, "private key")


def _key_error(path: Path, exc: Exception, has_passphrase: bool) -> str:
    reason = str(exc) or type(exc).__name__
    if "passphrase" in reason.lower() and not has_passphrase:
        return (
            f'{path} is encrypted: add passphrase = {{ env = "NAME" }} next to key '
            "(or decrypt the key)"
        )
    if "passphrase" in reason.lower() or "decrypt" in reason.lower():
        return f"{path} does not open with the configured passphrase ({reason})"
    try:
        asyncssh.import_public_key(path.read_bytes())
    except (asyncssh.KeyImportError, ValueError, OSError):
        pass
    else:
        return f"{path} is a public key; name the private key (usually the same name without .pub)"
    return f"{path} is not a private key (OpenSSH, PKCS#8 or PEM): {reason}"


def _authorized_keys(where: str, path: Path) -> Iterator[Finding]:
    problem = _unreadable(path, "authorized-keys file", missing_ok=False)
    if problem is not None:
        yield Finding("error", where, problem + "; no sandbox partner could log in with a key")
        return
    try:
        asyncssh.read_authorized_keys(str(path))
    except (asyncssh.KeyImportError, ValueError) as exc:
        yield Finding("error", where, f"{path} is not an authorized-keys file: {exc}")


def _unreadable(path: Path, what: str, *, missing_ok: bool) -> str | None:
    """Why ``path`` cannot be read as a file, or None."""
    if path.is_symlink() and not path.exists():
        return f"{path} is a link to {path.readlink()}, which does not exist"
    if not path.exists():
        return None if missing_ok else f"{path} does not exist ({what})"
    if path.is_dir():
        return f"{path} is a folder, not a {what} file"
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or type(exc).__name__}"
    return None


def _mode(where: str, path: Path, what: str) -> Iterator[Finding]:
    mode = stat.S_IMODE(path.stat().st_mode)
    group, others = mode & 0o070, mode & 0o007
    if not (group or others):
        return
    who = "its group and others" if group and others else "its group" if group else "others"
    yield Finding(
        "warning",
        where,
        f"{what} {path} is open to {who} (mode {mode:04o}); only the service's user should "
        f"read it: chmod 600 {path}",
    )


def _secret_files(data: Mapping[str, Any], base_dir: Path) -> Iterator[Finding]:
    """Every ``{file = "..."}`` secret reference in the raw TOML, by its path."""
    for parts, reference in _file_references(data, []):
        path = Path(reference).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if path.is_file():  # an unreadable one already failed validation
            yield from _mode(toml_path(parts), path, "secret file")


def _file_references(value: Any, parts: list[str]) -> Iterator[tuple[list[str], str]]:
    if isinstance(value, Mapping):
        if set(value) == {"file"} and isinstance(value["file"], str):
            yield parts, value["file"]
            return
        for key, item in value.items():
            yield from _file_references(item, [*parts, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            last = parts[-1] if parts else ""
            yield from _file_references(item, [*parts[:-1], f"{last}[{index}]"])


# --- flows ---------------------------------------------------------------------------------


def _folder_key(settings: Settings, partner: str, role: str) -> tuple[str, int, str, str] | None:
    config = settings.partners.get(partner)
    if config is None or role not in config.folders:
        return None
    path = posixpath.normpath(config.folders[role]) if config.folders[role] else "."
    return config.host.lower(), config.port, config.user, path


def _inbox_overlaps(settings: Settings) -> Iterator[Finding]:
    inboxes = [
        (name, flow)
        for name, flow in settings.flows.items()
        if isinstance(flow, IntakeFlowBase) and flow.enabled
    ]
    for index, (name, flow) in enumerate(inboxes):
        for other_name, other in inboxes[:index]:
            for partner in flow.partners:
                key = _folder_key(settings, partner, flow.folder)
                if key is None:
                    continue
                for other_partner in other.partners:
                    if _folder_key(settings, other_partner, other.folder) != key:
                        continue
                    found = overlap(other.patterns, flow.patterns)
                    if found is None:
                        continue
                    theirs, ours, example = found
                    host, port, user, folder = key
                    same = (
                        f"partner {partner!r}"
                        if partner == other_partner
                        else f"partners {other_partner!r} and {partner!r} (both {user}@{host}:"
                        f"{port})"
                    )
                    yield Finding(
                        "error",
                        toml_path(["flows", name, "patterns"]),
                        f"flow {other_name!r} polls the same folder {folder} of {same} and "
                        f"its pattern {theirs!r} overlaps {ours!r} (both take e.g. {example!r}): "
                        "each such file is taken by whichever flow polls first, never by both. "
                        "Give the flows patterns that do not overlap, or separate folders",
                    )


def _flow_kinds(settings: Settings) -> Iterator[Finding]:
    for name, flow in settings.flows.items():
        if not flow.enabled:
            continue
        where = toml_path(["flows", name, "kind"])
        if not flow.runs_today:
            yield Finding(
                "warning",
                where,
                f"{flow.kind} flows cannot run in this release: 'run {name}' refuses it and "
                "'serve' skips it. Set enabled = false until it is built",
            )
        elif flow.today:
            yield Finding("note", where, f"{flow.kind}: {flow.today}")
