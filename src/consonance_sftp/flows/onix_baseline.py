"""ONIX feeds, the recipient's side of the record: what each partner holds, and how a delivered
message changes it.

Per recipient (flow, partner) the store keeps its **delta baseline** (per-product content
hashes as of the last message it received), its **last sent** time and its **MessageNumber**.
They advance only once the engine has delivered a message, whoever delivers it (the run that
prepared it, a ``retry`` hours later, a recovery after a crash):

* ``flows.onix_feed.prepare_onix_feed`` keeps, per message, what delivering it will do
  (``keep_pending``): for a full or delta feed the baseline it makes, for a test feed or a
  spreadsheet only the "sent" event it puts on the record. Each is keyed by the file's SHA-256.
* ``feed_delivered(store, flow, key)`` (the registry's after-delivery hook, run as the engine's
  ledger records the file delivered) applies it, once. A message older than the baseline (a
  failed feed retried after a newer one went) leaves the baseline alone.

A failed send applies nothing, so the next delta carries its changes again, and it does not
use up a MessageNumber.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from consonance_sftp.models import AuditAction, DeliveryKey
from consonance_sftp.ports.store import Store

ACTOR = "flow:onix_feed"
_PENDING_KEPT = 8  # pending messages kept per recipient and sort (failed ones may be retried)
BASELINE_KINDS = frozenset({"full", "delta"})  # what moves the baseline; tests, sheets do not
_SENT = {
    "test": AuditAction.ONIX_TEST_FEED_SENT,
    "spreadsheet": AuditAction.ONIX_SPREADSHEET_SENT,
}


def baseline(store: Store, name: str, partner: str) -> Mapping[str, str]:
    """The recipient's per-product content hashes as of its last successful send."""
    return store.load_onix_hashes(name, partner)


def last_sent(store: Store, name: str, partner: str) -> datetime | None:
    """When the recipient last received a (non-test) feed of flow ``name`` successfully."""
    value = store.get_watermark(f"onix_feed:{name}:{partner}:last_sent")
    return None if value is None else datetime.fromisoformat(value)


def _number_key(name: str, partner: str) -> str:
    return f"onix_feed:{name}:{partner}:message_number"


def next_message_number(store: Store, name: str, partner: str) -> int:
    """The header's ``MessageNumber``: one more than the last message the recipient received
    (a failed send does not use up a number)."""
    return int(store.get_watermark(_number_key(name, partner)) or 0) + 1


def feed_delivered(store: Store, flow: str, key: DeliveryKey, workflow_id: str | None) -> bool:
    """The engine recorded ``key`` delivered: if it is a message of ``flow`` prepared and not
    yet applied, it is applied now. A full or delta feed makes its baseline, last sent time
    and MessageNumber the recipient's; a test feed or a spreadsheet is put on the record as
    sent. True when something was applied. Whoever delivered it (the run that prepared it, a
    ``retry``, a recovery) does not matter."""
    found = pending(store, flow, key.partner, key.sha256)
    if found is None:
        return False
    kind = str(found.get("kind"))
    details: dict[str, object] = {
        "kind": kind,
        "file": key.remote_path,
        "sha256": key.sha256,
        "workflow_id": workflow_id,
        "products": found.get("products"),
    }
    if kind not in BASELINE_KINDS:
        store.append_audit(ACTOR, _SENT.get(kind, _SENT["test"]), f"{key.partner}:{flow}", details)
        _drop(store, flow, key.partner, key.sha256)
        return True
    sent_at = datetime.fromisoformat(str(found["sent_at"]))
    number = found.get("message_number")
    state = dict(store.load_onix_hashes(_pending_name(flow, key.sha256), key.partner))
    advance(
        store,
        flow,
        key.partner,
        sent_at=sent_at,
        message_number=int(str(number)) if number is not None else None,
        state=state,
        details=details,
    )
    drop_pending(store, flow, key.partner, key.sha256, sent_at)
    return True


def advance(
    store: Store,
    flow: str,
    partner: str,
    *,
    sent_at: datetime,
    message_number: int | None,
    state: Mapping[str, str],
    details: dict[str, object],
) -> None:
    """A feed sent at ``sent_at`` was delivered: its ``state`` becomes the recipient's
    baseline (unless a newer feed was delivered since), and ``onix.feed.sent`` is recorded."""
    subject = f"{partner}:{flow}"
    newest = last_sent(store, flow, partner)
    if newest is not None and newest > sent_at:
        # A feed retried after a newer one was delivered: the newer baseline stays (the
        # partner holds the newer content too, as its MessageNumber says).
        details["baseline"] = f"kept: a newer feed ({newest.isoformat()}) was delivered since"
        store.append_audit(ACTOR, AuditAction.ONIX_FEED_SENT, subject, details)
        return
    store.save_onix_hashes(flow, partner, state)
    store.set_watermark(f"onix_feed:{flow}:{partner}:last_sent", sent_at.isoformat())
    if message_number is not None:
        held = int(store.get_watermark(_number_key(flow, partner)) or 0)
        store.set_watermark(_number_key(flow, partner), str(max(held, message_number)))
    details["baseline_products"] = len(state)
    store.append_audit(ACTOR, AuditAction.ONIX_FEED_SENT, subject, details)


# --- pending messages: what a prepared message does once it is delivered --------------------


def _pending_name(flow: str, digest: str) -> str:
    # The per-product hashes wait in the baseline table under a name of their own.
    return f"{flow[:60]}#pending:{digest[:16]}"


def _pending_key(flow: str, partner: str, digest: str) -> str:
    return f"onix_feed:{flow}:{partner}:pending:{digest}"


def _index_key(flow: str, partner: str) -> str:
    return f"onix_feed:{flow}:{partner}:pending"


def pending(store: Store, flow: str, partner: str, digest: str) -> dict[str, object] | None:
    """The message ``digest`` prepared for the recipient and not yet applied, if any."""
    raw = store.get_watermark(_pending_key(flow, partner, digest))
    if not raw:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def _index(store: Store, flow: str, partner: str) -> list[dict[str, str]]:
    raw = store.get_watermark(_index_key(flow, partner))
    value = json.loads(raw) if raw else []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _moves_baseline(entry: Mapping[str, str]) -> bool:
    # Entries written before tests and spreadsheets were kept pending have no kind: feeds.
    return entry.get("kind", "delta") in BASELINE_KINDS


def keep_pending(
    store: Store,
    flow: str,
    partner: str,
    digest: str,
    *,
    kind: str,
    file: str,
    sent_at: datetime,
    message_number: int | None,
    products: int,
    state: Mapping[str, str] | None,
) -> None:
    """Keep what delivering the message ``digest`` will do (``feed_delivered``): make
    ``state`` the recipient's baseline (a full or delta feed), or only record it sent (a test
    feed, a spreadsheet: ``state`` None). The oldest pending messages beyond
    ``_PENDING_KEPT`` of each sort are forgotten."""
    if state is not None:
        store.save_onix_hashes(_pending_name(flow, digest), partner, state)
    body = {
        "kind": kind,
        "file": file,
        "sent_at": sent_at.isoformat(),
        "message_number": message_number,
        "products": products,
    }
    store.set_watermark(_pending_key(flow, partner, digest), json.dumps(body))
    index = [e for e in _index(store, flow, partner) if e["sha256"] != digest]
    index.append({"sha256": digest, "sent_at": sent_at.isoformat(), "kind": kind})
    index.sort(key=lambda e: e["sent_at"])
    kept: list[dict[str, str]] = []
    for moves in (True, False):
        sort = [e for e in index if _moves_baseline(e) is moves]
        for old in sort[:-_PENDING_KEPT]:
            _forget(store, flow, partner, old["sha256"])
        kept += sort[-_PENDING_KEPT:]
    kept.sort(key=lambda e: e["sent_at"])
    store.set_watermark(_index_key(flow, partner), json.dumps(kept))


def _forget(store: Store, flow: str, partner: str, digest: str) -> None:
    store.save_onix_hashes(_pending_name(flow, digest), partner, {})
    store.set_watermark(_pending_key(flow, partner, digest), "")


def _drop(store: Store, flow: str, partner: str, digest: str) -> None:
    """One applied message that moved no baseline: it alone is forgotten."""
    _forget(store, flow, partner, digest)
    keep = [e for e in _index(store, flow, partner) if e["sha256"] != digest]
    store.set_watermark(_index_key(flow, partner), json.dumps(keep))


def drop_pending(store: Store, flow: str, partner: str, digest: str, sent_at: datetime) -> None:
    """After a feed was applied: it, and every pending feed not newer (it can no longer move
    the baseline), are forgotten; pending tests and spreadsheets stay."""
    keep = []
    for entry in _index(store, flow, partner):
        if entry["sha256"] == digest or (
            _moves_baseline(entry) and datetime.fromisoformat(entry["sent_at"]) <= sent_at
        ):
            _forget(store, flow, partner, entry["sha256"])
        else:
            keep.append(entry)
    _forget(store, flow, partner, digest)
    store.set_watermark(_index_key(flow, partner), json.dumps(keep))


def record_test_or_sheet(
    store: Store, flow: str, partner: str, digest: str, details: dict[str, object]
) -> None:
    """A test feed or spreadsheet delivered (``record_sent``): put it on the record, once.
    Nothing when ``feed_delivered`` already did (or it was never kept pending: a dry run)."""
    found = pending(store, flow, partner, digest)
    if found is None:
        return
    kind = str(found.get("kind"))
    store.append_audit(ACTOR, _SENT.get(kind, _SENT["test"]), f"{partner}:{flow}", details)
    _drop(store, flow, partner, digest)
