"""azd hooks of Fine-tune Autopilot (azure.yaml runs ``python3 infra/hooks/azd_hooks.py <hook>``).

- ``preprovision``: the ``Microsoft.EventGrid`` resource provider must be registered in the subscription.
- ``postprovision``: the roles OUTSIDE azd's resource group (infra/roles.json, scopes ``workspace`` and
  ``subscription``): the app identity's, and the deployer's when ``grantDeployerAccess`` is on. Each is a role
  assignment named after (scope, principal, role), so a rerun finds the same one and ``predown`` deletes exactly
  these. They are not in the Bicep: ``azd down`` deletes every resource group a deployment put a resource in,
  and the workspace's group must survive it.
- ``postdeploy``: the Event Grid subscriptions. They need the Function App's system keys (``eventgrid_extension``,
  ``blobs_extension``), which exist only once the deployed code has started, hence after deploy, and a
  ``listKeys`` call fails (ServiceUnavailable) while a new host starts (Azure/azure-cli#11176): both a failure
  and a missing key are retried with backoff. The workspace's subscriptions are exactly
  ``shared.subscriptions.SUBSCRIPTIONS`` (three today); one more sends the config container's ``BlobCreated``
  events to the blob trigger (Event Grid source, the only one Flex Consumption has). ``az rest`` returns as soon
  as ARM accepts a PUT (Azure/azure-cli#14223), so each subscription is read back until its ``provisioningState`` is
  ``Succeeded``; ``Failed`` means Event Grid's webhook validation handshake did not pass, and the hook fails.
- ``predown``: first what keeps billing once the app is gone. The app is stopped (it starts nothing more), then
  the app's online endpoints (tag ``autopilot_managed=true``) and its queued or running jobs in the workspace are
  listed with their cost per day (shared/prices.json), and deleted and canceled, or, with
  ``AUTOPILOT_DOWN_WORKSPACE_RESOURCES=keep``, kept with the commands that remove them later. Model versions
  stay. Then the subscriptions on a workspace topic azd did not create, and the role assignments above.

Every ``az`` call names azd's subscription (``AZURE_SUBSCRIPTION_ID``): ``--subscription`` where the command takes
it, and for ``az rest`` (which takes none, and reads the subscription from the URL) an ARM URL under it. A PUT's
body (which holds a function key inside the webhook URL) goes through a private temporary file, never the
command line or a log. A DELETE of what is already gone (404) is done, so every hook can be rerun. Needs the
Azure CLI (``az login``) and Python 3.11 with nothing installed: it imports only the standard library and the
app's dependency-free modules (shared.subscriptions, shared.naming, shared.costs). docs/infrastructure.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared.costs import HOURS_PER_DAY, NO_PRICE, PriceTable, endpoint_cost_per_day, money, training_cost  # noqa: E402
from shared.naming import is_managed  # noqa: E402

ROLES_FILE = ROOT / "infra" / "roles.json"
ARM = "https://management.azure.com"
ROLE_API = "2022-04-01"
EVENTGRID_API = "2022-06-15"
ML_API = "2024-04-01"
OUTSIDE_SCOPES = ("workspace", "subscription")
CONFIG_SUBSCRIPTION = "autopilot-config-blobs"
BLOB_TRIGGER_FUNCTION = "submit"

# listKeys: attempts and the pause before each retry (5, 10, 20, 40, then 60 s: about 7 minutes in all).
KEY_ATTEMPTS = 10
# A subscription's provisioning: Event Grid sends the validation handshake within seconds (about 5 minutes).
PROVISIONING_POLLS = 60
PROVISIONING_POLL_S = 5
SUCCEEDED = "Succeeded"
FAILED_STATES = frozenset({"Failed", "Canceled"})

DOWN_SETTING = "AUTOPILOT_DOWN_WORKSPACE_RESOURCES"
DOWN_CHOICES = ("delete", "keep")
# Azure ML job statuses that are neither ended nor ending (azure.ai.ml.constants.JobStatus; the app's own
# reading of them, shared.platform.port.JobStatus, needs pydantic, which the python3 azd runs lacks).
ACTIVE_JOB_STATUSES = frozenset(
    {
        "NotStarted",
        "Starting",
        "Provisioning",
        "Preparing",
        "Queued",
        "Running",
        "Finalizing",
        "NotResponding",
        "Paused",
    }
)
# The pipeline inputs the app sets to the fine-tune step's compute (shared/platform/azureml/pipeline.py).
FINETUNE_COMPUTE_INPUT = "compute_finetune"
FINETUNE_SKU_INPUT = "instance_type_finetune"
FINETUNE_NODES_INPUT = "num_nodes_finetune"
SERVERLESS = "serverless"


class HookError(RuntimeError):
    """A step failed; the message says what to do."""


class NotFound(HookError):
    """ARM answered 404: what was asked for does not exist (or no longer does)."""


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise HookError(f"{name} is not set in the azd environment (run azd provision first)")
    return value


def subscription() -> str:
    return env("AZURE_SUBSCRIPTION_ID")


def redact(url: str) -> str:
    """A webhook URL without its query (the ``code=`` key)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def backoff(attempt: int) -> int:
    """Seconds to wait before retry ``attempt`` (0-based): doubling from 5, at most 60."""
    return int(min(5 * 2**attempt, 60))


# -- az


def az(*args: str) -> str:
    # which() finds az.cmd on Windows too, where a bare "az" is no executable of its own.
    executable = shutil.which("az")
    if executable is None:
        raise HookError("the Azure CLI (az) is not on PATH; see docs/infrastructure.md")
    done = subprocess.run([executable, *args], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        # az's stderr carries ARM's error message; it never echoes a request body.
        message = f"az {' '.join(args[:3])} failed: {done.stderr.strip()[-800:]}"
        if "NotFound" in done.stderr or "Not Found" in done.stderr:
            raise NotFound(message)
        raise HookError(message)
    return done.stdout


def az_command(*args: str) -> str:
    """An ``az`` command that takes ``--subscription``, run in azd's subscription, its answer as JSON."""
    return az(*args, "--subscription", subscription(), "--output", "json")


def _arm_url(resource_id: str, api_version: str, query: str = "") -> str:
    """The ARM URL of a resource in azd's subscription (``az rest`` picks the subscription from it)."""
    if not resource_id.lower().startswith(f"/subscriptions/{subscription().lower()}/"):
        raise HookError(f"{resource_id} is not in azd's subscription {subscription()} (AZURE_SUBSCRIPTION_ID)")
    return f"{ARM}{resource_id}?api-version={api_version}{query}"


def _rest(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    args = ["rest", "--method", method, "--url", url, "--output", "json"]
    if body is None:
        text = az(*args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "body.json"
            path.touch(mode=0o600)
            path.write_text(json.dumps(body), encoding="utf-8")
            text = az(*args, "--body", f"@{path}", "--headers", "Content-Type=application/json")
    return json.loads(text) if text.strip() else None


def arm(method: str, resource_id: str, api_version: str, body: dict[str, Any] | None = None) -> Any:
    return _rest(method, _arm_url(resource_id, api_version), body)


def arm_delete(resource_id: str, api_version: str) -> bool:
    """Delete; False when it was already gone, so a rerun after a partial one goes through."""
    try:
        arm("delete", resource_id, api_version)
    except NotFound:
        return False
    return True


def arm_list(collection_id: str, api_version: str, query: str = "") -> list[dict[str, Any]]:
    """Every item of an ARM list, following ``nextLink``."""
    items: list[dict[str, Any]] = []
    url: str | None = _arm_url(collection_id, api_version, query)
    while url:
        page = _rest("get", url) or {}
        items.extend(page.get("value") or [])
        url = page.get("nextLink")
        if url and not url.lower().startswith(f"{ARM}/subscriptions/{subscription().lower()}/"):
            raise HookError(f"ARM's nextLink {url} leaves azd's subscription; stopped listing {collection_id}")
    return items


# -- roles


@dataclass(frozen=True)
class Principal:
    """Who gets which roles: the app's identity, or the person (pipeline) who ran azd up."""

    what: str
    principal_id: str
    principal_type: str
    roles: tuple[dict[str, str], ...]


def _roles_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(ROLES_FILE.read_text(encoding="utf-8"))
    return document


def outside_roles(kind: str = "roles") -> list[dict[str, str]]:
    """``kind``: ``roles`` (the app identity's) or ``deployerRoles``; only the scopes outside azd's group."""
    return [r for r in _roles_document()[kind] if r["scope"] in OUTSIDE_SCOPES]


def principals() -> list[Principal]:
    found = [
        Principal("app identity", env("AUTOPILOT_IDENTITY_PRINCIPAL_ID"), "ServicePrincipal", tuple(outside_roles()))
    ]
    deployer = os.environ.get("AUTOPILOT_DEPLOYER_PRINCIPAL_ID", "").strip()
    if deployer:  # empty when grantDeployerAccess is off or azd knew no principal
        kind = os.environ.get("AUTOPILOT_DEPLOYER_PRINCIPAL_TYPE", "").strip() or "User"
        found.append(Principal("deployer", deployer, kind, tuple(outside_roles("deployerRoles"))))
    return found


def scope_id(scope: str) -> str:
    if scope == "workspace":
        return env("AZUREML_WORKSPACE_ID")
    return f"/subscriptions/{subscription()}"


def role_assignment_id(scope: str, principal_id: str, role_id: str) -> str:
    """Deterministic, as Bicep's guid(): the same scope, principal and role give the same assignment."""
    name = uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}|{principal_id}|{role_id}")
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"


def role_assignment_body(principal: Principal, role: dict[str, str]) -> dict[str, Any]:
    definitions = f"/subscriptions/{subscription()}/providers/Microsoft.Authorization/roleDefinitions"
    return {
        "properties": {
            "roleDefinitionId": f"{definitions}/{role['id']}",
            "principalId": principal.principal_id,
            "principalType": principal.principal_type,
            "description": role["why"][:1024],
        }
    }


def grant_roles() -> None:
    for principal in principals():
        for role in principal.roles:
            scope = scope_id(role["scope"])
            body = role_assignment_body(principal, role)
            try:
                arm("put", role_assignment_id(scope, principal.principal_id, role["id"]), ROLE_API, body)
            except HookError as exc:
                if "RoleAssignmentExists" not in str(exc):
                    raise HookError(
                        f"granting {role['name']} on {scope} to the {principal.what}: {exc}. Granting roles needs "
                        "Owner, User Access Administrator or Role Based Access Control Administrator on that scope."
                    ) from None
                print(f"  {principal.what}: {role['name']}: already granted (by another assignment)")
                continue
            print(f"  {principal.what}: {role['name']} on {role['scope']}: granted")


def remove_roles() -> None:
    for principal in principals():
        for role in principal.roles:
            scope = scope_id(role["scope"])
            arm_delete(role_assignment_id(scope, principal.principal_id, role["id"]), ROLE_API)
            print(f"  {principal.what}: {role['name']} on {role['scope']}: removed")


# -- Event Grid subscriptions


def webhook_body(endpoint_url: str, flt: dict[str, Any]) -> dict[str, Any]:
    return {
        "properties": {
            "destination": {
                "endpointType": "WebHook",
                "properties": {"endpointUrl": endpoint_url, "maxEventsPerBatch": 1},
            },
            "filter": flt,
            "eventDeliverySchema": "EventGridSchema",
            "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
        }
    }


def workspace_subscriptions(hostname: str, eventgrid_key: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, body) of each subscription in shared/subscriptions.py, aimed at its function's webhook."""
    from shared.subscriptions import arm_document

    return [
        (
            s["name"],
            webhook_body(
                f"https://{hostname}/runtime/webhooks/eventgrid?functionName={s['function']}&code={eventgrid_key}",
                s["filter"],
            ),
        )
        for s in arm_document()
    ]


def config_blob_subscription(hostname: str, blobs_key: str, container: str) -> dict[str, Any]:
    return webhook_body(
        f"https://{hostname}/runtime/webhooks/blobs?functionName=Host.Functions.{BLOB_TRIGGER_FUNCTION}&code={blobs_key}",
        {
            "includedEventTypes": ["Microsoft.Storage.BlobCreated"],
            "subjectBeginsWith": f"/blobServices/default/containers/{container}/",
        },
    )


def system_keys(resource_group: str, app: str) -> dict[str, str]:
    """The extension keys. They appear once the host has started the deployed functions, and listKeys itself
    fails while a new host starts: both are retried with backoff."""
    problem = ""
    for attempt in range(KEY_ATTEMPTS):
        try:
            text = az_command("functionapp", "keys", "list", "-g", resource_group, "-n", app, "--query", "systemKeys")
            keys: dict[str, str] = json.loads(text or "{}") or {}
        except NotFound as exc:
            raise HookError(f"{app} is not in {resource_group}: {exc}") from None
        except HookError as exc:
            problem = str(exc)
            keys = {}
        else:
            if keys.get("eventgrid_extension") and keys.get("blobs_extension"):
                return keys
            problem = "no eventgrid_extension/blobs_extension system key yet"
        if attempt + 1 < KEY_ATTEMPTS:
            print(f"  waiting for the function host to start ({problem[:160]}) ...")
            time.sleep(backoff(attempt))
    raise HookError(
        f"{app}: {problem} after {KEY_ATTEMPTS} tries: is the deployment running? Check the app's logs, then "
        "rerun `azd hooks run postdeploy`."
    )


def put_subscription(subscription_id: str, body: dict[str, Any]) -> None:
    """PUT an event subscription, then read it back until Event Grid has validated its webhook."""
    url = redact(body["properties"]["destination"]["properties"]["endpointUrl"])
    arm("put", subscription_id, EVENTGRID_API, body)
    state = ""
    for poll in range(PROVISIONING_POLLS):
        state = str(
            ((arm("get", subscription_id, EVENTGRID_API) or {}).get("properties") or {}).get("provisioningState")
        )
        if state == SUCCEEDED:
            print(f"  {subscription_id.rsplit('/', 1)[-1]} -> {url}")
            return
        if state in FAILED_STATES:
            raise HookError(
                f"event subscription {subscription_id.rsplit('/', 1)[-1]} is {state}: Event Grid's webhook "
                f"validation handshake with {url} did not pass (the function did not answer it: is the app "
                "running with this deployment?). Fix that, then rerun `azd hooks run postdeploy`; "
                "https://learn.microsoft.com/azure/event-grid/webhook-event-delivery"
            )
        if poll + 1 < PROVISIONING_POLLS:
            time.sleep(PROVISIONING_POLL_S)
    raise HookError(
        f"event subscription {subscription_id} is still {state} after {PROVISIONING_POLLS * PROVISIONING_POLL_S} s; "
        "rerun `azd hooks run postdeploy`"
    )


def create_subscriptions() -> None:
    group, app, hostname = (
        env("AZURE_RESOURCE_GROUP"),
        env("AZURE_FUNCTION_APP_NAME"),
        env("AZURE_FUNCTION_APP_HOSTNAME"),
    )
    topic = env("AZUREML_WORKSPACE_TOPIC_ID")
    keys = system_keys(group, app)
    for name, body in workspace_subscriptions(hostname, keys["eventgrid_extension"]):
        put_subscription(f"{topic}/eventSubscriptions/{name}", body)
    storage_topic = (
        f"/subscriptions/{subscription()}/resourceGroups/{group}"
        f"/providers/Microsoft.EventGrid/systemTopics/{env('AZURE_STORAGE_TOPIC_NAME')}"
    )
    body = config_blob_subscription(hostname, keys["blobs_extension"], env("AUTOPILOT_CONFIG_CONTAINER"))
    put_subscription(f"{storage_topic}/eventSubscriptions/{CONFIG_SUBSCRIPTION}", body)


def delete_foreign_topic_subscriptions() -> None:
    if os.environ.get("AZUREML_WORKSPACE_TOPIC_OWNED", "true").strip().lower() == "true":
        return  # the topic is in azd's resource group and goes with it
    from shared.subscriptions import SUBSCRIPTIONS

    topic = env("AZUREML_WORKSPACE_TOPIC_ID")
    for each in SUBSCRIPTIONS:
        arm_delete(f"{topic}/eventSubscriptions/{each.name}", EVENTGRID_API)
        print(f"  {each.name}: removed from {topic.rsplit('/', 1)[-1]}")


def check_eventgrid_provider() -> None:
    text = az_command("provider", "show", "-n", "Microsoft.EventGrid", "--query", "registrationState")
    state = str(json.loads(text or '""') or "")
    if state != "Registered":
        raise HookError(
            f"the Microsoft.EventGrid resource provider is {state or 'not registered'} in subscription "
            f"{subscription()}: run `az provider register -n Microsoft.EventGrid --subscription {subscription()}` "
            "(needs Contributor on the subscription) and retry"
        )


# -- predown: what would keep billing in the workspace


@dataclass(frozen=True)
class Billing:
    """An app-made endpoint or job in the workspace, what it costs per day, and the command that removes it."""

    kind: str  # endpoint | job
    name: str
    resource_id: str
    what: str  # "1 x Standard_NC24ads_A100_v4" or "Running on gpu-cluster (Standard_NC24ads_A100_v4 x 1)"
    per_day: float | None  # None: no price on record

    def cost(self) -> str:
        return f"{money(self.per_day)}/day" if self.per_day is not None else NO_PRICE


def down_choice() -> str:
    """``delete`` (the default) or ``keep``: what predown does with the app's endpoints and running jobs."""
    choice = os.environ.get(DOWN_SETTING, "").strip().lower() or "delete"
    if choice not in DOWN_CHOICES:
        raise HookError(
            f"{DOWN_SETTING} must be one of {', '.join(DOWN_CHOICES)}, not {choice!r} "
            f"(`azd env set {DOWN_SETTING} keep` keeps them)"
        )
    return choice


def _prices() -> PriceTable:
    return PriceTable.load(os.environ.get("AUTOPILOT_PRICE_TABLE", "").strip() or None)


def app_endpoints(workspace: str, prices: PriceTable) -> list[Billing]:
    found: list[Billing] = []
    for endpoint in arm_list(f"{workspace}/onlineEndpoints", ML_API):
        if not is_managed(endpoint.get("tags")):
            continue  # not the app's: never touched
        per_day: float | None = 0.0
        parts = []
        for deployment in arm_list(f"{endpoint['id']}/deployments", ML_API):
            sku = (deployment.get("properties") or {}).get("instanceType")
            count = int((deployment.get("sku") or {}).get("capacity") or 1)
            parts.append(f"{count} x {sku}")
            price = prices.get(sku)
            per_day = None if price is None or per_day is None else per_day + endpoint_cost_per_day(price, count)
        found.append(
            Billing("endpoint", endpoint["name"], endpoint["id"], ", ".join(parts) or "no deployment", per_day)
        )
    return found


def _input_value(job: dict[str, Any], name: str) -> str:
    """A literal input the app gave the pipeline's node (``properties.jobs.<node>.inputs.<name>.value``, the
    shape of a pipeline job ARM returns); a binding to another input (``${{parent.inputs.x}}``) tells nothing."""
    for node in ((job.get("properties") or {}).get("jobs") or {}).values():
        value = ((node.get("inputs") or {}).get(name) or {}).get("value") if isinstance(node, dict) else None
        if value not in (None, "") and not str(value).startswith("${{"):
            return str(value)
    return ""


def _vm_size(workspace: str, compute: str, cache: dict[str, str]) -> str:
    name = compute.rsplit("/", 1)[-1].removeprefix("azureml:")
    if name not in cache:
        try:
            found = arm("get", f"{workspace}/computes/{name}", ML_API) or {}
        except NotFound:
            found = {}
        cache[name] = str(((found.get("properties") or {}).get("properties") or {}).get("vmSize") or "")
    return cache[name]


def app_jobs(workspace: str, prices: PriceTable) -> list[Billing]:
    found: list[Billing] = []
    sizes: dict[str, str] = {}
    for job in arm_list(f"{workspace}/jobs", ML_API, "&listViewType=ActiveOnly"):
        properties = job.get("properties") or {}
        status = str(properties.get("status") or "")
        if status not in ACTIVE_JOB_STATUSES or not is_managed(properties.get("tags")):
            continue
        # The fine-tune step dominates: its VM size x nodes, from the inputs the app set (or the job's own).
        compute = _input_value(job, FINETUNE_COMPUTE_INPUT) or str(properties.get("computeId") or "")
        resources = properties.get("resources") or {}
        nodes = int(_input_value(job, FINETUNE_NODES_INPUT) or resources.get("instanceCount") or 1)
        if compute.lower() == SERVERLESS or not compute:
            sku = _input_value(job, FINETUNE_SKU_INPUT) or str(resources.get("instanceType") or "")
        else:
            sku = _vm_size(workspace, compute, sizes)
        price = prices.get(sku)
        compute_name = compute.rsplit("/", 1)[-1].removeprefix("azureml:") or "compute not known"
        where = f"{compute_name} ({sku or 'VM size not known'} x {nodes})"
        per_day = training_cost(price, nodes, HOURS_PER_DAY) if price is not None else None
        found.append(Billing("job", job["name"], job["id"], f"{status} on {where}", per_day))
    return found


def removal_command(item: Billing, workspace_name: str, group: str) -> str:
    """What removes it later (az with the ml extension: `az extension add -n ml`)."""
    where = f"--resource-group {group} --workspace-name {workspace_name} --subscription {subscription()}"
    if item.kind == "endpoint":
        return f"az ml online-endpoint delete --name {item.name} {where} --yes"
    return f"az ml job cancel --name {item.name} {where}"


def stop_app() -> None:
    """Nothing new (endpoint, job) may start while the workspace is cleared; a rerun finds the app gone."""
    group, app = env("AZURE_RESOURCE_GROUP"), env("AZURE_FUNCTION_APP_NAME")
    try:
        az_command("functionapp", "stop", "-g", group, "-n", app)
    except NotFound:
        print(f"  {app}: already gone")
        return
    print(f"  {app}: stopped (it starts no more jobs or endpoints)")


def clear_workspace() -> None:
    choice = down_choice()
    workspace = env("AZUREML_WORKSPACE_ID")
    workspace_name, group = workspace.rsplit("/", 1)[-1], workspace.split("/")[4]
    prices = _prices()
    items = app_endpoints(workspace, prices) + app_jobs(workspace, prices)
    if not items:
        print(f"  workspace {workspace_name}: no endpoint or running job of the app")
    else:
        print(f"  workspace {workspace_name}: the app's endpoints and running jobs ({DOWN_SETTING}={choice}):")
    for item in items:
        print(f"    {item.kind} {item.name}: {item.what}, {item.cost()}")
        if choice == "keep":
            print(f"      kept; remove it later with: {removal_command(item, workspace_name, group)}")
        elif item.kind == "endpoint":
            gone = not arm_delete(item.resource_id, ML_API)
            print("      already gone" if gone else "      deleting (ARM finishes it in a few minutes)")
        else:
            try:
                arm("post", f"{item.resource_id}/cancel", ML_API)
            except NotFound:
                print("      already gone")
                continue
            print("      canceled")
    kept = [i for i in items if choice == "keep"]
    if kept:
        known = sum(i.per_day or 0.0 for i in kept)
        unknown = " (and some with no price on record)" if any(i.per_day is None for i in kept) else ""
        print(f"  kept: {money(known)}/day{unknown} until removed; the commands need `az extension add -n ml`")
    print(f"  model versions the app registered stay in {workspace_name} (storage only)")


HOOKS: dict[str, list[Callable[[], object]]] = {
    "preprovision": [check_eventgrid_provider],
    "postprovision": [grant_roles],
    "postdeploy": [create_subscriptions],
    "predown": [down_choice, stop_app, clear_workspace, delete_foreign_topic_subscriptions, remove_roles],
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in HOOKS:
        print(f"usage: azd_hooks.py {{{'|'.join(HOOKS)}}}", file=sys.stderr)
        return 2
    print(f"autopilot {argv[0]}:")
    try:
        for step in HOOKS[argv[0]]:
            step()
    except HookError as exc:
        print(f"autopilot {argv[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
