"""The infrastructure against the code: the settings it sets are the ones the code reads, its roles cover the
calls the adapters make, and the Event Grid subscriptions it creates are the ones tests/unit checks."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from local.host.discovery import discover
from shared.platform.azureml.pipeline import COMPUTE_INPUTS, SERVERLESS_SKU_INPUTS
from shared.platform.port import JobStatus
from shared.settings import DEFAULTS, Settings
from shared.subscriptions import SUBSCRIPTIONS
from tests.infra.infra_files import INFRA, MAIN, RBAC, RESOURCES, ROOT, app_settings, hooks, parsed, roles

# Read by the Functions platform itself, not by the app's code.
PLATFORM_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_ENABLE_OPENTELEMETRY",  # the Functions Python worker's (opentelemetry-howto)
}
# What the app must be told on Azure (the rest keep their defaults).
REQUIRED = {
    "AUTOPILOT_PLATFORM",
    "AZUREML_SUBSCRIPTION_ID",
    "AZUREML_RESOURCE_GROUP",
    "AZUREML_WORKSPACE_NAME",
    "AZURE_CLIENT_ID",
    "AUTOPILOT_WORKSPACE_TOPIC",
    "AUTOPILOT_BLOB_SOURCE",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
}

# Calls the code makes on Azure (a pattern in a source file) -> the role and scope they need.
CALLS = [
    ("shared/platform/azureml/jobs.py", r"workspace\.jobs\.", "AzureML Data Scientist", "workspace"),
    (
        "shared/platform/azureml/models.py",
        r"workspace\.models\.create_or_update",
        "AzureML Data Scientist",
        "workspace",
    ),
    ("shared/platform/azureml/compute.py", r"workspace\.compute\.", "AzureML Data Scientist", "workspace"),
    (
        "shared/platform/azureml/endpoints.py",
        r"online_endpoints\.(begin_delete|invoke)",
        "AzureML Data Scientist",
        "workspace",
    ),
    ("shared/platform/azureml/endpoints.py", r"online_deployments\.", "AzureML Data Scientist", "workspace"),
    (
        "shared/platform/azureml/deployments.py",
        r"online_(endpoints|deployments)\.begin_create_or_update",
        "AzureML Data Scientist",
        "workspace",
    ),
    ("shared/platform/azureml/clients.py", r"MetricsClient\(", "Monitoring Reader", "subscription"),
    # The fine-tune step's runs and metrics through the workspace's MLflow tracking (training_metrics.py).
    ("shared/platform/azureml/clients.py", r"MlflowClient\(", "AzureML Data Scientist", "workspace"),
    ("shared/ledger/table.py", r"\.table_service\(", "Storage Table Data Contributor", "storage"),
    ("shared/status.py", r"\.blob_service\(", "Storage Blob Data Owner", "storage"),
    # The blob trigger keeps receipts in blobs and poison messages in a queue (Functions' identity guidance).
    ("functions/submit.py", r"blob_trigger\(", "Storage Blob Data Owner", "storage"),
    ("functions/submit.py", r"blob_trigger\(", "Storage Queue Data Contributor", "storage"),
    # Follow-ups: sent by the app, read and deleted by its queue trigger, poison queue created by the host.
    ("shared/followups_queue.py", r"\.send_message\(", "Storage Queue Data Contributor", "storage"),
    ("functions/followups.py", r"queue_trigger\(", "Storage Queue Data Contributor", "storage"),
    ("shared/followups_queue.py", r"\.table_service\(", "Storage Table Data Contributor", "storage"),
]


# What the documented commands do with the deployer's own login -> the deployer role and scope they need.
DEPLOYER_CALLS = [
    ("shared/storage.py", r"def upload_config\(", "Storage Blob Data Contributor", "storage"),  # submit
    ("shared/status.py", r"\.blob_service\(", "Storage Blob Data Contributor", "storage"),  # status blobs
    ("shared/ledger/table.py", r"\.table_service\(", "Storage Table Data Contributor", "storage"),  # the ledger
    ("shared/services/cancel.py", r"platform\.cancel_job\(", "AzureML Data Scientist", "workspace"),
    ("shared/services/cancel.py", r"platform\.begin_delete_endpoint\(", "AzureML Data Scientist", "workspace"),
    ("shared/services/rollback.py", r"platform\.set_traffic\(", "AzureML Data Scientist", "workspace"),
    ("autopilot/endpoints.py", r"platform\.list_endpoints\(", "AzureML Data Scientist", "workspace"),
    ("autopilot/endpoints.py", r"platform\.endpoint_activity\(", "Monitoring Reader", "subscription"),
    ("shared/platform/azureml/clients.py", r"MetricsClient\(", "Monitoring Reader", "subscription"),
    # The fine-tune step's runs and metrics through the workspace's MLflow tracking (training_metrics.py).
    ("shared/platform/azureml/clients.py", r"MlflowClient\(", "AzureML Data Scientist", "workspace"),
]


def literal(name: str) -> str:
    value = app_settings()[name]
    assert isinstance(value, str), f"{name} is an expression in the Bicep, not a literal"
    return value


def test_every_app_setting_is_read_by_the_code_or_the_platform() -> None:
    unknown = set(app_settings()) - set(DEFAULTS) - PLATFORM_SETTINGS
    assert not unknown, f"the Bicep sets settings nothing reads: {sorted(unknown)}"
    assert set(app_settings()) >= REQUIRED, sorted(REQUIRED - set(app_settings()))


def test_storage_is_keyless_and_the_trigger_uses_event_grid() -> None:
    settings = app_settings()
    assert "AzureWebJobsStorage" not in settings  # no connection string, so no key
    assert literal("AzureWebJobsStorage__credential") == "managedidentity"
    assert literal("AUTOPILOT_BLOB_SOURCE") == "EventGrid"  # Flex Consumption has no polling source
    assert literal("AUTOPILOT_PLATFORM") == "azureml"
    assert "FUNCTIONS_WORKER_RUNTIME" not in settings  # Flex sets the runtime in functionAppConfig
    env = {k: v if isinstance(v, str) else "x" for k, v in settings.items()}
    assert Settings.from_env(env).storage().uses_identity
    resources = RESOURCES.read_text(encoding="utf-8")
    assert "allowSharedKeyAccess: false" in resources


@pytest.mark.parametrize(("path", "pattern", "role", "scope"), CALLS, ids=[f"{c[0]}:{c[2]}" for c in CALLS])
def test_the_roles_cover_the_calls(path: str, pattern: str, role: str, scope: str) -> None:
    assert re.search(pattern, (ROOT / path).read_text(encoding="utf-8")), f"{path} no longer calls {pattern}"
    assert {"name": role, "scope": scope} in [{"name": r["name"], "scope": r["scope"]} for r in roles()]


@pytest.mark.parametrize(
    ("path", "pattern", "role", "scope"), DEPLOYER_CALLS, ids=[f"{c[0]}:{c[2]}" for c in DEPLOYER_CALLS]
)
def test_the_deployer_roles_cover_what_the_documented_commands_call(
    path: str, pattern: str, role: str, scope: str
) -> None:
    assert re.search(pattern, (ROOT / path).read_text(encoding="utf-8")), f"{path} no longer matches {pattern}"
    assert {"name": role, "scope": scope} in [{"name": r["name"], "scope": r["scope"]} for r in roles("deployerRoles")]


def test_every_role_is_granted_by_the_bicep_or_the_hooks() -> None:
    rbac = RBAC.read_text(encoding="utf-8")
    by_hooks = set(hooks().OUTSIDE_SCOPES)
    assert by_hooks == {"workspace", "subscription"}
    for kind, in_group in (("roles", {"storage", "appInsights"}), ("deployerRoles", {"storage"})):
        in_bicep = set(re.findall(rf"filter\(roles\.{kind}, r => r\.scope == '(\w+)'\)", rbac))
        assert in_bicep == in_group, kind
        assert {r["scope"] for r in roles(kind)} == in_bicep | by_hooks, kind
        assert all(re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", r["id"]) for r in roles(kind))
        assert all(len(r["why"]) >= 15 for r in roles(kind)), f"every {kind} entry says why"


def test_the_deployer_is_azds_principal_and_the_grant_is_on_by_default() -> None:
    main = parsed(MAIN)["parameters"]
    values = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert values["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert values["principalType"]["value"].startswith("${AZURE_PRINCIPAL_TYPE")
    assert values["grantDeployerAccess"]["value"] == "${AUTOPILOT_GRANT_DEPLOYER_ACCESS=true}"
    assert main["grantDeployerAccess"]["default"] is True
    # Every parameter without a default gets its value from the azd environment.
    assert {name for name, p in main.items() if "default" not in p} <= set(values)


def test_the_hook_reads_the_jobs_as_the_app_writes_them() -> None:
    h = hooks()
    assert h.FINETUNE_COMPUTE_INPUT in COMPUTE_INPUTS and h.FINETUNE_SKU_INPUT in SERVERLESS_SKU_INPUTS
    pipeline = (ROOT / "shared" / "platform" / "azureml" / "pipeline.py").read_text(encoding="utf-8")
    assert f'inputs["{h.FINETUNE_NODES_INPUT}"]' in pipeline
    # What the hook counts as still queued or running is what the app does not count as ended.
    assert not any(JobStatus.parse(status).is_terminal for status in h.ACTIVE_JOB_STATUSES)
    assert all(JobStatus.parse(s).is_terminal for s in ("Completed", "Failed", "Canceled"))


def test_role_assignments_outside_the_group_are_stable_so_predown_removes_what_postprovision_made() -> None:
    h = hooks()
    scope = "/subscriptions/s/resourceGroups/ml/providers/Microsoft.MachineLearningServices/workspaces/ws"
    first = h.role_assignment_id(scope, "principal", "role")
    assert first == h.role_assignment_id(scope, "principal", "role") and first.startswith(scope)
    # ARM ids are case-insensitive: the name must not change with the casing azd reports the scope in.
    assert first.rsplit("/", 1)[1] == h.role_assignment_id(scope.upper(), "principal", "role").rsplit("/", 1)[1]
    assert first != h.role_assignment_id(scope, "principal", "other-role")
    assert h.HOOKS["predown"][-1] is h.remove_roles and h.HOOKS["postprovision"] == [h.grant_roles]


def test_the_hook_creates_exactly_the_declared_subscriptions_aimed_at_the_apps_functions() -> None:
    import function_app

    functions = discover(function_app.app)
    created = hooks().workspace_subscriptions("func-x.azurewebsites.net", "KEY")
    assert [name for name, _ in created] == [s.name for s in SUBSCRIPTIONS]
    for (_, body), subscription in zip(created, SUBSCRIPTIONS, strict=True):
        properties = body["properties"]
        assert properties["filter"] == subscription.filter_arm()
        url = properties["destination"]["properties"]["endpointUrl"]
        assert url.startswith("https://func-x.azurewebsites.net/runtime/webhooks/eventgrid?")
        assert f"functionName={subscription.function}&" in url
        assert subscription.function in functions.event_grid
    parameters = parsed(RESOURCES)["parameters"]
    assert app_settings()["AUTOPILOT_CONFIG_CONTAINER"] == "configContainer"  # the parameter, passed as is
    container = parameters["configContainer"]["default"]
    assert container == DEFAULTS["AUTOPILOT_CONFIG_CONTAINER"]
    blob = hooks().config_blob_subscription("func-x.azurewebsites.net", "KEY", container)
    assert blob["properties"]["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/training-configs/"
    trigger = {f.name for f in functions.blob}
    assert any(
        f"functionName=Host.Functions.{name}&" in blob["properties"]["destination"]["properties"]["endpointUrl"]
        for name in trigger
    )
    assert (
        hooks()
        .redact(blob["properties"]["destination"]["properties"]["endpointUrl"])
        .endswith("/runtime/webhooks/blobs")
    )


def test_the_hooks_read_only_what_azd_provides() -> None:
    outputs = set(parsed(MAIN)["outputs"])
    azd_sets = {"AZURE_SUBSCRIPTION_ID"}  # azd's own environment value
    # Set by the person with `azd env set` (docs/infrastructure.md), and the app's own price table override.
    user_sets = {hooks().DOWN_SETTING, "AUTOPILOT_PRICE_TABLE"}
    source = (INFRA / "hooks" / "azd_hooks.py").read_text(encoding="utf-8")
    read = set(re.findall(r"""env\(["'](\w+)["']\)""", source))
    read |= set(re.findall(r"""os\.environ\.get\(["'](\w+)["']""", source))
    assert {"AUTOPILOT_DEPLOYER_PRINCIPAL_ID", "AZUREML_WORKSPACE_TOPIC_OWNED"} <= read
    assert read <= outputs | azd_sets | user_sets, sorted(read - outputs - azd_sets - user_sets)
    azure_yaml = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert set(azure_yaml["hooks"]) == set(hooks().HOOKS)
    for name, hook in azure_yaml["hooks"].items():
        for platform in ("posix", "windows"):
            assert hook[platform]["run"].endswith(f"infra/hooks/azd_hooks.py {name}")
    assert azure_yaml["services"]["app"]["host"] == "function" and azure_yaml["infra"]["path"] == "infra"


def test_the_follow_up_queue_and_its_poison_queue_exist_under_the_name_the_app_reads() -> None:
    import function_app

    resources = RESOURCES.read_text(encoding="utf-8")
    default = re.search(r"param followUpQueue string = '([^']+)'", resources)
    assert default and default.group(1) == DEFAULTS["AUTOPILOT_FOLLOW_UP_QUEUE"]
    assert "for queue in [followUpQueue, '${followUpQueue}-poison']" in resources
    assert "queueServices/queues@" in resources
    assert literal("AUTOPILOT_FOLLOW_UPS") == "true"
    app = {spec.name: spec.binding for spec in discover(function_app.app).all()}
    assert app["followup"]["connection"] == "AzureWebJobsStorage"  # the identity-based AzureWebJobsStorage__*
    assert "AzureWebJobsStorage__queueServiceUri" in app_settings()
