"""Archives (issue 17): a BagIt 1.0 bag streamed into a tar (optionally zstd), read back by the
validator and the restore, and by the standard tools (tar, sha256sum) without this service."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest
import zstandard
from pyrage import x25519

from consonance_sftp.errors import UnsafeFileName
from consonance_sftp.formats.archive import (
    BagReport,
    BagWriter,
    HashingWriter,
    extract_bag,
    sidecar_line,
    verify_bag,
)
from consonance_sftp.formats.archive.rfc8493 import (
    bagit_txt_problems,
    decode_path,
    encode_path,
    parse_bag_info,
)

CREATED = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
NAME = "archive-2026-12-03"
INFO = {"Source-Organization": "Example Press", "External-Identifier": "run-42"}
LONG = "works/" + "a-very-long-folder-name-" * 6 + "/title.json"  # > 100 chars: a pax header


def payload(tmp_path: Path) -> dict[str, bytes]:
    """Files of several sizes, a nested path, a non-ASCII and a >100-character name."""
    big = random.Random(17).randbytes(3 * 1024 * 1024 + 17)
    (tmp_path / "interior.pdf").write_bytes(big)
    return {
        "assets/9781234567897/interior.pdf": big,
        "works.json": b'{"works": []}\n' * 100,
        "contacts/Zoë Müller.json": '{"name": "Zoë"}'.encode(),
        LONG: b"{}",
        "empty.txt": b"",
    }


def write_bag(
    tmp_path: Path,
    out: io.RawIOBase | io.BufferedIOBase | None = None,
    *,
    compression: str = "none",
    created: datetime = CREATED,
) -> bytes:
    files = payload(tmp_path)
    buffer = io.BytesIO() if out is None else out
    with BagWriter(
        buffer,  # type: ignore[arg-type]
        name=NAME,
        info=INFO,
        compression=compression,  # type: ignore[arg-type]
        created=created,
    ) as writer:
        writer.add_file("assets/9781234567897/interior.pdf", tmp_path / "interior.pdf")
        for rel, data in files.items():
            if rel != "assets/9781234567897/interior.pdf":
                writer.add_bytes(rel, data)
    return buffer.getvalue() if isinstance(buffer, io.BytesIO) else b""


def kinds(report: BagReport) -> set[tuple[str, str]]:
    return {(p.kind, p.path) for p in report.problems}


def rewrite(
    tar_bytes: bytes,
    edit: Callable[[str, bytes], bytes | None],
    *,
    extra: dict[str, bytes] | None = None,
    fix_tag_manifest: bool = False,
) -> bytes:
    """The same tar re-written member by member: ``edit`` returns new content or None to drop
    the member; ``extra`` files are added before the tag files; optionally the tag manifest is
    recomputed so that only the intended damage remains."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as src:
        for member in src:
            data = src.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            members.append((member, data))
    out = io.BytesIO()
    tags: dict[str, bytes] = {}
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for member, data in members:
            if extra and member.name == f"{NAME}/bagit.txt":
                for rel, content in extra.items():
                    info = tarfile.TarInfo(f"{NAME}/{rel}")
                    info.size = len(content)
                    dst.addfile(info, io.BytesIO(content))
                extra = None
            if data is None:
                dst.addfile(member)
                continue
            new = edit(member.name.partition("/")[2], data)
            if new is None:
                continue
            rel = member.name.partition("/")[2]
            if rel == "tagmanifest-sha256.txt" and fix_tag_manifest:
                new = "".join(
                    f"{hashlib.sha256(tags[name]).hexdigest()}  {name}\n"
                    for name in ("bagit.txt", "manifest-sha256.txt", "bag-info.txt")
                ).encode()
            tags[rel] = new
            member.size = len(new)
            dst.addfile(member, io.BytesIO(new))
    return out.getvalue()


# --- round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_round_trip_verifies_and_restores_byte_identical(tmp_path: Path, compression: str) -> None:
    files = payload(tmp_path)
    data = write_bag(tmp_path, compression=compression)
    if compression == "zstd":
        assert data.startswith(b"\x28\xb5\x2f\xfd")

    report = verify_bag(io.BytesIO(data))
    assert report.ok, report.problems
    assert report.name == NAME
    assert report.files_in_manifest == report.files_verified == len(files)
    assert report.bytes_verified == sum(len(v) for v in files.values())
    assert report.files_skipped == 0
    assert report.archive_sha256 == hashlib.sha256(data).hexdigest()
    info = dict(report.info)
    assert info["Source-Organization"] == "Example Press"
    assert info["Bagging-Date"] == "2026-12-03"
    assert info["Payload-Oxum"] == f"{report.bytes_verified}.{len(files)}"

    dest = tmp_path / "restored"
    restored = extract_bag(io.BytesIO(data), dest)
    assert restored.ok, restored.problems
    for rel, content in files.items():
        assert (dest / "data" / rel).read_bytes() == content
    assert (dest / "bagit.txt").read_bytes() == (
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    )
    assert not (dest / ".bag-unverified").exists()
    if shutil.which("sha256sum"):  # the restored folder is a bag the standard tool checks
        checked = sh(["sha256sum", "-c", "manifest-sha256.txt"], dest)
        assert checked.stdout.count(": OK") == len(files)


def test_summary_matches_what_was_written(tmp_path: Path) -> None:
    out = io.BytesIO()
    files = payload(tmp_path)
    with BagWriter(out, name=NAME, info=INFO, compression="zstd", created=CREATED) as writer:
        for rel, content in files.items():
            writer.add_bytes(rel, content)
    summary = writer.summary
    data = out.getvalue()
    assert summary.archive_bytes == len(data)
    assert summary.archive_sha256 == hashlib.sha256(data).hexdigest()
    assert summary.tar_bytes == len(zstandard.ZstdDecompressor().decompressobj().decompress(data))
    assert summary.tar_bytes % 10240 == 0
    assert {f.path: f.sha256 for f in summary.files} == {
        f"data/{rel}": hashlib.sha256(content).hexdigest() for rel, content in files.items()
    }
    assert summary.payload_oxum == f"{sum(map(len, files.values()))}.{len(files)}"


def test_tag_files_come_after_the_payload_with_deterministic_headers(tmp_path: Path) -> None:
    data = write_bag(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        members = list(tar)
    names = [m.name.partition("/")[2] for m in members]
    assert names[-4:] == [
        "bagit.txt",
        "manifest-sha256.txt",
        "bag-info.txt",
        "tagmanifest-sha256.txt",
    ]
    assert names[:2] == ["", "data"]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == int(CREATED.timestamp())
        assert m.mode == (0o755 if m.isdir() else 0o644)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_same_input_gives_same_bytes(tmp_path: Path, compression: str) -> None:
    first = write_bag(tmp_path, compression=compression)
    second = write_bag(tmp_path, compression=compression)
    assert first == second
    later = write_bag(tmp_path, compression=compression, created=datetime(2027, 1, 1, tzinfo=UTC))
    assert later != first


# --- damage is found and named -------------------------------------------------------------


def test_a_flipped_byte_is_reported_as_corrupted_naming_the_file(tmp_path: Path) -> None:
    data = bytearray(write_bag(tmp_path))
    original = (tmp_path / "interior.pdf").read_bytes()
    at = bytes(data).index(original[:64]) + 1000
    data[at] ^= 0x01

    report = verify_bag(io.BytesIO(bytes(data)))
    assert not report.ok
    (problem,) = report.problems
    assert (problem.kind, problem.path) == ("corrupted", "data/assets/9781234567897/interior.pdf")
    assert problem.expected == hashlib.sha256(original).hexdigest()
    assert problem.got != problem.expected
    assert "interior.pdf" in str(problem)

    dest = tmp_path / "restored"
    restored = extract_bag(io.BytesIO(bytes(data)), dest)
    assert ("corrupted", "data/assets/9781234567897/interior.pdf") in kinds(restored)
    assert not (dest / "data/assets/9781234567897/interior.pdf").exists()
    assert (dest / "data/works.json").exists()  # the good ones are restored


def test_a_flipped_byte_in_a_zstd_archive_is_reported(tmp_path: Path) -> None:
    data = bytearray(write_bag(tmp_path, compression="zstd"))
    data[len(data) // 2] ^= 0x40
    report = verify_bag(io.BytesIO(bytes(data)))
    assert not report.ok
    assert {p.kind for p in report.problems} & {"unreadable", "corrupted"}


def test_a_missing_payload_file_is_named(tmp_path: Path) -> None:
    data = rewrite(write_bag(tmp_path), lambda rel, d: None if rel == "data/works.json" else d)
    report = verify_bag(io.BytesIO(data))
    assert ("missing", "data/works.json") in kinds(report)
    assert ("bad_tag_file", "bag-info.txt") in kinds(report)  # Payload-Oxum no longer matches
    assert report.files_verified == len(payload(tmp_path)) - 1


def test_an_extra_payload_file_is_named(tmp_path: Path) -> None:
    data = rewrite(write_bag(tmp_path), lambda rel, d: d, extra={"data/extra.txt": b"hello"})
    report = verify_bag(io.BytesIO(data))
    assert ("unexpected", "data/extra.txt") in kinds(report)

    dest = tmp_path / "restored"
    extract_bag(io.BytesIO(data), dest)
    assert not (dest / "data/extra.txt").exists()


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_a_truncated_archive_is_reported_wherever_it_is_cut(
    tmp_path: Path, compression: str
) -> None:
    data = write_bag(tmp_path, compression=compression)
    cuts = sorted({0, 1, 100, 511, 512, 1024, 5000, len(data) // 3, len(data) // 2}) + [
        len(data) - n for n in (5000, 1025, 1024, 600, 512, 100, 4, 1)
    ]
    for cut in cuts:
        if cut >= len(data):
            continue
        report = verify_bag(io.BytesIO(data[:cut]))
        assert not report.ok, f"cut at {cut} of {len(data)} went unnoticed"
        assert report.archive_bytes == cut
        assert any(p.kind in ("truncated", "missing", "unreadable") for p in report.problems)


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("junk", [b"junk", b"A" * 3_000_000])
def test_data_after_the_end_is_reported(tmp_path: Path, compression: str, junk: bytes) -> None:
    data = write_bag(tmp_path, compression=compression) + junk
    report = verify_bag(io.BytesIO(data))
    assert kinds(report) == {("unexpected", "")}
    assert report.files_verified == len(payload(tmp_path))
    assert report.archive_bytes == len(data)


def test_a_cut_inside_a_payload_file_names_it_and_restores_nothing_half(tmp_path: Path) -> None:
    data = write_bag(tmp_path)
    original = (tmp_path / "interior.pdf").read_bytes()
    cut = data.index(original[:64]) + len(original) // 2
    report = verify_bag(io.BytesIO(data[:cut]))
    assert ("truncated", "data/assets/9781234567897/interior.pdf") in kinds(report)
    assert ("missing", "manifest-sha256.txt") in kinds(report)

    dest = tmp_path / "restored"
    restored = extract_bag(io.BytesIO(data[:cut]), dest)
    assert not restored.ok
    assert not list(dest.rglob("*.pdf"))
    assert [p for p in dest.rglob("*") if p.is_file()] == []  # no manifest: nothing is proven


def test_bag_info_with_bad_whitespace_is_reported(tmp_path: Path) -> None:
    def damage(rel: str, d: bytes) -> bytes:
        if rel == "bag-info.txt":
            return d.replace(b"Source-Organization: ", b"Source-Organization : ").replace(
                b"External-Identifier: ", b" External-Identifier:"
            )
        return d

    report = verify_bag(io.BytesIO(rewrite(write_bag(tmp_path), damage, fix_tag_manifest=True)))
    bad = [p for p in report.problems if p.path == "bag-info.txt"]
    assert {p.kind for p in report.problems} == {"bad_tag_file"}
    assert any("whitespace before the colon" in p.message for p in bad)
    assert any("continues a value" in p.message or "no label" in p.message for p in bad)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"BagIt-Version: 1.0 \nTag-File-Character-Encoding: UTF-8\n", "trailing whitespace"),
        (b"BagIt-Version : 1.0\nTag-File-Character-Encoding : UTF-8\n", "before the colon"),
        (b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8", "no line break"),
        (b"BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8\n", "1.0 only"),
        (b"\xef\xbb\xbfBagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n", "byte-order"),
    ],
)
def test_bagit_txt_must_be_exact(tmp_path: Path, content: bytes, reason: str) -> None:
    data = rewrite(
        write_bag(tmp_path),
        lambda rel, d: content if rel == "bagit.txt" else d,
        fix_tag_manifest=True,
    )
    report = verify_bag(io.BytesIO(data))
    assert not report.ok
    assert {(p.kind, p.path) for p in report.problems} == {("bad_tag_file", "bagit.txt")}
    assert any(reason in p.message for p in report.problems), report.problems


def test_the_conformance_suites_invalid_whitespace_bagit_txt_is_refused() -> None:
    # v1.0/invalid/bagit-with-invalid-whitespace of the BagIt conformance suite (which the
    # Python 'bagit' library accepts)
    problems = bagit_txt_problems(b"BagIt-Version : 1.0\nTag-File-Character-Encoding : UTF-8\n")
    assert len(problems) == 2
    assert bagit_txt_problems(b"BagIt-Version: 1.0\r\nTag-File-Character-Encoding: UTF-8\r\n") == []


@pytest.mark.parametrize(
    ("text", "elements", "ok"),
    [
        ("A: b\n", [("A", "b")], True),
        ("A:\tb\n", [("A", "b")], True),
        ("Long-Label: one\n  two\n", [("Long-Label", "one two")], True),
        ("A:b\n", [], False),
        ("A : b\n", [], False),
        (" A: b\n", [], False),
        ("no colon\n", [], False),
        ("A: b", [("A", "b")], False),
    ],
)
def test_bag_info_rules(text: str, elements: list[tuple[str, str]], ok: bool) -> None:
    parsed, problems = parse_bag_info(text)
    assert parsed == elements
    assert (not problems) is ok


def test_a_tag_file_changed_after_bagging_fails_the_tag_manifest(tmp_path: Path) -> None:
    data = rewrite(
        write_bag(tmp_path),
        lambda rel, d: d.replace(b"run-42", b"run-43") if rel == "bag-info.txt" else d,
    )
    assert ("corrupted", "bag-info.txt") in kinds(verify_bag(io.BytesIO(data)))


# --- unsafe archives are refused -----------------------------------------------------------


def _tar_with(member: tarfile.TarInfo, content: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folder = tarfile.TarInfo(NAME)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        tar.addfile(member, io.BytesIO(content) if member.isreg() else None)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "kind", "problem"),
    [
        (f"{NAME}/data/../../escape.txt", tarfile.REGTYPE, "unsafe_member"),
        (f"{NAME}/data/link", tarfile.SYMTYPE, "unsafe_member"),
        (f"{NAME}/data/hard", tarfile.LNKTYPE, "unsafe_member"),
        (f"{NAME}/data/dev", tarfile.CHRTYPE, "unsafe_member"),
        ("/etc/cron.d/evil", tarfile.REGTYPE, "unexpected"),
        ("other/data/x", tarfile.REGTYPE, "unexpected"),
    ],
)
def test_restore_refuses_members_that_climb_out_links_and_devices(
    tmp_path: Path, name: str, kind: bytes, problem: str
) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    member.size = 4 if kind == tarfile.REGTYPE else 0
    dest = tmp_path / "restored"
    report = extract_bag(io.BytesIO(_tar_with(member, b"evil")), dest)
    assert problem in {p.kind for p in report.problems}
    assert not [p for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()]


def test_a_failing_stream_is_raised_not_reported_as_damage(tmp_path: Path) -> None:
    data = write_bag(tmp_path)

    class Dropping(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if self.inner.tell() > len(data) // 2:
                raise ConnectionResetError("the partner went away")
            return self.inner.read(size)

    with pytest.raises(ConnectionResetError):
        verify_bag(Dropping())  # type: ignore[arg-type]


def test_restore_needs_an_empty_destination(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    with pytest.raises(FileExistsError):
        extract_bag(io.BytesIO(write_bag(tmp_path)), tmp_path)


# --- sampling ------------------------------------------------------------------------------


def test_sampling_verifies_a_share_and_counts_the_rest_as_skipped(tmp_path: Path) -> None:
    out = io.BytesIO()
    with BagWriter(out, name=NAME, info={}, created=CREATED) as writer:
        for i in range(200):
            writer.add_bytes(f"f{i:03d}.txt", f"file {i}\n".encode())
    data = out.getvalue()

    half = verify_bag(io.BytesIO(data), sample=0.5, seed=7)
    assert half.ok
    assert half.files_verified + half.files_skipped == 200
    assert 60 < half.files_verified < 140
    assert half == verify_bag(io.BytesIO(data), sample=0.5, seed=7)  # repeatable with a seed

    none = verify_bag(io.BytesIO(data), sample=0.0)
    assert (none.files_verified, none.files_skipped) == (0, 200)
    with pytest.raises(ValueError, match="sample"):
        verify_bag(io.BytesIO(data), sample=1.5)


# --- the writer's rules --------------------------------------------------------------------


@pytest.mark.parametrize("rel", ["../x", "/abs", "a//b", "a/./b", "a\\b", "", "a/"])
def test_unsafe_payload_paths_are_refused(rel: str) -> None:
    writer = BagWriter(io.BytesIO(), name=NAME, info={}, created=CREATED)
    with pytest.raises(UnsafeFileName):
        writer.add_bytes(rel, b"x")
    writer.close()


def test_clashing_paths_and_computed_labels_are_refused() -> None:
    with BagWriter(io.BytesIO(), name=NAME, info={}, created=CREATED) as writer:
        writer.add_bytes("a/b", b"x")
        for clash in ("a/b", "a", "a/b/c"):
            with pytest.raises(UnsafeFileName):
                writer.add_bytes(clash, b"y")
    for info in ({"Payload-Oxum": "1.1"}, {"bad label": "x\ny"}, {"A:B": "x"}, {" A": "x"}):
        with pytest.raises(ValueError, match="bag-info"):
            BagWriter(io.BytesIO(), name=NAME, info=info, created=CREATED)
    with pytest.raises(UnsafeFileName):
        BagWriter(io.BytesIO(), name="a/b", info={}, created=CREATED)


def test_manifest_paths_percent_encode_cr_lf_and_percent() -> None:
    name = "50% off\r\nline.txt"
    assert encode_path(name) == "50%25 off%0D%0Aline.txt"
    assert decode_path(encode_path(name)) == name
    assert decode_path("a%20b") == "a%20b"  # nothing else is decoded

    out = io.BytesIO()
    with BagWriter(out, name=NAME, info={}, created=CREATED) as writer:
        writer.add_bytes(name, b"x")
    assert verify_bag(io.BytesIO(out.getvalue())).ok


def test_a_source_that_shrinks_while_archived_fails_the_write(tmp_path: Path) -> None:
    out = io.BytesIO()
    writer = BagWriter(out, name=NAME, info={}, created=CREATED)
    with pytest.raises(Exception, match="discarded"):
        writer.add_stream("x.bin", io.BytesIO(b"short"), 100)
    with pytest.raises(RuntimeError):
        writer.close()


def test_sidecar_line_is_sha256sum_format() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert sidecar_line(digest.upper(), "a.tar") == f"{digest}  a.tar\n"
    with pytest.raises(UnsafeFileName):
        sidecar_line(digest, "dir/a.tar")
    with pytest.raises(ValueError, match="SHA-256"):
        sidecar_line("abc", "a.tar")


# --- standard tools ------------------------------------------------------------------------


def sh(args: list[str], cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, check=check, capture_output=True, text=True)


def _tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_tar_and_sha256sum_read_the_archive_without_this_service(
    tmp_path: Path, compression: str
) -> None:
    _tools("tar", "sha256sum", *(["zstd"] if compression == "zstd" else []))
    archive = tmp_path / f"{NAME}.tar{'.zst' if compression == 'zstd' else ''}"
    with archive.open("wb") as handle:
        hashing = HashingWriter(handle)
        write_bag(tmp_path, hashing, compression=compression)  # type: ignore[arg-type]
    sidecar = tmp_path / f"{archive.name}.sha256"
    sidecar.write_text(sidecar_line(hashing.hexdigest(), archive.name))

    sh(["sha256sum", "-c", sidecar.name], tmp_path)
    out = tmp_path / "by-hand"
    out.mkdir()
    flags = ["--zstd"] if compression == "zstd" else []
    sh(["tar", *flags, "-xf", str(archive), "-C", str(out)], tmp_path)
    bag = out / NAME
    checked = sh(["sha256sum", "-c", "manifest-sha256.txt"], bag)
    assert checked.stdout.count(": OK") == len(payload(tmp_path))
    sh(["sha256sum", "-c", "tagmanifest-sha256.txt"], bag)
    assert (bag / "data" / LONG).read_bytes() == b"{}"

    (bag / "data/works.json").write_bytes(b"changed")
    failed = sh(["sha256sum", "-c", "manifest-sha256.txt"], bag, check=False)
    assert failed.returncode != 0
    assert "data/works.json: FAILED" in failed.stdout


# --- through age ---------------------------------------------------------------------------


def test_writing_through_age_then_decrypting_gives_the_same_tar(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    plain = write_bag(tmp_path, compression="zstd")

    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                write_bag(tmp_path, pipe, compression="zstd")  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    encrypted = tmp_path / "archive.tar.zst.age"
    with os.fdopen(read_fd, "rb") as pipe, encrypted.open("wb") as out:
        pyrage.encrypt_io(pipe, out, [identity.to_public()])
    producer.join()
    assert not failure

    assert encrypted.read_bytes().startswith(b"age-encryption.org/v1")
    assert not verify_bag(encrypted.open("rb")).ok  # still encrypted: said so, no crash
    decrypted = io.BytesIO()
    with encrypted.open("rb") as source:
        pyrage.decrypt_io(source, decrypted, [identity])
    assert decrypted.getvalue() == plain
    assert verify_bag(io.BytesIO(decrypted.getvalue())).ok


def test_an_age_encrypted_archive_is_restored_by_hand_with_age_tar_and_sha256sum(
    tmp_path: Path,
) -> None:
    """Twenty years on, without this service: ``age -d``, ``tar``, ``sha256sum -c``."""
    _tools("age", "age-keygen", "tar", "zstd", "sha256sum")
    key = tmp_path / "publisher.key"
    sh(["age-keygen", "-o", str(key)], tmp_path)
    recipient = sh(["age-keygen", "-y", str(key)], tmp_path).stdout.strip()
    archive = tmp_path / f"{NAME}.tar.zst.age"
    with archive.open("wb") as out:
        hashing = HashingWriter(out)
        plain = io.BytesIO(write_bag(tmp_path, compression="zstd"))
        pyrage.encrypt_io(plain, hashing, [x25519.Recipient.from_str(recipient)])
    (tmp_path / f"{archive.name}.sha256").write_text(
        sidecar_line(hashing.hexdigest(), archive.name)
    )

    sh(["sha256sum", "-c", f"{archive.name}.sha256"], tmp_path)
    sh(["age", "-d", "-i", str(key), "-o", "archive.tar.zst", archive.name], tmp_path)
    out = tmp_path / "restored"
    out.mkdir()
    sh(["tar", "--zstd", "-xf", str(tmp_path / "archive.tar.zst"), "-C", str(out)], tmp_path)
    checked = sh(["sha256sum", "-c", "manifest-sha256.txt"], out / NAME)
    assert checked.stdout.count(": OK") == len(payload(tmp_path))

    other = tmp_path / "someone-else.key"
    sh(["age-keygen", "-o", str(other)], tmp_path)
    refused = sh(["age", "-d", "-i", str(other), archive.name], tmp_path, check=False)
    assert refused.returncode != 0 and "no identity matched" in refused.stderr
