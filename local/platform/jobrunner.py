"""The job process: ``python -m local.platform.jobrunner <job dir>/spec.json``.

Mirrors what Azure ML does around a pipeline job: status Running, the model made available (materialised
into the cache), the training recipe run with progress written to ``status.json`` (``jobstatus.LiveStatus``;
the line: ``jobprogress.py``; memory care at each step: ``jobmemory.py``), then Completed with
metrics or Failed with a one-line reason, and Event Grid events to the app's webhook (RunStatusChanged for
Running and for the end state, RunCompleted on success) carrying the job's tags. SIGTERM (``autopilot
down``) ends the job as Canceled, whatever error the interrupted code raised on its way out; writes to the
MLflow store finish before the cancel is raised (``stopping.py``), and a job still winding down after
``CANCEL_GRACE_S`` records Canceled and exits, before the stopper would kill it. Every other exception ends
as Failed; nothing escapes as a bare traceback.

A restarted attempt (the platform found the previous process gone, see ``jobscheduler.py``) posts Running only if no
earlier attempt delivered it; the end state is posted once, by the attempt that reaches it. As it ends (not
when canceled: then the machine is being stopped), the process starts the next queued job in its slot.

The webhook URL and key come from the settings in the environment the platform gave the process
(``AUTOPILOT_WEBHOOK_URL``, ``AUTOPILOT_WEBHOOK_KEY``), never from argv or the spec file, and the key is never
logged.
"""

from __future__ import annotations

import dataclasses
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
from local.platform.jobmemory import MemoryCare
from local.platform.jobprogress import one_line, progress_line, restart_suffix
from local.platform.jobs import Jobs
from local.platform.jobspec import JobSpec
from local.platform.jobstatus import LiveStatus, ended
from local.platform.mlflow_runs import experiment_id
from local.platform.startup import Phases
from local.platform.stopping import CANCEL_REQUESTED, JobCanceledError, request_cancel, watch_wind_down
from local.platform.supervisor import Supervisor
from local.platform.workspace import Workspace
from shared.platform.port import JobStatus
from shared.settings import Settings
from shared.subscriptions import function_for

log = logging.getLogger("local.platform.jobrunner")

# How long a stopped job may take to wind down before it records Canceled and exits regardless. Below the
# stopper's own grace (``processes.stop_process``: 10 s for ``autopilot down``), after which it kills the job,
# which would then end Failed.
CANCEL_GRACE_S = 6.0
STOPPED_REASON = "the job was stopped (SIGTERM)"


class JobRunner:
    def __init__(self, spec_path: Path, settings: Settings) -> None:
        self.job_dir = spec_path.parent
        spec = JobSpec.load(spec_path)
        if spec is None:
            raise ValueError(f"{spec_path} is not a job spec")
        self.spec = spec
        self.name = spec.job_name
        self.settings = settings
        self.status = LiveStatus(self.job_dir)
        self.workspace = Workspace(Path(spec.workdir))
        self.experiment_id = "local"
        self.mlflow_run_id: str | None = None
        self.restarts = self.status.record.restarts
        self._memory = MemoryCare()
        self.startup = Phases()  # from the process's start to the first evaluation, logged once
        self._ending = threading.Event()  # the end state is being reported (by the main thread or the watchdog)

    # -- events

    def _event(self, status: str, completed: bool = False) -> Any:
        return eventpost.run_event(
            eventpost.RUN_COMPLETED if completed else eventpost.RUN_STATUS_CHANGED,
            job_name=self.name,
            experiment_id=self.experiment_id,
            experiment_name=self.spec.experiment_name,
            tags=self.spec.tags,
            properties={"mlflowRunId": self.mlflow_run_id} if self.mlflow_run_id else {},
            status=None if completed else status,
            topic=self.spec.topic,
        )

    def _post(self, events: list[Any], **kwargs: Any) -> bool:
        function = function_for(events[0].event_type)  # every event a job posts goes to the same function
        return eventpost.post_events(self.settings.webhook_url, function, self.settings.webhook_key, events, **kwargs)

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
                    "job %s: %s not delivered; the reconcile timer will find the job", self.name, event.event_type
                )

    # -- steps

    def _experiment(self) -> None:
        """The MLflow experiment's id for the events."""
        training = self.spec.training
        self.experiment_id = experiment_id(training.mlflow_tracking_uri, training.experiment_name, self.workspace.locks)

    def _on_progress(self, update: dict[str, Any]) -> None:
        update = dict(update)
        recipe_startup = update.pop("startup_seconds", None)  # a log line's numbers, not a status field
        if isinstance(recipe_startup, dict):  # the recipe's phases: the start-up is over
            for name, seconds in recipe_startup.items():
                self.startup.add(str(name), float(seconds))
            log.info("job %s: start-up: %s", self.name, self.startup.line())
        line = progress_line(update)
        fields: dict[str, Any] = {"progress_detail": update}
        if isinstance(update.get("step"), int):
            fields["memory"] = self._memory.at_step(self.status.record.memory, update["step"])
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
        restarts = list(self.status.record.restart_log)
        if restarts:
            restarts[-1] = restarts[-1].model_copy(update={"resumed_from_step": step})
            fields["restart_log"] = restarts
        return fields

    def _restart_suffix(self, *, said: bool = False) -> str:
        return restart_suffix(self.restarts, self.status.record.resumed_from_step, said=said)

    def _train(self) -> Any:
        with self.startup.phase("training imports"):  # torch, transformers, peft
            import local.platform.training.recipe  # noqa: F401  (what run_training imports when called)
            from local.platform.models import materialize
            from local.platform.training import TrainingSpec, run_training

        self._on_progress({"phase": "preparing the foundation model"})
        # Materialising (about 30 s for SmolLM2, once per machine) happens here, never in the submit call.
        training = self.spec.training
        with self.startup.phase("model cache"):
            model_dir = materialize(training.model_name, Path(self.spec.models_cache))
        # A restarted job has "resume": true: the recipe continues from its latest complete checkpoint.
        return run_training(TrainingSpec(model_dir=model_dir, **training.model_dump()), self._on_progress)

    def _completed(self, result: Any, started: float) -> None:
        self.mlflow_run_id = getattr(result, "mlflow_run_id", None)
        metrics = {k: float(v) for k, v in dict(result.metrics).items() if isinstance(v, int | float)}
        before, after = metrics.get("eval_loss_before"), metrics.get("eval_loss_after")
        summary = "completed"
        if before is not None and after is not None:
            summary += f": eval loss {before:.3f} -> {after:.3f}"
        summary += self._restart_suffix()
        self.status.update(
            status=JobStatus.COMPLETED,
            metrics=metrics,
            notes=list(getattr(result, "notes", []) or []),
            model_path=str(result.model_path),
            mlflow_run_id=self.mlflow_run_id,
            finished_at=datetime.now(UTC),
            duration_s=round(time.monotonic() - started, 1),
            progress=summary,
            error=None,
        )
        log.info("job %s: %s", self.name, summary)

    def run(self) -> int:
        started = time.monotonic()
        self.startup.add("python and imports", _seconds_since_process_start())
        self.status.update(
            status=JobStatus.RUNNING,
            pid=os.getpid(),
            started_at=datetime.now(UTC),
            progress=f"starting again (restart {self.restarts})" if self.restarts else "starting",
            resumed_from_step=None,  # an earlier attempt's; this one reports its own as training starts
        )
        log.info("job %s: running (pid %s, attempt %s)", self.name, os.getpid(), self.status.record.attempt or 1)
        running_post: threading.Thread | None = None
        final = JobStatus.FAILED
        try:
            with self.startup.phase("mlflow experiment"):
                self._experiment()
            if not self.status.record.running_posted:
                # Training must not wait for the webhook: the Running event goes out from a thread.
                running_post = threading.Thread(target=self._post_running, daemon=True)
                running_post.start()
            self._completed(self._train(), started)
            final = JobStatus.COMPLETED
        except BaseException as exc:
            if isinstance(exc, JobCanceledError) or CANCEL_REQUESTED.is_set():
                final = JobStatus.CANCELED
                self.status.update(**ended(final, STOPPED_REASON))
                log.warning("job %s: %s", self.name, STOPPED_REASON)
            else:
                reason = one_line(exc)
                self.status.update(**ended(JobStatus.FAILED, reason))
                log.error("job %s: failed: %s", self.name, reason, exc_info=not isinstance(exc, KeyboardInterrupt))
        if running_post is not None:
            running_post.join(timeout=5)
        self._end(final)
        return 0 if final == JobStatus.COMPLETED else 1

    def _end(self, final: JobStatus) -> None:
        self._post_final(final)
        Supervisor(self.workspace, "job").forget_self(self.name)
        if final != JobStatus.CANCELED:
            self._start_next()

    def _start_next(self) -> None:
        """This job's slot is free: start the next queued job (or restart a lost one) now, not at the next
        reconcile. The settings are the ones the platform gave this process."""
        try:
            settings = dataclasses.replace(self.settings, workdir=self.workspace.workdir)
            started = Jobs(self.workspace, settings).schedule()
        except Exception as exc:  # the platform's next look at a queued job starts it instead
            log.warning("job %s: could not start the next queued job: %s", self.name, one_line(exc))
            return
        if started:
            log.info("job %s: started the next queued job: %s", self.name, ", ".join(started))

    def on_sigterm(self, signum: int, frame: Any) -> None:
        if not CANCEL_REQUESTED.is_set():
            watch_wind_down(CANCEL_GRACE_S, ending=self._ending, on_stuck=self._cancel_stuck)
        request_cancel()

    def _cancel_stuck(self) -> None:
        log.warning("job %s: still winding down %.0fs after SIGTERM; exiting now", self.name, CANCEL_GRACE_S)
        self.status.update(**ended(JobStatus.CANCELED, STOPPED_REASON))
        self._post_final(JobStatus.CANCELED)
        Supervisor(self.workspace, "job").forget_self(self.name)


def _seconds_since_process_start() -> float:
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # a number for a log line; never a reason to fail the job
        return 0.0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request's full URL at INFO; a webhook URL may carry a `code=` key.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if len(args) != 1:
        log.error("usage: python -m local.platform.jobrunner SPEC.json")
        return 2
    try:
        runner = JobRunner(Path(args[0]).resolve(), Settings.from_env())
    except ValueError as exc:
        log.error("cannot start the job: %s", one_line(exc))
        return 2
    signal.signal(signal.SIGTERM, runner.on_sigterm)
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
