"""Who a recipient is told publishes and supplies the products: configured per recipient.

Consonance's public API says nothing of a product's publisher, co-publishers or supplier, nor
of their SAN/GLN, so they come from the recipient's config (``RecipientRules.publisher``,
``co_publishers``, ``supplier``). Identifiers are checked here, when the config is read:
a GLN by its GS1 check digit (python-stdnum), a SAN by its modulus-11 check digit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from stdnum import ean
from stdnum.exceptions import ValidationError


def _san_ok(value: str) -> bool:
    """A SAN (Standard Address Number, ISO 2108-style): 6 digits and a mod-11 check (X = 10)."""
    if len(value) != 7 or not value[:6].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:6], range(7, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    return value[6].upper() == ("X" if check == 10 else str(check))


class Party(BaseModel):
    """A publisher or co-publisher: name, and optionally its SAN and GLN."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    san: str | None = Field(default=None, description="Standard Address Number (7 characters).")
    gln: str | None = Field(default=None, description="GS1 Global Location Number (13 digits).")

    @field_validator("gln")
    @classmethod
    def _gln(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            if len(value) != 13:
                raise ValidationError()
            return str(ean.validate(value))
        except ValidationError:
            raise ValueError(f"GLN {value!r} is not 13 digits with a valid check digit") from None

    @field_validator("san")
    @classmethod
    def _san(cls, value: str | None) -> str | None:
        if value is not None and not _san_ok(value.replace("-", "")):
            raise ValueError(f"SAN {value!r} is not 7 characters with a valid check digit")
        return None if value is None else value.replace("-", "").upper()

    def identifiers(self) -> list[tuple[str, str]]:
        """(list 44 / list 92 type, value): 06 GLN, 07 SAN (both lists agree on these)."""
        out = []
        if self.gln:
            out.append(("06", self.gln))
        if self.san:
            out.append(("07", self.san))
        return out


class SupplierParty(Party):
    """The supplier named in every ``SupplyDetail``: a party with its list 93 role."""

    role: Literal["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"] = Field(
        default="01",
        description="ONIX list 93: 01 publisher to retailers, 02 exclusive distributor, "
        "03 non-exclusive distributor, 04 wholesaler...",
    )
