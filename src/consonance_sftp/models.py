"""Domain dataclasses and enums, named after Consonance's own nouns.

These are plain, immutable values: what the Consonance client returns, what flows reason about,
what formats turn into ONIX or manifests. They carry no I/O. Codes from ONIX code lists are
kept as the bare ONIX code strings (``"02"``, ``"BC"``, ``"A01"``); the Consonance client is the
one place that strips GraphQL's leading underscore (``_02``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import PurePosixPath


class FlowKind(enum.StrEnum):
    PRODUCTION = "production"
    ONIX_FEED = "onix_feed"
    INTAKE = "intake"
    FINANCE_OUT = "finance_out"
    SALES_IN = "sales_in"
    MARKETING = "marketing"
    FORMATS = "formats"
    ARCHIVE = "archive"


class Direction(enum.StrEnum):
    OUT = "out"
    IN = "in"


class DeliveryOutcome(enum.StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    SENT = "sent"
    SKIPPED = "skipped"  # identical content already at the final name
    FAILED = "failed"


class IntakeOutcome(enum.StrEnum):
    STORED = "stored"
    ATTACHED = "attached"
    QUARANTINED = "quarantined"
    FAILED = "failed"


class SubjectScheme(enum.StrEnum):
    BISAC = "BISAC"
    THEMA = "THEMA"
    BIC = "BIC"
    KEYWORD = "KEYWORD"


class AlertSeverity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


# --- Consonance records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Imprint:
    id: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """A person or organisation (Consonance ``Contact``: ``Person`` | ``Organisation``)."""

    id: int
    name: str
    key_names: str | None = None  # surname, for persons
    names_before_key: str | None = None
    is_organisation: bool = False
    biographical_note: str | None = None
    emails: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Contribution:
    id: int
    contributor: Contact
    role: str  # ONIX list 17, e.g. "A01"
    sequence_number: int = 1
    product_ids: tuple[int, ...] = ()  # empty: applies to every product of the work


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    scheme: SubjectScheme
    code: str
    description: str | None = None
    main: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    id: int
    amount: Decimal
    currency: str  # ISO 4217
    price_type: str  # ONIX list 58, e.g. "02" (RRP incl. tax)
    qualifier: str | None = None  # ONIX list 59, e.g. "05" (consumer)
    territories: tuple[str, ...] = ()  # ISO 3166-1 countries included; empty: unspecified
    effective_from: date | None = None
    effective_to: date | None = None

    @property
    def slot(self) -> str:
        """Consonance's ``SystemPrice`` key, ``CCC-TT-QQ``."""
        return f"{self.currency}-{self.price_type}-{self.qualifier or '00'}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketingText:
    id: int
    variant: str  # MarketingTextVariant, e.g. "SHORT_DESCRIPTION"
    text: str
    approval_status: str | None = None
    product_ids: tuple[int, ...] = ()
    embargo_from: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SupportingResource:
    """Covers and other images/resources attached to a work or its products."""

    id: int
    variant: str  # e.g. "FRONT_COVER"
    filename: str
    url: str | None = None
    status: str | None = None  # draft / approved
    content_type: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None
    product_ids: tuple[int, ...] = ()
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductionFile:
    """A print production, ebook or audio file (interior PDF, cover PDF, EPUB, audio master)."""

    id: int
    file_variant: str  # e.g. "INTERIOR", "COVER", "EPUB", "AUDIO"
    filename: str
    approval_status: str  # e.g. "APPROVED"
    allow_distribution: str | None = None
    file_format: str | None = None
    file_size: int | None = None
    url: str | None = None
    product_ids: tuple[int, ...] = ()
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductionRun:
    """A print run: the production spec sheet is generated from this."""

    id: int
    name: str | None = None
    product_ids: tuple[int, ...] = ()
    quantity: int | None = None
    delivery_date: date | None = None
    paper: str | None = None
    text_colour: str | None = None
    binding: str | None = None
    cover_type: str | None = None
    cover_colours: str | None = None
    finishes: tuple[str, ...] = ()
    embellishments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Product:
    """An individually traded item: a paperback, an ebook, an audiobook."""

    id: int
    work_id: int
    typename: str  # PhysicalBookProduct, ElectronicBookProduct, ElectronicAudioProduct, ...
    isbn13: str | None
    title: str
    subtitle: str | None = None
    product_form: str | None = None  # ONIX 2.1 list 7 as Consonance exposes it (BB, BC, DG, ...)
    publishing_status: str | None = None  # ONIX list 64
    publication_date: date | None = None
    prices: tuple[Price, ...] = ()
    for_sale_countries: tuple[str, ...] = ()
    not_for_sale_countries: tuple[str, ...] = ()
    for_sale_worldwide: bool = False
    height_mm: Decimal | None = None
    width_mm: Decimal | None = None
    thickness_mm: Decimal | None = None
    page_count: int | None = None
    edition_number: int | None = None
    language: str | None = None  # ONIX list 74, e.g. "eng"
    production_files: tuple[ProductionFile, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Todo:
    """A to-do on a work. Consonance's public API may not expose to-dos (a documented guess)."""

    id: int
    name: str
    completed: bool = False
    due_date: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Work:
    """A unique item of intellectual property on which products are based."""

    id: int
    title: str
    subtitle: str | None = None
    imprint: Imprint | None = None
    project_stage: str | None = None
    work_type: str | None = None
    contributions: tuple[Contribution, ...] = ()
    subjects: tuple[Subject, ...] = ()
    keywords: tuple[str, ...] = ()
    marketing_texts: tuple[MarketingText, ...] = ()
    supporting_resources: tuple[SupportingResource, ...] = ()
    production_runs: tuple[ProductionRun, ...] = ()
    products: tuple[Product, ...] = ()
    todos: tuple[Todo, ...] = ()
    contract_ids: tuple[int, ...] = ()
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Contract:
    id: int
    contract_name: str
    work_id: int | None = None
    signed_date: date | None = None
    licensed_rights: tuple[str, ...] = ()


# --- exchange records --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteEntry:
    """One entry of a remote directory listing."""

    path: PurePosixPath
    size: int
    mtime: float
    is_dir: bool = False

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryKey:
    """What makes a sent file unique: a second delivery with the same key is a duplicate."""

    partner: str
    remote_path: str
    sha256: str

    def __str__(self) -> str:
        return f"{self.partner}:{self.remote_path}:{self.sha256}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    severity: AlertSeverity
    kind: str  # e.g. "host_key_mismatch", "executor_silent", "preflight_failed"
    message: str
    partner: str | None = None
    flow: str | None = None
    details: dict[str, str] = field(default_factory=dict)
