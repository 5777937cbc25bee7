"""EPUB preflight: the OCF container structure, then EPUBCheck when it is installed.

The container rules checked here are the ones EPUBCheck reports as fatal packaging errors
(PKG-005/006/007, RSC-002/003): ``mimetype`` is the first entry, stored, without an extra
field, and holds ``application/epub+zip``; ``META-INF/container.xml`` names an OPF that exists.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

from lxml import etree

MIMETYPE = b"application/epub+zip"
CONTAINER_NS = "{urn:oasis:names:tc:opendocument:xmlns:container}"
MAX_CONTAINER_BYTES = 1024 * 1024
EPUBCHECK_TIMEOUT = 600.0
# An EPUB is third-party input: no entity expansion, no DTD or network fetches.
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def check_epub(path: Path, *, epubcheck: str, notes: list[str], skipped: list[str]) -> list[str]:
    """Problems with an EPUB (empty when it passes)."""
    problems = _first_entry(path)
    try:
        with zipfile.ZipFile(path) as archive:
            problems.extend(_container(archive, notes))
            names = archive.namelist()
            unsafe = [n for n in names if n.startswith("/") or ".." in n.split("/")]
            if unsafe:
                problems.append(f"entries that escape the container: {', '.join(unsafe[:5])}")
            damaged = archive.testzip()
            if damaged is not None:
                problems.append(f"damaged zip entry (CRC mismatch): {damaged}")
    except zipfile.BadZipFile as exc:
        return [*problems, f"not a readable zip: {exc}"]
    if problems or epubcheck == "off":
        if epubcheck == "off":
            skipped.append("EPUBCheck: turned off by the profile")
        return problems
    return problems + _epubcheck(
        path, required=epubcheck == "required", notes=notes, skipped=skipped
    )


def _first_entry(path: Path) -> list[str]:
    # The first *local* header, as readers that sniff the file see it, not the central
    # directory order zipfile reports.
    with path.open("rb") as handle:
        header = handle.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            return ["not a zip container"]
        method = struct.unpack("<H", header[8:10])[0]
        stored_size = struct.unpack("<I", header[18:22])[0]
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        name = handle.read(name_len)
        handle.seek(extra_len, 1)
        body = handle.read(len(MIMETYPE))
    if name != b"mimetype":
        return [
            f"the first entry is {name.decode('utf-8', 'replace')!r}, not 'mimetype' "
            "(it must come first, stored uncompressed)"
        ]
    problems: list[str] = []
    if method != 0:
        problems.append("'mimetype' is compressed; it must be stored uncompressed")
    elif body != MIMETYPE or stored_size not in (0, len(MIMETYPE)):
        problems.append(f"'mimetype' holds {body[:40]!r}, not 'application/epub+zip'")
    if extra_len:
        problems.append("'mimetype' has a zip extra field, which EPUB forbids")
    return problems


def _container(archive: zipfile.ZipFile, notes: list[str]) -> list[str]:
    try:
        info = archive.getinfo("META-INF/container.xml")
    except KeyError:
        return ["META-INF/container.xml is missing"]
    if info.file_size > MAX_CONTAINER_BYTES:
        return ["META-INF/container.xml is implausibly large"]
    try:
        root = etree.fromstring(archive.read(info), parser=_SAFE_XML)
    except etree.XMLSyntaxError as exc:
        return [f"META-INF/container.xml is not well-formed XML: {exc}"]
    rootfiles = [
        el.get("full-path", "")
        for el in root.iter(f"{CONTAINER_NS}rootfile")
        if el.get("media-type") == "application/oebps-package+xml"
    ]
    if not rootfiles or not rootfiles[0]:
        return ["META-INF/container.xml names no OPF package document (rootfile)"]
    opf = rootfiles[0]
    if opf not in archive.namelist():
        return [f"META-INF/container.xml points at {opf!r}, which is not in the EPUB"]
    notes.append(f"container: package document {opf}")
    return []


def _epubcheck(path: Path, *, required: bool, notes: list[str], skipped: list[str]) -> list[str]:
    tool = shutil.which("epubcheck")
    if tool is None:
        if required:
            return ["EPUBCheck is required by the profile but 'epubcheck' is not installed"]
        skipped.append("EPUBCheck: skipped, 'epubcheck' is not on PATH")
        return []
    command = _command(Path(tool))
    if command is None:
        message = "EPUBCheck: 'epubcheck' is a Java archive but 'java' is not installed"
        if required:
            return [message]
        skipped.append(message)
        return []
    try:
        done = subprocess.run(
            [*command, "--quiet", str(path)],
            capture_output=True,
            text=True,
            timeout=EPUBCHECK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [f"EPUBCheck did not finish within {EPUBCHECK_TIMEOUT:.0f} s"]
    if done.returncode == 0:
        notes.append("EPUBCheck: no errors")
        return []
    lines = [
        line.strip()
        for line in (done.stdout + done.stderr).splitlines()
        if line.startswith(("ERROR", "FATAL"))
    ]
    return [f"EPUBCheck: {line}" for line in lines[:20]] or [
        f"EPUBCheck failed (exit {done.returncode})"
    ]


def _command(tool: Path) -> list[str] | None:
    # Debian installs /usr/bin/epubcheck as an executable jar, which runs only where binfmt
    # has a jar handler (not in containers): call it through java instead.
    with tool.open("rb") as handle:
        is_jar = handle.read(4) == b"PK\x03\x04"
    if not is_jar:
        return [str(tool)]
    java = shutil.which("java")
    return [java, "-jar", str(tool)] if java else None
