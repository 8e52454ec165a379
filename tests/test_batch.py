"""Batches without a kernel: the scheduler over real HTTP on loopback.

Against the stand-in (order, inputs, Stop, interrupt) and against `ScriptedServer`,
whose behaviour depends on the prompt and which queues like Ollama's scheduler (failures
in the middle, 503 busy, lost connections, queueing vs the read timeout).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import re
import time
from collections.abc import Mapping
from typing import Any

import pytest
from batch_servers import ScriptedServer
from raw_server import closed_port, wait_until

import ollama_nb
import ollama_nb._batch
from ollama_nb import OllamaError, OllamaResult
from ollama_nb._batch import BatchJob, run_batch
from ollama_nb._batch_result import OllamaBatch
from ollama_nb._batch_store import AFFIX_MAX, FINAL_DROPPED, ResultColumns, _affixes
from ollama_nb._batch_view import BatchStats, NullBatchView, TextBatchView
from ollama_nb._client import OllamaClient
from ollama_nb._config import Timeouts
from ollama_nb._elements import Row, elements
from ollama_nb._stats import outcome
from ollama_nb._stream import STOP_ON_OVERLAP, Request, StopControl
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
    # The server marks a response complete just after its last write, which the batch may
    # have read already.
    wait_until(lambda: all(r.completed for r in server.requests), 5, "the server's records")
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


def test_a_0d_array_is_not_a_batch() -> None:
    import numpy as np

    with pytest.raises(TypeError, match=r"0-d ndarray \(a single value\)"):
        elements(np.array(5))


class Counted:
    """An element whose property counts how often the prompt reads it."""

    def __init__(self, name: str) -> None:
        self.name, self.reads = name, 0

    @property
    def value(self) -> str:
        self.reads += 1
        return f"{self.name}#{self.reads}"


def test_each_element_s_fields_are_read_once(server: StandInServer) -> None:
    items = [Counted("a"), Counted("b")]
    batch = ollama_nb.map(
        "Say {item.value}.", items, "stand-in", host=server.url, display=False, parallel=1
    )
    assert [item.reads for item in items] == [1, 1]
    # The prompt checked before sending is the one sent.
    assert [r.prompt for r in batch] == ["Say a#1.", "Say b#1."]
    sent = [r.body["prompt"] for r in server.requests if r.path == "/api/generate"]
    assert sent == ["Say a#1.", "Say b#1."]


def test_a_lone_surrogate_in_a_later_element_fails_that_element_in_one_line(
    server: StandInServer,
) -> None:
    batch = ollama_nb.map(
        "Say {item}.", ["a", "b\udc80", "c"], "stand-in", host=server.url, display=False
    )
    assert [r.done_reason for r in batch] == ["stop", "error", "stop"]
    error = batch[1].error
    assert type(error).__name__ == "OllamaError"
    assert str(error).startswith("element 1: the prompt contains a lone surrogate (U+DC80)")
    assert "\n" not in str(error)


def test_one_element_is_one_prompt(server: StandInServer) -> None:
    import io

    out = io.StringIO()
    batch = run(job(server.url, ["a"], "{item}"), TextBatchView(out))
    assert out.getvalue().startswith("[stand-in] 1 prompt\n")
    assert "stand-in · 1 answer, finished · " in batch._repr_mimebundle_()["text/plain"]
    assert "2 answers, all finished" in repr(run(job(server.url, ["a", "b"], "{item}")))


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


def test_a_refused_port_halts_the_batch_after_eight_in_a_row() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    batch = run(job(url, [f"p{i}" for i in range(30)], "{item}", parallel=1, retries=1))
    assert batch.counts() == {"error": 8, "skipped": 22}
    assert all(type(r.error).__name__ == "OllamaConnectionError" for r in batch[:8])
    # Each element tried twice (once more after a lost connection), each time with one
    # connection retry 0.25 s later: its elapsed holds both waits.
    assert all(r.elapsed >= 2 * 0.25 for r in batch[:8]), [r.elapsed for r in batch[:8]]
    line = "Stopped early: 8 requests in a row could not connect, so the batch started no more"
    text = batch._repr_mimebundle_()["text/plain"]
    [halted] = [x for x in text.splitlines() if x.startswith("Stopped early")]
    assert halted.startswith(line) and halted.endswith("; 22 skipped")
    assert "connection refused" in halted
    assert halted in batch._repr_mimebundle_()["text/html"]


def test_parallel_requests_to_a_refused_port_stop_within_the_bound() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    batch = run(job(url, range(100), "{item}", parallel=4))
    counts = batch.counts()
    assert 8 <= counts["error"] <= 8 + 3 and counts["error"] + counts["skipped"] == 100


def test_a_503_storm_halts_the_batch_and_elapsed_counts_the_backoff(
    server: StandInServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama_nb._batch, "BUSY_RETRIES", 2)
    monkeypatch.setattr(ollama_nb._batch, "BUSY_FIRST_WAIT", 0.1)
    server.configure(status=503, error="server busy, please try again.  maximum pending")
    batch = run(job(server.url, [f"p{i}" for i in range(12)], "{item}", parallel=1))
    assert batch.counts() == {"error": 8, "skipped": 4}
    assert all(r.error.status_code == 503 for r in batch[:8])
    # Three tries, 0.1 s then 0.2 s apart (±25 %): the waits are in the element's time.
    assert all(r.elapsed >= 0.75 * 0.3 for r in batch[:8]), [r.elapsed for r in batch[:8]]
    [halted] = [x for x in batch._repr_mimebundle_()["text/plain"].splitlines() if "Stopped" in x]
    assert "8 requests in a row found the server busy (HTTP 503)" in halted
    assert halted.endswith("; 4 skipped") and batch.halted


def test_an_answer_in_between_resets_the_count() -> None:
    # Seven connections lost before any byte, one answer, seven more lost: never eight
    # in a row, so every element is tried.
    items = [f"drop {i}" for i in range(7)] + ["ok"] + [f"drop {i}" for i in range(7, 14)]
    with ScriptedServer(num_parallel=1, drop_times=None).running() as srv:
        batch = run(job(srv.url, items, "{item}", parallel=1))
    assert batch.counts() == {"error": 14, "stop": 1} and batch.halted is None


class CountingPattern:
    """A --stop-on pattern that counts the characters it is asked to search."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)
        self.scanned = 0

    def search(self, string: str, pos: int = 0) -> re.Match[str] | None:
        self.scanned += len(string) - pos
        return self.pattern.search(string, pos)


def with_stop_on(batch_job: BatchJob, pattern: Any) -> BatchJob:
    return dataclasses.replace(batch_job, base=dataclasses.replace(batch_job.base, stop_on=pattern))


def test_stop_on_in_a_batch_scans_a_window_not_the_whole_answer(server: StandInServer) -> None:
    server.configure(tokens=4000, token_interval=0)
    pattern = CountingPattern("never (written)")
    batch = run(with_stop_on(job(server.url, ["a"], "{item}", parallel=1), pattern))
    [result] = batch
    assert result.done_reason == "stop" and result.chunks >= 4000
    # Each chunk: its own text and at most STOP_ON_OVERLAP characters before it (as a
    # single request does); the whole answer again at each chunk would be ~50x more.
    assert pattern.scanned <= len(result.text) + result.chunks * STOP_ON_OVERLAP
    assert pattern.scanned < len(result.text) ** 2 / 100


def test_stop_on_in_a_batch_finds_a_match_across_chunks(server: StandInServer) -> None:
    server.configure(reply="alpha beta gamma delta epsilon " * 20)
    stop_on = re.compile(r"gamma\s+delta")
    batch = run(with_stop_on(job(server.url, ["a", "b"], "{item}"), stop_on))
    assert [r.done_reason for r in batch] == ["stopped", "stopped"]
    assert all(r.text.startswith("alpha beta gamma delta") for r in batch)
    assert all(len(r.text) < 100 for r in batch)


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


def test_total_timeout_does_not_count_time_queued_behind_the_batch(server: StandInServer) -> None:
    # One slot on the server, four requests in flight: each answer takes ~0.4 s, the last
    # one waits ~1.2 s in the server's queue first. --timeout 1 bounds each answer's run.
    server.configure(num_parallel=1, tokens=20, token_interval=0.02)
    batch = run(job(server.url, ["a", "b", "c", "d"], "{item}", parallel=4, total=1.0))
    assert batch.counts() == {"stop": 4}, [str(r.error) for r in batch]
    assert max(r.elapsed for r in batch) > 1.0  # queued and run: more than the cap


def test_total_timeout_per_request() -> None:
    with ScriptedServer(num_parallel=2, chunks=40, interval=0.05).running() as srv:
        batch = run(job(srv.url, ["a", "b"], "{item}", total=0.5))
    assert [r.timeout_kind for r in batch] == ["total", "total"]
    # The partial text is kept.
    assert all(r.text.startswith(f"{p}#0") for r, p in zip(batch, "ab", strict=True))


def stop_after(batch_job: BatchJob, done: int) -> tuple[OllamaBatch, CountingView]:
    """Run the batch and press Stop once its view shows `done` elements done."""
    control, view = StopControl(), CountingView()

    async def main() -> OllamaBatch:
        task = asyncio.ensure_future(run_batch(batch_job, view, control))
        while not view.updates or view.updates[-1][1].done < done:
            await asyncio.sleep(0.01)
        control.stop()
        return await task

    return asyncio.run(main()), view


def test_stop_keeps_finished_stops_in_flight_and_skips_the_rest(server: StandInServer) -> None:
    server.configure(token_interval=0.02, tokens=10)  # ~0.2 s per answer
    batch, view = stop_after(job(server.url, list(range(40)), parallel=3), done=4)
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


# -- what a batch keeps: each result, field for field --------------------------------------


def _landed(monkeypatch: pytest.MonkeyPatch) -> dict[int, OllamaResult]:
    """The results as they landed in the batch (copies: a kept one is compacted after)."""
    seen: dict[int, OllamaResult] = {}
    put = ResultColumns.put

    def spy(self: ResultColumns, position: int, result: OllamaResult) -> None:
        seen[position] = dataclasses.replace(result, final=dict(result.final))
        put(self, position, result)

    monkeypatch.setattr(ResultColumns, "put", spy)
    return seen


def _same_as_landed(batch: OllamaBatch, landed: dict[int, OllamaResult]) -> None:
    assert set(landed) <= set(range(len(batch)))
    for position, result in enumerate(batch):
        before = landed.get(position)
        if before is None:  # never started
            assert result.done_reason == "skipped" and result.text == ""
            continue
        for name in (f.name for f in dataclasses.fields(OllamaResult)):
            want = getattr(before, name)
            if name == "final":
                want = {k: v for k, v in want.items() if k not in FINAL_DROPPED}
            assert getattr(result, name) == want, (position, name)
        assert result.status == before.status and repr(result) == repr(before)
        assert result.record_bundle() == before.record_bundle()
        assert str(result) == before.text


@pytest.mark.parametrize(
    ("model", "extra", "want_json"),
    [
        ("stand-in", {}, False),
        ("stand-in", {"options": {"temperature": 0, "seed": 1}}, False),
        ("stand-in", {"format": "json"}, True),
        ("stand-in-think", {"think": True}, False),
    ],
    ids=["plain", "options", "json", "thinking"],
)
def test_every_field_of_every_result_reads_back_as_it_landed(
    server: StandInServer,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
    extra: dict[str, Any],
    want_json: bool,
) -> None:
    landed = _landed(monkeypatch)
    j = job(server.url, list(range(6)), "Say {item}.", parallel=3)
    j.base.payload.update(model=model, **extra)
    j.base.model, j.base.want_json = model, want_json
    batch = run(j)
    assert batch.counts() == {"stop": 6} and len(landed) == 6
    _same_as_landed(batch, landed)
    assert batch[-1].prompt == "Say 5." and [r.prompt for r in batch[1:3]] == ["Say 1.", "Say 2."]
    assert [r.prompt for r in batch[::2]] == ["Say 0.", "Say 2.", "Say 4."]
    if model == "stand-in-think":
        assert all(r.thinking for r in batch)
    if want_json:
        assert all(r.json is not None for r in batch)
    # The usual answer is stored as columns, not kept as a whole object.
    assert batch._columns.kept == {}
    with pytest.raises(IndexError):
        batch[6]


def test_failures_stops_and_skips_read_back_as_they_landed(
    server: StandInServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed = _landed(monkeypatch)
    with ScriptedServer(num_parallel=2, chunks=3, interval=0.05).running() as srv:
        failing = run(job(srv.url, ["one", "fail two", "stall three", "four"], "{item}", read=0.5))
    assert failing.counts() == {"stop": 2, "error": 1, "timeout": 1}
    assert failing.failed == [1, 2] and failing[2].timeout_kind == "read"
    assert isinstance(failing[1].error, OllamaError) and failing[1] is failing[1]  # kept whole
    _same_as_landed(failing, landed)

    landed.clear()
    server.configure(token_interval=0.02, tokens=10)
    stopped, _view = stop_after(job(server.url, list(range(20)), parallel=2), done=2)
    counts = stopped.counts()
    assert counts["skipped"] >= 1 and counts.get("stopped", 0) >= 1, counts
    _same_as_landed(stopped, landed)
    # What stats count of each request that started, read without building results.
    started = [r for r in stopped if r.done_reason != "skipped"]
    figures = list(stopped.request_figures())
    assert [(f.done_reason, f.elapsed, f.ttft, f.tokens_per_second) for f in figures] == [
        (r.done_reason, r.elapsed, r.ttft, r.tokens_per_second) for r in started
    ]
    assert [outcome(f) for f in figures] == [outcome(r) for r in started]


def test_a_batch_result_reads_like_the_same_single_request(server: StandInServer) -> None:
    options = {"temperature": 0}
    single = ollama_nb.generate(
        "Say a.", "stand-in", host=server.url, options=options, display=False
    )
    batch = ollama_nb.map(
        "Say {item}.", ["a", "b"], "stand-in", host=server.url, options=options, display=False
    )
    result = batch[0]
    timing = {"elapsed", "ttft", "tokens_per_second", "final"}
    for name in (f.name for f in dataclasses.fields(OllamaResult)):
        if name not in timing:
            assert getattr(result, name) == getattr(single, name), name
    assert set(result.final) == set(single.final) - set(FINAL_DROPPED)
    assert result.tokens_per_second is not None and result.ttft is not None
    meta, single_meta = result.record_metadata(), single.record_metadata()
    assert meta["ollama_nb"].pop("elapsed") >= 0 and single_meta["ollama_nb"].pop("elapsed") >= 0
    assert meta == single_meta
    # The record: the same answer, and a status line that differs only in its timings.
    answer, status = result.record_bundle()[0]["text/plain"].rsplit("\n", 1)
    single_answer, single_status = single.record_bundle()[0]["text/plain"].rsplit("\n", 1)
    assert answer == single_answer and answer.startswith("[stand-in]")
    assert (
        status.split(" · ")[:3]
        == single_status.split(" · ")[:3]
        == ["stand-in", "stop", "24 tokens"]
    )


def test_a_batch_made_from_a_list_of_results_reads_them_back() -> None:
    text, thinking = "héllo ✓ 🙂 \ud800 end", "ça pense…"  # any str, even a lone surrogate
    results = [
        OllamaResult(
            model="m",
            text=text,
            thinking=thinking,
            done_reason="stop",
            elapsed=1.5,
            final={"eval_count": 3},
            prompt="dis « bonjour »",
        ),
        OllamaResult(model="m", done_reason="skipped"),
        OllamaResult(model="other", text="y", done_reason="error", error=OllamaError("boom")),
        OllamaResult(model="m", text="plain", done_reason="length"),
    ]
    results[0].eval_count = 3
    batch = OllamaBatch(results, model="m", elapsed=2.0)
    assert set(batch._columns.kept) == {1, 2}  # 0 and 3 as columns
    assert [r.text for r in batch] == [text, "", "y", "plain"] == batch.texts
    assert batch[0].thinking == thinking and batch[0].prompt == "dis « bonjour »"
    assert batch[3].thinking == "" and batch[3].prompt == ""
    assert batch[0].final == {"eval_count": 3} and batch[0].eval_count == 3
    assert batch[2].model == "other" and str(batch[2].error) == "boom"
    assert batch.counts() == {"stop": 1, "skipped": 1, "error": 1, "length": 1}
    assert batch.failed == [2] and batch.eval_count == 3
    assert len(list(batch.request_figures())) == 3


def test_a_prompt_keeps_the_longest_prefix_and_suffix_it_shares_with_the_first() -> None:
    """`_affixes` (the bytes read as ints and XORed) finds what a byte-by-byte comparison
    finds, capped at what the columns count."""

    def by_bytes(text: bytes, first: bytes) -> tuple[int, int]:
        head = 0
        while head < min(len(text), len(first)) and text[head] == first[head]:
            head += 1
        head = min(head, AFFIX_MAX)
        tail = 0
        while tail < len(text) - head and tail < len(first) and text[-tail - 1] == first[-tail - 1]:
            tail += 1
        return head, min(tail, AFFIX_MAX)

    rng = random.Random(3)
    for _ in range(5000):
        first, text = (bytes(rng.choices(b"ab\x00\xff", k=rng.randint(0, 9))) for _ in "ft")
        assert _affixes(text, first) == by_bytes(text, first), (text, first)
    long = b"x" * 70_000
    assert _affixes(long + b"a" + long, long + b"b" + long) == (AFFIX_MAX, AFFIX_MAX)


def test_prompts_read_back_whatever_they_share_with_the_first() -> None:
    """A prompt is kept as what differs from the first one stored: any split of a shared
    prefix or suffix, even inside a multi-byte character, reads back whole."""
    long = "x" * 70_000  # a shared prefix longer than the columns count (65,535 bytes)
    prompts = [
        "", "Résumé du ticket 7 — en une ligne ✓", "Résumé du ticket 7 — en une ligne ✓",
        "Résumé du ticket 12 — en une ligne ✓", "Résumè du ticket 8 — en une ligne ✓",
        "Résumé", "✓", "Ré", "sumé du ticket", "totally different", "\ud800 lone",
        long + "a" + long, long + "b" + long, "Résumé du ticket 7 — en une ligne ✓ and more",
    ]  # fmt: skip
    results = [OllamaResult(model="m", text="t", done_reason="stop", prompt=p) for p in prompts]
    batch = OllamaBatch(results, model="m", elapsed=1.0)
    assert batch._columns.kept == {}
    assert [r.prompt for r in batch] == prompts
    # The first is kept once, whole; the same again or another ticket keeps a byte or two.
    column = batch._columns.prompts
    assert column.first == prompts[1].encode() and list(column.sizes[1:4]) == [0, 0, 2]


def test_numbers_too_big_for_their_column_keep_the_result_whole() -> None:
    big = [
        OllamaResult(model="m", done_reason="stop", final={"eval_count": 2**32}),
        OllamaResult(model="m", done_reason="stop", final={"eval_duration": 2**62}),
        OllamaResult(model="m", done_reason="stop", chunks=2**32),
        OllamaResult(model="m", done_reason="stop", final={"eval_count": 2**32 - 1}, chunks=7),
    ]
    for result in big[:2] + big[3:]:
        result.eval_count = result.final.get("eval_count")
    batch = OllamaBatch(big, model="m", elapsed=1.0)
    assert set(batch._columns.kept) == {0, 2}  # 2**62 ns fits its 8 bytes
    assert [r.final for r in batch] == [r.final for r in big]
    assert [r.chunks for r in batch] == [0, 0, 2**32, 7]
    assert [r.eval_count for r in batch] == [2**32, None, None, 2**32 - 1]


def test_answers_of_any_length_read_back() -> None:
    """All in one buffer, by position: none is cut or mixed up, whatever its length."""
    sizes = [0, 1, 700, 1023, 1024, 5000, 16_385, 70_000, 3, 0, 40_000, 2, *range(0, 3000, 7)]
    texts = [("é" if i % 3 == 0 else "x") * (size // 2 if i % 3 == 0 else size) + str(i)
             for i, size in enumerate(sizes)]  # fmt: skip
    results = [OllamaResult(model="m", text=t, done_reason="stop", prompt=t[::-1]) for t in texts]
    batch = OllamaBatch(results, model="m", elapsed=1.0)
    assert batch._columns.kept == {}
    assert batch.texts == texts and [r.prompt for r in batch] == [t[::-1] for t in texts]


def test_summary_reads_as_a_sentence() -> None:
    from ollama_nb._batch_record import outcome_phrase

    assert outcome_phrase({"stop": 8}, 8) == "8 answers, all finished"
    assert outcome_phrase({"error": 1}, 1) == "1 answer, failed"
    assert outcome_phrase({"stop": 6, "error": 1, "timeout": 1}, 8) == (
        "8 answers: 6 finished, 1 failed, 1 timed out"
    )
    assert outcome_phrase({"skipped": 27, "stopped": 3}, 30) == (
        "30 answers: 27 not started, 3 stopped"
    )
    assert outcome_phrase({}, 0) == "no prompts"
