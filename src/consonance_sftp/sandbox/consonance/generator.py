"""A generator of realistic Consonance catalogues of any size, deterministic for a given seed.

Works get print, ebook and audio products with valid ISBN-13s, contributors, prices in several
currencies and territories, BISAC and Thema subjects, production runs for print, marketing
texts (some under embargo until before publication), covers (served as real small JPEGs),
promotional samples (PDFs), production files (real small PDFs for print, EPUBs with an XHTML
accessibility summary for ebooks, WAV masters per track for audiobooks), contracts and to-dos.
Record dates lie at least three days in the past, so an incremental poll right after seeding
sees only the changes a test or the demo makes. 50,000 products take a few seconds.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from consonance_sftp.models import (
    Contact,
    Contract,
    Contribution,
    Imprint,
    LicensedRight,
    MarketingText,
    Price,
    Product,
    ProductionFile,
    ProductionRun,
    Subject,
    SubjectScheme,
    SupportingResource,
    Todo,
    Work,
)
from consonance_sftp.sandbox.consonance.catalogue import Catalogue

FIRST = [
    "Ada",
    "Ben",
    "Cate",
    "Dev",
    "Elif",
    "Femi",
    "Grace",
    "Hugo",
    "Ines",
    "Jonah",
    "Kiri",
    "Leo",
    "Maya",
    "Nils",
    "Olu",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tove",
    "Uma",
    "Vik",
    "Wen",
    "Xavi",
    "Yara",
    "Zoe",
    "Amir",
    "Bea",
    "Cal",
    "Dora",
    "Emil",
    "Fern",
    "Gus",
    "Hana",
    "Ivo",
    "Juno",
    "Kai",
    "Lena",
]
LAST = [
    "Abbott",
    "Baptiste",
    "Chen",
    "Dlamini",
    "Evans",
    "Farah",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Mensah",
    "Novak",
    "Okafor",
    "Patel",
    "Quispe",
    "Rossi",
    "Santos",
    "Tanaka",
    "Ueda",
    "Varga",
    "Walsh",
    "Xu",
    "Yilmaz",
    "Zhou",
    "Brennan",
    "Castillo",
    "Duarte",
    "Eriksen",
    "Fischer",
    "Green",
    "Holm",
    "Ivanova",
    "Jones",
    "Kaur",
    "Lindqvist",
    "Moreau",
    "Nakamura",
]
WORDS = [
    "River",
    "Glass",
    "Winter",
    "Orchard",
    "Lantern",
    "Harbour",
    "Silent",
    "Copper",
    "Northern",
    "Atlas",
    "Salt",
    "Meridian",
    "Paper",
    "Hollow",
    "Ember",
    "Tide",
    "Garden",
    "Signal",
    "Iron",
    "Velvet",
    "Quiet",
    "Distant",
    "Small",
    "Hours",
    "Island",
    "Map",
    "Season",
    "Thread",
    "Stone",
    "Letters",
    "Light",
    "Orbit",
    "Cartographer",
    "Archive",
    "Field",
    "Weather",
    "Bridge",
    "Ash",
]
IMPRINTS = (Imprint(id=1, name="Snowbooks"), Imprint(id=2, name="Meridian Press"))
THEMA = (
    ("FBA", "Modern & contemporary fiction", "FB"),
    ("FF", "Crime & mystery fiction", "F"),
    ("FM", "Fantasy", "F"),
    ("DCF", "Poetry by individual poets", "DC"),
    ("NHB", "General & world history", "NH"),
    ("WBA", "General cookery & recipes", "WB"),
    ("YFB", "Children's / Teenage general fiction", "YF"),
)
BISAC = (
    ("FIC000000", "FICTION / General"),
    ("FIC022000", "FICTION / Mystery & Detective / General"),
    ("FIC009000", "FICTION / Fantasy / General"),
    ("POE000000", "POETRY / General"),
    ("HIS000000", "HISTORY / General"),
    ("CKB000000", "COOKING / General"),
    ("JUV000000", "JUVENILE FICTION / General"),
)
STAGES = (
    "Commissioning",
    "Editorial",
    "Copy-edit",
    "Typesetting",
    "Proofs",
    "Production approval",
    "Printing",
    "Published",
)
TODO_NAMES = (
    "Cover brief",
    "Copy-edit complete",
    "Final proofs approved",
    "Print files approved",
    "Ebook files approved",
    "Marketing copy approved",
)
# (currency, ONIX price type, qualifier, territories, multiplier against GBP)
PRICE_SLOTS = (
    ("GBP", "02", "05", ("GB",), Decimal("1")),
    ("USD", "01", "05", ("US",), Decimal("1.3")),
    ("EUR", "02", "05", ("DE", "FR", "IE", "NL"), Decimal("1.2")),
    ("AUD", "02", "05", ("AU",), Decimal("2.0")),
    ("CAD", "01", "05", ("CA",), Decimal("1.8")),
)


@dataclass(frozen=True, slots=True)
class _Format:
    typename: str
    product_form: str
    base_price: Decimal


HARDBACK = _Format("PhysicalBookProduct", "BB", Decimal("18.99"))
PAPERBACK = _Format("PhysicalBookProduct", "BC", Decimal("9.99"))
EBOOK = _Format("ElectronicBookProduct", "DG", Decimal("5.99"))
AUDIO = _Format("ElectronicAudioProduct", "AJ", Decimal("14.99"))
AUDIO_TRACKS = 3
"""Audio masters per audiobook (one WAV per track)."""
PATTERNS = (
    ((PAPERBACK, EBOOK), 60),
    ((HARDBACK, PAPERBACK, EBOOK, AUDIO), 15),
    ((PAPERBACK,), 15),
    ((HARDBACK, EBOOK, AUDIO), 10),
)


def asin(n: int) -> str:
    """A Kindle-style ASIN for product ``n`` (``B0`` and 8 characters), deterministic and
    unique per id; half the generated ebooks (the even ids) have one, drawing nothing random."""
    return f"B0{n:08X}"


def isbn13(n: int) -> str:
    """A valid ISBN-13 in the 978-1-9 range, one per ``n``."""
    body = f"97819{n % 10_000_000:07d}"
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


class _Ids:
    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def __call__(self, kind: str, start: int = 1) -> int:
        value = self.counters.get(kind, start - 1) + 1
        self.counters[kind] = value
        return value


def generate_catalogue(
    products: int = 250, *, seed: int = 1, today: date | None = None, works: int | None = None
) -> Catalogue:
    """A catalogue with exactly ``products`` products spread over works (or ``works`` works)."""
    rng = random.Random(seed)
    today = today or datetime.now(UTC).date()
    ids = _Ids()
    contacts = [
        Contact(
            id=ids("contact", 501),
            name=f"{first} {last}",
            key_names=last,
            names_before_key=first,
            biographical_note=f"{first} {last} lives by the sea and writes novels.",
            emails=(f"{first.lower()}.{last.lower()}@example.com",),
        )
        for first, last in (
            (rng.choice(FIRST), rng.choice(LAST))
            for _ in range(max(8, (products if works is None else works * 2) // 4))
        )
    ]
    contacts += [
        Contact(id=ids("contact", 501), name=name, is_organisation=True, emails=(email,))
        for name, email in (
            ("Clays Ltd", "production@clays.example"),
            ("Gardners Books", "data@gardners.example"),
            ("Northern Audio Studio", "masters@northern-audio.example"),
        )
    ]
    patterns = [p for p, _ in PATTERNS]
    weights = [w for _, w in PATTERNS]
    works_out: list[Work] = []
    contracts: list[Contract] = []
    made = 0
    while (made < products) if works is None else (len(works_out) < works):
        formats: tuple[_Format, ...] = rng.choices(patterns, weights)[0]
        if works is None:
            formats = formats[: products - made]
        work, contract = _work(rng, ids, formats, contacts, today, seed=seed)
        works_out.append(work)
        contracts.append(contract)
        made += len(work.products)
    return Catalogue.from_records(works_out, contacts, contracts)


# Sub-rights the publisher may also hold, with the author's usual share of their income.
EXTRA_RIGHTS = (
    ("Translation", (75.0, 80.0)),
    ("Serial", (80.0, 90.0)),
    ("US & Canada", (80.0, 85.0)),
    ("Large Print", (50.0, 60.0)),
    ("Dramatic", (85.0, 90.0)),
)
ADVANCES = (1500.0, 2500.0, 4000.0, 5000.0, 7500.0, 10000.0, 15000.0, 25000.0)
TERMS = ("60", "84", "120", "180", "240")  # months, as Consonance stores them (a string)
DESCRIPTIONS = (
    "Volume rights, world English language",
    "One-book deal, world rights",
    "Two-book deal; this is the first",
    "Licence for the term, renewable by agreement",
)
TERMINATION_REASONS = (
    "Rights reverted: out of print",
    "Terminated by mutual agreement",
    "Manuscript not delivered",
)


def contract_terms(
    contract: Contract, right_id: Callable[[], int], *, seed: int, pub: date, today: date
) -> Contract:
    """A contract with realistic dates, term, money terms and sub-rights.

    Its draws come from a generator of its own, seeded with the catalogue's seed and the
    contract id, so the catalogue's main generator draws exactly what it drew before these
    fields existed (every seed keeps its works, products and ids); the extra rights take ids
    from ``right_id`` (the generator's own range, for the same reason).
    """
    r = random.Random(f"contract-terms-{seed}-{contract.id}")
    signed = contract.signed_date or pub - timedelta(days=r.randint(400, 900))
    planned = contract.ms_delivery_date or pub - timedelta(days=300)
    revised = planned + timedelta(days=r.randint(30, 120)) if r.random() < 0.3 else None
    due = revised or planned
    actual = due + timedelta(days=r.randint(-14, 45)) if due < today else None
    term = r.choice(TERMS)
    flat_fee = r.random() < 0.1  # a flat fee instead of an advance against royalties
    terminated = signed + timedelta(days=r.randint(700, 1400)) if r.random() < 0.05 else None
    extras = tuple(
        LicensedRight(id=right_id(), right_type=name, author_cut=r.choice(cuts))
        for name, cuts in EXTRA_RIGHTS
        if r.random() < 0.4
    )
    return dataclasses.replace(
        contract,
        description=r.choice(DESCRIPTIONS),
        signed_date=signed,
        ms_delivery_date=planned,
        revised_ms_delivery_date=revised,
        actual_ms_delivery_date=actual,
        ms_proofs_date=pub - timedelta(days=r.randint(90, 150)),
        pub_before_date=signed + timedelta(days=r.choice((540, 730, 913))),
        review_date=signed + timedelta(days=int(term) * 30),
        terminated_date=terminated if terminated is not None and terminated < today else None,
        termination_reason=(
            r.choice(TERMINATION_REASONS) if terminated is not None and terminated < today else None
        ),
        term=term,
        copyright_year=str(pub.year),
        flat_fee_value=float(r.choice((750, 1000, 1500, 2000))) if flat_fee else None,
        guaranteed_royalty_value=None if flat_fee else r.choice(ADVANCES),
        author_discount=r.choice(("35%", "40%", "50%")),
        remainder_rate=r.choice(("10% of net receipts", "5% of net receipts")),
        remainder_rate_over_cost=r.choice((10.0, 15.0, 20.0)),
        licensed_rights=contract.licensed_rights + extras,
    )


def _stamp(day: date) -> datetime:
    return datetime.combine(day, time(9, 30), tzinfo=UTC)


def _work(
    rng: random.Random,
    ids: _Ids,
    formats: tuple[_Format, ...],
    contacts: list[Contact],
    today: date,
    *,
    seed: int = 1,
) -> tuple[Work, Contract]:
    work_id = ids("work", 1001)
    title = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
    title = f"The {title}" if rng.random() < 0.3 else title
    subtitle = (
        f"A {rng.choice(('novel', 'history', 'memoir', 'collection'))}"
        if rng.random() < 0.4
        else None
    )
    pub = today + timedelta(days=rng.randint(-900, 300))
    updated = _stamp(today - timedelta(days=rng.randint(3, 900)))
    status = "02" if pub > today else ("07" if rng.random() < 0.05 else "04")
    persons = [c for c in contacts if not c.is_organisation]
    authors = rng.sample(persons, rng.choice((1, 1, 1, 2, 3)))
    product_list: list[Product] = []
    for fmt in formats:
        product_id = ids("product", 20001)
        product_list.append(
            _product(rng, ids, fmt, product_id, work_id, title, subtitle, pub, status, updated)
        )
    physical = tuple(p.id for p in product_list if p.typename == "PhysicalBookProduct")
    contributions = tuple(
        Contribution(id=ids("contribution"), contributor=c, role="A01", sequence_number=i + 1)
        for i, c in enumerate(authors)
    )
    if rng.random() < 0.2:
        contributions += (
            Contribution(
                id=ids("contribution"),
                contributor=rng.choice(persons),
                role="A12",
                sequence_number=len(contributions) + 1,
                product_ids=physical,
            ),
        )
    thema = rng.sample(THEMA, 2)
    bisac = rng.sample(BISAC, 2)
    subjects = (
        Subject(scheme=SubjectScheme.THEMA, code=thema[0][0], description=thema[0][1], main=True),
        Subject(scheme=SubjectScheme.THEMA, code=thema[1][0], description=thema[1][1]),
        Subject(scheme=SubjectScheme.BISAC, code=bisac[0][0], description=bisac[0][1], main=True),
        Subject(scheme=SubjectScheme.BISAC, code=bisac[1][0], description=bisac[1][1]),
    )
    names = " and ".join(c.contributor.name for c in contributions if c.role == "A01")
    texts = (
        MarketingText(
            id=ids("text"),
            variant="SHORT_DESCRIPTION",
            text=f"<p>{title}: the new book by {names}.</p>",
            approval_status="APPROVED",
        ),
        MarketingText(
            id=ids("text"),
            variant="LONG_DESCRIPTION",
            text=f"<p>{title} follows a {rng.choice(WORDS).lower()} "
            f"and a {rng.choice(WORDS).lower()} across one long "
            f"{rng.choice(('summer', 'winter', 'decade'))}.</p>",
            approval_status=rng.choice(("APPROVED", "DRAFT")),
            embargo_from=pub - timedelta(days=90),
        ),
    )
    cover_id = ids("resource", 70001)
    # Promotional material (a one-page PDF sample); its own id range and no random draw, so
    # every seed keeps the catalogue it had before promo material was added.
    promo_id = ids("promo_resource", 2_000_001)
    resources = (
        SupportingResource(
            id=cover_id,
            variant="FRONT_COVER",
            filename=f"{product_list[0].isbn13}.jpg",
            url=f"/files/generated/sr-{cover_id}-40x60.jpg",
            status="APPROVED",
            content_type="image/jpeg",
            width=40,
            height=60,
            created_at=updated,
            caption=f"Front cover of {title}",
        ),
        SupportingResource(
            id=promo_id,
            variant="SAMPLE_CONTENT",
            filename=f"{product_list[0].isbn13}_sample.pdf",
            url=f"/files/generated/sr-{promo_id}.pdf",
            status="APPROVED",
            content_type="application/pdf",
            created_at=updated,
            caption=f"Sample chapter of {title}",
        ),
    )
    runs: tuple[ProductionRun, ...] = ()
    if physical:
        runs = (
            ProductionRun(
                id=ids("run", 90001),
                name="First printing",
                product_ids=physical,
                quantity=rng.choice((1000, 1500, 2000, 3000, 5000)),
                delivery_date=pub - timedelta(days=42),
                paper=rng.choice(("Holmen Book Cream 60gsm", "Munken Print White 80gsm")),
                text_colour="1/1",
                binding=rng.choice(("Perfect bound", "Sewn")),
                cover_type=rng.choice(("Softback", "Case-bound with jacket")),
                cover_colours="4/0",
                finishes=("Matt laminate",) + (("Spot UV",) if rng.random() < 0.3 else ()),
                embellishments=("Foil",) if rng.random() < 0.1 else (),
            ),
        )
    stage_index = rng.randrange(len(STAGES))
    todos = tuple(
        Todo(
            id=ids("todo", 50001),
            name=name,
            completed=i < stage_index - 2,
            due_date=pub - timedelta(days=120 - 20 * i),
        )
        for i, name in enumerate(TODO_NAMES)
    )
    contract = Contract(
        id=ids("contract", 3001),
        contract_name=f"{names or 'Author'}: {title}",
        work_id=work_id,
        signed_date=pub - timedelta(days=rng.randint(400, 900)),
        ms_delivery_date=pub - timedelta(days=300),
        licensed_rights=tuple(
            LicensedRight(id=ids("licensed_right", 7001), right_type=right, author_cut=cut)
            for right, cut in (
                (("World English", 50.0), ("Audio", 50.0))
                if rng.random() < 0.5
                else (("World English", 50.0),)
            )
        ),
    )
    contract = contract_terms(
        contract, lambda: ids("extra_right", 7_000_001), seed=seed, pub=pub, today=today
    )
    work = Work(
        id=work_id,
        title=title,
        subtitle=subtitle,
        imprint=rng.choice(IMPRINTS),
        project_stage=STAGES[stage_index],
        work_type=rng.choice(("Fiction", "Non-fiction")),
        contributions=contributions,
        subjects=subjects,
        keywords=tuple(w.lower() for w in rng.sample(WORDS, 3)),
        marketing_texts=texts,
        supporting_resources=resources,
        production_runs=runs,
        products=tuple(product_list),
        todos=todos,
        contract_ids=(contract.id,),
        updated_at=updated,
    )
    return work, contract


def _product(
    rng: random.Random,
    ids: _Ids,
    fmt: _Format,
    product_id: int,
    work_id: int,
    title: str,
    subtitle: str | None,
    pub: date,
    status: str,
    updated: datetime,
) -> Product:
    prices = tuple(
        Price(
            id=ids("price", 400001),
            amount=(fmt.base_price * mult).quantize(Decimal("1")) - Decimal("0.01"),
            currency=currency,
            price_type=price_type,
            qualifier=qualifier,
            territories=territories,
        )
        for currency, price_type, qualifier, territories, mult in PRICE_SLOTS
        if currency in ("GBP", "USD") or rng.random() < 0.6
    )
    files: tuple[ProductionFile, ...] = ()
    if fmt.typename == "PhysicalBookProduct" or fmt is EBOOK:
        # Print products get the printer's pair (interior and cover PDFs), approved together;
        # ebooks get an EPUB. One random draw either way, so seeds keep their catalogues.
        approval = rng.choice(("APPROVED", "APPROVED", "AWAITING_APPROVAL"))
        parts = (("INTERIOR", "pdf"), ("COVER", "pdf")) if fmt is not EBOOK else (("EPUB", "epub"),)
        made = []
        for variant, ext in parts:
            file_id = ids("file", 80001)
            made.append(
                ProductionFile(
                    id=file_id,
                    file_variant=variant,
                    filename=f"{product_id}_{variant.lower()}.{ext}",
                    approval_status=approval,
                    allow_distribution="ALLOWED",
                    file_format=ext.upper(),
                    url=f"/files/generated/pf-{file_id}.{ext}",
                    product_ids=(product_id,),
                    created_at=updated,
                )
            )
        if fmt is EBOOK:
            # The accessibility summary goes with the EPUB, approved with it (no extra draw).
            a11y_id = ids("a11y_file", 4_000_001)
            made.append(
                ProductionFile(
                    id=a11y_id,
                    file_variant="ACCESSIBILITY",
                    filename=f"{product_id}_accessibility.html",
                    approval_status=approval,
                    allow_distribution="ALLOWED",
                    file_format="HTML",
                    url=f"/files/generated/pf-{a11y_id}.html",
                    product_ids=(product_id,),
                    created_at=updated,
                )
            )
        files = tuple(made)
    elif fmt is AUDIO:
        # Audio masters, one WAV per track; approval follows the id, not a random draw, so
        # seeds keep their catalogues. About one audiobook in four still awaits approval.
        approval = "AWAITING_APPROVAL" if product_id % 4 == 0 else "APPROVED"
        files = tuple(
            ProductionFile(
                id=(audio_id := ids("audio_file", 3_000_001)),
                file_variant="AUDIO",
                filename=f"{product_id}_audio_{track:02d}.wav",
                approval_status=approval,
                allow_distribution="ALLOWED",
                file_format="WAV",
                url=f"/files/generated/pf-{audio_id}.wav",
                product_ids=(product_id,),
                created_at=updated,
            )
            for track in range(1, AUDIO_TRACKS + 1)
        )
    physical = fmt.typename == "PhysicalBookProduct"
    product = Product(
        id=product_id,
        work_id=work_id,
        typename=fmt.typename,
        isbn13=isbn13(product_id),
        asin=asin(product_id) if fmt is EBOOK and product_id % 2 == 0 else None,
        title=title,
        subtitle=subtitle,
        product_form=fmt.product_form,
        publishing_status=status,
        publication_date=pub,
        prices=prices,
        for_sale_countries=("GB", "IE", "US", "CA", "AU", "NZ"),
        for_sale_worldwide=False,
        height_mm=Decimal(rng.choice((198, 216, 234))) if physical else None,
        width_mm=Decimal(rng.choice((129, 135, 153))) if physical else None,
        thickness_mm=Decimal(rng.randint(12, 40)) if physical else None,
        page_count=rng.randint(120, 640) if fmt is not AUDIO else None,
        language="eng",
        production_files=files,
        updated_at=updated,
    )
    # The interior PDF has the product's extent, so page-count preflight checks real pages.
    return dataclasses.replace(
        product,
        production_files=tuple(
            dataclasses.replace(f, url=f.url.replace(".pdf", f"-p{product.page_count}.pdf"))
            if f.file_variant == "INTERIOR" and f.url and product.page_count
            else f
            for f in product.production_files
        ),
    )
