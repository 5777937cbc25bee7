"""The text rules of a BagIt 1.0 bag (RFC 8493) that the writer follows and the validator checks.

- Tag files are lines, each terminated by LF, CR or CRLF (§2.4 "Text Tag File Format").
- ``bagit.txt`` is exactly ``BagIt-Version: 1.0`` and ``Tag-File-Character-Encoding: UTF-8``
  (§2.1.1), UTF-8 without a byte-order mark. Anything else is refused with the reason, such as
  the space before the colon or the trailing whitespace that the common Python library
  (``bagit``) lets through (the conformance suite's ``v1.0/invalid/bagit-with-invalid-whitespace``).
- ``bag-info.txt`` (§2.2.2): each element is a label, a colon, ONE space or tab, and a value; a
  label neither starts nor ends with whitespace and holds no colon; a line that starts with a
  space or tab continues the value above it.
- Manifests (§2.1.3, §2.2.1): ``CHECKSUM<one or more spaces or tabs>FILEPATH``, ``/`` as the
  separator; CR, LF and ``%`` in a path are percent-encoded (``%0D``, ``%0A``, ``%25``), and
  nothing else is. A payload manifest names only files under ``data/``.
- Paths (§7.2 "Security Considerations"): relative, no ``..``, ``.`` or empty component, no
  backslash (a separator elsewhere), no NUL.
- ``fetch.txt`` (§2.2.3): ``URL LENGTH FILEPATH`` per line, the URL absolute, LENGTH octets or
  ``-``; every file it lists is in the payload manifest, and it lists no tag file. A bag whose
  fetch.txt files are absent is not yet complete (§3), and is otherwise a valid bag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

BAGIT_TXT = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
BAGIT_VERSION = "1.0"
MANIFEST = "manifest-sha256.txt"
TAG_MANIFEST = "tagmanifest-sha256.txt"
BAG_INFO = "bag-info.txt"
BAGIT = "bagit.txt"
#: bag-info labels the writer computes itself (compared case-insensitively, as the RFC says).
COMPUTED_LABELS = ("Bagging-Date", "Bag-Size", "Payload-Oxum")

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PERCENT = re.compile(r"%(0[aAdD]|25)")
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]+)[ \t]+(.+)")
_BLANK = " \t"


def encode_path(path: str) -> str:
    """``path`` as a manifest writes it: ``%``, CR and LF percent-encoded (§2.1.3)."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def decode_path(text: str) -> str:
    """The path a manifest line names: only ``%0A``, ``%0D`` and ``%25`` are decoded."""
    return _PERCENT.sub(lambda m: {"0a": "\n", "0d": "\r", "25": "%"}[m.group(1).lower()], text)


def path_problem(path: str) -> str | None:
    """Why ``path`` (relative, ``/``-separated) may not be stored or restored; None if safe."""
    if not path:
        return "the path is empty"
    if "\x00" in path:
        return "the path holds a NUL character"
    if "\\" in path:
        return "the path holds a backslash (use '/' between folders)"
    if path.startswith("/"):
        return "the path is absolute"
    for part in path.split("/"):
        if part == "":
            return "the path has an empty component ('//' or a trailing '/')"
        if part in (".", ".."):
            return f"the path has a {part!r} component"
    return None


def split_lines(text: str) -> tuple[list[str], bool]:
    """The lines of a text tag file, and whether its last line was terminated as §2.4 asks."""
    if not text:
        return [], True
    parts = _LINE_BREAK.split(text)
    terminated = parts[-1] == ""
    return (parts[:-1] if terminated else parts), terminated


def bagit_txt_problems(data: bytes) -> list[str]:
    """What is wrong with a ``bagit.txt`` (§2.1.1); empty if it is exactly right."""
    if data.startswith(b"\xef\xbb\xbf"):
        return ["bagit.txt starts with a byte-order mark, which RFC 8493 §2.1.1 forbids"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ["bagit.txt is not UTF-8"]
    lines, terminated = split_lines(text)
    problems: list[str] = []
    if not terminated:
        problems.append("bagit.txt's last line has no line break")
    if len(lines) != 2:
        problems.append(f"bagit.txt has {len(lines)} lines; RFC 8493 §2.1.1 requires exactly 2")
    expected = (("BagIt-Version", BAGIT_VERSION), ("Tag-File-Character-Encoding", "UTF-8"))
    for number, (line, (label, value)) in enumerate(zip(lines, expected, strict=False), 1):
        where = f"bagit.txt line {number} ({line!r})"
        if line != line.rstrip(_BLANK):
            problems.append(f"{where} has trailing whitespace")
        elif line != line.lstrip(_BLANK):
            problems.append(f"{where} has leading whitespace")
        elif not line.startswith(f"{label}:"):
            if line.replace(" ", "").replace("\t", "").startswith(f"{label}:"):
                problems.append(f"{where} has whitespace before the colon")
            else:
                problems.append(f"{where} must start with '{label}: '")
        elif line[len(label) + 1 : len(label) + 2] != " " or line[len(label) + 2 :] != (
            line[len(label) + 2 :].strip(_BLANK)
        ):
            problems.append(f"{where} must be '{label}: {value}' with a single space")
        elif label == "BagIt-Version" and line[len(label) + 2 :] != value:
            problems.append(f"{where}: this reader reads BagIt-Version {value} only")
        elif label != "BagIt-Version" and line[len(label) + 2 :].upper() != value:
            problems.append(f"{where}: tag files must be declared UTF-8")
    return problems


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    sha256: str  # lower-case hex
    path: str  # decoded, relative to the bag's folder


def parse_manifest(text: str, name: str) -> tuple[list[ManifestEntry], list[str]]:
    """The entries of a SHA-256 manifest and what is wrong with it (each naming the line)."""
    lines, terminated = split_lines(text)
    problems: list[str] = []
    if not terminated:
        problems.append(f"{name}'s last line has no line break")
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        match = _MANIFEST_LINE.fullmatch(line)
        if match is None or len(match.group(1)) != 64:
            problems.append(f"{name} line {number} is not '<64 hex digits> <path>': {line!r}")
            continue
        path = decode_path(match.group(2))
        unsafe = path_problem(path)
        if unsafe is not None:
            problems.append(f"{name} line {number} names {path!r}: {unsafe}")
            continue
        if path in seen:
            problems.append(f"{name} lists {path!r} more than once")
            continue
        seen.add(path)
        entries.append(ManifestEntry(sha256=match.group(1).lower(), path=path))
    return entries, problems


def parse_bag_info(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The (label, value) elements of a ``bag-info.txt`` in order, and what breaks §2.2.2."""
    lines, terminated = split_lines(text)
    problems: list[str] = []
    if not terminated:
        problems.append("bag-info.txt's last line has no line break")
    elements: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        where = f"bag-info.txt line {number} ({line!r})"
        if line[:1] in (" ", "\t"):
            if not elements:
                problems.append(f"{where} continues a value, but no label comes before it")
            else:
                label, value = elements[-1]
                elements[-1] = (label, f"{value} {line.strip(_BLANK)}")
            continue
        label, colon, rest = line.partition(":")
        if not colon:
            problems.append(f"{where} is not 'Label: value'")
        elif not label:
            problems.append(f"{where} has no label before the colon")
        elif label != label.rstrip(_BLANK):
            problems.append(f"{where} has whitespace before the colon")
        elif rest[:1] not in (" ", "\t"):
            problems.append(f"{where}: the colon must be followed by one space or tab")
        else:
            elements.append((label, rest[1:]))
    return elements, problems


def format_bag_size(octets: int) -> str:
    """``Bag-Size`` for people (§2.2.2: "260 GB"): decimal units, one decimal past bytes."""
    if octets < 1000:
        return f"{octets} B"
    value = float(octets)
    for unit in ("KB", "MB", "GB", "TB", "PB"):
        value /= 1000
        if value < 1000 or unit == "PB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


# --- fetch.txt (§2.2.3): payload files the bag lists but does not carry -------------------

FETCH = "fetch.txt"
FETCH_SCHEME = "bag"
"""The URI scheme of this project's fetch.txt locators: ``bag://<bag name>/<path in that bag>``
(the bag name as the authority, so readers that want one, such as the ``bagit`` library, find
it), percent-encoded as RFC 3986 asks. The file is the member ``<bag name>/<path>`` of the
archive ``<bag name>.tar[.zst][.age]``, normally beside the bag that refers to it."""

_FETCH_LINE = re.compile(r"(\S+)[ \t]+(\d+|-)[ \t]+(.+)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True, slots=True)
class FetchEntry:
    """One line of fetch.txt: where to get a payload file, its length (None for ``-``) and
    its path in this bag (decoded, ``data/...``)."""

    url: str
    size: int | None
    path: str

    @property
    def bag_member(self) -> tuple[str, str] | None:
        """For a ``bag://`` locator, (bag name, path in that bag); None for another scheme."""
        if not self.url.startswith(f"{FETCH_SCHEME}://"):
            return None
        bag, _, rel = self.url.removeprefix(f"{FETCH_SCHEME}://").partition("/")
        bag, rel = unquote(bag), unquote(rel)
        if not bag or path_problem(bag) is not None or path_problem(rel) is not None:
            return None
        return bag, rel


def bag_url(bag_name: str, path: str) -> str:
    """The ``bag://`` locator of ``path`` (``data/...``) in the bag ``bag_name``."""
    return f"{FETCH_SCHEME}://{quote(bag_name, safe='')}/{quote(path, safe='/')}"


def fetch_line(url: str, size: int | None, path: str) -> str:
    """One fetch.txt line (``URL LENGTH FILEPATH``, §2.2.3)."""
    if not _SCHEME.match(url) or any(c.isspace() for c in url):
        raise ValueError(f"fetch.txt needs an absolute URL without whitespace, not {url!r}")
    return f"{url} {'-' if size is None else size} {encode_path(path)}\n"


def parse_fetch(text: str) -> tuple[list[FetchEntry], list[str]]:
    """The entries of a fetch.txt and what is wrong with it (each naming the line)."""
    lines, terminated = split_lines(text)
    problems: list[str] = []
    if not terminated:
        problems.append(f"{FETCH}'s last line has no line break")
    entries: list[FetchEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        match = _FETCH_LINE.fullmatch(line)
        if match is None or not _SCHEME.match(match.group(1)):
            problems.append(f"{FETCH} line {number} is not '<absolute URL> <length> <path>'")
            continue
        path = decode_path(match.group(3))
        unsafe = path_problem(path)
        if unsafe is not None or not path.startswith("data/"):
            problems.append(f"{FETCH} line {number} names {path!r}: {unsafe or 'outside data/'}")
            continue
        if path in seen:
            problems.append(f"{FETCH} lists {path!r} more than once")
            continue
        seen.add(path)
        size = None if match.group(2) == "-" else int(match.group(2))
        entries.append(FetchEntry(url=match.group(1), size=size, path=path))
    return entries, problems
