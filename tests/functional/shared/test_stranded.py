"""Finding 1: no run stays in ``received``. A config PyYAML cannot construct ends ``rejected`` with the
reason; a submit that never finished is failed by reconcile past the deadline, with the reason on the run."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from shared.services.reconcile import reconcile
from shared.services.stranded import STRANDED_CODE
from shared.services.submit import submit_config
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakeClock, FakePlatform, WorkerDied, die_entering, make_store

DEADLINE = timedelta(minutes=30)


def _drop(store, platform, content: bytes):  # type: ignore[no-untyped-def]
    return submit_config(
        container="training-configs",
        blob_name="c1.yaml",
        content=content,
        etag=None,
        store=store,
        platform=platform,
        data_root=Path("."),
    )


@pytest.mark.parametrize(
    "content",
    [
        config_bytes() + b"\ndataset_label: 2024-13-45\n",
        b"training: {learning_rate: !!float abc}\n",
        b"training: {epochs: !!int 0xZZ}\n",
        b"training: {epochs: " + b"9" * 5000 + b"}\n",
    ],
)
def test_values_yaml_cannot_build_end_rejected_with_the_field(content: bytes) -> None:
    clock = FakeClock()
    store, _, _ = make_store(clock)
    record = _drop(store, FakePlatform(clock), content)
    assert record is not None and record.state == RunState.REJECTED
    assert record.last_error_code == "InvalidConfig"
    assert any("cannot read" in e.message and e.path for e in record.errors)


def test_a_submit_that_never_finished_is_failed_by_reconcile_after_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    store, _, _ = make_store(clock)
    platform = FakePlatform(clock)
    die_entering(monkeypatch, RunState.SUBMITTED)  # every try dies between the job and its ledger write
    with pytest.raises(WorkerDied):
        _drop(store, platform, config_bytes())
    [run] = store.list([RunState.RECEIVED])

    clock.advance(minutes=29)
    reconcile(store, platform, deploy_timeout=timedelta(hours=1), received_deadline=DEADLINE)
    assert store.get(run.run_id).state == RunState.RECEIVED  # type: ignore[union-attr]

    clock.advance(minutes=2)
    outcomes = reconcile(store, platform, deploy_timeout=timedelta(hours=1), received_deadline=DEADLINE)
    after = store.get(run.run_id)
    assert after is not None and after.state == RunState.FAILED
    assert after.last_error_code == STRANDED_CODE
    assert "never submitted" in after.errors[0].message
    assert [(o.run_id, o.before, o.after) for o in outcomes] == [(run.run_id, "received", "failed")]
    # The next sweep finds nothing left to do.
    again = reconcile(store, platform, deploy_timeout=timedelta(hours=1), received_deadline=DEADLINE)
    assert [o for o in again.outcomes if o.before != o.after] == []
