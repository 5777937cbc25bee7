"""Deterministic names: delivery, withdrawal and intake workflow IDs and delivery queue names.

A delivery's workflow ID is its idempotency key. DBOS attaches a second enqueue with the same
ID to the existing workflow instead of running it again, so the ID must be a pure function of
what is sent where (each file's partner, remote path and SHA-256) plus the resend generation,
and nothing else (not the flow run, the time or the trigger).
"""

from __future__ import annotations

import hashlib
import re

from consonance_sftp.errors import EngineError
from consonance_sftp.models import DeliveryKey

DELIVERY_QUEUE_PREFIX = "deliveries"
DELIVERY_PREFIX = "dlv-"
WITHDRAWAL_PREFIX = "wdr-"
INTAKE_PREFIX = "ing-"
# Persisted in every intake workflow's ID: a poll after an upgrade must derive the same ID for
# a file already being taken in (to attach to its workflow), so the prefix stays as it was.
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def delivery_workflow_id(keys: list[DeliveryKey], generation: int = 0) -> str:
    """``dlv-<partner>-<digest>-g<generation>``; order of files does not matter."""
    return _package_id(DELIVERY_PREFIX, keys, generation)


def withdrawal_workflow_id(keys: list[DeliveryKey], generation: int = 0) -> str:
    """``wdr-<partner>-<digest>-g<generation>``: removing these files of that generation from
    the partner. Planned again (the next event, a scheduled run) it attaches to the same
    workflow; a title withdrawn again after a new release withdraws the next generation."""
    return _package_id(WITHDRAWAL_PREFIX, keys, generation)


def _package_id(prefix: str, keys: list[DeliveryKey], generation: int) -> str:
    if not keys:
        raise EngineError("a delivery needs at least one file")
    partners = {k.partner for k in keys}
    if len(partners) != 1:
        raise EngineError(f"a delivery goes to exactly one partner, got {sorted(partners)}")
    if generation < 0:
        raise EngineError(f"resend generation must be >= 0, got {generation}")
    canonical = "\n".join(
        sorted(f"{k.partner}\x1f{k.remote_path}\x1f{k.sha256.lower()}" for k in keys)
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:40]
    partner = _SAFE.sub("_", keys[0].partner)[:40]
    return f"{prefix}{partner}-{digest}-g{generation}"


def delivery_queue_name(max_connections: int) -> str:
    """The delivery queue for partners with this connection cap.

    DBOS's ``partition_concurrency`` is a property of the queue, not of each partition, so
    partners with different caps cannot share one queue: there is one partitioned queue per
    distinct cap (``deliveries-c2`` holds every partner capped at 2, one partition each).
    """
    if max_connections < 1:
        raise EngineError(f"max_connections must be at least 1, got {max_connections}")
    return f"{DELIVERY_QUEUE_PREFIX}-c{max_connections}"


def intake_workflow_id(flow: str, partner: str, remote_path: str, size: int, mtime: float) -> str:
    """``ing-<partner>-<digest>``: one workflow per version of a partner's file (its flow,
    partner, remote path, size and mtime), so a file seen again by the next poll attaches to
    the workflow that is taking it in (or took it) instead of fetching it twice."""
    if size < 0:
        raise EngineError(f"a file size must be >= 0, got {size}")
    canonical = "\x1f".join((flow, partner, remote_path, str(size), repr(float(mtime))))
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()[:40]
    return f"{INTAKE_PREFIX}{_SAFE.sub('_', partner)[:40]}-{digest}"
