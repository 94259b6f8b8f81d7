from __future__ import annotations

import azure.functions as func
import pytest

from local.common.exceptions import HostConfigError
from local.host.discovery import discover, invoke


def project_app() -> func.FunctionApp:
    """The project's own blueprints on a fresh app (``function_app.app`` allows one get_functions())."""
    from functions.events import bp as events_bp
    from functions.submit import bp as submit_bp
    from functions.timers import bp as timers_bp

    app = func.FunctionApp()
    for bp in (submit_bp, events_bp, timers_bp):
        app.register_functions(bp)
    return app


def test_the_project_functions_are_read_from_the_app_metadata() -> None:
    functions = discover(project_app())
    [submit] = functions.blob
    assert submit.name == "submit"
    assert submit.binding["path"] == "training-configs/{name}"
    assert submit.binding["connection"] == "AzureWebJobsStorage"
    assert submit.arg_name == "blob"
    assert sorted(functions.event_grid) == ["deploy", "register"]
    assert functions.event_grid["register"].arg_name == "event"
    assert sorted(functions.timer) == ["cleanup", "deliver_notifications", "reconcile"]
    assert functions.timer["reconcile"].binding["schedule"] == "0 */5 * * * *"
    assert functions.timer["reconcile"].binding["runOnStartup"] is False


def test_discovery_reads_an_app_once_and_shares_the_result() -> None:
    app = project_app()
    first = discover(app)
    # A second get_functions() on the same app object raises; discovery must not call it again.
    assert discover(app) is first


def test_an_app_whose_functions_were_already_read_elsewhere_gets_a_clear_error() -> None:
    app = project_app()
    app.get_functions()
    with pytest.raises(HostConfigError, match="get_functions\\(\\) runs once per FunctionApp"):
        discover(app)


def test_invoke_passes_the_trigger_object_by_arg_name_and_never_raises() -> None:
    app = func.FunctionApp()
    seen: list[object] = []

    @app.function_name("sync_fn")
    @app.event_grid_trigger(arg_name="custom_name")
    def sync_fn(custom_name: func.EventGridEvent) -> None:
        seen.append(custom_name)

    @app.function_name("async_fn")
    @app.event_grid_trigger(arg_name="ev")
    async def async_fn(ev: func.EventGridEvent) -> None:
        seen.append(("async", ev))
        raise ValueError("bad event")

    functions = discover(app)
    ok = invoke(functions.event_grid["sync_fn"], "payload", "target-1")
    assert ok.succeeded and ok.error is None and seen == ["payload"]
    failed = invoke(functions.event_grid["async_fn"], "p2", "target-2")
    assert not failed.succeeded
    assert failed.error == "ValueError: bad event"
    assert seen[-1] == ("async", "p2")
