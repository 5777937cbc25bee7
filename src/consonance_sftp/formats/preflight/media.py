"""Image and audio preflight: format, pixel size and colour mode; codec, bitrate, sample rate.

Pillow opens an image lazily (the header only) and mutagen reads an audio file's headers and
tags by seeking, so multi-GB audio masters are checked in constant memory.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import mutagen
from mutagen.mp3 import MP3, BitrateMode
from PIL import Image, UnidentifiedImageError

LOSSY = {"mp3", "m4a", "aac"}


def check_image(
    path: Path,
    *,
    formats: Sequence[str],
    modes: Sequence[str],
    min_px: int | None,
    max_px: int | None,
    notes: list[str],
) -> list[str]:
    """Problems with an image (empty when it passes); what was checked goes to ``notes``."""
    problems: list[str] = []
    try:
        with warnings.catch_warnings():
            # Only the header is read (pixels are never decoded here), so a print-resolution
            # master above Pillow's decompression-bomb threshold is no danger to preflight.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                fmt, mode, (width, height) = image.format or "?", image.mode, image.size
                if fmt == "PNG":
                    # PNG chunk CRCs catch a damaged file without decoding the pixels.
                    image.verify()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        return [f"not a readable image: {exc}"]
    except (OSError, SyntaxError, ValueError) as exc:
        return [f"damaged image: {exc}"]
    notes.append(f"{fmt} {width}x{height} {mode}")
    if fmt not in formats:
        problems.append(f"image format {fmt} is not accepted; expected {', '.join(formats)}")
    if mode not in modes:
        problems.append(f"colour mode {mode} is not accepted; expected {', '.join(modes)}")
    short, long = min(width, height), max(width, height)
    if min_px is not None and short < min_px:
        problems.append(
            f"{width}x{height} px is below the minimum: the short side must be at least {min_px} px"
        )
    if max_px is not None and long > max_px:
        problems.append(f"{width}x{height} px is above the maximum of {max_px} px on the long side")
    if fmt == "JPEG" and not _jpeg_complete(path):
        problems.append("truncated JPEG: no end-of-image marker")
    return problems


def _jpeg_complete(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 1024))
        return b"\xff\xd9" in handle.read()


def check_audio(
    path: Path,
    found: str,
    *,
    formats: Sequence[str],
    min_kbps_mono: int | None,
    min_kbps_stereo: int | None,
    min_sample_rate: int | None,
    min_bit_depth: int | None,
    cbr: bool,
    notes: list[str],
) -> list[str]:
    """Problems with an audio file (empty when it passes); what was checked goes to ``notes``."""
    fmt = {"mp4": "m4a"}.get(found, found)
    if fmt not in {"mp3", "m4a", "aac", "flac", "wav"}:
        return [f"not an audio file (content is {found.upper()})"]
    problems: list[str] = []
    if fmt not in formats:
        problems.append(f"audio format {fmt} is not accepted; expected {', '.join(formats)}")
    try:
        audio = mutagen.File(path)
    except mutagen.MutagenError as exc:
        return [*problems, f"the {fmt} file cannot be read: {exc}"]
    if audio is None or audio.info is None:
        return [*problems, f"the {fmt} file has no readable audio stream"]
    info = audio.info
    rate = int(getattr(info, "sample_rate", 0) or 0)
    channels = int(getattr(info, "channels", 0) or 0)
    kbps = int(getattr(info, "bitrate", 0) or 0) // 1000
    notes.append(f"{fmt} {kbps} kbps {rate} Hz {channels} ch {getattr(info, 'length', 0):.0f} s")
    if min_sample_rate is not None and rate < min_sample_rate:
        problems.append(f"sample rate {rate} Hz is below the required {min_sample_rate} Hz")
    bits = int(getattr(info, "bits_per_sample", 0) or 0)
    if fmt not in LOSSY and min_bit_depth is not None and bits and bits < min_bit_depth:
        problems.append(f"bit depth {bits} is below the required {min_bit_depth} bits")
    if fmt in LOSSY:
        floor = min_kbps_stereo if channels >= 2 else min_kbps_mono
        label = "stereo" if channels >= 2 else "mono"
        if floor is not None and kbps < floor:
            problems.append(f"{label} bitrate {kbps} kbps is below the required {floor} kbps")
    # UNKNOWN is what plain CBR files without a Xing/LAME header report.
    if (
        cbr
        and isinstance(audio, MP3)
        and audio.info.bitrate_mode in (BitrateMode.VBR, BitrateMode.ABR)
    ):
        problems.append("variable bitrate MP3; the partner requires constant bitrate (CBR)")
    return problems
