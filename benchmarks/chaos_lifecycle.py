"""The lifecycle part of benchmarks/chaos.py: webhook receivers that fail or hang for a while, the people who
approve, reject, cancel and roll back at seeded moments, and the notification count at the end.

Receivers listen on 127.0.0.1 (the host needs ``AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES=true``, as the local
twin sets). A receiver only counts a request it answered 2xx; while it is "down" it answers 503 at once
(``failing``) or holds the request past the app's 10 s try timeout and then answers 503 (``hanging``), so what
it counts is exactly what the app can have seen delivered. Each request is checked by the stock Standard Webhooks
verifier (``standardwebhooks``, requirements-dev.txt) with the signing key the host was given.

The people act through the same services the CLI calls (shared/services/approval.py ``decide``, cancel.py
``cancel_run``, rollback.py ``rollback_endpoint``), each at a seeded moment measured from when the run gets to
where the action races something: a decision from when the run is first seen past ``received`` (it may land
while the job still trains), a cancel from when the job is seen running (it races the completion, the
registration and the deploy), a rollback from when a canary is seen on the shared endpoint (it lands during the
observation window or after the promotion, within the grace period).
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from shared.exceptions import AutopilotError
from shared.ledger.record import RunRecord
from shared.services.delivery import LOST
from shared.states import TERMINAL, RunState

SHARED_ENDPOINT = "chaos-line"
# Longer than one try's timeout (shared/notify_http.py: 10 s for the whole exchange).
HANG_S = 13.0


def signing_key(seed: int) -> str:
    return "whsec_" + base64.b64encode(random.Random(seed).randbytes(32)).decode()


def signature_ok(key: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver's stock Standard Webhooks verifier says: the signature over ``id.timestamp.body``, and a
    timestamp within its 5-minute tolerance (each retry is signed anew)."""
    try:
        Webhook(key).verify(body, headers)
    except (WebhookVerificationError, ValueError):  # a bad signature or stamp, or a body that is not JSON
        return False
    return True


class Receiver:
    """A webhook receiver down (``failing`` or ``hanging``) from ``down_from`` for ``down_for`` seconds of the
    benchmark clock, answering 204 otherwise; counts the webhook-ids it accepted."""

    def __init__(self, name: str, mode: str, key: str, down_from: float, down_for: float) -> None:
        self.name, self.mode = name, mode
        self.down_from, self.down_for = down_from, down_for
        self.t0 = time.monotonic()
        self.accepted: Counter[str] = Counter()
        self.first_accepted_at: dict[str, float] = {}  # webhook-id -> time.monotonic() of its first 2xx
        self.refused: Counter[str] = Counter()  # requests answered 503 (or held, then 503) while down
        self.bad_signatures: list[str] = []
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                webhook_id = headers.get("webhook-id", "?")
                now = time.monotonic() - receiver.t0
                down = receiver.down_from <= now < receiver.down_from + receiver.down_for
                if down and receiver.mode == "hanging":
                    time.sleep(HANG_S)
                with lock:
                    if not signature_ok(key, headers, body):
                        receiver.bad_signatures.append(webhook_id)
                    (receiver.refused if down else receiver.accepted)[webhook_id] += 1
                    if not down:
                        receiver.first_accepted_at.setdefault(webhook_id, time.monotonic())
                try:
                    self.send_response(503 if down else 204)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the app gave up on a held request: it was counted as refused

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def describe(self) -> str:
        if not self.down_for:
            return "always up"
        return f"{self.mode} from {self.down_from:.0f}s for {self.down_for:.0f}s"


def receivers(rng: random.Random, key: str) -> list[Receiver]:
    """One always up, one that fails at once for a while, one that hangs for a while (seeded windows within
    the first minutes, when the first runs finish and deploy)."""
    return [
        Receiver("steady", "failing", key, 0, 0),
        Receiver("failing", "failing", key, rng.uniform(20, 60), rng.uniform(30, 90)),
        Receiver("hanging", "hanging", key, rng.uniform(20, 60), rng.uniform(30, 90)),
    ]


ROLES = ("shared", "shared", "manual", "cancel")


def role(index: int) -> str:
    """Configs take turns: two naming one shared endpoint (the second to deploy is a canary there, rolled back),
    a manual approval, and one canceled while its job completes; ``--configs 4`` has each once."""
    return ROLES[index % len(ROLES)]


def config_extra(role_name: str, hooks: list[str]) -> str:
    """YAML lines the role adds under ``deployment:`` and the notify section, for chaos.py's CONFIG."""
    deployment = {
        "manual": "  approval: manual\n",
        "shared": f"  endpoint_name: {SHARED_ENDPOINT}\n  observe_minutes: 0.5\n  grace_minutes: 1\n",
    }.get(role_name, "")
    return deployment + "notify: {webhooks: [" + ", ".join(hooks) + "]}\n"


@dataclass
class People:
    """Acts on runs at seeded moments; ``step`` is called with the ledger every half second or so."""

    rng: random.Random
    manual: set[str]  # run ids that wait for a decision
    cancel_target: str
    store: Callable[[], Any]
    platform: Callable[[], Any]
    actions: list[str] = field(default_factory=list)
    _decide_at: dict[str, float] = field(default_factory=dict)
    _decided: set[str] = field(default_factory=set)
    _cancel_at: float | None = None
    _canceled: bool = False
    _rollback_at: float | None = None
    _rolled_back: bool = False

    @property
    def pending(self) -> list[str]:
        """What a person still has to do (a decision nobody made leaves a run waiting for ever)."""
        return sorted(self.manual - self._decided)

    def step(self, records: dict[str, RunRecord]) -> None:
        now = time.monotonic()
        for run in sorted(self.manual - self._decided):
            record = records.get(run)
            if record is None:
                continue
            if record.state in TERMINAL:
                self._decided.add(run)
                self.actions.append(f"no decision on {run}: it ended {record.state.value} first")
                continue
            if record.state == RunState.RECEIVED:
                continue
            at = self._decide_at.setdefault(run, now + self.rng.uniform(0, 40))
            if now >= at:
                self._decide(run, "approved" if self.rng.random() < 0.6 else "rejected", record)
        self._cancel(records.get(self.cancel_target), now)
        self._rollback(records, now)

    def _decide(self, run: str, decision: str, record: RunRecord) -> None:
        from shared.services.approval import ApprovalError, decide

        try:
            decide(self.store(), run, decision, by="chaos", reason="chaos says no" if decision == "rejected" else None)  # type: ignore[arg-type]
        except ApprovalError as exc:
            self.actions.append(f"{decision} {run} while {record.state.value}: refused: {exc}")
        except Exception as exc:  # storage down for a moment (the kills): a person tries again
            self.actions.append(f"{decision} {run}: {type(exc).__name__}, again later")
            self._decide_at[run] = time.monotonic() + 3
            return
        else:
            self.actions.append(f"{decision} {run} while {record.state.value}")
        self._decided.add(run)

    def _cancel(self, record: RunRecord | None, now: float) -> None:
        if self._canceled or record is None:
            return
        if self._cancel_at is None:
            if record.state in TERMINAL or record.state == RunState.DEPLOYED:
                self._canceled = True
                self.actions.append(f"no cancel of {record.run_id}: it was {record.state.value} first")
                return
            if record.state not in (RunState.RUNNING, RunState.COMPLETED, RunState.REGISTERED):
                return
            # Seen running: the cancel lands in the seconds its job completes and the run registers and deploys.
            self._cancel_at = now + self.rng.uniform(0, 6)
        if now < self._cancel_at:
            return
        from shared.services.cancel import CancelError, cancel_run

        seen = record.state.value
        try:
            after = cancel_run(self.store(), self.platform(), record.run_id, by="chaos")
        except CancelError as exc:
            self.actions.append(f"cancel {record.run_id} (seen {seen}): refused: {exc}")
        except Exception as exc:  # storage down for a moment
            self.actions.append(f"cancel {record.run_id}: {type(exc).__name__}, again later")
            self._cancel_at = now + 3
            return
        else:
            self.actions.append(f"cancel {record.run_id} (seen {seen}): {after.state.value}")
        self._canceled = True

    def _rollback(self, records: dict[str, RunRecord], now: float) -> None:
        if self._rolled_back:
            return
        if self._rollback_at is None:
            if not any(r.state == RunState.CANARY and r.endpoint_name == SHARED_ENDPOINT for r in records.values()):
                return
            # The window is 30 s and the grace 60 s: this lands in either, or just after (refused).
            self._rollback_at = now + self.rng.uniform(0, 60)
        if now < self._rollback_at:
            return
        from shared.services.rollback import RollbackError, rollback_endpoint

        try:
            canary = rollback_endpoint(self.store(), self.platform(), SHARED_ENDPOINT, by="chaos")
        except (RollbackError, AutopilotError) as exc:
            self.actions.append(f"rollback {SHARED_ENDPOINT}: refused: {exc}")
        except Exception as exc:  # storage down for a moment
            self.actions.append(f"rollback {SHARED_ENDPOINT}: {type(exc).__name__}, again later")
            self._rollback_at = now + 3
            return
        else:
            self.actions.append(f"rollback {SHARED_ENDPOINT}: {canary.run_id} now {canary.state.value}")
        self._rolled_back = True


def owing(records: dict[str, RunRecord]) -> list[str]:
    return sorted(r.run_id for r in records.values() if r.outbox.owing)


@dataclass
class NotificationCount:
    owed: int = 0  # (run, event, destination) the outboxes hold
    delivered_once: int = 0
    given_up: Counter[str] = field(default_factory=Counter)  # reason -> count
    still_owed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # the outbox says delivered, the receiver never accepted it
    disagree: list[str] = field(default_factory=list)  # the receiver accepted what the outbox gave up
    duplicates: list[str] = field(default_factory=list)  # accepted twice, with no lost outcome to explain it
    resent_after_lost: int = 0  # accepted twice after a worker died mid-send: at least once, deduplicated by id
    unowed: list[str] = field(default_factory=list)  # accepted, owed by no outbox
    resent_after_lost_row: int = 0  # accepted twice because chaos deleted the run's row (and outbox) meanwhile
    # Accepted twice because Azurite, SIGKILLed, lost the acknowledged writes that recorded the send (it saves its
    # tables every AZURITE_AUTOSAVE_S): the emulator's durability, not Azure Table storage's.
    resent_after_storage_loss: int = 0
    lost_row: int = 0  # accepted ids of the run whose ledger row chaos deleted (its outbox went with it)
    bad_signatures: int = 0

    @property
    def violations(self) -> int:
        return (
            sum(len(x) for x in (self.still_owed, self.missing, self.disagree, self.duplicates, self.unowed))
            + self.bad_signatures
        )


# Azurite keeps its tables in memory and saves them every 5 s (LokiJS ``autosaveInterval: 5000`` in
# azurite/dist/src/table/persistence/LokiTableMetadataStore.js, azurite 3.x): a SIGKILL loses the acknowledged
# writes of up to that long before it. Azure Table storage returns success only once a write is on every replica
# (learn.microsoft.com, "Azure Storage redundancy"), so on Azure this loss does not happen.
AZURITE_AUTOSAVE_S = 5.0
STORAGE_LOSS_MARGIN_S = 1.0  # the kill's own latency and the save's duration


def in_storage_loss(at: float, azurite_hard_kills: Sequence[float]) -> bool:
    """Whether a moment (time.monotonic) falls where a later Azurite SIGKILL may have lost what was written."""
    return any(kill - AZURITE_AUTOSAVE_S - STORAGE_LOSS_MARGIN_S <= at <= kill for kill in azurite_hard_kills)


def count_notifications(
    records: dict[str, RunRecord], hooks: list[Receiver], lost_run: str, azurite_hard_kills: Sequence[float] = ()
) -> NotificationCount:
    """What each receiver accepted, by webhook-id, against what the runs' outboxes owe it (webhook ``i`` of
    every config is receiver ``i``). ``azurite_hard_kills``: when Azurite was SIGKILLed (time.monotonic)."""
    from shared.ledger.outbox import webhook_index

    out = NotificationCount(bad_signatures=sum(len(h.bad_signatures) for h in hooks))
    owed_ids: dict[str, set[str]] = defaultdict(set)
    for record in records.values():
        for event in record.outbox.events:
            for delivery in event.deliveries:
                index = webhook_index(delivery.to)
                if index is None or index >= len(hooks):
                    continue
                hook = hooks[index]
                key = f"{hook.name}:{event.id}"
                owed_ids[hook.name].add(event.id)
                out.owed += 1
                got = hook.accepted.get(event.id, 0)
                if delivery.state == "owed":
                    out.still_owed.append(key)
                elif delivery.state == "failed":
                    out.given_up[str(delivery.reason)[:120]] += 1
                    if got:
                        out.disagree.append(key)
                elif got == 0:
                    out.missing.append(key)
                elif got == 1:
                    out.delivered_once += 1
                elif any(a.outcome == LOST for a in delivery.attempts):
                    out.delivered_once += 1
                    out.resent_after_lost += got - 1
                elif event.id.startswith(f"{lost_run}:"):
                    # Chaos deleted this run's row, outbox and all, after it had been sent; a re-delivered upload
                    # made the run again, which owes it anew: same webhook-id, which receivers drop.
                    out.delivered_once += 1
                    out.resent_after_lost_row += got - 1
                elif in_storage_loss(hook.first_accepted_at.get(event.id, -1e9), azurite_hard_kills):
                    # The claim and the settle of the first send were both acknowledged, then lost with Azurite's
                    # unsaved tables: the outbox was back to "owed, never tried", and sent it again (same id).
                    out.delivered_once += 1
                    out.resent_after_storage_loss += got - 1
                else:
                    out.duplicates.append(f"{key} x{got}")
    for hook in hooks:
        for webhook_id in hook.accepted:
            if webhook_id.startswith(f"{lost_run}:"):
                out.lost_row += 1
            elif webhook_id not in owed_ids[hook.name]:
                out.unowed.append(f"{hook.name}:{webhook_id}")
    return out
