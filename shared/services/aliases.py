"""The model line's registry aliases, as MLflow users look for them since stages were deprecated: the version
that serves a model line is its ``champion``, a canary's version beside it the ``challenger``.

Moved with the rollout (reconcile's hooks, ``rollback.py``): a run deployed on its own endpoint, or a canary
promoted, crowns its version; a canary under observation is the challenger; a canary that fails or is rolled
back is no longer one, and a rollback crowns the version that serves again. An alias is a pointer in the
registry, never what decides a rollout (the ledger does), so moving one is best effort: a platform that
refuses is logged and the rollout goes on; the next move sets it right.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.exceptions import AutopilotError
from shared.ledger.record import RunRecord
from shared.platform.port import MLPlatform
from shared.runs import RunStore

CHAMPION = "champion"
CHALLENGER = "challenger"

log = logging.getLogger(__name__)


def _version(record: RunRecord) -> tuple[str, str] | None:
    if not (record.model_name and record.model_version):
        return None
    return record.model_name, record.model_version


def _best_effort(what: str, record: RunRecord, move: Callable[[], None]) -> None:
    try:
        move()
    except AutopilotError as exc:
        log.warning("run %s: %s not moved (%s); the rollout goes on", record.run_id, what, exc)


def crown(store: RunStore, platform: MLPlatform, record: RunRecord) -> None:
    """The run's version serves its model line: it is the ``champion``, and no longer a challenger."""
    found = _version(record)
    if found is None:
        return
    name, version = found

    def move() -> None:
        platform.set_model_alias(name, CHAMPION, version)
        if platform.model_aliases(name).get(CHALLENGER) == version:
            platform.delete_model_alias(name, CHALLENGER)

    _best_effort(f"alias {CHAMPION} of {name}", record, move)


def challenge(store: RunStore, platform: MLPlatform, record: RunRecord) -> None:
    """The run is a canary beside the serving deployment: its version is the ``challenger``."""
    found = _version(record)
    if found is None or record.canary is None:
        return
    name, version = found
    _best_effort(f"alias {CHALLENGER} of {name}", record, lambda: platform.set_model_alias(name, CHALLENGER, version))


def withdraw(store: RunStore, platform: MLPlatform, record: RunRecord) -> None:
    """A canary that failed or was rolled back: its version is no longer the challenger (nor the champion,
    which moves back to the version that serves again, when the rollback names it: ``rollback.py``)."""
    found = _version(record)
    if found is None or record.canary is None:
        return
    name, version = found

    def move() -> None:
        aliases = platform.model_aliases(name)
        for alias in (CHALLENGER, CHAMPION):
            if aliases.get(alias) == version:
                platform.delete_model_alias(name, alias)

    _best_effort(f"aliases of {name}", record, move)
