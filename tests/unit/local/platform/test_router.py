"""The local endpoint's router: a request goes to the deployment named in its header, else by the traffic
weights; deployments follow ``state.json``; scoring answers are counted per deployment (5xx as errors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from local.platform.serving.deployments import DeploymentStats, Router, metrics_since, pick
from local.platform.serving.state import DeploymentCounts, DeploymentSpec, EndpointState, ModelSource
from shared.platform.port import DeploymentState

FAILING = "green"  # the deployment whose app answers 500


class Backend:
    """A deployment's app that answers with its own name (``FAILING`` answers 500)."""

    def __init__(self, name: str, spec: DeploymentSpec) -> None:
        self.name = name
        self.status = 500 if name == FAILING else 200
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


def spec(name: str) -> DeploymentSpec:
    model = ModelSource(name="m", version="1", id="local://models/m/versions/1", source=f"/models/{name}")
    return DeploymentSpec(model=model, instance_type="local-cpu", device="cpu", tags={}, created_at=datetime.now(UTC))


def write_state(directory: Path, deployments: list[str], traffic: dict[str, int]) -> None:
    EndpointState(
        name="e",
        tags={},
        created_at=datetime.now(UTC),
        port=1,
        state=DeploymentState.SUCCEEDED,
        traffic=traffic,
        deployments={name: spec(name) for name in deployments},
    ).save(directory / "state.json")


def router(tmp_path: Path) -> tuple[Router, dict[str, Backend]]:
    made: dict[str, Backend] = {}

    def make(name: str, spec: DeploymentSpec) -> Backend:
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


def test_routing_by_header_and_by_weight_with_counts_per_deployment(tmp_path: Path) -> None:
    write_state(tmp_path, ["blue", "green"], {"blue": 100})
    app, made = router(tmp_path)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert made["blue"].started and made["green"].started
        assert client.post("/score", json={}).json() == {"output": "blue"}
        named = client.post("/score", json={}, headers={"azureml-model-deployment": "green"})
        assert named.status_code == 500
        missing = client.post("/score", json={}, headers={"azureml-model-deployment": "red"})
        assert missing.status_code == 404 and "red" in missing.json()["error"]["message"]

        write_state(tmp_path, ["blue", "green"], {"green": 100})
        assert client.post("/score", json={}).status_code == 500  # the new weights apply to the next request

        write_state(tmp_path, ["green"], {"green": 100})
        client.post("/score", json={})
        assert "blue" not in app.deployments and made["blue"].closed  # removed: unloaded
    recorded = DeploymentCounts.load(tmp_path / "deployment_stats.json")
    counts = metrics_since(recorded, datetime.now(UTC) - timedelta(minutes=1))
    assert counts == {"blue": (1, 0), "green": (3, 3)}
