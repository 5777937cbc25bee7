"""Loads the GraphQL documents kept as ``.graphql`` files next to this module.

A query file spreads fragments by name (``...WorkFields``); ``load`` appends the fragments it
uses, transitively, from ``fragments.graphql``, because GraphQL rejects documents with unused
or missing fragments.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_FRAGMENT = re.compile(r"^fragment\s+(\w+)\s+on\s+\w+\s*\{", re.M)
_SPREAD = re.compile(r"\.\.\.\s*([A-Za-z_]\w*)")


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("documents", name).read_text("utf-8")


@functools.cache
def _fragments() -> dict[str, str]:
    text = _read("fragments.graphql")
    starts = [(m.group(1), m.start()) for m in _FRAGMENT.finditer(text)]
    out = {}
    for i, (name, start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(text)
        out[name] = text[start:end].strip()
    return out


@functools.cache
def load(name: str) -> str:
    """The document ``documents/<name>`` with every fragment it needs appended."""
    text = _read(name).strip()
    known = _fragments()
    needed: list[str] = []
    pending = [m for m in _SPREAD.findall(text) if m != "on"]
    while pending:
        frag = pending.pop()
        if frag in needed or frag not in known:
            continue
        needed.append(frag)
        pending.extend(m for m in _SPREAD.findall(known[frag]) if m != "on")
    return "\n\n".join([text, *(known[f] for f in sorted(needed))]) + "\n"
