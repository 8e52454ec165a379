"""`--code` and `%ollama fix`, the pure parts: which code an answer holds, the instruction,
the record's line; what a fix sends (types and shapes, never values; no API key)."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from ollama_nb import OllamaResult
from ollama_nb._code import CODE_INSTRUCTION, code_note, extract_code, with_code_instruction
from ollama_nb._fix import (
    FIX_INSTRUCTION,
    error_of,
    fix_prompt,
    names_used,
    redact,
    type_and_shape,
    variable_lines,
)
from ollama_nb._magics import OllamaMagics
from ollama_nb._options import parse_line
from ollama_nb._render import record_html, record_text

CODE = 'import pandas as pd\n\ndf = pd.read_csv("data.csv")\nprint(df.head())'


def test_the_first_python_block_after_a_bash_block() -> None:
    answer = (
        "First install pandas:\n\n```bash\npip install pandas\n```\n\n"
        f"Then:\n\n```python\n{CODE}\n```\n\nAnd later:\n\n```python\nprint('no')\n```\n"
    )
    assert extract_code(answer) == CODE


@pytest.mark.parametrize("info", ["python", "py", "python3", "ipython", "", "Python", "py title"])
def test_the_tags_that_mean_python(info: str) -> None:
    assert extract_code(f"Here:\n```{info}\n{CODE}\n```\nDone.") == CODE


def test_tilde_fences_count() -> None:
    assert extract_code(f"~~~python\n{CODE}\n~~~") == CODE


def test_a_fence_inside_a_longer_fence_is_code() -> None:
    code = 'text = """\n```python\nx = 1\n```\n"""\nprint(text)'
    assert extract_code(f"Like this:\n\n````python\n{code}\n````\n\nDone.") == code


def test_an_answer_that_is_only_code() -> None:
    assert extract_code(f"\n{CODE}\n\n") == CODE
    assert extract_code(f"```python\n{CODE}\n```") == CODE


def test_an_unterminated_fence_runs_to_the_end() -> None:
    # As CommonMark reads it: an answer cut by num_predict (`length`), or a fence the
    # model never closed, still gives the code it has.
    assert extract_code(f"Sure:\n\n```python\n{CODE}\n") == CODE
    assert extract_code(f"Sure:\n\n```python\n{CODE}") == CODE


def test_a_block_inside_a_list_item_is_de_indented() -> None:
    answer = (
        "1. Install it.\n2. Run:\n\n   ```python\n   x = 1\n   if x:\n       print(x)\n   ```\n"
    )
    assert extract_code(answer) == "x = 1\nif x:\n    print(x)"


def test_fences_without_python_give_none() -> None:
    assert extract_code("Run:\n\n```bash\npip install pandas\n```\n") is None
    assert extract_code("```json\n{}\n```") is None


def test_empty_answers_give_none() -> None:
    assert extract_code("") is None
    assert extract_code("\n \n") is None
    assert extract_code("```python\n```") is None


def test_the_instruction_comes_after_the_system_prompt() -> None:
    assert with_code_instruction(None) == CODE_INSTRUCTION
    assert with_code_instruction("Be terse.") == f"Be terse.\n\n{CODE_INSTRUCTION}"


@pytest.mark.parametrize(
    ("code", "reason", "failed", "inserted", "line"),
    [
        (CODE, "stop", False, "in a new cell below", "code: 4 lines put in a new cell below"),
        ("x = 1", "length", False, "in a new cell below", "code: 1 line put in a new cell below"),
        (CODE, "stop", False, None, "code: 4 lines in .code (no cell to put it in)"),
        (None, "stop", False, "x", "code: nothing inserted: the answer has no Python code block"),
        (CODE, "stopped", False, None, "code: nothing inserted: the answer was stopped (4 lines"),
        (None, "timeout", True, None, "code: nothing inserted: the request timed out"),
        (None, "error", True, None, "code: nothing inserted: the request failed"),
        ("x", "interrupted", False, None, "code: nothing inserted: the request was interrupted"),
    ],
)
def test_the_records_line(
    code: str | None, reason: str, failed: bool, inserted: str | None, line: str
) -> None:
    assert code_note(code, reason, failed, inserted).startswith(line)


def test_the_record_shows_the_line_escaped() -> None:
    result = OllamaResult(model="m", text="hi", done_reason="stop", code="x")
    assert "code:" not in record_text(result) and "ollama-nb-code" not in record_html(result)
    result.code_note = "code: <b>1 line</b> put in a new cell below"
    assert record_text(result).endswith(f"{result.status}\n{result.code_note}")
    assert "&lt;b&gt;1 line&lt;/b&gt;" in record_html(result)


@pytest.mark.parametrize("other", ["--each items", "--background"])
def test_code_with_each_or_background_is_a_usage_error(other: str) -> None:
    with pytest.raises(UsageError, match=f"--code cannot go with {other.split()[0]}"):
        parse_line(OllamaMagics.ollama_cell, f"m --code {other}")
    assert parse_line(OllamaMagics.ollama_cell, "m --code --chat").code


# -- %ollama fix: the prompt ---------------------------------------------------------------


def test_names_used_in_order_and_names_bound() -> None:
    source = (
        "import numpy as np\n"
        "total = sales['units'].sum() + offset\n"
        "def f(x):\n    return x * scale\n"
        "print(total, [v for v in values])\n"
    )
    used, bound = names_used(source)
    assert used == ["sales", "offset", "x", "scale", "print", "total", "v", "values"]
    assert {"np", "total", "f", "x", "v"} <= bound
    assert names_used("broken = (1,\nfoo")[0] == ["broken", "foo"]  # a SyntaxError cell


def test_variable_lines_give_types_and_shapes_never_values() -> None:
    import numpy as np
    import pandas as pd

    sales = pd.DataFrame({"region": ["north-secret-row"], "units": [7]})
    namespace = {
        "sales": sales,
        "grid": np.zeros((3, 4)),
        "names": ["alice-secret-item", "bob"],
        "token": "secret-string-value",
        "np": np,
        "scale": lambda x, k=2: x * k,
        "offset": 41,
        "In": [],
        "_private": 1,
    }
    source = "print(sales, grid, names, token, np, scale, offset, In, _private, missing, len)"
    lines = variable_lines(source, namespace)
    assert lines == [
        "- sales: pandas.DataFrame, shape (1, 2); columns:"
        f" 'region' ({sales.dtypes.iloc[0]}), 'units' (int64)",
        "- grid: numpy.ndarray, shape (3, 4), dtype float64",
        "- names: list of length 2",
        "- token: str of length 19",
        "- np: module numpy",
        "- scale: function(x, k=2)",
        "- offset: int",
        "- missing: not defined in the notebook",
    ]
    for secret in ("north-secret-row", "alice-secret-item", "secret-string-value", "41"):
        assert secret not in "\n".join(lines)


def test_a_value_whose_shape_raises_is_its_type() -> None:
    class Odd:
        @property
        def shape(self) -> tuple[int, ...]:
            raise RuntimeError("no")

    assert type_and_shape(Odd()).endswith(".Odd")


def test_the_fix_prompt_and_the_keys_left_out() -> None:
    environ = {"OLLAMA_API_KEY": "sk-ollama-123456", "OPENAI_API_KEY": "sk-openai-654321"}
    error = "In [3]:\nprint(key)\n\nValueError: bad key sk-ollama-123456 / sk-openai-654321"
    prompt = fix_prompt(error, ["- key: str of length 16"], environ)
    assert prompt.startswith(FIX_INSTRUCTION + "\n\nIn [3]:\nprint(key)")
    assert "ValueError: bad key [redacted] / [redacted]" in prompt
    assert prompt.endswith("(type and shape only):\n- key: str of length 16")
    assert redact("abc", {"OLLAMA_API_KEY": "b"}) == "abc"  # too short to be a key


def test_which_error_is_fixed() -> None:
    errors = {3: "three", 5: "five"}
    assert error_of(errors, None) == (5, "five")
    assert error_of(errors, 3) == (3, "three")
    assert error_of(errors, 4) == (
        "no error recorded for cell [4] (cells with an error: 3, 5); nothing was sent"
    )
    assert "no error recorded since %load_ext ollama_nb" in str(error_of({}, None))
