"""The config reference is generated from field descriptions: none missing, the file current."""

from __future__ import annotations

from pathlib import Path

from consonance_sftp.config import FLOW_MODELS, PartnerConfig, Settings
from consonance_sftp.config.reference import config_reference, iter_models

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "config.md"


def test_every_config_field_has_a_description() -> None:
    models = list(iter_models(Settings))
    # The walk reaches nested tables and every flow kind, not only the root.
    assert PartnerConfig in models
    assert set(FLOW_MODELS.values()) <= set(models)
    missing = [
        f"{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not (field.description and field.description.strip())
    ]
    assert missing == [], f"config fields without a description: {missing}"


def test_every_config_model_has_a_docstring() -> None:
    undocumented = [m.__name__ for m in iter_models(Settings) if not (m.__doc__ or "").strip()]
    assert undocumented == []


def test_reference_lists_every_field_and_flow_kind() -> None:
    text = config_reference()
    for kind in FLOW_MODELS:
        assert f'`kind = "{kind.value}"`' in text
    for model in iter_models(Settings):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} missing from the reference"
    assert "`partners.<name>.host_keys`" in text


def test_committed_reference_is_current() -> None:
    assert REFERENCE.exists(), "run 'make docs' to generate docs/reference/config.md"
    assert REFERENCE.read_text(encoding="utf-8") == config_reference(), (
        "docs/reference/config.md is stale: run 'make docs' "
        "(consonance-sftp docs config-reference > docs/reference/config.md)"
    )
