"""A deterministic generator of synthetic works and products, for tests and the benchmark.

The records look like a typical trade catalogue: a paperback, often a hardback and an ebook per
work, two contributors with bios, BISAC and Thema subjects, keywords, two descriptions, a cover
link, prices in three currencies. Same seed, same catalogue.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

from ...models import (
    Audience,
    Contact,
    Contribution,
    Extent,
    Imprint,
    MarketingText,
    Price,
    Product,
    Subject,
    SubjectScheme,
    SupportingResource,
    Work,
)

_WORDS = [
    "river",
    "night",
    "garden",
    "winter",
    "letters",
    "silent",
    "city",
    "house",
    "stone",
    "glass",
    "orchard",
    "harbour",
    "shadow",
    "light",
    "summer",
    "memory",
    "island",
    "road",
    "fire",
    "salt",
    "bridge",
    "mountain",
    "archive",
    "voyage",
]
_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Farah", "Goran", "Hana", "Ivo", "Jun")
_SURNAMES = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Rossi", "Novak", "Silva", "Byrne")
_BISAC = ("FIC000000", "FIC019000", "FIC022000", "HIS037000", "BIO000000", "SCI000000")
_THEMA = ("FBA", "FF", "FFP", "NHB", "DNB", "PD", "1DNS", "3MPQS")
_IMPRINTS = ("Snowbooks", "Harbour Press", "Lantern")


def isbn13(n: int, prefix: str = "978199") -> str:
    """A valid ISBN-13 (check digit computed) numbered ``n`` within ``prefix``."""
    body = f"{prefix}{n:06d}"[:12]
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def synthetic_works(count_products: int, *, seed: int = 7, lean: bool = False) -> Iterator[Work]:
    """Yield works until ``count_products`` products have been produced.

    ``lean`` trims each record to a typical minimal trade record (about 2.8 KB of ONIX: one
    contributor, two subjects, a short description, two prices, no cover link or measures);
    the default is a fuller record (about 4.9 KB) with bios, keywords, XHTML descriptions,
    a cover link and three prices.
    """
    for work in _works(count_products, seed):
        if lean:
            work = dataclasses.replace(
                work,
                contributions=tuple(
                    dataclasses.replace(
                        c, contributor=dataclasses.replace(c.contributor, biographical_note=None)
                    )
                    for c in work.contributions[:1]
                ),
                subjects=work.subjects[:2],
                keywords=(),
                marketing_texts=work.marketing_texts[:1],
                supporting_resources=(),
                products=tuple(
                    dataclasses.replace(
                        p,
                        prices=p.prices[:2],
                        extents=(),
                        audiences=(),
                        height_mm=None,
                        width_mm=None,
                    )
                    for p in work.products
                ),
            )
        yield work


def _works(count_products: int, seed: int) -> Iterator[Work]:
    rng = random.Random(seed)
    made = 0
    work_id = 0
    contact_id = 0
    price_id = 0
    while made < count_products:
        work_id += 1
        title = " ".join(w.title() for w in rng.choices(_WORDS, k=rng.randint(1, 4)))
        contributions = []
        for seq in (1, 2):
            contact_id += 1
            first, last = rng.choice(_NAMES), rng.choice(_SURNAMES)
            contributions.append(
                Contribution(
                    id=contact_id,
                    contributor=Contact(
                        id=contact_id,
                        name=f"{first} {last}",
                        names_before_key=first,
                        key_names=last,
                        biographical_note=(
                            f"{first} {last} writes about "
                            + " ".join(rng.choices(_WORDS, k=12))
                            + "."
                        )
                        if seq == 1
                        else None,
                    ),
                    role="A01" if seq == 1 else rng.choice(("A12", "B06", "B01")),
                    sequence_number=seq,
                )
            )
        published = date(2020, 1, 1) + timedelta(days=rng.randint(0, 3000))
        forms = ["BC"] + [f for f in ("BB", "DG") if rng.random() < 0.6]
        products = []
        for form in forms:
            if made >= count_products:
                break
            made += 1
            pages = rng.randint(96, 640)
            prices = []
            for currency, amount, territories in (
                ("GBP", rng.randint(699, 2499), ("GB",)),
                ("USD", rng.randint(899, 2999), ("US",)),
                ("EUR", rng.randint(799, 2799), ("DE", "FR", "IT", "ES")),
            ):
                price_id += 1
                prices.append(
                    Price(
                        id=price_id,
                        amount=Decimal(amount) / 100,
                        currency=currency,
                        price_type="02",
                        territories=territories,
                    )
                )
            products.append(
                Product(
                    id=made,
                    work_id=work_id,
                    typename="ElectronicBookProduct" if form == "DG" else "PhysicalBookProduct",
                    isbn13=isbn13(made),
                    title=title,
                    subtitle="A novel" if rng.random() < 0.3 else None,
                    product_form=form,
                    publishing_status="04" if published < date(2026, 1, 1) else "02",
                    publication_date=published,
                    prices=tuple(prices),
                    for_sale_worldwide=rng.random() < 0.5,
                    for_sale_countries=("GB", "IE", "US", "CA"),
                    height_mm=Decimal(198) if form != "DG" else None,
                    width_mm=Decimal(129) if form != "DG" else None,
                    page_count=pages,
                    language="eng",
                    extents=(Extent(extent_type="00", value=str(pages), unit="03"),),
                    audiences=(Audience(code_type="01", value="01"),),
                )
            )
        yield Work(
            id=work_id,
            title=title,
            imprint=Imprint(id=1 + work_id % 3, name=_IMPRINTS[work_id % 3]),
            publisher_name="Synthetic Books Ltd",
            contributions=tuple(contributions),
            subjects=(
                Subject(scheme=SubjectScheme.BISAC, code=rng.choice(_BISAC), main=True),
                Subject(scheme=SubjectScheme.THEMA, code=rng.choice(_THEMA[:6]), main=True),
                Subject(scheme=SubjectScheme.THEMA, code=rng.choice(_THEMA[6:])),
            ),
            keywords=tuple(rng.sample(_WORDS, 4)),
            marketing_texts=(
                MarketingText(
                    id=work_id * 2,
                    variant="SHORT_DESCRIPTION",
                    text=" ".join(rng.choices(_WORDS, k=15)).capitalize() + ".",
                ),
                MarketingText(
                    id=work_id * 2 + 1,
                    variant="DESCRIPTION",
                    text="<p>"
                    + " ".join(rng.choices(_WORDS, k=25)).capitalize()
                    + ".</p><p><em>"
                    + title
                    + "</em> is a story of "
                    + " ".join(rng.choices(_WORDS, k=8))
                    + ".</p>",
                    text_format="05",
                ),
            ),
            supporting_resources=(
                SupportingResource(
                    id=work_id,
                    variant="FRONT_COVER",
                    filename=f"{work_id}.jpg",
                    url=f"https://covers.example.com/{work_id}.jpg",
                    content_type="image/jpeg",
                    width=1600,
                    height=2400,
                ),
            ),
            products=tuple(products),
        )
