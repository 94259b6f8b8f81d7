"""The local endpoint's router: a request goes to the deployment named in its header, else by the traffic
weights; deployments follow ``state.json``; scoring answers are counted per deployment (5xx as errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from local.platform.serving.deployments import DeploymentStats, Router, deployments_of, metrics_since, pick
from local.platform.workspace import read_json, write_json_atomic


class Backend:
    """A deployment's app that answers with its own name (or 500, when told to fail)."""

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.status = int(spec.get("answer_status") or 200)
        self.started = self.closed = False

        async def score(request: Request) -> JSONResponse:
            return JSONResponse({"output": self.name}, status_code=self.status)

        self.app = Starlette(routes=[Route("/score", score, methods=["POST"])])

    @property
    def ready(self) -> bool:
        return self.started

    @property
    def failed(self) -> str | None:
        return None

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True


def write_state(directory: Path, deployments: dict[str, dict[str, Any]], traffic: dict[str, int]) -> None:
    write_json_atomic(directory / "state.json", {"deployments": deployments, "traffic": traffic})


def router(tmp_path: Path) -> tuple[Router, dict[str, Backend]]:
    made: dict[str, Backend] = {}

    def make(name: str, spec: dict[str, Any]) -> Backend:
        made[name] = Backend(name, spec)
        return made[name]

    return Router(tmp_path, make, DeploymentStats(tmp_path / "deployment_stats.json")), made


def test_pick_is_a_weighted_draw_and_falls_back_to_the_first_deployment() -> None:
    names = ["blue", "green"]
    assert pick({"blue": 90, "green": 10}, names, draw=lambda: 0.0) == "blue"
    assert pick({"blue": 90, "green": 10}, names, draw=lambda: 0.89) == "blue"
    assert pick({"blue": 90, "green": 10}, names, draw=lambda: 0.91) == "green"
    assert pick({"blue": 0, "green": 100}, names, draw=lambda: 0.0) == "green"
    assert pick({}, names) == "blue" and pick({}, []) is None


def test_an_endpoint_from_before_several_deployments_has_its_one() -> None:
    legacy = {"deployment_name": "d-1", "model": {"name": "m"}, "request_timeout_ms": 5}
    assert deployments_of(legacy) == {"d-1": {"model": {"name": "m"}, "request_timeout_ms": 5}}
    assert deployments_of(None) == {}


def test_routing_by_header_and_by_weight_with_counts_per_deployment(tmp_path: Path) -> None:
    write_state(tmp_path, {"blue": {}, "green": {"answer_status": 500}}, {"blue": 100})
    app, made = router(tmp_path)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert made["blue"].started and made["green"].started
        assert client.post("/score", json={}).json() == {"output": "blue"}
        named = client.post("/score", json={}, headers={"azureml-model-deployment": "green"})
        assert named.status_code == 500
        missing = client.post("/score", json={}, headers={"azureml-model-deployment": "red"})
        assert missing.status_code == 404 and "red" in missing.json()["error"]["message"]

        write_state(tmp_path, {"blue": {}, "green": {"answer_status": 500}}, {"green": 100})
        assert client.post("/score", json={}).status_code == 500  # the new weights apply to the next request

        write_state(tmp_path, {"green": {"answer_status": 500}}, {"green": 100})
        client.post("/score", json={})
        assert "blue" not in app.deployments and made["blue"].closed  # removed: unloaded
    from datetime import UTC, datetime, timedelta

    counts = metrics_since(read_json(tmp_path / "deployment_stats.json"), datetime.now(UTC) - timedelta(minutes=1))
    assert counts == {"blue": (1, 0), "green": (3, 3)}
