"""Which payee a royalty statement belongs to, by construction (issue 16).

A statement is sent only when two independent facts agree: its file name, through the flow's
pattern (``statement_*_{contact}.pdf``), names one Consonance contact, **and** its text names
that payee (by name, contact ID or contract reference) and no other payee of its batch. Every
other case is a ``Resolution`` with a reason, for quarantine; nothing here guesses.

Matching is done on normalised text: Unicode NFKC (a decomposed "Zoe" + combining diaeresis
and a precomposed "Zoë" are the same letters), case-folded, typographic apostrophes and hyphens
folded to ASCII, soft hyphens dropped, and every run of white space collapsed to one space,
since PDF text extraction breaks lines anywhere. Names and contract names match as whole
words, with any white space (or none: extraction sometimes drops the space between two words)
between their words: "Ann Lee" never matches inside "Ann Leeds". A contact ID counts only in
context (``Contact ID: 501``, ``Contact 501``, ``Payee ID 501``, ``#501``), never as a bare
number, which would hit amounts; a numeric contract reference likewise only after "Contract"
(``Contract 1207``, ``Contract no. 1207``).

A co-authored title's contract name names both co-authors ("Jane Doe & Richard Roe: The
Garden"): mentions of another payee that lie inside the payee's own contract references, or
inside the payee's own name ("Ann Lee" inside "Mary Ann Lee"), do not count as naming that
other payee. Everywhere else they do.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pypdf import PasswordType, PdfReader

from consonance_sftp.errors import ConsonanceSftpError

ResolutionKind = Literal["resolved", "unmatched", "unknown", "no_text", "not_named", "two_payees"]

PLACEHOLDER = "{contact}"


class StatementUnreadable(ConsonanceSftpError):
    """A statement file is not a PDF, is password-protected, or is too broken to read."""

    default_hint = "Export the statement again from Consonance as an unprotected PDF."


@dataclass(frozen=True)
class Payee:
    """A Consonance contact who receives statements, with the references of its contracts
    (contract names and/or contract IDs) that its statements may quote."""

    contact_id: int
    name: str
    contract_refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """What a statement resolved to. Only ``kind == "resolved"`` may be sent. ``payee`` is the
    payee the file name points to whenever that contact exists (so a quarantined statement
    can still say whose it seemed to be); ``reason`` says why it is not resolved."""

    payee: Payee | None
    reason: str | None
    kind: ResolutionKind

    @property
    def resolved(self) -> bool:
        return self.kind == "resolved"


# --- the file name ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression for a file-name pattern: a glob (``*`` any run of characters,
    ``?`` one character, everything else literal, case-insensitive) with exactly one
    ``{contact}`` standing for the contact ID's digits. The expression matches whole names
    only, and the contact ID is never cut out of a longer run of digits (``x{contact}`` does
    not read "12345" as contact 2345). Raises ``ValueError`` for any other pattern."""
    count = pattern.count(PLACEHOLDER)
    if count != 1:
        raise ValueError(
            f"statement file-name pattern {pattern!r} must contain {PLACEHOLDER} exactly once "
            f"(it stands for the payee's contact ID), found {count}; "
            "e.g. 'statement_*_{contact}.pdf'"
        )
    if "/" in pattern or "\\" in pattern:
        raise ValueError(f"statement file-name pattern {pattern!r} must be a file name, not a path")
    rest = pattern.replace(PLACEHOLDER, "")
    bad = sorted({c for c in rest if c in "{}[]"})
    if bad:
        raise ValueError(
            f"statement file-name pattern {pattern!r} may use only * and ? as wildcards and "
            f"{PLACEHOLDER} once; remove {' '.join(bad)}"
        )
    parts: list[str] = []
    for part in re.split(r"(\{contact\}|\*|\?)", pattern):
        if part == PLACEHOLDER:
            parts.append(r"(?<!\d)(?P<contact>\d+)(?!\d)")
        elif part == "*":
            parts.append(".*")
        elif part == "?":
            parts.append(".")
        elif part:
            parts.append(re.escape(part))
    return re.compile(r"\A(?:" + "".join(parts) + r")\Z", re.IGNORECASE | re.DOTALL)


def contact_in_name(pattern: str, file_name: str) -> int | None:
    """The contact ID a file name carries through ``pattern``, or None if it does not match."""
    match = pattern_regex(pattern).match(file_name)
    return int(match.group("contact")) if match else None


# --- the text --------------------------------------------------------------------------------


def pdf_text(path: Path) -> str:
    """The text of every page of a PDF, pages separated by a newline ("" when it has no text
    layer, e.g. a scan). A PDF protected only by an owner password (permissions, no password
    to open it) is read; one that needs a password to open raises ``StatementUnreadable``, as
    does a file that is not a PDF or is too broken to read."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1024)
    except OSError as exc:
        raise StatementUnreadable(
            f"statement {path.name} cannot be read: {exc.strerror or exc}"
        ) from exc
    if b"%PDF-" not in head:
        raise StatementUnreadable(f"statement {path.name} is not a PDF (no %PDF- header)")
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise StatementUnreadable(
                f"statement {path.name} is encrypted (it needs a password to open), so its "
                "payee cannot be checked"
            )
        return "\n".join(page.extract_text() or "" for page in reader.pages)
    except StatementUnreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds on a broken file; all mean "unreadable"
        raise StatementUnreadable(
            f"statement {path.name} is a broken PDF that cannot be read "
            f"({type(exc).__name__}: {exc})"
        ) from exc


_FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "\u2010": "-",
        "\u2011": "-",
        "\u00ad": None,  # soft hyphen: invisible, but extraction keeps it
    }
)


def normalise(text: str) -> str:
    """``text`` as matched: NFKC, case-folded, typographic apostrophes and hyphens folded,
    white space collapsed to single spaces and trimmed."""
    folded = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    return " ".join(unicodedata.normalize("NFKC", folded).split())


def _words_regex(phrase: str) -> re.Pattern[str] | None:
    """Whole-word match of ``phrase`` (normalised), any white space or none between words."""
    words = normalise(phrase).split()
    if not words:
        return None
    body = r"\s*".join(re.escape(w) for w in words)
    return re.compile(r"(?<!\w)" + body + r"(?!\w)")


_ID_CONTEXT = (
    r"(?:(?<!\w)(?:contact|payee)(?:\s*(?:id|no\.?|number|nr\.?))?\s*[:#]?\s*"  # Contact ID:
    r"|(?<![\w#])#\s*)"  # or #501
)
_CONTACT_ID = re.compile(_ID_CONTEXT + r"0*(?P<id>\d+)(?!\d)")
_CONTRACT_CONTEXT = (
    r"(?<!\w)contract(?:\s*(?:id|no\.?|number|nr\.?|ref\.?|reference))?\s*[:#]?\s*0*"
)

Span = tuple[int, int]


def _contact_id_spans(text: str) -> dict[int, list[Span]]:
    found: dict[int, list[Span]] = {}
    for match in _CONTACT_ID.finditer(text):
        found.setdefault(int(match.group("id")), []).append(match.span())
    return found


def _ref_regex(ref: str) -> re.Pattern[str] | None:
    ref = normalise(ref)
    if ref.isdigit():
        return re.compile(_CONTRACT_CONTEXT + re.escape(ref.lstrip("0") or "0") + r"(?!\d)")
    return _words_regex(ref)


def _spans(regex: re.Pattern[str] | None, text: str) -> list[Span]:
    return [m.span() for m in regex.finditer(text)] if regex is not None else []


def _inside(span: Span, spans: Iterable[Span]) -> bool:
    return any(start <= span[0] and span[1] <= end for start, end in spans)


def _who(contact_id: int, payee: Payee | None) -> str:
    return f"{payee.name} (contact {contact_id})" if payee else f"contact {contact_id}"


def resolve(
    file_name: str,
    text: str,
    pattern: str,
    contacts: Mapping[int, Payee],
    batch: Collection[int],
) -> Resolution:
    """Resolve one statement of a batch to its payee, or say why not.

    ``contacts`` are the Consonance contacts that may receive statements, by contact ID;
    ``batch`` the contact IDs that the batch's file names carry. In order: the file name must
    match ``pattern`` (else ``unmatched``); its contact must be in ``contacts`` (``unknown``);
    the text must not be empty (``no_text``: no text layer, so nothing can be checked); it must
    name the payee by name, contact ID or contract reference (``not_named``); and outside the
    payee's own contract references and name it must name no other payee of the batch by name
    or contact ID (``two_payees``)."""
    contact_id = contact_in_name(pattern, file_name)
    if contact_id is None:
        return Resolution(
            None, f"file name {file_name!r} does not match the pattern {pattern!r}", "unmatched"
        )
    payee = contacts.get(contact_id)
    if payee is None:
        return Resolution(
            None,
            f"file name {file_name!r} names contact {contact_id}, which is no Consonance contact",
            "unknown",
        )
    norm = normalise(text)
    if not norm:
        return Resolution(
            payee,
            f"{file_name} has no text layer (maybe a scanned image), so it cannot be checked "
            f"that it is {_who(contact_id, payee)}'s",
            "no_text",
        )
    ids = _contact_id_spans(norm)
    name_spans = _spans(_words_regex(payee.name), norm)
    ref_spans = [span for ref in payee.contract_refs for span in _spans(_ref_regex(ref), norm)]
    if not (name_spans or ref_spans or contact_id in ids):
        return Resolution(
            payee,
            f"{file_name}'s text does not name {_who(contact_id, payee)}: not by name, contact "
            "ID or contract reference",
            "not_named",
        )
    own = name_spans + ref_spans
    others: list[str] = []
    for other_id in sorted(set(batch) - {contact_id}):
        other = contacts.get(other_id)
        mentions = ids.get(other_id, []) + (_spans(_words_regex(other.name), norm) if other else [])
        if any(not _inside(span, own) for span in mentions):
            others.append(_who(other_id, other))
    if others:
        return Resolution(
            payee,
            f"{file_name}'s text names {_who(contact_id, payee)} and also another payee of "
            f"this batch: {', '.join(others)}",
            "two_payees",
        )
    return Resolution(payee, None, "resolved")
