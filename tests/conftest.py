"""Session fixtures for every test tier.

``azurite``: a real Azurite for the session, on free loopback ports (never the 10000-10002 of a developer's
``autopilot up``), data in a temp dir; yields its full development connection string. Without
``node_modules/.bin/azurite`` the tests that need it are skipped, except under CI (``CI=true``), where a
missing emulator is a failure. ``storage_env``: per-test settings pointing at that Azurite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.common.exceptions import LocalHostError, NotInstalledError
from local.common.processes import free_ports
from local.host.azurite import AzuritePorts, azurite_executable, start_azurite, stop_azurite
from shared import runtime
from shared.followups import FollowUps
from shared.platform.port import MLPlatform
from shared.runs import RunStore
from shared.settings import Settings

# `make test` runs the suite on several workers (pytest-xdist, `--dist loadfile --no-loadscope-reorder`: a file's
# tests stay on one worker, so its module fixtures are built once, and files are handed out in collection order).
# The longest files go first, so that none is left to run alone at the end while the other workers idle: the
# end-to-end file alone is 217 s of a serial run and 282 s on three workers (docs/testing.md, "Where the time
# goes"). A serial run is only reordered by this; every test still runs.
LONGEST_FIRST = (
    "tests/integration/test_local_e2e.py",
    "tests/slow/",
    "tests/functional/local/platform/",
    "tests/integration/",
    "tests/infra/",
    "tests/functional/local/",
)


def _longest_first_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return next((rank for rank, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_longest_first_rank)  # stable: within a rank, collection order


@pytest.fixture(autouse=True, scope="session")
def _machine_independent_dtype() -> Iterator[None]:
    """Local training and serving in fp32 unless a test forces a dtype: with ``auto`` the path taken would
    depend on the CPU running the suite. Tests of the bf16 path set ``AUTOPILOT_LOCAL_DTYPE`` themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOPILOT_LOCAL_DTYPE", "float32")
        yield


@pytest.fixture(autouse=True, scope="session")
def _no_checkout_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI reads the checkout's local.settings.json and azd environment (autopilot/settings.py): point it
    at an empty directory, so a developer's own files never reach a test (and ``AZURE_ENV_NAME`` from their
    shell names nothing). Tests of those files make a checkout of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOPILOT_PROJECT_DIR", str(tmp_path_factory.mktemp("checkout")))
        patch.delenv("AZURE_ENV_NAME", raising=False)
        yield


@pytest.fixture(autouse=True)
def _fresh_runtime() -> Iterator[None]:
    """No test sees the composition root another left behind (the CLI uses an installed one as is)."""
    runtime.reset()
    yield
    runtime.reset()


@pytest.fixture
def use_runtime() -> Iterator[Callable[..., runtime.Runtime]]:
    """``use_runtime(settings=None, store=..., platform=..., follow_ups=...)`` makes a runtime with those
    collaborators the process's for the test (the composition root takes fakes; nothing is patched); forgotten
    after."""

    def use(
        settings: Settings | None = None,
        *,
        store: RunStore | None = None,
        platform: MLPlatform | None = None,
        follow_ups: FollowUps | None = None,
    ) -> runtime.Runtime:
        return runtime.install(runtime.bootstrap(settings, store=store, platform=platform, follow_ups=follow_ups))

    yield use
    runtime.reset()


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _require_azurite() -> None:
    try:
        azurite_executable()
    except NotInstalledError as exc:
        if running_under_ci():
            pytest.fail(f"{exc} (CI=true: the Azurite tests must run)", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def azurite_installed() -> None:
    """For tests that start their own Azurite: skip without ``npm install`` (fail under CI)."""
    _require_azurite()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite for the whole session; yields the connection string."""
    _require_azurite()
    workdir = tmp_path_factory.mktemp("azurite")
    for attempt in range(2):
        ports = AzuritePorts(*free_ports(3))
        try:
            started = start_azurite(workdir, ports, timeout_s=60)
            break
        except LocalHostError:
            # Another process may have taken a port between choosing and binding it: choose again once.
            if attempt:
                raise
    try:
        yield started.connection_string
    finally:
        stop_azurite(workdir)


@dataclass(frozen=True)
class StorageEnv:
    """The settings a test runs under: names unique to the test, so tests sharing Azurite do not mix."""

    connection_string: str
    config_container: str
    status_container: str
    ledger_table: str
    webhook_key: str
    host_port: int
    workdir: Path


@pytest.fixture
def storage_env(azurite: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StorageEnv]:
    """Point the app's settings at the session Azurite (AzureWebJobsStorage, unique status container and
    ledger table, a free webhook port, a temp workdir) and reset the composition root before and after.

    The config container keeps its configured name (``function_app`` reads it at import) and is emptied.
    """
    from azure.storage.blob import ContainerClient

    suffix = uuid.uuid4().hex[:10]
    port = free_ports(1)[0]
    env = StorageEnv(
        connection_string=azurite,
        config_container=os.environ.get("AUTOPILOT_CONFIG_CONTAINER") or "training-configs",
        status_container=f"training-status-{suffix}",
        ledger_table=f"autopilotruns{suffix}",
        webhook_key=f"test-key-{suffix}",
        host_port=port,
        workdir=tmp_path / ".autopilot",
    )
    monkeypatch.setenv("AzureWebJobsStorage", azurite)
    monkeypatch.setenv("AUTOPILOT_STATUS_CONTAINER", env.status_container)
    monkeypatch.setenv("AUTOPILOT_LEDGER_TABLE", env.ledger_table)
    monkeypatch.setenv("AUTOPILOT_WEBHOOK_KEY", env.webhook_key)
    monkeypatch.setenv("AUTOPILOT_HOST_PORT", str(port))
    monkeypatch.setenv("AUTOPILOT_WEBHOOK_URL", f"http://127.0.0.1:{port}/runtime/webhooks/EventGrid")
    monkeypatch.setenv("AUTOPILOT_WORKDIR", str(env.workdir))
    monkeypatch.setenv("AUTOPILOT_BLOB_POLL_SECONDS", "0.2")
    container = ContainerClient.from_connection_string(azurite, env.config_container)
    if container.exists():
        for blob in container.list_blobs():
            container.delete_blob(blob.name)
    runtime.reset()
    yield env
    runtime.reset()
