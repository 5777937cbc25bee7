"""Counts in English for messages a person reads: "1 product", "2 products", "1 chain".

One helper instead of "file(s)" and "1 products" scattered through the output.
"""

from __future__ import annotations

# Nouns whose plural is not noun + "s", as they appear in our messages.
_IRREGULAR = {"entry": "entries", "copy": "copies", "was": "were", "is": "are", "has": "have"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``noun`` in the singular for exactly one, else ``many`` (default: the usual plural)."""
    if count == 1:
        return noun
    if many is not None:
        return many
    if noun in _IRREGULAR:
        return _IRREGULAR[noun]
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def counted(count: int, noun: str, many: str | None = None, *, sep: bool = False) -> str:
    """``"1 file"``, ``"3 files"``; with ``sep``, thousands separated (``"20,000 products"``)."""
    number = f"{count:,}" if sep else str(count)
    return f"{number} {plural(count, noun, many)}"
