"""Pinned SSH host keys as written in the config: a known_hosts line or a SHA256 fingerprint.

Every form is checked when the config loads, so a typo in a pinned key is a config error and
not a confusing "host key mismatch" at the first transfer. ``fingerprint_of`` turns any form
into the ``SHA256:...`` fingerprint the SFTP layer compares against the server's key.

A server usually holds several host keys (stock OpenSSH: ed25519, ECDSA and RSA) and shows
one per connection, the one of the first key type the client offers that it has. So a pin
names its key type where it can: a known_hosts line does; a fingerprint may be written with
its type in front (``ssh-ed25519 SHA256:...``, as ``partner trust`` writes it). A bare
``SHA256:...`` is still valid: the client then tries the server's key types one by one.
``pin_key_type`` gives the type a pin names; ``KEY_TYPES`` maps each type to the host key
algorithms that make a server show a key of that type.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re

import asyncssh

_FINGERPRINT = re.compile(r"^SHA256:([A-Za-z0-9+/]{43})=?$")
_KEY_TYPE = re.compile(r"^(ssh-|ecdsa-|sk-|rsa-sha2-)")

# Host key types a server may hold, in the order OpenSSH's own client prefers them, each with
# the algorithms that ask the server for a key of that type (an RSA key is shown with any of
# three signature algorithms; OpenSSH >= 8.8 refuses the SHA-1 one).
KEY_TYPES: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
    "ssh-ed448": ("ssh-ed448",),
}
# The short names ssh-keygen -l prints in brackets, e.g. "(ED25519)"; ECDSA is any curve.
_SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "ed25519": ("ssh-ed25519",),
    "ecdsa": ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"),
    "rsa": ("ssh-rsa",),
    "ed448": ("ssh-ed448",),
}


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
    if value.upper().startswith("SHA256:") or _typed_fingerprint(value.strip()) is not None:
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


def _typed_fingerprint(value: str) -> tuple[str, str] | None:
    """(key type as written, fingerprint) of a ``TYPE SHA256:...`` pin, else None."""
    fields = value.split()
    if len(fields) == 2 and fields[1].upper().startswith("SHA256:"):
        return fields[0], fields[1]
    return None


def is_fingerprint(value: str) -> bool:
    """Is the pin a fingerprint (bare or typed), rather than a full key?"""
    value = value.strip()
    return value.upper().startswith("SHA256:") or _typed_fingerprint(value) is not None


def key_types_named(name: str) -> tuple[str, ...]:
    """The host key types (``KEY_TYPES`` keys) a pin's type name stands for."""
    lowered = name.strip().strip("()").lower()
    if lowered in KEY_TYPES:
        return (lowered,)
    if lowered in _SHORT_NAMES:
        return _SHORT_NAMES[lowered]
    raise HostKeyFormatError(
        f"unknown host key type {name!r}: use one of {', '.join(KEY_TYPES)} "
        "(or ED25519, ECDSA, RSA as ssh-keygen -l prints them)"
    )


def pin_key_type(value: str) -> tuple[str, ...]:
    """The host key types a pin names; () for a bare ``SHA256:...`` (any type may match)."""
    value = value.strip()
    if value.upper().startswith("SHA256:"):
        return ()
    typed = _typed_fingerprint(value)
    if typed is not None:
        return key_types_named(typed[0])
    _patterns, key_type, _blob = _split_known_hosts(value)
    return (key_type,) if key_type in KEY_TYPES else ()


def validate_host_key(value: str) -> str:
    """Check one pinned key's form; returns it stripped (a typed fingerprint as
    ``TYPE SHA256:...`` with the type as written)."""
    value = value.strip()
    typed = _typed_fingerprint(value)
    if typed is not None:
        key_types_named(typed[0])
        return f"{typed[0]} {validate_host_key(typed[1])}"
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
    """``SHA256:...`` of a pinned key given as a fingerprint (typed or bare) or as a known_hosts
    line."""
    value = validate_host_key(value)
    if value.startswith("SHA256:"):
        return value
    typed = _typed_fingerprint(value)
    if typed is not None:
        return typed[1]
    fingerprint: str = parse_public_key(value).get_fingerprint("sha256")
    return fingerprint.rstrip("=")
