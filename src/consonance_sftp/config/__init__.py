"""Configuration: one TOML file loaded into Pydantic v2 models.

``load_settings(path)`` reads and validates the file and raises one ``ConfigError`` that lists
every problem with its TOML path. ``Settings`` is the root model the rest of the service uses.
"""

from consonance_sftp.config.flows import (
    FLOW_MODELS,
    ArchiveFlow,
    FinanceOutFlow,
    FlowBase,
    FlowConfig,
    FormatsFlow,
    IntakeFlow,
    MarketingFlow,
    OnixFeedFlow,
    ProductionFlow,
    SalesInFlow,
    Schedule,
    When,
)
from consonance_sftp.config.hostkeys import fingerprint_of
from consonance_sftp.config.loader import load_settings, parse_settings
from consonance_sftp.config.settings import (
    ConsonanceSettings,
    DatabaseSettings,
    EmailTarget,
    EngineConfig,
    LoggingSettings,
    LogTarget,
    NotificationTarget,
    PartnerAuth,
    PartnerConfig,
    SandboxSettings,
    Settings,
    WebhookTarget,
)

__all__ = [
    "FLOW_MODELS",
    "ArchiveFlow",
    "ConsonanceSettings",
    "DatabaseSettings",
    "EmailTarget",
    "EngineConfig",
    "FinanceOutFlow",
    "FlowBase",
    "FlowConfig",
    "FormatsFlow",
    "IntakeFlow",
    "LogTarget",
    "LoggingSettings",
    "MarketingFlow",
    "NotificationTarget",
    "OnixFeedFlow",
    "PartnerAuth",
    "PartnerConfig",
    "ProductionFlow",
    "SalesInFlow",
    "SandboxSettings",
    "Schedule",
    "Settings",
    "WebhookTarget",
    "When",
    "fingerprint_of",
    "load_settings",
    "parse_settings",
]
