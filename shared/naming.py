"""Names derived from the run id, so every retry addresses the same job, model version and endpoint."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from shared.exceptions import FieldIssue, RejectedError

# Tag keys carry no '.': Event Grid's advanced filters read every '.' in a filter key as one level of nesting
# and have no escape, so a filter can reach ``data.runTags.autopilot_managed`` but never a tag literally named
# ``autopilot.managed`` (event-filtering.md, "Limitations").
TAG_RUN_ID = "autopilot_run_id"
TAG_MANAGED = "autopilot_managed"
TAG_CONFIG = "autopilot_config"
TAG_IDLE_MINUTES = "autopilot_idle_after_minutes"
TAG_KEEP = "autopilot_keep"
# A model version's registry alias where the registry has none of its own (Azure ML): a tag per alias.
ALIAS_TAG_PREFIX = "autopilot_alias_"


def alias_tag(alias: str) -> str:
    """The tag that marks a model version as ``alias`` (``champion``, ``challenger``)."""
    return f"{ALIAS_TAG_PREFIX}{alias}"


_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
# ``run_id`` makes ``<slug>-<8 hex>``; a run-id tag is read as a ledger key, so anything with a path or key
# character ('/', '\\', '#', '?', '../', control characters) was not written by the app and is refused at
# the boundary: Table storage would answer 400 deep in a handler, and the event be retried for 24 hours.
RUN_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_SAFE_BLOB_RE = re.compile(r"^[A-Za-z0-9._/ -]+$")


def check_blob_name(blob_name: str) -> None:
    """Refuse blob names that could escape a prefix or smuggle control characters."""
    problems = []
    parts = blob_name.split("/")
    if not blob_name or len(blob_name) > 512:
        problems.append("must be 1-512 characters")
    if any(p in {"", ".", ".."} for p in parts):
        problems.append("must not contain empty, '.' or '..' path segments")
    if "\\" in blob_name or not _SAFE_BLOB_RE.match(blob_name):
        problems.append("may contain only letters, digits, '.', '_', '-', ' ' and '/'")
    if problems:
        raise RejectedError([FieldIssue("blob", f"name {blob_name[:80]!r} {p}") for p in problems])


def config_name(blob_name: str) -> str:
    """``team-a/Phi3 Chat.yaml`` -> ``team-a-phi3-chat``: the blob path without suffix, made id-safe."""
    stem = blob_name
    for suffix in _CONFIG_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return (slug or "config")[:40].strip("-")


def run_id(container: str, blob_name: str, content: bytes) -> str:
    """``<config name>-<8 hex>``: the same bytes at the same path are the same run."""
    content_hash = hashlib.sha256(content).hexdigest()
    digest = hashlib.sha256(f"{container}/{blob_name}\n{content_hash}".encode()).hexdigest()
    return f"{config_name(blob_name)}-{digest[:8]}"


def is_run_id(value: object) -> bool:
    return isinstance(value, str) and RUN_ID_RE.match(value) is not None


def run_hash(run: str) -> str:
    return run.rsplit("-", 1)[-1]


# Status blobs of single runs live under this prefix; a config's document lives at its own path + ".json".
RUN_STATUS_PREFIX = "_runs/"


def status_blob_name(blob_name: str) -> str:
    """The config's status document: its whole path (extension kept, so ``c.yaml`` and ``c.json`` never share
    one) plus ``.json``. It names the latest run of that path and lists the earlier ones."""
    return f"{blob_name}.json"


def run_status_blob_name(run: str) -> str:
    """One status blob per run, named by the run id."""
    return f"{RUN_STATUS_PREFIX}{run}.json"


def _endpointish(prefix: str, run: str, max_len: int = 32, scope: str = "") -> str:
    h = run_hash(run)
    base = re.sub(r"-+", "-", run[: -len(h) - 1] if run.endswith(h) else run).strip("-")
    if scope:
        # The run hash depends only on the blob path and bytes: the same sample deployed from two workspaces
        # would collide, and managed online endpoint names are unique per Azure region. The scope (the
        # workspace's identity) joins the hash, so names differ per workspace and stay stable for a run.
        h = hashlib.sha256(f"{scope}\n{run}".encode()).hexdigest()[:8]
    room = max_len - len(prefix) - len(h) - 1
    base = base[:room].rstrip("-")
    name = f"{prefix}{base}-{h}" if base else f"{prefix}{h}"
    return name


def workspace_scope(subscription_id: str, resource_group: str, workspace: str) -> str:
    """The identity of an Azure ML workspace, case-folded as Azure resource ids compare."""
    return f"{subscription_id}/{resource_group}/{workspace}".lower()


def endpoint_name(run: str, scope: str = "") -> str:
    """3-32 chars, a letter first: ``ft-<config>-<hash>``, stable for the run (and, given, the workspace)."""
    return _endpointish("ft-", run, scope=scope)


def deployment_name(run: str) -> str:
    return f"d-{run_hash(run)}"


def model_name(foundation_model: str, config: str) -> str:
    name = f"{foundation_model}-{config}".replace("/", "-")
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:128]


def app_tags(run: str, config_blob: str) -> dict[str, str]:
    """Tags on everything the app creates; the app never touches a resource without them."""
    return {TAG_RUN_ID: run, TAG_MANAGED: "true", TAG_CONFIG: config_blob[:256]}


def is_managed(tags: Mapping[str, str] | None) -> bool:
    """Carries the app's tags."""
    found = tags or {}
    return found.get(TAG_MANAGED) == "true" and bool(found.get(TAG_RUN_ID))
