"""ollama_nb: a `%%ollama` cell magic that streams local Ollama models into notebooks.

    %load_ext ollama_nb

    %%ollama llama3.2 --read-timeout 60
    Explain NDJSON in one sentence.

    ollama_nb.generate("Explain NDJSON in one sentence.", "llama3.2")   # from Python

The data path reads in order: `_magics` (the cell) → `_stream` (drives one request) →
`_client` (HTTP, timeouts, errors) → `_view` (what the notebook shows); `_request` builds
a request for both the magic and the Python API (`_api`). A batch (`map`, `amap`,
`%%ollama --each`) reads its elements in `_elements`, runs in `_batch` and ends as an
`OllamaBatch` (`_batch_result`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import (
    OllamaConnectionError,
    OllamaError,
    OllamaModelNotFoundError,
    OllamaResponseError,
    OllamaTimeoutError,
)

if TYPE_CHECKING:
    from ._api import agenerate, amap, embed, generate, map
    from ._batch_result import OllamaBatch
    from ._magics import OllamaMagics
    from ._result import OllamaResult

__all__ = [
    "OllamaBatch",
    "OllamaConnectionError",
    "OllamaError",
    "OllamaMagics",
    "OllamaModelNotFoundError",
    "OllamaResponseError",
    "OllamaResult",
    "OllamaTimeoutError",
    "agenerate",
    "amap",
    "embed",
    "generate",
    "load_ipython_extension",
    "map",
    "unload_ipython_extension",
]


_API = ("generate", "agenerate", "map", "amap", "embed")


def __getattr__(name: str) -> Any:
    # OllamaMagics pulls in IPython and ipywidgets, the API httpx, OllamaResult and
    # OllamaBatch markdown-it: import them only when asked for, so that `import ollama_nb`
    # stays cheap.
    if name == "OllamaResult":
        from ._result import OllamaResult

        return OllamaResult
    if name == "OllamaMagics":
        from ._magics import OllamaMagics

        return OllamaMagics
    if name in _API:
        from . import _api

        return getattr(_api, name)
    if name == "OllamaBatch":
        from ._batch_result import OllamaBatch

        return OllamaBatch
    raise AttributeError(name)


def load_ipython_extension(ipython: Any) -> None:
    from ._errors import ErrorRecorder
    from ._magics import OllamaMagics
    from ._transform import make_transformer

    if "OllamaMagics" in ipython.magics_manager.registry:
        return  # %load_ext twice, or %reload_ext: keep the session's settings and history
    ipython.register_magics(OllamaMagics(shell=ipython))
    ErrorRecorder(ipython).register()  # what `{Err}` reads
    transformer = make_transformer(ipython)
    # First, so that IPython's prompt-stripping cleanups never touch the prompt text.
    ipython.input_transformers_cleanup.insert(0, transformer)
    ipython._ollama_nb_transformer = transformer


def unload_ipython_extension(ipython: Any) -> None:
    transformer = getattr(ipython, "_ollama_nb_transformer", None)
    if transformer in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(transformer)
    ipython._ollama_nb_transformer = None
    from ._errors import recorder_of

    recorder = recorder_of(ipython)
    if recorder is not None:
        recorder.unregister()
    magics = ipython.magics_manager.registry.pop("OllamaMagics", None)
    if magics is not None:
        for kind in ("line", "cell"):
            table = ipython.magics_manager.magics[kind]
            if getattr(table.get("ollama"), "__self__", None) is magics:
                del table["ollama"]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
