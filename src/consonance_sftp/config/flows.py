"""Flow configuration: one model per flow kind, chosen by the ``kind`` field.

Fields shared by every kind live on ``FlowBase``; each kind adds what it needs. The kind-specific
fields are deliberately small for now; the issues that implement each exchange fill them in.
The outbound package flows (production, marketing, formats) carry a delivery ``profile``
(``config.profiles``), one per flow with optional per-partner overrides.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, Field, field_validator, model_validator

from consonance_sftp.config.profiles import DeliveryProfile
from consonance_sftp.config.profiles import StrictModel as StrictModel  # re-exported
from consonance_sftp.config.secrets import resolve_path
from consonance_sftp.models import FlowKind

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""Partner and flow names: lower case, digits, ``-`` and ``_``; they end up in IDs and paths."""

ConfigPath = Annotated[Path, AfterValidator(resolve_path)]
"""A filesystem path; relative paths resolve against the config file's folder."""


class Schedule(StrictModel):
    """When a scheduled flow runs."""

    cron: str = Field(
        description="Standard five-field cron expression, e.g. `0 6 * * 1-5` (06:00 on weekdays)."
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone the cron expression is read in, e.g. `Europe/London`.",
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        value = value.strip()
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(
                f"not a valid cron expression: {value!r} (five fields: minute 0-59, hour 0-23, "
                "day of month 1-31, month 1-12, day of week 0-6)"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/London')"
            ) from None
        return value

    def next_after(self, moment: datetime) -> datetime:
        """The first run strictly after ``moment`` (aware datetimes in, aware out)."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        result: datetime = croniter(self.cron, local).get_next(datetime)
        return result


class When(StrictModel):
    """The approval condition that triggers an event-driven flow. Every condition set must hold."""

    project_stage: str | None = Field(
        default=None,
        description="The work's Consonance project stage that triggers the flow, e.g. `Approved`.",
    )
    todo_done: str | None = Field(
        default=None,
        description="Name of a to-do on the work that must be completed, e.g. `Files to printer`.",
    )
    approval_status: str | None = Field(
        default=None,
        description="Approval status the files must have in Consonance, e.g. `APPROVED`.",
    )

    @model_validator(mode="after")
    def _something_set(self) -> When:
        if not (self.project_stage or self.todo_done or self.approval_status):
            raise ValueError("set at least one of project_stage, todo_done, approval_status")
        return self


class FlowBase(StrictModel):
    """Fields every flow has."""

    enabled: bool = Field(default=True, description="Disabled flows never run, not even manually.")
    partners: list[str] = Field(
        default_factory=list,
        description="Names of the partners (keys of `[partners]`) this flow exchanges files with.",
    )
    schedule: Schedule | None = Field(
        default=None, description="Run on a cron schedule (in addition to any other trigger)."
    )
    folder: str = Field(
        default="send",
        description="Which of each partner's `folders` this flow uses (a key, not a path).",
    )

    requires_partners: ClassVar[bool] = True

    @field_validator("partners")
    @classmethod
    def _needs_partners(cls, value: list[str]) -> list[str]:
        if not value and cls.requires_partners:
            raise ValueError("list at least one partner")
        if len(set(value)) != len(value):
            raise ValueError("a partner is listed twice")
        return value


class PackageFlow(FlowBase):
    """An outbound flow that sends each partner a package built from its delivery profile."""

    profile: DeliveryProfile = Field(
        default_factory=lambda: DeliveryProfile.model_validate("generic"),
        description='Delivery profile: a preset name (`profile = "print_on_demand"`) or a '
        "table starting from `preset` with keys overriding it. See the profiles reference.",
    )
    partner_profiles: dict[str, DeliveryProfile] = Field(
        default_factory=dict,
        description="Per-partner profile instead of `profile`, by partner name (each vendor "
        "receives only what its own profile names).",
    )

    @model_validator(mode="after")
    def _profiles_for_listed_partners(self) -> PackageFlow:
        if unknown := sorted(set(self.partner_profiles) - set(self.partners)):
            raise ValueError(
                f"partner_profiles names partners not in `partners`: {', '.join(unknown)}"
            )
        return self

    def profile_for(self, partner: str) -> DeliveryProfile:
        """The profile that applies to ``partner``."""
        return self.partner_profiles.get(partner, self.profile)


class ProductionFlow(PackageFlow):
    """Print-ready interior and cover PDFs plus the production spec sheet, to the printer."""

    kind: Literal["production"] = Field(description="`production`.")
    when: When | None = Field(
        default=None, description="Approval condition that sends a title's files; unset: manual."
    )


class OnixFeedFlow(FlowBase):
    """ONIX full and delta feeds (and CSV/XLSX metadata) to distributors and agencies."""

    kind: Literal["onix_feed"] = Field(description="`onix_feed`.")
    onix_version: Literal["3.0", "2.1"] = Field(
        default="3.0", description="ONIX version the recipients expect."
    )
    delta: bool = Field(
        default=True,
        description="Send only records changed since the last feed; a full feed when false.",
    )


class IntakeFlow(FlowBase):
    """Revised files from designers, typesetters, indexers and cover artists, into Consonance."""

    kind: Literal["intake"] = Field(description="`intake`.")
    folder: str = Field(
        default="receive", description="Which of each partner's `folders` is polled for files."
    )
    poll_interval: int = Field(
        default=300, ge=10, description="Seconds between two looks at the partner's folder."
    )


class FinanceOutFlow(FlowBase):
    """Royalty statements, rights reports and contract data; each payee gets only its own."""

    kind: Literal["finance_out"] = Field(description="`finance_out`.")


class SalesInFlow(FlowBase):
    """Distributor sales and usage reports into the sales ledger and a Consonance import file."""

    kind: Literal["sales_in"] = Field(description="`sales_in`.")
    folder: str = Field(
        default="receive", description="Which of each partner's `folders` is polled for reports."
    )
    poll_interval: int = Field(
        default=3600, ge=10, description="Seconds between two looks at the partner's folder."
    )


class MarketingFlow(PackageFlow):
    """Approved covers, copy and promo material, only once a title is released (embargo)."""

    kind: Literal["marketing"] = Field(description="`marketing`.")
    when: When | None = Field(
        default=None, description="Approval condition that releases the material; unset: manual."
    )


class FormatsFlow(PackageFlow):
    """EPUB, audio masters and accessibility files; each vendor receives only its own package."""

    kind: Literal["formats"] = Field(description="`formats`.")
    when: When | None = Field(
        default=None, description="Approval condition that sends the package; unset: manual."
    )
    file_variants: list[str] = Field(
        default_factory=list,
        description="Consonance production file variants this vendor receives, e.g. `EPUB`; "
        "empty: every variant.",
    )


class ArchiveFlow(FlowBase):
    """A dated, checksummed archive of metadata, workflow history and final assets."""

    kind: Literal["archive"] = Field(description="`archive`.")
    local_dir: ConfigPath | None = Field(
        default=None,
        description="Folder the archive is written to; unset: `archive` under `state_dir`. "
        "Listed `partners` receive a copy as well.",
    )

    requires_partners: ClassVar[bool] = False


FlowConfig = Annotated[
    ProductionFlow
    | OnixFeedFlow
    | IntakeFlow
    | FinanceOutFlow
    | SalesInFlow
    | MarketingFlow
    | FormatsFlow
    | ArchiveFlow,
    Field(discriminator="kind"),
]
"""One flow; ``kind`` says which model applies."""

FLOW_MODELS: dict[FlowKind, type[FlowBase]] = {
    FlowKind.PRODUCTION: ProductionFlow,
    FlowKind.ONIX_FEED: OnixFeedFlow,
    FlowKind.INTAKE: IntakeFlow,
    FlowKind.FINANCE_OUT: FinanceOutFlow,
    FlowKind.SALES_IN: SalesInFlow,
    FlowKind.MARKETING: MarketingFlow,
    FlowKind.FORMATS: FormatsFlow,
    FlowKind.ARCHIVE: ArchiveFlow,
}
