"""Incremental bags (issue 17): files listed in the manifest but carried by an earlier archive,
named in fetch.txt (RFC 8493 §2.2.3). The validator reports them as referenced, not missing;
the restore completes the bag from the archive each one names, re-hashing every fetched file
against the incremental bag's own manifest."""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard

from consonance_sftp.formats.archive import BagWriter, extract_bag, verify_bag
from consonance_sftp.formats.archive.rfc8493 import FetchEntry, bag_url, parse_fetch

CREATED = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
COVER = random.Random(3).randbytes(200_000)
INTERIOR = random.Random(4).randbytes(300_000)


def base_bag(*, cover: bytes = COVER) -> bytes:
    out = io.BytesIO()
    with BagWriter(out, name="nightly-1", info={}, compression="zstd", created=CREATED) as bag:
        bag.add_bytes("metadata/works.json", b"[1]")
        bag.add_bytes("assets/1/cover.jpg", cover)
        bag.add_bytes("assets/1/interior.pdf", INTERIOR)
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def incremental_bag(*, extra_listed: bool = False) -> bytes:
    out = io.BytesIO()
    with BagWriter(out, name="nightly-2", info={}, compression="zstd", created=CREATED) as bag:
        bag.add_bytes("metadata/works.json", b"[1, 2]")
        bag.add_reference(
            "assets/1/cover.jpg",
            sha256=sha(COVER),
            size=len(COVER),
            url=bag_url("nightly-1", "data/assets/1/cover.jpg"),
        )
        # The same bytes under another name in this bag: fetched from the base's path.
        bag.add_reference(
            "assets/1/interior-v2.pdf",
            sha256=sha(INTERIOR),
            size=len(INTERIOR),
            url=bag_url("nightly-1", "data/assets/1/interior.pdf"),
        )
        if extra_listed:
            bag.add_bytes("assets/1/new.epub", b"epub")
    return out.getvalue()


def members(archive: bytes) -> dict[str, bytes]:
    plain = io.BytesIO(zstandard.decompress(archive, 1 << 26))
    with tarfile.open(fileobj=plain) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


def opener(archives: dict[str, bytes]):  # type: ignore[no-untyped-def]
    opened: list[str] = []

    @contextlib.contextmanager
    def open_bag(name: str) -> Iterator[BinaryIO]:
        opened.append(name)
        if name not in archives:
            raise FileNotFoundError(f"no archive {name}")
        yield io.BytesIO(archives[name])

    return open_bag, opened


def test_an_incremental_bag_is_valid_and_names_what_it_refers_to() -> None:
    archive = incremental_bag()
    inside = members(archive)
    assert "nightly-2/data/assets/1/cover.jpg" not in inside
    fetch, problems = parse_fetch(inside["nightly-2/fetch.txt"].decode())
    assert problems == []
    assert fetch == [
        FetchEntry(
            "bag://nightly-1/data/assets/1/cover.jpg", len(COVER), "data/assets/1/cover.jpg"
        ),
        FetchEntry(
            "bag://nightly-1/data/assets/1/interior.pdf",
            len(INTERIOR),
            "data/assets/1/interior-v2.pdf",
        ),
    ]
    manifest = inside["nightly-2/manifest-sha256.txt"].decode()
    assert f"{sha(COVER)}  data/assets/1/cover.jpg\n" in manifest
    assert "fetch.txt" in inside["nightly-2/tagmanifest-sha256.txt"].decode()

    report = verify_bag(io.BytesIO(archive))

    assert report.ok, report.problems
    assert not report.complete
    assert [r.path for r in report.referenced] == [
        "data/assets/1/cover.jpg",
        "data/assets/1/interior-v2.pdf",
    ]
    # Payload-Oxum counts the complete payload, carried and referenced.
    oxum = dict(report.info)["Payload-Oxum"]
    assert oxum == f"{6 + len(COVER) + len(INTERIOR)}.3"
    assert report.files_verified == 1 and report.payload_files == 1


def test_a_manifest_file_neither_carried_nor_in_fetch_txt_is_missing() -> None:
    archive = incremental_bag()
    inside = members(archive)
    manifest = inside["nightly-2/manifest-sha256.txt"].decode()
    rewritten = _rebuild(
        inside,
        manifest=manifest + f"{sha(b'x')}  data/assets/1/lost.pdf\n",
    )
    report = verify_bag(io.BytesIO(rewritten))
    missing = [p.path for p in report.problems if p.kind == "missing"]
    assert missing == ["data/assets/1/lost.pdf"]
    assert len(report.referenced) == 2


def test_a_fetch_line_the_manifest_does_not_list_is_refused() -> None:
    inside = members(incremental_bag())
    fetch = inside["nightly-2/fetch.txt"].decode()
    rewritten = _rebuild(
        inside, fetch=fetch + "bag://nightly-1/data/x 1 data/assets/1/unlisted.pdf\n"
    )
    report = verify_bag(io.BytesIO(rewritten))
    assert any(
        p.kind == "bad_tag_file" and p.path == "fetch.txt" and "unlisted.pdf" in p.message
        for p in report.problems
    ), report.problems


def test_the_restore_completes_the_tree_from_the_base(tmp_path: Path) -> None:
    open_bag, opened = opener({"nightly-1": base_bag()})

    report = extract_bag(io.BytesIO(incremental_bag()), tmp_path / "out", open_bag=open_bag)

    assert report.ok and report.complete, report.problems
    assert opened == ["nightly-1"]  # one pass over the base for both files
    assert (tmp_path / "out/data/assets/1/cover.jpg").read_bytes() == COVER
    assert (tmp_path / "out/data/assets/1/interior-v2.pdf").read_bytes() == INTERIOR
    assert (tmp_path / "out/data/metadata/works.json").read_bytes() == b"[1, 2]"
    assert report.files_fetched == 2 and report.files_verified == 3
    assert not (tmp_path / "out/.bag-unverified").exists()


def test_a_fetched_file_that_does_not_match_is_named_and_not_restored(tmp_path: Path) -> None:
    changed = bytearray(COVER)
    changed[1000] ^= 0xFF
    open_bag, _ = opener({"nightly-1": base_bag(cover=bytes(changed))})

    report = extract_bag(io.BytesIO(incremental_bag()), tmp_path / "out", open_bag=open_bag)

    assert not report.ok
    (bad,) = report.problems
    assert bad.kind == "corrupted" and bad.path == "data/assets/1/cover.jpg"
    assert bad.expected == sha(COVER)
    assert not (tmp_path / "out/data/assets/1/cover.jpg").exists()
    assert (tmp_path / "out/data/assets/1/interior-v2.pdf").read_bytes() == INTERIOR


def test_a_base_that_is_gone_names_every_file_it_held(tmp_path: Path) -> None:
    open_bag, _ = opener({})

    report = extract_bag(io.BytesIO(incremental_bag()), tmp_path / "out", open_bag=open_bag)

    assert not report.ok and report.files_fetched == 0
    assert sorted(p.path for p in report.problems if p.kind == "missing") == [
        "data/assets/1/cover.jpg",
        "data/assets/1/interior-v2.pdf",
    ]
    assert any("nightly-1" in p.message for p in report.problems if p.kind == "unreadable")


@pytest.mark.parametrize("url", ["nightly-1/data/x", "bag://nightly 1/x"])
def test_a_reference_needs_an_absolute_url_without_spaces(url: str) -> None:
    with (
        pytest.raises(ValueError, match="absolute URL"),
        BagWriter(io.BytesIO(), name="b", info={}, created=CREATED) as bag,
    ):
        bag.add_reference("a", sha256=sha(b"a"), size=1, url=url)


def _rebuild(inside: dict[str, bytes], **tags: str) -> bytes:
    """The bag's tar again with some tag files replaced (the tag manifest re-made)."""
    files = {name.split("/", 1)[1]: data for name, data in inside.items()}
    for stem, text in tags.items():
        files[f"{stem}.txt" if stem == "fetch" else "manifest-sha256.txt"] = text.encode()
    files["tagmanifest-sha256.txt"] = "".join(
        f"{sha(data)}  {name}\n"
        for name, data in files.items()
        if not name.startswith("data/") and name != "tagmanifest-sha256.txt"
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"nightly-2/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


# The loop docs/how-to/archive.md gives for completing an incremental bag by hand.
BY_HAND = """
while read -r url length path; do
  member=${url#bag://}
  mkdir -p "$(dirname "$path")"
  cp "../$member" "$path"
done < fetch.txt
sha256sum -c manifest-sha256.txt
"""


def test_an_incremental_bag_is_completed_by_hand_with_tar_and_sha256sum(tmp_path: Path) -> None:
    for tool in ("tar", "zstd", "sha256sum", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    (tmp_path / "nightly-1.tar.zst").write_bytes(base_bag())
    (tmp_path / "nightly-2.tar.zst").write_bytes(incremental_bag())
    for name in ("nightly-1", "nightly-2"):
        subprocess.run(["tar", "--zstd", "-xf", f"{name}.tar.zst"], cwd=tmp_path, check=True)
    bag = tmp_path / "nightly-2"
    assert not (bag / "data/assets/1/cover.jpg").exists()

    done = subprocess.run(["bash", "-c", BY_HAND], cwd=bag, capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "data/assets/1/interior-v2.pdf: OK" in done.stdout
    assert (bag / "data/assets/1/cover.jpg").read_bytes() == COVER
    # and a damaged base is caught by sha256sum, not trusted
    (tmp_path / "nightly-1/data/assets/1/cover.jpg").write_bytes(b"damaged")
    for path in ("data/assets/1/cover.jpg", "data/assets/1/interior-v2.pdf"):
        (bag / path).unlink()
    done = subprocess.run(["bash", "-c", BY_HAND], cwd=bag, capture_output=True, text=True)
    assert done.returncode != 0 and "data/assets/1/cover.jpg: FAILED" in done.stdout
