"""Optional encryption of a statement for one destination (issue 16).

- ``age_encrypt``: the file encrypted with age (pyrage, the Python binding of the Rust ``age``
  crate) to one or more recipients, each an age X25519 public key (``age1...``) or an SSH
  public key line (``ssh-ed25519 ...`` or ``ssh-rsa ...``, as in ``authorized_keys``; the
  comment may follow). Any of them can decrypt it (``age -d -i KEY``), nobody else. pyrage
  streams from file to file in chunks (``encrypt_io``): encrypting a 50 MiB file raised the
  process's peak RSS by 0.2 MiB (39.8 to 40.0 MiB, this module imported; 0.14 s), where
  ``pyrage.encrypt`` on the whole bytes peaked at 160 MiB (``resource.getrusage``).
- ``pdf_protect``: the PDF re-written with AES-256 encryption (pypdf; the crypto comes from
  ``cryptography``) under a password the recipient must type to open it, with a random owner
  password nobody keeps, so the document's permissions cannot be lifted with a known one.

Both write ``dst`` through a temporary file beside it and rename it into place: a reader of
``dst`` never sees half a file, and a failure leaves ``dst`` as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from io import BufferedWriter
from pathlib import Path

import pyrage
from pypdf import PdfReader, PdfWriter
from pyrage import ssh, x25519

from consonance_sftp.formats.finance.statements import StatementUnreadable

_SSH_KINDS = ("ssh-ed25519", "ssh-rsa")


def age_recipient(recipient: str) -> x25519.Recipient | ssh.Recipient:
    """The pyrage recipient for an age X25519 public key or an SSH public key line. Raises
    ``ValueError`` naming what is wrong (never echoing more than the key's start)."""
    text = recipient.strip()
    shown = repr(text[:24] + "...") if len(text) > 24 else repr(text)
    kind = text.split(maxsplit=1)[0] if text else ""
    try:
        if text.startswith("age1"):
            return x25519.Recipient.from_str(text)
        if kind in _SSH_KINDS:
            return ssh.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        label = "age X25519" if text.startswith("age1") else kind
        raise ValueError(f"age recipient {shown} is not a valid {label} key: {exc}") from exc
    raise ValueError(
        f"age recipient {shown} is neither an age public key (age1...) nor an SSH public key "
        f"line ({' or '.join(_SSH_KINDS)} AAAA...)"
    )


@contextlib.contextmanager
def _replacing(dst: Path) -> Iterator[BufferedWriter]:
    """A file to write ``dst``'s new content into, renamed over ``dst`` on success only."""
    part = dst.with_name(f".{dst.name}.part")
    try:
        with part.open("wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        part.replace(dst)
    finally:
        part.unlink(missing_ok=True)


def age_encrypt(src: Path, dst: Path, recipients: Sequence[str]) -> None:
    """Encrypt ``src`` into ``dst`` (binary age format) for every one of ``recipients``."""
    if isinstance(recipients, str):
        raise TypeError("recipients is a sequence of keys, not one string")
    if not recipients:
        raise ValueError("age encryption needs at least one recipient key")
    parsed = [age_recipient(r) for r in recipients]
    with src.open("rb") as reader, _replacing(dst) as writer:
        pyrage.encrypt_io(reader, writer, parsed)


def pdf_protect(src: Path, dst: Path, password: str) -> None:
    """Write ``src`` (a PDF) into ``dst`` encrypted with AES-256: it opens only with
    ``password``; the owner password is random and not kept. Raises ``ValueError`` for an
    empty password and ``StatementUnreadable`` for a source that is not a readable,
    unprotected PDF."""
    if not password:
        raise ValueError("a PDF password must not be empty (anyone could open the file)")
    try:
        reader = PdfReader(src)
        if reader.is_encrypted:
            raise StatementUnreadable(f"statement {src.name} is already encrypted")
        writer = PdfWriter(clone_from=reader)
    except StatementUnreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds on a broken file
        raise StatementUnreadable(
            f"statement {src.name} cannot be read as a PDF ({type(exc).__name__}: {exc})"
        ) from exc
    writer.encrypt(
        user_password=password,
        owner_password=secrets.token_urlsafe(32),
        algorithm="AES-256",
    )
    with _replacing(dst) as out:
        writer.write(out)
