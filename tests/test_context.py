"""The model sees the notebook (INTERFACE.md, "Notebook context in prompts"): `{In[n]}`,
`{Out[n]}`, `{Err}`/`{Err[n]}` and `--context NAME` — the describer and the error text as
pure functions, then what real kernels (ipykernel 7.4, the Colab stack) send."""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kernel_driver import Cell, KernelDriver
from support import run_cell

from ollama_nb._context import Description, describe, prompt_with_context
from ollama_nb._errors import LIMIT, ErrorRecorder, error_text
from ollama_nb._prompt import PromptVariableError, fields, fill_prompt
from ollama_nb.testing import StandInServer

# -- fields ---------------------------------------------------------------------------


def test_non_ascii_identifiers_are_fields() -> None:
    ns = {"α": 0.5, "métrica": "f1", "数据": [1, 2, 3]}
    assert fill_prompt("{α} {métrica} {数据[-1]} {数据!r}", ns) == "0.5 f1 3 [1, 2, 3]"
    assert fields("{α} {métrica.x} {数据}") == ["α", "métrica", "数据"]
    with pytest.raises(PromptVariableError, match="'β' is not defined"):
        fill_prompt("{β}", ns)


def test_an_integer_key_indexes_as_an_int_negative_too() -> None:
    ns = {"In": ["", "a = 1", "b = 2", "this cell"], "d": {"k": 1, 2: "two"}}
    assert fill_prompt("{In[-2]} / {In[1]} / {d[2]} / {d[k]}", ns) == "b = 2 / a = 1 / two / 1"
    with pytest.raises(PromptVariableError) as info:
        fill_prompt("{In[-99]}", ns)
    assert "IndexError" in str(info.value) and "\n" not in str(info.value)


# -- the describer --------------------------------------------------------------------


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "price": [1.5, None, 3.25, 4.0, 5.0, 6.0, 7.0],
            "when": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04",
                                    "2024-01-05", "2024-01-06", "2024-01-07"]),
            "kind": pd.Categorical(["a", "b", None, "a", "a", "b", "a"]),
            "note": ["x|y", "two\nlines", None, "d", "e", "f", "g"],
        }
    )  # fmt: skip


def test_a_dataframe_shows_shape_columns_nulls_and_first_rows(frame: pd.DataFrame) -> None:
    d = describe("df", frame)
    assert d.label == "df (DataFrame 7×4)"
    lines = d.text.splitlines()
    assert lines[0] == "`df`: pandas DataFrame, 7 rows × 4 columns"
    assert "- price: float64, 1 null" in lines
    assert any(x.startswith("- when: datetime64") and x.endswith(", 1 null") for x in lines)
    assert "- kind: category, 1 null" in lines
    assert any(line.startswith("- note: ") and line.endswith(", 1 null") for line in lines)
    table = lines[lines.index("First 5 rows:") + 1 :]
    assert table[0] == "|  | price | when | kind | note |" and len(table) == 7
    assert table[2].startswith("| 0 | 1.5 | 2024-01-01") and "x\\|y" in table[2]
    assert "two lines" in table[3]  # one row, one line


def test_a_series_and_an_array_are_described(frame: pd.DataFrame) -> None:
    d = describe("p", frame["price"])
    assert d.summary == "Series 7"
    assert d.text.startswith("`p`: pandas Series 'price', 7 values, dtype float64, 1 null")
    a = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]])
    d = describe("a", a)
    assert d.summary == "ndarray 2×3 float64"
    assert "min 1, max 6, mean 3.8, 1 NaN left out" in d.text
    assert "First values: 1, nan, 3, 4, 5, 6" in d.text


def test_containers_text_callables_and_others() -> None:
    d = describe("d", {"k": [1, 2], "n": None, **{f"x{i}": i for i in range(20)}})
    assert d.summary == "dict of 22" and "- 'k': [1, 2]" in d.text and "… 12 more items" in d.text
    assert describe("t", (1, "a")).text == "`t`: tuple, 2 items\n- [0] 1\n- [1] 'a'"
    assert describe("s", "hello").text == "`s`: str of 5 characters\nhello"

    def area(width: float, height: float = 1.0) -> float:
        """Width times height."""
        return width * height

    d = describe("area", area)
    assert "function " in d.text and "(width: float, height: float = 1.0) -> float" in d.text
    assert "Width times height." in d.text and "return width * height" in d.text
    assert describe("p", functools.partial(area, 2)).summary == "function"
    assert describe("n", 3 + 4j).text == "`n`: complex\n(3+4j)"


def test_huge_values_cost_the_same_few_kb() -> None:
    text = "x" * 200_000_000
    started = time.perf_counter()
    d = describe("s", text, 4000)
    assert time.perf_counter() - started < 1  # generous: it is microseconds
    left = 200_000_000 - d.text.count("x")  # the marker counts what the model does not get
    assert len(d.text) < 4100 and d.text.endswith(f"\n[… {left:,} more characters left out]")
    d = describe("xs", list(range(5_000_000)))
    assert d.summary == "list of 5,000,000" and len(d.text) < 400
    d = describe("m", dict.fromkeys(range(1_000_000)))
    assert "… 999,990 more items" in d.text


def test_a_five_million_row_frame_is_described_at_once() -> None:
    n = 5_000_000
    big = pd.DataFrame(
        {
            "i": np.arange(n),
            "f": np.random.default_rng(0).random(n),
            "s": np.array(["abc"] * n, dtype=object),
            "t": pd.date_range("2020-01-01", periods=n, freq="s"),
            "c": pd.Categorical(np.where(np.arange(n) % 2, "a", "b")),
        }
    )
    times = []
    for _ in range(3):
        started = time.perf_counter()
        d = describe("big", big)
        times.append(time.perf_counter() - started)
    print(f"\n5,000,000×5 DataFrame described in {min(times) * 1000:.1f} ms (best of 3)")
    assert min(times) < 2  # generous bound on a shared machine; bench/ has the figure
    assert d.label == "big (DataFrame 5,000,000×5)" and len(d.text) < 1500
    assert "- f: float64, 0 nulls" in d.text
    assert "- s: str, 0 nulls in the first" in d.text or "- s: object, 0 nulls" in d.text


def test_each_description_is_capped_with_a_marker() -> None:
    wide = pd.DataFrame({f"column_{i}": [i] * 3 for i in range(200)})
    d = describe("wide", wide, 1000)
    assert len(d.text) < 1100 and "more characters left out]" in d.text
    assert describe("wide", wide).text.count("\n- column_") == 30
    assert "- … 170 more columns" in describe("wide", wide, 100_000).text


class _Broken:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class _Lazy:
    @property
    def rows(self) -> int:
        raise ValueError("not computed yet")

    def __repr__(self) -> str:
        return f"Lazy(rows={self.rows})"


def test_values_that_break_never_crash() -> None:
    assert "its repr() raised RuntimeError: repr exploded" in describe("b", _Broken()).text
    assert "its repr() raised ValueError: not computed yet" in describe("z", _Lazy()).text
    looped: list[Any] = [1]
    looped.append(looped)
    assert describe("l", looped).text.startswith("`l`: list, 2 items\n- [0] 1\n- [1] [1, [")
    deep: dict[str, Any] = {}
    deep["self"] = deep
    assert "{...}" in describe("d", deep).text
    gen = (i for i in range(3))
    assert "without consuming it" in describe("g", gen).text and next(gen) == 0
    assert "<" in describe("x", [_Broken()]).text


def test_images_point_to_image() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    figure = plt.figure()
    try:
        for value in (figure, Image.new("RGB", (16, 16)), np.zeros((32, 32, 3), np.uint8)):
            with pytest.raises(ValueError, match="--image pic"):
                describe("pic", value)
    finally:
        plt.close(figure)
    describe("data", np.zeros((32, 32), np.uint8))  # a matrix is data


def test_the_describer_imports_nothing_heavy() -> None:
    import subprocess

    code = (
        "import sys; from ollama_nb._context import describe; describe('x', {'a': [1]});"
        " print(sorted(m for m in ('pandas', 'numpy', 'matplotlib', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_prompt_holds_the_descriptions_then_the_question() -> None:
    d = [Description("a", "int", "`a`: int\n1"), Description("b", "int", "`b`: int\n2")]
    assert prompt_with_context("Why?", d) == (
        "Context from the notebook:\n\n`a`: int\n1\n\n`b`: int\n2\n\nWhy?"
    )


# -- the error text -------------------------------------------------------------------


def _raised(code: str) -> BaseException:
    try:
        exec(compile(code, "<cell>", "exec"), {})
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def test_an_error_is_the_source_then_a_plain_traceback() -> None:
    error = _raised("def f(x):\n    return 1 / x\nf(0)")
    text = error_text("def f(x):\n    return 1 / x\nf(0)", error, 7)
    assert text.startswith("In [7]:\ndef f(x):\n    return 1 / x\nf(0)\n\nTraceback")
    assert text.endswith("ZeroDivisionError: division by zero")
    assert "\x1b[" not in text


def test_a_long_traceback_keeps_its_end() -> None:
    error = _raised("def r(n):\n    return r(n + 1)\nr(0)")
    text = error_text("def r(n):\n    return r(n + 1)\nr(0)", error, 3)
    assert len(text) <= LIMIT + 200
    assert text.startswith("In [3]:\ndef r(n):")
    assert text.endswith("RecursionError: maximum recursion depth exceeded")
    huge = _raised(f"raise ValueError('{'v' * 50_000}' + ' the end')")
    text = error_text("raise ValueError(...)", huge, 4)
    assert len(text) <= LIMIT + 200 and text.endswith(" the end") and "ValueError: vvv" in text


def test_no_error_recorded_is_a_usage_error() -> None:
    recorder = ErrorRecorder(shell=None)
    with pytest.raises(PromptVariableError, match="no cell has raised an error"):
        fill_prompt("{Err}", {"Err": recorder.field()})
    with pytest.raises(PromptVariableError, match=r"no error recorded for cell \[3\]"):
        fill_prompt("{Err[3]}", {"Err": recorder.field()})


# -- in real kernels ------------------------------------------------------------------

KERNELS = ["kernel", "colab_kernel"]


@pytest.fixture(params=KERNELS)
def any_kernel(request: pytest.FixtureRequest) -> KernelDriver:
    return request.getfixturevalue(request.param)


def _sent(server: StandInServer, cell: Cell) -> str:
    assert cell.status == "ok", cell.error_text()
    return server.wait_for_request("/api/generate").body["prompt"]


def _usage_line(cell: Cell) -> str:
    """A usage error as the notebook shows it: one line on stderr."""
    assert cell.ename == "UsageError", cell.error_text()
    shown = cell.stream_text("stderr").strip()
    assert shown.startswith("UsageError: %%ollama: ") and "\n" not in shown, shown
    return shown


def _fails(kernel: KernelDriver, code: str) -> int:
    cell = kernel.run(code)
    assert cell.status == "error", code
    return cell.reply.content["execution_count"]


def test_err_is_the_last_error_source_and_plain_traceback(
    any_kernel: KernelDriver, server: StandInServer
) -> None:
    count = _fails(any_kernel, "value = undefined_name_xyz + 1")
    prompt = _sent(server, run_cell(any_kernel, "stand-in", "Why did this fail?\n{Err}"))
    assert prompt.startswith(f"Why did this fail?\nIn [{count}]:\nvalue = undefined_name_xyz + 1")
    assert prompt.endswith("NameError: name 'undefined_name_xyz' is not defined")
    assert "\x1b[" not in prompt
    assert "IPython" not in prompt and "ipykernel" not in prompt and "site-packages" not in prompt
    server.reset()
    later = _fails(any_kernel, "raise KeyError('later')")
    prompt = _sent(server, run_cell(any_kernel, "stand-in", f"{{Err[{count}]}}"))
    assert "undefined_name_xyz" in prompt and "later" not in prompt
    server.reset()
    assert "KeyError: 'later'" in _sent(server, run_cell(any_kernel, "stand-in", "{Err}"))
    assert later > count


def test_err_in_a_function_of_another_cell_a_recursion_and_a_time_cell(
    any_kernel: KernelDriver, server: StandInServer
) -> None:
    any_kernel.ok("def explode(x):\n    scale = 10\n    return scale / x")
    _fails(any_kernel, "explode(0)")
    prompt = _sent(server, run_cell(any_kernel, "stand-in", "{Err}"))
    assert "explode(0)" in prompt and "return scale / x" in prompt
    assert prompt.endswith("ZeroDivisionError: division by zero")

    server.reset()
    _fails(any_kernel, "def deeper(n):\n    return deeper(n + 1)\ndeeper(0)")
    prompt = _sent(server, run_cell(any_kernel, "stand-in", "{Err}"))
    assert len(prompt) <= 6300 and "return deeper(n + 1)" in prompt
    assert prompt.endswith("RecursionError: maximum recursion depth exceeded")

    server.reset()
    any_kernel.run("%%time\nx_timed = 1\nraise ValueError('timed boom')")  # %%time shows it
    prompt = _sent(server, run_cell(any_kernel, "stand-in", "{Err}"))
    assert "x_timed = 1" in prompt and prompt.endswith("ValueError: timed boom")

    server.reset()
    _fails(any_kernel, "broken = (1,")
    assert "SyntaxError" in _sent(server, run_cell(any_kernel, "stand-in", "{Err}"))


def test_errors_of_ollama_cells_are_not_recorded_and_a_user_err_wins(
    any_kernel: KernelDriver, server: StandInServer
) -> None:
    _fails(any_kernel, "raise LookupError('the real one')")
    assert run_cell(any_kernel, "stand-in --timeout -1").status == "error"
    assert run_cell(any_kernel, "stand-in", "{not_defined_here_q}").status == "error"
    assert any_kernel.run("%ollama nonsense").status == "error"
    slow = "stand-in --timeout 0.3 -o standin_first_chunk_delay=3"
    assert run_cell(any_kernel, slow).status == "error"  # a timeout
    any_kernel.run(f"%%time\n%%ollama {slow}\nHi")  # %%time shows the error (IPython 7: only)
    assert any_kernel.run("x_q = 1\n%ollama nonsense").status == "error"
    server.reset()
    prompt = _sent(server, run_cell(any_kernel, "stand-in", "{Err}"))
    assert prompt.endswith("LookupError: the real one")

    server.reset()
    any_kernel.ok("Err = 'my own Err'")
    try:
        assert _sent(server, run_cell(any_kernel, "stand-in", "{Err}")) == "my own Err"
    finally:
        any_kernel.ok("del Err")


def test_a_missing_error_or_history_entry_is_one_line_and_nothing_is_sent(
    any_kernel: KernelDriver, server: StandInServer
) -> None:
    line = _usage_line(run_cell(any_kernel, "stand-in", "{Err[999999]}"))
    assert "no error recorded for cell [999999]" in line and "nothing was sent" in line
    line = _usage_line(run_cell(any_kernel, "stand-in", "{In[-99999]}"))
    assert "IndexError" in line
    assert server.requests == []


def test_in_minus_two_is_the_cell_run_before(
    any_kernel: KernelDriver, server: StandInServer
) -> None:
    any_kernel.ok("marker_cell = 41 + 1")
    prompt = _sent(server, run_cell(any_kernel, "stand-in", "Explain: {In[-2]}"))
    assert prompt == "Explain: marker_cell = 41 + 1"


def _record(cell: Cell) -> tuple[dict[str, Any], dict[str, Any]]:
    (message,) = [m for m in cell.messages if m.type == "display_data"
                  and "ollama-nb-record" in m.content["data"].get("text/html", "")]  # fmt: skip
    return message.content["data"], message.content["metadata"]["ollama_nb"]


def test_context_describes_a_dataframe_before_the_prompt(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok(
        "import pandas as pd\n"
        "sales = pd.DataFrame({'region': ['north', None, 'south'], 'units': [3, 5, None],"
        " 'day': pd.to_datetime(['2024-05-01', '2024-05-02', None]),"
        " 'kind': pd.Categorical(['a', None, 'b'])})\n"
        "regions = {'north': 1, 'south': 2}"
    )
    cell = run_cell(kernel, "stand-in --context sales --context regions", "Which region sold most?")
    prompt = _sent(server, cell)
    assert prompt.startswith("Context from the notebook:\n\n`sales`: pandas DataFrame, 3 rows × 4")
    assert "- units: float64, 1 null" in prompt and "- kind: category, 1 null" in prompt
    assert "| 0 | north | 3.0 | 2024-05-01 | a |" in prompt
    assert "`regions`: dict, 2 items\n- 'north': 1" in prompt
    assert prompt.endswith("\n\nWhich region sold most?")
    assert kernel.value("_ollama.prompt") == prompt
    data, meta = _record(cell)
    header = "context: sales (DataFrame 3×4), regions (dict of 2)"
    assert data["text/plain"].startswith(header) and header in data["text/html"]
    assert meta["context"] == ["sales", "regions"]
    # The live view shows the same line under its header, so the record moves nothing.
    live = [m.content["data"]["state"].get("value", "") for m in cell.comm_opens()]
    assert any("ollama-nb-context" in str(v) and header in str(v) for v in live)


def test_context_names_in_one_option_and_usage_errors(
    any_kernel: KernelDriver, server: StandInServer
) -> None:
    any_kernel.ok("note_a = 'alpha text'\nnote_b = [1, 2]")
    prompt = _sent(server, run_cell(any_kernel, "stand-in --context note_a,note_b", "Q"))
    assert "`note_a`: str of 10 characters\nalpha text" in prompt and "`note_b`: list" in prompt
    server.reset()
    cell = run_cell(any_kernel, "stand-in --context no_such_value_q", "Q")
    line = _usage_line(cell)
    assert "--context no_such_value_q: no variable 'no_such_value_q'" in line
    assert "nothing was sent" in line
    cell = run_cell(any_kernel, "stand-in --context note_a --each note_b", "Q {item}")
    assert "--context goes with single requests, not with --each" in _usage_line(cell)
    assert "--context needs a Python variable name" in _usage_line(
        run_cell(any_kernel, "stand-in --context note_a,", "Q")
    )
    assert server.requests == []


def test_an_image_given_as_context_points_to_image(
    kernel: KernelDriver, server: StandInServer
) -> None:
    kernel.ok("import numpy as np\npicture = np.zeros((40, 40, 3), np.uint8)")
    cell = run_cell(kernel, "stand-in --context picture", "What is this?")
    assert "--image picture" in _usage_line(cell)
    assert server.requests == []


def test_the_api_takes_context(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok(
        "import ollama_nb\n"
        "r = ollama_nb.generate('Summarise.', 'stand-in', context={'xs': [3, 1, 2]},"
        " display=False)"
    )
    prompt = server.wait_for_request("/api/generate").body["prompt"]
    assert prompt == (
        "Context from the notebook:\n\n`xs`: list, 3 items\n- [0] 3\n- [1] 1\n- [2] 2\n\nSummarise."
    )
    assert kernel.value("r.context") == {"xs": "list of 3"}


def test_context_chars_caps_each_description(kernel: KernelDriver, server: StandInServer) -> None:
    kernel.ok("%config OllamaMagics.context_chars = 300\nlong_text = 'word ' * 10_000")
    try:
        prompt = _sent(server, run_cell(kernel, "stand-in --context long_text", "Q"))
        server.reset()
        kernel.ok(
            "import ollama_nb\n"
            "r = ollama_nb.generate('Q', 'stand-in', context={'t': long_text}, display=False)"
        )
        from_api = server.wait_for_request("/api/generate").body["prompt"]
    finally:
        kernel.ok("%config OllamaMagics.context_chars = 4000")
    description = prompt.split("\n\n")[1]
    assert len(description) < 360 and description.endswith(" more characters left out]")
    assert from_api.split("\n\n")[1].endswith(" more characters left out]")
    assert len(from_api) < 400
