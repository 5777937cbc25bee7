"""Matching a partner's file to a title, and its kind: pure decisions, no I/O.

The intake flow's hand-off (``flows.intake``) asks, in the order the flow's ``match`` rules
say, until one answers:

1. ``manifest``: a small file beside the upload naming the ISBN (and kind, version, to-do),
   read by the app and parsed here (``parse_manifest``);
2. ``pattern``: the partner's regular expression with named groups ``isbn``, ``kind``,
   ``version``, ``todo``, searched in the file's path below the flow's folder
   (``match_pattern``);
3. ``isbn``: a bare ISBN-13 or ISBN-10 anywhere in the file name (``find_isbn``); an ISBN-10
   is converted to its ISBN-13; two different ISBNs are ambiguous.

Every ISBN is checked with python-stdnum (a checksum that does not add up is a reason of its
own: "bad checksum"). The kind comes from the rule (a manifest's or pattern's ``kind``), else
from a word of the name (``kind_from_words``: "cover", "interior", "index"...), else the
file's extension, else the flow's default; the content then has to agree (``content_problem``):
a "cover.pdf" whose bytes are a PNG is not a cover PDF.

A rule that cannot match returns ``Unmatched`` with what it saw; a rule that matched something
wrong (a bad checksum, two ISBNs, a manifest that is not valid) returns a ``Refusal`` and stops
the search: a later, looser rule must not override what the partner said explicitly.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from stdnum import isbn as stdnum_isbn
from stdnum.exceptions import ValidationError

from consonance_sftp.formats.preflight.sniff import EXTENSION_TYPES
from consonance_sftp.models import AssetKind
from consonance_sftp.ports.consonance import AttachTarget

KINDS = ("interior", "cover", "index", "jacket_copy", "image", "epub", "audio", "other")
"""The kinds of file an intake flow knows (the asset versions' ``kind``, except a cover and an
interior, counted under the production handoff's names: ``asset_kind``)."""

RULES = ("manifest", "pattern", "isbn")
"""The matching rules, in their default order."""

PATTERN_GROUPS = frozenset({"isbn", "kind", "version", "todo"})
"""The named groups a partner's pattern may use (``isbn`` is required)."""

# Quarantine reasons: each reason starts with one of these labels (``quarantine list`` shows it).
UNMATCHED = "unmatched"
AMBIGUOUS = "ambiguous"
BAD_CHECKSUM = "bad checksum"
BAD_MANIFEST = "bad manifest"
UNKNOWN_PRODUCT = "unknown product"
CONTENT_MISMATCH = "content does not match the kind"
UNKNOWN_KIND = "unknown kind"
REASON_LABELS = (
    UNMATCHED,
    AMBIGUOUS,
    BAD_CHECKSUM,
    BAD_MANIFEST,
    UNKNOWN_PRODUCT,
    UNKNOWN_KIND,
    CONTENT_MISMATCH,
)

# Words a name or a pattern's ``kind`` group may use for each kind (after lower-casing and
# turning "-" and spaces into "_"); a flow adds its partners' own words with ``kinds``.
KIND_WORDS: dict[str, str] = {
    **{w: "interior" for w in ("interior", "int", "text", "txt", "pages", "typeset", "insides")},
    **{w: "cover" for w in ("cover", "cvr", "covers")},
    **{w: "index" for w in ("index", "idx")},
    **{w: "jacket_copy" for w in ("jacket_copy", "jacketcopy", "jacket", "blurb")},
    **{w: "image" for w in ("image", "img", "photo", "figure", "illustration", "picture")},
    **{w: "epub" for w in ("epub", "ebook")},
    **{w: "audio" for w in ("audio", "audiobook", "master")},
    "other": "other",
}

EXTENSION_KINDS: dict[str, str] = {
    "epub": "epub",
    **{e: "audio" for e in ("wav", "mp3", "flac", "m4a", "m4b", "aac")},
    **{e: "image" for e in ("jpg", "jpeg", "png", "tif", "tiff", "gif", "webp")},
}
"""A kind the extension alone implies, when neither the rule nor a word of the name says."""

# The content types (``formats.preflight.sniff``) each kind accepts. Word files (.docx) sniff
# as zip, RTF and plain text as text.
KIND_CONTENT: dict[str, frozenset[str]] = {
    "interior": frozenset({"pdf"}),
    "cover": frozenset({"pdf", "jpeg", "png", "tiff"}),
    "index": frozenset({"pdf", "text", "zip"}),
    "jacket_copy": frozenset({"pdf", "text", "zip"}),
    "image": frozenset({"jpeg", "png", "tiff", "gif", "webp"}),
    "epub": frozenset({"zip"}),
    "audio": frozenset({"wav", "mp3", "aac", "mp4", "flac"}),
}

_ISBN_RUN = re.compile(
    r"(?<![0-9A-Za-z])"
    r"(97[89](?:[-\s]?[0-9]){10}|[0-9](?:[-\s]?[0-9]){8}[-\s]?[0-9Xx])"
    r"(?![0-9A-Za-z])"
)
"""A run of 13 digits starting 978/979, or 9 digits and a check digit or X, hyphens or spaces
allowed between them, not part of a longer run of letters or digits."""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a rule says the file is: the product's ISBN-13, and what else it named."""

    rule: str  # manifest, pattern, isbn, assigned
    isbn: str  # ISBN-13, digits only
    kind: str | None = None  # one of KINDS, when the rule named it
    version: str | None = None  # the partner's own version label ("3", "v3")
    todo: str | None = None  # a to-do's name (or id) the rule named
    evidence: str = ""  # what was read (the manifest's name, the matched text)


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A rule that did not apply to this file, and why (it does not stop the search)."""

    rule: str
    why: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A rule that matched something that cannot be used: the file goes to quarantine with
    ``reason`` (which starts with one of ``REASON_LABELS``)."""

    reason: str


MatchOutcome = Claim | Unmatched | Refusal


# --- ISBNs ---------------------------------------------------------------------------------


def to_isbn13(text: str) -> str | Refusal:
    """An ISBN-13 (digits only) for an ISBN-10 or ISBN-13 written with or without hyphens;
    a ``Refusal`` (bad checksum) when its check digit does not add up."""
    compact = stdnum_isbn.compact(text)
    try:
        stdnum_isbn.validate(compact)
    except ValidationError as exc:
        return Refusal(f"{BAD_CHECKSUM}: {text!r} is not a valid ISBN ({exc})")
    if len(compact) == 10:
        return str(stdnum_isbn.to_isbn13(compact))
    return compact


def find_isbn(name: str) -> MatchOutcome:
    """The ISBN written anywhere in a file name (the ``isbn`` rule)."""
    runs = [m.group(1) for m in _ISBN_RUN.finditer(name)]
    if not runs:
        return Unmatched("isbn", "no ISBN in the name")
    valid: list[str] = []
    refused: list[Refusal] = []
    for run in runs:
        found = to_isbn13(run)
        if isinstance(found, Refusal):
            refused.append(found)
        elif found not in valid:
            valid.append(found)
    if len(valid) > 1:
        return Refusal(f"{AMBIGUOUS}: the name holds {len(valid)} ISBNs ({', '.join(valid)})")
    if valid:
        return Claim(rule="isbn", isbn=valid[0], evidence=name)
    return refused[0]


# --- kinds ---------------------------------------------------------------------------------


def _word(text: str) -> str:
    return re.sub(r"[-\s]+", "_", text.strip().lower())


def normalise_kind(word: str, aliases: Mapping[str, str] = {}) -> str | None:
    """One of ``KINDS`` for a word a partner uses (``Cover``, ``jacket-copy``, ``cvr``), or
    None when it names no kind."""
    key = _word(word)
    if key in KINDS:
        return key
    own = {_word(k): v for k, v in aliases.items()}
    return own.get(key) or KIND_WORDS.get(key)


def kind_from_words(path: str, aliases: Mapping[str, str] = {}) -> str | None:
    """The kind a word of the path names ("9781..._cover_v3.pdf": cover), the file name's
    words first, then its folders' from the nearest; None when no word names one."""
    parts = [p for p in path.split("/") if p]
    if parts:
        parts[-1] = posixpath.splitext(parts[-1])[0]
    for part in reversed(parts):
        words = [w for w in re.split(r"[^0-9A-Za-z]+", part) if w]
        for n in (2, 1):  # "jacket copy" before "jacket"
            for i in range(len(words) - n + 1):
                kind = normalise_kind("_".join(words[i : i + n]), aliases)
                if kind is not None:
                    return kind
    return None


def kind_from_extension(name: str) -> str | None:
    return EXTENSION_KINDS.get(posixpath.splitext(name)[1].lstrip(".").lower())


def decide_kind(
    claim: Claim, path: str, default: str | None, aliases: Mapping[str, str] = {}
) -> str | None:
    """The kind of a matched file: the rule's, a word of the path, the extension, the flow's
    default, in that order (None: nothing says)."""
    return (
        claim.kind
        or kind_from_words(path, aliases)
        or kind_from_extension(posixpath.basename(path))
        or default
    )


def content_problem(kind: str, found: str, name: str) -> str | None:
    """Why the bytes (sniffed type ``found``) cannot be this kind, or None: the extension must
    promise what the bytes are, and the kind must accept that type."""
    ext = posixpath.splitext(name)[1].lstrip(".").lower()
    promised = EXTENSION_TYPES.get(ext)
    if promised is not None and promised != found:
        return (
            f"{CONTENT_MISMATCH}: {name!r} is named .{ext} but its content is "
            f"{found.upper()}, not {promised.upper()}"
        )
    accepted = KIND_CONTENT.get(kind)
    if accepted is not None and found not in accepted:
        return (
            f"{CONTENT_MISMATCH}: a {kind.replace('_', ' ')} file must be "
            f"{' or '.join(sorted(t.upper() for t in accepted))}; {name!r} is {found.upper()}"
        )
    return None


def attach_target(kind: str, found: str) -> tuple[AttachTarget, str]:
    """Where a file of this kind and content goes in Consonance: (production file or
    supporting resource, its variant)."""
    pf, sr = AttachTarget.PRODUCTION_FILE, AttachTarget.SUPPORTING_RESOURCE
    if kind == "cover":
        return (pf, "COVER") if found == "pdf" else (sr, "FRONT_COVER")
    return {
        "interior": (pf, "INTERIOR"),
        "index": (pf, "OTHER"),
        "epub": (pf, "EPUB"),
        "audio": (pf, "AUDIO"),
        "jacket_copy": (sr, "OTHER"),
        "image": (sr, "OTHER"),
    }.get(kind, (sr, "OTHER"))


def asset_kind(kind: str, found: str) -> str:
    """The kind an intake file's versions are counted under: the production handoff's name
    (``models.AssetKind``) where there is one, so a designer's revised cover PDF is the next
    version of the cover the handoff recorded, not the first of a history of its own."""
    if kind == "cover":
        return AssetKind.COVER_PDF if found == "pdf" else AssetKind.COVER_IMAGE
    if kind == "interior":
        return AssetKind.INTERIOR_PDF
    return kind


# --- the pattern rule ----------------------------------------------------------------------


def pattern_problem(pattern: str) -> str | None:
    """Why a partner's pattern cannot be used (config validation), or None."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    groups = set(compiled.groupindex)
    if "isbn" not in groups:
        return "the pattern needs a named group (?P<isbn>...)"
    if unknown := sorted(groups - PATTERN_GROUPS):
        return f"unknown named groups {', '.join(unknown)} (use isbn, kind, version, todo)"
    return None


def match_pattern(pattern: str, path: str, aliases: Mapping[str, str] = {}) -> MatchOutcome:
    """The ``pattern`` rule: search the path below the flow's folder (folder names count)."""
    found = re.search(pattern, path)
    if found is None:
        return Unmatched("pattern", f"the pattern {pattern!r} does not match {path!r}")
    groups = {k: v for k, v in found.groupdict().items() if v}
    if "isbn" not in groups:
        return Unmatched("pattern", "the pattern matched without an ISBN")
    isbn = to_isbn13(groups["isbn"])
    if isinstance(isbn, Refusal):
        return isbn
    kind: str | None = None
    if "kind" in groups:
        kind = normalise_kind(groups["kind"], aliases)
        if kind is None:
            return Refusal(f"{UNKNOWN_KIND}: {groups['kind']!r} (from the pattern) names no kind")
    return Claim(
        rule="pattern",
        isbn=isbn,
        kind=kind,
        version=groups.get("version"),
        todo=groups.get("todo"),
        evidence=found.group(0),
    )


# --- the manifest rule ---------------------------------------------------------------------


def manifest_names(templates: list[str], name: str) -> list[str]:
    """The names a manifest for file ``name`` may have (``{name}``, ``{stem}`` filled in)."""
    stem = posixpath.splitext(name)[0]
    return [t.format(name=name, stem=stem) for t in templates]


def is_manifest_name(templates: list[str], name: str) -> bool:
    """Is this file a manifest (so the poll leaves it for the file it describes)?"""
    for template in templates:
        regex = re.escape(template).replace(r"\{name\}", ".+").replace(r"\{stem\}", ".+")
        if re.fullmatch(regex, name):
            return True
    return False


def parse_manifest(
    data: bytes,
    manifest_name: str,
    file_name: str,
    aliases: Mapping[str, str] = {},
) -> MatchOutcome:
    """The ``manifest`` rule, given the manifest's bytes.

    JSON: one object ``{"isbn": "...", "kind": "cover", "version": "3", "todo": "..."}``, or
    ``{"files": [{"file": "<name>", "isbn": ...}, ...]}``. CSV: a header row naming the same
    columns (``file`` optional) and one row per file.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Refusal(f"{BAD_MANIFEST}: {manifest_name} is not UTF-8 text")
    rows: list[Mapping[str, object]]
    if manifest_name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        rows = [{(k or "").strip().lower(): v for k, v in r.items()} for r in reader]
    else:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            return Refusal(f"{BAD_MANIFEST}: {manifest_name} is not valid JSON ({exc})")
        if isinstance(doc, dict) and isinstance(doc.get("files"), list):
            rows = [r for r in doc["files"] if isinstance(r, dict)]
        elif isinstance(doc, dict):
            rows = [doc]
        else:
            return Refusal(f"{BAD_MANIFEST}: {manifest_name} is not a JSON object")
    named = [r for r in rows if str(r.get("file") or "").strip() in ("", file_name)]
    if len(named) != 1:
        return Refusal(
            f"{BAD_MANIFEST}: {manifest_name} has {len(named)} entries for {file_name!r} "
            "(one expected)"
        )
    row = named[0]
    raw_isbn = str(row.get("isbn") or "").strip()
    if not raw_isbn:
        return Refusal(f"{BAD_MANIFEST}: {manifest_name} names no isbn")
    isbn = to_isbn13(raw_isbn)
    if isinstance(isbn, Refusal):
        return isbn
    kind: str | None = None
    if raw_kind := str(row.get("kind") or "").strip():
        kind = normalise_kind(raw_kind, aliases)
        if kind is None:
            return Refusal(f"{UNKNOWN_KIND}: {raw_kind!r} (from {manifest_name}) names no kind")
    version = str(row.get("version") or "").strip() or None
    todo = str(row.get("todo") or "").strip() or None
    return Claim(
        rule="manifest", isbn=isbn, kind=kind, version=version, todo=todo, evidence=manifest_name
    )


def unmatched_reason(misses: list[Unmatched]) -> str:
    """The quarantine reason when no rule matched: what each rule saw."""
    said = "; ".join(f"{m.rule}: {m.why}" for m in misses) or "no matching rule is configured"
    return f"{UNMATCHED}: {said}"
