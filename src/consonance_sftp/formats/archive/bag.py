"""The streaming writer of an archive: one BagIt bag (RFC 8493, BagIt-Version 1.0) as a tar.

Layout of the tar (POSIX pax format), every member under the bag's folder ``NAME/``::

    NAME/                         directory entries first, then each payload file as it is added
    NAME/data/...                 the payload, in the order it was added
    NAME/bagit.txt                } the tag files come LAST: the manifest and Payload-Oxum are
    NAME/manifest-sha256.txt      } only known once every payload file went by, and nothing is
    NAME/bag-info.txt             } staged on disk to write them first. A reader must read the
    NAME/tagmanifest-sha256.txt   } tar to its end before it can check anything.

An incremental bag also lists files it does not carry (``add_reference``): they are in the
manifest and ``Payload-Oxum`` like any payload file, and ``NAME/fetch.txt`` (RFC 8493 §2.2.3,
written with the other tag files, listed in the tag manifest) says where each one is.

Each payload file goes straight from its source into the tar stream while it is hashed (one read,
no second copy on disk). The output is any writable binary stream (a file, a pipe, an encrypting
or uploading wrapper); it is never seeked. With ``compression="zstd"`` the tar is compressed on
the way out (one zstd frame with its checksum: ``tar --zstd -xf`` or ``zstd -d`` reads it).

The same inputs give the same bytes: every header has ``created`` as its mtime, uid/gid 0, no
user or group names, mode 0644 for files and 0755 for folders.

Names: ``sha256sum -c`` only finds payload files whose path has no ``%``, CR or LF, because
RFC 8493 has those percent-encoded in the manifest; prefer plain names.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, Protocol, cast

import zstandard

from consonance_sftp.errors import ConsonanceSftpError, UnsafeFileName
from consonance_sftp.formats.archive.rfc8493 import (
    BAG_INFO,
    BAGIT,
    BAGIT_TXT,
    COMPUTED_LABELS,
    FETCH,
    MANIFEST,
    TAG_MANIFEST,
    encode_path,
    fetch_line,
    format_bag_size,
    path_problem,
)

Compression = Literal["none", "zstd"]

_COPY_BUFFER = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


class _Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int | None: ...


class HashingWriter(io.RawIOBase):
    """Passes every byte written on to ``out`` while counting and hashing (SHA-256) them. Wrap
    the archive file with it, outside any encryption, to get the sidecar's hash of the file as
    stored without reading it again. ``sha256=False`` only counts (``hexdigest`` is then
    ``""``): for a stream whose hash nobody needs, such as the plain bag on its way into an
    encrypting pipe. ``tell()`` is the count, so ``tarfile`` writes into it directly.

    A ``BagWriter`` given a ``HashingWriter`` as its output uses it as it is: the bytes are
    hashed once, not once per wrapper."""

    def __init__(self, out: _Writable, *, sha256: bool = True) -> None:
        super().__init__()
        self._out = out
        self._hash = hashlib.sha256() if sha256 else None
        self.bytes_written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.bytes_written

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        size = len(data)
        if self._hash is not None:
            self._hash.update(data)
        self.bytes_written += size
        taken = self._out.write(data)
        if taken is not None and taken < size:  # a raw stream took only part of it
            chunk = memoryview(data)
            while taken is not None and taken < len(chunk):
                if taken <= 0:
                    raise OSError("the archive's output stream accepted no bytes")
                chunk = chunk[taken:]
                taken = self._out.write(chunk)
        return size

    def flush(self) -> None:
        flush = getattr(self._out, "flush", None)
        if callable(flush):
            flush()

    def hexdigest(self) -> str:
        return "" if self._hash is None else self._hash.hexdigest()


class _HashingReader:
    """Reads a source while hashing what went by (the payload's SHA-256, in the same pass)."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.hash.update(data)
        self.count += len(data)
        return data


@dataclass(frozen=True, slots=True)
class PayloadFile:
    """One payload file as written: its path relative to the bag's folder (``data/...``)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class BagSummary:
    """What one ``BagWriter`` wrote. ``archive_bytes``/``archive_sha256`` are of the bytes
    handed to ``out`` (after zstd when compressed; before any encryption that ``out`` does);
    ``tar_bytes`` is the length of the tar itself. When ``out`` is a ``HashingWriter`` they are
    its count and hash (of all it was given), and ``archive_sha256`` is ``""`` when it only
    counts (``formats.archive.encrypt`` hands the bag such a writer: the plain stream's hash
    is of no use once it is encrypted)."""

    name: str
    created: datetime
    compression: Compression
    files: tuple[PayloadFile, ...]
    payload_bytes: int
    tar_bytes: int
    archive_bytes: int
    archive_sha256: str
    referenced: tuple[ReferencedFile, ...] = ()  # in the manifest and fetch.txt, not the tar

    @property
    def payload_oxum(self) -> str:
        """RFC 8493's ``Payload-Oxum``: ``<octets>.<file count>`` of the complete payload
        (the files carried and those fetch.txt refers to)."""
        octets = self.payload_bytes + sum(r.size for r in self.referenced)
        return f"{octets}.{len(self.files) + len(self.referenced)}"


@dataclass(frozen=True, slots=True)
class ReferencedFile:
    """A payload file the bag lists (manifest, Payload-Oxum) but does not carry: fetch.txt
    says where it is (``url``, e.g. ``bag://<earlier bag>/data/...``)."""

    path: str
    size: int
    sha256: str
    url: str


def sidecar_line(sha256: str, file_name: str) -> str:
    """The checksum sidecar's line in ``sha256sum`` format (``<hex>  <name>\\n``): saved as
    ``NAME.sha256`` beside the archive, ``sha256sum -c NAME.sha256`` checks it."""
    digest = sha256.lower()
    if not _HEX64.fullmatch(digest):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    if not file_name or file_name in (".", "..") or any(c in file_name for c in "/\\\n\r\0"):
        raise UnsafeFileName(f"archive file name {file_name!r} cannot stand in a sidecar line")
    return f"{digest}  {file_name}\n"


class BagWriter:
    """Streams one bag into ``out`` as a tar (see the module's docstring). Use it as a context
    manager, or call ``close()``; either returns/keeps the ``BagSummary`` (``.summary``).

    ``name`` is the bag's folder in the tar (one path component). ``info`` is written to
    bag-info.txt in its order, then ``Bagging-Date`` (``created``'s UTC date), ``Bag-Size`` and
    ``Payload-Oxum``, which the writer computes and ``info`` may not set. ``created`` (timezone-
    aware; now if omitted) is every header's mtime, so equal inputs give equal bytes.

    If an exception leaves the ``with`` block, nothing more is written: the stream holds an
    unfinished archive that must be thrown away.
    """

    def __init__(
        self,
        out: BinaryIO,
        *,
        name: str,
        info: Mapping[str, str],
        compression: Compression = "none",
        created: datetime | None = None,
        zstd_level: int = 3,
        zstd_threads: int = 0,
    ) -> None:
        if (
            not name
            or name in (".", "..")
            or any(c in name for c in "/\\\0\r\n")
            or path_problem(name) is not None
        ):
            raise UnsafeFileName(f"bag name {name!r} must be one plain folder name")
        if compression not in ("none", "zstd"):
            raise ValueError(f"compression must be 'none' or 'zstd', not {compression!r}")
        created = created or datetime.now(UTC)
        if created.tzinfo is None:
            raise ValueError("created must be timezone-aware")
        self._info = _checked_info(info)
        self.name = name
        self.created = created
        self.compression: Compression = compression
        self._mtime = int(created.timestamp())
        # An output that hashes already is used as it is: the same bytes are hashed once.
        self._hashing = out if isinstance(out, HashingWriter) else HashingWriter(out)
        self._zstd: zstandard.ZstdCompressionWriter | None = None
        # The tar's own length, counted from 0 (a reused output may hold bytes before the bag;
        # tarfile's record padding counts from the position it starts at).
        self._tar_count = HashingWriter(self._hashing, sha256=False)
        if compression == "zstd":
            compressor = zstandard.ZstdCompressor(
                level=zstd_level, write_checksum=True, threads=zstd_threads
            )
            self._zstd = compressor.stream_writer(
                cast(BinaryIO, self._hashing), closefd=False, write_size=_COPY_BUFFER
            )
            self._tar_count = HashingWriter(self._zstd, sha256=False)
        # Not tarfile's stream mode ("w|"): it slices every write into 10 KiB records through
        # a growing buffer (a copy of the rest at each slice), which cost more than hashing.
        # Plain "w" writes the same bytes (headers, data, padding, the end blocks and the
        # record padding) straight to the output; it only asks its position (``tell``).
        self._tar = tarfile.open(  # noqa: SIM115 - closed in close()
            fileobj=self._tar_count, mode="w", format=tarfile.PAX_FORMAT
        )
        self._tar.copybufsize = _COPY_BUFFER  # type: ignore[attr-defined]
        self._files: list[PayloadFile] = []
        self._referenced: list[ReferencedFile] = []
        self._paths: set[str] = set()
        self._dirs: set[str] = set()
        self._started = False
        self._failed = False
        self._summary: BagSummary | None = None

    # --- payload --------------------------------------------------------------------------

    def add_file(self, rel_path: str, source: Path) -> PayloadFile:
        """Stream ``source`` into the bag as ``data/<rel_path>``, hashing it on the way."""
        with source.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(f"{source} is not a regular file")
            return self.add_stream(rel_path, handle, info.st_size)

    def add_bytes(self, rel_path: str, data: bytes) -> PayloadFile:
        """Put ``data`` into the bag as ``data/<rel_path>``."""
        return self.add_stream(rel_path, io.BytesIO(data), len(data))

    def add_stream(self, rel_path: str, stream: BinaryIO, size: int) -> PayloadFile:
        """Copy exactly ``size`` bytes of ``stream`` into the bag as ``data/<rel_path>``."""
        self._check_open()
        path = self._claim(rel_path)
        self._start()
        self._make_dirs(path)
        reader = _HashingReader(stream)
        try:
            self._tar.addfile(self._header(path, tarfile.REGTYPE, size), reader)
        except OSError as exc:
            self._failed = True
            raise ConsonanceSftpError(
                f"{rel_path}: the source gave {reader.count} of its {size} bytes (did it change "
                f"while being archived?); this archive is unfinished and must be discarded",
                retryable=True,
            ) from exc
        except BaseException:
            self._failed = True
            raise
        entry = PayloadFile(path=path, size=size, sha256=reader.hash.hexdigest())
        self._files.append(entry)
        return entry

    def add_reference(self, rel_path: str, *, sha256: str, size: int, url: str) -> ReferencedFile:
        """List ``data/<rel_path>`` (its ``sha256`` and ``size``) in the manifest without
        carrying it: fetch.txt (RFC 8493 §2.2.3) gives ``url``, where it can be fetched (an
        earlier archive: ``rfc8493.bag_url``). The bag is valid, and complete once fetched."""
        self._check_open()
        if not _HEX64.fullmatch(sha256):
            raise ValueError(f"not a lower-case SHA-256 hex digest: {sha256!r}")
        if size < 0:
            raise ValueError(f"size must be 0 or more, not {size}")
        path = self._claim(rel_path)
        fetch_line(url, size, path)  # refuses a URL fetch.txt cannot hold
        entry = ReferencedFile(path=path, size=size, sha256=sha256, url=url)
        self._referenced.append(entry)
        return entry

    # --- closing --------------------------------------------------------------------------

    def close(self) -> BagSummary:
        """Write the tag files and the tar's end (and the zstd frame's end). Idempotent."""
        if self._summary is not None:
            return self._summary
        self._check_open()
        self._start()
        payload_bytes = sum(f.size for f in self._files)
        listed: list[PayloadFile | ReferencedFile] = [*self._files, *self._referenced]
        oxum_bytes = sum(f.size for f in listed)
        manifest = "".join(f"{f.sha256}  {encode_path(f.path)}\n" for f in listed).encode()
        bag_info = "".join(
            f"{label}: {value}\n"
            for label, value in [
                *self._info,
                ("Bagging-Date", self.created.astimezone(UTC).date().isoformat()),
                ("Bag-Size", format_bag_size(oxum_bytes)),
                ("Payload-Oxum", f"{oxum_bytes}.{len(listed)}"),
            ]
        ).encode()
        tag_files = [(BAGIT, BAGIT_TXT), (MANIFEST, manifest), (BAG_INFO, bag_info)]
        if self._referenced:
            fetch = "".join(fetch_line(r.url, r.size, r.path) for r in self._referenced)
            tag_files.append((FETCH, fetch.encode()))
        tag_manifest = "".join(
            f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in tag_files
        ).encode()
        try:
            for name, data in [*tag_files, (TAG_MANIFEST, tag_manifest)]:
                self._tar.addfile(self._header(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))
            self._tar.close()
            if self._zstd is not None:
                self._zstd.close()  # type: ignore[no-untyped-call]  # ends the one zstd frame
            self._hashing.flush()
        except BaseException:
            self._failed = True
            raise
        self._summary = BagSummary(
            name=self.name,
            created=self.created,
            compression=self.compression,
            files=tuple(self._files),
            payload_bytes=payload_bytes,
            tar_bytes=self._tar_count.bytes_written,
            archive_bytes=self._hashing.bytes_written,
            archive_sha256=self._hashing.hexdigest(),
            referenced=tuple(self._referenced),
        )
        return self._summary

    @property
    def summary(self) -> BagSummary:
        if self._summary is None:
            raise RuntimeError("the bag is not closed yet")
        return self._summary

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._failed = True

    # --- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failed:
            raise RuntimeError("this bag failed while being written; discard its stream")
        if self._summary is not None:
            raise RuntimeError("this bag is closed")

    def _claim(self, rel_path: str) -> str:
        problem = path_problem(rel_path)
        if problem is not None:
            raise UnsafeFileName(f"payload path {rel_path!r}: {problem}")
        path = f"data/{rel_path}"
        parents = {path.rsplit("/", i)[0] for i in range(1, path.count("/") + 1)}
        if path in self._paths or path in self._dirs or parents & self._paths:
            raise UnsafeFileName(
                f"payload path {rel_path!r} clashes with a file already in the bag"
            )
        self._paths.add(path)
        return path

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._tar.addfile(self._header("", tarfile.DIRTYPE, 0))
            self._tar.addfile(self._header("data", tarfile.DIRTYPE, 0))
            self._dirs.add("data")

    def _make_dirs(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for depth in range(2, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in self._dirs:
                self._dirs.add(folder)
                self._tar.addfile(self._header(folder, tarfile.DIRTYPE, 0))

    def _header(self, path: str, kind: bytes, size: int) -> tarfile.TarInfo:
        header = tarfile.TarInfo(f"{self.name}/{path}" if path else self.name)
        header.type = kind
        header.size = size
        header.mtime = self._mtime
        header.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        header.uid = header.gid = 0
        header.uname = header.gname = ""
        return header


def _checked_info(info: Mapping[str, str]) -> list[tuple[str, str]]:
    """``info``'s elements, refused when they could not be written as RFC 8493 §2.2.2 says."""
    computed = {label.lower() for label in COMPUTED_LABELS}
    checked: list[tuple[str, str]] = []
    for label, value in info.items():
        if (
            not label
            or label != label.strip(" \t")
            or any(c in label for c in ":\r\n")
            or label.lower() in computed
        ):
            raise ValueError(
                f"bag-info label {label!r} is not allowed (no colon or line break, no leading or "
                f"trailing whitespace, not one of {', '.join(COMPUTED_LABELS)})"
            )
        if any(c in value for c in "\r\n"):
            raise ValueError(f"bag-info value of {label!r} holds a line break")
        checked.append((label, value))
    return checked
