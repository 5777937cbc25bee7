"""Validate ONIX messages while streaming: the bundled XSD per product, plus recipient rules.

onixcheck validates by loading the whole document (1.4 GB for 100,000 products). Here the
message is read with ``iterparse`` and each ``Product``, once complete, is moved into a small
shell message (the real root and ``Header``) and validated there with the *unmodified* EDItEUR
XSD that onixcheck bundles, loaded by lxml. Memory stays flat and every problem is tied to a
product: its record reference, ISBN, the element and libxml2's reason. The one constraint that
spans products in the XSD, unique record references, is checked with a set. In a long message
the common code lists and the XSD's ``xs:unique`` constraints within a product are checked in
Python first (``CodeListSchema``); whatever that does not accept is validated with the
unmodified XSD, which words every problem.

``ValidatorProcess`` runs the same validator in a second process fed through a pipe, so a
feed is validated while it is generated, on the other core. Run as a module it reads a message
on stdin and prints the report as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Protocol

from lxml import etree

from ...errors import ValidationFailed
from ..wording import counted
from . import codes
from .profile import profile_problems
from .rules import RecipientRules
from .tags import OnixVersion, TagStyle, namespace, schema_path, short_tags, version_of

_Element = etree._Element
_NS = re.compile(r"\{[^}]*\}")
_ELEMENT = re.compile(r"^Element '([^']+)'(?:, attribute '([^']+)')?: ")


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a message may not be sent."""

    record_reference: str | None  # None: the header or the message as a whole
    isbn13: str | None
    element: str
    reason: str
    check: str = "schema"  # schema | rules | xml
    line: int | None = None

    def __str__(self) -> str:
        if self.record_reference is None:
            envelope = ("", "ONIXMessage", "ONIXmessage", "NoProduct", "x507", "Header", "header")
            where = "message" if self.element in envelope else "message header"
        else:
            where = f"product {self.record_reference}"
            if self.isbn13 and self.isbn13 != self.record_reference:
                where += f" (ISBN {self.isbn13})"
        at = f" line {self.line}" if self.line else ""
        return f"{where}{at}: {self.element}: {self.reason} [{self.check}]"


@dataclass(slots=True)
class ValidationReport:
    products: int = 0
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False  # more problems than ``max_problems``; the rest were not listed
    # The first problem of every invalid product, however many (the feed policy's "skip"
    # needs every one, not only the listed ``max_problems``), and whether any problem was the
    # message's own (header, envelope: no product to leave out)
    first_problems: list[Problem] = field(default_factory=list)
    message_invalid: bool = False
    version: str | None = None
    style: str | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # of the process that validated
    cpu_seconds: float = 0.0  # of the process that validated

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def invalid_products(self) -> list[str]:
        seen: dict[str, None] = {}
        for problem in self.problems:
            if problem.record_reference is not None:
                seen.setdefault(problem.record_reference)
        return list(seen)

    def raise_if_invalid(self, what: str) -> None:
        """Raise ``ValidationFailed`` naming every problem (product, element, reason)."""
        if self.ok:
            return
        count = len(self.invalid_products)
        more = " (and more not listed)" if self.truncated else ""
        raise ValidationFailed(
            f"{what}: {counted(len(self.problems), 'problem')} in "
            f"{counted(count, 'product')}{more}; not sent",
            [str(p) for p in self.problems],
            hint="Fix the named products in Consonance (or the recipient's rules), then rerun.",
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ValidationReport:
        data = json.loads(text)
        problems = [Problem(**p) for p in data.pop("problems")]
        first = [Problem(**p) for p in data.pop("first_problems", [])]
        return cls(problems=problems, first_problems=first, **data)


@lru_cache(maxsize=6)
def load_schema(version: OnixVersion, style: TagStyle) -> etree.XMLSchema:
    """The bundled EDItEUR XSD, parsed once per process."""
    return etree.XMLSchema(file=str(schema_path(version, style)))


_XS = "{http://www.w3.org/2001/XMLSchema}"
_XS_STRINGS = ("xs:string", "xs:token")
# The coded elements a trade record carries (all of them in what the writer writes): each one
# costs libxml2 a walk through its code list. Checking one in Python costs about half a
# microsecond, and matching one more tag while walking a product costs too, so only these.
_CODED = frozenset(
    {
        "NotificationType",
        "ProductIDType",
        "ProductComposition",
        "ProductForm",
        "ProductFormDetail",
        "MeasureType",
        "MeasureUnitCode",
        "TitleType",
        "TitleElementLevel",
        "ContributorRole",
        "LanguageRole",
        "LanguageCode",
        "ExtentType",
        "ExtentUnit",
        "SubjectSchemeIdentifier",
        "AudienceCodeType",
        "TextType",
        "ContentAudience",
        "ResourceContentType",
        "ResourceMode",
        "ResourceForm",
        "ResourceVersionFeatureType",
        "PublishingRole",
        "PublishingStatus",
        "PublishingDateRole",
        "SalesRightsType",
        "CountriesIncluded",
        "CountriesExcluded",
        "RegionsIncluded",
        "WorkRelationCode",
        "WorkIDType",
        "ProductRelationCode",
        "SupplierRole",
        "ProductAvailability",
        "PriceType",
        "CurrencyCode",
    }
)


class CodeListSchema:
    """The bundled XSD, once more, with the code lists taken out of the element content it
    checks, and those code lists checked here instead, with sets: libxml2 compares a value
    with each code of a list in turn (a language code with some 500), about half of its time
    per product.

    ``valid(product)`` is True only when both agree: the XSD without those enumerations accepts
    the product, and every such element holds exactly one code of its list (or, for a list of
    countries or regions, codes separated by single spaces) and no child node. That is never
    more than the unmodified XSD accepts: everything else it checks is still checked, by
    libxml2, and a code found in the XSD's own enumeration passes it there too. Anything else
    (a wrong code, a code with spaces around it, a product the reduced XSD refuses) is not
    decided here: the product is validated again with the unmodified XSD, whose errors are
    the ones reported, so the problems and their wording are the same as before.

    Only the enumerations of element content change (``ListN`` as the base of an element's
    simple content, and list types of ``ListN`` items such as ``dt.CountryCodeList``):
    attributes keep their code lists, in the XSD.
    """

    def __init__(
        self,
        version: OnixVersion,
        style: TagStyle,
        elements: frozenset[str] | None = None,
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="onix-xsd-") as tmp:
            # the reduced XSD is written out, its trees freed, then compiled from the files
            self.uniques: dict[str, _Uniques] = {}
            self.checks = self._reduce(version, style, elements, Path(tmp), self.uniques)
            self.schema = etree.XMLSchema(file=str(Path(tmp) / schema_path(version, style).name))
        # What ``valid`` does at each tag, in one walk of the product: its code list, the
        # unique constraints it holds when one has a field other than an attribute (checked
        # for every such element), the attributes a unique constraint of its parent reads
        # (only when one is present, the parent's constraints are checked: such attributes,
        # ``language`` mostly, are rare, and walking the children of every holder is not).
        self.plan: dict[
            str, tuple[tuple[frozenset[str], bool] | None, _Uniques | None, tuple[str, ...]]
        ] = {}
        by_attribute: dict[str, set[str]] = {}
        for holder in self.uniques.values():
            for tag, attributes in holder.attributes.items():
                by_attribute.setdefault(tag, set()).update(attributes)
        for tag in dict.fromkeys([*self.checks, *self.uniques, *by_attribute]):
            held = self.uniques.get(tag)
            self.plan[tag] = (
                self.checks.get(tag),
                held if held is not None and held.always else None,
                tuple(sorted(by_attribute.get(tag, ()))),
            )

    @staticmethod
    def _reduce(
        version: OnixVersion,
        style: TagStyle,
        elements: frozenset[str] | None,
        tmp: Path,
        uniques: dict[str, _Uniques],
    ) -> dict[str, tuple[frozenset[str], bool]]:
        """Write the XSD without the enumerations of ``elements`` and without the ``xs:unique``
        constraints of global elements into ``tmp``; return what ``valid`` checks instead:
        tag -> (codes, whether a space-separated list of them). The unique constraints taken
        out are added to ``uniques`` (tag of the element that holds them -> constraints)."""
        path = schema_path(version, style)
        wanted = _CODED if elements is None else elements
        if style is TagStyle.SHORT:
            short = short_tags(version)
            wanted = frozenset(short.get(name, name) for name in wanted)
        main = etree.parse(str(path))
        docs = {path.name: main}
        for include in main.getroot().iterchildren(f"{_XS}include"):
            location = include.get("schemaLocation")
            if location and "/" not in location and (path.parent / location).is_file():
                docs[location] = etree.parse(str(path.parent / location))
        # ListN: a restriction of xs:string or xs:token by enumeration (its codes)
        lists: dict[str, tuple[frozenset[str], _Element]] = {}
        for doc in docs.values():
            for simple in doc.getroot().iterchildren(f"{_XS}simpleType"):
                restriction = simple.find(f"{_XS}restriction")
                name = simple.get("name")
                if name is None or restriction is None:
                    continue
                if restriction.get("base") not in _XS_STRINGS:
                    continue
                enums = restriction.findall(f"{_XS}enumeration")
                if enums:
                    codes_ = frozenset(
                        v for e in enums if (v := e.get("value")) and v.split() == [v]
                    )
                    lists[name] = (codes_, simple)
        # dt.X: a list of ListN items (with length facets only)
        list_types: dict[str, tuple[str, _Element]] = {}
        for simple in main.getroot().iterchildren(f"{_XS}simpleType"):
            name = simple.get("name")
            item = simple.find(f"{_XS}restriction/{_XS}simpleType/{_XS}list")
            if name is None or item is None or item.get("itemType") not in lists:
                continue
            restriction = simple.find(f"{_XS}restriction")
            assert restriction is not None
            facets = {etree.QName(c).localname for c in restriction if isinstance(c.tag, str)}
            if facets <= {"simpleType", "minLength", "maxLength", "length", "annotation"}:
                list_types[name] = (str(item.get("itemType")), simple)
        ns = namespace(version, style)
        checks: dict[str, tuple[frozenset[str], bool]] = {}
        unchecked: set[str] = set()
        for element in main.getroot().iterchildren(f"{_XS}element"):
            extension = element.find(f"{_XS}complexType/{_XS}simpleContent/{_XS}extension")
            name = element.get("name")
            if extension is None or name is None or name not in wanted:
                continue
            base = extension.get("base") or ""
            if base in lists:
                checks[f"{{{ns}}}{name}"] = (lists[base][0], False)
            elif base in list_types:
                checks[f"{{{ns}}}{name}"] = (lists[list_types[base][0]][0], True)
            else:
                continue
            extension.set("base", f"{base}.unchecked")
            unchecked.add(base)
        # the items of list types too: List91 for dt.CountryCodeList
        unchecked |= {list_types[base][0] for base in unchecked if base in list_types}
        for base in sorted(unchecked):
            if base in list_types:
                item, simple = list_types[base]
                copy_ = copy.deepcopy(simple)
                list_el = copy_.find(f"{_XS}restriction/{_XS}simpleType/{_XS}list")
                assert list_el is not None
                list_el.set("itemType", f"{item}.unchecked")
            else:
                simple = lists[base][1]
                copy_ = copy.deepcopy(simple)
                restriction = copy_.find(f"{_XS}restriction")
                assert restriction is not None
                for enum in restriction.findall(f"{_XS}enumeration"):
                    restriction.remove(enum)
            copy_.set("name", f"{base}.unchecked")
            simple.addnext(copy_)
        uniques.update(_take_uniques(main.getroot()))
        shutil.copytree(path.parent, tmp, dirs_exist_ok=True)
        for location, doc in docs.items():
            doc.write(str(tmp / location), encoding="utf-8", xml_declaration=True)
        return checks

    def valid(self, product: _Element) -> bool:
        """True: the unmodified XSD accepts ``product``. False: not known (ask that XSD)."""
        if not self.schema.validate(product):
            return False
        plan = self.plan
        uniques = self.uniques
        # one walk of every node: cheaper than iter(tags), whose tag matcher is built per call
        for node in product.iter():
            step = plan.get(node.tag)
            if step is None:
                continue
            check, held, attributes = step
            if check is not None:
                codes_, is_list = check
                text = node.text
                if text is None or len(node):
                    return False
                if is_list:
                    if not all(code in codes_ for code in text.split(" ")):
                        return False
                elif text not in codes_:
                    return False
            if held is not None and not held.hold(node):
                return False
            if attributes and any(node.get(name) is not None for name in attributes):
                parent = node.getparent()
                if parent is not None:
                    parents = uniques.get(parent.tag)
                    if parents is not None and not parents.hold(parent):
                        return False
        return True


_SIMPLE_NAME = re.compile(r"^(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")


def _key_value(text: str) -> object:
    """A value that is equal for any two texts the XSD's typed values could find equal (and
    perhaps for more: never fewer duplicates than libxml2 finds). Whitespace collapsed (what
    token, code-list and URI types do; strings that differ only in whitespace then count as
    equal, which is stricter), and numbers as numbers ("01" and "1" are one integer)."""
    if text.isascii() and text.isdigit():
        return int(text)  # equal to the Decimal of the same number, and so hashed
    collapsed = " ".join(text.split())
    return Decimal(collapsed) if _NUMBER.match(collapsed) else collapsed


@dataclass(frozen=True, slots=True)
class _Unique:
    """One ``xs:unique`` of the XSD: among the children ``selected`` of an element, no two may
    have the same values of ``fields``. A field is ``("@", name)`` (an attribute), ``(".", "")``
    (the child's own text) or ``("", tag)`` (a child element's text)."""

    selected: tuple[str, ...]
    fields: tuple[tuple[str, str], ...]


class _Uniques:
    """The ``xs:unique`` constraints of one element, checked in Python in one pass over its
    children. A child missing a field is left out (XSD: it is not in the qualified node set)."""

    __slots__ = ("always", "attributes", "by_tag")

    def __init__(self, uniques: list[_Unique]) -> None:
        # child tag -> (which constraint, its fields)
        self.by_tag: dict[str, list[tuple[int, tuple[tuple[str, str], ...]]]] = {}
        # child tag -> the attributes read by the constraints whose fields are all attributes
        self.attributes: dict[str, set[str]] = {}
        # whether a constraint reads anything but attributes (then it is checked every time)
        self.always = False
        for index, unique in enumerate(uniques):
            only_attributes = all(kind == "@" for kind, _ in unique.fields)
            self.always = self.always or not only_attributes
            for tag in unique.selected:
                self.by_tag.setdefault(tag, []).append((index, unique.fields))
                if only_attributes:
                    names = (name for _, name in unique.fields)
                    self.attributes.setdefault(tag, set()).update(names)

    def hold(self, element: _Element) -> bool:
        """True: no two children break a constraint. False: a duplicate, or something not
        decided here (a field that is not one plain value): the unmodified XSD decides."""
        seen: set[tuple[object, ...]] | None = None
        by_tag = self.by_tag
        for child in element:  # cheaper than iterchildren(tags): no tag matcher to build
            held = by_tag.get(child.tag)
            if held is None:
                continue
            for index, fields in held:
                key: list[object] = [index]
                for kind, name in fields:
                    if kind == "@":
                        value = child.get(name)
                        if value is None:
                            break
                    elif kind == ".":
                        if len(child):
                            return False
                        value = child.text or ""
                    else:
                        value = None
                        for grandchild in child:
                            if grandchild.tag == name:
                                if value is not None or len(grandchild):
                                    return False
                                value = grandchild.text or ""
                        if value is None:
                            break
                    key.append(_key_value(value))
                else:
                    entry = tuple(key)
                    if seen is None:
                        seen = set()
                    elif entry in seen:
                        return False
                    seen.add(entry)
        return True


def _take_uniques(schema: _Element) -> dict[str, _Uniques]:
    """Remove from the XSD ``schema`` every ``xs:unique`` of a global element whose selector
    names children and whose fields are an attribute, ``.`` or a child (all of ONIX 3's);
    return them by the tag of the element that holds them. libxml2 walks its whole list of
    identity constraints at the end of every element: about two thirds of its time per
    product, for constraints a product rarely comes near."""
    target = schema.get("targetNamespace")
    found: dict[str, list[_Unique]] = {}
    for element in schema.iterchildren(f"{_XS}element"):
        name = element.get("name")
        if name is None:
            continue
        for unique in element.findall(f"{_XS}unique"):
            parsed = _parse_unique(unique, target)
            if parsed is not None:
                found.setdefault(f"{{{target}}}{name}" if target else name, []).append(parsed)
                element.remove(unique)
    return {tag: _Uniques(held) for tag, held in found.items()}


def _parse_unique(unique: _Element, target: str | None) -> _Unique | None:
    """The constraint as ``_Unique``, or None when its XPaths are not the simple ones."""
    selector = unique.find(f"{_XS}selector")
    fields = unique.findall(f"{_XS}field")
    if selector is None or not fields:
        return None

    def tag(step: str) -> str | None:
        match = _SIMPLE_NAME.match(step.strip())
        if match is None:
            return None
        prefix, local = match.groups()
        ns = unique.nsmap.get(prefix) if prefix else None
        if ns != target:  # unqualified names, or another namespace: not ours
            return None
        return f"{{{ns}}}{local}" if ns else local

    selected = tuple(tag(step) for step in (selector.get("xpath") or "").split("|"))
    if any(t is None for t in selected):
        return None
    parsed: list[tuple[str, str]] = []
    for field_ in fields:
        xpath = (field_.get("xpath") or "").strip()
        if xpath == ".":
            parsed.append((".", ""))
        elif xpath.startswith("@") and _SIMPLE_NAME.match(xpath[1:]) and ":" not in xpath:
            parsed.append(("@", xpath[1:]))
        elif (child := tag(xpath)) is not None:
            parsed.append(("", child))
        else:
            return None
    return _Unique(tuple(str(t) for t in selected), tuple(parsed))


CODE_LISTS_AFTER = 1000


@lru_cache(maxsize=6)
def code_list_schema(version: OnixVersion, style: TagStyle) -> CodeListSchema:
    return CodeListSchema(version, style)


class _Names:
    """Reference name -> the tag actually used in the message (short tags or not)."""

    def __init__(self, version: OnixVersion, style: TagStyle, ns: str | None) -> None:
        short = short_tags(version) if style is TagStyle.SHORT else {}
        prefix = f"{{{ns}}}" if ns else ""
        self._cache: dict[str, str] = {}
        self._short = short
        self._prefix = prefix

    def __call__(self, name: str) -> str:
        tag = self._cache.get(name)
        if tag is None:
            tag = self._cache[name] = self._prefix + self._short.get(name, name)
        return tag


def _first_text(el: _Element, path: str) -> str | None:
    found = el.find(path)
    return found.text.strip() if found is not None and found.text else None


def rule_problems(
    product: _Element, rules: RecipientRules, n: _Names, default_currency: str | None
) -> list[tuple[str, str]]:
    """(element, reason) for every recipient rule a written ``Product`` breaks."""
    problems: list[tuple[str, str]] = []
    notification = _first_text(product, n("NotificationType")) or ""
    if notification not in rules.notification_types:
        accepted = ", ".join(sorted(rules.notification_types))
        problems.append(
            (
                "NotificationType",
                f"{notification!r} is not accepted by this recipient (accepts {accepted})",
            )
        )
    if notification == "05":
        return problems
    forms = rules.allowed_forms_30()
    prices = rules.price_types is not None or rules.currencies is not None
    if not (rules.require_market or forms is not None or prices or rules.profile is not None):
        return problems  # nothing else to check (the default rules): no more lookups
    supplies = product.findall(n("ProductSupply"))
    onix21 = (
        product.find(n("DescriptiveDetail")) is None and product.find(n("ProductForm")) is not None
    )
    if rules.require_market and not onix21:
        if not supplies:
            problems.append(
                ("ProductSupply", "missing: this recipient needs ProductSupply with a Market")
            )
        for supply in supplies:
            if supply.find(n("Market")) is None:
                problems.append(
                    (
                        "ProductSupply/Market",
                        "missing: this recipient needs the Market of every ProductSupply",
                    )
                )
    if forms is not None:
        form = _first_text(
            product, n("ProductForm") if onix21 else f"{n('DescriptiveDetail')}/{n('ProductForm')}"
        )
        form = codes.form_30_of_code(form) if onix21 and form else form
        if form not in forms:
            problems.append(
                (
                    "DescriptiveDetail/ProductForm",
                    f"{form!r} is outside this recipient's product forms "
                    f"({', '.join(sorted(forms))})",
                )
            )
    if prices:
        for price in product.iter(n("Price")):
            price_type = _first_text(price, n("PriceTypeCode" if onix21 else "PriceType"))
            currency = _first_text(price, n("CurrencyCode")) or default_currency
            if rules.price_types is not None and price_type not in rules.price_types:
                problems.append(
                    ("Price/PriceType", f"{price_type!r} is not a price type this recipient takes")
                )
            if rules.currencies is not None and currency not in rules.currencies:
                problems.append(
                    ("Price/CurrencyCode", f"{currency!r} is not a currency this recipient takes")
                )
    if rules.profile is not None and not onix21:
        problems += [
            (element, f"{reason} (onixcheck {rules.profile} profile)")
            for element, reason in profile_problems(product, rules.profile)
        ]
    return problems


class StreamValidator:
    """Validate one message from a path or binary stream, product by product."""

    def __init__(
        self,
        rules: RecipientRules | None = None,
        *,
        max_problems: int = 200,
        code_lists_after: int = CODE_LISTS_AFTER,
    ) -> None:
        self.rules = rules
        self.max_problems = max_problems
        # From this many products on, products are first checked with ``CodeListSchema`` (it
        # takes about 0.1 s to build: not worth it for a small message)
        self.code_lists_after = code_lists_after

    def validate(self, source: Path | str | IO[bytes]) -> ValidationReport:
        started = time.perf_counter()
        report = ValidationReport()
        try:
            self._run(source, report)
        except etree.XMLSyntaxError as exc:
            self._add(
                report, Problem(None, None, "", f"not well-formed XML: {exc}", "xml", exc.lineno)
            )
        report.seconds = round(time.perf_counter() - started, 3)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        report.peak_rss_mb = round(usage.ru_maxrss / 1024, 1)
        report.cpu_seconds = round(usage.ru_utime + usage.ru_stime, 2)
        return report

    def _add(self, report: ValidationReport, problem: Problem) -> None:
        if problem.record_reference is None:
            report.message_invalid = True
        elif not report.first_problems or report.first_problems[-1].record_reference != (
            problem.record_reference
        ):
            # a product's problems are added together: one entry per product
            report.first_problems.append(problem)
        if len(report.problems) >= self.max_problems:
            report.truncated = True
        else:
            report.problems.append(problem)

    def _run(self, source: Path | str | IO[bytes], report: ValidationReport) -> None:
        # Only the root, Header and Product raise events: the parser does the rest in C.
        watched = [
            f"{{*}}{name}"
            for name in ("ONIXMessage", "ONIXmessage", "Header", "header", "Product", "product")
        ] + ["{*}NoProduct", "{*}x507"]
        context = etree.iterparse(
            str(source) if isinstance(source, Path) else source,
            events=("start", "end"),
            tag=watched,
            resolve_entities=False,
            no_network=True,
            huge_tree=True,
            remove_comments=True,
        )
        root: _Element | None = None
        schema: etree.XMLSchema | None = None
        fast: CodeListSchema | None = None
        version, style = OnixVersion.V30, TagStyle.REFERENCE
        names: _Names | None = None
        outer: _Names | None = None
        renamespace = False
        ns = ""
        default_currency: str | None = None
        references: set[str] = set()
        header: _Element | None = None
        first_product: _Element | None = None
        no_product = False
        for event, el in context:
            if event == "start":
                if root is None:
                    root = el
                    version, style = version_of(el.tag, el.get("release"))
                    report.version, report.style = version.value, style.value
                    found_ns = etree.QName(el).namespace
                    ns = namespace(version, style)
                    # A missing or misspelt namespace is a common real-world defect; like
                    # onixcheck, validate as if the right one had been declared.
                    renamespace = found_ns != ns
                    outer = _Names(version, style, found_ns)
                    names = _Names(version, style, ns)
                    schema = load_schema(version, style)
                continue
            if el is root or el.getparent() is not root:
                continue
            if names is None or schema is None or outer is None:
                continue
            tag = el.tag
            if renamespace:
                for node in el.iter():
                    if isinstance(node.tag, str):
                        node.tag = f"{{{ns}}}{etree.QName(node).localname}"
            if tag == outer("Header"):
                if report.products:
                    self._add(
                        report,
                        Problem(
                            None, None, "Header", "comes after products", "schema", el.sourceline
                        ),
                    )
                header = copy.deepcopy(el)
                default_currency = _first_text(el, names("DefaultCurrencyCode"))
                # Header and Product are global elements of the XSD: each is validated as the
                # root of its own check, in place, so nothing is copied or moved.
                for element, reason, line in _schema_errors(schema, el):
                    self._add(report, Problem(None, None, element, reason, "schema", line))
                if self.rules is not None and self.rules.profile is not None:
                    for element, reason in profile_problems(el, self.rules.profile):
                        why = f"{reason} (onixcheck {self.rules.profile} profile)"
                        self._add(report, Problem(None, None, element, why, "rules", el.sourceline))
                continue
            if tag != outer("Product"):
                no_product = no_product or tag == outer("NoProduct") or tag == outer("x507")
                continue
            report.products += 1
            reference = _first_text(el, names("RecordReference"))
            label = reference or f"#{report.products}"
            if fast is None and report.products > self.code_lists_after:
                fast = code_list_schema(version, style)
            errors = [] if fast is not None and fast.valid(el) else _schema_errors(schema, el)
            for element, reason, line in errors:
                self._add(report, Problem(label, _isbn(el, names), element, reason, "schema", line))
            if reference is not None:
                if reference in references:
                    problem = Problem(
                        label,
                        _isbn(el, names),
                        "RecordReference",
                        "used by more than one product in this message",
                        "schema",
                        el.sourceline,
                    )
                    self._add(report, problem)
                references.add(reference)
            if self.rules is not None:
                for element, reason in rule_problems(el, self.rules, names, default_currency):
                    isbn = _isbn(el, names)
                    self._add(report, Problem(label, isbn, element, reason, "rules", el.sourceline))
            if first_product is None:
                first_product = copy.deepcopy(el)
            el.clear()
            while el.getprevious() is not None:
                del root[0]
        if root is not None and schema is not None and names is not None:
            self._check_envelope(report, schema, root, ns, header, first_product, no_product)

    def _check_envelope(
        self,
        report: ValidationReport,
        schema: etree.XMLSchema,
        root: _Element,
        ns: str,
        header: _Element | None,
        first_product: _Element | None,
        no_product: bool,
    ) -> None:
        """The message around the products: root, release attribute, Header, not empty."""
        shell = etree.Element(
            f"{{{ns}}}{etree.QName(root).localname}",
            {str(k): str(v) for k, v in root.attrib.items()},
            nsmap={None: ns},  # type: ignore[dict-item]
        )
        if header is not None:
            shell.append(copy.deepcopy(header))
        if first_product is not None:
            shell.append(first_product)
        elif no_product:
            shell.append(etree.Element(f"{{{ns}}}{'x507' if 'short' in ns else 'NoProduct'}"))
        if schema.validate(shell):
            return
        for entry in _entries(schema.error_log):
            # Only problems of the envelope itself: deeper ones were reported per product.
            if (entry.path or "/").count("/") <= 2:
                element, reason = _describe(entry.message)
                self._add(report, Problem(None, None, element, reason, "schema", entry.line))


def _schema_errors(schema: etree.XMLSchema, element: _Element) -> list[tuple[str, str, int]]:
    if schema.validate(element):
        return []
    return [(*_describe(entry.message), entry.line) for entry in _entries(schema.error_log)]


def _isbn(product: _Element, names: _Names) -> str | None:
    for ident in product.iterchildren(names("ProductIdentifier")):
        if _first_text(ident, names("ProductIDType")) in ("15", "03"):
            return _first_text(ident, names("IDValue"))
    return None


def _entries(log: Any) -> list[Any]:
    return list(log)


def _describe(message: str) -> tuple[str, str]:
    """Split libxml2's "Element '{ns}X': reason" into element and reason, without namespaces."""
    text = _NS.sub("", message)
    match = _ELEMENT.match(text)
    if match is None:
        return "", text
    element = match.group(1) + (f"/@{match.group(2)}" if match.group(2) else "")
    return element, text[match.end() :]


def validate_file(
    path: Path | str | IO[bytes], rules: RecipientRules | None = None, *, max_problems: int = 200
) -> ValidationReport:
    """Validate a message in this process (streaming)."""
    return StreamValidator(rules, max_problems=max_problems).validate(path)


# --- second process -----------------------------------------------------------------------------


def _widen_pipe(stream: IO[bytes] | None) -> None:
    """Let the writer run ahead of the validator by up to 1 MiB instead of the kernel's 64 KiB
    default: the child validates in batches of products, and with a small pipe the writer sat
    blocked during each batch, so generation and validation took turns instead of overlapping."""
    if stream is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size; best effort
        fcntl.fcntl(stream.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)


class ValidatorProcess:
    """A validator in a child process; write the message to it, then ``finish()``.

    It is file-like (``write``), so a feed can write to the output file and to the validator at
    once. Writes block when the child falls behind (the pipe is the back-pressure), so memory
    stays flat on both sides.
    """

    def __init__(self, rules: RecipientRules | None = None, *, max_problems: int = 200) -> None:
        import consonance_sftp

        src = str(Path(consonance_sftp.__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(x for x in (src, env.get("PYTHONPATH")) if x)
        args = [
            sys.executable,
            "-m",
            "consonance_sftp.formats.onix.validator_main",
            "--max-problems",
            str(max_problems),
        ]
        if rules is not None:
            args += ["--rules", rules.model_dump_json()]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=1 << 20,  # one pipe write per ~200 products, not one per product
        )
        _widen_pipe(self._proc.stdin)
        self._broken = False

    def write(self, data: bytes) -> int:
        if not self._broken:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(data)
            except BrokenPipeError:
                self._broken = True  # the child died: finish() reports why
        return len(data)

    def flush(self) -> None:
        return None

    def finish(self, timeout: float = 600) -> ValidationReport:
        try:
            out, err = self._proc.communicate(timeout=timeout)  # closes stdin: end of message
        except (BrokenPipeError, ValueError):
            self._broken = True
            out, err = self._proc.communicate(timeout=timeout)
        if self._proc.returncode != 0 or not out.strip():
            reason = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            return ValidationReport(
                problems=[Problem(None, None, "", f"validator process failed: {reason[0]}", "xml")]
            )
        return ValidationReport.from_json(out.decode())

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> ValidatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class Fanout:
    """Write the same bytes to several sinks (the output file and the validator process)."""

    def __init__(self, *sinks: _Sink) -> None:
        self.sinks = sinks

    def write(self, data: bytes) -> int:
        for sink in self.sinks:
            sink.write(data)
        return len(data)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate an ONIX message read from stdin.")
    parser.add_argument("--rules", help="RecipientRules as JSON")
    parser.add_argument("--max-problems", type=int, default=200)
    args = parser.parse_args(argv)
    rules = RecipientRules.model_validate_json(args.rules) if args.rules else None
    report = StreamValidator(rules, max_problems=args.max_problems).validate(sys.stdin.buffer)
    sys.stdout.write(report.to_json())
    return 0
