"""The ``finance_out`` flow's own settings: where each payee's statements go (its own partner,
its agent's, or held for e-mail), the copy to finance, and each destination's encryption.
``config.flows.FinanceOutFlow`` holds them.

Routing is by Consonance contact ID, never by a name: two authors may share a name, a contact
ID is one person. Partners and folders named here are checked against ``[partners]`` when the
config loads (``config.loader.cross_check``).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from consonance_sftp.config.profiles import StrictModel
from consonance_sftp.config.secrets import OptionalSecret

_AGE_KEY = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
_SSH_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/=]+( .*)?$")


def check_age_recipients(value: list[str]) -> list[str]:
    """age recipients: age X25519 public keys or SSH public keys (a ValueError names the
    first that is neither)."""
    for key in value:
        if not (_AGE_KEY.match(key.strip()) or _SSH_KEY.match(key.strip())):
            shown = key if len(key) < 40 else key[:37] + "..."
            raise ValueError(
                f"{shown!r} is not an age public key (age1...) or an SSH public key "
                "(ssh-ed25519 ... / ssh-rsa ...)"
            )
    return [k.strip() for k in value]


class Protection(StrictModel):
    """How the statements sent to one destination are protected on the way and at rest."""

    encrypt: Literal["none", "age", "pdf_password"] = Field(
        default="none",
        description="`age`: each file encrypted to `age_recipients` (`<name>.age`; decrypt "
        "with `age -d -i KEY`); `pdf_password`: the statement PDF protected with AES-256 and "
        "`pdf_password` (its CSV/JSON companions are then not sent: they cannot carry a "
        "password); `none`.",
    )
    age_recipients: list[str] = Field(
        default_factory=list,
        description="Recipients' age public keys (`age1...`) or SSH public keys "
        "(`ssh-ed25519 ...`, `ssh-rsa ...`).",
    )
    pdf_password: OptionalSecret = Field(
        default=None,
        description='The PDF password, as a secret reference (`{env = "NAME"}` or '
        '`{file = "path"}`); tell the recipient by another channel.',
    )

    @field_validator("age_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return check_age_recipients(value)

    @model_validator(mode="after")
    def _complete(self) -> Protection:
        if self.encrypt == "age" and not self.age_recipients:
            raise ValueError('encrypt = "age" needs age_recipients')
        if self.encrypt == "pdf_password" and self.pdf_password is None:
            raise ValueError('encrypt = "pdf_password" needs pdf_password (a secret reference)')
        return self


class PayeeRoute(Protection):
    """One payee's own destination (an author, an estate, a co-agent with its own server)."""

    partner: str | None = Field(
        default=None,
        description="The partner (a key of `[partners]`) that receives this payee's "
        "statements; unset: held for e-mail (`email`), never guessed.",
    )
    folder: str = Field(default="send", description="Which of the partner's `folders`.")
    subfolder: str = Field(
        default="",
        description="A sub-folder under it (`{contact}` and `{name}` are replaced).",
    )
    email: str | None = Field(
        default=None,
        description="Where finance sends it by hand when `partner` is unset (shown by "
        "`finance show`; this release sends no e-mail).",
    )


class AgentRoute(Protection):
    """A literary agency: receives the statements of every payee it represents, each in the
    payee's own sub-folder."""

    partner: str = Field(description="The agency's partner (a key of `[partners]`).")
    folder: str = Field(default="send", description="Which of the partner's `folders`.")
    payees: list[int] = Field(description="Contact IDs of the payees the agency represents.")
    subfolder: str = Field(
        default="{contact}-{name}",
        description="Each payee's sub-folder (`{contact}`: its contact ID, `{name}`: its "
        "name made safe for a path).",
    )

    @field_validator("payees")
    @classmethod
    def _some(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("list the contact IDs of the payees the agency represents")
        if len(set(value)) != len(value):
            raise ValueError("a payee is listed twice")
        return value


class FinanceCopy(StrictModel):
    """A copy of every statement sent, for the finance team."""

    partner: str = Field(description="The finance partner (a key of `[partners]`).")
    folder: str = Field(default="send", description="Which of the partner's `folders`.")
    subfolder: str = Field(
        default="{batch}",
        description="A sub-folder per batch (`{batch}`: the batch's name).",
    )


class StatementsInbox(StrictModel):
    """An SFTP inbox finance uploads statement batches to (one zip per batch)."""

    partner: str = Field(description="The partner (a key of `[partners]`) holding the inbox.")
    folder: str = Field(default="receive", description="Which of the partner's `folders`.")


ReportKind = Literal["rights", "contracts"]
ReportFormat = Literal["pdf", "csv", "xlsx"]


def contact_key(value: str) -> int:
    """A ``[flows.NAME.payees]`` key: a Consonance contact ID."""
    if not value.isdigit():
        raise ValueError(f"payees are keyed by Consonance contact ID (digits), not {value!r}")
    return int(value)
