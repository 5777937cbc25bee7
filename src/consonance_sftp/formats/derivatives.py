"""Derived renditions of approved masters, e.g. a cover as an RGB JPEG at most N px long.

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
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageCms, UnidentifiedImageError

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.packaging import sha256_file

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
