"""The whole kernel scenario on the other kernel stacks tests/run makes: the oldest one
the dependency floors allow, a Colab-style environment (Python 3.11, ipykernel 6.17.1,
IPython 7.34.0, ipywidgets 7.7.1) into which the project was installed after the stack,
and Python 3.10 with what pip resolves there (ipykernel 6.31, IPython 8.x).

The scenario tests themselves live with their subject (test_live_view, test_requests,
test_features, test_composition); here each runs again in that kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import test_code
import test_composition
import test_features
import test_live_view
import test_requests
from kernel_driver import KernelDriver

from ollama_nb.testing import StandInServer

COLAB_STACK = {"ipykernel": "6.17.1", "IPython": "7.34.0", "ipywidgets": "7.7.1"}


def test_installing_the_project_left_the_colab_stack_as_it_was(
    colab_kernel: KernelDriver,
) -> None:
    versions = colab_kernel.value(
        "{m: __import__(m).__version__ for m in ('ipykernel', 'IPython', 'ipywidgets')}"
        " | {'python': '.'.join(map(str, __import__('sys').version_info[:2]))}"
    )
    assert versions == {**COLAB_STACK, "python": "3.11"}


def test_python_310_gets_an_ipykernel_6_stack(py310_kernel: KernelDriver) -> None:
    versions = py310_kernel.value(
        "[__import__('sys').version_info[:2]]"
        " + [__import__(m).__version__ for m in ('ipykernel', 'IPython', 'ipywidgets')]"
    )
    print(f"\nPython 3.10 stack: {versions}")
    assert versions[0] == [3, 10] and versions[1].startswith("6.")


def _with_kernel_name(test: Callable[..., None]) -> Callable[..., None]:
    def run(name: str, kernel: KernelDriver, request: Any, server: StandInServer) -> None:
        test(name, request, server)

    return run


def _plain(test: Callable[..., None]) -> Callable[..., None]:
    def run(name: str, kernel: KernelDriver, request: Any, server: StandInServer) -> None:
        test(kernel, server)

    return run


def _kernel_only(test: Callable[..., None]) -> Callable[..., None]:
    def run(name: str, kernel: KernelDriver, request: Any, server: StandInServer) -> None:
        test(kernel)

    return run


SCENARIO: dict[str, Callable[..., Any]] = {
    # live view, Stop (click → reply and → server close, both < 0.5 s), the record
    "stop while the cell runs": _with_kernel_name(test_live_view.test_stop_while_the_cell_runs),
    "elapsed counter and live text": _plain(test_live_view.test_elapsed_counter_and_live_text),
    "headless run leaves one record": _plain(
        test_live_view.test_headless_run_streams_no_text_and_leaves_one_record
    ),
    "answer and record": _plain(test_requests.test_answer_streams_into_result_and_static_record),
    # interrupt
    "interrupt closes the response": _with_kernel_name(
        test_requests.test_interrupt_closes_the_response
    ),
    "two quick interrupts, autoawait off": _plain(
        test_composition.test_two_quick_interrupts_with_autoawait_off
    ),
    # timeouts
    "connect timeout": _kernel_only(test_requests.test_connect_timeout),
    "read timeout before the first chunk": _plain(
        test_requests.test_read_timeout_before_the_first_chunk
    ),
    "read timeout between chunks": _plain(
        test_requests.test_read_timeout_between_chunks_keeps_the_text
    ),
    "total timeout": _plain(test_requests.test_total_timeout_under_a_trickle),
    # the synchronous path, other magics, background, chat
    "autoawait off": _plain(test_requests.test_autoawait_off_runs_the_synchronous_path),
    "%%time above": _with_kernel_name(
        test_composition.test_time_above_ollama_sends_times_and_records
    ),
    "%%capture above": _plain(test_composition.test_capture_above_ollama_captures_the_record),
    "a loop of requests": _plain(test_composition.test_a_loop_of_requests_keeps_one_record_each),
    "background": _plain(test_features.test_background_returns_at_once_and_fills_the_result),
    "two background streams stopped": _plain(
        test_features.test_two_background_streams_each_stop_on_their_own
    ),
    "code into a new cell below": _plain(test_code.test_code_goes_into_a_new_cell_below),
    "code below, autoawait off": _plain(test_code.test_autoawait_off_puts_the_code_below),
    "%ollama fix": _plain(test_code.test_fix_on_plain_values),
    "unsendable input": lambda name, kernel, request, server: (
        test_composition.test_unsendable_input_is_a_usage_error_before_anything_is_drawn(
            kernel, server, "bad = 'x\\udc80'", "stand-in", "Say {bad}", ("lone surrogate",)
        )
    ),
}


@pytest.mark.colab
@pytest.mark.parametrize("step", list(SCENARIO))
@pytest.mark.parametrize("env", ["colab_kernel", "py310_kernel"])
def test_kernel_scenario(
    env: str, step: str, request: pytest.FixtureRequest, server: StandInServer
) -> None:
    kernel: KernelDriver = request.getfixturevalue(env)
    SCENARIO[step](env, kernel, request, server)
