"""Replay: finished answers kept in a JSON Lines file, looked up by the request's content.

- The key (`KeyMaker`) is the SHA-256 of what decides the answer: the API path, the
  request body as sent (model, prompt or messages, system, format, options, think) with
  each image replaced by its hash, and the stop-on pattern. Host, timeouts, retries,
  keep-alive and `stream` are left out.
- The file (`CacheFile`) is only ever appended to: each entry is one line, written whole
  with one `write` under an exclusive `flock`, so several kernels (and parallel requests)
  can share it. Every line starts with `ENTRY_PREFIX` and the key, which lets the index be
  built with one regular-expression pass over the file (a 100 MB file in well under a
  second) without parsing any JSON; an entry is parsed only when it is replayed. A later
  line for a key wins. A last line cut short (a crash mid-write) is skipped with one
  warning, and the next write starts on a new line.
- Problems with the file never stop a request: an unreadable file or a read-only
  directory is one warning line and the request runs (and, in `replay` mode, misses);
  a file that is not a cache (another format) is named in one line and left untouched.

What is written: the key, when, the model, the path, the prompt as sent, and the
answer's text, thinking, reason, counts and timings. Never the host, headers, an API
key or image bytes (the key holds their hashes only).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: the package imports; a cache file is refused (cache_file)
    fcntl = None  # type: ignore[assignment]

from ._ndjson import loads

MODES = ("use", "replay", "refresh")
FINISHED = ("stop", "length")  # the only answers kept
ENTRY_PREFIX = b'{"ollama_nb_cache":1,"key":"'
_KEY = re.compile(rb'[0-9a-f]{64}"')
# The result's fields an entry keeps (besides `final`), all plain JSON values.
KEPT = ("model", "text", "thinking", "done_reason", "elapsed", "ttft", "eval_count",
        "prompt_eval_count", "tokens_per_second", "chunks", "prompt", "settings")  # fmt: skip
# A lookup that follows the previous one in the file reads this much at once (see `_line`).
READ_AHEAD = 64 * 1024
FOREIGN = (
    "this is not an ollama_nb cache file (its first line is not an entry): it is neither"
    " read nor written; name another file"
)
_IGNORED = ("stream", "keep_alive", "prompt")  # the prompt is hashed last (see KeyMaker)


def check_mode(value: Any, where: str = "cache_mode") -> str:
    if value not in MODES:
        raise ValueError(f"{where} takes {', '.join(map(repr, MODES))}, not {value!r}")
    return str(value)


def _hashed_images(images: Any) -> Any:
    if not isinstance(images, list):
        return images
    return ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in images]


def _without_image_bytes(body: Mapping[str, Any]) -> dict[str, Any]:
    content = {k: v for k, v in body.items() if k not in _IGNORED}
    if "images" in content:
        content["images"] = _hashed_images(content["images"])
    messages = content.get("messages")
    if isinstance(messages, list):
        content["messages"] = [
            {**m, "images": _hashed_images(m["images"])} if isinstance(m, dict) and "images" in m
            else m
            for m in messages
        ]  # fmt: skip
    return content


class KeyMaker:
    """Keys of requests that differ only in their prompt (a batch's elements): everything
    else is hashed once."""

    def __init__(self, path: str, payload: Mapping[str, Any], stop_on: re.Pattern[str] | None):
        stop = None if stop_on is None else [stop_on.pattern, int(stop_on.flags)]
        head = {"path": path, "body": _without_image_bytes(payload), "stop_on": stop}
        text = json.dumps(head, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        self._hash = hashlib.sha256(text.encode("utf-8", "surrogatepass") + b"\x00")

    def key(self, prompt: str | None) -> str:
        hasher = self._hash.copy()
        if prompt is not None:
            hasher.update(prompt.encode("utf-8", "surrogatepass"))
        return hasher.hexdigest()


def request_key(path: str, payload: Mapping[str, Any], stop_on: re.Pattern[str] | None) -> str:
    prompt = payload.get("prompt")
    return KeyMaker(path, payload, stop_on).key(prompt if isinstance(prompt, str) else None)


def entry_line(key: str, result: Any, path: str, when: float | None = None) -> bytes:
    """One entry, as the line written (with its newline)."""
    fields = {name: getattr(result, name) for name in KEPT}
    fields["final"] = {k: v for k, v in (result.final or {}).items() if k != "context"}
    rest = {"recorded": _iso(time.time() if when is None else when), "path": path, **fields}
    body = json.dumps(rest, ensure_ascii=False, separators=(",", ":"))
    return ENTRY_PREFIX + f'{key}",'.encode() + body[1:].encode("utf-8", "surrogatepass") + b"\n"


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


class CacheFile:
    """One cache file: a lazy index (key -> where its last entry is), lookups, appends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.hits = 0  # this session's lookups that found an entry
        self.misses = 0
        self.foreign = False  # the file is not a cache: neither read nor written
        self._index: dict[str, tuple[int, int]] = {}
        self._scanned = 0  # bytes of the file indexed
        self._identity: tuple[int, int] | None = None
        self._fd: int | None = None
        self._warned: set[str] = set()
        self._block = b""  # the bytes the last lookup read (`_line`), and where they start
        self._block_at = 0

    # -- warnings ---------------------------------------------------------------------

    def warn(self, message: str) -> None:
        """One line, once per file and message: a cache problem never stops a request."""
        if message not in self._warned:
            self._warned.add(message)
            print(f"ollama_nb: cache {self.path}: {message}", file=sys.stderr)

    # -- reading ----------------------------------------------------------------------

    def _forget(self) -> None:
        self._index.clear()
        self._scanned = 0
        self._identity = None
        self._block = b""
        self.foreign = False
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def refresh(self) -> None:
        """Index what was appended since the last look (by any process)."""
        # The block may hold the start of a line being written then, indexed from now on.
        self._block = b""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._forget()
            return
        except OSError as exc:
            self.warn(f"cannot read it ({exc.strerror or exc}); nothing is replayed")
            self._forget()
            return
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._scanned:  # new or emptied
            self._forget()
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except OSError as exc:
                self.warn(f"cannot read it ({exc.strerror or exc}); nothing is replayed")
                return
            self._identity = identity
        if self.foreign or stat.st_size == self._scanned or self._fd is None:
            return
        fd = self._fd
        _lock(fd, shared=True)  # writers hold an exclusive lock: only whole lines are seen
        try:
            data = os.pread(fd, os.fstat(fd).st_size - self._scanned, self._scanned)
        finally:
            _unlock(fd)
        self._index_lines(data)

    def _index_lines(self, data: bytes) -> None:
        base = self._scanned
        if base == 0 and data and not _may_be_entry(data[: len(ENTRY_PREFIX)]):
            self.foreign = True
            self.warn(FOREIGN)
            return
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self.warn(
                f"its last line ({len(data) - end} bytes) is cut short, as a crash mid-write"
                " leaves it: skipped"
            )
        # Each entry starts a line: find them by "newline + prefix" (a C search), and
        # take each one's span to the next entry's start (a read cuts at its newline).
        after, size = b"\n" + ENTRY_PREFIX, len(ENTRY_PREFIX)
        starts = [0] if data.startswith(ENTRY_PREFIX) else []
        at = data.find(after, 0, end)
        while at >= 0:
            starts.append(at + 1)
            at = data.find(after, at + 1, end)
        starts.append(end)
        index, key_ok = self._index, _KEY.fullmatch
        for start, stop in itertools.pairwise(starts):
            key = data[start + size : start + size + 65]
            if key_ok(key):
                index[key[:64].decode()] = (base + start, stop - start)
        self._scanned = base + end

    def get(self, key: str, *, refresh: bool = True) -> dict[str, Any] | None:
        """The last entry recorded for `key`, or None."""
        if refresh:
            self.refresh()
        where = self._index.get(key)
        if where is None or self._fd is None:
            return None
        try:
            entry = loads(self._line(self._fd, *where), "surrogatepass")
        except (OSError, ValueError):
            return None  # a damaged line: as if it was not there
        return entry if isinstance(entry, dict) and entry.get("key") == key else None

    def _line(self, fd: int, start: int, size: int) -> bytes:
        """The line at `start`, within its indexed span of `size` bytes (indexed bytes:
        appends never change them)."""
        block, offset = self._block, start - self._block_at
        if offset < 0 or offset + size > len(block):
            # A lookup just after the last one's bytes reads ahead: a batch replays its
            # entries mostly in the order they were recorded, so one system call serves
            # the ~100 next entries (a read each was ~15% of a replayed batch's time). A
            # lookup elsewhere reads its span alone.
            ahead = READ_AHEAD if 0 <= offset - len(block) <= READ_AHEAD else 0
            block = self._block = os.pread(fd, max(size, ahead), start)
            self._block_at, offset = start, 0
        end = block.find(b"\n", offset, offset + size)
        return block[offset : end if end >= 0 else offset + size]

    def has(self, key: str) -> bool:
        """An entry for `key` is indexed (no refresh, nothing read)."""
        return key in self._index

    def __len__(self) -> int:
        self.refresh()
        return len(self._index)

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    # -- writing ----------------------------------------------------------------------

    def put(self, line: bytes) -> bool:
        """Append one entry line, whole, under an exclusive lock; False (and one warning)
        when it cannot be written."""
        if self.foreign:
            return False
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self.warn(f"cannot write it ({exc.strerror or exc}); answers are not recorded")
            return False
        try:
            _lock(fd)
            size = os.fstat(fd).st_size
            if size and not _may_be_entry(os.pread(fd, len(ENTRY_PREFIX), 0)):
                self.foreign = True
                self.warn(FOREIGN)
                return False
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # after a line cut short: start on a new one
            view = memoryview(line)
            while view:  # one write for a regular file; a loop in case it is cut
                view = view[os.write(fd, view) :]
            return True
        except OSError as exc:
            self.warn(f"cannot write it ({exc.strerror or exc}); answers are not recorded")
            return False
        finally:
            os.close(fd)  # also releases the lock

    def clear(self) -> int:
        """Empty the file (under the lock); the number of entries it held."""
        entries = len(self)
        if self.foreign:
            raise ValueError(f"{self.path} is not an ollama_nb cache file: not emptied")
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ValueError(f"cannot empty {self.path}: {exc.strerror or exc}") from None
        try:
            _lock(fd)
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        self._forget()
        return entries


def _lock(fd: int, shared: bool = False) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _may_be_entry(head: bytes) -> bool:
    """The first bytes of a file are (the start of) an entry's: a first line cut short
    (a crash during the very first write) is not "another format"."""
    head = head.split(b"\n", 1)[0]
    size = min(len(head), len(ENTRY_PREFIX))
    return head[:size] == ENTRY_PREFIX[:size]


_FILES: dict[str, CacheFile] = {}


def cache_file(path: str | os.PathLike[str]) -> CacheFile:
    """The session's one `CacheFile` for `path` (relative to the current directory)."""
    if fcntl is None or not hasattr(os, "pread"):
        raise ValueError("the cache file needs a POSIX system (Linux, macOS): set no cache")
    full = os.path.abspath(os.fspath(path))
    found = _FILES.get(full)
    if found is None:
        found = _FILES[full] = CacheFile(full)
    return found


@dataclass
class Caching:
    """How one request uses the cache: which file, which mode, under which key."""

    file: CacheFile
    mode: str
    key: str
    path: str  # the API path, written with the entry

    def record(self, result: Any, key: str | None = None) -> None:
        """Keep a finished answer (never a stopped, failed or replayed one), under `key`
        (a batch element's) or the request's."""
        if result.error is None and result.done_reason in FINISHED and not result.cached:
            self.file.put(entry_line(key or self.key, result, self.path))


def shown_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it (as a notebook
    names its cache file), else as it is."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def first_line(prompt: str, limit: int = 80) -> str:
    line = next((part for part in prompt.splitlines() if part.strip()), "").strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def replayed_result(entry: Mapping[str, Any], host: str, want_json: bool) -> Any:
    """The `OllamaResult` an entry was recorded from, marked `cached`."""
    from ._result import OllamaResult

    fields = {name: entry[name] for name in KEPT if name in entry}
    result = OllamaResult(**fields, final=dict(entry.get("final") or {}), host=host)
    result.cached = True
    result.recorded_at = entry.get("recorded")
    if want_json:
        with contextlib.suppress(ValueError):
            result.json = json.loads(result.text)
    return result
