"""The line magic's tables: alignment and wrapping in HTML, relative unload times, and
percentiles shown only when enough samples back them. Pure functions, no kernel."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ollama_nb._chat import Conversation
from ollama_nb._listing import loaded_table, unloads
from ollama_nb._result import OllamaResult
from ollama_nb._stats import stats_table
from ollama_nb._tables import Table, human_duration

NOW = datetime(2026, 11, 22, 3, 0, 45, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.2, "0 s"), (45, "45 s"), (59.4, "59 s"), (59.6, "1 min"), (299.9, "5 min"),
     (3599, "1 h"), (7500, "2 h 5 min"), (86400 * 3, "3 days")],
)  # fmt: skip
def test_human_duration(seconds: float, said: str) -> None:
    assert human_duration(seconds) == said


@pytest.mark.parametrize(
    ("expires_at", "said"),
    [
        ("2026-11-22T03:05:45.054109+00:00", "in 5 min"),
        ("2026-11-22T03:04:45Z", "in 4 min"),
        ("2026-11-21T19:05:45.1234567-08:00", "in 5 min"),  # Go's 7 fraction digits
        ("2026-11-22T03:01:15.5Z", "in 30 s"),
        ("2026-11-22T03:00:00Z", "now"),
        ("2318-03-01T00:00:00Z", "never (kept loaded)"),  # keep_alive -1
        ("soon", "soon"),
        (None, ""),
    ],
)
def test_unloads_is_relative(expires_at: str | None, said: str) -> None:
    assert unloads(expires_at, NOW) == said


def test_ps_table_says_when_in_words() -> None:
    ps = {"models": [{"name": "llama3.2:latest", "size": 2_400_000, "size_vram": 2_400_000,
                      "context_length": 4096, "expires_at": "2026-11-22T03:04:45Z"}]}  # fmt: skip
    text = repr(loaded_table(ps, now=NOW))
    assert text.splitlines()[0].split() == ["name", "size", "in", "VRAM", "context", "unloads"]
    assert text.splitlines()[2].endswith("in 4 min")


def test_html_left_aligns_text_and_keeps_short_columns_on_one_line() -> None:
    table = Table(["#", "model", "answer"], [["1", "stand-in", "a long answer"]], empty="",
                  right=("#",), wrap=("answer",))  # fmt: skip
    html = table._repr_html_()
    assert '<td style="text-align:right;white-space:nowrap">1</td>' in html
    assert '<td style="text-align:left;white-space:nowrap">stand-in</td>' in html
    assert '<td style="text-align:left">a long answer</td>' in html
    assert repr(table).splitlines()[2] == "1  stand-in  a long answer"


def test_history_wraps_only_prompt_and_answer() -> None:
    conversation = Conversation()
    conversation.ask("Hi <b>", None, "stand-in")
    conversation.record("Hi <b>", OllamaResult(model="stand-in", text="Hello", done_reason="stop"))
    html = conversation.table()._repr_html_()
    assert '<td style="text-align:left;white-space:nowrap">stand-in</td>' in html
    assert '<td style="text-align:left">Hi &lt;b&gt;</td>' in html


def result(elapsed: float) -> OllamaResult:
    return OllamaResult(model="m", done_reason="stop", elapsed=elapsed, ttft=elapsed / 2,
                        tokens_per_second=10.0)  # fmt: skip


def rows(table: Table) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table.rows}


def test_stats_with_few_samples_shows_no_tail_percentiles() -> None:
    table = stats_table([result(0.5), result(1.5)])
    shown = rows(table)
    assert shown["latency min"] == ["0.50 s", "2"]
    assert shown["latency p50"] == ["1.00 s", "2"]
    assert shown["latency max"] == ["1.50 s", "2"]
    assert not any("p95" in k or "p99" in k for k in shown)
    assert "p95 is shown from 20 samples on, p99 from 100." in repr(table)


def test_stats_shows_p95_from_20_samples_and_p99_from_100() -> None:
    shown = rows(stats_table([result(i / 10) for i in range(1, 21)]))
    assert shown["latency p95"][1] == "20" and "latency p99" not in shown
    many = stats_table([result(i / 100) for i in range(1, 101)])
    assert rows(many)["latency p99"] == ["0.99 s", "100"] and not many.note


def test_stats_with_one_sample_shows_it_once() -> None:
    shown = rows(stats_table([result(0.25)]))
    assert shown["latency p50"] == ["0.25 s", "1"]
    assert "latency min" not in shown and "latency max" not in shown
