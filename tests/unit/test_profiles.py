"""Delivery profiles: presets, overrides, template checks at config load, per-partner profiles."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from consonance_sftp.config import FormatsFlow, ProductionFlow, load_settings
from consonance_sftp.config.profiles import (
    PLACEHOLDERS,
    PRESETS,
    DeliveryProfile,
    PreflightSettings,
    preset,
)
from consonance_sftp.errors import ConfigError
from consonance_sftp.formats.packaging import SourceAsset, plan_package
from consonance_sftp.models import AssetKind
from tests.unit.test_preflight import make_image, make_mp3, make_pdf

ISBN = "9781234567897"
FINGERPRINT = "SHA256:" + base64.b64encode(bytes(range(32))).decode().rstrip("=")


def partners(*names: str) -> str:
    return "".join(
        f"""
[partners.{name}]
host = "sftp.{name}.example"
user = "pub"
host_keys = ["{FINGERPRINT}"]
auth = {{ password = {{ env = "T" }} }}
folders = {{ send = "/in" }}
"""
        for name in names
    )


NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def names_of(profile: DeliveryProfile, assets: list[SourceAsset]) -> list[str]:
    plan = plan_package(profile, assets, values={"isbn13": ISBN}, now=NOW)
    return [f.remote_path for f in plan.files]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    epub = tmp_path / "book.epub"
    epub.write_bytes(b"PK\x03\x04 not checked by planning")
    spec_json = tmp_path / "spec.json"
    spec_json.write_text('{"trim": "129x198"}')
    return {
        "interior": make_pdf(tmp_path / "interior.pdf"),
        "cover": make_pdf(tmp_path / "cover.pdf", pages=1),
        "spec_pdf": make_pdf(tmp_path / "spec.pdf", pages=1),
        "spec_json": spec_json,
        "jpg": make_image(tmp_path / "cover.jpg"),
        "epub": epub,
        **{f"mp3_{i}": make_mp3(tmp_path / f"ch{i}.mp3", frames=5) for i in (1, 2, 3)},
    }


def test_every_preset_is_valid() -> None:
    for name in PRESETS:
        values = {"collection": "pub-ebooks"} if name == "google_play_books" else {}
        profile = preset(name, values=values)
        assert profile.preset == name
        assert profile.assets


def test_google_play_books_names_and_folders(files: dict[str, Path]) -> None:
    google = preset("google_play_books", values={"collection": "pub-ebooks"})
    assets = [
        SourceAsset(kind=AssetKind.INTERIOR_PDF, path=files["interior"]),
        SourceAsset(kind=AssetKind.COVER_IMAGE, path=files["jpg"]),
        SourceAsset(kind=AssetKind.EPUB, path=files["epub"]),
        *(SourceAsset(kind=AssetKind.AUDIO, path=files[f"mp3_{i}"]) for i in (1, 2, 3)),
        SourceAsset(kind=AssetKind.SPEC_SHEET, path=files["spec_pdf"]),
    ]
    assert names_of(google, assets) == [
        f"ebooks/pub-ebooks/{ISBN}_interior.pdf",
        f"ebooks/pub-ebooks/{ISBN}_frontcover.jpg",
        f"ebooks/pub-ebooks/{ISBN}.epub",
        f"audio/pub-ebooks/{ISBN}_1of3.mp3",
        f"audio/pub-ebooks/{ISBN}_2of3.mp3",
        f"audio/pub-ebooks/{ISBN}_3of3.mp3",
    ]


def test_google_needs_its_collection_code() -> None:
    with pytest.raises(ValidationError, match=r"uses \{collection\}"):
        preset("google_play_books")


def test_print_on_demand_names(files: dict[str, Path]) -> None:
    printer = preset("print_on_demand")
    assets = [
        SourceAsset(kind=AssetKind.INTERIOR_PDF, path=files["interior"]),
        SourceAsset(kind=AssetKind.COVER_PDF, path=files["cover"]),
        SourceAsset(kind=AssetKind.SPEC_SHEET, path=files["spec_pdf"]),
        SourceAsset(kind=AssetKind.SPEC_SHEET, path=files["spec_json"]),
    ]
    assert names_of(printer, assets) == [
        f"{ISBN}_text.pdf",
        f"{ISBN}_cover.pdf",
        f"{ISBN}_spec.pdf",
        f"{ISBN}_spec.json",
        f"{ISBN}_manifest.json",
    ]
    assert printer.preflight.pdf_x and printer.required == [
        AssetKind.INTERIOR_PDF,
        AssetKind.COVER_PDF,
    ]


def test_titlepage_uploads_xot_and_renames_to_cot(files: dict[str, Path]) -> None:
    plan = plan_package(
        preset("titlepage"),
        [SourceAsset(kind=AssetKind.EPUB, path=files["epub"])],
        values={"isbn13": ISBN},
        now=NOW,
    )
    (package,) = plan.files
    assert package.remote_path == "04032026050607.COT"
    assert package.upload_path == "04032026050607.XOT"
    assert [m.remote_path for m in package.members] == [f"{ISBN}.epub", f"{ISBN}_manifest.json"]


def test_generic_preset_names(files: dict[str, Path]) -> None:
    assets = [
        SourceAsset(kind=AssetKind.AUDIO, path=files["mp3_2"], track=2),
        SourceAsset(kind=AssetKind.AUDIO, path=files["mp3_1"], track=1),
        SourceAsset(kind=AssetKind.COVER_IMAGE, path=files["jpg"]),
    ]
    assert names_of(preset("generic"), assets) == [
        f"{ISBN}/{ISBN}_001.mp3",
        f"{ISBN}/{ISBN}_002.mp3",
        f"{ISBN}/{ISBN}_frontcover.jpg",
        f"{ISBN}/{ISBN}_manifest.json",
        f"{ISBN}/{ISBN}.done",
    ]


def test_overrides_merge_over_the_preset() -> None:
    profile = DeliveryProfile.model_validate(
        {
            "preset": "google_play_books",
            "values": {"collection": "c1"},
            "names": {"cover_image": "{isbn13}_frontcover.png"},
            "preflight": {"image_min_px": 1024},
        }
    )
    assert profile.names[AssetKind.COVER_IMAGE] == "{isbn13}_frontcover.png"
    assert profile.names[AssetKind.EPUB] == "{isbn13}.epub"  # kept from the preset
    assert profile.preflight.image_min_px == 1024
    assert profile.preflight.image_max_px == 7200  # kept from the preset
    assert DeliveryProfile.model_validate("print_on_demand") == preset("print_on_demand")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("../{isbn13}.pdf", "unsafe name component '..'"),
        ("/srv/{isbn13}.pdf", "is absolute"),
        ("{isbn13.__class__}.pdf", "is not allowed"),
        ("{isbn13!r}.pdf", "is not allowed"),
        ("{isbn13}&co.pdf", "unsafe name component"),
        ("{isbn13}\x07.pdf", "unsafe name component"),
        (".{isbn13}.pdf", "unsafe name component"),
        ("{title}.pdf", "uses {title}"),
        ("{isbn13", "malformed template"),
    ],
)
def test_unsafe_templates_are_refused_at_load(template: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        preset("generic", names={"interior_pdf": template})
    assert message in str(caught.value)
    assert "names.interior_pdf" in str(caught.value)


def test_profile_consistency_checks() -> None:
    with pytest.raises(ValidationError, match="unknown preset 'kindle'"):
        DeliveryProfile.model_validate("kindle")
    with pytest.raises(ValidationError, match=r"required.*not in `assets`"):
        preset("print_on_demand", required=["epub"])
    with pytest.raises(ValidationError, match="no file-name template"):
        preset("titleleaf", assets=["cover_image", "epub"])
    with pytest.raises(ValidationError, match="redefine"):
        preset("generic", values={"isbn13": "x"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        preset("generic", zip_nmae="x.zip")
    with pytest.raises(ValidationError, match="upload_suffix and final_suffix must differ"):
        preset("titlepage", rename={"upload_suffix": ".COT", "final_suffix": ".COT"})


def test_flows_take_profiles_by_name_table_and_partner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T", "x")
    config = tmp_path / "c.toml"
    config.write_text(
        """
[consonance]
token = {env = "T"}

[flows.printer]
kind = "production"
partners = ["lsi"]
profile = "print_on_demand"

[flows.vendors]
kind = "formats"
partners = ["play", "audio-house"]

[flows.vendors.profile]
preset = "generic"
assets = ["epub", "accessibility"]

[flows.vendors.partner_profiles.play]
preset = "google_play_books"
values = { collection = "pub-ebooks" }
"""
        + partners("lsi", "play", "audio-house"),
        encoding="utf-8",
    )
    settings = load_settings(config)
    printer = settings.flows["printer"]
    vendors = settings.flows["vendors"]
    assert isinstance(printer, ProductionFlow) and isinstance(vendors, FormatsFlow)
    assert printer.profile_for("lsi").preset == "print_on_demand"
    assert vendors.profile_for("play").preset == "google_play_books"
    assert vendors.profile_for("audio-house").assets == [AssetKind.EPUB, AssetKind.ACCESSIBILITY]


def test_config_errors_name_the_profile_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T", "x")
    config = tmp_path / "c.toml"
    config.write_text(
        """
[consonance]
token = {env = "T"}

[flows.vendors]
kind = "formats"
partners = ["play"]

[flows.vendors.partner_profiles.other]
preset = "generic"

[flows.print]
kind = "production"
partners = ["lsi"]
profile = { preset = "print_on_demand", names = { cover_pdf = "../{isbn13}.pdf" } }
"""
        + partners("lsi", "play"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    text = str(caught.value)
    assert "partner_profiles names partners not in `partners`: other" in text
    assert "names.cover_pdf" in text and "'..'" in text


def test_the_docs_cover_every_preset_placeholder_and_check() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "reference"
    profiles = (docs / "profiles.md").read_text(encoding="utf-8")
    for name in PRESETS:
        assert f"### `{name}`" in profiles, f"preset {name} is not documented"
    for placeholder in PLACEHOLDERS:
        assert f"`{placeholder}`" in profiles, f"placeholder {placeholder} is not documented"
    checks = (docs / "preflight.md").read_text(encoding="utf-8")
    for field in PreflightSettings.model_fields:
        assert f"`{field}`" in checks, f"preflight setting {field} is not documented"


def test_the_docs_example_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T", "x")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "profiles.md").read_text(
        encoding="utf-8"
    )
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "c.toml"
    config.write_text(
        '[consonance]\ntoken = {env = "T"}\n' + example + partners("lsi", "play", "audio-house"),
        encoding="utf-8",
    )
    settings = load_settings(config)
    ebooks = settings.flows["ebooks"]
    assert isinstance(ebooks, FormatsFlow)
    play = ebooks.profile_for("play")
    assert play.names[AssetKind.COVER_IMAGE] == "{isbn13}_frontcover.png"
    assert play.preflight.image_min_px == 1024
    assert ebooks.profile_for("audio-house").assets == [AssetKind.EPUB, AssetKind.ACCESSIBILITY]
