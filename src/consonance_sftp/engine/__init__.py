"""Durable execution on DBOS Transact: workflows, queues, schedules, recovery. The only package
that imports DBOS.

``Engine`` runs one executor process (``serve`` on SQLite, ``worker`` on PostgreSQL);
``EngineClient`` enqueues and reads from other processes. What it needs from the rest of the
service (transport, ledger, alerts, fence) is in ``ports/delivery.py``. See
docs/reference/engine.md.
"""

from .budget import PostgresConnectionBudget
from .events import FLOW_EVENT_PREFIX, EventRunner, FlowEventFailed, flow_event_workflow_id
from .ids import delivery_queue_name, delivery_workflow_id, withdrawal_workflow_id
from .lease import ONE_SHOT, SERVICE, EngineBusy, FlowLock, LockHolder, engine_holder
from .ledger import StoreLedger
from .retention import prune_history
from .runtime import Engine, EngineClient, dbos_config, work_state
from .schedules import FlowRunner, FlowSchedule, ensure_schedule
from .settings import EngineSettings, RetryPolicy, default_executor_id

__all__ = [
    "FLOW_EVENT_PREFIX",
    "ONE_SHOT",
    "SERVICE",
    "Engine",
    "EngineBusy",
    "EngineClient",
    "EngineSettings",
    "EventRunner",
    "FlowEventFailed",
    "FlowLock",
    "FlowRunner",
    "FlowSchedule",
    "LockHolder",
    "PostgresConnectionBudget",
    "RetryPolicy",
    "StoreLedger",
    "dbos_config",
    "default_executor_id",
    "delivery_queue_name",
    "delivery_workflow_id",
    "engine_holder",
    "ensure_schedule",
    "flow_event_workflow_id",
    "prune_history",
    "withdrawal_workflow_id",
    "work_state",
]
