"""Reading an archive back: validate it (``verify_bag``) or restore it (``extract_bag``).

Both read the stream ONCE, front to back, as a tar stream (``tarfile`` mode ``r|``; zstd is
decompressed on the way): each payload file is hashed (SHA-256) as it passes, and only at the
end, where the writer put the tag files, is everything checked against the manifests. Nothing
in the archive is trusted: every problem is reported with the path it concerns (relative to the
bag's folder: ``data/...``, ``bag-info.txt``; ``""`` for the archive as a whole), and a restore
only leaves on disk the files whose hash matched the manifest.

An incremental bag (``fetch.txt``, RFC 8493 §2.2.3) lists in its manifest files it does not
carry: each one that fetch.txt names is reported as ``referenced`` (not missing; the bag is
valid, not yet complete); a manifest file absent from both the tar and fetch.txt is missing.
``extract_bag`` with ``open_bag`` completes the restore from the archives fetch.txt names
(``bag://<bag name>/<path>``), re-hashing each fetched file against THIS bag's manifest.

A cut archive loses its tag files (they come last), so the report names the file it was cut
inside, or the last one read whole, and says the manifest is missing; it cannot name the payload
files that came after the cut. The caller that kept the writer's ``BagSummary`` knows them.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Literal

import zstandard

from consonance_sftp.formats.archive.rfc8493 import (
    BAG_INFO,
    BAGIT,
    FETCH,
    MANIFEST,
    TAG_MANIFEST,
    FetchEntry,
    bagit_txt_problems,
    parse_bag_info,
    parse_fetch,
    parse_manifest,
    path_problem,
)

ProblemKind = Literal[
    "missing",  # listed in a manifest (or required by RFC 8493) and not in the archive
    "corrupted",  # present, but its SHA-256 is not the manifest's (expected vs got)
    "unexpected",  # present, but listed nowhere / outside the bag / data after the end
    "truncated",  # the archive ends early
    "unreadable",  # not a tar, a damaged header, damaged zstd data, or still age-encrypted
    "bad_tag_file",  # a tag file breaks RFC 8493 (whitespace, format) or a count is wrong
    "unsafe_member",  # a link, a device, or a path that climbs out or is absolute
    "duplicate",  # the same path twice in the tar
]
Compression = Literal["auto", "none", "zstd"]

_CHUNK = 1024 * 1024
_TAG_FILE_LIMIT = 256 * 1024 * 1024  # a known tag file larger than this is not read into memory
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_AGE_MAGIC = b"age-encryption.org/"
_KNOWN_TAG_FILES = (BAGIT, BAG_INFO, MANIFEST, TAG_MANIFEST, FETCH)
_STAGING = ".bag-unverified"


@dataclass(frozen=True, slots=True)
class BagProblem:
    kind: ProblemKind
    path: str
    message: str
    expected: str | None = None
    got: str | None = None

    def __str__(self) -> str:
        where = self.path or "(archive)"
        extra = f" (expected {self.expected}, got {self.got})" if self.expected else ""
        return f"{where}: {self.message}{extra}"


@dataclass(frozen=True, slots=True)
class Referenced:
    """A payload file of the manifest that the archive does not carry: fetch.txt says where
    it is (``url``); ``sha256`` is this bag's manifest's, ``size`` fetch.txt's (None: ``-``)."""

    path: str
    sha256: str
    size: int | None
    url: str


OpenBag = Callable[[str], AbstractContextManager[BinaryIO]]
"""Given a bag's name (``nightly-20270101T023000Z``), its archive's plain tar stream
(decompressed or not, decrypted); raises ``OSError`` (or any ``Exception``) when it cannot."""


@dataclass(frozen=True, slots=True)
class BagReport:
    """The outcome of one read of an archive. ``files_verified``/``bytes_verified`` count the
    payload files whose hash matched the manifest; ``files_skipped`` those listed and present
    but left unhashed by sampling. ``archive_bytes``/``archive_sha256`` are of every byte read
    from the stream (compare with the sidecar)."""

    name: str | None
    problems: tuple[BagProblem, ...]
    files_in_manifest: int
    files_verified: int
    bytes_verified: int
    files_skipped: int
    payload_files: int
    payload_bytes: int
    info: tuple[tuple[str, str], ...]
    archive_bytes: int
    archive_sha256: str
    referenced: tuple[Referenced, ...] = ()  # listed in fetch.txt, not carried
    files_fetched: int = 0  # referenced files fetched and matched (extract_bag with open_bag)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def complete(self) -> bool:
        """Valid, and every referenced file was fetched (or there was none)."""
        return self.ok and self.files_fetched == len(self.referenced)


def verify_bag(
    stream: BinaryIO,
    *,
    compression: Compression = "auto",
    sample: float = 1.0,
    seed: int | None = None,
) -> BagReport:
    """Validate the archive read from ``stream`` (to its end). ``sample`` < 1.0 hashes only
    that random share of the payload files (``seed`` makes the draw repeatable); the others are
    counted in ``files_skipped``, never as verified. Tag files are always checked."""
    if not 0.0 <= sample <= 1.0:
        raise ValueError(f"sample must be between 0 and 1, not {sample}")
    return _Scan(stream, compression, sample, seed, staging=None).run()


def extract_bag(
    stream: BinaryIO,
    dest: Path,
    *,
    compression: Compression = "auto",
    open_bag: OpenBag | None = None,
) -> BagReport:
    """Restore the archive read from ``stream`` into ``dest``, which becomes the bag's folder
    (``dest/bagit.txt``, ``dest/data/...``; it must be missing or empty). Every file is
    written under ``dest/.bag-unverified/`` while it is hashed, and moved to its place only once
    the manifest at the end of the archive confirms it: a file that is corrupted, unlisted, cut
    or unsafe is reported and never left in ``dest``.

    An incremental bag's referenced files (fetch.txt) are then fetched with ``open_bag`` when
    given (``complete_bag``): the restored tree is the full one, each fetched file re-hashed
    against this bag's manifest. Without ``open_bag`` they are left out, and listed in the
    report's ``referenced``."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / _STAGING
    staging.mkdir()
    try:
        report = _Scan(stream, compression, 1.0, None, staging=staging, dest=dest).run()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if open_bag is not None and report.referenced and not _manifest_unusable(report):
        report = complete_bag(dest, report, open_bag)
    return report


def _manifest_unusable(report: BagReport) -> bool:
    """The manifest or fetch.txt did not check out: nothing should be fetched on its word."""
    return any(p.path in (MANIFEST, FETCH, TAG_MANIFEST) for p in report.problems)


def complete_bag(dest: Path, report: BagReport, open_bag: OpenBag) -> BagReport:
    """Fetch the files ``report.referenced`` lists into the restored bag ``dest``: each one
    from the archive its ``bag://`` locator names (``open_bag`` gives that archive's tar stream,
    read once, front to back), staged while it is hashed and moved into place only when its
    SHA-256 is the one in THIS bag's manifest. Returns ``report`` with ``files_fetched``,
    ``files_verified``/``bytes_verified`` counting the fetched files and every file that could
    not be fetched (or did not match) as a problem."""
    problems: list[BagProblem] = []
    by_bag: dict[str, dict[str, list[Referenced]]] = {}
    for ref in report.referenced:
        member = FetchEntry(ref.url, ref.size, ref.path).bag_member
        if member is None:
            problems.append(
                BagProblem("missing", ref.path, f"cannot fetch {ref.url}: not a bag:// locator")
            )
            continue
        bag, rel = member
        by_bag.setdefault(bag, {}).setdefault(f"{bag}/{rel}", []).append(ref)
    staging = dest / _STAGING
    staging.mkdir(exist_ok=True)
    fetched: list[Referenced] = []
    try:
        for bag, wanted in sorted(by_bag.items()):
            try:
                with open_bag(bag) as stream:
                    _fetch_from(stream, wanted, dest, staging, fetched, problems)
            except Exception as exc:  # any reason the base cannot be read: named, per file
                problems.append(BagProblem("unreadable", "", f"archive {bag}: {exc}"))
            for refs in wanted.values():
                for ref in refs:
                    if ref not in fetched and not any(p.path == ref.path for p in problems):
                        problems.append(BagProblem("missing", ref.path, f"not found in {ref.url}"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return replace(
        report,
        problems=report.problems + tuple(problems),
        files_fetched=len(fetched),
        files_verified=report.files_verified + len(fetched),
        bytes_verified=report.bytes_verified + sum(r.size or 0 for r in fetched),
    )


def _fetch_from(
    stream: BinaryIO,
    wanted: dict[str, list[Referenced]],
    dest: Path,
    staging: Path,
    fetched: list[Referenced],
    problems: list[BagProblem],
) -> None:
    """One pass over a referenced archive's tar: the wanted members, hashed and placed."""
    raw = _RawReader(stream)
    head = raw.peek(len(_AGE_MAGIC))
    if head.startswith(_AGE_MAGIC):
        raise ValueError("age-encrypted: open_bag must give the decrypted stream")
    source: _RawReader | _ZstdReader = _ZstdReader(raw) if head.startswith(_ZSTD_MAGIC) else raw
    try:
        with tarfile.open(fileobj=source, mode="r|") as tar:  # type: ignore[call-overload]
            while (member := tar.next()) is not None:
                refs = wanted.get(member.name)
                if not refs or not member.isreg():
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                staged = staging / "fetching"
                digest = hashlib.sha256()
                with staged.open("wb") as out:
                    while data := handle.read(_CHUNK):
                        digest.update(data)
                        out.write(data)
                got = digest.hexdigest()
                for n, ref in enumerate(refs):
                    if got != ref.sha256:
                        problems.append(
                            BagProblem(
                                "corrupted",
                                ref.path,
                                f"fetched from {ref.url}, its SHA-256 differs from the manifest's",
                                expected=ref.sha256,
                                got=got,
                            )
                        )
                        continue
                    target = dest.joinpath(*ref.path.split("/"))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if target.exists() or target.is_symlink():
                        problems.append(BagProblem("duplicate", ref.path, "already restored"))
                        continue
                    if n == len(refs) - 1:
                        os.replace(staged, target)
                    else:
                        shutil.copyfile(staged, target)
                    fetched.append(ref)
                staged.unlink(missing_ok=True)
    except (tarfile.TarError, EOFError, zstandard.ZstdError) as exc:
        raise ValueError(f"the archive is damaged or cut: {exc}") from exc


# --- streams -------------------------------------------------------------------------------


class _RawReader:
    """The archive's bytes as read: counted, hashed, with a pushed-back head and EOF noted."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.frames: _ZstdFrames | None = None  # set to follow zstd frames
        self._head = b""
        self.hash = hashlib.sha256()
        self.count = 0
        self.eof = False

    def peek(self, size: int) -> bytes:
        while len(self._head) < size:
            data = self._stream.read(size - len(self._head))
            if not data:
                break
            self._take(data)
            self._head += data
        return self._head[:size]

    def read(self, size: int = -1) -> bytes:
        if self._head:
            cut = len(self._head) if size < 0 else size
            data, self._head = self._head[:cut], self._head[cut:]
        else:
            data = self._stream.read(size)
            if not data:
                self.eof = True
            self._take(data)
        if self.frames is not None:
            self.frames.feed(data)
        return data

    def drain(self) -> int:
        """Read to the end; how many bytes that was."""
        total = 0
        while data := self.read(_CHUNK):
            total += len(data)
        return total

    def _take(self, data: bytes) -> None:
        self.hash.update(data)
        self.count += len(data)


class _ZstdFrames:
    """Walks the zstd frame structure (RFC 8878 §3.1) of the compressed bytes as they pass,
    without decoding them, to tell whether the stream stopped at the end of a frame: the
    decoder itself quietly returns what it has when a frame is cut."""

    def __init__(self) -> None:
        self._pending = bytearray()  # bytes of a header not complete yet
        self._skip = 0  # bytes of frame header, block content or checksum still to pass
        self._state = "magic"  # magic, skippable, descriptor, block_header
        self._needed = 4
        self._checksum = False
        self.at_boundary = True  # True between frames
        self.frames = 0  # frames read to their end
        self.trailing = 0  # bytes after the last frame that start no frame
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self.trailing or self._broken:
            self.trailing += len(data) if self.trailing else 0
            return
        view = memoryview(data)
        while view and not self.trailing:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                if not self._skip and self._state == "magic":
                    self.at_boundary = True
                continue
            step = min(self._needed - len(self._pending), len(view))
            self._pending += view[:step]
            view = view[step:]
            if len(self._pending) == self._needed:
                self._advance(bytes(self._pending))
        if self.trailing:
            self.trailing += len(view)

    def _advance(self, header: bytes) -> None:
        self._pending.clear()
        if self._state == "magic":
            self.at_boundary = False
            magic = int.from_bytes(header, "little")
            if 0x184D2A50 <= magic <= 0x184D2A5F:  # a skippable frame: size, then content
                self._state, self._needed = "skippable", 4
            elif header == _ZSTD_MAGIC:
                self._state, self._needed = "descriptor", 1
            elif self.frames:  # junk after a whole frame: the decoder stops at the frame's end
                self.trailing, self.at_boundary = len(header), True
            else:
                self._broken = True
                raise zstandard.ZstdError("not a zstd frame")
        elif self._state == "skippable":
            self._state, self._needed = "magic", 4
            self._skip = int.from_bytes(header, "little")
            self.at_boundary = not self._skip
        elif self._state == "descriptor":
            flags = header[0]
            single = bool(flags & 0x20)
            self._checksum = bool(flags & 0x04)
            fcs = (1 if single else 0, 2, 4, 8)[flags >> 6]
            self._skip = (0 if single else 1) + (0, 1, 2, 4)[flags & 0x03] + fcs
            self._state, self._needed = "block_header", 3
        else:  # block_header
            value = int.from_bytes(header, "little")
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            self._skip = 1 if kind == 1 else size
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._needed = "magic", 4
                self.frames += 1
                if not self._skip:
                    self.at_boundary = True


class _ZstdReader:
    """The decompressed tar. ``complete`` tells whether the zstd frame reached its end (a cut
    frame decodes what it has without an error, so this is how truncation shows)."""

    def __init__(self, raw: _RawReader) -> None:
        self._raw = raw
        raw.frames = _ZstdFrames()
        self._chunks: Iterator[bytes] = zstandard.ZstdDecompressor().read_to_iter(
            raw,  # type: ignore[arg-type]
            read_size=_CHUNK,
            write_size=_CHUNK,
        )
        self._chunk = b""
        self._pos = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            if self._pos >= len(self._chunk):
                chunk = None if self._done else next(self._chunks, None)
                if chunk is None:
                    self._done = True
                    break
                self._chunk, self._pos = chunk, 0
            end = len(self._chunk) if wanted is None else min(len(self._chunk), self._pos + wanted)
            parts.append(self._chunk[self._pos : end])
            if wanted is not None:
                wanted -= end - self._pos
            self._pos = end
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @property
    def complete(self) -> bool:
        return self._done and self._raw.frames is not None and self._raw.frames.at_boundary


# --- the scan ------------------------------------------------------------------------------


@dataclass
class _Seen:
    size: int
    sha256: str | None  # None: not hashed (sampling)
    staged: Path | None = None
    data: bytes | None = None  # the known tag files, kept to be parsed


@dataclass
class _Scan:
    stream: BinaryIO
    compression: Compression
    sample: float
    seed: int | None
    staging: Path | None
    name: str | None = None
    problems: list[BagProblem] = field(default_factory=list)
    payload: dict[str, _Seen] = field(default_factory=dict)
    tags: dict[str, _Seen] = field(default_factory=dict)
    good_payload: set[str] = field(default_factory=set)
    bad_tags: set[str] = field(default_factory=set)
    info: list[tuple[str, str]] = field(default_factory=list)
    fetch: dict[str, FetchEntry] = field(default_factory=dict)
    referenced: list[Referenced] = field(default_factory=list)
    dest: Path | None = None
    last_member: str = ""
    staged_count: int = 0
    rng: random.Random | None = None

    def problem(
        self,
        kind: ProblemKind,
        path: str,
        message: str,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        self.problems.append(BagProblem(kind, path, message, expected, got))

    def run(self) -> BagReport:
        raw = _RawReader(self.stream)
        self._read_tar(raw)
        raw.drain()  # the archive's hash covers every byte, whatever happened above
        return self._finish(raw)

    # --- reading --------------------------------------------------------------------------

    def _read_tar(self, raw: _RawReader) -> None:
        head = raw.peek(len(_AGE_MAGIC))
        if head.startswith(_AGE_MAGIC):
            self.problem("unreadable", "", "the archive is age-encrypted: decrypt it first")
            return
        zstd = self.compression == "zstd" or (
            self.compression == "auto" and head.startswith(_ZSTD_MAGIC)
        )
        source: _RawReader | _ZstdReader = _ZstdReader(raw) if zstd else raw
        try:
            try:
                tar = tarfile.open(fileobj=source, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
            except tarfile.ReadError as exc:
                if isinstance(source, _ZstdReader):
                    source.read()
                    if not source.complete:
                        self.problem("truncated", "", "the zstd stream ends before its frame does")
                        return
                self.problem(
                    "truncated" if raw.count == 0 or "empty" in str(exc) else "unreadable",
                    "",
                    f"no tar could be read ({exc}): empty, cut before its first file, or not "
                    f"a {'zstd-compressed ' if zstd else ''}tar",
                )
                return
            with tar:
                while (member := tar.next()) is not None:
                    self.last_member = member.name
                    self._member(tar, member)
                self._check_end(tar)
            if isinstance(source, _ZstdReader):
                source.read()  # to the frame's end
                drained = raw.drain()
                if not source.complete:
                    self.problem("truncated", "", "the zstd stream ends before its frame does")
                elif drained or (raw.frames is not None and raw.frames.trailing):
                    self.problem("unexpected", "", "data follows the end of the zstd frame")
        except (tarfile.TarError, EOFError, zstandard.ZstdError) as exc:  # not OSError: a failing
            # stream or a full disk is raised to the caller, not reported as a damaged archive
            self._broken(exc)

    def _broken(self, exc: BaseException) -> None:
        where = self._bag_path(self.last_member) if self.last_member else ""
        if isinstance(exc, zstandard.ZstdError):
            self.problem("unreadable", where, f"the zstd data is damaged: {exc}")
        elif "unexpected end of data" in str(exc) or isinstance(exc, EOFError):
            if where:
                self.problem("truncated", where, "the archive ends inside this file")
            else:
                self.problem("truncated", "", "the archive ends inside a file")
        else:
            self.problem("unreadable", where, f"the tar is damaged after this point: {exc}")
        if where in self.payload:  # cut or damaged: neither hashed nor staged for restore
            self.payload[where].sha256 = "(unreadable)"

    def _check_end(self, tar: tarfile.TarFile) -> None:
        """A tar ends with two zero blocks; ``tarfile`` stops at the first one, or quietly where
        a header is missing or cut. Past the first zero block only zeros may follow."""
        rest = tar.fileobj
        assert rest is not None
        zeros = 0
        while data := rest.read(_CHUNK):
            if data.strip(b"\0"):
                self.problem("unexpected", "", "data follows the tar's end-of-archive marker")
                return
            zeros += len(data)
        after = self._bag_path(self.last_member) if self.last_member else "its start"
        if zeros < tarfile.BLOCKSIZE:
            self.problem(
                "truncated",
                "",
                f"the archive ends before its end-of-archive marker (cut after {after})",
            )
        elif (tar.offset + tarfile.BLOCKSIZE + zeros) % tarfile.RECORDSIZE:
            self.problem(
                "truncated",
                "",
                f"the archive ends inside the zero padding of its last {tarfile.RECORDSIZE}-byte "
                "record (every file was whole)",
            )

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        top, _, rel = member.name.partition("/")
        if self.name is None:
            self.name = top
        if top != self.name or path_problem(top) is not None:
            self.problem("unexpected", member.name, "outside the bag's folder")
            return
        if not rel:
            if not member.isdir():
                self.problem("unexpected", member.name, "the bag's folder is not a folder")
            return
        unsafe = path_problem(rel)
        if unsafe is not None:
            self.problem("unsafe_member", member.name, f"refused: {unsafe}")
            return
        if member.isdir():
            return
        if not member.isreg():
            kind = (
                "a symbolic link"
                if member.issym()
                else "a hard link"
                if member.islnk()
                else "a device or special file"
            )
            self.problem("unsafe_member", rel, f"refused: {kind} (a bag holds only files)")
            return
        if rel in self.payload or rel in self.tags:
            self.problem("duplicate", rel, "this path is in the archive twice; the copy is ignored")
            return
        if rel.startswith("data/"):
            seen = _Seen(size=member.size, sha256=None)
            self.payload[rel] = seen
            if self.sample >= 1.0 or self._rng().random() < self.sample:
                self._read(tar, member, seen, keep=False)
        else:
            seen = _Seen(size=member.size, sha256=None)
            self.tags[rel] = seen
            keep = rel in _KNOWN_TAG_FILES and member.size <= _TAG_FILE_LIMIT
            if rel in _KNOWN_TAG_FILES and not keep:
                self.problem("bad_tag_file", rel, f"too large to be a tag file ({member.size} B)")
            self._read(tar, member, seen, keep=keep)

    def _read(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, seen: _Seen, *, keep: bool
    ) -> None:
        digest = hashlib.sha256()
        kept: list[bytes] = []
        handle = tar.extractfile(member)
        assert handle is not None
        out = None
        if self.staging is not None:
            self.staged_count += 1
            seen.staged = self.staging / f"{self.staged_count:08d}"
            out = seen.staged.open("xb")
        try:
            while data := handle.read(_CHUNK):
                digest.update(data)
                if keep:
                    kept.append(data)
                if out is not None:
                    out.write(data)
        finally:
            if out is not None:
                out.close()
        seen.sha256 = digest.hexdigest()
        if keep:
            seen.data = b"".join(kept)

    def _rng(self) -> random.Random:
        if self.rng is None:
            self.rng = random.Random(self.seed)
        return self.rng

    def _bag_path(self, member_name: str) -> str:
        top, _, rel = member_name.partition("/")
        return rel if top == self.name and rel else member_name

    # --- checking -------------------------------------------------------------------------

    def _text(self, name: str) -> str | None:
        seen = self.tags.get(name)
        if seen is None or seen.data is None:
            if seen is None:
                self.problem("missing", name, "this required tag file is not in the archive")
            return None
        try:
            return seen.data.decode("utf-8")
        except UnicodeDecodeError:
            self.problem("bad_tag_file", name, "not UTF-8")
            return None

    def _finish(self, raw: _RawReader) -> BagReport:
        bagit = self.tags.get(BAGIT)
        if bagit is None:
            self.problem("missing", BAGIT, "this required tag file is not in the archive")
        elif bagit.data is not None:
            for message in bagit_txt_problems(bagit.data):
                self.problem("bad_tag_file", BAGIT, message)
        self._check_fetch()
        self._check_bag_info()
        listed = self._check_manifest()
        self._check_tag_manifest()
        if self.dest is not None:
            self.promote(self.dest)
        verified = [p for p in listed if p in self.good_payload]
        skipped = [p for p in listed if p in self.payload and self.payload[p].sha256 is None]
        return BagReport(
            name=self.name,
            problems=tuple(self.problems),
            files_in_manifest=len(listed),
            files_verified=len(verified),
            bytes_verified=sum(self.payload[p].size for p in verified),
            files_skipped=len(skipped),
            payload_files=len(self.payload),
            payload_bytes=sum(s.size for s in self.payload.values()),
            info=tuple(self.info),
            archive_bytes=raw.count,
            archive_sha256=raw.hash.hexdigest(),
            referenced=tuple(self.referenced),
        )

    def _check_fetch(self) -> None:
        """fetch.txt, when there is one: its entries (checked against the manifest later)."""
        if FETCH not in self.tags:
            return
        text = self._text(FETCH)
        if text is None:
            return
        entries, problems = parse_fetch(text)
        for message in problems:
            self.problem("bad_tag_file", FETCH, message)
        self.fetch = {e.path: e for e in entries}

    def _check_bag_info(self) -> None:
        text = self._text(BAG_INFO)
        if text is None:
            return
        self.info, problems = parse_bag_info(text)
        for message in problems:
            self.problem("bad_tag_file", BAG_INFO, message)
        oxums = [value for label, value in self.info if label.lower() == "payload-oxum"]
        # The complete payload: what the archive carries and what fetch.txt refers to.
        absent = [e for p, e in self.fetch.items() if p not in self.payload]
        octets = sum(s.size for s in self.payload.values()) + sum(e.size or 0 for e in absent)
        got = f"{octets}.{len(self.payload) + len(absent)}"
        if len(oxums) != 1:
            self.problem("bad_tag_file", BAG_INFO, f"{len(oxums)} Payload-Oxum elements, not 1")
        elif oxums[0].strip() != got:
            self.problem(
                "bad_tag_file",
                BAG_INFO,
                "Payload-Oxum (octets.files) differs from the payload in the archive",
                expected=oxums[0].strip(),
                got=got,
            )

    def _check_manifest(self) -> list[str]:
        text = self._text(MANIFEST)
        if text is None:
            if self.payload and MANIFEST not in self.tags:
                self.problem(
                    "missing",
                    MANIFEST,
                    f"so none of the {len(self.payload)} payload files read could be checked",
                )
            return []
        entries, problems = parse_manifest(text, MANIFEST)
        for message in problems:
            self.problem("bad_tag_file", MANIFEST, message)
        listed: list[str] = []
        for entry in entries:
            if not entry.path.startswith("data/"):
                self.problem("bad_tag_file", MANIFEST, f"lists {entry.path!r}, outside data/")
                continue
            listed.append(entry.path)
            seen = self.payload.get(entry.path)
            if seen is None and entry.path in self.fetch:
                fetch = self.fetch[entry.path]
                self.referenced.append(Referenced(entry.path, entry.sha256, fetch.size, fetch.url))
            elif seen is None:
                self.problem("missing", entry.path, f"listed in {MANIFEST}, not in the archive")
            elif seen.sha256 is None:
                continue  # left out by sampling
            elif seen.sha256 != entry.sha256:
                if seen.sha256 != "(unreadable)":
                    self.problem(
                        "corrupted",
                        entry.path,
                        "its SHA-256 differs from the manifest's",
                        expected=entry.sha256,
                        got=seen.sha256,
                    )
            else:
                self.good_payload.add(entry.path)
        names = set(listed)
        for path in self.fetch:
            if path not in names:
                self.problem("bad_tag_file", FETCH, f"lists {path!r}, which {MANIFEST} does not")
        for path in self.payload:
            if path not in names:
                self.problem("unexpected", path, f"a payload file not listed in {MANIFEST}")
        return listed

    def _check_tag_manifest(self) -> None:
        text = self._text(TAG_MANIFEST)
        if text is None:
            return
        entries, problems = parse_manifest(text, TAG_MANIFEST)
        for message in problems:
            self.problem("bad_tag_file", TAG_MANIFEST, message)
        for entry in entries:
            if entry.path.startswith("data/") or entry.path == TAG_MANIFEST:
                self.problem("bad_tag_file", TAG_MANIFEST, f"may not list {entry.path!r}")
                continue
            seen = self.tags.get(entry.path)
            if seen is None:
                self.problem("missing", entry.path, f"listed in {TAG_MANIFEST}, not in the archive")
            elif seen.sha256 != entry.sha256:
                self.bad_tags.add(entry.path)
                self.problem(
                    "corrupted",
                    entry.path,
                    f"its SHA-256 differs from {TAG_MANIFEST}'s",
                    expected=entry.sha256,
                    got=seen.sha256,
                )

    # --- restoring ------------------------------------------------------------------------

    def promote(self, dest: Path) -> None:
        """Move the confirmed files from the staging folder to their place under ``dest``."""
        chosen = [(p, self.payload[p]) for p in sorted(self.good_payload)]
        chosen += [(p, s) for p, s in sorted(self.tags.items()) if p not in self.bad_tags]
        for path, seen in chosen:
            if seen.staged is None or seen.sha256 in (None, "(unreadable)"):
                continue
            target = dest.joinpath(*path.split("/"))
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists() or target.is_symlink():
                    raise FileExistsError(target)
                os.replace(seen.staged, target)
            except OSError as exc:
                self.problem("unsafe_member", path, f"not restored: {exc}")
