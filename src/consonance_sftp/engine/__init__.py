"""Durable execution on DBOS Transact: workflows, queues, schedules, recovery. The only package
that imports DBOS.

``Engine`` runs one executor process (``serve`` on SQLite, ``worker`` on PostgreSQL);
``EngineClient`` enqueues and reads from other processes. See docs/reference/engine.md.
"""

from .budget import PostgresConnectionBudget
from .contracts import (
    AlertSink,
    DeliveryLedger,
    DeliveryRecord,
    DeliveryRequest,
    DeliveryTransport,
    Fence,
    FileToSend,
    LogAlertSink,
    RemoteFileState,
    RequestAction,
    WithdrawalLedger,
    WithdrawalRecord,
)
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
    "AlertSink",
    "DeliveryLedger",
    "DeliveryRecord",
    "DeliveryRequest",
    "DeliveryTransport",
    "Engine",
    "EngineBusy",
    "EngineClient",
    "EngineSettings",
    "EventRunner",
    "Fence",
    "FileToSend",
    "FlowEventFailed",
    "FlowLock",
    "FlowRunner",
    "FlowSchedule",
    "LockHolder",
    "LogAlertSink",
    "PostgresConnectionBudget",
    "RemoteFileState",
    "RequestAction",
    "RetryPolicy",
    "StoreLedger",
    "WithdrawalLedger",
    "WithdrawalRecord",
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
