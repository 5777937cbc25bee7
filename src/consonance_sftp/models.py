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
    WITHDRAWN = "withdrawn"  # sent, then removed from the partner (a withdrawn title)


class Verification(enum.StrEnum):
    """How the bytes a partner's server holds were proven to be ours: the one vocabulary of the
    transport's results, the engine's stage checkpoints and the delivery ledger's
    ``verified_by`` column. Every value but ``SIZE`` is a hash match."""

    CHECK_FILE = "check_file"  # the SFTP ``check-file`` extension (SHA-256 computed by the server)
    SHELL = "shell"  # ``sha256sum`` (the configured hash command) run on the server
    SHELL_SHA1 = "shell-sha1"  # a ``sha1sum`` command, compared with the local file's SHA-1
    SHELL_MD5 = "shell-md5"  # an ``md5sum`` command, compared with the local file's MD5
    READ_BACK = "read_back"  # the file downloaded again and hashed here
    SERVER_HASH = "server_hash"  # an FTP server's HASH / XSHA256 command (SHA-256)
    SIZE = "size"  # the size only: never a default, only ``checksum = "size"`` configured

    @property
    def by_hash(self) -> bool:
        return self is not Verification.SIZE


class WorkState(enum.StrEnum):
    """What became of a piece of the engine's durable work (a delivery, an intake, a flow tick
    or a flow event), in the words ``status`` prints. The engine maps its executor's states onto
    these (``engine.work_state``); nothing above the engine sees the executor's own strings.

    Declared in the order ``status`` has always counted them (the executor's names sorted)."""

    CANCELLED = "cancelled"
    DELAYED = "delayed"
    QUEUED = "queued"
    FAILED = "failed"
    GAVE_UP = "max_recovery_attempts_exceeded"  # crashed too often while running
    RUNNING = "running"
    DONE = "done"

    @property
    def ended_failed(self) -> bool:
        """It ended without doing its work: ``retry`` runs it again."""
        return self in (WorkState.FAILED, WorkState.GAVE_UP)

    @property
    def finished(self) -> bool:
        """It will not change by itself any more."""
        return self in (WorkState.DONE, WorkState.FAILED, WorkState.GAVE_UP, WorkState.CANCELLED)


class AuditAction(enum.StrEnum):
    """Every action written to the audit trail. Each is documented in docs/how-to/audit.md
    ("What the actions mean"); a unit test fails for one that is not."""

    # A delivery ledger row written (``delivery.<outcome>``), and the operator's acts.
    DELIVERY_PLANNED = "delivery.planned"
    DELIVERY_RUNNING = "delivery.running"
    DELIVERY_SENT = "delivery.sent"
    DELIVERY_SKIPPED = "delivery.skipped"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_WITHDRAWN = "delivery.withdrawn"
    DELIVERY_HELD = "delivery.held"
    DELIVERY_RELEASED = "delivery.released"
    DELIVERY_RETRY = "delivery.retry"
    DELIVERY_RESEND = "delivery.resend"
    # Pauses, and a pinned host key.
    PARTNER_PAUSED = "partner.paused"
    PARTNER_RESUMED = "partner.resumed"
    PARTNER_TRUST = "partner.trust"
    PARTNER_TEST_FILE = "partner.test_file"
    FLOW_PAUSED = "flow.paused"
    FLOW_RESUMED = "flow.resumed"
    FLOW_TICK = "flow.tick"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    ALERT_NOTIFIED = "alert.notified"
    ALERT_NOTIFY_FAILED = "alert.notify_failed"
    # The web console's users (``users add|passwd|disable|enable|remove``, ``users token``)
    # and refused logins.
    USER_ADDED = "user.added"
    USER_LOGIN_REFUSED = "user.login_refused"
    USER_TOKEN_ADDED = "user.token_added"  # noqa: S105 (an action name)
    USER_TOKEN_REVOKED = "user.token_revoked"  # noqa: S105 (an action name)
    USER_PASSWORD_CHANGED = "user.password_changed"  # noqa: S105 (an action name)
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_REMOVED = "user.removed"
    # An intake ledger row written (``intake.<outcome>``), and what happens around it.
    INTAKE_STORED = "intake.stored"
    INTAKE_ATTACHED = "intake.attached"
    INTAKE_QUARANTINED = "intake.quarantined"
    INTAKE_FAILED = "intake.failed"
    INTAKE_DUPLICATE = "intake.duplicate"
    INTAKE_REJECTED_ROW = "intake.rejected"
    INTAKE_ASSIGNED = "intake.assigned"
    INTAKE_SUPERSEDED_INCOMPLETE_ROW = "intake.superseded-incomplete"
    INTAKE_SUPERSEDED_INCOMPLETE = "intake.superseded_incomplete"
    INTAKE_POST_ACTION = "intake.post_action"
    INTAKE_POST_ACTION_FAILED = "intake.post_action_failed"
    INTAKE_IGNORED = "intake.ignored"
    INTAKE_ACKNOWLEDGED = "intake.acknowledged"
    INTAKE_ACK_FAILED = "intake.ack_failed"
    INTAKE_ENTRY = "intake.entry"  # one entry of an accepted archive, and what became of it
    # Ledger rows on the trail.
    LEDGER_WRITE = "ledger.write"
    LEDGER_SEAL = "ledger.seal"
    # Outbound packages (production, formats, marketing).
    PACKAGE_PREPARED = "package.prepared"
    PACKAGE_BLOCKED = "package.blocked"
    PACKAGE_HELD = "package.held"
    PACKAGE_WITHDRAWN = "package.withdrawn"
    PACKAGE_WITHDRAW_KEPT = "package.withdraw_kept"
    # ONIX feeds, test feeds and spreadsheets.
    ONIX_FEED_PREPARED = "onix.feed.prepared"
    ONIX_FEED_SENT = "onix.feed.sent"
    ONIX_FEED_BLOCKED = "onix.feed.blocked"
    ONIX_FEED_SKIPPED = "onix.feed.skipped"
    ONIX_FEED_EMPTY = "onix.feed.empty"
    ONIX_FEED_FAILED = "onix.feed.failed"
    ONIX_TEST_FEED_PREPARED = "onix.test_feed.prepared"
    ONIX_TEST_FEED_SENT = "onix.test_feed.sent"
    ONIX_SPREADSHEET_PREPARED = "onix.spreadsheet.prepared"
    ONIX_SPREADSHEET_SENT = "onix.spreadsheet.sent"
    # Royalty statements (the finance ledger): a batch taken in, a statement moved to a state
    # (``finance.statement_<state>``), a batch approved.
    FINANCE_BATCH_RECEIVED = "finance.batch_received"
    FINANCE_STATEMENT_RECEIVED = "finance.statement_received"
    FINANCE_STATEMENT_RESOLVED = "finance.statement_resolved"
    FINANCE_STATEMENT_HELD = "finance.statement_held"
    FINANCE_STATEMENT_QUARANTINED = "finance.statement_quarantined"
    FINANCE_STATEMENT_APPROVED = "finance.statement_approved"
    FINANCE_STATEMENT_SENT = "finance.statement_sent"
    FINANCE_STATEMENT_FAILED = "finance.statement_failed"
    FINANCE_BATCH_APPROVED = "finance.batch_approved"
    # Archives: one written by a run of an archive flow; one read back by `archive verify`.
    ARCHIVE_WRITTEN = "archive.written"
    ARCHIVE_VERIFIED = "archive.verified"
    # A restore drill (``app.archive_drill``): archives read back, by schedule or on demand.
    ARCHIVE_DRILL = "archive.drill"
    # An archive retention removed (subject ``archive:<file name>``): ``archive list`` and the
    # drills no longer offer it (``app.archive_handler.is_deleted``).
    ARCHIVE_DELETED = "archive.deleted"


class IntakeOutcome(enum.StrEnum):
    STORED = "stored"
    ATTACHED = "attached"
    QUARANTINED = "quarantined"
    FAILED = "failed"
    # The same bytes as the current version of its asset: recorded, nothing attached.
    DUPLICATE = "duplicate"
    # Quarantined, then rejected by a person (``quarantine reject``).
    REJECTED = "rejected"
    # Taken while the partner was still writing it: a later version of the same name begins
    # with exactly these bytes (see docs/how-to/inbox.md, "A file taken before it was whole").
    SUPERSEDED_INCOMPLETE = "superseded-incomplete"


class SubjectScheme(enum.StrEnum):
    BISAC = "BISAC"
    THEMA = "THEMA"
    BIC = "BIC"
    KEYWORD = "KEYWORD"


class AlertSeverity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AssetKind(enum.StrEnum):
    """What an outbound file is, as delivery profiles and preflight name it."""

    INTERIOR_PDF = "interior_pdf"
    COVER_PDF = "cover_pdf"
    SPEC_SHEET = "spec_sheet"
    EPUB = "epub"
    AUDIO = "audio"
    ACCESSIBILITY = "accessibility"
    COVER_IMAGE = "cover_image"
    JACKET_COPY = "jacket_copy"
    AUTHOR_BIO = "author_bio"
    PROMO = "promo"


# --- Consonance records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Identifier:
    """An identifier with its ONIX type code (lists 5, 16, 44, 92...); ``type_name`` for 01."""

    id_type: str
    value: str
    type_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Territory:
    """An ONIX territory: ISO 3166-1 countries and ONIX regions (``WORLD``), in and out."""

    countries_included: tuple[str, ...] = ()
    regions_included: tuple[str, ...] = ()
    countries_excluded: tuple[str, ...] = ()
    regions_excluded: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SalesRights:
    rights_type: str  # ONIX list 46: 01 exclusive, 02 non-exclusive, 03 not for sale
    territory: Territory


@dataclass(frozen=True, slots=True, kw_only=True)
class Extent:
    extent_type: str  # ONIX list 23, e.g. "00" main content pages
    value: str
    unit: str  # ONIX list 24, e.g. "03" pages


@dataclass(frozen=True, slots=True, kw_only=True)
class Audience:
    code_type: str  # ONIX list 29, e.g. "01" ONIX audience codes
    value: str  # e.g. list 28 "01" general/trade


@dataclass(frozen=True, slots=True, kw_only=True)
class RelatedProduct:
    relation_codes: tuple[str, ...]  # ONIX list 51, e.g. "06" alternative format, "27" e-version
    isbn13: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProductPart:
    """One component of a multi-part product (Consonance ``ProductPart``; ONIX ``ProductPart``)."""

    form: str  # ONIX list 150
    form_details: tuple[str, ...] = ()  # ONIX list 175
    isbn13: str | None = None  # the part as a product of its own, if it is one
    number_of_copies: int = 1
    primary: bool = False  # ONIX PrimaryPart; Consonance's ProductPart has no such field


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishingDate:
    """A ``PublishingDate`` as ONIX held it: role (list 163, e.g. 02 sales embargo), the date as
    written (``YYYYMMDD``, ``YYYYMM``, ``YYYY``...) and its ``dateformat`` (list 55) if given."""

    role: str
    value: str
    dateformat: str | None = None


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
    identifiers: tuple[Identifier, ...] = ()  # ONIX list 44: 16 ISNI, 21 ORCID


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
    regions: tuple[str, ...] = ()  # ONIX regions included, e.g. "WORLD"
    excluded_territories: tuple[str, ...] = ()  # countries excluded from ``regions``
    tax_rate_code: str | None = None  # ONIX list 62, e.g. "Z" zero-rated
    tax_rate_percent: Decimal | None = None

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
    text_format: str | None = None  # ONIX list 34, e.g. "05" XHTML; None: plain text
    audiences: tuple[str, ...] = ()  # ONIX list 154 ContentAudience; empty: 00 unrestricted


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
    caption: str | None = None
    audiences: tuple[str, ...] = ()  # ONIX list 154 ContentAudience; empty: 00 unrestricted


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
    # Amazon's id of the product (``B0...`` for a Kindle ebook): KDP reports name ebooks by it.
    asin: str | None = None
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
    # ONIX-only detail: optional, filled by the ONIX reader and used by the ONIX writer.
    record_reference: str | None = None  # ONIX RecordReference; default: the ISBN-13
    doi: str | None = None
    onix_product_form: str | None = None  # ONIX 3.0 list 150; None: mapped from product_form
    product_form_details: tuple[str, ...] = ()  # ONIX list 175, e.g. "E101" EPUB
    edition_types: tuple[str, ...] = ()  # ONIX list 21
    edition_statement: str | None = None
    extents: tuple[Extent, ...] = ()
    audiences: tuple[Audience, ...] = ()
    sales_rights: tuple[SalesRights, ...] = ()  # empty: derived from the for-sale fields
    related_products: tuple[RelatedProduct, ...] = ()
    availability: str | None = None  # ONIX list 65, e.g. "20" available
    supplier_name: str | None = None
    supplier_role: str | None = None  # ONIX list 93
    # A GTIN (ProductIDType 03) for an item with no ISBN (Consonance's documented ``gtin``).
    gtin: str | None = None
    # ONIX list 57 for a product with no price, as held (e.g. 01 free of charge); None: 02
    # (price to be announced), or 01 when every price is zero.
    unpriced_item_type: str | None = None
    # Every PublishingDate read from ONIX (any role, any precision); role 01 is written from
    # ``publication_date`` when that is set.
    publishing_dates: tuple[PublishingDate, ...] = ()
    # ONIX list 144 EpubTechnicalProtection of a digital product (00 none, 01 DRM, 02 digital
    # watermarking, 03 Adobe DRM...), as read from ONIX; not in Consonance's public API.
    technical_protection: tuple[str, ...] = ()
    # ONIX list 2 ProductComposition (00 single-component, 10 multiple-component...), as read
    # from ONIX; None: 10 when there are parts, else 00.
    composition: str | None = None
    parts: tuple[ProductPart, ...] = ()
    weight_g: Decimal | None = None  # unit weight in grams (ONIX Measure 08), as read from ONIX


@dataclass(frozen=True, slots=True, kw_only=True)
class Todo:
    """A to-do on a work. Consonance's public API may not expose to-dos (a documented guess)."""

    id: int
    name: str
    completed: bool = False
    due_date: date | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OnixSubject:
    """A subject in a scheme Consonance does not hold (ONIX list 27 other than BIC, BISAC,
    Thema and keywords: Dewey 01, CLIL 29, WGS 26, a publisher's own 23...), as read."""

    scheme_id: str
    code: str | None = None
    heading: str | None = None
    scheme_name: str | None = None
    scheme_version: str | None = None
    main: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesMembership:
    """A work's place in a series (Consonance ``seriesMemberships``; ONIX ``Collection`` 10)."""

    id: int
    name: str
    part_number: str | None = None
    subtitle: str | None = None
    print_issn: str | None = None
    online_issn: str | None = None


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
    publisher_name: str | None = None
    identifiers: tuple[Identifier, ...] = ()  # ONIX work identifiers (list 16)
    series: tuple[SeriesMembership, ...] = ()
    other_subjects: tuple[OnixSubject, ...] = ()  # read from ONIX; not in Consonance's API


@dataclass(frozen=True, slots=True, kw_only=True)
class LicensedRight:
    """A head right the publisher holds under a contract (Consonance ``LicensedRight``)."""

    id: int
    right_type: str | None = None  # e.g. "Translation", "Audio", "World English"
    author_cut: float | None = None  # the author's share of this right's income, percent


@dataclass(frozen=True, slots=True, kw_only=True)
class Contract:
    """A publication agreement between the client and a rights holder (Consonance
    ``Contract``): its dates, term, money terms and licensed rights, as the API exposes
    them. Royalty rates, payees and their splits are not in the API."""

    id: int
    contract_name: str
    work_id: int | None = None
    description: str | None = None
    signed_date: date | None = None
    ms_delivery_date: date | None = None  # planned manuscript delivery
    revised_ms_delivery_date: date | None = None
    actual_ms_delivery_date: date | None = None
    ms_proofs_date: date | None = None
    pub_before_date: date | None = None
    review_date: date | None = None
    terminated_date: date | None = None
    termination_reason: str | None = None
    term: str | None = None  # months, as Consonance stores it (a string)
    copyright_year: str | None = None
    flat_fee_value: float | None = None
    guaranteed_royalty_value: float | None = None  # the guaranteed sum (advance)
    author_discount: str | None = None
    remainder_rate: str | None = None
    remainder_rate_over_cost: float | None = None
    licensed_rights: tuple[LicensedRight, ...] = ()


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


# --- change detection --------------------------------------------------------------------


class ChangeKind(enum.StrEnum):
    """What the Consonance poller noticed; flows' triggers match on these."""

    WORK_ENTERED_STAGE = "work_entered_stage"
    TODO_COMPLETED = "todo_completed"
    PUBLISHING_STATUS_CHANGED = "publishing_status_changed"
    PUBLICATION_DATE_CHANGED = "publication_date_changed"
    SUPPORTING_RESOURCE_ADDED = "supporting_resource_added"
    SUPPORTING_RESOURCE_REPLACED = "supporting_resource_replaced"
    PRICE_CHANGED = "price_changed"
    # Not a change in Consonance: the day a title comes within a flow's
    # ``days_before_publication`` (subject: the days; new: the publication date).
    PUBLICATION_DUE = "publication_due"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeEvent:
    """One domain event: a change between two polls of Consonance.

    ``subject`` names what changed inside the record (the stage, the to-do id, the price slot
    ``GBP-02-05``, the resource variant); ``old``/``new`` are its values as strings.
    """

    kind: ChangeKind
    work_id: int
    product_id: int | None = None
    subject: str | None = None
    old: str | None = None
    new: str | None = None
    detected_at: datetime | None = None
