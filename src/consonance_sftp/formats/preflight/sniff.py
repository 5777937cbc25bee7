"""What a file really is, from its first bytes (never from its name), and what its name claims.

A PNG renamed ``.pdf`` is caught here: preflight compares the content type found by magic bytes
with the type the extension promises.
"""

from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 64

# Extension -> content type it promises (the content types ``sniff`` returns).
EXTENSION_TYPES: dict[str, str] = {
    "pdf": "pdf",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "png": "png",
    "tif": "tiff",
    "tiff": "tiff",
    "gif": "gif",
    "webp": "webp",
    "epub": "zip",
    "zip": "zip",
    "mp3": "mp3",
    "m4a": "mp4",
    "m4b": "mp4",
    "mp4": "mp4",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
    "json": "text",
    "txt": "text",
    "html": "text",
    "htm": "text",
    "xhtml": "text",
    "xml": "text",
    "md": "text",
    "csv": "text",
}


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def sniff(head: bytes) -> str:
    """The content type of a file from its first bytes: ``pdf``, ``png``, ``jpeg``, ``tiff``,
    ``gif``, ``webp``, ``zip``, ``mp3``, ``aac``, ``mp4``, ``flac``, ``wav``, ``text`` or
    ``unknown``."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"fLaC"):
        return "flac"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # 11 sync bits; the layer bits tell MPEG audio (layer 1-3) from ADTS AAC (layer 0).
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    if _looks_like_text(head):
        return "text"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the head's end is still text.
        if exc.start < len(head) - 3:
            return False
    return all(b >= 0x20 or b in (0x09, 0x0A, 0x0D) for b in head)


def extension_mismatch(path: Path, found: str) -> str | None:
    """A reason when the name's extension promises another type than the content has."""
    ext = path.suffix.lstrip(".").lower()
    promised = EXTENSION_TYPES.get(ext)
    if promised is None or promised == found:
        return None
    return f"named .{ext} but its content is {found.upper()}, not {promised.upper()}"
