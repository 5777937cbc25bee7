"""ONIX versions, namespaces and the reference-name <-> short-tag mapping.

The mapping is read from the unmodified EDItEUR XSDs that onixcheck bundles: every element
declared in a reference-name schema carries a ``shortname`` attribute whose only allowed value
is its short tag. Reading it from the schemas (instead of keeping a copied table) keeps us in
step with the schema revision we validate against and respects EDItEUR's no-extracts terms.
"""

from __future__ import annotations

import enum
from functools import lru_cache
from pathlib import Path

import onixcheck.schema as _onix_schema
from lxml import etree

_XS = "{http://www.w3.org/2001/XMLSchema}"
SCHEMA_DIR = Path(_onix_schema.__file__).parent


class OnixVersion(enum.StrEnum):
    V21 = "2.1"
    V30 = "3.0"
    V31 = "3.1"


class TagStyle(enum.StrEnum):
    REFERENCE = "reference"
    SHORT = "short"


def namespace(version: OnixVersion, style: TagStyle) -> str:
    """The XML namespace of a message in this version and tag style."""
    if version is OnixVersion.V21:
        return f"http://www.editeur.org/onix/2.1/{style.value}"
    return f"http://ns.editeur.org/onix/{version.value}/{style.value}"


def schema_path(version: OnixVersion, style: TagStyle) -> Path:
    """The bundled XSD for a version and tag style."""
    if version is OnixVersion.V21:
        return SCHEMA_DIR / "xsd2.1" / f"ONIX_BookProduct_Release2.1_{style.value}.xsd"
    return (
        SCHEMA_DIR / f"xsd{version.value}" / f"ONIX_BookProduct_{version.value}_{style.value}.xsd"
    )


@lru_cache(maxsize=4)
def short_tags(version: OnixVersion) -> dict[str, str]:
    """Reference name -> short tag for every element of ``version``."""
    root = etree.parse(str(schema_path(version, TagStyle.REFERENCE))).getroot()
    mapping: dict[str, str] = {}
    for element in root.iterchildren(f"{_XS}element"):
        name = element.get("name")
        if name is None:
            continue
        # 3.x declares the short tag as an enumeration, 2.1 as a fixed value.
        short = element.xpath(
            "string(.//xs:attribute[@name='shortname']//xs:enumeration/@value"
            " | .//xs:attribute[@name='shortname']/@fixed)",
            namespaces={"xs": _XS[1:-1]},
        )
        if short:
            mapping[name] = str(short)
    if len(mapping) < 50:
        # Older schemas without shortname attributes: the short schema names its elements'
        # reference names in ``refname``.
        short_root = etree.parse(str(schema_path(version, TagStyle.SHORT))).getroot()
        for element in short_root.iterchildren(f"{_XS}element"):
            ref = element.xpath(
                "string(.//xs:attribute[@name='refname']/@fixed"
                " | .//xs:attribute[@name='refname']//xs:enumeration/@value)",
                namespaces={"xs": _XS[1:-1]},
            )
            if ref and element.get("name"):
                mapping[str(ref)] = str(element.get("name"))
    return mapping


@lru_cache(maxsize=4)
def reference_names(version: OnixVersion) -> dict[str, str]:
    """Short tag -> reference name for every element of ``version``."""
    return {short: ref for ref, short in short_tags(version).items()}


def version_of(root_tag: str, release: str | None) -> tuple[OnixVersion, TagStyle]:
    """Detect version and tag style from the root element's tag and ``release`` attribute.

    Falls back to the namespace when ``release`` is missing, and to 2.1 for files with neither
    (real 2.1 feeds often carry only a DOCTYPE).
    """
    qname = etree.QName(root_tag)
    style = TagStyle.SHORT if qname.localname == "ONIXmessage" else TagStyle.REFERENCE
    ns = qname.namespace or ""
    if release:
        key = release.strip()[:3]
    elif "/3.1/" in ns:
        key = "3.1"
    elif "/3.0/" in ns:
        key = "3.0"
    else:
        key = "2.1"
    try:
        return OnixVersion(key), style
    except ValueError:
        return OnixVersion.V30, style
