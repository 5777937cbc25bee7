"""What one ONIX recipient wants: filters, trimming, accepted notifications, file naming.

``RecipientRules`` is a Pydantic model (``extra="forbid"``) so the config layer can embed it as
a partner's ``[partners.NAME.onix]`` table unchanged. Everything here is pure: which products
go to the recipient, which prices survive, what the file is called, and which rules the
written file must obey (checked again on the output by ``validate``).
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...models import Product, Subject, SubjectScheme, Work
from . import codes
from .parties import Party, SupplierParty
from .tags import OnixVersion, TagStyle


class Compression(enum.StrEnum):
    NONE = "none"
    ZIP = "zip"
    GZIP = "gzip"


class FeedMode(enum.StrEnum):
    FULL = "full"
    DELTA = "delta"


class RecipientRules(BaseModel):
    """One recipient's ONIX flavour. ``None`` on a filter means "no restriction"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    onix_version: OnixVersion = OnixVersion.V30
    tag_style: TagStyle = TagStyle.REFERENCE
    # filters: a product goes to the recipient only if it passes every one
    imprints: frozenset[str] | None = None
    product_forms: frozenset[str] | None = None  # ONIX 2.1 (Consonance) or 3.0 codes
    publishing_statuses: frozenset[str] | None = None  # list 64
    markets: frozenset[str] | None = None  # ISO 3166-1: for sale in at least one of them
    # trimming
    price_types: frozenset[str] | None = None  # list 58
    currencies: frozenset[str] | None = None  # ISO 4217
    # what the recipient accepts
    notification_types: frozenset[str] = frozenset({"01", "02", "03", "05"})
    require_market: bool = False  # every ProductSupply must name its Market (Google)
    require_prices: bool = False  # drop products left without a price after trimming
    # delta behaviour
    mode: FeedMode = FeedMode.DELTA
    send_deletions: bool = True  # deleted, withdrawn or filtered-out products as 05
    delete_statuses: frozenset[str] = frozenset({"01", "11"})  # cancelled, withdrawn
    send_empty: bool = False  # send a message with no products when nothing changed
    # the file
    file_name: str = Field(
        default="{sender}_{recipient}_{sent:%Y%m%d%H%M%S}_{kind}.xml",
        description="Python format string; fields: sender, recipient, sent, kind (full/delta/test)",
    )
    compression: Compression = Compression.NONE
    addressee_name: str | None = None
    # who publishes and supplies, and how the publisher holds its rights (not in Consonance's
    # public API: per recipient)
    publisher: Party | None = None  # None: the work's publisher as held, else the sender
    co_publishers: tuple[Party, ...] = ()  # PublishingRole 02
    supplier: SupplierParty | None = None  # None: the product's, else the publisher with 01
    sales_rights_type: Literal["01", "02"] = "01"  # for rights derived from for-sale fields
    sender_gln: str | None = None  # the header's SenderIdentifier (06 GLN)
    sender_san: str | None = None  # the header's SenderIdentifier (07 SAN)
    # feed policy: an invalid product blocks the whole message, or is left out (skipped) and
    # reported while the valid ones go
    on_invalid_product: Literal["block", "skip"] = "block"
    # Subject schemes (ONIX list 27) the recipient takes; None: every scheme held
    subject_schemes: frozenset[str] | None = None
    # A recipient profile bundled with onixcheck every written product is checked against
    # (``formats.onix.profile``): "google" for Google Play Books
    profile: Literal["google"] | None = None
    # ProductAvailability (list 65) codes written as another code this recipient takes
    availability_map: dict[str, str] | None = None

    @field_validator("sender_gln")
    @classmethod
    def _gln(cls, value: str | None) -> str | None:
        return None if value is None else Party(name="sender", gln=value).gln

    @field_validator("sender_san")
    @classmethod
    def _san(cls, value: str | None) -> str | None:
        return None if value is None else Party(name="sender", san=value).san

    def sender_identifiers(self) -> tuple[tuple[str, str], ...]:
        """The header's ``SenderIdentifier``s: (list 44 type, value)."""
        return tuple(Party(name="sender", gln=self.sender_gln, san=self.sender_san).identifiers())

    test_sample_size: int = Field(default=10, ge=1)

    @classmethod
    def google_play_books(cls, **overrides: object) -> RecipientRules:
        """Google Play Books: ebooks only, never block updates (04), Market on every supply,
        only the subject schemes Google's profile lists, every product checked against the
        Google profile bundled with onixcheck (``formats.onix.profile``)."""
        from .profile import profile_subject_schemes

        values: dict[str, object] = {
            "product_forms": frozenset({"EA", "EB", "EC", "ED", "DG"}),
            "notification_types": frozenset({"01", "02", "03", "05"}),
            "require_market": True,
            "subject_schemes": profile_subject_schemes("google"),
            "profile": "google",
            # List 65 codes newer than the profile's list, written as the nearest it takes:
            # recalled, not currently available, OP, not in this market -> 40 (not available,
            # reason unspecified); temporarily withdrawn -> 30 (temporarily unavailable);
            # postponed indefinitely -> 10 (not yet available)
            "availability_map": {
                "49": "40",
                "50": "40",
                "51": "40",
                "52": "40",
                "34": "30",
                "09": "10",
            },
        }
        values.update(overrides)
        return cls.model_validate(values)

    # -- filters ---------------------------------------------------------------------------

    def accepts(self, work: Work, product: Product) -> bool:
        """True if the product passes every filter of this recipient."""
        if self.imprints is not None and (
            work.imprint is None or work.imprint.name not in self.imprints
        ):
            return False
        if self.product_forms is not None:
            form_30, _ = codes.product_form_30(product)
            if product.product_form not in self.product_forms and form_30 not in self.product_forms:
                return False
        if (
            self.publishing_statuses is not None
            and product.publishing_status not in self.publishing_statuses
        ):
            return False
        if self.markets is not None and not self._in_markets(product):
            return False
        return not (self.require_prices and not self.trim_prices(product).prices)

    def _in_markets(self, product: Product) -> bool:
        assert self.markets is not None
        markets = self.markets
        if product.sales_rights:
            for right in product.sales_rights:
                if right.rights_type not in ("01", "02"):
                    continue
                territory = right.territory
                if markets & set(territory.countries_included):
                    return True
                if "WORLD" in territory.regions_included and markets - set(
                    territory.countries_excluded
                ):
                    return True
            return False
        if product.for_sale_worldwide:
            return bool(markets - set(product.not_for_sale_countries))
        return bool(markets & set(product.for_sale_countries))

    def trim_prices(self, product: Product) -> Product:
        """The product with only the price types and currencies this recipient takes."""
        if self.price_types is None and self.currencies is None:
            return product
        kept = tuple(
            p
            for p in product.prices
            if (self.price_types is None or p.price_type in self.price_types)
            and (self.currencies is None or p.currency in self.currencies)
        )
        return (
            product
            if len(kept) == len(product.prices)
            else dataclasses.replace(product, prices=kept)
        )

    def trim_subjects(self, work: Work) -> Work:
        """The work with only the subjects in schemes this recipient takes (keywords are 20)."""
        keep = self.subject_schemes
        if keep is None:
            return work
        subjects = tuple(s for s in work.subjects if _scheme_of(s) in keep)
        keywords = work.keywords if "20" in keep else ()
        others = tuple(o for o in work.other_subjects if o.scheme_id in keep)
        if (
            len(subjects) == len(work.subjects)
            and len(keywords) == len(work.keywords)
            and len(others) == len(work.other_subjects)
        ):
            return work
        return dataclasses.replace(
            work, subjects=subjects, keywords=keywords, other_subjects=others
        )

    def allowed_forms_30(self) -> frozenset[str] | None:
        """The 3.0 ``ProductForm`` codes a written file may contain (forms mapped from 2.1)."""
        if self.product_forms is None:
            return None
        return frozenset(codes.form_30_of_code(code) for code in self.product_forms)

    # -- the file --------------------------------------------------------------------------

    def render_file_name(
        self, *, sender: str, recipient: str, sent: datetime, kind: Literal["full", "delta", "test"]
    ) -> str:
        """The file name for one message, with the compression suffix added."""
        name = self.file_name.format(
            sender=_safe(sender), recipient=_safe(recipient), sent=sent, kind=kind
        )
        suffix = {Compression.NONE: "", Compression.ZIP: ".zip", Compression.GZIP: ".gz"}
        return name + suffix[self.compression]


def _scheme_of(subject: Subject) -> str | None:
    if subject.scheme is SubjectScheme.KEYWORD:
        return "20"
    return codes.subject_scheme_id(subject.scheme, subject.code)


def _safe(value: str) -> str:
    """Names go into file names: keep letters, digits, dot, dash and underscore only."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in value).strip("._") or "x"
