"""Which file names a partner may send us as they are, and which go to quarantine (and why).

Pure rules over one name (no I/O), shared by the intake workflow (``engine.intake``: a file
whose name is dangerous is taken in under a safe name in the quarantine folder) and the intake
screening (``flows.intake_screen``: every entry name of an archive). Each refusal has a short,
stable code (``name-traversal``, ``name-device``...) and a sentence for people; the codes are
listed in docs/reference/intake.md.

Names arrive decoded from UTF-8 with ``surrogateescape`` (the SFTP client's choice), so a name
that is not UTF-8 survives here as lone surrogates: ``raw_bytes`` gives the bytes back.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

MAX_NAME_BYTES = 200
"""Longest name kept as is: the local staging name adds a few characters, and most file
systems stop at 255 bytes (a name over 255 bytes is refused here too, by this rule)."""

# Windows reserves these device names in every folder, with or without an extension
# ("CON.pdf" opens the console): such a file cannot be copied to a Windows share or desktop.
# Microsoft lists COM/LPT with the digits 1-9 and the superscripts ¹ ² ³; 0 is reserved too.
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789\u00b9\u00b2\u00b3"}
)

# Characters that pass for a path separator or a dot but are not one: "..∕..∕x.pdf" reads as a
# path to a person and to some tools that fold look-alikes.
_SEPARATOR_LOOKALIKES = frozenset("\u2044\u2215\u29f8\u29f5\u2216\uff0f\uff3c\u2024\u2025\uff0e")

# Scripts whose letters pass for one another (Latin "a", Cyrillic "а", Greek "α"): a name that
# mixes them may be made to look like another name. Other mixes (Kanji with Hiragana) are normal.
_LOOKALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})

_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+()-]+")


class NameRefusal(NamedTuple):
    """Why a name is not used as is: a stable code and a sentence for people."""

    code: str
    detail: str


def raw_bytes(text: str) -> bytes:
    """The bytes a name or path had on the server. The SFTP client decodes names as UTF-8
    with ``surrogateescape``, so a byte that is not UTF-8 survives as a lone surrogate."""
    return text.encode("utf-8", "surrogateescape")


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 as is (no surrogate code points)."""
    return not any("\ud800" <= c <= "\udfff" for c in text)


def printable_path(path: str) -> str:
    """A path (or a message naming one) as it can be stored, logged and shown: itself when it
    is UTF-8, else with each byte that is not shown as ``\\xNN`` (the ledger keeps the original
    bytes in hex)."""
    if is_utf8(path):
        return path
    try:
        return raw_bytes(path).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no SFTP name decodes to: show its code point
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _script(char: str) -> str | None:
    """The script of a letter, from its Unicode name (``CYRILLIC SMALL LETTER A``)."""
    if not char.isalpha():
        return None
    words = unicodedata.name(char, "").split()
    return words[0] if words else None


def mixed_scripts(name: str) -> list[str]:
    """The look-alike scripts mixed inside one word of ``name`` (title case, sorted), or [].

    Word by word: a Greek title with a ".pdf" suffix is fine, "pаypal" (a Cyrillic "а") is not.
    """
    mixed: set[str] = set()
    for word in re.findall(r"[^\W\d_]+", unicodedata.normalize("NFC", name)):
        scripts = {s for s in map(_script, word) if s is not None}
        if len(scripts & _LOOKALIKE_SCRIPTS) > 1:
            mixed |= scripts & _LOOKALIKE_SCRIPTS
    return sorted(s.title() for s in mixed)


def _compat_lookalikes(name: str) -> list[str]:
    """Letters and digits that NFKC folds into other ones (fullwidth ``ｆ``, mathematical bold,
    ligatures ``ﬁ``): they look like the plain letters but are other bytes. Symbols NFKC also
    folds (``™``, ``½``) are harmless and not listed, nor are the Latin-1 characters keyboards
    type (``1ª edição``, ``5 µm``)."""
    return [
        c
        for c in unicodedata.normalize("NFC", name)
        if ord(c) > 0xFF
        and unicodedata.category(c)[0] in "LN"
        and unicodedata.category(c) != "No"
        and unicodedata.normalize("NFKC", c) != c
    ]


def name_refusal(name: str) -> NameRefusal | None:
    """Why a partner's file name is not acceptable as a local name (None: it is).

    Such a file is still taken in, under a safe name in the quarantine folder, with this
    reason on its ledger row: a name that could escape its folder, hide itself, pass as a
    command-line option or a device, break a terminal, or pass for another name is never used
    as is. The first rule that applies gives the code.
    """
    if not name:
        return NameRefusal("name-empty", "the file name is empty")
    if not is_utf8(name):
        return NameRefusal(
            "name-not-utf8",
            "the file name is not valid UTF-8 (its bytes, in hex: "
            f"{raw_bytes(name).hex()}); kept under a safe name",
        )
    if name in (".", ".."):
        return NameRefusal("name-traversal", "the file name is '.' or '..'")
    if ".." in name.replace("\\", "/").split("/"):
        return NameRefusal(
            "name-traversal",
            "the file name contains a path separator and '..' (it would climb out of its folder)",
        )
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return NameRefusal(
            "name-absolute", "the file name is an absolute path (a leading '/', '\\' or 'C:')"
        )
    if "/" in name or "\\" in name:
        return NameRefusal("name-separator", "the file name contains a path separator")
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})
    if bad:
        return NameRefusal(
            "name-control",
            "the file name contains control characters: "
            + ", ".join(f"U+{ord(c):04X}" for c in bad),
        )
    if len(raw_bytes(name)) > MAX_NAME_BYTES:
        return NameRefusal(
            "name-too-long",
            f"the file name is longer than {MAX_NAME_BYTES} bytes ({len(raw_bytes(name))})",
        )
    if name.startswith("-"):
        return NameRefusal(
            "name-option", "the file name starts with '-' (it could pass as a command-line option)"
        )
    if name.startswith("."):
        return NameRefusal("name-hidden", "the file name starts with '.' (a hidden file)")
    if name[0].isspace():
        return NameRefusal("name-whitespace", "the file name starts or ends with white space")
    if name.endswith((".", " ")) or name[-1].isspace():
        return NameRefusal(
            "name-trailing",
            "the file name ends with a dot or white space (Windows drops them: it would be "
            "another file's name there)",
        )
    device = name.split(".", 1)[0].rstrip(" ").upper()
    if device in _DEVICE_NAMES:
        return NameRefusal(
            "name-device",
            f"the file name is the reserved Windows device name {device!r} (with or without "
            "an extension it opens the device, not a file, on Windows)",
        )
    lookalike = sorted({c for c in name if c in _SEPARATOR_LOOKALIKES})
    if lookalike:
        return NameRefusal(
            "name-lookalike",
            "the file name has characters that look like a path separator or a dot but are "
            "not: " + ", ".join(f"U+{ord(c):04X}" for c in lookalike),
        )
    scripts = mixed_scripts(name)
    if scripts:
        return NameRefusal(
            "name-mixed-scripts",
            f"the file name mixes look-alike scripts in one word ({', '.join(scripts)}): "
            "it may pass for another name",
        )
    compat = _compat_lookalikes(name)
    if compat:
        return NameRefusal(
            "name-lookalike",
            "the file name has look-alike letters or digits (NFKC reads them as "
            f"{unicodedata.normalize('NFKC', ''.join(compat))!r}): "
            + ", ".join(f"U+{ord(c):04X}" for c in sorted(set(compat))),
        )
    return None


def name_problem(name: str) -> str | None:
    """``name_refusal``'s sentence alone (None: the name is acceptable)."""
    refusal = name_refusal(name)
    return None if refusal is None else refusal.detail


def name_notes(name: str) -> tuple[str | None, str | None]:
    """What a person should know about a name, and its NFC form when the name is not in it:
    ``(note, nfc)``, ``(None, None)`` for an ordinary name.

    The note goes on the file's ledger row, its audit event and ``run``'s output: a name in
    NFD (decomposed accents, as macOS writes them) is a different name, byte for byte, from
    the same name typed on most other systems (such a file is stored under its own name), and
    a name that mixes look-alike scripts can pass for another file (``name_refusal``
    quarantines it; the note says what was seen).
    """
    if not is_utf8(name):
        return None, None
    notes: list[str] = []
    nfc = unicodedata.normalize("NFC", name)
    if nfc != name:
        marks = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.combining(c)})
        notes.append(
            "the name is not in NFC form (decomposed characters"
            + (f": {', '.join(marks)}" if marks else "")
            + f"); it looks like {nfc!r} but is not the same bytes"
        )
    mixed = mixed_scripts(nfc)
    if mixed:
        notes.append(
            f"the name mixes look-alike scripts ({', '.join(mixed)}): it may pass for another name"
        )
    nfkc = unicodedata.normalize("NFKC", nfc)
    if nfkc != nfc:
        notes.append(f"the name has look-alike compatibility characters (NFKC: {nfkc!r})")
    return ("; ".join(notes) or None), (nfc if nfc != name else None)


def safe_local_name(name: str) -> str:
    """A harmless local name for a quarantined file: letters, digits and ``._+()-`` only,
    never starting with ``.`` or ``-``, never a Windows device name, at most 100 characters;
    the original name stays on the ledger row (``remote_path``)."""
    cleaned = _UNSAFE_CHARS.sub("_", name).lstrip(".-_")[:100].rstrip(". ")
    if cleaned.split(".", 1)[0].upper() in _DEVICE_NAMES:
        cleaned = f"file_{cleaned}"
    return cleaned or "file"
