"""Do two sets of shell file-name patterns overlap? A name both would take, or proof of none.

Intake flows choose files with ``fnmatch.fnmatchcase`` patterns (``*.csv``, ``report_??.xlsx``,
``[!.]*``). Two flows polling the same folder with overlapping patterns race for the same
files: whichever polls first takes a file, the other never sees it. ``common_name`` decides
the overlap exactly for the pattern language ``fnmatch`` implements (``*``, ``?``, ``[...]``,
``[!...]``, ranges) by walking both patterns at once, and returns an example name matched by
all of them, so the report can show it. Names starting with ``.`` are left out of the search:
the inbox never takes hidden files, so an overlap only on such names is no overlap.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

# Characters tried first when any character will do: an example should read like a file name.
_PREFERRED = string.ascii_lowercase + string.digits + "_-"


@dataclass(frozen=True, slots=True)
class _Chars:
    """One character position: a set of characters, or (``negated``) any character but them."""

    chars: frozenset[str]
    negated: bool = False


_STAR = None  # ``*``: any run of characters
_Token = _Chars | None
_ANY = _Chars(frozenset(), negated=True)
_NOT_HIDDEN: tuple[_Token, ...] = (_Chars(frozenset("."), negated=True), _STAR)


def tokens(pattern: str) -> tuple[_Token, ...]:
    """The pattern as ``fnmatch.translate`` reads it: stars, single characters and classes."""
    out: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if not out or out[-1] is not _STAR:
                out.append(_STAR)
        elif c == "?":
            out.append(_ANY)
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(_Chars(frozenset("[")))  # no closing bracket: a literal '['
                continue
            body, i = pattern[i:j], j + 1
            negated = body.startswith("!")
            out.append(_Chars(_class_chars(body[1:] if negated else body), negated))
        else:
            out.append(_Chars(frozenset(c)))
    return tuple(out)


def _class_chars(body: str) -> frozenset[str]:
    """The characters of a bracket expression's body: ``a-z0-9_`` (a reversed range is empty,
    as in ``fnmatch``; a ``-`` first or last is literal)."""
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            chars.update(chr(code) for code in range(ord(low), ord(high) + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    return frozenset(chars)


def _pick(constraints: Sequence[_Chars]) -> str | None:
    """A character every constraint accepts, preferring ordinary file-name characters."""
    positive = [c.chars for c in constraints if not c.negated]
    excluded: set[str] = set().union(*(c.chars for c in constraints if c.negated))
    if positive:
        allowed = frozenset.intersection(*positive) - excluded - {"/"}
        return min(allowed, key=lambda ch: (ch not in _PREFERRED, ch)) if allowed else None
    for ch in _PREFERRED + string.punctuation:
        if ch not in excluded and ch != "/":
            return ch
    return next(chr(code) for code in range(0x80, 0x110000) if chr(code) not in excluded)


def common_name(*patterns: str) -> str | None:
    """A file name (not starting with ``.``) that every pattern matches, or None if none can."""
    if not patterns:
        return None
    parsed = (*(tokens(p) for p in patterns), _NOT_HIDDEN)

    @cache
    def walk(state: tuple[int, ...]) -> str | None:
        if all(at == len(p) for at, p in zip(state, parsed, strict=True)):
            return ""
        # A star may match nothing: step over it.
        for k, (at, p) in enumerate(zip(state, parsed, strict=True)):
            if at < len(p) and p[at] is _STAR:
                found = walk((*state[:k], at + 1, *state[k + 1 :]))
                if found is not None:
                    return found
        # Or every pattern takes one more character (a star keeps its place).
        if any(at == len(p) for at, p in zip(state, parsed, strict=True)):
            return None
        here = [p[at] for at, p in zip(state, parsed, strict=True)]
        classes = [t for t in here if t is not _STAR]
        if not classes:
            return None  # only stars: stepping over them (above) covers every name
        ch = _pick(classes)
        if ch is None:
            return None
        after = tuple(at if p[at] is _STAR else at + 1 for at, p in zip(state, parsed, strict=True))
        rest = walk(after)
        return None if rest is None else ch + rest

    return walk(tuple(0 for _ in parsed))


def overlap(left: Sequence[str], right: Sequence[str]) -> tuple[str, str, str] | None:
    """The first pair of patterns (one from each list) that share a name, with that name."""
    for a in left:
        for b in right:
            name = common_name(a, b)
            if name is not None:
                return a, b, name
    return None
