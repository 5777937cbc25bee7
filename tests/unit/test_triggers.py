"""``when`` conditions: which Consonance events fire a flow, every set condition holding on the
title's state (from the change detector's snapshots), and the publication-window events."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from consonance_sftp.config.flows import FormatsFlow, When
from consonance_sftp.flows.changes import (
    PRODUCT,
    WORK,
    TitleStates,
    product_snapshot,
    work_snapshot,
)
from consonance_sftp.flows.triggers import TitleState, triggered
from consonance_sftp.models import ChangeEvent, ChangeKind, Product, Todo, Work
from consonance_sftp.ports.snapshots import Snapshot

TODAY = date(2026, 11, 24)


def flow(**when: object) -> FormatsFlow:
    return FormatsFlow.model_validate(
        {"kind": "formats", "partners": ["vendor"], "file_variants": ["EPUB"], "when": when}
    )


def event(kind: ChangeKind, *, subject: str | None = None, new: str | None = None) -> ChangeEvent:
    return ChangeEvent(kind=kind, work_id=1, product_id=11, subject=subject, new=new)


STAGE = event(ChangeKind.WORK_ENTERED_STAGE, subject="Approved", new="Approved")
TODO = event(ChangeKind.TODO_COMPLETED, subject="Files to vendor", new="done")
ACTIVE = event(ChangeKind.PUBLISHING_STATUS_CHANGED, subject="status", new="04")
DUE_56 = event(ChangeKind.PUBLICATION_DUE, subject="56", new="2027-01-10")
FORTHCOMING = event(ChangeKind.PUBLISHING_STATUS_CHANGED, subject="status", new="02")


@pytest.mark.parametrize(
    ("when", "fires", "ignores"),
    [
        ({"project_stage": "Approved"}, STAGE, TODO),
        ({"todo_done": "Files to vendor"}, TODO, STAGE),
        (
            {"publishing_status": "04"},
            ACTIVE,
            event(ChangeKind.PUBLISHING_STATUS_CHANGED, new="02"),
        ),
        ({"days_before_publication": 56}, DUE_56, event(ChangeKind.PUBLICATION_DUE, subject="90")),
    ],
)
def test_each_condition_fires_on_its_own_event(
    when: dict[str, object], fires: ChangeEvent, ignores: ChangeEvent
) -> None:
    assert triggered(flow(**when), fires)
    assert not triggered(flow(**when), ignores)
    assert not triggered(flow(**when), event(ChangeKind.PRICE_CHANGED, new="9.99"))


def test_every_condition_must_hold_and_the_last_one_to_become_true_fires() -> None:
    f = flow(project_stage="Approved", days_before_publication=56)
    far = TitleState(stage="Approved", publication_dates=(date(2027, 6, 1),))
    near = TitleState(stage="Approved", publication_dates=(date(2027, 1, 10),))
    not_approved = TitleState(stage="Editorial", publication_dates=(date(2027, 1, 10),))
    # Approved long before publication: nothing yet; the day the window opens, it fires.
    assert not triggered(f, STAGE, far, TODAY)
    assert triggered(f, DUE_56, near, TODAY)
    # In the window but not approved: nothing; approval then fires it.
    assert not triggered(f, DUE_56, not_approved, TODAY)
    assert triggered(f, STAGE, near, TODAY)
    # Without the title's state a combined condition cannot be checked, so it never fires.
    assert not triggered(f, STAGE)


def test_publication_day_is_in_the_window_and_a_past_date_is_not() -> None:
    f = flow(days_before_publication=0)
    zero = event(ChangeKind.PUBLICATION_DUE, subject="0")
    assert triggered(f, zero, TitleState(publication_dates=(TODAY,)), TODAY)
    assert not triggered(f, zero, TitleState(publication_dates=(date(2026, 11, 23),)), TODAY)


def test_a_disabled_flow_or_one_without_when_never_fires() -> None:
    assert not triggered(
        flow(project_stage="Approved").model_copy(update={"enabled": False}), STAGE
    )
    bare = FormatsFlow.model_validate(
        {"kind": "formats", "partners": ["vendor"], "file_variants": ["EPUB"]}
    )
    assert not triggered(bare, STAGE)


def test_an_empty_when_is_refused() -> None:
    with pytest.raises(ValidationError, match="set at least one of"):
        When.model_validate({})
    with pytest.raises(ValidationError, match="days_before_publication"):
        When.model_validate({"days_before_publication": -1})


class Snapshots:
    def __init__(self, works: list[Work], products: list[Product]) -> None:
        self.data = {
            WORK: {w.id: work_snapshot(w) for w in works},
            PRODUCT: {p.id: product_snapshot(p) for p in products},
        }

    def load_snapshots(self, kind: str) -> dict[int, Snapshot]:
        return self.data[kind]


def test_title_states_and_due_events_come_from_the_snapshots() -> None:
    work = Work(
        id=1,
        title="A",
        project_stage="Approved",
        todos=(Todo(id=5, name="Files to vendor", completed=True), Todo(id=6, name="Index")),
    )

    def product(id: int, work_id: int, status: str | None, published: date) -> Product:
        return Product(
            id=id,
            work_id=work_id,
            typename="PhysicalBookProduct",
            isbn13=None,
            title="A",
            publishing_status=status,
            publication_date=published,
        )

    products = [
        product(11, 1, "02", date(2027, 1, 10)),
        product(12, 1, "04", date(2027, 6, 1)),
        product(13, 2, None, date(2026, 11, 1)),
    ]
    states = TitleStates(Snapshots([work], products))  # type: ignore[arg-type]
    state = states.state(1)
    assert state.stage == "Approved"
    assert state.todos_done == {"Files to vendor"}
    assert state.statuses == {"02", "04"}
    assert sorted(state.publication_dates) == [date(2027, 1, 10), date(2027, 6, 1)]
    assert states.state(99) == TitleState()
    due = states.due(56, TODAY)
    assert [(e.kind, e.work_id, e.product_id, e.subject, e.new) for e in due] == [
        (ChangeKind.PUBLICATION_DUE, 1, 11, "56", "2027-01-10")
    ]
