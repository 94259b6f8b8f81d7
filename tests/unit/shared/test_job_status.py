"""One reader of job statuses, for events and both adapters: every status Azure ML can report maps to one the
app acts on, any casing; a status nobody mapped is UNKNOWN and never terminal."""

from __future__ import annotations

import pytest

from shared.platform.port import JobStatus


def sdk_statuses() -> list[str]:
    # The REST client's enum of the pinned azure-ai-ml: the statuses a real job can have.
    from azure.ai.ml._restclient.arm_ml_service.models._enums import JobStatus as RestJobStatus

    return [status.value for status in RestJobStatus]


def test_every_status_the_sdk_knows_maps_to_a_known_one() -> None:
    statuses = sdk_statuses()
    assert {"Completed", "Failed", "Canceled", "NotResponding", "Paused", "CancelRequested"} <= set(statuses)
    unmapped = [s for s in statuses if JobStatus.parse(s) == JobStatus.UNKNOWN and s != "Unknown"]
    assert unmapped == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Completed", JobStatus.COMPLETED),
        ("completed", JobStatus.COMPLETED),
        (" FAILED ", JobStatus.FAILED),
        ("Canceled", JobStatus.CANCELED),
        ("NotResponding", JobStatus.RUNNING),
        ("Paused", JobStatus.RUNNING),
        ("CancelRequested", JobStatus.RUNNING),
        ("Provisioning", JobStatus.PREPARING),
        ("Starting", JobStatus.PREPARING),
        ("Queued", JobStatus.QUEUED),
    ],
)
def test_statuses_parse_to_the_nearest_the_app_acts_on(raw: str, expected: JobStatus) -> None:
    assert JobStatus.parse(raw) is expected


@pytest.mark.parametrize("raw", ["", None, "Exploding", 42])
def test_an_unknown_status_is_never_terminal(raw: object) -> None:
    status = JobStatus.parse(raw)
    assert status is JobStatus.UNKNOWN
    assert not (status.is_terminal or status.is_running or status.is_waiting)
