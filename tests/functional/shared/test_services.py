"""The services wired to an in-memory ledger and the stateful fake platform: the whole flow, duplicates,
out-of-order events, crashes between a side effect and its ledger write, and the timers."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from shared.config.params import Param
from shared.events import parse_event
from shared.exceptions import FieldIssue, PlatformError, TransientPlatformError
from shared.ledger.parts import Health
from shared.naming import TAG_MANAGED, TAG_RUN_ID
from shared.platform.port import DeploymentState, JobStatus
from shared.services.cleanup import cleanup
from shared.services.lifecycle import on_model_registered, on_run_event
from shared.services.submit import submit_config
from shared.states import RunState
from tests.configs import CONFIG, config_bytes
from tests.eventdata import WORKSPACE_TOPIC, load_event
from tests.fakes import FakeEndpoint, WorkerDied, die_entering
from tests.functional.shared.world import World


@pytest.fixture
def world() -> World:
    return World()


def test_valid_config_is_submitted_with_ledger_and_status_blob(world: World) -> None:
    record = world.drop()
    assert record is not None and record.state == RunState.SUBMITTED
    assert record.run_id.startswith("phi3-") and record.job_name == record.run_id
    job = world.platform.jobs[record.run_id].request
    assert job.tags[TAG_RUN_ID] == record.run_id and job.tags[TAG_MANAGED] == "true"
    assert job.params.apply_lora is True and job.params.deepspeed_stage == 2
    assert job.params.precision == "16"  # from the model's defaults: the config did not say
    assert job.display_name == "Phi-3-mini-4k-instruct-ultrachat-bs1-cosine-ds2-lora-save_limit-1-seqlen-1"
    assert record.effective_params is not None
    assert record.effective_params["learning_rate"] == Param(5e-6, "config")
    assert record.effective_params["precision"].source == "model"
    assert record.effective_params["warmup_steps"].source == "default"
    doc = world.status.blobs["phi3.yaml.json"]
    assert doc["state"] == "submitted" and doc["job"]["name"] == record.run_id


def test_invalid_config_is_rejected_with_field_paths(world: World) -> None:
    bad = config_bytes(training={"learning_rate": -1}, optimization={"lora": {"r": 0}})
    record = world.drop(bad, name="bad.yaml")
    assert record is not None and record.state == RunState.REJECTED
    paths = {e.path for e in record.errors}
    assert {"training.learning_rate", "optimization.lora.r"} <= paths
    assert world.status.blobs["bad.yaml.json"]["errors"] == [
        {"path": e.path, "message": e.message} for e in record.errors
    ]
    assert not world.platform.jobs


def test_platform_rejections_name_the_field(world: World) -> None:
    record = world.drop(config_bytes(compute={"cluster": "broken"}, model={"name": "Nope"}), name="x.yaml")
    assert record is not None and record.state == RunState.REJECTED
    messages = {e.path: e.message for e in record.errors}
    assert "model.name" in messages and "Phi-3-mini-4k-instruct" in messages["model.name"]
    assert world.platform.submit_calls == 0


def test_compute_not_in_allow_list_is_rejected(world: World) -> None:
    world.platform.clusters["small"] = ("Standard_NC6", "Succeeded")
    world.platform.gpus["standard_nc6"] = 1
    record = world.drop(config_bytes(compute={"cluster": "small"}))
    assert record is not None and record.state == RunState.REJECTED
    assert any(e.path == "compute.cluster" and "allow list" in e.message for e in record.errors)


def test_unsafe_blob_name_is_rejected(world: World) -> None:
    record = world.drop(name="../../etc/passwd.yaml")
    assert record is not None and record.state == RunState.REJECTED
    assert record.errors[0].path == "blob"


def test_same_config_three_times_is_one_job(world: World) -> None:
    runs = {world.drop().run_id for _ in range(3)}  # type: ignore[union-attr]
    assert len(runs) == 1 and len(world.platform.jobs) == 1


def test_changed_bytes_are_a_new_run(world: World) -> None:
    a = world.drop()
    b = world.drop(config_bytes(training={"num_train_epochs": 1}))
    assert a and b and a.run_id != b.run_id and len(world.platform.jobs) == 2


def test_transient_platform_error_raises_and_retry_converges(world: World) -> None:
    world.platform.fail_next["submit_job"] = TransientPlatformError("throttled", "429")
    with pytest.raises(TransientPlatformError):
        world.drop()
    (run,) = world.ledger.list()
    assert run.state == RunState.RECEIVED
    record = world.drop()
    assert record is not None and record.state == RunState.SUBMITTED and len(world.platform.jobs) == 1


def test_submit_killed_between_job_and_ledger_write_converges(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    die_entering(monkeypatch, RunState.SUBMITTED, times=1)
    with pytest.raises(WorkerDied):
        world.drop()
    assert len(world.platform.jobs) == 1
    record = world.drop()
    assert record is not None and record.state == RunState.SUBMITTED
    assert len(world.platform.jobs) == 1


def run_to_deployed(world: World) -> str:
    run = world.drop().run_id  # type: ignore[union-attr]
    assert "running" in world.run_event("run_status_changed_camel", run)
    world.platform.finish_job(run)
    world.run_event("run_completed_pascal", run)
    assert world.state(run) == RunState.REGISTERED
    world.model_event(run)
    assert world.state(run) == RunState.DEPLOYING
    world.platform.complete_deployments()
    world.reconcile()
    return run


def test_happy_path_to_deployed(world: World) -> None:
    run = run_to_deployed(world)
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DEPLOYED
    assert record.metrics["eval_loss_after"] == 1.5
    (endpoint,) = world.platform.endpoints.values()
    assert endpoint.traffic == {record.deployment_name: 100}
    assert endpoint.tags["autopilot_idle_after_minutes"] == "30"
    assert record.smoke_test and record.smoke_test.answer == "Here is a packing list."
    sent = world.platform.invocations[0]["input_data"]
    assert sent["input_string"] == [[{"role": "user", "content": "Pack for a hike?"}]]
    assert sent["parameters"]["max_new_tokens"] == 200
    assert world.status.blobs["phi3.yaml.json"]["state"] == "deployed"
    assert list(record.timeline) == [
        "received",
        "submitted",
        "running",
        "completed",
        "registered",
        "deploying",
        "deployed",
    ]


def test_events_twice_and_shuffled_give_one_of_everything(world: World) -> None:
    run = world.drop().run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)
    deliveries = [
        ("run_status_changed_camel", {"runStatus": "Running"}),
        ("run_completed_pascal", {}),
        ("run_status_changed_camel", {"runStatus": "Completed"}),
    ] * 2
    random.Random(7).shuffle(deliveries)
    for fixture, data in deliveries:
        world.run_event(fixture, run, **data)
    for _ in range(2):
        world.model_event(run)
    world.platform.complete_deployments()
    world.reconcile()
    world.reconcile()
    world.model_event(run)  # a late duplicate after deployment
    world.run_event("run_status_changed_camel", run, runStatus="Running")  # late and backward
    assert world.state(run) == RunState.DEPLOYED
    assert len(world.platform.jobs) == 1
    assert len(world.platform.registered) == 1
    assert len(world.platform.endpoints) == 1
    assert len(world.platform.invocations) == 1


def test_register_killed_before_ledger_write_converges_on_model_event(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = world.drop().run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)
    die_entering(monkeypatch, RunState.REGISTERED, times=1)
    with pytest.raises(WorkerDied):
        world.run_event("run_completed_pascal", run)
    assert world.state(run) == RunState.COMPLETED and len(world.platform.registered) == 1
    # The platform's ModelRegistered event arrives although our ledger never recorded the version.
    (ref,) = world.platform.registered.values()
    raw = load_event("model_registered_camel", RUN_ID=run, MODEL_NAME=ref.name, MODEL_VERSION=ref.version)
    on_model_registered(world.store, world.platform, parse_event(raw), WORKSPACE_TOPIC)  # type: ignore[arg-type]
    assert world.state(run) == RunState.DEPLOYING
    assert len(world.platform.registered) == 1 and len(world.platform.endpoints) == 1


def test_failed_job_records_the_reason(world: World) -> None:
    run = world.drop().run_id  # type: ignore[union-attr]
    world.platform.finish_job(run, JobStatus.FAILED, "CUDA out of memory in finetune step")
    world.run_event("run_status_changed_camel", run, runStatus="Failed")
    record = world.store.get(run)
    assert record is not None and record.state == RunState.FAILED
    assert "out of memory" in record.errors[0].message and record.last_error_code == "JobFailed"
    world.run_event("run_completed_pascal", run)  # a stray late success cannot revive it
    assert world.state(run) == RunState.FAILED


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda raw: raw.update(topic="/subscriptions/x/workspaces/other"), "topic"),
        (lambda raw: raw["data"].update(RunType="azureml.StepRun"), "child step"),
        (lambda raw: raw["data"].update(RunTags={}), "not managed"),
        (lambda raw: raw["data"].update(RunId="some-other-job"), "is not the job"),
    ],
)
def test_foreign_and_child_events_are_ignored(world: World, mutate, why: str) -> None:  # type: ignore[no-untyped-def]
    run = world.drop().run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)
    raw = load_event("run_completed_pascal", RUN_ID=run)
    mutate(raw)
    outcome = on_run_event(world.store, world.platform, parse_event(raw), WORKSPACE_TOPIC)  # type: ignore[arg-type]
    assert outcome.startswith("ignored") and why in outcome
    assert world.state(run) == RunState.SUBMITTED


def test_reconcile_handles_lost_events_end_to_end(world: World) -> None:
    run = world.drop().run_id  # type: ignore[union-attr]
    world.reconcile()
    assert world.state(run) == RunState.SUBMITTED
    world.platform.finish_job(run)
    world.reconcile()  # completed -> registered -> deploying in one look
    assert world.state(run) == RunState.DEPLOYING
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYING  # still provisioning: nothing waits
    world.platform.complete_deployments()
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYED


def test_deployment_failure_deletes_what_was_created(world: World) -> None:
    world.platform.deployment_outcome = DeploymentState.FAILED
    world.platform.deployment_error_code = "OutOfQuota"
    run = world.drop().run_id  # type: ignore[union-attr]
    world.finish_through_reconcile(run)
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert record.last_error_code == "OutOfQuota"
    assert not world.platform.endpoints and world.platform.deleted_endpoints == [record.endpoint_name]


def test_failed_smoke_test_deletes_endpoint(world: World) -> None:
    world.platform.fail_next["invoke"] = PlatformError("endpoint answered HTTP 500", "500")
    run = world.drop().run_id  # type: ignore[union-attr]
    world.finish_through_reconcile(run)
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert record.last_error_code == "SmokeTestFailed" and not world.platform.endpoints


def test_a_smoke_test_that_times_out_is_tried_again_not_taken_as_a_broken_deployment(world: World) -> None:
    world.platform.fail_next["invoke"] = TransientPlatformError("upstream request timeout", "408")
    run = world.drop().run_id  # type: ignore[union-attr]
    world.finish_through_reconcile(run)
    assert world.state(run) == RunState.DEPLOYING and world.platform.endpoints  # kept: the next look tries again
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYED


def test_a_smoke_test_that_never_answers_fails_at_the_deployment_deadline(world: World) -> None:
    run = world.drop().run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)
    world.reconcile()
    world.platform.complete_deployments()
    world.platform.fail_next["invoke"] = TransientPlatformError("upstream request timeout", "408")
    world.reconcile()
    assert world.state(run) == RunState.DEPLOYING
    world.clock.advance(minutes=61)  # past the 60 minutes a deployment has
    world.platform.fail_next["invoke"] = TransientPlatformError("upstream request timeout", "408")
    world.reconcile()
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert record.last_error_code == "SmokeTestFailed" and "upstream request timeout" in record.errors[0].message
    assert not world.platform.endpoints


def test_deployment_past_deadline_fails_and_cleans_up(world: World) -> None:
    run = world.drop().run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)
    world.reconcile()
    world.clock.advance(minutes=61)
    world.reconcile()
    record = world.store.get(run)
    assert record is not None and record.last_error_code == "DeploymentTimeout" and not world.platform.endpoints


def test_quality_gate_blocks_deployment(world: World) -> None:
    gate = {**CONFIG["deployment"], "quality_gate": {"max_eval_loss": 1.0}}  # type: ignore[dict-item]
    run = world.drop(config_bytes(deployment=gate)).run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)  # eval_loss_after = 1.5
    world.reconcile()
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert record.errors[0].path == "deployment.quality_gate" and not world.platform.endpoints


def test_deployment_disabled_ends_registered(world: World) -> None:
    run = world.drop(config_bytes(deployment={"enabled": False})).run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)
    world.reconcile()
    world.reconcile()
    assert world.state(run) == RunState.REGISTERED and not world.platform.endpoints


def test_cleanup_deletes_idle_endpoint_and_keeps_busy_one(world: World) -> None:
    run = run_to_deployed(world)
    world.clock.advance(minutes=20)
    assert [d.action for d in cleanup(world.store, world.platform)] == ["skip"]
    record = world.store.get(run)
    assert record and record.endpoint_name
    world.platform.invoke(record.endpoint_name, None, {})  # a request resets the idle clock
    world.clock.advance(minutes=29)
    assert [d.action for d in cleanup(world.store, world.platform)] == ["skip"]
    world.clock.advance(minutes=2)
    assert [d.action for d in cleanup(world.store, world.platform, dry_run=True)] == ["delete"]
    assert world.platform.endpoints  # dry run deleted nothing
    (decision,) = cleanup(world.store, world.platform)
    assert decision.action == "delete" and not world.platform.endpoints
    assert world.state(run) == RunState.DELETED
    assert cleanup(world.store, world.platform) == []  # a second sweep finds nothing


def test_cleanup_respects_keep_and_never_sees_foreign_endpoints(world: World) -> None:
    keep_cfg = config_bytes(cleanup={"idle_after_minutes": 5, "keep": True})
    run = world.drop(keep_cfg).run_id  # type: ignore[union-attr]
    world.finish_through_reconcile(run)
    world.platform.endpoints["someone-elses"] = FakeEndpoint("someone-elses", {"team": "x"}, world.clock())
    world.clock.advance(days=3)
    decisions = cleanup(world.store, world.platform)
    assert [(d.action, d.reason) for d in decisions] == [("keep", "autopilot_keep is set")]
    assert set(world.platform.endpoints) == {world.store.get(run).endpoint_name, "someone-elses"}  # type: ignore[union-attr]


def test_cleanup_deletes_only_on_evidence_of_idleness(world: World) -> None:
    run = run_to_deployed(world)
    (endpoint,) = world.platform.endpoints.values()
    endpoint.metrics_missing = True  # the platform has no request data for the window
    world.clock.advance(days=2)
    (decision,) = cleanup(world.store, world.platform)
    assert decision.action == "skip" and "unknown" in decision.reason
    assert world.platform.endpoints and world.state(run) == RunState.DEPLOYED
    endpoint.metrics_missing = False  # data again: zero requests in the window is evidence
    (decision,) = cleanup(world.store, world.platform)
    assert decision.action == "delete" and world.state(run) == RunState.DELETED


def test_cleanup_asks_for_many_endpoints_in_one_call_and_a_failed_call_deletes_nothing(world: World) -> None:
    runs = [world.drop(name=f"team{i}.yaml").run_id for i in range(3)]  # type: ignore[union-attr]
    for run in runs:
        world.finish_through_reconcile(run)
    assert len(world.platform.endpoints) == 3
    world.clock.advance(days=2)
    world.platform.fail_next["endpoints_activity"] = RuntimeError("metrics service unavailable")
    decisions = cleanup(world.store, world.platform)
    assert {d.action for d in decisions} == {"skip"} and len(world.platform.endpoints) == 3
    world.platform.activity_calls = 0
    decisions = cleanup(world.store, world.platform)
    assert [d.action for d in decisions] == ["delete"] * 3 and world.platform.activity_calls == 1
    assert {world.state(r) for r in runs} == {RunState.DELETED}


def test_one_failed_probe_deletes_nothing_a_sustained_failure_does(world: World) -> None:
    # Before: the first unhealthy probe deleted the endpoint for good.
    run = run_to_deployed(world)
    (endpoint,) = world.platform.endpoints.values()
    endpoint.healthy = False
    for probe in (1, 2):
        (decision,) = cleanup(world.store, world.platform)
        assert decision.action == "skip" and f"probe {probe} of 3" in decision.reason
        world.clock.advance(minutes=6)
    assert world.state(run) == RunState.DEPLOYED and world.platform.endpoints

    endpoint.healthy = True  # it came back: the count starts again
    cleanup(world.store, world.platform)
    assert world.store.get(run).health == Health()  # type: ignore[union-attr]
    endpoint.healthy = False
    for _ in range(2):
        assert cleanup(world.store, world.platform)[0].action == "skip"
        world.clock.advance(minutes=6)
    assert cleanup(world.store, world.platform, dry_run=True)[0].action == "delete"
    assert world.store.get(run).health.unhealthy_probes == 2  # type: ignore[union-attr]  # dry run counts nothing
    (decision,) = cleanup(world.store, world.platform)
    assert decision.action == "delete" and "unhealthy for 12 min (3 failed probes in a row)" in decision.reason
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DELETED
    assert record.last_error_code == "EndpointUnhealthy" and "unhealthy for 12 min" in record.errors[0].message


def test_concurrent_ledger_writers_are_retried(world: World) -> None:
    run = world.drop().run_id  # type: ignore[union-attr]
    world.ledger.concurrent_writes = 3
    world.run_event("run_status_changed_camel", run)
    assert world.state(run) == RunState.RUNNING


def test_submit_gives_up_after_its_budget_and_says_why(world: World) -> None:
    for attempt in range(1, 3):
        world.platform.fail_next["submit_job"] = TransientPlatformError("throttled", "429")
        if attempt < 2:
            with pytest.raises(TransientPlatformError):
                submit_config(
                    container="training-configs",
                    blob_name="phi3.yaml",
                    content=config_bytes(),
                    etag=None,
                    store=world.store,
                    platform=world.platform,
                    data_root=Path("."),
                    max_attempts=2,
                )
        else:
            record = submit_config(
                container="training-configs",
                blob_name="phi3.yaml",
                content=config_bytes(),
                etag=None,
                store=world.store,
                platform=world.platform,
                data_root=Path("."),
                max_attempts=2,
            )
            assert record is not None and record.state == RunState.FAILED
            assert record.errors[0].message.startswith("could not submit after 2 tries")
    assert world.drop().state == RunState.FAILED  # type: ignore[union-attr]  # a re-delivery does not resubmit
    assert not world.platform.jobs


def test_endpoint_name_owned_by_someone_else_fails_the_deployment_cleanly(world: World) -> None:
    from shared.exceptions import NotManagedError

    run = world.drop().run_id  # type: ignore[union-attr]
    world.platform.finish_job(run)
    world.platform.fail_next["begin_deploy"] = NotManagedError("endpoint x exists and is not managed by the app")
    world.reconcile()
    record = world.store.get(run)
    assert record is not None and record.state == RunState.DEPLOY_FAILED
    assert "not managed" in record.errors[0].message and not world.platform.endpoints


def test_platform_refusing_the_job_rejects_or_fails_with_reason(world: World) -> None:
    from shared.exceptions import PlatformError, RejectedError

    world.platform.fail_next["submit_job"] = RejectedError([FieldIssue("component.version", "no version 9.9")])
    record = world.drop()
    assert record is not None and record.state == RunState.REJECTED
    assert record.errors == [FieldIssue("component.version", "no version 9.9")]
    world.platform.fail_next["submit_job"] = PlatformError("job name taken by another run", "Conflict")
    other = world.drop(config_bytes(training={"num_train_epochs": 2}))
    assert other is not None and other.state == RunState.FAILED and other.last_error_code == "Conflict"


def test_oversized_smoke_conversation_is_rejected_before_submitting(world: World) -> None:
    # Fresh dicts for every turn: PyYAML would write repeated objects as aliases, which configs refuse.
    long_turns = [
        t for _ in range(2) for t in ({"role": "user", "content": "x" * 30_000}, {"role": "assistant", "content": "y"})
    ]
    deployment = {**CONFIG["deployment"], "smoke_test": {"messages": [*long_turns, {"role": "user", "content": "?"}]}}  # type: ignore[dict-item]
    record = world.drop(config_bytes(deployment=deployment))
    assert record is not None and record.state == RunState.REJECTED
    assert record.errors[0].path == "deployment.smoke_test" and not world.platform.jobs


def test_infinite_numbers_are_refused_everywhere() -> None:
    from shared.config.loader import load_config
    from shared.config.model_tags import parse_model_defaults
    from shared.exceptions import ConfigError, ModelTagError

    with pytest.raises(ConfigError, match="finite"):
        load_config(config_bytes(training={"learning_rate": float("inf")}))
    with pytest.raises(ModelTagError, match="finite"):
        parse_model_defaults({"model_specific_defaults": "{'learning_rate': 1e999}"})


def test_quality_gate_is_refused_where_the_platform_reports_no_eval(world: World) -> None:
    world.platform.reports_eval_metrics = False
    gate = {**CONFIG["deployment"], "quality_gate": {"require_improvement": True}}  # type: ignore[dict-item]
    record = world.drop(config_bytes(deployment=gate))
    assert record is not None and record.state == RunState.REJECTED
    assert record.errors[0].path == "deployment.quality_gate" and not world.platform.jobs
