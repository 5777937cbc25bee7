"""The ``sales_in`` flow's own settings: a generic layout's column mapping, the map from a
partner's channels and territories to Consonance channel IDs, the expected-report calendar,
``config.flows.SalesInFlow`` holds them.

Layout names are checked against the built-in layouts where the reports are read
(``flows.sales_in``, ``consonance-sftp config check``): config sits below the formats package
in the layers and does not import it.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from consonance_sftp.config.profiles import StrictModel

ROLES = (
    "isbn",
    "sales_date",
    "quantity",
    "value",
    "return_quantity",
    "return_value",
    "currency",
    "list_price",
    "list_price_currency",
    "channel",
    "territory",
    "transaction_id",
)
"""Column roles a generic layout may map (``isbn``, ``quantity`` and ``value`` are required; a
report without ``sales_date`` takes its period from the file name)."""

REQUIRED_ROLES = ("isbn", "quantity", "value")

_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _currency(value: str | None) -> str | None:
    if value is not None and not _CURRENCY.match(value):
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (three capitals, e.g. GBP)")
    return value


class GenericMapping(StrictModel):
    """A partner's own CSV/XLSX report, read through a column mapping (layout `generic`)."""

    columns: dict[str, str] = Field(
        description='Role -> the partner\'s header, e.g. `{ isbn = "EAN", sales_date = '
        '"Date", quantity = "Units", value = "Net" }`. Roles: ' + ", ".join(ROLES) + "; "
        "`isbn`, `quantity` and `value` are required."
    )
    date_format: str = Field(
        default="%Y-%m-%d",
        description="`strftime` format of the date column, e.g. `%d/%m/%Y`.",
    )
    currency: str | None = Field(
        default=None,
        description="The report's currency when it has no currency column (ISO 4217).",
    )
    returns: Literal["negative", "columns"] = Field(
        default="negative",
        description="How returns show: negative quantities/values (`negative`), or their own "
        "`return_quantity`/`return_value` columns (`columns`).",
    )
    sheet: str | None = Field(
        default=None, description="The sheet of an xlsx report (unset: the first)."
    )

    @field_validator("columns")
    @classmethod
    def _roles(cls, value: dict[str, str]) -> dict[str, str]:
        if unknown := sorted(set(value) - set(ROLES)):
            raise ValueError(f"unknown roles {', '.join(unknown)} (use {', '.join(ROLES)})")
        if missing := [r for r in REQUIRED_ROLES if r not in value]:
            raise ValueError(f"map the required roles too: {', '.join(missing)}")
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        return _currency(value)

    @model_validator(mode="after")
    def _currency_known(self) -> GenericMapping:
        if self.currency is None and "currency" not in self.columns:
            raise ValueError("set `currency`, or map a `currency` column")
        if self.returns == "columns" and not {"return_quantity", "return_value"} & set(
            self.columns
        ):
            raise ValueError(
                'returns = "columns" needs a `return_quantity` or `return_value` column'
            )
        return self


class ChannelMap(StrictModel):
    """How a partner's channel and territory words become a Consonance channel ID (the
    sales-import's `Channel ID`). The most specific entry wins: `channel/territory`, then
    `channel`, then `territory`, then `default`; a line none of them maps is rejected."""

    map: dict[str, str] = Field(
        default_factory=dict,
        description='Keys: the partner\'s channel (`"Kindle Store"`), a territory '
        '(`"GB"`), or both as `"channel/territory"`; values: Consonance channel IDs.',
    )
    default: str | None = Field(
        default=None,
        description="The channel ID of lines no key maps (unset: such lines are rejected).",
    )

    def channel_for(self, channel: str, territory: str) -> str | None:
        """The Consonance channel ID of a line (None: not mapped)."""
        c, t = channel.strip(), territory.strip()
        for key in (f"{c}/{t}", c, t):
            if key != "/" and key and key in self.map:
                return self.map[key]
        return self.default


Frequency = Literal["monthly", "quarterly", "yearly"]


class ExpectedReport(StrictModel):
    """When a partner's report is due: e.g. monthly, by the 10th of the next month."""

    partner: str = Field(description="The partner (one of the flow's `partners`).")
    layout: str = Field(
        default="auto",
        description="The report's layout (`auto`: any report from this partner counts).",
    )
    every: Frequency = Field(default="monthly", description="`monthly`, `quarterly`, `yearly`.")
    due_day: int = Field(
        default=10,
        ge=1,
        le=28,
        description="Day of the month after the period's end by which the report is due.",
    )
    sends_nothing_without_sales: bool = Field(
        default=False,
        description="The partner sends no report for a period without sales (Ingram "
        "CoreSource): a missing report is then no alert.",
    )


def check_currency(value: str) -> str:
    """An ISO 4217 code, or a ValueError naming it."""
    return _currency(value) or value
