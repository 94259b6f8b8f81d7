"""Fixtures for the local platform with real processes: one workspace and one completed tiny-model job, shared
by the tests of this package (a job takes tens of seconds; the tests look at it from different sides)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.common import processes
from tests.functional.local.platform.support import Workspace, make_workspace


@pytest.fixture(scope="package")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    # Two slots whatever the machine (the default follows its cores); no restarts, so a killed job ends Failed.
    ws = make_workspace(
        tmp_path_factory.mktemp("local-platform"), AUTOPILOT_LOCAL_MAX_JOBS="2", AUTOPILOT_LOCAL_JOB_RESTARTS="0"
    )
    yield ws
    ws.stop_all()
    ws.webhook.server.shutdown()


@pytest.fixture(scope="package")
def completed_job(workspace: Workspace) -> str:
    """One tiny job, submitted and run to completion once for the module."""
    name = "shared-job-0000aaaa"
    workspace.platform.submit_job(workspace.job_request(name))
    info = workspace.wait_job(name)
    assert info.status.value == "Completed", (info, processes.log_tail(workspace.platform.jobs.log_path(name), 30))
    return name
