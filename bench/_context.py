"""Time to describe huge values for `--context` (`ollama_nb._context`): a 5,000,000-row
DataFrame (numbers, text, dates, categories) and a 200 MB string. The describer is pure,
so it is timed in this process, as a kernel would run it. Goal: <= 100 ms each."""

from __future__ import annotations

import time
from typing import Any

from _stats import ms, summary

from ollama_nb._context import describe

ROWS = 5_000_000
TEXT_BYTES = 200_000_000


def context_times(runs: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {
            "i": np.arange(ROWS),
            "f": np.random.default_rng(0).random(ROWS),
            "s": np.array(["abc"] * ROWS, dtype=object),
            "t": pd.date_range("2020-01-01", periods=ROWS, freq="s"),
            "c": pd.Categorical(np.where(np.arange(ROWS) % 2, "a", "b")),
        }
    )
    values = {"dataframe_5m_rows": frame, "str_200mb": "x" * TEXT_BYTES}
    out: dict[str, Any] = {}
    for key, value in values.items():
        seconds = []
        for _ in range(runs):
            started = time.perf_counter()
            text = describe(key, value).text
            seconds.append(time.perf_counter() - started)
        out[key] = {"ms": summary(ms(seconds), 2), "chars": len(text)}
    return out
