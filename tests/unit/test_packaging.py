"""Package plans: safe names, manifests whose checksums match, zips that round-trip, markers."""

from __future__ import annotations

import hashlib
import tracemalloc
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consonance_sftp.config.profiles import preset
from consonance_sftp.errors import UnsafeFileName, ValidationFailed
from consonance_sftp.formats.packaging import (
    SourceAsset,
    parse_manifest,
    plan_package,
    render_name,
    write_zip,
)
from consonance_sftp.models import AssetKind
from tests.unit.test_preflight import make_big_wav, make_image, make_mp3, make_pdf

ISBN = "9781234567897"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def assets(tmp_path: Path) -> list[SourceAsset]:
    return [
        SourceAsset(kind=AssetKind.INTERIOR_PDF, path=make_pdf(tmp_path / "i.pdf", pages=12)),
        SourceAsset(kind=AssetKind.COVER_PDF, path=make_pdf(tmp_path / "c.pdf", pages=1)),
        SourceAsset(kind=AssetKind.COVER_IMAGE, path=make_image(tmp_path / "front.jpg")),
        SourceAsset(kind=AssetKind.AUDIO, path=make_mp3(tmp_path / "a1.mp3", frames=50)),
        SourceAsset(kind=AssetKind.AUDIO, path=make_mp3(tmp_path / "a2.mp3", frames=60)),
    ]


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("../../etc/passwd", "may not contain '/'"),
        ("..", "path component '..' is not allowed"),
        ("a\\b", "may not contain '/'"),
        ("97812\n34", "characters that are not allowed: '\\n'"),
        ("978&co", "characters that are not allowed: '&'"),
        ("x<y>", "characters that are not allowed: '<', '>'"),
    ],
)
def test_unsafe_values_are_refused_naming_template_and_value(value: str, reason: str) -> None:
    with pytest.raises(UnsafeFileName) as caught:
        render_name("{isbn13}", {"isbn13": value})
    error = caught.value
    assert "'{isbn13}'" in error.message
    assert value in error.message or repr(value)[1:-1] in error.message
    assert any(reason in r for r in [error.message, *error.reasons]), error


def test_unsafe_templates_are_refused() -> None:
    with pytest.raises(UnsafeFileName, match="absolute"):
        render_name("/etc/{isbn13}", {"isbn13": ISBN})
    with pytest.raises(UnsafeFileName, match="placeholder"):
        render_name("{isbn13.__class__}", {"isbn13": ISBN})
    with pytest.raises(UnsafeFileName, match="conversion"):
        render_name("{isbn13!r}", {"isbn13": ISBN})
    with pytest.raises(ValidationFailed, match=r"uses \{collection\}, which has no value"):
        render_name("ebooks/{collection}", {"isbn13": ISBN})
    assert render_name("{isbn13}_{track:03}.mp3", {"isbn13": ISBN, "track": 7}) == (
        f"{ISBN}_007.mp3"
    )
    assert render_name("{timestamp:%d%m%Y%H%M%S}.COT", {"timestamp": NOW}) == "04032026050607.COT"


# --- plans ---------------------------------------------------------------------------------


def test_plan_lists_exact_files_and_manifest_checksums_match(
    assets: list[SourceAsset],
) -> None:
    plan = plan_package(preset("generic"), assets, values={"isbn13": ISBN}, now=NOW)
    roles = [f.role for f in plan.files]
    assert roles == ["asset"] * 5 + ["manifest", "done_marker"]
    for planned, source in zip(plan.files, assets, strict=False):
        assert planned.source == source.path
        assert planned.size == source.path.stat().st_size
        assert planned.sha256 == sha(source.path)
    manifest = plan.files[5]
    assert manifest.content is not None
    listed = parse_manifest(manifest.content)
    assert listed == {f.remote_path: (f.size, f.sha256) for f in plan.files[:5]}
    assert manifest.sha256 == hashlib.sha256(manifest.content).hexdigest()
    marker = plan.files[-1]
    assert marker.remote_path == f"{ISBN}/{ISBN}.done"
    assert marker.content is not None
    lines = marker.content.decode().splitlines()
    assert lines[-1] == f"{manifest.sha256}  {manifest.remote_path}"
    assert len(lines) == 6
    # The dry-run view shows every path, size and checksum.
    text = "\n".join(plan.lines())
    assert all(f.remote_path in text and f.sha256 in text for f in plan.files)
    assert plan.total_bytes == sum(f.size for f in plan.files)


def test_csv_manifest(assets: list[SourceAsset]) -> None:
    profile = preset("generic", manifest="csv", done_marker=None)
    plan = plan_package(profile, assets, values={"isbn13": ISBN}, now=NOW)
    manifest = plan.files[-1]
    assert manifest.remote_path == f"{ISBN}/{ISBN}_manifest.csv"
    assert manifest.content is not None
    assert manifest.content.startswith(b"name,kind,size,sha256\r\n")
    assert parse_manifest(manifest.content) == {
        f.remote_path: (f.size, sha(f.source)) for f in plan.files[:-1] if f.source
    }


def test_zip_package_round_trips(tmp_path: Path, assets: list[SourceAsset]) -> None:
    profile = preset("generic", packaging="zip", zip_compression="deflated")
    work = tmp_path / "build"
    plan = plan_package(profile, assets, values={"isbn13": ISBN}, now=NOW, work_dir=work)
    package, marker = plan.files
    assert (package.role, marker.role) == ("zip", "done_marker")
    assert package.remote_path == f"{ISBN}/{ISBN}.zip"
    assert package.source is not None and package.source.parent == work
    assert package.size == package.source.stat().st_size
    assert package.sha256 == sha(package.source)
    with zipfile.ZipFile(package.source) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        # Member paths are relative to the zip, which sits in the profile's folder.
        assert names == [
            f"{ISBN}_interior.pdf",
            f"{ISBN}_cover.pdf",
            f"{ISBN}_frontcover.jpg",
            f"{ISBN}_001.mp3",
            f"{ISBN}_002.mp3",
            f"{ISBN}_manifest.json",
        ]
        for asset, name in zip(assets, names, strict=False):
            assert archive.read(name) == asset.path.read_bytes()
        listed = parse_manifest(archive.read(names[-1]))
        for name in names[:-1]:
            assert listed[name] == (
                len(archive.read(name)),
                hashlib.sha256(archive.read(name)).hexdigest(),
            )
    # A dry run (no work folder) measures the identical zip without writing it.
    dry = plan_package(profile, assets, values={"isbn13": ISBN}, now=NOW)
    assert dry.files[0].source is None
    assert (dry.files[0].size, dry.files[0].sha256) == (package.size, package.sha256)
    again = write_zip(dry.files[0].members, tmp_path / "later.zip", compression="deflated")
    assert again == (package.size, package.sha256)


def test_kinds_outside_the_profile_are_left_out(assets: list[SourceAsset]) -> None:
    printer = preset("print_on_demand")
    plan = plan_package(printer, assets, values={"isbn13": ISBN}, now=NOW)
    assert [f.kind for f in plan.assets] == [AssetKind.INTERIOR_PDF, AssetKind.COVER_PDF]
    assert {a.kind for a, _ in plan.excluded} == {AssetKind.COVER_IMAGE, AssetKind.AUDIO}
    assert plan.as_dict()["excluded"]


def test_an_incomplete_set_is_refused(assets: list[SourceAsset]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        plan_package(preset("print_on_demand"), assets[2:], values={"isbn13": ISBN}, now=NOW)
    assert caught.value.reasons == ["no approved interior_pdf file", "no approved cover_pdf file"]


def test_two_files_under_one_name_are_refused(assets: list[SourceAsset]) -> None:
    profile = preset("generic", names={"audio": "{isbn13}.mp3"})
    with pytest.raises(ValidationFailed, match="two files would be sent as"):
        plan_package(profile, assets, values={"isbn13": ISBN}, now=NOW)


def test_a_zero_byte_asset_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "e.pdf"
    empty.touch()
    with pytest.raises(ValidationFailed, match="zero-byte"):
        plan_package(
            preset("generic"),
            [SourceAsset(kind=AssetKind.INTERIOR_PDF, path=empty)],
            values={"isbn13": ISBN},
            now=NOW,
        )


@pytest.mark.parametrize("isbn", ["../../x", "9781234567890", "978-1-2345-6789-7", 9781234567897])
def test_a_wrong_isbn_never_reaches_a_path(assets: list[SourceAsset], isbn: object) -> None:
    with pytest.raises(ValidationFailed, match="is not a valid ISBN-13"):
        plan_package(preset("generic"), assets, values={"isbn13": isbn}, now=NOW)


@pytest.mark.slow
def test_a_2gib_audio_package_is_planned_and_zipped_in_flat_memory(tmp_path: Path) -> None:
    part = 1100 * 1024 * 1024
    tracks = [
        SourceAsset(kind=AssetKind.AUDIO, path=make_big_wav(tmp_path / f"t{i}.wav", part))
        for i in (1, 2)
    ]
    tracemalloc.start()
    loose = plan_package(preset("generic"), tracks, values={"isbn13": ISBN}, now=NOW)
    zipped = plan_package(
        preset("generic", packaging="zip", done_marker=None),
        tracks,
        values={"isbn13": ISBN},
        now=NOW,
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert loose.total_bytes > 2 * 1024**3
    assert [f.remote_path for f in loose.assets] == [
        f"{ISBN}/{ISBN}_001.wav",
        f"{ISBN}/{ISBN}_002.wav",
    ]
    # Members stored: the zip is the data plus headers (zip64 for members over 2 GiB).
    assert zipped.files[0].size > loose.assets[0].size + loose.assets[1].size
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"


def test_materialize_backs_every_file_with_a_local_file(
    tmp_path: Path, assets: list[SourceAsset]
) -> None:
    profile = preset("generic", packaging="zip")
    dry = plan_package(profile, assets, values={"isbn13": ISBN}, now=NOW)
    assert [f.source for f in dry.files] == [None, None]
    ready = dry.materialize(tmp_path / "out")
    for planned in ready.files:
        assert planned.source is not None
        assert (planned.size, planned.sha256) == (
            planned.source.stat().st_size,
            sha(planned.source),
        )
    keys = ready.delivery_keys("printer", "/in")
    assert [k.remote_path for k in keys] == [f"/in/{ISBN}/{ISBN}.zip", f"/in/{ISBN}/{ISBN}.done"]
    assert {k.partner for k in keys} == {"printer"}
    assert [k.sha256 for k in keys] == [f.sha256 for f in dry.files]


def test_zip64_structures_round_trip(
    tmp_path: Path, assets: list[SourceAsset], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lowering zipfile's 2 GiB threshold makes the writer emit the zip64 headers it uses for
    # multi-GB audio, on small files that can be written and read back in a unit test.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    plan = plan_package(
        preset("generic", packaging="zip"),
        assets,
        values={"isbn13": ISBN},
        now=NOW,
        work_dir=tmp_path,
    )
    package = plan.files[0]
    assert package.source is not None
    monkeypatch.undo()
    data = package.source.read_bytes()
    assert b"PK\x06\x06" in data  # the zip64 end-of-central-directory record
    with zipfile.ZipFile(package.source) as archive:
        assert archive.testzip() is None
        for member in package.members:
            content = archive.read(member.remote_path)
            assert hashlib.sha256(content).hexdigest() == member.sha256


def test_a_source_changed_after_planning_is_not_zipped(
    tmp_path: Path, assets: list[SourceAsset]
) -> None:
    dry = plan_package(preset("generic", packaging="zip"), assets, values={"isbn13": ISBN}, now=NOW)
    data = assets[0].path.read_bytes()
    assets[0].path.write_bytes(data.replace(b"%%EOF", b"%%EOX"))  # same size, other bytes
    with pytest.raises(ValidationFailed, match="the source changed since the package was planned"):
        dry.materialize(tmp_path / "out")
