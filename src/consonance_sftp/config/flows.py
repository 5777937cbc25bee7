"""Flow configuration: one model per flow kind, chosen by the ``kind`` field.

Fields shared by every kind live on ``FlowBase``; each kind adds what it needs. The kind-specific
fields are deliberately small for now; the issues that implement each exchange fill them in.
Each model's docstring says what the kind does *today* (it becomes the reference's
description), and ``runs_today``/``today`` let ``config check`` say so too.
The outbound package flows (production, marketing, formats) carry a delivery ``profile``
(``config.profiles``), one per flow with optional per-partner overrides.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AfterValidator, Field, field_validator, model_validator
from stdnum import ean

from consonance_sftp.config.archive import ArchiveDrill
from consonance_sftp.config.finance import (
    AgentRoute,
    FinanceCopy,
    PayeeRoute,
    ReportFormat,
    ReportKind,
    StatementsInbox,
    check_age_recipients,
    contact_key,
)
from consonance_sftp.config.profiles import DeliveryProfile
from consonance_sftp.config.profiles import StrictModel as StrictModel  # re-exported
from consonance_sftp.config.sales import ChannelMap, ExpectedReport, GenericMapping, check_currency
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
    """The condition that triggers an event-driven flow for a title. Every condition set must
    hold; the flow fires when the last of them becomes true (a Consonance change the poller
    sees, or the day a title comes within `days_before_publication` of its publication)."""

    project_stage: str | None = Field(
        default=None,
        description="The work's Consonance project stage, e.g. `Production approval`.",
    )
    todo_done: str | None = Field(
        default=None,
        description="Name of a to-do on the work that must be completed, e.g. `Files to "
        "printer`. Depends on a guess: Consonance's public API may not expose to-dos "
        "(docs/reference/consonance.md).",
    )
    publishing_status: str | None = Field(
        default=None,
        description="A product's publishing status, as its ONIX code (list 64), e.g. `04` "
        "(active) or `02` (forthcoming).",
    )
    days_before_publication: int | None = Field(
        default=None,
        ge=0,
        le=3650,
        description="The title is at most this many days before a product's publication date "
        "(0: on the day). Checked once a day and whenever a publication date changes.",
    )

    def conditions(self) -> list[str]:
        """The names of the conditions set."""
        return [name for name in type(self).model_fields if getattr(self, name) is not None]

    @model_validator(mode="after")
    def _something_set(self) -> When:
        if not self.conditions():
            raise ValueError(
                "set at least one of project_stage, todo_done, publishing_status, "
                "days_before_publication"
            )
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
    runs_today: ClassVar[bool] = True
    """Can this release run the kind? ``config check`` warns about an enabled one that cannot;
    a unit test keeps this in step with the kinds the service wires up."""
    today: ClassVar[str] = ""
    """What the kind does in this release where it falls short of its purpose (a note)."""

    def exchanges_with(self) -> list[str]:
        """Every partner the flow sends to or takes from, ``partners`` first."""
        return list(self.partners)

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


def _check_gln(value: str | None) -> str | None:
    if value is not None and (len(value) != 13 or not ean.is_valid(value)):
        raise ValueError(f"GLN {value!r} is not 13 digits with a valid check digit")
    return value


def _check_san(value: str | None) -> str | None:
    """A SAN: 6 digits and a modulus-11 check character (weights 7..2, X for 10)."""
    if value is None:
        return None
    san = value.replace("-", "").upper()
    ok = len(san) == 7 and san[:6].isdigit()
    if ok:
        total = sum(int(d) * w for d, w in zip(san[:6], range(7, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        ok = san[6] == ("X" if check == 10 else str(check))
    if not ok:
        raise ValueError(f"SAN {value!r} is not 7 characters with a valid check digit")
    return san


class OnixParty(StrictModel):
    """A publisher or co-publisher named in the ONIX: name, SAN, GLN."""

    name: str = Field(min_length=1, description="The name the recipient sees.")
    san: Annotated[str | None, AfterValidator(_check_san)] = Field(
        default=None, description="Standard Address Number (7 characters, check digit checked)."
    )
    gln: Annotated[str | None, AfterValidator(_check_gln)] = Field(
        default=None, description="GS1 Global Location Number (13 digits, check digit checked)."
    )


class OnixSupplier(OnixParty):
    """The supplier named in every `SupplyDetail`."""

    role: Literal["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"] = Field(
        default="01",
        description="ONIX list 93: `01` publisher to retailers, `02` exclusive distributor, "
        "`03` non-exclusive distributor, `04` wholesaler...",
    )


class OnixRecipient(StrictModel):
    """What one ONIX recipient wants. The same fields as ``formats.onix.RecipientRules``
    (converted with ``RecipientRules.model_validate(...)`` by the flow); a filter left unset
    means no restriction."""

    preset: Literal["google_play_books"] | None = Field(
        default=None,
        description="Start from a known recipient's rules; keys set here override it. "
        "`google_play_books`: ebooks only (EA/EB/EC/ED, DG), notifications 01/02/03/05 "
        "(never 04 block updates), `Market` on every supply, only the subject schemes and "
        "availability codes of onixcheck's Google profile, every product checked against "
        "that profile.",
    )
    onix_version: Literal["3.0", "3.1", "2.1"] = Field(
        default="3.0", description="ONIX version written for this recipient."
    )
    tag_style: Literal["reference", "short"] = Field(
        default="reference", description="ONIX vocabulary: reference names or short tags."
    )
    imprints: list[str] | None = Field(
        default=None, description="Only products of these imprints (names); unset: all."
    )
    product_forms: list[str] | None = Field(
        default=None,
        description="Only these product forms: Consonance (ONIX 2.1 list 7) or ONIX 3.0 "
        '(list 150) codes, e.g. `["BB", "BC"]`; unset: all.',
    )
    publishing_statuses: list[str] | None = Field(
        default=None,
        description="Only products with these publishing statuses (ONIX list 64, e.g. `04` "
        "active); unset: all.",
    )
    markets: list[str] | None = Field(
        default=None,
        description="Only products for sale in at least one of these countries (ISO 3166-1, "
        "e.g. `GB`); unset: all.",
    )
    price_types: list[str] | None = Field(
        default=None,
        description="Keep only prices of these types (ONIX list 58, e.g. `02` RRP incl. tax); "
        "unset: all.",
    )
    currencies: list[str] | None = Field(
        default=None, description="Keep only prices in these currencies (ISO 4217); unset: all."
    )
    require_prices: bool = Field(
        default=False, description="Leave out products with no price left after trimming."
    )
    notification_types: list[str] = Field(
        default_factory=lambda: ["01", "02", "03", "05"],
        description="Notification types (ONIX list 1) the recipient accepts; a product whose "
        "type is not accepted is sent as `03` (complete record).",
    )
    require_market: bool = Field(
        default=False, description="Every `ProductSupply` must name its `Market` (checked)."
    )
    mode: Literal["full", "delta"] = Field(
        default="delta",
        description="What a scheduled or manual run sends: every product (`full`) or only "
        "those changed since the last successful send (`delta`).",
    )
    send_deletions: bool = Field(
        default=True,
        description="Send deleted, withdrawn and filtered-out products the recipient holds "
        "as notification `05`.",
    )
    delete_statuses: list[str] = Field(
        default_factory=lambda: ["01", "11"],
        description="Publishing statuses (list 64) treated as deletions (cancelled, withdrawn).",
    )
    send_empty: bool = Field(
        default=False,
        description="Send a message with no products when nothing changed (otherwise nothing "
        "is sent).",
    )
    file_name: str = Field(
        default="{sender}_{recipient}_{sent:%Y%m%d%H%M%S}_{kind}.xml",
        description="File name template; fields `sender`, `recipient`, `sent` (a UTC "
        "datetime: `{sent:%Y%m%d}`), `kind` (full, delta, test). `.zip`/`.gz` is added for "
        "compression.",
    )
    compression: Literal["none", "zip", "gzip"] = Field(
        default="none", description="Send the message as is, zipped or gzipped."
    )
    addressee_name: str | None = Field(
        default=None, description="Name in the message header's `Addressee`; unset: none."
    )
    test_sample_size: int = Field(
        default=10, ge=1, description="Products in a test feed (`run FLOW --test`)."
    )
    publisher: OnixParty | None = Field(
        default=None,
        description='The `Publisher` (role 01) with its SAN/GLN, e.g. `{name = "Snowbooks '
        'Ltd", gln = "5012345678900"}`; unset: the work\'s publisher as held, else the '
        "flow's `sender_name`. Consonance's API does not say who publishes a product.",
    )
    co_publishers: list[OnixParty] = Field(
        default_factory=list, description="Co-publishers, each a `Publisher` with role 02."
    )
    supplier: OnixSupplier | None = Field(
        default=None,
        description="The `Supplier` of every `SupplyDetail` (name, SAN, GLN, list 93 `role`), "
        "e.g. a distributor with role `02`; unset: the publisher, role 01.",
    )
    sender_gln: Annotated[str | None, AfterValidator(_check_gln)] = Field(
        default=None,
        description="The sender's GLN in each message header (`SenderIdentifier` 06).",
    )
    sender_san: Annotated[str | None, AfterValidator(_check_san)] = Field(
        default=None,
        description="The sender's SAN in each message header (`SenderIdentifier` 07).",
    )
    sales_rights_type: Literal["01", "02"] = Field(
        default="01",
        description="`SalesRightsType` for rights derived from Consonance's for-sale "
        "countries: `01` exclusive, `02` non-exclusive (Consonance's API does not say).",
    )
    on_invalid_product: Literal["block", "skip"] = Field(
        default="block",
        description="A product that fails validation (the XSD, the recipient's rules, the "
        "preset's profile): `block` sends nothing and names it; `skip` sends the valid "
        "products, leaves it out and names it (ISBN and reason) in the run's output, on the "
        "audit trail and in one alert per feed. Either way `run` exits non-zero.",
    )
    subject_schemes: list[str] | None = Field(
        default=None,
        description="Only subjects in these schemes (ONIX list 27, e.g. `10` BISAC, `93` "
        "Thema, `20` keywords); unset: all (the `google_play_books` preset: the schemes of "
        "onixcheck's Google profile).",
    )

    @field_validator("file_name")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        sample = datetime(2026, 1, 1)
        try:
            value.format(sender="s", recipient="r", sent=sample, kind="full")
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"bad file name template {value!r}: {exc} (fields: sender, recipient, sent, kind)"
            ) from None
        return value


class SpreadsheetExport(StrictModel):
    """A CSV or XLSX metadata export for a partner who wants a spreadsheet: one row per
    product that passes the partner's recipient filters, prices trimmed as in its ONIX."""

    format: Literal["csv", "xlsx"] = Field(default="xlsx", description="`csv` or `xlsx`.")
    columns: list[str] = Field(
        default_factory=lambda: [
            "isbn13",
            "title",
            "contributors",
            "imprint",
            "product_form",
            "publishing_status",
            "publication_date",
            "price:GBP",
            "price:USD",
        ],
        min_length=1,
        description="Columns in order: field names (`isbn13`, `title`, `subtitle`, "
        "`contributors`, `imprint`, `publication_date`, `pages`, `bisac`, `thema`, ... see "
        "docs/reference/onix.md) or prices as `price:CUR` / `price:CUR:TYPE`.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description='Header text per column instead of its name, e.g. `{ "price:GBP:02" = '
        '"RRP (GBP)" }`.',
    )
    file_name: str = Field(
        default="{sender}_{recipient}_{sent:%Y%m%d}_metadata",
        description="File name template without the extension (`.csv`/`.xlsx` is added); "
        "fields `sender`, `recipient`, `sent`.",
    )
    only: bool = Field(
        default=False,
        description="Send only the spreadsheet to this partner, no ONIX message.",
    )

    @model_validator(mode="after")
    def _headers_name_columns(self) -> SpreadsheetExport:
        if unknown := sorted(set(self.headers) - set(self.columns)):
            raise ValueError(f"headers names columns not in `columns`: {', '.join(unknown)}")
        try:
            self.file_name.format(sender="s", recipient="r", sent=datetime(2026, 1, 1))
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"bad file name template {self.file_name!r}: {exc} "
                "(fields: sender, recipient, sent)"
            ) from None
        return self


class OnixFeedFlow(FlowBase):
    """ONIX full and delta feeds (and CSV/XLSX metadata) to distributors and agencies."""

    kind: Literal["onix_feed"] = Field(description="`onix_feed`.")
    sender_name: str = Field(
        default="Publisher",
        min_length=1,
        description="The sender named in each message header and in file names.",
    )
    contact_name: str | None = Field(
        default=None, description="Contact person in the message header."
    )
    email: str | None = Field(default=None, description="Contact e-mail in the message header.")
    default_language: str | None = Field(
        default=None,
        description="Default language of text in the header (ISO 639-2/B, e.g. `eng`).",
    )
    recipient: OnixRecipient = Field(
        default_factory=OnixRecipient,
        description="What every partner of this flow receives (version, filters, prices, "
        "notification types, file name, compression, full or delta).",
    )
    partner_recipients: dict[str, OnixRecipient] = Field(
        default_factory=dict,
        description="Per-partner rules instead of `recipient`, by partner name.",
    )
    spreadsheets: dict[str, SpreadsheetExport] = Field(
        default_factory=dict,
        description="CSV/XLSX metadata exports by partner name, sent with each (non-test) "
        "run, e.g. `[flows.NAME.spreadsheets.retailer]`.",
    )
    test_folder: str = Field(
        default="test",
        description="Sub-folder (under the flow's folder on the partner) that test feeds go "
        "to; test feeds never count as the recipient's last send.",
    )

    @model_validator(mode="after")
    def _rules_for_listed_partners(self) -> OnixFeedFlow:
        for table in ("partner_recipients", "spreadsheets"):
            if unknown := sorted(set(getattr(self, table)) - set(self.partners)):
                raise ValueError(f"{table} names partners not in `partners`: {', '.join(unknown)}")
        return self

    def recipient_for(self, partner: str) -> OnixRecipient:
        """The rules that apply to ``partner``."""
        return self.partner_recipients.get(partner, self.recipient)


def poll_cron(seconds: int) -> str:
    """The six-field cron (seconds first) that fires every ``seconds``, aligned on the clock.

    A cron step must divide its unit, or the gap after the wrap (e.g. ``*/7`` seconds: 56, then
    0) is shorter than asked: under a minute the interval must divide 60, under an hour it must
    be whole minutes dividing 60, otherwise whole hours dividing 24.
    """
    if seconds < 60:
        if 60 % seconds:
            raise ValueError(
                f"poll_interval {seconds} s does not divide a minute; use one of "
                "10, 12, 15, 20, 30 (or whole minutes)"
            )
        return f"*/{seconds} * * * * *"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        if rest or 60 % minutes:
            raise ValueError(
                f"poll_interval {seconds} s is not a whole number of minutes dividing an hour; "
                "use e.g. 60, 120, 300, 600, 900, 1200 or 1800"
            )
        return "0 * * * * *" if minutes == 1 else f"0 */{minutes} * * * *"
    hours, rest = divmod(seconds, 3600)
    if rest or 24 % hours:
        raise ValueError(
            f"poll_interval {seconds} s is not a whole number of hours dividing a day; "
            "use e.g. 3600, 7200, 10800, 21600, 43200 or 86400"
        )
    if hours == 24:
        return "0 0 0 * * *"
    return "0 0 * * * *" if hours == 1 else f"0 0 */{hours} * * *"


GIB = 1024**3


class IntakeScreening(StrictModel):
    """What every file taken in is checked for before anything processes it (docs/reference/
    intake.md lists each quarantine reason). A file that fails a check is kept, quarantined
    with the reason, never processed."""

    max_file_size: int = Field(
        default=4 * GIB,
        ge=1,
        description="Largest file accepted, in bytes (default 4 GiB); a larger one is taken in "
        "and quarantined (`too-large`). An empty file is always quarantined (`zero-bytes`).",
    )
    allow_archives: bool = Field(
        default=False,
        description="Accept zip archives (each entry is then matched on its own). Off: a zip "
        "is quarantined (`archive-not-accepted`). Other archive formats (gzip, tar, 7z, rar) "
        "are always quarantined. Zip-based documents (EPUB, DOCX, XLSX, IDML...) are not "
        "archives.",
    )
    archive_max_entries: int = Field(
        default=1000, ge=1, description="Most entries (files and folders) an archive may hold."
    )
    archive_max_total_size: int = Field(
        default=4 * GIB,
        ge=1,
        description="Most bytes an archive's entries may expand to, in total (default 4 GiB).",
    )
    archive_max_ratio: float = Field(
        default=200.0,
        gt=1,
        description="Highest expansion ratio (expanded bytes / archive bytes, overall and per "
        "entry); above it the archive is a zip bomb (`archive-ratio`).",
    )
    clamd_socket: ConfigPath | None = Field(
        default=None,
        description="clamd's UNIX socket (Debian: `/var/run/clamav/clamd.ctl`): every file is "
        "scanned (INSTREAM) and one with a finding quarantined (`malware`). Unset: no malware "
        "scan (the service says so once at start). clamd's `StreamMaxLength` must be at least "
        "`max_file_size`.",
    )
    clamd_timeout: float = Field(
        default=300.0, gt=0, description="Seconds one scan may take before it counts as failed."
    )


class IntakeFlowBase(FlowBase):
    """An intake flow (``intake``, ``sales_in``): each partner's inbox folder is polled, and
    each new, finished file is taken in exactly once (stored locally, checksummed, recorded)
    before anything else happens."""

    poll_interval: int = Field(
        default=300,
        ge=10,
        le=86400,
        description="Seconds between two looks at the partner's folder. Runs on the clock: "
        "under a minute it must divide 60, under an hour be whole minutes dividing 60, "
        "otherwise whole hours dividing 24.",
    )
    patterns: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description='File names taken from the folder (shell patterns, e.g. `["*.pdf", '
        '"*.csv"]`); other files are left on the server untouched. Default: every file. Two '
        "flows polling one folder must not share a name (`config check` reports an overlap): "
        "each file is taken once, by whichever flow polls first.",
    )

    screening: IntakeScreening = Field(
        default_factory=IntakeScreening,
        description="Checks every file passes before it is processed: size limit, empty "
        "files, archives (zip-slip, links, encryption, zip bombs), malware scan (clamd).",
    )

    @field_validator("poll_interval")
    @classmethod
    def _maps_onto_cron(cls, value: int) -> int:
        poll_cron(value)
        return value

    @field_validator("patterns")
    @classmethod
    def _plain_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or "/" in pattern:
                raise ValueError(
                    f"pattern {pattern!r} must be a non-empty file-name pattern without '/'"
                )
        return value

    def poll_cron(self) -> str:
        """The six-field cron (seconds first) of this flow's polls, e.g. 300 s ->
        ``0 */5 * * * *``."""
        return poll_cron(self.poll_interval)

    def accepts(self, name: str) -> bool:
        """Does a file of this name belong to this flow (one of ``patterns``)?"""
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)


IntakeKind = Literal["interior", "cover", "index", "jacket_copy", "image", "epub", "audio", "other"]
"""The kinds of file an intake flow attaches (its asset versions' kind)."""


MatchRule = Literal["manifest", "pattern", "isbn"]
_DEFAULT_RULES: tuple[MatchRule, ...] = ("manifest", "pattern", "isbn")


class IntakeMatching(StrictModel):
    """How an intake flow matches each file to a Consonance product and a kind, and what it
    does once it has: see docs/reference/intake-matching.md for the rules and the reasons a
    file goes to quarantine."""

    rules: list[MatchRule] = Field(
        default_factory=lambda: list(_DEFAULT_RULES),
        min_length=1,
        description="The matching rules tried in this order until one matches: `manifest` (a "
        "file beside the upload naming the ISBN), `pattern` (the regular expression below, on "
        "the path), `isbn` (a bare ISBN-13 or ISBN-10 anywhere in the name).",
    )
    pattern: str | None = Field(
        default=None,
        description="Regular expression searched in the file's path below the flow's folder, "
        "with named groups `isbn` (required), `kind`, `version` and `todo`, e.g. "
        "`(?P<isbn>97[89]\\d{10})_(?P<kind>[a-z]+)_v(?P<version>\\d+)`.",
    )
    manifests: list[str] = Field(
        default_factory=lambda: ["{name}.manifest.json", "{name}.manifest.csv"],
        description="Names a manifest beside a file may have (`{name}`: the file's name, "
        "`{stem}`: without its extension); `.csv` ones are read as CSV, others as JSON. The "
        "poll leaves manifests alone: they are read with their file.",
    )
    kind: IntakeKind | None = Field(
        default=None,
        description="The kind when neither the rule, a word of the name nor the extension says "
        "(e.g. `index` for an indexer); unset: such a file goes to quarantine.",
    )
    kinds: dict[str, IntakeKind] = Field(
        default_factory=dict,
        description='The partner\'s own words for kinds, e.g. `{ "umschlag" = "cover" }`, on '
        "top of the built-in ones (cover, cvr, interior, text, index, jacket, blurb, ...).",
    )
    check_content: bool = Field(
        default=True,
        description="Confirm the kind by the file's content (its first bytes): a `cover.pdf` "
        "that is a PNG goes to quarantine.",
    )
    todo: str | None = Field(
        default=None,
        description="Name of the work's to-do that a received file completes (or gets a note "
        "on); `{kind}` is replaced by the kind, e.g. `Revised {kind} received`. A pattern's "
        "or manifest's `todo` (a name, or a to-do id) takes precedence.",
    )
    approve: bool = Field(
        default=False,
        description="Attach files as approved (production files `APPROVED`, supporting "
        "resources `APPROVED`), so outbound flows may send them at once. Default: awaiting a "
        "person's approval in Consonance (`AWAITING_APPROVAL`, resources `DRAFT`).",
    )
    todo_action: Literal["complete", "note", "none"] = Field(
        default="complete",
        description="What a matched file does to its to-do: `complete` it, add a `note` to "
        "the work naming the file and its version, or `none`.",
    )

    @field_validator("pattern")
    @classmethod
    def _usable_pattern(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        groups = set(compiled.groupindex)
        if "isbn" not in groups:
            raise ValueError("the pattern needs a named group (?P<isbn>...)")
        if unknown := sorted(groups - {"isbn", "kind", "version", "todo"}):
            raise ValueError(
                f"unknown named groups {', '.join(unknown)} (use isbn, kind, version, todo)"
            )
        return value

    @field_validator("manifests")
    @classmethod
    def _name_templates(cls, value: list[str]) -> list[str]:
        for template in value:
            if "{name}" not in template and "{stem}" not in template:
                raise ValueError(f"manifest name {template!r} must contain {{name}} or {{stem}}")
            if "/" in template:
                raise ValueError(f"manifest name {template!r} must not contain '/'")
        return value

    @model_validator(mode="after")
    def _pattern_when_used(self) -> IntakeMatching:
        # The default rules include `pattern`, skipped without one; listed explicitly, it is a
        # mistake to leave it out.
        if "rules" in self.model_fields_set and "pattern" in self.rules and self.pattern is None:
            raise ValueError("rules lists `pattern` but no `pattern` is set")
        return self


class IntakeFlow(IntakeFlowBase):
    """Files from designers, typesetters, indexers and cover artists. Each new, finished file
    is taken in exactly once and stored durably (checksummed, on the record); with `match`
    set, it is then matched to a Consonance product and a kind (manifest, pattern, ISBN in
    the name), checked by content, versioned, attached to the product (production file or
    supporting resource) and its to-do completed; what cannot be matched goes to quarantine
    with a reason (`consonance-sftp quarantine list`). Every file is screened first (names,
    size, archives, malware with clamd: `screening`); an accepted zip's entries are matched one
    by one."""

    kind: Literal["intake"] = Field(description="`intake`.")
    today: ClassVar[str] = (
        "polls and stores each new file durably (state_dir/inbox, checksummed, in the intake "
        "ledger); matching files to Consonance products and attaching them runs only where "
        "the flow sets `match` (or `partner_match`): without it files wait, stored"
    )
    folder: str = Field(
        default="receive", description="Which of each partner's `folders` is polled for files."
    )
    subfolders: bool = Field(
        default=False,
        description="Also take the files in sub-folders of the polled folder (up to 4 levels; "
        "hidden folders, `processed_folder` and `temp_folder` are never entered), e.g. "
        "`9781900200011/interior/book.pdf`: a `match.pattern` sees the path below the folder.",
    )
    match: IntakeMatching | None = Field(
        default=None,
        description="Match each file to a title and attach it in Consonance (see "
        "`IntakeMatching`); unset: files are stored, awaiting processing.",
    )
    partner_match: dict[str, IntakeMatching] = Field(
        default_factory=dict,
        description="Per-partner matching instead of `match`, by partner name.",
    )

    @model_validator(mode="after")
    def _match_for_listed_partners(self) -> IntakeFlow:
        if unknown := sorted(set(self.partner_match) - set(self.partners)):
            raise ValueError(
                f"partner_match names partners not in `partners`: {', '.join(unknown)}"
            )
        return self

    def match_for(self, partner: str) -> IntakeMatching | None:
        """The matching that applies to ``partner`` (None: store only)."""
        return self.partner_match.get(partner, self.match)


class FinanceOutFlow(FlowBase):
    """Royalty statements, rights reports and contract data, each payee only its own.

    Statements: finance drops each batch exported from Consonance (a folder or a zip of PDFs,
    one per payee) into `statements`; at each tick the flow takes in new batches, keeps the
    originals, and resolves every statement to exactly one payee (file name **and** text) and
    its destinations. Nothing leaves before `consonance-sftp finance approve BATCH` and
    `finance send BATCH`. Reports: with `reports`, each run renders the rights report and/or
    the contract export from Consonance's contracts and delivers them to `partners`.
    See docs/how-to/finance-statements.md."""

    kind: Literal["finance_out"] = Field(description="`finance_out`.")
    requires_partners: ClassVar[bool] = False
    partners: list[str] = Field(
        default_factory=list,
        description="Rights partners and finance teams that receive the scheduled `reports` "
        "(statements go where `payees`, `agents` and `finance_copy` say).",
    )
    statements: ConfigPath | None = Field(
        default=None,
        description="The folder finance drops statement batches into (a sub-folder or a "
        "`.zip` per batch; unset: `finance/statements` under `state_dir`).",
    )
    statements_from: StatementsInbox | None = Field(
        default=None,
        description="An SFTP inbox finance uploads batches to (a zip per batch): each new one "
        "is fetched into `statements` at the flow's run.",
    )
    statement_pattern: str = Field(
        default="*_{contact}.pdf",
        description="Statement file names: a glob with one `{contact}` standing for the "
        "payee's Consonance contact ID, e.g. `statement_*_{contact}.pdf`.",
    )
    settle_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="A batch folder is taken once no file in it changed for this long (a "
        "zip once it opens whole).",
    )
    payees: dict[str, PayeeRoute] = Field(
        default_factory=dict,
        description="Contact ID -> that payee's own destination (partner, folder, "
        "encryption), or held for e-mail.",
    )
    agents: dict[str, AgentRoute] = Field(
        default_factory=dict,
        description="Agency name -> its partner and the contact IDs it represents; each "
        "payee's statements go into its own sub-folder there.",
    )
    finance_copy: FinanceCopy | None = Field(
        default=None, description="A copy of every statement sent, for finance."
    )
    companions: bool = Field(
        default=True,
        description="Send a CSV and a JSON companion beside each statement PDF (BISG royalty "
        "statement fields: statement date, period, payee, contracts, ISBNs).",
    )
    publisher: str | None = Field(
        default=None,
        description="The publisher's name on reports and companions (the licensor), e.g. "
        "`Sandbox Books`.",
    )
    currency: str | None = Field(
        default=None,
        description="The Consonance account's currency (ISO 4217, e.g. `GBP`): the companions "
        "state advances in it (Consonance stores amounts without one).",
    )
    reports: list[ReportKind] = Field(
        default_factory=list,
        description="Reports rendered at each run for `partners`: `rights` (rights held per "
        "work, from contracts' licensed rights) and/or `contracts` (contract data export).",
    )
    report_formats: list[ReportFormat] = Field(
        default_factory=lambda: list[ReportFormat](("pdf", "csv")),
        description="The formats of each report: `pdf`, `csv`, `xlsx`.",
    )

    @field_validator("payees")
    @classmethod
    def _payee_keys(cls, value: dict[str, PayeeRoute]) -> dict[str, PayeeRoute]:
        for key in value:
            contact_key(key)
        return value

    @field_validator("statement_pattern")
    @classmethod
    def _one_contact(cls, value: str) -> str:
        if value.count("{contact}") != 1 or "/" in value:
            raise ValueError(
                "a file name (no folder) with exactly one {contact}, e.g. "
                "'statement_*_{contact}.pdf'"
            )
        return value

    @model_validator(mode="after")
    def _one_route_each(self) -> FinanceOutFlow:
        seen = {int(k): f"payees.{k}" for k in self.payees}
        for name, agent in self.agents.items():
            for contact in agent.payees:
                if contact in seen:
                    raise ValueError(
                        f"contact {contact} is routed twice ({seen[contact]} and agents.{name})"
                        ": a statement goes to one destination (plus the finance copy)"
                    )
                seen[contact] = f"agents.{name}"
        if self.reports and not self.partners:
            raise ValueError("reports need partners to receive them")
        return self

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str | None) -> str | None:
        return None if value is None else check_currency(value)

    @property
    def publisher_name(self) -> str:
        """The licensor shown on reports and companions."""
        return self.publisher or "(publisher not configured)"

    def exchanges_with(self) -> list[str]:
        routed = [r.partner for r in self.payees.values() if r.partner]
        routed += [a.partner for a in self.agents.values()]
        extra = [x.partner for x in (self.finance_copy, self.statements_from) if x is not None]
        return list(dict.fromkeys([*self.partners, *routed, *extra]))

    def route_of(self, contact: int) -> tuple[str, PayeeRoute | AgentRoute] | None:
        """The payee's route: ``("payee", route)`` or ``("agent:<name>", route)``."""
        if (own := self.payees.get(str(contact))) is not None:
            return "payee", own
        for name, agent in self.agents.items():
            if contact in agent.payees:
                return f"agent:{name}", agent
        return None


class SalesInFlow(IntakeFlowBase):
    """Distributor sales and usage reports. Each new, finished report is taken in exactly once
    and stored durably, then read (its layout named or recognised), every line validated
    (ISBN checksum, product known in Consonance, currency, dates, numbers), its totals
    reconciled with the file's own, and loaded into the sales ledger in one transaction:
    lines an earlier report already brought (the same report under another name, an
    overlapping one) are kept as duplicates and never emitted again. Each loaded report gets
    a Consonance sales-import file (and a summary CSV) in `outbox`. A report no layout fits
    goes to quarantine with the header seen; with `deliver_to`, each import file goes to a
    finance partner too. See docs/reference/sales-in.md."""

    kind: Literal["sales_in"] = Field(description="`sales_in`.")
    today: ClassVar[str] = ""
    folder: str = Field(
        default="receive", description="Which of each partner's `folders` is polled for reports."
    )
    poll_interval: int = Field(
        default=3600,
        ge=10,
        le=86400,
        description="Seconds between two looks at the partner's folder. Runs on the clock: "
        "under a minute it must divide 60, under an hour be whole minutes dividing 60, "
        "otherwise whole hours dividing 24.",
    )
    layout: str = Field(
        default="auto",
        description="The reports' layout (`consonance-sftp sales check FILE` names it), "
        "`auto` (recognised by its header) or `generic` (read through `generic`).",
    )
    partner_layouts: dict[str, str] = Field(
        default_factory=dict, description="Per-partner layout instead of `layout`."
    )
    generic: GenericMapping | None = Field(
        default=None,
        description="The column mapping of a `generic` layout (a partner's own CSV/XLSX).",
    )
    channels: ChannelMap = Field(
        default_factory=ChannelMap,
        description="The partner's channels/territories -> Consonance channel IDs.",
    )
    partner_channels: dict[str, ChannelMap] = Field(
        default_factory=dict, description="Per-partner channel map instead of `channels`."
    )
    on_rejected: Literal["hold", "load_valid"] = Field(
        default="hold",
        description="A report with rejected lines: `hold` it (nothing goes into an import "
        "file until `sales release`), or `load_valid` (its valid lines go; the rejected are "
        "listed).",
    )
    outbox: ConfigPath | None = Field(
        default=None,
        description="Folder the import files and summaries are written to (unset: "
        "`sales/outbox` under `state_dir`).",
    )
    import_per_report: bool = Field(
        default=True,
        description="Write each loaded report's import file at once; false: its lines wait "
        "for `consonance-sftp sales export --period YYYY-MM` (one file per month).",
    )
    deliver_to: str | None = Field(
        default=None,
        description="A finance partner (a key of `[partners]`) that each import file and its "
        "summary are also delivered to, at the flow's next tick, through the engine (on the "
        "delivery ledger: each file once).",
    )
    deliver_folder: str = Field(
        default="send", description="Which of `deliver_to`'s `folders` receives them."
    )

    def exchanges_with(self) -> list[str]:
        return list(dict.fromkeys([*self.partners, *filter(None, [self.deliver_to])]))

    house_currency: str = Field(
        default="GBP",
        description="The Consonance account's default currency (ISO 4217): lines in another "
        "currency fill the import's `Original currency` columns.",
    )
    check_products: bool = Field(
        default=True,
        description="Reject lines whose ISBN is no product in Consonance (read from the "
        "change detector's snapshots; never checked before a first poll).",
    )
    calendar: list[ExpectedReport] = Field(
        default_factory=list,
        description="When each partner's report is due; a missing one raises an "
        "`expected_report_missing` alert.",
    )

    @field_validator("house_currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        return check_currency(value)

    @model_validator(mode="after")
    def _sales_partners(self) -> SalesInFlow:
        for what, names in (
            ("partner_layouts", set(self.partner_layouts)),
            ("partner_channels", set(self.partner_channels)),
            ("calendar", {e.partner for e in self.calendar}),
        ):
            if unknown := sorted(names - set(self.partners)):
                raise ValueError(f"{what} names partners not in `partners`: {', '.join(unknown)}")
        if self.generic is None and "generic" in (self.layout, *self.partner_layouts.values()):
            raise ValueError('layout "generic" needs a `generic` column mapping')
        return self

    def layout_for(self, partner: str) -> str:
        """The layout name that applies to ``partner``."""
        return self.partner_layouts.get(partner, self.layout)

    def channels_for(self, partner: str) -> ChannelMap:
        """The channel map that applies to ``partner``."""
        return self.partner_channels.get(partner, self.channels)


class MarketingFlow(PackageFlow):
    """Approved covers, copy and promo material, only once a title is released (embargo)."""

    kind: Literal["marketing"] = Field(description="`marketing`.")
    when: When | None = Field(
        default=None, description="Approval condition that releases the material; unset: manual."
    )
    embargo: Literal["publication_date", "none"] = Field(
        default="publication_date",
        description="When the material may go out: from the title's earliest publication date "
        "(less `release_days_before`), or as soon as it is approved (`none`).",
    )
    release_days_before: int = Field(
        default=0,
        ge=0,
        description="Days before the publication date the embargo lifts (e.g. 90 for "
        "pre-order marketing).",
    )
    cover_variants: list[str] = Field(
        default_factory=lambda: ["FRONT_COVER"],
        description="Consonance supporting-resource variants sent as the cover image (the "
        "newest approved one; a replaced cover supersedes the old).",
    )
    promo_variants: list[str] = Field(
        default_factory=lambda: ["SAMPLE_CONTENT"],
        description="Supporting-resource variants sent as promotional material.",
    )
    withdrawn_statuses: list[str] = Field(
        default_factory=lambda: ["01", "11", "12"],
        description="Publishing statuses (ONIX list 64) that withdraw a title: cancelled, "
        "withdrawn from sale, recalled. Partners whose profile has `withdraw = true` then have "
        "what was sent removed.",
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
    """A dated, checksummed archive of metadata, workflow history and final assets: one
    BagIt bag per run, as a tar (zstd by default, age-encrypted to `age_recipients` when set),
    with a `sha256sum` sidecar, written into `local_dir` and delivered to `partners`. Readable
    without this tool (`tar`, `sha256sum -c`, `age -d`). See docs/how-to/archive.md."""

    kind: Literal["archive"] = Field(description="`archive`.")
    today: ClassVar[str] = (
        "writes and delivers each run's archive, full or incremental (an asset already "
        "archived is referenced through the bag's fetch.txt, not sent again); applies the "
        "retention policy after each run (archive and partner copies, on the audit trail); "
        "`archive list`, `archive verify` and `archive restore` show and read them back "
        "(locally or from a partner); restore drills run when due"
    )
    local_dir: ConfigPath | None = Field(
        default=None,
        description="Folder each archive is written to (unset: `archive/<flow>` under "
        "`state_dir`); listed `partners` receive a copy.",
    )
    organisation: str | None = Field(
        default=None,
        description="The publisher's name, as the bag's `Source-Organization`.",
    )
    compression: Literal["none", "zstd"] = Field(
        default="zstd", description="`zstd` (read with `tar --zstd -xf`) or `none`."
    )
    age_recipients: list[str] = Field(
        default_factory=list,
        description="Encrypt each archive to these age public keys (`age1...`) or SSH public "
        "keys; keep the private key somewhere other than this machine.",
    )
    include_assets: bool = Field(
        default=True,
        description="Archive the current version of every asset the store holds a file for.",
    )
    mode: Literal["full", "incremental"] = Field(
        default="full",
        description="`full`: every archive carries every asset. `incremental`: an asset whose "
        "SHA-256 an earlier archive of this flow still holds (since the last full one) is "
        "listed in the manifest and referenced in the bag's `fetch.txt`, not sent again; "
        "metadata and history are always carried.",
    )
    full_every: int = Field(
        default=7,
        ge=1,
        description="With `mode = incremental`: every Nth run is full (a self-contained "
        "archive), counted in runs since the last full one; a run is also full when the last "
        "full archive is gone or failed its verification. `1`: always full.",
    )
    keep_last: int = Field(default=0, ge=0, description="Retention: keep the N newest archives.")
    keep_daily: int = Field(
        default=0, ge=0, description="Retention: keep the newest archive of each of N days."
    )
    keep_weekly: int = Field(
        default=0, ge=0, description="Retention: keep the newest archive of each of N ISO weeks."
    )
    keep_monthly: int = Field(
        default=0, ge=0, description="Retention: keep the newest archive of each of N months."
    )
    keep_yearly: int = Field(
        default=0, ge=0, description="Retention: keep the newest archive of each of N years."
    )
    keep_within: str | None = Field(
        default=None,
        description="Retention: keep every archive made within this span of the newest one, "
        "as `30d`, `2w`, `12h` or `1w3d`.",
    )
    retention_timezone: str = Field(
        default="UTC",
        description="The IANA time zone whose calendar makes the retention's days, weeks, "
        "months and years. With no `keep_*` set, no archive is ever removed (restic's "
        "`forget` semantics; the last verified archive and the bases of kept incremental "
        "archives are always kept; nothing is removed while no archive is verified).",
    )
    drill: ArchiveDrill = Field(
        default_factory=ArchiveDrill,
        description="Restore drills: archives read back on a schedule (`[flows.<name>.drill]`).",
    )

    requires_partners: ClassVar[bool] = False

    @field_validator("age_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return check_age_recipients(value)

    @field_validator("keep_within")
    @classmethod
    def _within(cls, value: str | None) -> str | None:
        if value is not None:
            span_of(value)
        return value

    @field_validator("retention_timezone")
    @classmethod
    def _retention_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as Europe/London)"
            ) from None
        return value

    @property
    def retains(self) -> bool:
        """Is any retention configured (else every archive is kept)?"""
        counts = (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)
        return self.keep_within is not None or any(counts) or self.keep_yearly > 0


_SPAN = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def span_of(text: str) -> timedelta:
    """``30d``, ``2w``, ``12h``, ``1w3d``, ``90m`` as a duration (longer than zero)."""
    match = _SPAN.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a span such as 30d, 2w, 12h or 1w3d")
    weeks, days, hours, minutes = (int(g or 0) for g in match.groups())
    span = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes)
    if span <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return span


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
