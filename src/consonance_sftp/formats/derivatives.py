"""Derived renditions of approved masters: images (a cover as an RGB JPEG at most N px long)
and text files made from Consonance records (jacket copy, author bios) for marketing packages.

A partner's profile can ask for a rendition instead of the master (``cover_rendition``). The
derivative is made from the approved master only, written next to nothing else (the caller names
the destination, normally under the state folder), and returned with its SHA-256 and the
master's, so the flow can record it as a derivative of that master version and send it.

Colour: CMYK masters with an embedded ICC profile are converted to sRGB through LittleCMS
(Pillow's ``ImageCms``); without a profile Pillow's plain conversion is used. Transparency is
flattened onto white. JPEG masters are decoded at a reduced scale when only a small rendition
is wanted (``Image.draft``), which keeps memory low for print-resolution covers.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageCms, UnidentifiedImageError

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.models import Contribution, MarketingText, Work

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif"}


class RenditionSpec(Protocol):
    """What to make (config's ``ImageRendition`` has these attributes)."""

    @property
    def format(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def max_long_side(self) -> int | None: ...
    @property
    def quality(self) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendition:
    """A plain rendition spec, for callers without a config profile."""

    format: str = "JPEG"
    mode: str = "RGB"
    max_long_side: int | None = None
    quality: int = 90


@dataclass(frozen=True, slots=True, kw_only=True)
class Derivative:
    """A derived file and what it was made from."""

    path: Path
    size: int
    sha256: str
    width: int
    height: int
    format: str
    mode: str
    master_sha256: str


def make_rendition(master: Path, dest: Path, spec: RenditionSpec) -> Derivative:
    """Write ``spec``'s rendition of ``master`` to ``dest`` (atomically) and describe it.

    Raises ``ValidationFailed`` when the master is not a readable image.
    """
    if spec.format not in EXTENSIONS:
        raise ValidationFailed(f"unsupported rendition format {spec.format!r}")
    _master_size, master_sha = sha256_file(master)
    try:
        with Image.open(master) as image:
            if spec.max_long_side and image.format == "JPEG":
                # DCT scaling: decode at 1/2, 1/4 or 1/8 when that still covers the target.
                scale = spec.max_long_side / max(image.size)
                if scale < 1:
                    target = (int(image.size[0] * scale) + 1, int(image.size[1] * scale) + 1)
                    image.draft(image.mode, target)
            image.load()
            converted = _to_mode(image, spec.mode)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValidationFailed(
            f"cannot make a rendition of {master.name}", [f"not a readable image: {exc}"]
        ) from exc
    if spec.max_long_side and max(converted.size) > spec.max_long_side:
        converted.thumbnail((spec.max_long_side, spec.max_long_side), Image.Resampling.LANCZOS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    options: dict[str, object] = {}
    if spec.format == "JPEG":
        options = {"quality": spec.quality, "subsampling": 0 if spec.quality >= 90 else 2}
    converted.save(partial, spec.format, **options)
    os.replace(partial, dest)
    size, digest = sha256_file(dest)
    return Derivative(
        path=dest,
        size=size,
        sha256=digest,
        width=converted.size[0],
        height=converted.size[1],
        format=spec.format,
        mode=converted.mode,
        master_sha256=master_sha,
    )


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    if image.mode == mode:
        return image.copy()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat if mode == "RGB" else flat.convert(mode)
    icc = image.info.get("icc_profile")
    if image.mode == "CMYK" and mode == "RGB" and icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            result = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            if result is not None:
                return result
        except ImageCms.PyCMSError:
            pass  # A broken embedded profile: fall back to the plain conversion below.
    return image.convert(mode)


def rendition_suffix(spec: RenditionSpec) -> str:
    """File extension of a rendition, e.g. ``.jpg``."""
    return EXTENSIONS[spec.format]


# --- text renditions -----------------------------------------------------------------------

JACKET_VARIANTS = ("MAIN_DESCRIPTION", "LONG_DESCRIPTION", "SHORT_DESCRIPTION")
"""Marketing-text variants used as jacket copy, most preferred first."""
AUTHOR_ROLES = ("A01", "A02", "A03", "A12", "B06")
"""ONIX list 17 roles whose biographies go out: author, ghost, screenplay, illustrator,
translator."""
HTML_FORMATS = {"02", "05"}  # ONIX list 34: HTML, XHTML


@dataclass(frozen=True, slots=True, kw_only=True)
class TextFile:
    """A text asset written for a package."""

    path: Path
    size: int
    sha256: str


def _released(text: MarketingText, product_id: int | None, on: date) -> bool:
    return (
        (text.approval_status or "").upper() == "APPROVED"
        and (not text.product_ids or product_id is None or product_id in text.product_ids)
        and (text.embargo_from is None or text.embargo_from <= on)
    )


def jacket_copy(work: Work, *, on: date, product_id: int | None = None) -> MarketingText | None:
    """The approved, released description to send as jacket copy, by variant preference."""
    candidates = [t for t in work.marketing_texts if _released(t, product_id, on) and t.text]
    for variant in JACKET_VARIANTS:
        for text in candidates:
            if text.variant == variant:
                return text
    return None


def author_bios(
    work: Work, *, on: date, product_id: int | None = None
) -> list[tuple[Contribution, str]]:
    """Contributors' biographies in sequence order (author-like roles only, with a bio).

    An approved ``BIOGRAPHICAL_NOTE`` marketing text, when there is one, stands for the whole
    work and is returned alone, attached to the first contributor.
    """
    people = sorted(
        (
            c
            for c in work.contributions
            if c.role in AUTHOR_ROLES
            and (not c.product_ids or product_id is None or product_id in c.product_ids)
        ),
        key=lambda c: c.sequence_number,
    )
    note = next(
        (
            t
            for t in work.marketing_texts
            if t.variant == "BIOGRAPHICAL_NOTE" and _released(t, product_id, on) and t.text
        ),
        None,
    )
    if note is not None and people:
        return [(people[0], note.text)]
    return [(c, c.contributor.biographical_note) for c in people if c.contributor.biographical_note]


def write_text(text: str, dest: Path) -> TextFile:
    """Write UTF-8 text atomically (a trailing newline added) and describe the file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_text(text.rstrip("\n") + "\n", encoding="utf-8", newline="\n")
    os.replace(partial, dest)
    size, digest = sha256_file(dest)
    return TextFile(path=dest, size=size, sha256=digest)


def text_suffix(text: MarketingText) -> str:
    """``.html`` for (X)HTML marketing texts, ``.txt`` otherwise."""
    return ".html" if text.text_format in HTML_FORMATS else ".txt"
