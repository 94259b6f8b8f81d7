"""Run ids, derived names and the state machine."""

from __future__ import annotations

import re

import pytest

from shared.config.model import ENDPOINT_NAME_RE
from shared.exceptions import RejectedError
from shared.naming import (
    check_blob_name,
    config_name,
    deployment_name,
    endpoint_name,
    run_id,
    status_blob_name,
    workspace_scope,
)
from shared.states import TERMINAL, TRANSITIONS, RunState, can_move


def test_run_id_is_stable_for_same_bytes_and_path() -> None:
    a = run_id("training-configs", "phi3.yaml", b"x: 1\n")
    assert a == run_id("training-configs", "phi3.yaml", b"x: 1\n")
    assert a != run_id("training-configs", "phi3.yaml", b"x: 2\n")
    assert a != run_id("training-configs", "other/phi3.yaml", b"x: 1\n")
    assert re.fullmatch(r"phi3-[0-9a-f]{8}", a)


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        ("phi3.yaml", "phi3"),
        ("Team A/Phi3 Chat.YML", "team-a-phi3-chat"),
        ("x.json", "x"),
        ("___.yaml", "config"),
    ],
)
def test_config_name_is_id_safe(blob: str, expected: str) -> None:
    assert config_name(blob) == expected


@pytest.mark.parametrize("blob", ["a" * 300 + ".yaml", "9-starts-with-digit.yaml", "x.yaml", "--.yaml"])
def test_endpoint_and_deployment_names_follow_the_azure_rule(blob: str) -> None:
    run = run_id("c", blob, b"data")
    for name in (endpoint_name(run), deployment_name(run)):
        assert 3 <= len(name) <= 32 and ENDPOINT_NAME_RE.match(name), name
    assert endpoint_name(run) == endpoint_name(run)
    assert endpoint_name(run).endswith(run[-8:])
    scoped = endpoint_name(run, workspace_scope("sub", "rg", "ws"))
    assert 3 <= len(scoped) <= 32 and ENDPOINT_NAME_RE.match(scoped), scoped


def test_endpoint_names_differ_per_workspace_and_are_stable_for_one() -> None:
    # Managed online endpoint names are unique per region: the unchanged sample deployed from two
    # workspaces must not ask for the same name.
    run = run_id("training-configs", "phi3-ultrachat.yaml", b"the same bytes")
    one = workspace_scope("00000000-0000-0000-0000-000000000001", "rg-a", "ws-a")
    other = workspace_scope("00000000-0000-0000-0000-000000000002", "rg-a", "ws-a")
    assert endpoint_name(run, one) != endpoint_name(run, other)
    assert endpoint_name(run, one) != endpoint_name(
        run, workspace_scope("00000000-0000-0000-0000-000000000001", "rg-a", "ws-b")
    )
    assert endpoint_name(run, one) == endpoint_name(run, one)
    # Resource ids compare without case.
    assert endpoint_name(run, one) == endpoint_name(
        run, workspace_scope("00000000-0000-0000-0000-000000000001", "RG-A", "WS-A")
    )
    assert endpoint_name(run, one).startswith("ft-phi3-ultrachat-")


@pytest.mark.parametrize(
    "blob", ["../x.yaml", "a/../b.yaml", "a//b.yaml", "a\\b.yaml", "x\n.yaml", "", "é.yaml", "./a"]
)
def test_unsafe_blob_names_are_refused(blob: str) -> None:
    with pytest.raises(RejectedError) as info:
        check_blob_name(blob)
    assert info.value.issues[0].path == "blob"


def test_status_blob_mirrors_the_config_path() -> None:
    assert status_blob_name("team/phi3.yaml") == "team/phi3.yaml.json"


def test_states_move_only_forward() -> None:
    order = list(RunState)
    assert can_move(RunState.RECEIVED, RunState.SUBMITTED)
    assert can_move(RunState.SUBMITTED, RunState.COMPLETED)  # a lost "running" event is not fatal
    assert not can_move(RunState.COMPLETED, RunState.RUNNING)
    assert not can_move(RunState.DEPLOYED, RunState.DEPLOYING)
    for state in TERMINAL:
        assert not TRANSITIONS[state]

    # No state can be reached again once left: the graph has no cycles.
    def reachable(state: RunState) -> set[RunState]:
        seen: set[RunState] = set()
        todo = list(TRANSITIONS[state])
        while todo:
            nxt = todo.pop()
            if nxt not in seen:
                seen.add(nxt)
                todo.extend(TRANSITIONS[nxt])
        return seen

    for state in order:
        assert state not in reachable(state), state
    assert reachable(RunState.RECEIVED) == set(order) - {RunState.RECEIVED}
