"""Composition root: the one place that builds the ledger, the status store and the platform adapter.

``bootstrap(settings, store=..., platform=...)`` builds a ``Runtime`` from settings and uses whatever it is
given as is (tests pass fakes; nothing is patched). Each entry point (the blueprints, the CLI, the local host)
uses the process's runtime, ``current()``, built once on first use from the environment; ``install`` makes
another one current (tests, and the CLI, which reads its settings with ``autopilot/settings.py``). Adapters
are named here only, by string, and import their heavy SDKs (azure.ai.ml, mlflow, torch) when first built,
never at import.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.followups import FollowUps
from shared.ledger.outbox import EVENT_GRID
from shared.ledger.record import RunRecord
from shared.platform.port import MLPlatform
from shared.runs import RunStore
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.notify import Send

log = logging.getLogger(__name__)

# Adapter classes by setting value: "module:Class", built with the settings.
ADAPTERS = {
    "local": "local.platform.adapter:LocalPlatform",
    "azureml": "shared.platform.azureml.adapter:AzureMLPlatform",
}


def build_platform(settings: Settings) -> MLPlatform:
    module_name, _, class_name = ADAPTERS[settings.platform].partition(":")
    cls: Any = getattr(importlib.import_module(module_name), class_name)
    platform: MLPlatform = cls(settings)
    return platform


def build_follow_ups(settings: Settings) -> FollowUps:
    from shared.followups_queue import QueueFollowUps, check_queue_name

    check_queue_name(settings.follow_up_queue, "AUTOPILOT_FOLLOW_UP_QUEUE")
    return QueueFollowUps(settings.storage(), settings.follow_up_queue, settings.ledger_table)


def build_store(settings: Settings, scheduler: Callable[[RunRecord], None] | None = None) -> RunStore:
    from shared.ledger.table import TableLedger
    from shared.notify import owe
    from shared.status import BlobStatusStore

    return RunStore(
        TableLedger(settings.storage(), settings.ledger_table),
        BlobStatusStore(settings.storage(), settings.status_container),
        observers=[scheduler] if scheduler is not None else [],  # the run's follow-ups (docs/follow-ups.md)
        owe=owe,  # state changes record what they owe; the delivery worker sends it (build_senders)
    )


def build_senders(settings: Settings) -> dict[str, Send]:
    """The delivery worker's senders by destination kind: the webhooks, signed with the settings' secret and
    held to the address rules, and the Event Grid topics the settings allow."""
    from shared.notify import WebhookSender
    from shared.notify_eventgrid import DEFAULT_SOURCE, EventGridSender, SdkPublisher, allowed_topics

    def identity() -> Any:
        # The Function App's identity, as the Azure ML adapter uses it (developer logins only when allowed).
        from shared.identity import build_credential

        return build_credential(settings)

    topics = allowed_topics(settings.event_grid_topics)
    # Settings allow a key only beside exactly one topic: the key is that topic's.
    publisher = SdkPublisher(settings.event_grid_topic_key, identity, key_topic=next(iter(topics), ""))
    return {
        "webhook": WebhookSender(settings.notify_signing_key, settings.notify_allow_private_addresses),
        EVENT_GRID: EventGridSender(publisher, topics, source=f"{DEFAULT_SOURCE}/{settings.config_container}"),
    }


class Runtime:
    """The collaborators of one process. The store and the platform are built on first use: a timer that
    only reads the ledger never pays for an ML SDK, and a bad platform setting fails where it is needed."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: RunStore | None = None,
        platform: MLPlatform | None = None,
        senders: dict[str, Send] | None = None,
        follow_ups: FollowUps | None = None,
    ):
        self.settings = settings
        self._store = store
        self._platform = platform
        self._senders = senders
        self._follow_ups = follow_ups
        self._lock = threading.Lock()

    @property
    def store(self) -> RunStore:
        with self._lock:
            if self._store is None:
                self._store = build_store(self.settings, self._scheduler())
            return self._store

    def _scheduler(self) -> Callable[[RunRecord], None] | None:
        """The observer that schedules a run's follow-ups (None when they are off)."""
        if not self.settings.follow_ups:
            return None
        from shared.services.followup import FollowUpScheduler

        return FollowUpScheduler(self._follow_ups_unlocked(), lambda: self.platform.activity_delay)

    @property
    def follow_ups(self) -> FollowUps:
        with self._lock:
            return self._follow_ups_unlocked()

    def _follow_ups_unlocked(self) -> FollowUps:
        if self._follow_ups is None:
            self._follow_ups = build_follow_ups(self.settings)
        return self._follow_ups

    @property
    def platform(self) -> MLPlatform:
        with self._lock:
            if self._platform is None:
                self._platform = build_platform(self.settings)
            return self._platform

    @property
    def senders(self) -> dict[str, Send]:
        with self._lock:
            if self._senders is None:
                self._senders = build_senders(self.settings)
            return self._senders

    @property
    def deploy_timeout(self) -> timedelta:
        return timedelta(minutes=self.settings.deploy_timeout_minutes)

    @property
    def received_deadline(self) -> timedelta:
        return timedelta(minutes=self.settings.received_deadline_minutes)

    @property
    def orphan_grace(self) -> timedelta:
        return timedelta(minutes=self.settings.orphan_grace_minutes)


def bootstrap(
    settings: Settings | None = None,
    *,
    store: RunStore | None = None,
    platform: MLPlatform | None = None,
    senders: dict[str, Send] | None = None,
    follow_ups: FollowUps | None = None,
) -> Runtime:
    """A runtime from ``settings`` (the environment's when None), using ``store``/``platform``/``senders``/
    ``follow_ups`` when given. A store given is used as is: its observers are the caller's (a test adds the
    follow-up scheduler)."""
    return Runtime(
        settings if settings is not None else Settings.from_env(),
        store=store,
        platform=platform,
        senders=senders,
        follow_ups=follow_ups,
    )


_current: Runtime | None = None
_current_lock = threading.Lock()


def current() -> Runtime:
    """The process's runtime, bootstrapped from the environment on first use."""
    global _current
    with _current_lock:
        if _current is None:
            _current = bootstrap()
        return _current


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the process's; returns it."""
    global _current
    with _current_lock:
        _current = runtime
    return runtime


def installed() -> Runtime | None:
    """The process's runtime if one was built or installed, else None; builds nothing."""
    with _current_lock:
        return _current


def reset() -> None:
    """Forget the process's runtime: the next ``current()`` reads the environment again."""
    global _current
    with _current_lock:
        _current = None


# Shorthands for entry points.
def settings() -> Settings:
    return current().settings


def run_store() -> RunStore:
    return current().store


def platform() -> MLPlatform:
    return current().platform


def senders() -> dict[str, Send]:
    return current().senders


def deploy_timeout() -> timedelta:
    return current().deploy_timeout


def received_deadline() -> timedelta:
    return current().received_deadline


def orphan_grace() -> timedelta:
    return current().orphan_grace


def follow_ups() -> FollowUps:
    return current().follow_ups
