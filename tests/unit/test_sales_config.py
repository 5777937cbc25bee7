"""The ``sales_in`` flow's settings: layout per partner, generic mapping, channel map, calendar."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from consonance_sftp.config.flows import SalesInFlow


def _flow(**extra: Any) -> SalesInFlow:
    return SalesInFlow.model_validate({"kind": "sales_in", "partners": ["lsi", "kobo"], **extra})


def test_channel_map_prefers_the_most_specific_key() -> None:
    flow = _flow(
        channels={"map": {"Kindle/GB": "AMZ-UK", "Kindle": "AMZ", "GB": "UK"}, "default": "OTHER"},
        partner_channels={"kobo": {"map": {"Kobo": "KOBO"}}},
    )
    lsi = flow.channels_for("lsi")
    assert lsi.channel_for("Kindle", "GB") == "AMZ-UK"
    assert lsi.channel_for("Kindle", "US") == "AMZ"
    assert lsi.channel_for("Shop", "GB") == "UK"
    assert lsi.channel_for("Shop", "FR") == "OTHER"
    kobo = flow.channels_for("kobo")
    assert kobo.channel_for("Kobo", "CA") == "KOBO"
    assert kobo.channel_for("Other", "CA") is None  # no default: the line is rejected


def test_layout_per_partner_and_generic_mapping() -> None:
    flow = _flow(
        layout="auto",
        partner_layouts={"kobo": "generic"},
        generic={
            "columns": {"isbn": "EAN", "sales_date": "Date", "quantity": "Units", "value": "Net"},
            "currency": "CAD",
            "date_format": "%d/%m/%Y",
        },
    )
    assert flow.layout_for("kobo") == "generic"
    assert flow.layout_for("lsi") == "auto"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"layout": "generic"}, "needs a `generic` column mapping"),
        ({"partner_layouts": {"nobody": "auto"}}, "partner_layouts names partners not in"),
        ({"calendar": [{"partner": "nobody"}]}, "calendar names partners not in"),
        ({"house_currency": "pounds"}, "not an ISO 4217 currency code"),
        ({"on_rejected": "drop"}, "'hold' or 'load_valid'"),
        (
            {"generic": {"columns": {"isbn": "EAN", "quantity": "Q"}, "currency": "GBP"}},
            "map the required roles too: value",
        ),
        (
            {
                "generic": {
                    "columns": {"isbn": "A", "sales_date": "B", "quantity": "C", "value": "D"}
                }
            },
            "set `currency`, or map a `currency` column",
        ),
        ({"calendar": [{"partner": "lsi", "due_day": 31}]}, "less than or equal to 28"),
    ],
)
def test_bad_sales_settings_are_refused_with_a_reason(extra: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _flow(**extra)
    assert words in str(caught.value)


def test_deliver_to_names_a_known_partner_and_its_folder() -> None:
    from consonance_sftp.config.loader import cross_check

    partners = {"lsi": {"folders": {"receive": "/out"}}, "finance": {"folders": {"send": "/in"}}}
    flow = {"kind": "sales_in", "partners": ["lsi"]}
    ok = {"partners": partners, "flows": {"sales": {**flow, "deliver_to": "finance"}}}
    assert cross_check(ok) == []
    unknown = {"partners": partners, "flows": {"sales": {**flow, "deliver_to": "nobody"}}}
    [problem] = cross_check(unknown)
    assert (
        problem.path == "flows.sales.deliver_to" and "unknown partner 'nobody'" in problem.message
    )
    folder = {
        "partners": partners,
        "flows": {"sales": {**flow, "deliver_to": "finance", "deliver_folder": "royalties"}},
    }
    [problem] = cross_check(folder)
    assert problem.path == "flows.sales.deliver_folder"
    assert "partner 'finance' has no folder 'royalties'" in problem.message
