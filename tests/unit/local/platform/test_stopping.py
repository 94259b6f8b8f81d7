"""SIGTERM in a job process: raised at once, except inside a write to the tracking store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.platform import stopping
from local.platform.stopping import CANCEL_REQUESTED, JobCanceledError, deferred_cancel, request_cancel


@pytest.fixture(autouse=True)
def clear_flag() -> Iterator[None]:
    CANCEL_REQUESTED.clear()
    yield
    CANCEL_REQUESTED.clear()


def test_outside_a_write_the_cancel_is_raised_at_once() -> None:
    with pytest.raises(JobCanceledError):
        request_cancel()
    assert CANCEL_REQUESTED.is_set()


def nested_writes(finished: list[str]) -> None:
    with deferred_cancel():
        with deferred_cancel():  # nested: raised once, after the outermost block
            request_cancel()
            finished.append("inner")
        finished.append("outer")


def failing_write() -> None:
    with deferred_cancel():
        request_cancel()
        raise ValueError("write failed")


def test_inside_a_write_the_cancel_waits_for_the_block_to_end() -> None:
    finished: list[str] = []
    with pytest.raises(JobCanceledError):
        nested_writes(finished)
    assert finished == ["inner", "outer"]
    assert stopping._deferring == 0


def test_an_error_leaving_the_block_is_not_replaced_by_the_cancel() -> None:
    with pytest.raises(ValueError, match="write failed"):
        failing_write()
    assert CANCEL_REQUESTED.is_set() and stopping._deferring == 0


def test_no_cancel_no_raise() -> None:
    with deferred_cancel():
        pass
    assert not CANCEL_REQUESTED.is_set()
