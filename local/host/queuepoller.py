"""Queue triggers by polling, as the Functions host runs them ("Azure Queue storage trigger",
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger):

- a message is handed to the function only once visible (a message sent with a visibility delay waits);
  while the function runs it stays invisible (``PROCESSING_VISIBILITY``), so no other poller takes it;
- success deletes it; a failure makes it visible again after ``retry_visibility`` (host.json
  ``visibilityTimeout``, 10 s for this app), and a message that failed ``max_dequeue_count`` times (host.json
  ``maxDequeueCount``, 5) is moved to ``<queue>-poison`` and deleted from its queue;
- the body reaches the function decoded from base64 (the host's default ``messageEncoding``).

The messages one pass receives run one after another: a follow-up is a few platform calls, and the local
platform answers them quickly.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as TriggerMessage
from azure.storage.queue import LinearRetry, TextBase64EncodePolicy

from local.common.exceptions import HostConfigError
from local.host.discovery import FunctionSpec, Invocation, invoke
from shared.storage import StorageConnection, as_connection

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient, QueueMessage

log = logging.getLogger(__name__)

# As host.json's extensions.queues says for Azure (a unit test keeps them equal).
MAX_DEQUEUE_COUNT = 5
RETRY_VISIBILITY_S = 10
POLL_SECONDS = 2.0  # maxPollingInterval: the longest an idle queue goes unpolled
# How long a received message stays invisible while its function runs (the host renews its lease instead).
PROCESSING_VISIBILITY_S = 300
BATCH = 16
POISON_SUFFIX = "-poison"


@dataclass(frozen=True)
class QueueTrigger:
    spec: FunctionSpec
    queue: QueueClient
    poison: QueueClient


def queue_name(function: str, binding: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The trigger's queue; ``%Setting%`` is replaced by that app setting, as the runtime does."""
    name = str(binding.get("queueName") or "")
    match = re.fullmatch(r"%([^%]+)%", name.strip())
    if match:
        name = env.get(match.group(1), "")
    if not name:
        raise HostConfigError(f"function {function}: the queue trigger names no queue")
    return name


def _body(message: QueueMessage) -> bytes:
    text = str(message.content or "")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text.encode("utf-8")  # a message sent without base64: handed over as it is


class QueuePoller:
    """Polls each queue-trigger function's queue and invokes it, one message at a time."""

    def __init__(
        self,
        functions: Mapping[str, FunctionSpec],
        resolve_connection: Callable[[str], StorageConnection | str],
        env: Mapping[str, str],
        *,
        max_dequeue_count: int = MAX_DEQUEUE_COUNT,
        retry_visibility_s: int = RETRY_VISIBILITY_S,
    ) -> None:
        self.max_dequeue_count = max_dequeue_count
        self.retry_visibility_s = retry_visibility_s
        self.triggers: list[QueueTrigger] = []
        # Fail fast: a poll that fails is tried again by the next one, and stopping is never held up.
        retry = LinearRetry(backoff=1, retry_total=2, random_jitter_range=0)
        for name, spec in functions.items():
            connection = as_connection(resolve_connection(str(spec.binding.get("connection") or "AzureWebJobsStorage")))
            queue = queue_name(name, spec.binding, env)
            self.triggers.append(
                QueueTrigger(
                    spec,
                    connection.queue_client(queue, retry_policy=retry),
                    connection.queue_client(
                        queue + POISON_SUFFIX, message_encode_policy=TextBase64EncodePolicy(), retry_policy=retry
                    ),
                )
            )
        self._created: set[str] = set()

    def _ensure(self, queue: QueueClient) -> None:
        if queue.queue_name in self._created:
            return
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        self._created.add(queue.queue_name)

    def poll_once(self) -> list[Invocation]:
        """Every message visible now, on every queue, handled in this thread."""
        outcomes: list[Invocation] = []
        for trigger in self.triggers:
            try:
                self._ensure(trigger.queue)
                messages = list(
                    trigger.queue.receive_messages(max_messages=BATCH, visibility_timeout=PROCESSING_VISIBILITY_S)
                )
            except AzureError as exc:
                log.warning("queue %s: not polled: %s", trigger.queue.queue_name, exc)
                continue
            outcomes += [self._fire(trigger, message) for message in messages]
        return outcomes

    def _fire(self, trigger: QueueTrigger, message: QueueMessage) -> Invocation:
        request = TriggerMessage(  # the worker's own class: it carries the dequeue count
            id=message.id,
            body=_body(message),
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        outcome = invoke(trigger.spec, request, f"{trigger.queue.queue_name}/{message.id}")
        try:
            if outcome.succeeded:
                trigger.queue.delete_message(message)
            elif (message.dequeue_count or 0) >= self.max_dequeue_count:
                # Poison first, then the delete: a crash in between repeats the message rather than losing it.
                self._ensure(trigger.poison)
                trigger.poison.send_message(_body(message).decode("utf-8", "replace"))
                trigger.queue.delete_message(message)
                log.warning(
                    "function %s: message %s failed %s times; moved to %s",
                    trigger.spec.name,
                    message.id,
                    message.dequeue_count,
                    trigger.poison.queue_name,
                )
            else:
                trigger.queue.update_message(message, visibility_timeout=self.retry_visibility_s)
        except ResourceNotFoundError:
            log.info("queue %s: message %s was taken back meanwhile", trigger.queue.queue_name, message.id)
        except AzureError as exc:  # it becomes visible again when its processing visibility ends
            log.warning("queue %s: message %s not settled: %s", trigger.queue.queue_name, message.id, exc)
        return outcome

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Poll until ``stop`` is set: at once again after a pass that found messages, else after ``interval_s``."""
        while not stop.is_set():
            try:
                busy = bool(self.poll_once())
            except Exception:  # a bug in one pass must not end the poller
                log.exception("queue poller: pass failed")
                busy = False
            if not busy and stop.wait(interval_s):
                return
