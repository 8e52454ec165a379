"""A batch in terminal IPython (the synchronous path): progress lines and the summary as
text, Ctrl-C closes every response and `_ollama` holds the partial batch."""

from __future__ import annotations

import pexpect
from test_terminal import run

from ollama_nb.testing import StandInServer


def test_batch_in_the_terminal(ipython: pexpect.spawn, server: StandInServer) -> None:
    ipython.sendline("items = ['a', 'b', 'c']")
    run(ipython, "stand-in --each items --parallel 2", "Say {item}.")
    ipython.expect(r"stand-in · 3 answers, all finished · ")
    ipython.expect(r"\[2\] stop: \S")  # the answer's start (the engine's under --forward)
    ipython.sendline("print(type(_ollama).__name__, [r.prompt for r in _ollama])")
    ipython.expect(r"OllamaBatch \['Say a\.', 'Say b\.', 'Say c\.'\]")


def test_ctrl_c_stops_a_batch(ipython: pexpect.spawn, server: StandInServer) -> None:
    server.configure(num_parallel=2, token_interval=0.05, tokens=2000)
    ipython.sendline("items = list(range(10))")
    run(ipython, "stand-in --each items --parallel 2", "Talk about {item}.")
    first = server.wait_for_request("/api/generate", timeout=10)
    second = server.wait_for_request("/api/generate", timeout=10)
    ipython.expect(r"\[stand-in\] 10 prompts")
    ipython.sendintr()
    ipython.expect(r"KeyboardInterrupt: the batch was interrupted")
    for record in (first, second):
        assert record.wait_closed(5) and record.disconnected
    ipython.sendline("print(_ollama.counts())")
    ipython.expect(r"\{'skipped': 8, 'interrupted': 2\}")
