"""Outbound packages: safe file names from templates, package plans, manifests, zips, done-markers.

A *plan* says exactly what a partner will receive for one title: every file's remote path, size
and SHA-256, in upload order (assets, then the manifest, then the done-marker last), with the
temporary upload name when the profile has a rename-on-complete convention (TitlePage: upload
``.XOT``, rename to ``.COT``). ``consonance-sftp run FLOW --dry-run`` prints a plan; the flows
send one. Everything here is synchronous and pure apart from reading the given files (and
writing a zip where asked): flows call it through ``asyncio.to_thread``.

The delivery profile is taken structurally (``PackageProfile``): ``config`` and ``formats`` are
independent layers, and the config's ``DeliveryProfile`` model has exactly these attributes.
Reads are bounded (``hashlib.file_digest`` and fixed-size copies): a package of multi-GB audio
masters is planned and zipped in constant memory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import string
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

from stdnum import isbn as stdnum_isbn

from consonance_sftp.errors import UnsafeFileName, ValidationFailed
from consonance_sftp.models import AssetKind, DeliveryKey

CHUNK = 1024 * 1024
"""Bytes per read when copying into a zip: bounded memory whatever the file size."""

# Fixed member time: the same files give byte-identical zips, so a re-planned package has
# the same SHA-256 and the ledger recognises it (no accidental second send).
ZIP_TIME = (2000, 1, 1, 0, 0, 0)

_SAFE_CHARS = re.compile(r"[A-Za-z0-9._ +()-]+")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_COMPONENT_BYTES = 255
ISBN_PLACEHOLDERS = ("isbn13", "print_isbn13", "ebook_isbn13")


# --- names ---------------------------------------------------------------------------------


def unsafe_reasons(path: str) -> list[str]:
    """Why ``path`` (a relative POSIX path, ``/`` between folders) is not a safe remote name.

    Empty when it is safe. Names are kept to letters, digits, ``. _ - + ( )`` and inner spaces:
    partners' import scripts break on anything else (Ingram warns about ``&``; Google wants
    alphanumeric names), and it rules out traversal, control characters and shell specials.
    """
    if not path:
        return ["the name is empty"]
    if path.startswith("/"):
        return ["absolute paths are not allowed; names are relative to the partner's folder"]
    reasons: list[str] = []
    for part in path.split("/"):
        if part in ("", ".", ".."):
            reasons.append(f"path component {part!r} is not allowed")
            continue
        bad = sorted(set(_SAFE_CHARS.sub("", part)))
        if bad:
            shown = ", ".join(repr(c) for c in bad)
            reasons.append(f"{part!r} contains characters that are not allowed: {shown}")
        if part.startswith((".", "-", " ")) or part.endswith((" ", ".")):
            reasons.append(f"{part!r} may not start with '.', '-' or a space, or end with one")
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            reasons.append(f"{part[:40]!r}... is longer than {MAX_COMPONENT_BYTES} bytes")
    return reasons


def template_fields(template: str) -> list[str]:
    """The placeholder names of a template, after checking its syntax.

    Only plain names with an optional format spec (``{track:03}``, ``{timestamp:%Y%m%d}``) are
    accepted: attribute and index access (``{isbn13.__class__}``) and conversions could read
    more than the value they name.
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValidationFailed(f"file-name template {template!r} is malformed: {exc}") from exc
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _FIELD_NAME.fullmatch(name):
            raise UnsafeFileName(
                f"file-name template {template!r}: placeholder {{{name}}} is not allowed",
                ["use a plain name such as {isbn13}; attribute/index access is refused"],
            )
        if conversion is not None or (spec and "{" in spec):
            raise UnsafeFileName(
                f"file-name template {template!r}: placeholder {{{name}}} has a conversion or a "
                "nested field",
                ["only a format spec is allowed, e.g. {track:03}"],
            )
        names.append(name)
    return names


def render_name(template: str, values: Mapping[str, object]) -> str:
    """Fill a file-name template and prove the result is a safe relative path.

    Raises ``UnsafeFileName`` naming the template and the offending value (a value with ``/``,
    ``..``, control or reserved characters) and ``ValidationFailed`` for a placeholder that has
    no value.
    """
    out: list[str] = []
    template_fields(template)
    for literal, name, spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if name not in values or values[name] is None:
            known = ", ".join(sorted(k for k, v in values.items() if v is not None))
            raise ValidationFailed(
                f"file-name template {template!r} uses {{{name}}}, which has no value",
                [f"known placeholders: {known}"],
            )
        try:
            text = format(values[name], spec or "")
        except (ValueError, TypeError) as exc:
            raise ValidationFailed(
                f"file-name template {template!r}: cannot format {{{name}}} as {spec!r}: {exc}"
            ) from exc
        if "/" in text or "\\" in text or "\x00" in text:
            raise UnsafeFileName(
                f"file-name template {template!r}: value {text!r} of {{{name}}} is unsafe",
                ["a value may not contain '/', '\\' or NUL (it would change the folder)"],
            )
        out.append(text)
    rendered = "".join(out)
    reasons = unsafe_reasons(rendered)
    if reasons:
        raise UnsafeFileName(
            f"file-name template {template!r} gives the unsafe name {rendered!r}", reasons
        )
    return rendered


def join_remote(folder: str, name: str) -> str:
    """``folder/name`` for a rendered (possibly empty) folder."""
    return f"{folder.rstrip('/')}/{name}" if folder else name


# --- profile and inputs --------------------------------------------------------------------


class RenameRule(Protocol):
    """Upload under one suffix, rename to the final one when complete (TitlePage)."""

    @property
    def upload_suffix(self) -> str: ...

    @property
    def final_suffix(self) -> str: ...


class PackageProfile(Protocol):
    """The parts of a delivery profile a package plan needs (config's ``DeliveryProfile``)."""

    @property
    def assets(self) -> Sequence[AssetKind]: ...

    @property
    def required(self) -> Sequence[AssetKind]: ...

    @property
    def folder(self) -> str: ...

    @property
    def folders(self) -> Mapping[AssetKind, str]: ...

    @property
    def names(self) -> Mapping[AssetKind, str]: ...

    @property
    def packaging(self) -> str: ...

    @property
    def zip_name(self) -> str: ...

    @property
    def zip_compression(self) -> str: ...

    @property
    def manifest(self) -> str: ...

    @property
    def manifest_name(self) -> str: ...

    @property
    def done_marker(self) -> str | None: ...

    @property
    def rename(self) -> RenameRule | None: ...

    @property
    def values(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceAsset:
    """One approved local file offered to a package.

    ``track`` numbers audio files (1-based; unset: the order given). ``version_id`` is the
    store's asset-version id, carried through so the flow can record what was sent.
    """

    kind: AssetKind
    path: Path
    track: int | None = None
    version_id: int | None = None
    label: str | None = None

    @property
    def ext(self) -> str:
        return self.path.suffix.lstrip(".").lower()


Role = Literal["asset", "manifest", "done_marker", "zip"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedFile:
    """One file of a plan: where it goes and what it is.

    ``remote_path`` is relative to the partner's flow folder. ``upload_path`` is the temporary
    name the profile's rename convention asks for (``None``: the transport's own temp name).
    Exactly one of ``source`` (a local file) and ``content`` (generated bytes) is set, except
    for a zip planned without a work folder (dry run): then neither, and ``write_zip`` makes
    the same bytes later.
    """

    role: Role
    remote_path: str
    size: int
    sha256: str
    kind: AssetKind | None = None
    source: Path | None = None
    content: bytes | None = None
    upload_path: str | None = None
    version_id: int | None = None
    members: tuple[PlannedFile, ...] = ()

    def open(self) -> BinaryIO:
        """The bytes to send, as a binary stream (a file or an in-memory buffer)."""
        if self.content is not None:
            return io.BytesIO(self.content)
        if self.source is not None:
            return self.source.open("rb")
        raise ValidationFailed(f"{self.remote_path}: not built yet; call write_zip first")


@dataclass(frozen=True, slots=True, kw_only=True)
class PackagePlan:
    """Everything one partner receives for one title, in upload order."""

    files: tuple[PlannedFile, ...]
    excluded: tuple[tuple[SourceAsset, str], ...] = ()
    compression: str = "stored"
    # The time the names were made from ({timestamp}, {date}): re-plan a retried package
    # with it, or a timestamped name (TitlePage) changes and the package looks new.
    planned_at: datetime | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def assets(self) -> tuple[PlannedFile, ...]:
        """The partner's content files: loose assets, or a zip's members."""
        out: list[PlannedFile] = []
        for f in self.files:
            if f.role == "asset":
                out.append(f)
            out.extend(m for m in f.members if m.role == "asset")
        return tuple(out)

    def delivery_keys(self, partner: str, base_folder: str = "") -> list[DeliveryKey]:
        """The ledger keys of the files sent, with remote paths under ``base_folder`` (the
        partner's folder for the flow, e.g. ``/in``)."""
        return [
            DeliveryKey(
                partner=partner,
                remote_path=join_remote(base_folder, f.remote_path),
                sha256=f.sha256,
            )
            for f in self.files
        ]

    def materialize(self, folder: Path) -> PackagePlan:
        """The same plan with every file backed by a local file under ``folder``: generated
        manifests and markers are written, a dry-run zip is built. Transports send paths."""
        folder.mkdir(parents=True, exist_ok=True)
        out: list[PlannedFile] = []
        for f in self.files:
            local = folder / f.remote_path.replace("/", "_")
            if f.source is not None:
                out.append(f)
                continue
            if f.content is not None:
                local.write_bytes(f.content)
            else:
                size, digest = write_zip(f.members, local, compression=self.compression)
                if (size, digest) != (f.size, f.sha256):
                    raise ValidationFailed(
                        f"{f.remote_path}: the zip built differs from the planned one",
                        [f"planned {f.size} bytes {f.sha256}, built {size} bytes {digest}"],
                    )
            out.append(replace(f, source=local))
        return replace(self, files=tuple(out))

    def lines(self) -> list[str]:
        """Human-readable dry-run lines: size, SHA-256, remote path (and temp name)."""
        rows: list[str] = []
        for f in self.files:
            via = f" (uploaded as {f.upload_path})" if f.upload_path else ""
            rows.append(f"{f.size:>14,}  {f.sha256}  {f.remote_path}{via}")
            rows.extend(f"{m.size:>14,}  {m.sha256}    {m.remote_path}" for m in f.members)
        return rows

    def as_dict(self) -> dict[str, object]:
        """JSON-ready plan (``--dry-run --json``)."""

        def one(f: PlannedFile) -> dict[str, object]:
            item: dict[str, object] = {
                "role": f.role,
                "remote_path": f.remote_path,
                "size": f.size,
                "sha256": f.sha256,
            }
            if f.kind is not None:
                item["kind"] = f.kind.value
            if f.upload_path:
                item["upload_path"] = f.upload_path
            if f.members:
                item["members"] = [one(m) for m in f.members]
            return item

        return {
            "files": [one(f) for f in self.files],
            "total_bytes": self.total_bytes,
            "excluded": [
                {"kind": a.kind.value, "path": str(a.path), "reason": why}
                for a, why in self.excluded
            ],
        }


# --- checksums -----------------------------------------------------------------------------


def sha256_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of a file, read in bounded blocks (1 MiB, reused)."""
    digest, size = hashlib.sha256(), 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            size += count
    return size, digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- manifests and markers -----------------------------------------------------------------


def manifest_json(files: Iterable[PlannedFile], *, extra: Mapping[str, str] | None = None) -> bytes:
    """A JSON manifest: ``{"files": [{"name", "kind", "size", "sha256"}, ...]}``.

    No timestamp inside: the same files give the same manifest bytes, so it has a stable key.
    """
    doc: dict[str, object] = dict(extra or {})
    doc["files"] = [
        {
            "name": f.remote_path,
            "kind": f.kind.value if f.kind else f.role,
            "size": f.size,
            "sha256": f.sha256,
        }
        for f in files
    ]
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def manifest_csv(files: Iterable[PlannedFile]) -> bytes:
    """A CSV manifest with the header ``name,kind,size,sha256``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["name", "kind", "size", "sha256"])
    for f in files:
        writer.writerow([f.remote_path, f.kind.value if f.kind else f.role, f.size, f.sha256])
    return buffer.getvalue().encode()


def done_marker_content(files: Iterable[PlannedFile]) -> bytes:
    """``<sha256>  <name>`` per file (``sha256sum -c`` reads it): the set is complete."""
    return "".join(f"{f.sha256}  {f.remote_path}\n" for f in files).encode()


def parse_manifest(data: bytes) -> dict[str, tuple[int, str]]:
    """Name -> (size, sha256) from a JSON or CSV manifest (for verification and tests)."""
    text = data.decode()
    if text.lstrip().startswith("{"):
        doc = json.loads(text)
        return {f["name"]: (int(f["size"]), str(f["sha256"])) for f in doc["files"]}
    rows = csv.DictReader(io.StringIO(text))
    return {r["name"]: (int(r["size"]), r["sha256"]) for r in rows}


# --- zips ----------------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """A write-only, non-seekable stream that hashes and counts what it is given.

    Zips are always written through it, to a file or to nowhere (dry run), so both produce the
    same bytes (data descriptors, as for any non-seekable output) and the same SHA-256.
    """

    def __init__(self, target: BinaryIO | None) -> None:
        super().__init__()
        self.target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        self.hash.update(view)
        self.size += len(view)
        if self.target is not None:
            self.target.write(view)
        return len(view)


Finish = Callable[[list[PlannedFile]], "PlannedFile | None"]


def _zip_members(
    members: Sequence[PlannedFile], sink: _Sink, compression: str, finish: Finish | None
) -> list[PlannedFile]:
    """Stream the members into a zip; return them with the SHA-256 of the bytes written.

    ``finish`` sees the hashed members and may add one last member (the manifest), so a zip
    package is planned in a single read of its multi-GB sources. A member planned with a
    checksum must still have it: a source changed since planning is an error, not a new zip.
    """
    method = zipfile.ZIP_DEFLATED if compression == "deflated" else zipfile.ZIP_STORED
    written: list[PlannedFile] = []
    with zipfile.ZipFile(sink, "w", compression=method, allowZip64=True) as archive:

        def add(member: PlannedFile) -> None:
            info = zipfile.ZipInfo(member.remote_path, date_time=ZIP_TIME)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            # A known size lets zipfile choose zip64 headers up front for members > 2 GiB.
            info.file_size = member.size
            digest, size = hashlib.sha256(), 0
            with (
                member.open() as src,
                archive.open(info, "w", force_zip64=member.size > 2**31) as dst,
            ):
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
            found = digest.hexdigest()
            if size != member.size or (member.sha256 and member.sha256 != found):
                raise ValidationFailed(
                    f"{member.remote_path}: the source changed since the package was planned",
                    [f"planned {member.size} bytes {member.sha256 or '?'}, read {size} {found}"],
                )
            written.append(replace(member, sha256=found))

        for member in members:
            add(member)
        last = finish(list(written)) if finish is not None else None
        if last is not None:
            add(last)
    return written


def _build_zip(
    members: Sequence[PlannedFile],
    dest: Path | None,
    compression: str,
    finish: Finish | None = None,
) -> tuple[int, str, list[PlannedFile]]:
    if dest is None:
        sink = _Sink(None)
        written = _zip_members(members, sink, compression, finish)
        return sink.size, sink.hash.hexdigest(), written
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as handle:
        sink = _Sink(handle)
        written = _zip_members(members, sink, compression, finish)
    return sink.size, sink.hash.hexdigest(), written


def write_zip(
    members: Sequence[PlannedFile], dest: Path | None, *, compression: str = "stored"
) -> tuple[int, str]:
    """Write the members into a zip at ``dest`` (``None``: only measure); size and SHA-256.

    Streamed: memory stays flat for multi-GB members; zip64 is used where needed.
    """
    size, digest, _members = _build_zip(members, dest, compression)
    return size, digest


# --- planning ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Counter:
    seen: dict[str, str] = field(default_factory=dict)

    def claim(self, path: str, what: str) -> None:
        if path in self.seen:
            raise ValidationFailed(
                f"two files would be sent as {path!r}",
                [
                    f"{self.seen[path]} and {what}",
                    "put {track} or {index} in the profile's file-name template",
                ],
            )
        self.seen[path] = what


def base_values(
    profile: PackageProfile, values: Mapping[str, object], now: datetime
) -> dict[str, object]:
    """Placeholder values common to every file: the profile's own, the caller's, the time."""
    out: dict[str, object] = {"date": now.strftime("%Y%m%d"), "timestamp": now}
    out.update(profile.values)
    out.update(values)
    for key in ISBN_PLACEHOLDERS:
        value = out.get(key)
        # Partners file by ISBN: a wrong one lands in their hold/ folder or on another title.
        if value is not None and not (
            isinstance(value, str) and len(value) == 13 and stdnum_isbn.is_valid(value)
        ):
            raise ValidationFailed(
                f"{key} {value!r} is not a valid ISBN-13",
                ["13 digits, no hyphens, with a correct check digit"],
            )
    return out


def _upload_path(profile: PackageProfile, remote: str) -> str | None:
    rule = profile.rename
    if rule is None:
        return None
    stem = remote[: -len(rule.final_suffix)] if remote.endswith(rule.final_suffix) else remote
    return stem + rule.upload_suffix


def why_empty(profile: PackageProfile, assets: Sequence[SourceAsset]) -> str:
    """Why a plan holds no content file: which kinds the profile sends, which the title has."""
    sends = ", ".join(k.value for k in profile.assets)
    has = ", ".join(dict.fromkeys(a.kind.value for a in assets)) or "none"
    return f"no file matches the package's kinds ({sends}); the title's approved files: {has}"


def plan_package(
    profile: PackageProfile,
    assets: Sequence[SourceAsset],
    *,
    values: Mapping[str, object],
    now: datetime,
    work_dir: Path | None = None,
) -> PackagePlan:
    """The exact files a partner receives for one title, from its profile and the assets.

    ``values`` fills the templates (``isbn13`` at least; ``work_id``, ``product_id``...).
    Assets of kinds the profile does not list are left out and reported in ``excluded``; a
    kind in ``profile.required`` with no asset fails the plan (an incomplete set is not
    processed by the partner). For a zip profile the zip is written to ``work_dir``; without
    one it is only measured (dry run) and ``write_zip`` makes the identical file later.
    """
    common = base_values(profile, values, now)
    wanted = set(profile.assets)
    chosen = [a for a in assets if a.kind in wanted]
    excluded = tuple(
        (a, f"the profile does not send {a.kind.value}") for a in assets if a.kind not in wanted
    )
    missing = [k.value for k in profile.required if not any(a.kind == k for a in chosen)]
    if missing:
        raise ValidationFailed(
            "the package is incomplete: the partner requires every listed kind",
            [f"no approved {kind} file" for kind in missing],
        )
    for asset in chosen:
        if asset.kind not in profile.names:
            raise ValidationFailed(
                f"the profile sends {asset.kind.value} but has no file-name template for it",
                [f"add names.{asset.kind.value} to the profile"],
            )

    claimed = _Counter()
    planned = _plan_assets(profile, chosen, common, claimed)
    top = render_name(profile.folder, common) if profile.folder else ""
    files: list[PlannedFile]
    if profile.packaging == "zip":
        zip_remote = join_remote(top, render_name(profile.zip_name, common))
        dest = work_dir / zip_remote.replace("/", "_") if work_dir is not None else None

        def finish(hashed: list[PlannedFile]) -> PlannedFile | None:
            return _manifest(profile, hashed, common, top, zipped=True)

        size, digest, members = _build_zip(planned, dest, profile.zip_compression, finish)
        files = [
            PlannedFile(
                role="zip",
                remote_path=zip_remote,
                size=size,
                sha256=digest,
                source=dest,
                members=tuple(members),
            )
        ]
    else:
        manifest = _manifest(profile, planned, common, top, zipped=False)
        if manifest:
            claimed.claim(manifest.remote_path, "the manifest")
        files = planned + ([manifest] if manifest else [])
    if profile.done_marker:
        marker_remote = join_remote(top, render_name(profile.done_marker, common))
        claimed.claim(marker_remote, "the done-marker")
        content = done_marker_content(files)
        files.append(
            PlannedFile(
                role="done_marker",
                remote_path=marker_remote,
                size=len(content),
                sha256=sha256_bytes(content),
                content=content,
            )
        )
    with_upload = tuple(replace(f, upload_path=_upload_path(profile, f.remote_path)) for f in files)
    return PackagePlan(
        files=with_upload,
        excluded=excluded,
        compression=profile.zip_compression,
        planned_at=now,
    )


def _plan_assets(
    profile: PackageProfile,
    chosen: Sequence[SourceAsset],
    common: Mapping[str, object],
    claimed: _Counter,
) -> list[PlannedFile]:
    zipped = profile.packaging == "zip"
    per_kind: dict[AssetKind, list[SourceAsset]] = {}
    for asset in chosen:
        per_kind.setdefault(asset.kind, []).append(asset)
    planned: list[PlannedFile] = []
    for kind, group in per_kind.items():
        if kind is AssetKind.AUDIO:
            group = sorted(group, key=lambda a: (a.track is None, a.track or 0))
        for index, asset in enumerate(group, start=1):
            file_values = {
                **common,
                "ext": asset.ext,
                "index": index,
                "count": len(group),
                "track": asset.track if asset.track is not None else index,
                "tracks": len(group),
            }
            # Inside a zip, paths are relative to the zip (which itself goes to ``folder``).
            folder_template = profile.folders.get(kind, "" if zipped else profile.folder)
            folder = render_name(folder_template, file_values) if folder_template else ""
            remote = join_remote(folder, render_name(profile.names[kind], file_values))
            claimed.claim(remote, f"{kind.value} {asset.path.name}")
            # Zipped sources are hashed while the zip is streamed: one read, not two.
            size, digest = (asset.path.stat().st_size, "") if zipped else sha256_file(asset.path)
            if size == 0:
                raise ValidationFailed(
                    f"{asset.path.name}: zero-byte file", [f"{kind.value} {asset.path} is empty"]
                )
            planned.append(
                PlannedFile(
                    role="asset",
                    kind=kind,
                    remote_path=remote,
                    size=size,
                    sha256=digest,
                    source=asset.path,
                    version_id=asset.version_id,
                )
            )
    return planned


def _manifest(
    profile: PackageProfile,
    planned: Sequence[PlannedFile],
    common: Mapping[str, object],
    top: str,
    *,
    zipped: bool,
) -> PlannedFile | None:
    if profile.manifest == "none":
        return None
    content = manifest_json(planned) if profile.manifest == "json" else manifest_csv(planned)
    name = render_name(profile.manifest_name, {**common, "ext": profile.manifest})
    return PlannedFile(
        role="manifest",
        remote_path=name if zipped else join_remote(top, name),
        size=len(content),
        sha256=sha256_bytes(content),
        content=content,
    )
