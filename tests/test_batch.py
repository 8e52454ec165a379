"""Batches without a kernel: the scheduler over real HTTP on loopback.

Against the stand-in (order, inputs, Stop, interrupt) and against `ScriptedServer`,
whose behaviour depends on the prompt and which queues like Ollama's scheduler (failures
in the middle, 503 busy, lost connections, queueing vs the read timeout).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from typing import Any

import pytest
from batch_servers import ScriptedServer

from ollama_nb._batch import BatchJob, run_batch
from ollama_nb._batch_result import OllamaBatch
from ollama_nb._batch_view import BatchStats, NullBatchView
from ollama_nb._client import OllamaClient
from ollama_nb._config import Timeouts
from ollama_nb._elements import Row, elements
from ollama_nb._stream import Request, StopControl
from ollama_nb.testing import StandInServer


def job(
    url: str,
    items: Any,
    template: str = "Say {item}.",
    *,
    parallel: int = 2,
    read: float = 10.0,
    total: float | None = None,
    retries: int = 0,
) -> BatchJob:
    client = OllamaClient(url, Timeouts(2.0, read, total), retries=retries)
    payload = {"model": "stand-in", "prompt": "", "stream": True}
    base = Request(client, "/api/generate", payload, "stand-in", total_timeout=total)

    def fill(namespace: Mapping[str, Any]) -> str:
        return template.format_map(namespace)

    return BatchJob(base, elements(items), fill, parallel=parallel, read_timeout=read)


class CountingView(NullBatchView):
    def __init__(self) -> None:
        self.updates: list[tuple[float, BatchStats]] = []
        self.finished: OllamaBatch | None = None

    def update(self, stats: BatchStats) -> None:
        self.updates.append((time.monotonic(), BatchStats(**vars(stats))))

    def finish(self, batch: OllamaBatch) -> None:
        self.finished = batch


def run(j: BatchJob, view: Any = None, control: StopControl | None = None) -> OllamaBatch:
    return asyncio.run(run_batch(j, view or NullBatchView(), control or StopControl()))


@pytest.mark.parametrize(
    "items",
    [["a", "b", "c", "d", "e"], ("a", "b", "c", "d", "e"), range(5), (x for x in "abcde")],
    ids=["list", "tuple", "range", "generator"],
)
def test_results_in_input_order(server: StandInServer, items: Any) -> None:
    batch = run(job(server.url, items, "Say {item} ({index}).", parallel=3))
    expected = [f"Say {x} ({i})." for i, x in enumerate(["a", "b", "c", "d", "e"])]
    if isinstance(items, range):
        expected = [f"Say {i} ({i})." for i in range(5)]
    assert [r.prompt for r in batch] == expected
    assert sorted(r.body["prompt"] for r in server.requests) == sorted(expected)
    # Each answer is the one for its own prompt, whatever order they completed in.
    by_prompt = {r.body["prompt"]: r for r in server.requests}
    for result in batch:
        assert result.done_reason == "stop" and result.text.startswith("[stand-in]")
        assert by_prompt[result.prompt].completed
    assert batch.texts == [r.text for r in batch] and batch.failed == []
    assert batch.counts() == {"stop": 5}


def test_series_values_and_index_labels(server: StandInServer) -> None:
    pd = pytest.importorskip("pandas")  # in the test extra
    series = pd.Series(["red", "green", "blue"], index=["r", "g", "b"])
    batch = run(job(server.url, series, "{index}={item}"))
    assert [r.prompt for r in batch] == ["r=red", "g=green", "b=blue"]
    texts = batch.texts
    assert isinstance(texts, pd.Series) and list(texts.index) == ["r", "g", "b"]
    assert list(texts) == [r.text for r in batch]


def test_dataframe_rows_and_texts_assigned_back(server: StandInServer) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"city": ["Oslo", "Lima"], "pop": [0.7, 10.0]}, index=[10, 20])
    batch = run(job(server.url, frame, "{index}: {item.city} has {item[pop]} M"))
    assert [r.prompt for r in batch] == ["10: Oslo has 0.7 M", "20: Lima has 10.0 M"]
    frame["answer"] = batch.texts
    assert list(frame["answer"]) == [r.text for r in batch]


def test_row_reads_like_a_record() -> None:
    row = Row({"a": 1, "b c": "x"})
    assert row.a == 1 and row["b c"] == "x" and "a" in row
    assert str(row) == "a: 1, b c: x"
    with pytest.raises(AttributeError, match="no column 'z'"):
        _ = row.z


@pytest.mark.parametrize("bad", ["one prompt", b"bytes", 42])
def test_not_a_batch(bad: Any) -> None:
    with pytest.raises(TypeError):
        elements(bad)


def test_a_failure_in_the_middle_is_recorded_and_the_batch_goes_on() -> None:
    items = ["one", "two", "fail three", "four", "five"]
    with ScriptedServer(num_parallel=2).running() as srv:
        batch = run(job(srv.url, items, "{item}", parallel=2))
    assert batch.failed == [2]
    assert batch[2].done_reason == "error" and batch[2].error.status_code == 500
    assert "scripted failure" in str(batch[2].error)
    assert [r.done_reason for i, r in enumerate(batch) if i != 2] == ["stop"] * 4
    assert batch[4].text == "five#0 five#1 five#2 five#3 five#4 "


def test_server_busy_is_retried_with_backoff() -> None:
    items = ["busy a", "b", "busy c"]
    with ScriptedServer(num_parallel=3, busy_times=2).running() as srv:
        started = time.monotonic()
        batch = run(job(srv.url, items, "{item}", parallel=3))
        seconds = time.monotonic() - started
    assert batch.counts() == {"stop": 3}
    assert srv.asked["busy a"] == 3 and srv.asked["b"] == 1  # two 503s, then the answer
    assert seconds >= 0.5 * 0.75 + 1.0 * 0.75  # it waited before asking again


def test_connection_lost_before_any_byte_is_sent_once_more() -> None:
    items = ["drop once", "ok"]
    with ScriptedServer(num_parallel=2, drop_times=1).running() as srv:
        batch = run(job(srv.url, items, "{item}"))
    assert batch.counts() == {"stop": 2} and srv.asked["drop once"] == 2

    with ScriptedServer(num_parallel=2, drop_times=None).running() as srv:
        batch = run(job(srv.url, ["drop always", "ok"], "{item}"))
    assert batch.failed == [0] and srv.asked["drop always"] == 2  # once more, not again
    assert type(batch[0].error).__name__ == "OllamaConnectionError"


def test_queued_requests_do_not_burn_their_read_timeout() -> None:
    """Server runs 1 at a time; 4 in flight; each answer takes ~0.6 s, so the 4th waits
    ~1.8 s in the server's queue, far over the 0.5 s read timeout. None may time out."""
    items = [f"q{i}" for i in range(8)]
    with ScriptedServer(num_parallel=1, chunks=7, interval=0.1).running() as srv:
        batch = run(job(srv.url, items, "{item}", parallel=4, read=0.5))
        waits = [s.scheduled - s.arrived for s in srv.seen if s.scheduled]
    print(f"\nlongest wait in the server's queue: {max(waits):.2f} s (read timeout 0.5 s)")
    assert max(waits) > 1.0  # really queued, longer than the read timeout
    assert batch.counts() == {"stop": 8}, [str(r.error) for r in batch if r.error]
    assert srv.max_running == 1


def test_a_request_stalled_before_its_first_byte_still_times_out() -> None:
    """The queue-aware clock must not hide a real stall: with a slot free, silence counts."""
    items = ["a", "stall b", "c", "d"]
    with ScriptedServer(num_parallel=2, chunks=3, interval=0.05).running() as srv:
        started = time.monotonic()
        batch = run(job(srv.url, items, "{item}", parallel=2, read=0.5))
        seconds = time.monotonic() - started
    assert batch.failed == [1]
    assert batch[1].done_reason == "timeout" and batch[1].timeout_kind == "read"
    assert [r.done_reason for i, r in enumerate(batch) if i != 1] == ["stop"] * 3
    assert seconds < 10


def test_total_timeout_per_request() -> None:
    with ScriptedServer(num_parallel=2, chunks=40, interval=0.05).running() as srv:
        batch = run(job(srv.url, ["a", "b"], "{item}", total=0.5))
    assert [r.timeout_kind for r in batch] == ["total", "total"]
    # The partial text is kept.
    assert all(r.text.startswith(f"{p}#0") for r, p in zip(batch, "ab", strict=True))


def test_stop_keeps_finished_stops_in_flight_and_skips_the_rest(server: StandInServer) -> None:
    server.configure(token_interval=0.02, tokens=10)  # ~0.2 s per answer
    control = StopControl()
    view = CountingView()

    async def main() -> OllamaBatch:
        task = asyncio.ensure_future(
            run_batch(job(server.url, list(range(40)), parallel=3), view, control)
        )
        while not view.updates or view.updates[-1][1].done < 4:
            await asyncio.sleep(0.01)
        control.stop()
        return await task

    batch = asyncio.run(main())
    counts = batch.counts()
    assert counts["stop"] >= 4 and 1 <= counts.get("stopped", 0) <= 3
    assert counts["skipped"] == 40 - counts["stop"] - counts["stopped"]
    stopped = [r for r in batch if r.done_reason == "stopped"]
    assert all(r.prompt for r in stopped)
    for record in server.requests:
        assert record.wait_closed(2)
    assert len(server.requests) == counts["stop"] + counts["stopped"]  # nothing more began
    assert sum(r.disconnected for r in server.requests) == counts["stopped"]
    assert all(r.chunks_after_disconnect == 0 for r in server.requests)
    assert view.finished is batch


def test_interrupt_hands_over_the_partial_batch_and_reraises(server: StandInServer) -> None:
    server.configure(token_interval=0.02, tokens=10)
    kept: list[OllamaBatch] = []

    async def main() -> None:
        task = asyncio.ensure_future(
            run_batch(
                job(server.url, list(range(20)), parallel=2),
                NullBatchView(),
                StopControl(),
                kept.append,
            )
        )
        await asyncio.sleep(0.5)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    (batch,) = kept
    counts = batch.counts()
    assert counts.get("interrupted", 0) >= 1 and counts["skipped"] >= 1
    assert sum(counts.values()) == 20


def test_view_refreshes_at_most_ten_times_a_second(server: StandInServer) -> None:
    server.configure(token_interval=0.001, tokens=3)
    view = CountingView()
    batch = run(job(server.url, list(range(300)), parallel=4), view)
    assert batch.counts() == {"stop": 300}
    times = [t for t, _ in view.updates]
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]  # the last: the final refresh
    assert gaps and min(gaps) >= 0.09, min(gaps)
    final = view.updates[-1][1]
    assert (final.done, final.failed, final.in_flight) == (300, 0, 0)


def test_standin_queue_parallel_above_num_parallel(server: StandInServer) -> None:
    """The issue's proof: server num_parallel=1, --parallel 4, a read timeout shorter
    than the time the last requests wait in the server's queue: all succeed."""
    server.configure(num_parallel=1, token_interval=0.05, tokens=8)  # ~0.4 s per answer
    batch = run(job(server.url, list(range(8)), parallel=4, read=0.3))
    assert batch.counts() == {"stop": 8}, [str(r.error) for r in batch if r.error]
    waits = [r.scheduled_at - r.queued_at for r in server.requests if r.queued]
    print(f"\nlongest wait in the stand-in's queue: {max(waits):.2f} s (read timeout 0.3 s)")
    assert max(waits) > 0.6


def test_json_with_format(server: StandInServer) -> None:
    j = job(server.url, ["a", "b"])
    j.base.payload["format"] = "json"
    j.base.want_json = True
    batch = run(j)
    assert batch.counts() == {"stop": 2}
    assert all(isinstance(value, (dict, list)) for value in batch.json), batch.texts
    assert batch.json == [__import__("json").loads(t) for t in batch.texts]
