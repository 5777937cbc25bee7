"""Recipient profiles bundled with onixcheck (its "ONIXFIX" YAML rule sets), per product.

onixcheck checks a profile on a whole file (``onixcheck.validate(path, schemas=("google",))``
loads the document). Here the same rules, read from the same YAML file and applied by
onixcheck's own ``OnixFix`` checker, run on one ``Product`` at a time (and on the ``Header``
once), so the streaming validator can tie every problem to a product and the feed policy can
block or skip that product. The result is the one onixcheck gives on the whole file: the
Google preset's test checks both.

Only the reference-tag ONIX 3.0 form is covered (the profile's own ``onix_style``).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Literal

import yaml
from lxml import etree
from onixcheck import schema as _schemas
from onixcheck.onixfix import OnixFix

ProfileName = Literal["google"]
_PATHS: dict[str, str] = {"google": _schemas.GOOGLE_O30_YML_REFERENCE}


@lru_cache(maxsize=4)
def _spec(name: str) -> dict[str, Any]:
    with open(_PATHS[name], "rb") as raw:
        spec: dict[str, Any] = yaml.safe_load(raw)
    return spec


def profile_subject_schemes(name: str) -> frozenset[str]:
    """The ``SubjectSchemeIdentifier`` values the profile accepts (list 27)."""
    subject = _spec(name)["//Product"]["/DescriptiveDetail"]["/Subject"]
    return frozenset(str(code) for code in subject["/SubjectSchemeIdentifier"]["choice"])


class _Checker(OnixFix):  # type: ignore[misc]
    """onixcheck's checker without its file: the spec is given, problems are collected."""

    def __init__(self, spec: dict[str, Any], name: str) -> None:
        self.spec = spec
        self.name = name.upper()
        self.basename = "message"
        self.urls_checked: set[str] = set()
        self.errors: list[Any] = []
        self.warnings: list[Any] = []
        self.found: list[tuple[str, str]] = []

    def add_message(self, message: str, path: str, el: Any = None, level: str = "ERROR") -> None:
        if level == "ERROR":
            self.found.append((el.tag if el is not None else path, message))

    # onixcheck's own walk and its three counting checks, with ``findall`` where it calls
    # ``xpath``: every path in the bundled profiles is one child element's name, for which the
    # two find the same elements, and ``findall`` compiles nothing (see docs/reference/onix.md
    # for the figures). The other checks (choice, length, type...) are onixcheck's, unchanged.
    def validate_block(self, path: str, specnode: dict[str, Any], xmlnode: Any) -> None:
        for key, value in specnode.items():
            if key in ("description", "example"):
                continue
            if key in ("required", "mulitple", "recommended"):
                getattr(self, "handle_" + key)(path, xmlnode, value)
            elif key.startswith("/"):
                for node in xmlnode.findall(path):
                    self.validate_block(key.lstrip("/"), value, node)
            else:
                check = getattr(self, "handle_" + key)
                for element in xmlnode.findall(path):
                    check(path, element, value)

    def handle_required(self, path: str, el: Any, val: Any) -> None:
        if val and not el.findall(path):
            self.add_message(f"Missing element {path} within {el.tag}", path, el)

    def handle_multiple(self, path: str, el: Any, val: Any) -> None:
        if not val and len(found := el.getparent().findall(path)) > 1:
            self.add_message(
                f'Only one "{path}" allowed per "{el.getparent().tag}" found {len(found)}', path
            )

    def handle_requires_one_of(self, path: str, el: Any, val: Any) -> None:
        if val and sum(1 for name in val if len(el.findall(name)) == 1) != 1:
            self.add_message(f"Exactly one of {val} must be within {el.tag}", path)


def _bare(element: etree._Element) -> etree._Element:
    """A copy of ``element`` with namespaces, comments and processing instructions removed."""
    bare = copy.deepcopy(element)
    for node in bare.iter():
        if not isinstance(node.tag, str):
            continue
        node.tag = etree.QName(node).localname
    etree.strip_elements(bare, etree.Comment, etree.PI, with_tail=False)
    etree.cleanup_namespaces(bare)
    return bare


def profile_problems(element: etree._Element, name: str) -> list[tuple[str, str]]:
    """(element, reason) for every rule of profile ``name`` that ``element`` (a ``Product``
    or the ``Header``, reference tags) breaks."""
    spec = _spec(name)
    root = etree.Element("ONIXMessage")
    bare = _bare(element)
    root.append(bare)
    key = f"//{bare.tag}"
    if key not in spec:
        return []
    checker = _Checker(spec, name)
    checker.validate_block(bare.tag, spec[key], root)
    return checker.found
