"""One recipient's ONIX message, end to end: filter, trim, delta, write, validate.

``write_feed`` streams works into a sink for one recipient's rules. Each product is filtered,
its prices trimmed, serialised once, hashed, compared with the hashes of the last successful
send, and written only when the message should carry it. Deleted, withdrawn and filtered-out
products the recipient holds go out as notification 05 when the recipient wants them. The
same bytes are piped to a validator in a second process, so the message is validated while it
is written; ``FeedResult.should_send`` is false unless every product passed, or, with the
recipient's ``on_invalid_product = "skip"``, the invalid products were set aside
(``FeedResult.skipped``): their byte ranges (``FeedResult.cut``) are then cut from the written
message with ``remove_skipped`` before it is sent.

The engine owns the rest: where the bytes go, the ledger, storing ``FeedResult.state`` after a
successful send (never for test feeds), and scheduling.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import gzip
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Literal

from ...models import Product, Work
from .delta import Decision, DeltaTracker
from .rules import Compression, RecipientRules
from .tags import OnixVersion
from .validate import Fanout, Problem, StreamValidator, ValidationReport, ValidatorProcess
from .writer import (
    ByteSink,
    MessageHeader,
    OnixWriter,
    ProductRefused,
    availability_of,
    notification_type_for,
    record_reference,
)
from .writer21 import Onix21Writer

FeedKind = Literal["full", "delta", "test"]


@dataclass(slots=True)
class FeedResult:
    kind: FeedKind
    sent: dict[str, str] = field(default_factory=dict)  # record reference -> content hash
    deleted: list[str] = field(default_factory=list)  # sent as notification 05
    state: dict[str, str] | None = None  # store after a successful send; None for test feeds
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    filtered_out: int = 0
    bytes: int = 0
    report: ValidationReport = field(default_factory=ValidationReport)
    send_empty: bool = False
    decisions: dict[str, Decision] = field(default_factory=dict)  # of the products sent
    refused: list[Problem] = field(default_factory=list)  # products the writer would not write
    # byte range of each product written through ``write_bytes`` (record reference -> span)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    # with ``on_invalid_product = "skip"``: the products left out, one Problem each (its
    # first), and the byte ranges to cut from the written message (``remove_skipped``)
    skipped: list[Problem] = field(default_factory=list)
    cut: list[tuple[int, int]] = field(default_factory=list)
    # What an empty message of this version and tag style carries instead of products
    # (``<NoProduct/>``; None for ONIX 2.1, which has none): ``remove_skipped`` puts it where
    # the products were when every one of them was cut.
    empty_marker: builtins.bytes | None = None  # ``bytes`` here is the field above

    @property
    def products(self) -> int:
        return len(self.sent) + len(self.deleted)

    @property
    def empty(self) -> bool:
        return self.products == 0

    @property
    def all_skipped(self) -> bool:
        """Every product the message was to carry was invalid and left out (``skip``): an
        incident for the publisher, not "nothing changed"."""
        return bool(self.skipped) and self.empty

    @property
    def should_send(self) -> bool:
        """Valid, and either carries something or the recipient wants empty messages.

        A message whose every product was skipped goes only as the empty (``NoProduct``)
        delta a recipient with ``send_empty`` expects on every run: its state is unchanged,
        so "no change" is what it holds. Never as an empty full or test message (a recipient
        may read an empty full feed as "the catalogue is now empty"), never in ONIX 2.1 (no
        ``NoProduct``), and never without ``send_empty``."""
        if self.all_skipped:
            return (
                self.report.ok
                and self.send_empty
                and self.kind == "delta"
                and self.empty_marker is not None
            )
        return self.report.ok and (not self.empty or self.send_empty)


def _notification(accepted: frozenset[str], wanted: str) -> str:
    if wanted in accepted:
        return wanted
    # A recipient that refuses early/advance notices still gets a complete record as 03.
    return "03" if "03" in accepted else min(accepted - {"04", "05"}, default=wanted)


def write_feed(
    works: Iterable[Work],
    sink: ByteSink,
    *,
    rules: RecipientRules,
    header: MessageHeader,
    previous: Mapping[str, str] | None = None,
    kind: FeedKind = "delta",
    validate: Literal["process", "inline", "none"] = "process",
    today: date | None = None,
    publisher_name: str | None = None,
) -> FeedResult:
    """Write one ONIX message for one recipient into ``sink`` and validate it.

    ``previous`` holds the recipient's hashes from its last successful send (empty: first
    send). ``kind`` "full" resends every product; "test" writes a sample of
    ``rules.test_sample_size`` products and yields no state to store.
    """
    with contextlib.ExitStack() as stack:
        # Inline validation (tests, dry runs) re-reads a spooled copy after writing.
        buffer = (
            stack.enter_context(tempfile.SpooledTemporaryFile(8 << 20))
            if validate == "inline"
            else None
        )
        return _write_feed(
            works, sink, rules, header, previous, kind, validate, today, publisher_name, buffer
        )


def _write_feed(
    works: Iterable[Work],
    sink: ByteSink,
    rules: RecipientRules,
    header: MessageHeader,
    previous: Mapping[str, str] | None,
    kind: FeedKind,
    validate: str,
    today: date | None,
    publisher_name: str | None,
    buffer: IO[bytes] | None,
) -> FeedResult:
    writer_class = Onix21Writer if rules.onix_version is OnixVersion.V21 else OnixWriter
    if rules.sender_identifiers() and not header.sender_identifiers:
        header = dataclasses.replace(header, sender_identifiers=rules.sender_identifiers())
    previous = previous or {}
    result = FeedResult(kind=kind, send_empty=rules.send_empty)
    tracker = DeltaTracker(previous, full=kind != "delta")
    validator = ValidatorProcess(rules) if validate == "process" else None
    target = Fanout(*(s for s in (sink, validator, buffer) if s is not None))
    today = today or header.sent_at.date()
    try:
        with writer_class(
            target,
            header,
            version=rules.onix_version,
            style=rules.tag_style,
            publisher_name=publisher_name,
            today=today,
            publisher=rules.publisher,
            co_publishers=rules.co_publishers,
            supplier=rules.supplier,
            sales_rights_type=rules.sales_rights_type,
        ) as writer:
            for work in works:
                work = rules.trim_subjects(work)
                for product in work.products:
                    if kind == "test" and len(result.sent) >= rules.test_sample_size:
                        break
                    reference = record_reference(product)
                    if not rules.accepts(work, product):
                        result.filtered_out += 1
                        continue
                    if product.publishing_status in rules.delete_statuses:
                        if kind != "test" and tracker.withdraw(reference) and rules.send_deletions:
                            writer.write_deletion(reference, product.isbn13)
                            result.deleted.append(reference)
                        continue
                    trimmed = rules.trim_prices(product)
                    if rules.availability_map:
                        trimmed = _map_availability(trimmed, rules.availability_map)
                    notification = _notification(
                        rules.notification_types, notification_type_for(trimmed, today)
                    )
                    try:
                        data = writer.product_bytes(work, trimmed, notification)
                    except ProductRefused as refused:
                        tracker.seen.add(reference)  # never a 05 for a product still held
                        if reference in previous:
                            tracker.state[reference] = previous[reference]
                        result.refused.append(
                            Problem(
                                record_reference=refused.record_reference,
                                isbn13=refused.isbn13,
                                element=refused.element,
                                reason=refused.reason,
                                check="rules",
                            )
                        )
                        continue
                    decision = tracker.decide(reference, writer.content_hash(data))
                    if decision is Decision.UNCHANGED and kind == "delta":
                        result.unchanged += 1
                        continue
                    if decision is Decision.NEW:
                        result.new += 1
                    elif decision is Decision.CHANGED:
                        result.changed += 1
                    writer.write_bytes(data)
                    end = writer.bytes_written
                    result.spans[reference] = (end - len(data) - 1, end)  # with its newline
                    result.decisions[reference] = decision
                    result.sent[reference] = tracker.state[reference]
            if kind != "test" and rules.send_deletions:
                for reference in tracker.gone():
                    writer.write_deletion(reference)
                    result.deleted.append(reference)
        result.bytes = writer.bytes_written
        result.empty_marker = writer.empty_marker_bytes()
    except BaseException:
        if validator is not None:
            validator.kill()
        raise
    tracker.forget(result.deleted)
    result.state = None if kind == "test" else tracker.state
    if validator is not None:
        result.report = validator.finish()
    elif buffer is not None:
        buffer.seek(0)
        result.report = StreamValidator(rules).validate(buffer)
    # Products the writer refused are problems of the message: it is not sent without them.
    result.report.problems[:0] = result.refused
    result.report.first_problems[:0] = result.refused
    if rules.on_invalid_product == "skip":
        _skip_invalid(result, previous)
    return result


def _map_availability(product: Product, mapping: Mapping[str, str]) -> Product:
    """The product with its availability written as the recipient's code for it."""
    try:
        code = availability_of(product)
    except ProductRefused:
        return product  # refused by the writer with its reason
    if code not in mapping:
        return product
    return dataclasses.replace(product, availability=mapping[code])


def _skip_invalid(result: FeedResult, previous: Mapping[str, str]) -> None:
    """Leave the invalid products out of the message (the feed policy ``skip``): each is
    reported in ``result.skipped``, its bytes are to be cut (``result.cut``), and the
    recipient's state keeps what it held of it. Nothing is skipped when the message itself
    is at fault (header, envelope, a failed validator) or a problem is not tied to a product
    written in full (a deletion record): the message is blocked then."""
    report = result.report
    if report.ok:
        return
    refused = {p.record_reference for p in result.refused}
    if report.message_invalid or any(p.record_reference is None for p in report.problems):
        return
    bad = {p.record_reference for p in report.first_problems}
    if any(ref not in result.spans and ref not in refused for ref in bad):
        return
    for problem in report.first_problems:
        ref = problem.record_reference
        assert ref is not None
        result.skipped.append(problem)
        if ref in refused:
            continue
        result.cut.append(result.spans.pop(ref))
        del result.sent[ref]
        decision = result.decisions.pop(ref)
        if decision is Decision.NEW:
            result.new -= 1
        elif decision is Decision.CHANGED:
            result.changed -= 1
        if result.state is not None:
            if ref in previous:
                result.state[ref] = previous[ref]  # the recipient keeps what it had
            else:
                result.state.pop(ref, None)
    result.cut.sort()
    result.bytes -= sum(end - start for start, end in result.cut)
    report.problems.clear()
    report.truncated = False


def remove_skipped(path: Path, result: FeedResult) -> None:
    """Cut the skipped products' bytes (``result.cut``) out of the message written at
    ``path``, streaming: what is left is the message with the valid products only (each
    product was validated on its own, so it stays valid). When no product is left, the
    message says so as an empty one does (``result.empty_marker``, ``NoProduct``), where the
    first product was, so it is still a valid message."""
    if not result.cut:
        return
    marker = result.empty_marker if result.empty else None
    kept = path.with_name(path.name + ".kept")
    with path.open("rb") as source, kept.open("wb") as target:
        at = 0
        for start, end in result.cut:
            _copy(source, target, start - at)
            if marker is not None:
                target.write(marker)
                result.bytes += len(marker)
                marker = None
            source.seek(end)
            at = end
        shutil.copyfileobj(source, target, 1 << 20)
    kept.replace(path)
    result.cut = []


def _copy(source: IO[bytes], target: IO[bytes], size: int) -> None:
    while size > 0:
        chunk = source.read(min(size, 1 << 20))
        if not chunk:
            return
        target.write(chunk)
        size -= len(chunk)


def compress(
    source: IO[bytes], target: IO[bytes], compression: Compression, inner_name: str
) -> None:
    """Copy an ONIX message into ``target`` gzipped or zipped (as ``inner_name``), streaming."""
    if compression is Compression.GZIP:
        with gzip.GzipFile(filename=inner_name, mode="wb", fileobj=target, mtime=0) as gz:
            shutil.copyfileobj(source, gz, 1 << 20)
    elif compression is Compression.ZIP:
        info = zipfile.ZipInfo(inner_name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        with (
            zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
            archive.open(info, "w") as member,
        ):
            shutil.copyfileobj(source, member, 1 << 20)
    else:
        shutil.copyfileobj(source, target, 1 << 20)
