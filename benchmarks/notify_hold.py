"""How long one user's hanging webhook receivers hold up another user's config (issue 22: 117 s instead of 1 s).

    PYTHONPATH=. .venv/bin/python benchmarks/notify_hold.py [--receivers 5] [--baseline /path/to/old/checkout]

Starts Azurite and runs the local host's blob poller over it (the app's own submit function, the table ledger,
the blob status store: the host's path). Config ``a.yaml`` is rejected and names ``--receivers`` webhooks that
accept the connection and never answer; ``b.yaml``, another user's, is rejected and names none. The host's poll
loop runs; ``b.yaml`` is uploaded as soon as ``a.yaml``'s run reads ``rejected``. Prints how long from that
upload until ``b.yaml``'s run read ``rejected`` (its own timeline stamp), and how many requests the hanging
receivers got before then (0: nothing was sent inside the submit).

With ``--baseline`` the same measurement runs again on that checkout (its ``shared`` package, e.g. the main
branch before durable notifications, where a state change sent its notifications inline) and the ratio is
printed. The script speaks both: it wires ``RunStore(owe=...)`` where the code has it, else the old
``WebhookNotifier`` observer, as each one's composition root does.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


class HangingReceiver:
    """Accepts connections and reads the request, then never answers (until closed)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            self._held.append(conn)  # kept open, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


def measure(root: Path, receivers: int) -> dict[str, float]:
    """One measurement with the ``shared`` package of ``root`` (imported by this process)."""
    sys.path.insert(0, str(root))
    sys.path.insert(1, str(HERE))
    from azure.storage.blob import ContainerClient

    import function_app
    import shared.notify as notify
    from local.common.processes import free_ports
    from local.host.azurite import AzuritePorts, start_azurite, stop_azurite
    from local.host.blobpoller import BlobPoller
    from local.host.discovery import discover
    from shared import runtime
    from shared.ledger.table import TableLedger
    from shared.runs import RunStore
    from shared.settings import Settings
    from shared.status import BlobStatusStore
    from tests.configs import config_bytes
    from tests.fakes import FakePlatform

    workdir = Path(tempfile.mkdtemp(prefix="notify-hold-"))
    conn = start_azurite(workdir, AzuritePorts(*free_ports(3)), project_root=HERE).connection_string
    hanging = [HangingReceiver() for _ in range(receivers)]
    try:
        suffix = uuid.uuid4().hex[:8]
        os.environ["AUTOPILOT_NOTIFY_ALLOW_PRIVATE_ADDRESSES"] = "true"  # the receivers are on loopback
        ledger = TableLedger(conn, f"runs{suffix}")
        status = BlobStatusStore(conn, f"status-{suffix}")
        if hasattr(notify, "owe"):  # durable: state changes only record what they owe
            store = RunStore(ledger, status, owe=notify.owe)
        else:  # inline, as the old composition root wired it
            # The baseline tree's notifier: this tree has none, so mypy (reading this tree) cannot know it.
            store = RunStore(ledger, status, observers=[notify.WebhookNotifier("bench-key")])  # type: ignore[attr-defined]
        runtime.install(runtime.bootstrap(Settings.from_env(), store=store, platform=FakePlatform()))
        container = ContainerClient.from_connection_string(
            conn, os.environ.get("AUTOPILOT_CONFIG_CONTAINER") or "training-configs"
        )
        if not container.exists():
            container.create_container()
        urls = [f"http://127.0.0.1:{h.port}/hook" for h in hanging]
        bad = {"learning_rate": -1}
        poller = BlobPoller(
            discover(function_app.app).blob,
            host_connection=conn,
            resolve_connection=lambda _: conn,
            host_id=f"bench-{suffix}",
        )
        stop = threading.Event()

        def poll() -> None:  # the host's poll loop
            while not stop.is_set():
                poller.poll_once()
                stop.wait(0.2)

        loop = threading.Thread(target=poll, daemon=True)
        loop.start()
        container.upload_blob("a.yaml", config_bytes(training=bad, notify={"webhooks": urls}))
        # b.yaml is dropped once a.yaml's run is rejected (its state change, and whatever it does inline, began).
        deadline = time.time() + 120
        while time.time() < deadline and not any(
            r.config_blob == "a.yaml" for r in store.list() if r.state.value == "rejected"
        ):
            time.sleep(0.05)
        started = time.time()
        container.upload_blob("b.yaml", config_bytes(training=bad))
        while time.time() < started + 300 and not any(
            r.config_blob == "b.yaml" and r.state.value == "rejected" for r in store.list()
        ):
            time.sleep(0.1)
        runs = {r.config_blob: r for r in store.list()}
        b_rejected = datetime.fromisoformat(runs["b.yaml"].timeline["rejected"]).timestamp()
        stop.set()
        loop.join(300)
        result = {
            "b_drop_to_rejected_s": b_rejected - started,
            "requests_during_submit": float(sum(h.requests for h in hanging)),
        }
        if hasattr(notify, "owe"):
            result.update(worker_run(store, conn, container, config_bytes, bad, urls, poller))
        return result
    finally:
        for h in hanging:
            h.close()
        stop_azurite(workdir)


def worker_run(store, conn, container, config_bytes, bad, urls, poller) -> dict[str, float]:
    """One run of the delivery worker with a.yaml's hanging receivers owed, and c.yaml's answering one: how long
    until c.yaml's notification was delivered, and how long the whole run took (a hanging receiver costs one
    try's timeout of one thread)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from shared import runtime
    from shared.services.delivery import deliver_owed
    from shared.services.sweep import Deadline

    delivered_at: list[float] = []

    class Answering(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            delivered_at.append(time.time())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        container.upload_blob("c.yaml", config_bytes(training=bad, notify={"webhooks": [hook]}))
        poller.poll_once()
        settings = runtime.settings()
        started = time.time()
        deliver_owed(
            store,
            runtime.senders(),
            deadline=Deadline(settings.sweep_budget_seconds),
            concurrency=settings.sweep_concurrency,
        )
        ended = time.time()
    finally:
        server.shutdown()
    return {
        "worker_c_delivered_after_s": (delivered_at[0] - started) if delivered_at else float("nan"),
        "worker_run_s": ended - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure the same way (old code)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: measure this checkout, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one.resolve(), args.receivers)))
        return
    results = {}
    for label, root in (("this checkout", HERE), ("baseline", args.baseline)):
        if root is None:
            continue
        # A process per checkout, so each imports its own ``shared``.
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(root), "--receivers", str(args.receivers)],
            check=True,
            capture_output=True,
            text=True,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        ).stdout
        results[label] = json.loads(out.strip().splitlines()[-1])
        r = results[label]
        print(
            f"{label:<14} ({root}): b.yaml drop -> rejected {r['b_drop_to_rejected_s']:.2f} s; "
            f"requests to a.yaml's {args.receivers} hanging receivers during the submit: "
            f"{int(r['requests_during_submit'])}"
        )
        if "worker_run_s" in r:
            print(
                f"{'':<14} delivery worker: c.yaml's answering receiver got its notification after "
                f"{r['worker_c_delivered_after_s']:.2f} s; the run, with a.yaml's hanging receivers owed, took "
                f"{r['worker_run_s']:.2f} s (one try's timeout: shared.notify_http.TIMEOUT_S)"
            )
    if len(results) == 2:
        ratio = results["baseline"]["b_drop_to_rejected_s"] / max(
            results["this checkout"]["b_drop_to_rejected_s"], 1e-9
        )
        print(f"baseline / this checkout: {ratio:.0f}x")


if __name__ == "__main__":
    main()
