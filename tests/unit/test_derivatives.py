"""Derivatives: an RGB JPEG cover at most N px long, made from the approved master."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from consonance_sftp.config.profiles import preset
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.derivatives import (
    Rendition,
    author_bios,
    jacket_copy,
    make_rendition,
    rendition_suffix,
    text_suffix,
    write_text,
)
from consonance_sftp.formats.preflight import preflight
from consonance_sftp.models import AssetKind, Contact, Contribution, MarketingText, Work
from tests.unit.test_preflight import make_image, make_pdf


def test_a_cmyk_tiff_master_becomes_a_small_rgb_jpeg(tmp_path: Path) -> None:
    master = make_image(tmp_path / "cover.tif", size=(2400, 3600), mode="CMYK", fmt="TIFF")
    spec = Rendition(format="JPEG", mode="RGB", max_long_side=1200, quality=85)
    out = make_rendition(master, tmp_path / "out" / "cover.jpg", spec)
    assert (out.width, out.height, out.format, out.mode) == (800, 1200, "JPEG", "RGB")
    assert out.sha256 == hashlib.sha256(out.path.read_bytes()).hexdigest()
    assert out.size == out.path.stat().st_size
    assert out.master_sha256 == hashlib.sha256(master.read_bytes()).hexdigest()
    with Image.open(out.path) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (800, 1200))
    assert not list((tmp_path / "out").glob("*.partial"))
    # The derivative passes the partner's preflight that the master would fail.
    titleleaf = preset("titleleaf").preflight
    assert not preflight(master, AssetKind.COVER_IMAGE, titleleaf).ok
    assert preflight(out.path, AssetKind.COVER_IMAGE, titleleaf).ok


def test_the_profile_rendition_applies_and_is_deterministic(tmp_path: Path) -> None:
    master = make_image(tmp_path / "m.jpg", size=(1800, 1200))
    google = preset(
        "google_play_books", values={"collection": "c"}, cover_rendition={"max_long_side": 900}
    )
    spec = google.cover_rendition
    assert spec is not None and (spec.format, spec.mode) == ("JPEG", "RGB")
    one = make_rendition(master, tmp_path / ("a" + rendition_suffix(spec)), spec)
    two = make_rendition(master, tmp_path / ("b" + rendition_suffix(spec)), spec)
    assert (one.width, one.height) == (900, 600)
    assert one.sha256 == two.sha256


def test_small_masters_are_not_enlarged_and_transparency_is_flattened(tmp_path: Path) -> None:
    master = tmp_path / "logo.png"
    Image.new("RGBA", (300, 200), (0, 0, 0, 0)).save(master)
    out = make_rendition(master, tmp_path / "logo.jpg", Rendition(max_long_side=1000))
    assert (out.width, out.height) == (300, 200)
    with Image.open(out.path) as image:
        assert image.getpixel((10, 10)) == (255, 255, 255)


def test_an_embedded_cmyk_profile_is_used(tmp_path: Path) -> None:
    # An sRGB profile stands in for a CMYK one only to prove the ICC path runs without error.
    master = make_image(tmp_path / "c.jpg", size=(100, 100), mode="CMYK")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with Image.open(master) as image:
        image.save(tmp_path / "icc.jpg", "JPEG", icc_profile=icc)
    out = make_rendition(tmp_path / "icc.jpg", tmp_path / "o.jpg", Rendition())
    assert out.mode == "RGB"


def test_a_master_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "cover.jpg")
    with pytest.raises(ValidationFailed, match=r"cannot make a rendition of cover\.jpg"):
        make_rendition(pdf, tmp_path / "o.jpg", Rendition())


# --- text renditions -----------------------------------------------------------------------

TODAY = date(2026, 6, 1)


def text(
    id: int, variant: str, body: str, *, status: str = "APPROVED", **kw: object
) -> MarketingText:
    return MarketingText(id=id, variant=variant, text=body, approval_status=status, **kw)


def person(id: int, name: str, bio: str | None) -> Contact:
    return Contact(id=id, name=name, biographical_note=bio)


def test_jacket_copy_is_the_approved_released_description() -> None:
    work = Work(
        id=1,
        title="T",
        marketing_texts=(
            text(1, "SHORT_DESCRIPTION", "Short."),
            text(2, "MAIN_DESCRIPTION", "<p>Draft</p>", status="DRAFT"),
            text(3, "LONG_DESCRIPTION", "Long, later.", embargo_from=date(2026, 7, 1)),
            text(4, "MAIN_DESCRIPTION", "<p>Main</p>", text_format="05", product_ids=(9,)),
        ),
    )
    chosen = jacket_copy(work, on=TODAY, product_id=9)
    assert chosen is not None and chosen.id == 4 and text_suffix(chosen) == ".html"
    other = jacket_copy(work, on=TODAY, product_id=8)  # text 4 is for product 9 only
    assert other is not None and other.id == 1 and text_suffix(other) == ".txt"
    after = jacket_copy(work, on=date(2026, 7, 2), product_id=8)
    assert after is not None and after.id == 3  # the embargo has passed
    assert jacket_copy(Work(id=2, title="U"), on=TODAY) is None


def test_author_bios_follow_the_contributor_order() -> None:
    work = Work(
        id=1,
        title="T",
        contributions=(
            Contribution(
                id=2, contributor=person(2, "B", "B's life."), role="A01", sequence_number=2
            ),
            Contribution(
                id=1, contributor=person(1, "A", "A's life."), role="A01", sequence_number=1
            ),
            Contribution(
                id=3, contributor=person(3, "Ed", "Edits."), role="B01", sequence_number=3
            ),
            Contribution(id=4, contributor=person(4, "C", None), role="A01", sequence_number=4),
        ),
    )
    assert [(c.contributor.name, bio) for c, bio in author_bios(work, on=TODAY)] == [
        ("A", "A's life."),
        ("B", "B's life."),
    ]
    noted = Work(
        id=1,
        title="T",
        contributions=work.contributions,
        marketing_texts=(text(5, "BIOGRAPHICAL_NOTE", "Both of them."),),
    )
    assert [(c.contributor.name, bio) for c, bio in author_bios(noted, on=TODAY)] == [
        ("A", "Both of them.")
    ]


def test_written_texts_pass_preflight(tmp_path: Path) -> None:
    written = write_text("A gripping tale.", tmp_path / "copy.txt")
    assert written.path.read_text(encoding="utf-8") == "A gripping tale.\n"
    assert written.sha256 == hashlib.sha256(written.path.read_bytes()).hexdigest()
    assert preflight(written.path, AssetKind.JACKET_COPY).ok
