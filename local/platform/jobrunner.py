"""The job process: ``python -m local.platform.jobrunner <job dir>/spec.json``.

Mirrors what Azure ML does around a pipeline job: status Running, the model made available (materialised
into the cache), the training recipe run with progress written to ``status.json``, then Completed with
metrics or Failed with a one-line reason, and Event Grid events to the app's webhook (RunStatusChanged for
Running and for the end state, RunCompleted on success) carrying the job's tags. SIGTERM (``autopilot
down``) ends the job as Canceled, whatever error the interrupted code raised on its way out; writes to the
MLflow store finish before the cancel is raised (``stopping.py``), and a job still winding down after
``CANCEL_GRACE_S`` records Canceled and exits, before the stopper would kill it. Every other exception ends
as Failed; nothing escapes as a bare traceback.

A restarted attempt (the platform found the previous process gone, see ``jobs.py``) posts Running only if no
earlier attempt delivered it; the end state is posted once, by the attempt that reaches it. As it ends (not
when canceled: then the machine is being stopped), the process starts the next queued job in its slot.

The webhook URL and key come from the environment (``AUTOPILOT_WEBHOOK_URL``, ``AUTOPILOT_WEBHOOK_KEY``),
never from argv or the spec file, and the key is never logged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.platform import eventpost
from local.platform.jobs import STATUS_FILE, Jobs
from local.platform.mlflow_retry import first_use, retry_locked
from local.platform.stopping import CANCEL_REQUESTED, JobCanceledError, deferred_cancel, request_cancel
from local.platform.workspace import Workspace, read_json, write_json_atomic
from shared.platform.port import JobStatus
from shared.settings import Settings
from shared.subscriptions import function_for

log = logging.getLogger("local.platform.jobrunner")


# How long a stopped job may take to wind down before it records Canceled and exits regardless. Below the
# stopper's own grace (``processes.stop_process``: 10 s for ``autopilot down``), after which it kills the job,
# which would then end Failed.
CANCEL_GRACE_S = 6.0


def _now() -> str:
    return datetime.now(UTC).isoformat()


def one_line(exc: BaseException, limit: int = 500) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    line = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return line[:limit]


# Memory is compared from this step on: the first steps allocate the optimizer state and meet the longest
# batches (the working set grows until the longest length has been seen).
MEMORY_WARMUP_STEPS = 50
# At most one malloc trim (see release_freed_memory) per this many seconds, however often the job logs.
TRIM_INTERVAL_S = 1.0


def rss_mb() -> float | None:
    """This process's resident memory now (Linux /proc), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (another C library, or none found)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand the memory glibc holds in its heaps back to the system.

    Every step allocates and frees tensors whose sizes follow the batch's length; glibc keeps what was freed
    in its heaps, fragmented, and RSS climbs although nothing stays referenced. Measured on the tiny model in
    bf16 over the 320 sample conversations (max length -1): RSS 1600 -> 2207 MiB from step 100 to 400
    without, 1351 -> 1370 MiB with a trim at every logging step (10 steps).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def memory_record(previous: dict[str, Any] | None, step: int) -> dict[str, Any] | None:
    """``status.json``'s ``memory``: RSS now and once warmed up, so growth over steps shows (and is tested)."""
    now = rss_mb()
    if now is None:
        return previous
    record = dict(previous or {})
    record.update(rss_mb=now, step=step, peak_rss_mb=max(now, float(record.get("peak_rss_mb") or 0.0)))
    if step >= MEMORY_WARMUP_STEPS and "warm_rss_mb" not in record:
        record.update(warm_rss_mb=now, warm_step=step)
    return record


def progress_line(update: dict[str, Any]) -> str | None:
    """``step 12/60 loss 1.83 1020 tok/s`` from a recipe progress dict; phases become a short line."""
    if "phase" in update:
        line = str(update["phase"]).replace("_", " ")
        if update.get("split"):
            line += f" on {update['split']}"
        if isinstance(update.get("examples"), int):
            line += f" ({update['examples']} examples)"
        if isinstance(update.get("resumed_from_step"), int):
            line += f" (resuming from the checkpoint of step {update['resumed_from_step']})"
        return line
    if "step" not in update:
        return None
    parts = [f"step {update['step']}/{update.get('total_steps', '?')}"]
    if isinstance(update.get("loss"), int | float):
        parts.append(f"loss {update['loss']:.2f}")
    if isinstance(update.get("tokens_per_second"), int | float):
        parts.append(f"{update['tokens_per_second']:.0f} tok/s")
    return " ".join(parts)


class StatusFile:
    """``status.json``, rewritten atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = read_json(path) or {}
        self._lock = threading.Lock()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            self.data["updated_at"] = _now()
            write_json_atomic(self.path, self.data)


class JobRunner:
    def __init__(self, spec_path: Path, *, webhook_url: str, webhook_key: str) -> None:
        self.spec_path = spec_path
        self.job_dir = spec_path.parent
        spec = read_json(spec_path)
        if spec is None:
            raise ValueError(f"{spec_path} is not a job spec")
        self.spec = spec
        self.name = str(spec["job_name"])
        self.tags = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
        self.status = StatusFile(self.job_dir / STATUS_FILE)
        self.webhook_url = webhook_url
        self.webhook_key = webhook_key
        self.experiment_id = "local"
        self.mlflow_run_id: str | None = None
        self.restarts = int(self.status.data.get("restarts") or 0)
        self._last_trim = 0.0
        self._ending = threading.Event()  # the end state is being reported (by the main thread or the watchdog)

    # -- events

    def _event(self, status: str, completed: bool = False) -> Any:
        return eventpost.run_event(
            eventpost.RUN_COMPLETED if completed else eventpost.RUN_STATUS_CHANGED,
            job_name=self.name,
            experiment_id=self.experiment_id,
            experiment_name=str(self.spec.get("experiment_name", "")),
            tags=self.tags,
            properties={"mlflowRunId": self.mlflow_run_id} if self.mlflow_run_id else {},
            status=None if completed else status,
            topic=str(self.spec.get("topic") or eventpost.LOCAL_TOPIC),
        )

    def _post(self, events: list[Any], **kwargs: Any) -> bool:
        function = function_for(events[0].event_type)  # every event a job posts goes to the same function
        return eventpost.post_events(self.webhook_url, function, self.webhook_key, events, **kwargs)

    # -- steps

    def _experiment(self) -> None:
        """The MLflow experiment's id for the events; created as the recipe would (artifacts in the workspace)."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from local.platform.training.tracking import artifact_root_for

        training = self.spec["training"]
        name, uri = str(training["experiment_name"]), str(training["mlflow_tracking_uri"])

        def open_store() -> tuple[Any, Any]:
            # Constructing the client already opens the store (creating or migrating its schema): inside the lock.
            client = MlflowClient(tracking_uri=uri)
            return client, client.get_experiment_by_name(name)

        workdir = self.spec.get("workdir")
        with deferred_cancel():  # a write cut in half would hold the store's lock (see stopping.py)
            client, experiment = (
                first_use(Workspace(Path(str(workdir))).locks, open_store) if workdir else retry_locked(open_store)
            )
            if experiment is None:
                try:
                    self.experiment_id = str(
                        retry_locked(lambda: client.create_experiment(name, artifact_location=artifact_root_for(uri)))
                    )
                    return
                except MlflowException:  # another job created it meanwhile
                    experiment = retry_locked(lambda: client.get_experiment_by_name(name))
            if experiment is not None:
                self.experiment_id = str(experiment.experiment_id)

    def _on_progress(self, update: dict[str, Any]) -> None:
        line = progress_line(update)
        fields: dict[str, Any] = {"progress_detail": update}
        if isinstance(update.get("step"), int):
            now = time.monotonic()
            if now - self._last_trim >= TRIM_INTERVAL_S:  # a trim costs milliseconds: not at every step
                release_freed_memory()
                self._last_trim = now
            fields["memory"] = memory_record(self.status.data.get("memory"), update["step"])
        if update.get("mlflow_run_id"):
            # Kept so that whoever finds this job killed can end its MLflow run as FAILED too.
            fields["mlflow_run_id"] = str(update["mlflow_run_id"])
        if isinstance(update.get("resumed_from_step"), int):
            self.status.update(**self._resumed(update["resumed_from_step"]))  # before the line reads it
        if line:
            line += self._restart_suffix(said="resumed_from_step" in update)
            fields["progress"] = line
            log.info("job %s: %s", self.name, line)
        self.status.update(**fields)

    def _resumed(self, step: int) -> dict[str, Any]:
        """Status fields for an attempt that continues from checkpoint ``step``: the step, also on the latest
        restart's entry, so the restart log says where each restart picked up."""
        fields: dict[str, Any] = {"resumed_from_step": step}
        restarts = [dict(entry) for entry in self.status.data.get("restart_log") or [] if isinstance(entry, dict)]
        if restarts:
            restarts[-1]["resumed_from_step"] = step
            fields["restart_log"] = restarts
        return fields

    def _restart_suffix(self, *, said: bool = False) -> str:
        """`` (restarted 1x, resumed from step 4)`` on a restarted job's progress lines (the step once this
        attempt has loaded its checkpoint, unless the line itself ``said`` it); nothing otherwise."""
        if not self.restarts:
            return ""
        resumed = self.status.data.get("resumed_from_step")
        where = f", resumed from step {resumed}" if isinstance(resumed, int) and not said else ""
        return f" (restarted {self.restarts}x{where})"

    def _train(self) -> Any:
        from local.platform.models import materialize
        from local.platform.training import TrainingSpec, run_training

        # A restarted job has "resume": true: the recipe continues from its latest complete checkpoint.
        training = dict(self.spec["training"])
        self._on_progress({"phase": "preparing the foundation model"})
        # Materialising (about 30 s for SmolLM2, once per machine) happens here, never in the submit call.
        model_dir = materialize(str(training["model_name"]), Path(self.spec["models_cache"]))
        spec = TrainingSpec.from_json(json.dumps({**training, "model_dir": str(model_dir)}))
        return run_training(spec, self._on_progress)

    def run(self) -> int:
        started = time.monotonic()
        starting = f"starting again (restart {self.restarts})" if self.restarts else "starting"
        self.status.update(
            status=JobStatus.RUNNING.value,
            pid=os.getpid(),
            started_at=_now(),
            progress=starting,
            resumed_from_step=None,  # an earlier attempt's; this one reports its own as training starts
        )
        log.info("job %s: running (pid %s, attempt %s)", self.name, os.getpid(), self.status.data.get("attempt", 1))
        running_post: threading.Thread | None = None
        final = JobStatus.FAILED
        try:
            self._experiment()
            if not self.status.data.get("running_posted"):
                # Training must not wait for the webhook: the Running event goes out from a thread.
                running_post = threading.Thread(target=self._post_running, daemon=True)
                running_post.start()
            result = self._train()
            self.mlflow_run_id = getattr(result, "mlflow_run_id", None)
            metrics = {k: v for k, v in dict(result.metrics).items() if isinstance(v, int | float)}
            before, after = metrics.get("eval_loss_before"), metrics.get("eval_loss_after")
            summary = "completed"
            if isinstance(before, int | float) and isinstance(after, int | float):
                summary += f": eval loss {before:.3f} -> {after:.3f}"
            summary += self._restart_suffix()
            self.status.update(
                status=JobStatus.COMPLETED.value,
                metrics=metrics,
                notes=list(getattr(result, "notes", []) or []),
                model_path=str(result.model_path),
                mlflow_run_id=self.mlflow_run_id,
                finished_at=_now(),
                duration_s=round(time.monotonic() - started, 1),
                progress=summary,
                error=None,
            )
            final = JobStatus.COMPLETED
            log.info("job %s: %s", self.name, summary)
        except BaseException as exc:
            if isinstance(exc, JobCanceledError) or CANCEL_REQUESTED.is_set():
                final = JobStatus.CANCELED
                reason = "the job was stopped (SIGTERM)"
                self.status.update(status=final.value, error=reason, finished_at=_now(), progress=f"canceled: {reason}")
                log.warning("job %s: %s", self.name, reason)
            else:
                self._failed(exc)
        if running_post is not None:
            running_post.join(timeout=5)
        self._post_final(final)
        self._forget_pid()
        if final != JobStatus.CANCELED:
            self._start_next()
        return 0 if final == JobStatus.COMPLETED else 1

    def _failed(self, exc: BaseException) -> None:
        reason = one_line(exc)
        self.status.update(
            status=JobStatus.FAILED.value, error=reason, finished_at=_now(), progress=f"failed: {reason}"
        )
        log.error("job %s: failed: %s", self.name, reason, exc_info=not isinstance(exc, KeyboardInterrupt))

    def _start_next(self) -> None:
        """This job's slot is free: start the next queued job (or restart a lost one) now, not at the next
        reconcile. The settings come from the environment the platform gave this process."""
        workdir = self.spec.get("workdir")
        if not workdir:
            return
        try:
            settings = Settings.from_env({**os.environ, "AUTOPILOT_WORKDIR": str(workdir)})
            jobs = Jobs(Workspace(settings.workdir), settings, webhook_key=lambda: self.webhook_key)
            started = jobs.schedule()
        except Exception as exc:  # the platform's next look at a queued job starts it instead
            log.warning("job %s: could not start the next queued job: %s", self.name, one_line(exc))
            return
        if started:
            log.info("job %s: started the next queued job: %s", self.name, ", ".join(started))

    def _post_running(self) -> None:
        # Recorded, so that a restarted attempt does not tell the app twice.
        if self._post([self._event(JobStatus.RUNNING.value)]):
            self.status.update(running_posted=True)

    def _post_final(self, final: JobStatus) -> None:
        self._ending.set()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        events = [self._event(final.value)]
        if final == JobStatus.COMPLETED:
            events.append(self._event(final.value, completed=True))
        # A canceled job is being stopped with its host: one quick try, then exit.
        kwargs: dict[str, Any] = {"tries": 1, "timeout_s": 3.0} if final == JobStatus.CANCELED else {}
        for event in events:  # one event per delivery, as Event Grid does by default
            if not self._post([event], **kwargs):
                log.warning(
                    "job %s: %s not delivered; the reconcile timer will find the job",
                    self.name,
                    event.event_type,
                )

    def cancel_when_stuck(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Called on SIGTERM: if the process has not wound down within ``grace_s`` (a write blocked on the
        MLflow store's lock, a long native call), record Canceled, tell the app once, and exit."""

        def watchdog() -> None:
            time.sleep(grace_s)
            if self._ending.is_set():  # the main thread is already reporting the end: give it a moment
                time.sleep(grace_s / 2)
                os._exit(1)
            log.warning("job %s: still winding down %.0fs after SIGTERM; exiting now", self.name, grace_s)
            reason = "the job was stopped (SIGTERM)"
            self.status.update(
                status=JobStatus.CANCELED.value, error=reason, finished_at=_now(), progress=f"canceled: {reason}"
            )
            self._post_final(JobStatus.CANCELED)
            self._forget_pid()
            logging.shutdown()
            os._exit(1)

        threading.Thread(target=watchdog, name="cancel-watchdog", daemon=True).start()

    def _forget_pid(self) -> None:
        from local.common import processes

        path = Path(str(self.spec.get("pid_file", "")))
        record = processes.read_pid_file(path) if path.name else None
        if record is not None and record.pid == os.getpid():
            path.unlink(missing_ok=True)


def _on_sigterm(runner: JobRunner, signum: int, frame: Any) -> None:
    if not CANCEL_REQUESTED.is_set():
        runner.cancel_when_stuck()
    request_cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request's full URL at INFO; a webhook URL may carry a `code=` key.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if len(args) != 1:
        log.error("usage: python -m local.platform.jobrunner SPEC.json")
        return 2
    try:
        runner = JobRunner(
            Path(args[0]).resolve(),
            webhook_url=os.environ.get("AUTOPILOT_WEBHOOK_URL", ""),
            webhook_key=os.environ.get("AUTOPILOT_WEBHOOK_KEY", ""),
        )
    except (ValueError, KeyError) as exc:
        log.error("cannot read the job spec: %s", one_line(exc))
        return 2
    signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, runner))
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
