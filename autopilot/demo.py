"""``autopilot demo``: the whole life cycle on this machine, start to the idle endpoint's deletion."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autopilot.settings import LOCAL_TWIN
from shared.exceptions import AutopilotError
from shared.scoring import ScoringParameters, answer_text, scoring_payload

if TYPE_CHECKING:
    from shared.ledger.record import RunRecord

#
# Where the demo keeps things: AUTOPILOT_WORKDIR (default .autopilot/) for storage, the host, the platform
# workspace and the model cache; the sample data goes to AUTOPILOT_DATA_ROOT, which the demo sets to
# <workdir>/data unless it is set already. The host it starts runs reconcile every 10 s and cleanup every
# 30 s, so the one-minute idle endpoint disappears within the demo.

DEMO_CONFIG = "demo-smollm2.yaml"
DEMO_SCHEDULES = {"AUTOPILOT_RECONCILE_SCHEDULE": "*/10 * * * * *", "AUTOPILOT_CLEANUP_SCHEDULE": "*/30 * * * * *"}
DEMO_QUESTION_ROW = 1  # a test_gen row other than the smoke test's
DEMO_PARAMETERS = ScoringParameters(temperature=0.0, top_p=1.0, do_sample=False, max_new_tokens=80)


def _project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _demo_environment() -> tuple[Any, Path]:
    """Settings for the demo (data root, fast timers), put in the environment the host will inherit."""
    import os

    from autopilot.settings import local_twin
    from local.platform.workspace import torch_thread_env
    from shared import runtime

    workdir = local_twin().workdir
    data_root = Path(os.environ.get("AUTOPILOT_DATA_ROOT") or workdir / "data").resolve()
    os.environ["AUTOPILOT_DATA_ROOT"] = str(data_root)
    os.environ.update(DEMO_SCHEDULES)
    # Inherited by the host and, through it, by the job and endpoint; also this process's comparison.
    os.environ.update(torch_thread_env(dict(os.environ)))
    return runtime.install(runtime.bootstrap(local_twin())).settings, data_root


def _conversation(path: Path, index: int) -> list[dict[str, str]]:
    rows = path.read_text(encoding="utf-8").splitlines()
    messages = [{"role": m["role"], "content": m["content"]} for m in json.loads(rows[index])["messages"]]
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    return messages


def _base_model_answer(settings: Any, conversation: list[dict[str, str]]) -> str | None:
    """What the foundation model says to the same conversation, for comparison (same greedy decoding)."""
    try:
        from transformers.utils import logging as hf_logging

        from local.platform.models import SMOLLM2, materialize
        from local.platform.serving.chat_model import ChatModel

        hf_logging.disable_progress_bar()  # the demo's own lines are the progress here

        model = ChatModel.from_hf_dir(materialize(SMOLLM2, settings.workdir / "models"))
        return model.generate([conversation], **DEMO_PARAMETERS.model_dump())[0]
    except Exception as exc:  # a comparison only: the demo goes on without it
        return f"(not available: {type(exc).__name__})"


def pictures(settings: Any, record: Any) -> list[str]:
    """Where to see the run's training: its loss-curve PNG, the terminal chart, and the MLflow UI on the store."""
    from autopilot.plot import mlflow_ui_command
    from local.platform.workspace import Workspace

    lines = []
    if record is not None and record.loss_curve:
        lines.append(f"         loss curve: {record.loss_curve}")
        lines.append(f"         in the terminal: autopilot status {record.run_id} --plot")
    store = Workspace(settings.workdir).tracking_uri
    lines.append(f"         runs, metrics and artifacts: {mlflow_ui_command(store)}  (then http://127.0.0.1:5000)")
    return lines


@dataclasses.dataclass
class _Demo:
    """One demo as its steps share it: the settings, the clock, and the run once the config is dropped."""

    settings: Any
    data_root: Path
    keep_up: bool
    started: float
    deadline: float
    run: str | None = None  # the pictures of its training close the demo

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.0f}s] {message}", flush=True)

    def time_left_s(self) -> float:
        """What a follow may wait: the time left, but never under a minute."""
        return max(60.0, self.deadline - time.monotonic())

    def finish(self, code: int) -> int:
        """The demo's last lines (where to see the training), the stack down unless --keep-up; ``code``."""
        from autopilot import stack
        from shared import runtime

        if self.run is not None:
            for line in pictures(self.settings, runtime.run_store().get(self.run)):
                print(line)
        self.say(
            f"demo {'finished' if code == 0 else 'failed'}; total wall time {time.monotonic() - self.started:.0f} s"
        )
        if not self.keep_up:
            stack.cmd_down(argparse.Namespace())
        else:
            print("Still running (--keep-up): `autopilot status`, `autopilot endpoints`, `autopilot down`.")
        return code


def run_demo(*, keep_up: bool, timeout_minutes: float) -> int:
    started = time.monotonic()
    deadline = started + timeout_minutes * 60
    settings, data_root = _demo_environment()
    demo = _Demo(settings, data_root, keep_up, started, deadline)
    print(f"Fine-tune Autopilot demo. Working directory: {settings.workdir}; data root: {data_root}")
    if not _start_the_stack(demo):
        return 1
    if not _prepare_the_data(demo):
        return demo.finish(1)
    run = _drop_the_config(demo)
    if run is None:
        return demo.finish(1)
    record = _follow_to_deployed(demo, run)
    if record is None or not _ask_the_endpoint(demo, record):
        return demo.finish(1)
    return demo.finish(_leave_it_idle(demo, run))


def _start_the_stack(demo: _Demo) -> bool:
    """1. Storage and the local host (restarted if it runs, so it picks up the demo's timers and data root)."""
    from autopilot import stack
    from local.common.processes import running_from_pid_file, stop_pid_file

    host_pid = demo.settings.workdir / stack.HOST_PID
    if running_from_pid_file(host_pid) is not None:
        demo.say("restarting the local host with the demo's settings (reconcile 10 s, cleanup 30 s)")
        stop_pid_file(host_pid, timeout_s=15.0)
    return stack.cmd_up(argparse.Namespace(timeout=120.0)) == 0


def _prepare_the_data(demo: _Demo) -> bool:
    """2. The sample data, validated, where the config's relative paths point."""
    from local.platform.dataset import DatasetError, prepare_dataset

    demo.say("preparing the sample dataset (samples/ultrachat_sample)")
    try:
        report = prepare_dataset(
            str(_project_root() / "samples" / "ultrachat_sample"), demo.data_root / "ultrachat_sample", 100
        )
    except DatasetError as exc:
        print(f"prepare-dataset: {exc}", file=sys.stderr)
        return False
    for line in report.summary_lines():
        print(f"         {line}")
    return True


def _drop_the_config(demo: _Demo) -> str | None:
    """3. Drop the config. A timestamp comment makes every demo a new run (same bytes would be the same run)."""
    from shared.naming import run_id
    from shared.storage import upload_config

    settings = demo.settings
    config = (_project_root() / "samples" / DEMO_CONFIG).read_bytes()
    content = f"# autopilot demo {datetime.now(UTC).isoformat(timespec='seconds')}\n".encode() + config
    try:
        upload_config(settings.storage(), settings.config_container, DEMO_CONFIG, content)
    except Exception as exc:
        print(f"cannot upload the config ({type(exc).__name__})", file=sys.stderr)
        return None
    demo.run = run_id(settings.config_container, DEMO_CONFIG, content)
    demo.say(f"dropped {settings.config_container}/{DEMO_CONFIG}: run {demo.run}")
    return demo.run


def _follow_to_deployed(demo: _Demo, run: str) -> RunRecord | None:
    """4. Follow it: submitted -> running (steps) -> completed -> registered -> deploying -> deployed.

    The deployed run's record, or None (said why) when the host never picked it up or it ended otherwise."""
    from autopilot.runs import FOLLOW_DONE, follow
    from shared import runtime

    store = runtime.run_store()
    while store.get(run) is None:
        if time.monotonic() > demo.deadline or time.monotonic() - demo.started > 300:
            print("the host did not pick up the config; see .autopilot/host.log", file=sys.stderr)
            return None
        time.sleep(1)
    if follow(run, until=FOLLOW_DONE, timeout_s=demo.time_left_s()) != 0:
        record = store.get(run)
        print(f"the run ended {record.state.value if record else '?'}; see `autopilot status {run}`", file=sys.stderr)
        return None
    record = store.get(run)
    assert record is not None and record.endpoint_name
    return record


def _ask_the_endpoint(demo: _Demo, record: RunRecord) -> bool:
    """5. What fine-tuning did, and what the endpoint answers (beside the base model's answer)."""
    from shared import runtime

    m = record.metrics
    if "eval_loss_before" in m and "eval_loss_after" in m:
        demo.say(
            f"eval loss on test_sft: {m['eval_loss_before']:.3f} -> {m['eval_loss_after']:.3f}"
            f" (perplexity {m.get('perplexity_before', 0):.1f} -> {m.get('perplexity_after', 0):.1f});"
            f" training {m.get('tokens_per_second', 0):.0f} tokens/s"
        )
    if record.smoke_test and record.smoke_test.answer:
        print(f"         smoke test answer: {record.smoke_test.answer}")
    conversation = _conversation(demo.data_root / "ultrachat_sample" / "test_gen.jsonl", DEMO_QUESTION_ROW)
    payload = scoring_payload([conversation], DEMO_PARAMETERS)
    assert record.endpoint_name  # checked as the run was followed; said again for the type
    asked = time.monotonic()
    try:
        answer = runtime.platform().invoke(record.endpoint_name, None, payload)
    except AutopilotError as exc:
        print(f"invoke failed: {exc}", file=sys.stderr)
        return False
    latency = time.monotonic() - asked
    demo.say(f"invoked {record.endpoint_name} ({record.scoring_uri}) in {latency:.1f} s")
    print(f"         question:             {conversation[-1]['content']}")
    print(f"         fine-tuned answer:    {answer_text(answer)}")
    print(f"         base model answer:    {_base_model_answer(demo.settings, conversation)}")
    return True


def _leave_it_idle(demo: _Demo, run: str) -> int:
    """6. Leave it idle: cleanup deletes it once idle_after_minutes (1) has passed, at the follow-up the run
    scheduled for its idle deadline (the cleanup timer is the backstop). The demo's exit code."""
    from autopilot.runs import follow
    from shared import runtime
    from shared.states import TERMINAL, RunState

    demo.say("leaving the endpoint idle; cleanup deletes it at its idle deadline, 1 idle minute")
    code = follow(
        run,
        until=frozenset({RunState.DELETED}) | TERMINAL,
        timeout_s=demo.time_left_s(),
        since=datetime.now(UTC),  # the states up to deployed were printed above
    )
    record = runtime.run_store().get(run)
    if code != 0 or record is None or record.state != RunState.DELETED:
        return 1
    left = [e.name for e in runtime.platform().list_endpoints() if e.name == record.endpoint_name]
    demo.say(f"endpoint {record.endpoint_name} deleted by cleanup" + (" (still listed!)" if left else ""))
    return 0 if not left else 1


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(keep_up=args.keep_up, timeout_minutes=args.timeout_minutes)


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the whole life cycle on this machine: up, fine-tune, deploy, invoke, cleanup")
    p.add_argument("--keep-up", action="store_true", help="leave storage and the host running at the end")
    p.add_argument("--timeout-minutes", type=float, default=30.0, help="give up after this long (default 30)")
    p.set_defaults(func=cmd_demo, settings=LOCAL_TWIN)
