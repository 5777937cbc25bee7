"""Pinned SSH host keys as written in the config: a known_hosts line or a SHA256 fingerprint.

Both forms are checked when the config loads, so a typo in a pinned key is a config error and
not a confusing "host key mismatch" at the first transfer. ``fingerprint_of`` turns either form
into the ``SHA256:...`` fingerprint the SFTP layer compares against the server's key.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re

import asyncssh

_FINGERPRINT = re.compile(r"^SHA256:([A-Za-z0-9+/]{43})=?$")
_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-|rsa-sha2-)")


class HostKeyFormatError(ValueError):
    """A pinned host key is neither a known_hosts line nor a SHA256 fingerprint."""


def _split_known_hosts(line: str) -> tuple[str | None, str, str]:
    """(host patterns or None, key type, base64 key) of one known_hosts line."""
    fields = line.split()
    if fields and fields[0].startswith("@"):
        raise HostKeyFormatError(
            f"markers such as {fields[0]} are not supported; pin the server's own key"
        )
    if len(fields) >= 2 and _KEY_TYPE.match(fields[0]):
        return None, fields[0], fields[1]
    if len(fields) >= 3 and _KEY_TYPE.match(fields[1]):
        return fields[0], fields[1], fields[2]
    raise HostKeyFormatError(
        "expected a known_hosts line such as '[sftp.example.com]:22 ssh-ed25519 AAAA...' "
        "or a fingerprint such as 'SHA256:...' (from ssh-keyscan or ssh-keygen -lf)"
    )


def parse_public_key(line: str) -> asyncssh.SSHKey:
    """The public key of a known_hosts line; raises HostKeyFormatError when it does not parse."""
    _patterns, key_type, blob = _split_known_hosts(line.strip())
    try:
        base64.b64decode(blob, validate=True)
        return asyncssh.import_public_key(f"{key_type} {blob}")
    except (binascii.Error, asyncssh.KeyImportError, ValueError) as exc:
        raise HostKeyFormatError(f"the {key_type} key does not decode: {exc}") from None


def pattern_mismatch(value: str, host: str, port: int) -> str | None:
    """The host patterns of a known_hosts line when they cannot match ``host``:``port``.

    A line copied from another server's entry is a likely paste error; hashed (``|1|``)
    patterns cannot be checked and pass, as do bare keys and fingerprints.
    """
    if value.upper().startswith("SHA256:"):
        return None
    try:
        patterns, _key_type, _blob = _split_known_hosts(value.strip())
    except HostKeyFormatError:
        return None
    if patterns is None or patterns.startswith("|"):
        return None
    name = host if port == 22 else f"[{host}]:{port}"
    for pattern in patterns.split(","):
        # known_hosts patterns know only * and ?; brackets are literal ([host]:port).
        literal = pattern.lower().replace("[", "\x00").replace("]", "[]]").replace("\x00", "[[]")
        if not pattern.startswith("!") and fnmatch.fnmatchcase(name.lower(), literal):
            return None
    return patterns


def validate_host_key(value: str) -> str:
    """Check one pinned key's form; returns it stripped."""
    value = value.strip()
    if value.upper().startswith("SHA256:"):
        if not _FINGERPRINT.match(value):
            raise HostKeyFormatError(
                "a SHA256 fingerprint is 'SHA256:' followed by 43 base64 characters"
            )
        return value.rstrip("=")
    if value.upper().startswith(("MD5:", "SHA1:")):
        raise HostKeyFormatError("only SHA256 fingerprints are accepted")
    parse_public_key(value)
    return value


def fingerprint_of(value: str) -> str:
    """``SHA256:...`` of a pinned key given either as a fingerprint or as a known_hosts line."""
    value = validate_host_key(value)
    if value.startswith("SHA256:"):
        return value
    fingerprint: str = parse_public_key(value).get_fingerprint("sha256")
    return fingerprint.rstrip("=")
