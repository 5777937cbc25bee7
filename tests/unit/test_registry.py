"""The flow registry: one entry per flow kind, and the questions the service asks of it (can
it run, do events fire it, is it an intake flow, what runs after delivery), plus the trigger
helpers the poller uses."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from consonance_sftp.config import FLOW_MODELS
from consonance_sftp.config.flows import FlowBase
from consonance_sftp.flows import finance_out, intake, onix_feed, registry, sales_in, triggers
from consonance_sftp.flows.base import FlowNotAvailable
from consonance_sftp.models import ChangeEvent, ChangeKind, FlowKind


def config(kind: str, **fields: object) -> FlowBase:
    return FLOW_MODELS[FlowKind(kind)].model_validate({"kind": kind, "partners": ["p"], **fields})


def test_every_kind_has_one_entry_with_its_config_model() -> None:
    assert set(registry.REGISTRY) == {k.value for k in FlowKind}
    for kind, entry in registry.REGISTRY.items():
        assert entry.kind.value == kind
        assert entry.model is FLOW_MODELS[entry.kind]
        assert entry.module.startswith("flows/")


def test_how_each_runnable_kind_fires() -> None:
    fires = {k: set(e.fires) for k, e in registry.REGISTRY.items() if e.runs_today}
    event_or_cron = {registry.Fires.EVENT, registry.Fires.SCHEDULE}
    assert fires == {
        "production": event_or_cron,
        "marketing": event_or_cron,
        "formats": event_or_cron,
        "onix_feed": {registry.Fires.SCHEDULE},
        "intake": {registry.Fires.INBOX},
        "sales_in": {registry.Fires.INBOX},
        "finance_out": {registry.Fires.SCHEDULE},
        "archive": {registry.Fires.SCHEDULE},
    }
    assert registry.REGISTRY["finance_out"].plan is finance_out.plan
    assert registry.REGISTRY["onix_feed"].after_delivery is onix_feed.after_delivery
    assert registry.REGISTRY["intake"].take is intake.take
    assert registry.REGISTRY["sales_in"].take is sales_in.take


def test_each_runnable_kind_lives_in_the_module_its_entry_names() -> None:
    """One home per flow: a kind's plan or take is defined in its own module in flows/."""
    for kind, entry in registry.REGISTRY.items():
        module = "consonance_sftp." + entry.module.removesuffix(".py").replace("/", ".")
        for shape in (entry.plan, entry.take):
            if shape is not None:
                assert shape.__module__ == module, kind


def test_the_hook_the_ledger_runs_after_delivery_is_the_kinds_own() -> None:
    """``app.runner.FlowLedger`` asks the registry, by the flow's config, for its hook."""
    feed = config("onix_feed", sender_name="Books")
    assert registry.after_delivery_of(feed) is onix_feed.after_delivery
    hooks = {k for k, e in registry.REGISTRY.items() if e.after_delivery is not None}
    assert hooks == {"onix_feed"}
    assert registry.after_delivery_of(config("intake")) is None
    assert registry.after_delivery_of(None) is None  # a flow no longer configured


def test_a_kind_no_entry_holds_is_refused_with_the_kinds_that_run() -> None:
    legacy = cast(FlowBase, SimpleNamespace(kind="legacy"))  # e.g. a config from the future
    with pytest.raises(FlowNotAvailable) as caught:
        registry.plan_for("old", legacy)
    assert "archive" in (caught.value.hint or "") and "finance_out" in (caught.value.hint or "")


def test_intake_flows_and_event_flows() -> None:
    intake_cfg = config("intake")
    formats = config("formats", file_variants=["EPUB"], when={"project_stage": "Approved"})
    assert registry.intake_flow(intake_cfg) is intake_cfg and registry.intake_flow(formats) is None
    stage = ChangeEvent(
        kind=ChangeKind.WORK_ENTERED_STAGE, work_id=1, subject="Approved", new="Approved"
    )
    assert triggers.event_matches(formats, stage)
    assert not triggers.event_matches(intake_cfg, stage)
    assert triggers.fires_on_events({"f": formats, "i": intake_cfg}) == ["f"]


def test_windows_and_combined_conditions_of_enabled_event_flows() -> None:
    due = config(
        "formats",
        file_variants=["EPUB"],
        when={"project_stage": "Approved", "days_before_publication": 56},
    )
    single = config("marketing", when={"days_before_publication": 7})
    off = config("production", enabled=False, when={"days_before_publication": 3})
    assert triggers.publication_windows([due, single, off]) == [7, 56]
    assert triggers.needs_title_state([due, single])
    assert not triggers.needs_title_state([single, off])


def test_a_publication_window_fires_once_per_product_and_date() -> None:
    def event(product: int, pubdate: str) -> ChangeEvent:
        return ChangeEvent(
            kind=ChangeKind.PUBLICATION_DUE, work_id=1, product_id=product, subject="7", new=pubdate
        )

    events = {7: [event(11, "2027-01-10"), event(12, "2027-01-12")]}
    marks = {(7, 11): "2027-01-10", (7, 12): "2027-01-05"}  # 12's date moved since it fired
    fresh = triggers.newly_due([7], lambda days: events[days], lambda d, p: marks.get((d, p)))
    assert [(days, e.product_id) for days, e in fresh] == [(7, 12)]


def test_which_cron_each_flow_ticks_on() -> None:
    onix = config("onix_feed", schedule={"cron": "0 6 * * *", "timezone": "Europe/London"})
    intake = config("intake", poll_interval=60)
    assert triggers.schedule_of(onix) == ("0 6 * * *", "Europe/London")
    assert triggers.schedule_of(onix, "*/2 * * * * *") == ("*/2 * * * * *", "UTC")
    assert triggers.schedule_of(intake) == (intake.poll_cron(), "UTC")  # type: ignore[attr-defined]
    assert triggers.schedule_of(config("formats", file_variants=["EPUB"])) is None  # events only
    archive = config("archive", schedule={"cron": "0 1 * * *"})
    assert triggers.schedule_of(archive) == ("0 1 * * *", "UTC")


def test_which_flows_a_polls_events_fire() -> None:
    from datetime import date

    from consonance_sftp.flows.triggers import TitleState

    stage = ChangeEvent(
        kind=ChangeKind.WORK_ENTERED_STAGE, work_id=1, subject="Approved", new="Approved"
    )
    other = ChangeEvent(kind=ChangeKind.WORK_ENTERED_STAGE, work_id=2, subject="Draft", new="Draft")
    single = config("formats", file_variants=["EPUB"], when={"project_stage": "Approved"})
    both = config("production", when={"project_stage": "Approved", "publishing_status": "04"})
    off = config("marketing", enabled=False, when={"project_stage": "Approved"})
    flows = {"single": single, "both": both, "off": off}
    fired = list(triggers.fired(flows, [stage, other]))
    assert [(name, e.work_id) for name, _f, e in fired] == [("single", 1)]
    active = TitleState(stage="Approved", statuses=frozenset({"04"}))
    fired = list(triggers.fired(flows, [stage], lambda _work: active, date(2026, 11, 24)))
    assert [name for name, _f, _e in fired] == ["single", "both"]


def test_publication_windows_are_checked_once_a_day_and_when_a_date_moves() -> None:
    from datetime import date

    today = date(2026, 11, 24)
    moved = ChangeEvent(kind=ChangeKind.PUBLICATION_DATE_CHANGED, work_id=1, new="2027-01-01")
    assert triggers.windows_due([7], None, today, [])
    assert not triggers.windows_due([7], today, today, [])
    assert triggers.windows_due([7], today, today, [moved])
    assert not triggers.windows_due([], None, today, [moved])
