"""Follow-ups through the real parts: the app's store on Azurite schedules each check on the Azurite queue, and
the local host's queue trigger runs the app's ``followup`` function; no timer runs (the host's timers are not
started), so the run reaches ``deployed`` by its follow-ups alone. The platform is the stateful fake."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from local.host.host import LocalHost
from shared.services.submit import submit_config
from shared.settings import Settings
from shared.states import RunState
from tests.configs import config_bytes
from tests.fakes import FakePlatform

pytestmark = pytest.mark.azurite

PATIENCE_S = 180  # each wait is a 15 s visibility delay plus a poll; generous for a loaded machine


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {PATIENCE_S} s"
        time.sleep(0.5)


def test_a_run_is_deployed_by_its_follow_ups_through_the_queue_and_the_local_host_without_a_timer(
    storage_env: object, use_runtime: Callable[..., object]
) -> None:
    import function_app

    settings = Settings.from_env()
    platform = FakePlatform()
    runtime = use_runtime(settings, platform=platform)
    store = runtime.store  # type: ignore[attr-defined]
    record = submit_config(
        container=settings.config_container,
        blob_name="phi3.yaml",
        content=config_bytes(),
        etag='"0x1"',
        store=store,
        platform=platform,
        data_root=Path("."),
    )
    assert record is not None and record.state == RunState.SUBMITTED
    platform.finish_job(record.run_id)  # no event will tell: the submitted state's follow-up must find it

    def state() -> RunState:
        return store.get(record.run_id).state  # type: ignore[no-any-return]

    host = LocalHost(function_app.app, settings)
    host.start(serve_http=False, poll_blobs=False, run_timers=False)
    try:
        wait_for(lambda: state() == RunState.DEPLOYING, "deploying")
        platform.complete_deployments()  # the platform reports the deployment ready
        wait_for(lambda: state() == RunState.DEPLOYED, "deployed")
    finally:
        host.stop()
    deployed = store.get(record.run_id)
    assert deployed.scoring_uri  # traffic set and the run deployed, by the check the deploying state scheduled
    assert len(platform.endpoints) == 1
