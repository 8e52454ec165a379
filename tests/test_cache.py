"""The cache file (`_cache`) on real files: keys, appends from two processes at once, a
line cut short, unreadable files, read-only directories, another format, load time."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollama_nb import OllamaResult
from ollama_nb._cache import CacheFile, KeyMaker, entry_line, replayed_result, request_key

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def key_of(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def answer(text: str = "an answer", model: str = "m") -> OllamaResult:
    return OllamaResult(
        model=model,
        text=text,
        done_reason="stop",
        elapsed=1.5,
        eval_count=3,
        prompt="a prompt",
        final={"done_reason": "stop", "eval_count": 3, "context": [1, 2, 3]},
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user (nobody) can enter: pytest's tmp_path is root's own."""
    path = Path(tempfile.mkdtemp(prefix="ollama-nb-cache-"))
    path.chmod(0o777)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def as_other_user(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` (with `CacheFile`, `entry_line` and an answer `r`) in a new Python, as
    nobody when this runs as root: root ignores file modes, so a permission test as root
    would test nothing. `_cache` needs only the standard library; nobody cannot run the
    test environment's Python (it lives under /root), so it runs the system's."""
    user = None
    python = sys.executable
    if os.geteuid() == 0:
        user, python = NOBODY, shutil.which("python3", path="/usr/bin:/usr/local/bin")
        if python is None:
            pytest.skip("no system python3 to run as another user")
    prelude = (
        "import sys, types\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from ollama_nb._cache import CacheFile, entry_line\n"
        "r = types.SimpleNamespace(model='m', text='t', thinking='', done_reason='stop',"
        " elapsed=1.0, ttft=None, eval_count=1, prompt_eval_count=1, tokens_per_second=None,"
        " chunks=1, prompt='p', settings={}, final={})\n"
    )
    return subprocess.run(
        [python, "-c", prelude + code], capture_output=True, text=True, user=user, timeout=60
    )


# -- the key ------------------------------------------------------------------------------


def test_key_is_the_content_never_host_timeouts_or_keep_alive() -> None:
    body = {"model": "m", "prompt": "p", "stream": True, "options": {"temperature": 0}}
    base = request_key("/api/generate", body, None)
    assert re.fullmatch("[0-9a-f]{64}", base)
    assert request_key("/api/generate", {**body, "keep_alive": "10m"}, None) == base
    assert request_key("/api/generate", {**body, "stream": False}, None) == base
    for changed in (
        {**body, "prompt": "q"},
        {**body, "model": "n"},
        {**body, "system": "s"},
        {**body, "options": {"temperature": 1}},
        {**body, "think": True},
        {**body, "format": "json"},
        {**body, "images": ["aGVsbG8="]},
    ):
        assert request_key("/api/generate", changed, None) != base, changed
    assert request_key("/api/chat", body, None) != base
    assert request_key("/api/generate", body, re.compile("x")) != base
    # A batch's keys (everything hashed once, the prompt last) equal single requests' keys.
    assert KeyMaker("/api/generate", {**body, "prompt": "other"}, None).key("p") == base


def test_the_same_request_to_an_openai_server_has_a_key_of_its_own(tmp_path: Path) -> None:
    """An answer recorded from Ollama is never replayed for an OpenAI-compatible server
    (and back): the key covers which API the request went to; the host does not."""
    import asyncio

    from ollama_nb._request import Ask, build

    def key(host: str, api: str) -> str:
        ask = Ask(prompt="p", model="m", host=host, api=api, cache=str(tmp_path / "a.jsonl"))
        prepared = asyncio.run(build(ask, configured={}))
        assert prepared.caching is not None
        return prepared.caching.key

    ollama = key("http://127.0.0.1:9", "ollama")
    assert key("http://10.0.0.1:9", "ollama") == ollama  # the host is not part of it
    openai = key("http://127.0.0.1:9/v1", "auto")
    assert openai != ollama
    assert key("http://127.0.0.1:9", "openai") == openai


def test_an_entry_holds_no_image_bytes_host_or_context() -> None:
    image = "aGVsbG8gd29ybGQ=" * 100
    body = {"model": "m", "prompt": "p", "images": [image]}
    key = request_key("/api/generate", body, None)
    result = answer()
    result.host = "http://user:secret@example.com:11434"
    line = entry_line(key, result, "/api/generate")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    for absent in (image.encode(), b"secret", b"example.com", b"context"):
        assert absent not in line
    assert request_key("/api/generate", {**body, "images": [image + "A"]}, None) != key


# -- appends ------------------------------------------------------------------------------

WRITER = """
import hashlib, sys
from ollama_nb import OllamaResult
from ollama_nb._cache import CacheFile, entry_line
path, who = sys.argv[1], sys.argv[2]
cache = CacheFile(path)
for n in range(1000):
    text = (who + str(n) + " ") * (1 + n % 50)  # lines of different lengths
    result = OllamaResult(model="m", text=text, done_reason="stop", prompt=who)
    key = hashlib.sha256(f"{who}{n}".encode()).hexdigest()
    assert cache.put(entry_line(key, result, "/api/generate"))
"""


def test_two_processes_appending_at_once_lose_and_mix_no_line(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), who], env=env)
        for who in ("p1", "p2")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    entries = [json.loads(line) for line in lines[:-1]]  # every line is one whole entry
    assert len(entries) == 2000
    for who in ("p1", "p2"):
        mine = [e for e in entries if e["prompt"] == who]
        assert len(mine) == 1000
        # each writer's entries in its own order, each text whole
        texts = [e["text"] for e in mine]
        assert texts == [(who + str(n) + " ") * (1 + n % 50) for n in range(1000)]
    assert len(CacheFile(str(path))) == 2000


def test_a_later_entry_for_a_key_wins(tmp_path: Path) -> None:
    cache = CacheFile(str(tmp_path / "c.jsonl"))
    cache.put(entry_line(key_of(1), answer("first"), "/api/generate"))
    assert cache.get(key_of(1))["text"] == "first"
    CacheFile(cache.path).put(entry_line(key_of(1), answer("second"), "/api/generate"))
    assert cache.get(key_of(1))["text"] == "second"  # appended by another: seen
    assert len(cache) == 1


def test_lookups_in_any_order_read_each_entry_whole(tmp_path: Path) -> None:
    """A lookup just after the last one's bytes reads ahead (`READ_AHEAD`), so that the
    next entries cost no read: in any order, and for an entry longer than one read, each
    comes back whole; one appended later is found once the file is looked at again."""
    from ollama_nb._cache import READ_AHEAD

    cache = CacheFile(str(tmp_path / "c.jsonl"))
    texts = {n: f"answer {n} " + "é" * (n * 997 % 3000) for n in range(120)}
    texts[7] = "long " * READ_AHEAD
    for n, text in texts.items():
        cache.put(entry_line(key_of(n), answer(text), "/api/generate"))
    cache.refresh()
    shuffled = random.Random(1).sample(list(texts), len(texts))
    for order in (list(texts), list(reversed(texts)), shuffled):
        assert [cache.get(key_of(n), refresh=False)["text"] for n in order] == [
            texts[n] for n in order
        ]
    cache.put(entry_line(key_of(500), answer("new"), "/api/generate"))
    assert cache.get(key_of(500), refresh=False) is None  # not indexed yet
    assert cache.get(key_of(500))["text"] == "new"


def test_a_lookup_reads_the_file_as_another_kernel_rewrote_it(tmp_path: Path) -> None:
    """Bytes read ahead for earlier lookups are not reused once the file is looked at
    again: another kernel may have emptied it and recorded anew (here at the same
    offsets, so that the index still points at whole lines)."""
    path = str(tmp_path / "c.jsonl")
    mine, other = CacheFile(path), CacheFile(path)
    for n in range(3):
        mine.put(entry_line(key_of(n), answer(f"old {n}"), "/api/generate", when=0))
    assert [mine.get(key_of(n))["text"] for n in range(3)] == ["old 0", "old 1", "old 2"]
    other.clear()
    for n in range(3):
        other.put(entry_line(key_of(n), answer(f"new {n}"), "/api/generate", when=0))
    assert [mine.get(key_of(n))["text"] for n in range(3)] == ["new 0", "new 1", "new 2"]


def test_an_entry_is_read_as_json_loads_reads_its_line(tmp_path: Path) -> None:
    """Whitespace after an entry is allowed; anything else makes it a damaged line,
    skipped as if it was not there."""
    path = tmp_path / "c.jsonl"
    lines = [entry_line(key_of(n), answer(f"a{n}"), "/api/generate") for n in range(3)]
    path.write_bytes(lines[0][:-1] + b" \t\r\n" + lines[1][:-1] + b" x\n" + lines[2])
    cache = CacheFile(str(path))
    assert [cache.get(key_of(n)) and cache.get(key_of(n))["text"] for n in range(3)] == [
        "a0",
        None,
        "a2",
    ]


def test_a_line_cut_short_is_skipped_once_and_the_next_write_starts_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.jsonl"
    cache = CacheFile(str(path))
    cache.put(entry_line(key_of(1), answer("one"), "/api/generate"))
    whole = entry_line(key_of(2), answer("two"), "/api/generate")
    with open(path, "ab") as file:
        file.write(whole[: len(whole) // 2])  # a crash mid-write
    reader = CacheFile(str(path))
    assert reader.get(key_of(1))["text"] == "one"
    assert reader.get(key_of(2)) is None
    assert reader.get(key_of(1)) is not None
    warned = capsys.readouterr().err.strip().splitlines()
    assert len(warned) == 1 and "cut short" in warned[0] and str(path) in warned[0]
    assert reader.put(entry_line(key_of(3), answer("three"), "/api/generate"))
    lines = path.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["text"] == "three"  # on a line of its own
    fresh = CacheFile(str(path))
    assert [fresh.get(key_of(n)) is not None for n in (1, 2, 3)] == [True, False, True]
    assert "is not" not in capsys.readouterr().err  # the cut line is not "another format"


def test_a_line_cut_short_as_the_first_write_is_not_another_format(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    whole = entry_line(key_of(1), answer(), "/api/generate")
    path.write_bytes(whole[:20])
    cache = CacheFile(str(path))
    assert cache.put(entry_line(key_of(2), answer("two"), "/api/generate"))
    assert CacheFile(str(path)).get(key_of(2))["text"] == "two"


# -- files that cannot be used ------------------------------------------------------------


def test_a_file_of_another_format_is_named_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"some": "other data"}\n')
    cache = CacheFile(str(path))
    assert cache.get(key_of(1)) is None
    assert not cache.put(entry_line(key_of(1), answer(), "/api/generate"))
    assert path.read_text() == '{"some": "other data"}\n'
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(path) in err[0] and "not an ollama_nb cache file" in err[0]
    with pytest.raises(ValueError, match="not an ollama_nb cache file"):
        cache.clear()
    assert path.read_text() == '{"some": "other data"}\n'


def test_an_unreadable_file_is_one_warning(shared_dir: Path) -> None:
    path = shared_dir / "c.jsonl"
    CacheFile(str(path)).put(entry_line(key_of(1), answer(), "/api/generate"))
    path.chmod(0o000)
    done = as_other_user(
        f"c = CacheFile({str(path)!r})\n"
        f"print(c.get({key_of(1)!r}), c.get({key_of(1)!r}))\n"
        f"print(c.put(entry_line({key_of(2)!r}, r, '/api/generate')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "False"]
    err = done.stderr.strip().splitlines()
    assert len(err) == 2, err  # one for reading, one for writing: never a traceback
    assert "cannot read it (Permission denied)" in err[0] and str(path) in err[0]
    assert "cannot write it (Permission denied)" in err[1]


def test_a_read_only_directory_is_one_warning(shared_dir: Path) -> None:
    shared_dir.chmod(0o555)
    path = shared_dir / "c.jsonl"
    done = as_other_user(
        f"c = CacheFile({str(path)!r})\n"
        f"print(c.get({key_of(1)!r}), c.put(entry_line({key_of(2)!r}, r, '/api/generate')),"
        f" c.put(entry_line({key_of(3)!r}, r, '/api/generate')))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "False", "False"]
    err = done.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert "cannot write it (Permission denied); answers are not recorded" in err[0]
    assert not path.exists()


# -- replay and size ----------------------------------------------------------------------


def test_a_replayed_entry_is_the_result_it_was_recorded_from(tmp_path: Path) -> None:
    cache = CacheFile(str(tmp_path / "c.jsonl"))
    recorded = answer("**bold** answer")
    recorded.ttft, recorded.tokens_per_second, recorded.chunks = 0.25, 12.5, 3
    cache.put(entry_line(key_of(1), recorded, "/api/generate"))
    replayed = replayed_result(cache.get(key_of(1)), "http://h:1", want_json=False)
    for name in ("model", "text", "done_reason", "elapsed", "ttft", "eval_count", "chunks",
                 "tokens_per_second", "prompt"):  # fmt: skip
        assert getattr(replayed, name) == getattr(recorded, name), name
    assert replayed.cached and not recorded.cached
    assert replayed.status.startswith(recorded.status + " · replayed (recorded ")
    assert re.search(r"recorded \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ with m\)$", replayed.status)
    assert replayed.record_metadata()["ollama_nb"]["replayed"] is True


def test_clear_empties_the_file(tmp_path: Path) -> None:
    cache = CacheFile(str(tmp_path / "c.jsonl"))
    for n in range(3):
        cache.put(entry_line(key_of(n), answer(), "/api/generate"))
    other = CacheFile(cache.path)
    assert len(other) == 3
    assert cache.clear() == 3
    assert os.path.getsize(cache.path) == 0
    assert other.get(key_of(1)) is None and len(other) == 0


def test_a_100_mb_file_opens_in_under_a_second(tmp_path: Path) -> None:
    """The issue's bound: the index is one pass of a regular expression, no JSON."""
    path = tmp_path / "big.jsonl"
    text = "word " * 180  # ~1 KB entries: ~100,000 of them
    sample = entry_line(key_of(0), answer(text), "/api/generate")
    count = 100 * 1024 * 1024 // len(sample) + 1
    with open(path, "wb") as file:
        for n in range(count):
            file.write(entry_line(key_of(n), answer(text), "/api/generate", when=0))
    assert path.stat().st_size >= 100 * 1024 * 1024
    cache = CacheFile(str(path))
    started, cpu = time.perf_counter(), time.process_time()
    cache.refresh()
    opened, opened_cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    for n in range(0, count, count // 1000):
        assert cache.get(key_of(n), refresh=False) is not None
    lookup = (time.perf_counter() - started) / 1000
    print(f"\n100 MB cache file ({count:,} entries): indexed in {opened:.3f} s"
          f" ({opened_cpu:.3f} s of CPU; load average {os.getloadavg()[0]:.1f}),"
          f" one lookup {lookup * 1e6:.1f} µs")  # fmt: skip
    assert len(cache) == count
    # CPU time: on a shared machine the wall time also counts other processes' turns.
    assert opened_cpu < 1.0


def test_a_batch_stores_a_replayed_entry_as_the_result_it_replays(tmp_path: Path) -> None:
    """`ResultColumns.put_entry` (no OllamaResult built) reads back field for field as the
    replayed result stored the ordinary way."""
    from ollama_nb._batch_store import ResultColumns

    cache = CacheFile(str(tmp_path / "c.jsonl"))
    recorded = answer("columns")
    recorded.final = {"done_reason": "stop", "eval_count": 3, "eval_duration": 10**8}
    recorded.tokens_per_second, recorded.ttft, recorded.chunks = 3 / 10**8 * 1e9, 0.1, 3
    settings = {"options": {}, "think": None, "format": None}
    recorded.settings = settings
    cache.put(entry_line(key_of(1), recorded, "/api/generate"))
    entry = cache.get(key_of(1))
    fast = ResultColumns(1, model="m", host="h", settings=settings)
    assert fast.put_entry(0, entry) and not fast.kept
    slow = ResultColumns(1, model="m", host="h", settings=settings)
    slow.put(0, replayed_result(entry, "h", want_json=False))
    assert not slow.kept  # the columns hold it either way
    a, b = fast.get(0), slow.get(0)
    assert a.__dict__ == b.__dict__ and a.cached and a.status == b.status
    assert fast.figures(0) == slow.figures(0) and fast.figures(0).cached
    odd = {**entry, "thinking": "hm"}  # something put_entry leaves to the ordinary way
    assert not ResultColumns(1, model="m", host="h", settings=settings).put_entry(0, odd)


def test_the_progress_line_counts_replayed_elements() -> None:
    from ollama_nb._batch_view import BatchStats

    stats = BatchStats(model="m", total=10, done=6, replayed=4, in_flight=2, elapsed=1.0)
    assert stats.line().startswith("6 / 10 · 4 replayed · 2 in flight")
    assert "replayed" not in BatchStats(model="m", total=10, done=6).line()
