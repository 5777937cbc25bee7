"""Delivery profiles: what a partner receives, under which names, packed how, checked how.

A profile starts from a built-in *preset* (``generic`` when none is named) and any key set in
the config overrides the preset's value; tables (``names``, ``folders``, ``values``,
``preflight``...) merge key by key, lists replace. In TOML either of::

    profile = "google_play_books"

    [flows.play.profile]
    preset = "google_play_books"
    values = { collection = "publisher-ebooks" }
    names.cover_image = "{isbn13}_frontcover.png"

File-name templates are checked when the config loads (known placeholders only, no traversal,
no reserved characters); ``formats.packaging.render_name`` checks each rendered name again
before anything is sent. The presets' sources are in ``docs/reference/profiles.md``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from consonance_sftp.models import AssetKind


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, defaults are validated too.

    Defined here, the lowest config module that needs it; ``config.flows`` re-exports it.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


PLACEHOLDERS: dict[str, str] = {
    "isbn13": "the product's ISBN-13, no hyphens",
    "print_isbn13": "the print edition's ISBN-13 (Google names PDFs by it), when known",
    "ebook_isbn13": "the e-book's ISBN-13 (Google and EBSCO name EPUBs by it), when known",
    "work_id": "Consonance work id",
    "product_id": "Consonance product id",
    "publisher": "publisher name without spaces",
    "version": "the asset version number",
    "ext": "the source file's extension, lower case, without the dot",
    "index": "1-based position of the file among those of its kind",
    "count": "number of files of its kind",
    "track": "audio track number (1-based); format it with a spec, e.g. {track:03}",
    "tracks": "number of audio tracks (Google: {track}of{tracks})",
    "date": "the run's date, YYYYMMDD",
    "timestamp": "the run's time; format it with strftime codes, e.g. {timestamp:%d%m%Y%H%M%S}",
}
"""Placeholders every template may use, besides the profile's own ``values``."""

_SAMPLE: dict[str, object] = {
    "isbn13": "9780000000002",
    "print_isbn13": "9780000000002",
    "ebook_isbn13": "9780000000019",
    "work_id": 1,
    "product_id": 1,
    "publisher": "Publisher",
    "version": 1,
    "ext": "pdf",
    "index": 1,
    "count": 1,
    "track": 1,
    "tracks": 1,
    "date": "20260101",
    "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
}
# Same rule as formats.packaging.unsafe_reasons (config may not import formats): letters,
# digits, ". _ - + ( )" and inner spaces, no empty/./.. components, no leading '.', '-'.
_SAFE_PART = re.compile(r"[A-Za-z0-9_+()][A-Za-z0-9._ +()-]*(?<![ .])")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_template(template: str, values: Mapping[str, str], *, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` if the template could give an unsafe name."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{what}: malformed template {template!r}: {exc}") from None
    sample = {**_SAMPLE, **values}
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _FIELD_NAME.fullmatch(name) or conversion is not None or "{" in (spec or ""):
            raise ValueError(
                f"{what}: placeholder {{{name}}} in {template!r} is not allowed (plain names "
                "with an optional format spec only, e.g. {track:03})"
            )
        if name not in sample:
            raise ValueError(
                f"{what}: template {template!r} uses {{{name}}}, which is neither a built-in "
                f"placeholder ({', '.join(PLACEHOLDERS)}) nor one of the profile's `values`"
            )
    try:
        rendered = template.format(**sample)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{what}: template {template!r} cannot be filled: {exc}") from None
    if rendered.startswith("/"):
        raise ValueError(f"{what}: {template!r} is absolute; names are relative to the folder")
    for part in rendered.split("/"):
        if not _SAFE_PART.fullmatch(part) or len(part.encode()) > 255:
            raise ValueError(
                f"{what}: template {template!r} gives the unsafe name component {part!r} (use "
                "letters, digits, '. _ - + ( )'; no '..', no leading '.' or '-')"
            )


ImageFormat = Literal["JPEG", "PNG", "TIFF"]
AudioFormat = Literal["mp3", "m4a", "aac", "flac", "wav"]


def _all_image_formats() -> list[ImageFormat]:
    return ["JPEG", "PNG", "TIFF"]


def _all_audio_formats() -> list[AudioFormat]:
    return ["mp3", "m4a", "aac", "flac", "wav"]


class RenameOnComplete(StrictModel):
    """Upload under one suffix and rename to the final suffix when the file is complete."""

    upload_suffix: str = Field(
        description="Suffix while uploading, e.g. `.XOT` (replaces `final_suffix`, or is "
        "appended when the final name does not end with it)."
    )
    final_suffix: str = Field(description="Suffix of the complete file, e.g. `.COT`.")

    @model_validator(mode="after")
    def _suffixes(self) -> RenameOnComplete:
        for name in ("upload_suffix", "final_suffix"):
            value: str = getattr(self, name)
            if not re.fullmatch(r"\.?[A-Za-z0-9_-]{1,16}", value):
                raise ValueError(f"{name} {value!r} must look like '.XOT'")
        if self.upload_suffix == self.final_suffix:
            raise ValueError("upload_suffix and final_suffix must differ")
        return self


class ImageRendition(StrictModel):
    """A derived image made from the approved master (e.g. an RGB JPEG cover)."""

    format: ImageFormat = Field(default="JPEG", description="Image format of the derivative.")
    mode: Literal["RGB", "L", "CMYK"] = Field(
        default="RGB", description="Colour mode of the derivative (retail wants RGB)."
    )
    max_long_side: int | None = Field(
        default=None, ge=16, description="Most pixels on the long side; unset: keep the size."
    )
    quality: int = Field(default=90, ge=1, le=100, description="JPEG quality (1-100).")


class PreflightSettings(StrictModel):
    """Checks every file of the package passes before anything is sent."""

    pdf_x: bool = Field(
        default=False,
        description="PDFs must declare a PDF/X version (`GTS_PDFXVersion`), as printers require.",
    )
    pdf_x_versions: list[str] = Field(
        default_factory=list,
        description="Accepted PDF/X versions, e.g. `PDF/X-1a:2001`; empty: any PDF/X.",
    )
    page_count: Literal["exact", "at_least", "off"] = Field(
        default="exact",
        description="Interior PDF page count against the product's extent: equal, at least "
        "the extent, or not checked.",
    )
    min_pages: int | None = Field(
        default=None, ge=1, description="Fewest pages an interior PDF may have."
    )
    image_formats: list[ImageFormat] = Field(
        default_factory=_all_image_formats,
        description="Image formats accepted (by content, not by extension).",
    )
    image_modes: list[str] = Field(
        default_factory=lambda: ["RGB", "CMYK", "L"],
        description="Image colour modes accepted (Pillow names: RGB, CMYK, L, RGBA...).",
    )
    image_min_px: int | None = Field(
        default=None, ge=1, description="Fewest pixels on the image's short side."
    )
    image_max_px: int | None = Field(
        default=None, ge=1, description="Most pixels on the image's long side."
    )
    max_file_bytes: int | None = Field(
        default=None, ge=1, description="Largest single file the partner accepts, in bytes."
    )
    epubcheck: Literal["if_installed", "required", "off"] = Field(
        default="if_installed",
        description="Run EPUBCheck (`epubcheck` on PATH): when installed (else reported as "
        "skipped), always (missing is a failure), or never.",
    )
    audio_formats: list[AudioFormat] = Field(
        default_factory=_all_audio_formats,
        description="Audio formats accepted (by content).",
    )
    audio_min_kbps_mono: int | None = Field(
        default=None, ge=1, description="Lowest bitrate of mono lossy audio (MP3, AAC), kbit/s."
    )
    audio_min_kbps_stereo: int | None = Field(
        default=None, ge=1, description="Lowest bitrate of stereo lossy audio, kbit/s."
    )
    audio_min_sample_rate: int | None = Field(
        default=None, ge=1, description="Lowest sample rate in Hz, e.g. 44100."
    )
    audio_min_bit_depth: int | None = Field(
        default=None, ge=8, description="Lowest bit depth of lossless audio (FLAC, WAV), e.g. 16."
    )
    audio_cbr: bool = Field(
        default=False, description="MP3 must be constant bitrate (ACX requires CBR)."
    )


AssetNames = dict[AssetKind, str]


class DeliveryProfile(StrictModel):
    """How one partner wants its package: kinds, folders, names, packing, manifest, checks.

    The defaults listed here apply only where the chosen preset (`generic` when unset) sets
    nothing; the presets' values are in the profiles reference.
    """

    preset: str = Field(
        default="generic",
        description="Built-in profile this one starts from: "
        "`generic`, `google_play_books`, `print_on_demand`, `titlepage`, `titleleaf`.",
    )
    description: str = Field(default="", description="What this profile is for (free text).")
    assets: list[AssetKind] = Field(
        default_factory=list, description="Asset kinds this partner receives; others are left out."
    )
    required: list[AssetKind] = Field(
        default_factory=list,
        description="Kinds that must all be present, or nothing is sent (an incomplete set).",
    )
    folder: str = Field(
        default="",
        description="Sub-folder template under the flow's folder, e.g. `{isbn13}`; a zip, "
        "the manifest and the done-marker go here too.",
    )
    folders: AssetNames = Field(
        default_factory=dict,
        description="Sub-folder template per asset kind, instead of `folder` (Google: "
        "`ebooks/{collection}`, `audio/{collection}`); inside a zip, relative to the zip.",
    )
    names: AssetNames = Field(
        default_factory=dict,
        description="File-name template per asset kind, e.g. `{isbn13}_interior.pdf`, "
        "`{isbn13}_{track:03}.{ext}`.",
    )
    packaging: Literal["files", "zip"] = Field(
        default="files", description="Send loose files, or one zip holding them all."
    )
    zip_name: str = Field(default="{isbn13}.zip", description="Name template of the zip.")
    zip_compression: Literal["stored", "deflated"] = Field(
        default="stored",
        description="Zip members stored (fast; PDFs, JPEGs and audio are compressed already) "
        "or deflated.",
    )
    manifest: Literal["none", "json", "csv"] = Field(
        default="none", description="Add a manifest listing each file's name, size and SHA-256."
    )
    manifest_name: str = Field(
        default="{isbn13}_manifest.{ext}",
        description="Name template of the manifest (`{ext}` is `json` or `csv`).",
    )
    done_marker: str | None = Field(
        default=None,
        description="Name template of a marker uploaded last, listing `<sha256>  <name>` of "
        "every file; unset: none.",
    )
    rename: RenameOnComplete | None = Field(
        default=None,
        description="Rename-on-complete convention (TitlePage: upload `.XOT`, rename to `.COT`).",
    )
    values: dict[str, str] = Field(
        default_factory=dict,
        description="Extra template placeholders, e.g. `collection` (Google's collection code).",
    )
    preflight: PreflightSettings = Field(
        default_factory=PreflightSettings, description="Checks before anything is sent."
    )
    cover_rendition: ImageRendition | None = Field(
        default=None,
        description="Send cover images as this derivative of the approved master; unset: the "
        "master as it is.",
    )
    withdraw: bool = Field(
        default=False,
        description="Delete what was sent from the partner when the title is withdrawn.",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"preset": data}
        if not isinstance(data, dict):
            return data
        name = data.get("preset", "generic")
        if not isinstance(name, str) or name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return _merge(PRESETS[name], data)

    @model_validator(mode="after")
    def _check(self) -> DeliveryProfile:
        if not self.assets:
            raise ValueError("list at least one asset kind in `assets`")
        if extra := [k.value for k in self.required if k not in self.assets]:
            raise ValueError(f"`required` lists kinds not in `assets`: {', '.join(extra)}")
        if unnamed := [k.value for k in self.assets if not self.names.get(k)]:
            raise ValueError(f"no file-name template in `names` for: {', '.join(unnamed)}")
        bad = [k for k in self.values if not _FIELD_NAME.fullmatch(k) or k in PLACEHOLDERS]
        if bad:
            raise ValueError(f"`values` may not redefine or misname placeholders: {bad}")
        for key, value in self.values.items():
            check_template(value, {}, what=f"values.{key}")
        templates = {
            "folder": self.folder,
            "zip_name": self.zip_name,
            "manifest_name": self.manifest_name,
            "done_marker": self.done_marker or "",
        }
        templates.update({f"names.{k.value}": v for k, v in self.names.items()})
        templates.update({f"folders.{k.value}": v for k, v in self.folders.items()})
        for what, template in templates.items():
            if template:
                check_template(template, self.values, what=what)
        return self


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


GENERIC_NAMES: dict[str, str] = {
    "interior_pdf": "{isbn13}_interior.pdf",
    "cover_pdf": "{isbn13}_cover.pdf",
    "spec_sheet": "{isbn13}_spec.{ext}",
    "epub": "{isbn13}.epub",
    "audio": "{isbn13}_{track:03}.{ext}",
    "accessibility": "{isbn13}_accessibility_{index:02}.{ext}",
    "cover_image": "{isbn13}_frontcover.{ext}",
    "jacket_copy": "{isbn13}_jacket_copy.{ext}",
    "author_bio": "{isbn13}_author_bio_{index:02}.{ext}",
    "promo": "{isbn13}_promo_{index:02}.{ext}",
}

PRESETS: dict[str, dict[str, Any]] = {
    # Our own convention: one folder per ISBN, everything, JSON manifest and a done-marker.
    "generic": {
        "preset": "generic",
        "description": "Every asset kind in one folder per ISBN, a JSON manifest, a done-marker.",
        "assets": [k.value for k in AssetKind],
        "folder": "{isbn13}",
        "names": GENERIC_NAMES,
        "manifest": "json",
        "done_marker": "{isbn13}.done",
    },
    # Google Play Books partner help 3424254 (names, 640-7200 px covers, <2 GB, >=4 pages),
    # 7504302 (ebooks/ and audio/ folders, audio bitrates), 2763162 (no trigger file).
    "google_play_books": {
        "preset": "google_play_books",
        "description": "Google Play Books SFTP dropbox: ebooks/<collection>/ and "
        "audio/<collection>/, names by ISBN, no manifest or marker.",
        "assets": ["epub", "interior_pdf", "cover_image", "audio"],
        "folder": "ebooks/{collection}",
        "folders": {"audio": "audio/{collection}"},
        "names": {
            "interior_pdf": "{isbn13}_interior.pdf",
            "cover_image": "{isbn13}_frontcover.jpg",
            "epub": "{isbn13}.epub",
            "audio": "{isbn13}_{track}of{tracks}.{ext}",
        },
        "manifest": "none",
        "done_marker": None,
        "preflight": {
            "min_pages": 4,
            "page_count": "off",
            "image_formats": ["JPEG", "PNG", "TIFF"],
            "image_min_px": 640,
            "image_max_px": 7200,
            "max_file_bytes": 2_000_000_000,
            "audio_min_kbps_mono": 128,
            "audio_min_kbps_stereo": 256,
            "audio_min_sample_rate": 44100,
            "audio_min_bit_depth": 16,
        },
        "cover_rendition": {"format": "JPEG", "mode": "RGB", "max_long_side": 7200},
    },
    # File names after Lakeside Book Co.'s published convention (ISBN_text, ISBN_cover);
    # PDF/X-1a:2001 or PDF/X-3:2002 as Ingram Lightning Source's file creation guide requires.
    # The spec-sheet name and the JSON manifest are our guesses: no printer documents them.
    "print_on_demand": {
        "preset": "print_on_demand",
        "description": "Print-on-demand printer: interior and cover as PDF/X, the production "
        "spec sheet, a JSON manifest.",
        "assets": ["interior_pdf", "cover_pdf", "spec_sheet"],
        "required": ["interior_pdf", "cover_pdf"],
        "folder": "",
        "names": {
            "interior_pdf": "{isbn13}_text.pdf",
            "cover_pdf": "{isbn13}_cover.pdf",
            "spec_sheet": "{isbn13}_spec.{ext}",
        },
        "manifest": "json",
        "done_marker": None,
        "preflight": {
            "pdf_x": True,
            "pdf_x_versions": ["PDF/X-1a:2001", "PDF/X-3:2002"],
            "page_count": "exact",
        },
    },
    # TitlePage (via the ONIXEDIT manual): a ddMMyyyyHHmmss name, uploaded .XOT, renamed .COT.
    # Documented for ONIX files; applying it to one zip of assets is our guess.
    "titlepage": {
        "preset": "titlepage",
        "description": "TitlePage-style: one zip named by timestamp, uploaded as .XOT and "
        "renamed to .COT when complete.",
        "assets": [k.value for k in AssetKind],
        "folder": "",
        "names": GENERIC_NAMES,
        "packaging": "zip",
        "zip_name": "{timestamp:%d%m%Y%H%M%S}.COT",
        "manifest": "json",
        "done_marker": None,
        "rename": {"upload_suffix": ".XOT", "final_suffix": ".COT"},
    },
    # TitleLeaf's SFTP upload rules: its folder ingest/ only (their name), ISBN_fc.jpg, RGB JPEG,
    # no zips, no folders.
    "titleleaf": {
        "preset": "titleleaf",
        "description": "TitleLeaf-style retail images: ingest/ISBN_fc.jpg as RGB JPEG.",
        "assets": ["cover_image"],
        "folder": "ingest",
        "names": {"cover_image": "{isbn13}_fc.jpg"},
        "manifest": "none",
        "done_marker": None,
        "preflight": {"image_formats": ["JPEG"], "image_modes": ["RGB"]},
        "cover_rendition": {"format": "JPEG", "mode": "RGB"},
    },
}
"""Built-in profiles as config tables; a profile's own keys are merged over one of these."""


def preset(name: str, **overrides: Any) -> DeliveryProfile:
    """A built-in profile by name, with optional overrides (as in the config file)."""
    return DeliveryProfile.model_validate({"preset": name, **overrides})
