"""Derivatives: an RGB JPEG cover at most N px long, made from the approved master."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms

from consonance_sftp.config.profiles import preset
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.derivatives import Rendition, make_rendition, rendition_suffix
from consonance_sftp.formats.preflight import preflight
from consonance_sftp.models import AssetKind
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
