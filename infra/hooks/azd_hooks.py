"""azd hooks of Fine-tune Autopilot (azure.yaml runs ``python3 infra/hooks/azd_hooks.py <hook>``).

- ``preprovision``: the ``Microsoft.EventGrid`` resource provider must be registered in the subscription.
- ``postprovision``: the identity's roles OUTSIDE azd's resource group (infra/roles.json, scopes ``workspace``
  and ``subscription``), as role assignments with names derived from (scope, principal, role), so a rerun
  finds the same assignment and ``predown`` deletes exactly these. They are not in the Bicep: ``azd down``
  deletes every resource group a deployment put a resource in, and the workspace's group must survive it.
- ``postdeploy``: the Event Grid subscriptions. They need the Function App's system keys (``eventgrid_extension``,
  ``blobs_extension``), which exist only once the deployed code has started, hence after deploy. The two
  workspace subscriptions are exactly ``shared.subscriptions.SUBSCRIPTIONS``; the third sends the config
  container's ``BlobCreated`` events to the blob trigger (Event Grid source, the only one Flex Consumption has).
- ``predown``: delete the role assignments above, and the subscriptions when they sit on a workspace topic that
  azd did not create (one azd created goes with its resource group).

Every call is an ``az rest`` PUT or DELETE of one ARM resource: idempotent, and the request body (which holds a
function key inside the webhook URL) goes through a private temporary file, never the command line or a log.
Needs the Azure CLI (``az login``) and Python 3.11; reads the azd environment from the process environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
ROLES_FILE = ROOT / "infra" / "roles.json"
ARM = "https://management.azure.com"
ROLE_API = "2022-04-01"
EVENTGRID_API = "2022-06-15"
OUTSIDE_SCOPES = ("workspace", "subscription")
CONFIG_SUBSCRIPTION = "autopilot-config-blobs"
BLOB_TRIGGER_FUNCTION = "submit"
KEY_WAIT_S = 300


class HookError(RuntimeError):
    """A step failed; the message says what to do."""


def env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise HookError(f"{name} is not set in the azd environment (run azd provision first)")
    return value


def redact(url: str) -> str:
    """A webhook URL without its query (the ``code=`` key)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def az(*args: str, capture: bool = True) -> str:
    try:
        done = subprocess.run(["az", *args], check=False, capture_output=True, text=True)
    except FileNotFoundError:
        raise HookError("the Azure CLI (az) is not installed; see docs/running-on-azure.md") from None
    if done.returncode != 0:
        # az's stderr carries ARM's error message; it never echoes a request body.
        raise HookError(f"az {' '.join(args[:3])} failed: {done.stderr.strip()[-800:]}")
    return done.stdout if capture else ""


def arm(method: str, resource_id: str, api_version: str, body: dict[str, Any] | None = None) -> None:
    url = f"{ARM}{resource_id}?api-version={api_version}"
    if body is None:
        az("rest", "--method", method, "--url", url)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "body.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(body), encoding="utf-8")
        az("rest", "--method", method, "--url", url, "--body", f"@{path}", "--headers", "Content-Type=application/json")


# -- roles


def outside_roles() -> list[dict[str, str]]:
    roles: list[dict[str, str]] = json.loads(ROLES_FILE.read_text(encoding="utf-8"))["roles"]
    return [r for r in roles if r["scope"] in OUTSIDE_SCOPES]


def scope_id(scope: str, environment: dict[str, str]) -> str:
    if scope == "workspace":
        return environment["AZUREML_WORKSPACE_ID"]
    return f"/subscriptions/{environment['AZURE_SUBSCRIPTION_ID']}"


def role_assignment_id(scope: str, principal_id: str, role_id: str) -> str:
    """Deterministic, as Bicep's guid(): the same scope, principal and role give the same assignment."""
    name = uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}|{principal_id}|{role_id}")
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"


def role_assignment_body(subscription_id: str, principal_id: str, role: dict[str, str]) -> dict[str, Any]:
    definitions = f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions"
    return {
        "properties": {
            "roleDefinitionId": f"{definitions}/{role['id']}",
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
            "description": role["why"][:1024],
        }
    }


def role_environment() -> dict[str, str]:
    return {
        "AZUREML_WORKSPACE_ID": env("AZUREML_WORKSPACE_ID"),
        "AZURE_SUBSCRIPTION_ID": env("AZURE_SUBSCRIPTION_ID"),
        "AUTOPILOT_IDENTITY_PRINCIPAL_ID": env("AUTOPILOT_IDENTITY_PRINCIPAL_ID"),
    }


def grant_roles() -> None:
    environment = role_environment()
    principal = environment["AUTOPILOT_IDENTITY_PRINCIPAL_ID"]
    for role in outside_roles():
        scope = scope_id(role["scope"], environment)
        body = role_assignment_body(environment["AZURE_SUBSCRIPTION_ID"], principal, role)
        try:
            arm("put", role_assignment_id(scope, principal, role["id"]), ROLE_API, body)
        except HookError as exc:
            if "RoleAssignmentExists" not in str(exc):
                raise HookError(
                    f"granting {role['name']} on {scope}: {exc}. Granting roles needs Owner, User Access "
                    "Administrator or Role Based Access Control Administrator on that scope."
                ) from None
            print(f"  {role['name']}: already granted (by another assignment)")
            continue
        print(f"  {role['name']} on {role['scope']}: granted")


def remove_roles() -> None:
    environment = role_environment()
    principal = environment["AUTOPILOT_IDENTITY_PRINCIPAL_ID"]
    for role in outside_roles():
        scope = scope_id(role["scope"], environment)
        try:
            arm("delete", role_assignment_id(scope, principal, role["id"]), ROLE_API)
        except HookError as exc:
            if "NotFound" not in str(exc):
                raise
        print(f"  {role['name']} on {role['scope']}: removed")


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
    sys.path.insert(0, str(ROOT))
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
    """The extension keys; they appear once the host has started the deployed functions."""
    deadline = time.monotonic() + KEY_WAIT_S
    while True:
        text = az("functionapp", "keys", "list", "-g", resource_group, "-n", app, "--query", "systemKeys", "-o", "json")
        keys: dict[str, str] = json.loads(text or "{}") or {}
        if keys.get("eventgrid_extension") and keys.get("blobs_extension"):
            return keys
        if time.monotonic() > deadline:
            raise HookError(
                f"{app} has no eventgrid_extension/blobs_extension system key after {KEY_WAIT_S} s: is the "
                "deployment running? Check the app's logs, then rerun `azd hooks run postdeploy`."
            )
        print("  waiting for the function host to start ...")
        time.sleep(15)


def create_subscriptions() -> None:
    group, app, hostname = (
        env("AZURE_RESOURCE_GROUP"),
        env("AZURE_FUNCTION_APP_NAME"),
        env("AZURE_FUNCTION_APP_HOSTNAME"),
    )
    topic = env("AZUREML_WORKSPACE_TOPIC_ID")
    keys = system_keys(group, app)
    for name, body in workspace_subscriptions(hostname, keys["eventgrid_extension"]):
        arm("put", f"{topic}/eventSubscriptions/{name}", EVENTGRID_API, body)
        print(f"  {name} -> {redact(body['properties']['destination']['properties']['endpointUrl'])}")
    storage_topic = (
        f"/subscriptions/{env('AZURE_SUBSCRIPTION_ID')}/resourceGroups/{group}"
        f"/providers/Microsoft.EventGrid/systemTopics/{env('AZURE_STORAGE_TOPIC_NAME')}"
    )
    body = config_blob_subscription(hostname, keys["blobs_extension"], env("AUTOPILOT_CONFIG_CONTAINER"))
    arm("put", f"{storage_topic}/eventSubscriptions/{CONFIG_SUBSCRIPTION}", EVENTGRID_API, body)
    print(f"  {CONFIG_SUBSCRIPTION} -> {redact(body['properties']['destination']['properties']['endpointUrl'])}")


def delete_foreign_topic_subscriptions() -> None:
    if os.environ.get("AZUREML_WORKSPACE_TOPIC_OWNED", "true").strip().lower() == "true":
        return  # the topic is in azd's resource group and goes with it
    sys.path.insert(0, str(ROOT))
    from shared.subscriptions import SUBSCRIPTIONS

    topic = env("AZUREML_WORKSPACE_TOPIC_ID")
    for subscription in SUBSCRIPTIONS:
        arm("delete", f"{topic}/eventSubscriptions/{subscription.name}", EVENTGRID_API)
        print(f"  {subscription.name}: removed from {topic.rsplit('/', 1)[-1]}")


def check_eventgrid_provider() -> None:
    state = az("provider", "show", "-n", "Microsoft.EventGrid", "--query", "registrationState", "-o", "tsv").strip()
    if state != "Registered":
        raise HookError(
            f"the Microsoft.EventGrid resource provider is {state or 'not registered'} in this subscription: "
            "run `az provider register -n Microsoft.EventGrid` (needs Contributor on the subscription) and retry"
        )


HOOKS = {
    "preprovision": [check_eventgrid_provider],
    "postprovision": [grant_roles],
    "postdeploy": [create_subscriptions],
    "predown": [delete_foreign_topic_subscriptions, remove_roles],
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
