"""Parallel training streams: how a micro-batch is split, the setting, and when one stream is kept."""

from __future__ import annotations

import threading

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from local.platform.training import dropout, streams


@given(st.lists(st.integers(min_value=1, max_value=512), min_size=1, max_size=16), st.integers(1, 8))
def test_a_split_covers_every_conversation_once_in_order_and_is_balanced(lengths: list[int], parts: int) -> None:
    groups = streams.split_balanced(lengths, parts)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(g and g == sorted(g) for g in groups) and len(groups) == min(parts, len(lengths))
    totals = [sum(lengths[i] for i in g) for g in groups]
    # longest-first to the lightest row: no row exceeds the lightest by more than its longest conversation
    assert max(totals) - min(totals) <= max(lengths)
    assert groups == streams.split_balanced(lengths, parts)  # deterministic


def test_the_setting_is_auto_or_a_positive_number_and_read_through_the_settings() -> None:
    from shared.settings import Settings

    assert Settings.from_env({streams.STREAMS_SETTING: " 2 "}).local_train_streams == "2"
    assert streams.requested_streams({}) == 0
    assert streams.requested_streams({streams.STREAMS_SETTING: " Auto "}) == 0
    assert streams.requested_streams({streams.STREAMS_SETTING: "3"}) == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match=streams.STREAMS_SETTING):
            streams.requested_streams({streams.STREAMS_SETTING: bad})


def test_one_stream_on_cuda_with_unseeded_dropout_or_when_asked() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert streams.stream_count(model, cpu, {streams.STREAMS_SETTING: "3"}) == 3
    assert streams.stream_count(model, cpu, {}) == max(1, torch.get_num_threads())
    assert streams.stream_count(model, cpu, {streams.STREAMS_SETTING: "1"}) == 1
    assert streams.stream_count(model, cuda, {streams.STREAMS_SETTING: "3"}) == 1
    with_dropout = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert streams.stream_count(with_dropout, cpu, {streams.STREAMS_SETTING: "3"}) == 1
    assert streams.stream_count(with_dropout, cpu, {streams.STREAMS_SETTING: "3"}, for_training=False) == 3
    seeded = torch.nn.Sequential(torch.nn.Linear(2, 2), dropout.SeededDropout(0.1))
    assert streams.stream_count(seeded, cpu, {streams.STREAMS_SETTING: "3"}) == 3  # its masks are per row


def test_the_pool_runs_items_at_once_on_its_threads_and_keeps_their_order() -> None:
    barrier = threading.Barrier(2, timeout=10)  # both items must be running together to get past it

    def work(item: int) -> tuple[int, str, int]:
        barrier.wait()
        return item, threading.current_thread().name, torch.get_num_threads()

    with streams.StreamPool(2) as pool:
        results = pool.map(work, [1, 2])
    assert [r[0] for r in results] == [1, 2]
    assert all(name.startswith("train-stream") for _, name, _ in results)
    assert all(threads == max(1, torch.get_num_threads() // 2) for _, _, threads in results)
    with streams.StreamPool(1) as single:
        assert single.map(lambda x: threading.current_thread() is threading.main_thread(), [0]) == [True]


def test_jobs_on_a_small_machine_get_one_openmp_thread_and_a_stream_per_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from local.platform import workspace

    assert workspace.STREAMS_SETTING == streams.STREAMS_SETTING
    monkeypatch.setattr(workspace.os, "cpu_count", lambda: 2)
    assert workspace.torch_thread_env({}) == {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        streams.STREAMS_SETTING: "2",
    }
    assert workspace.torch_thread_env({}, sharing=2)[streams.STREAMS_SETTING] == "1"  # two jobs share the cores
    assert streams.STREAMS_SETTING not in workspace.torch_thread_env({streams.STREAMS_SETTING: "1"})  # the user's
    assert workspace.torch_thread_env({"OMP_NUM_THREADS": "2"}) == {}
    monkeypatch.setattr(workspace.os, "cpu_count", lambda: 16)
    assert workspace.torch_thread_env({}) == {}  # torch's own default: a thread per core, a stream per thread
    assert workspace.torch_thread_env({}, sharing=4) == {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}
