"""What a front end keeps of a cell: its outputs, built from the IOPub messages the way
JupyterLab applies them, and the bytes they add to the saved .ipynb (nbformat's writer).

Rules applied, in message order:
- an Output widget whose `msg_id` state equals the cell's msg_id captures the cell's
  outputs (they go to the widget, not the cell), as @jupyter-widgets/output does;
- `clear_output` empties the cell's outputs (with `wait`, at the next output);
- `update_display_data` replaces the data of outputs with the same display_id;
- consecutive `stream` messages of one name merge into one output.
"""

from __future__ import annotations

from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")


def cell_outputs(messages: list[Any], msg_id: str) -> list[dict[str, Any]]:
    """The outputs a front end shows for the cell `msg_id` once every message arrived.

    `messages` are kernel_driver `Msg`s (IOPub and shell, any order of arrival)."""
    outputs: list[dict[str, Any]] = []
    capturing: set[str] = set()  # comm ids of Output widgets capturing this cell
    clear_pending = False
    for msg in messages:
        if msg.channel != "iopub":
            continue
        kind, content = msg.type, msg.content
        if kind == "comm_msg":
            state = content.get("data", {}).get("state", {})
            if "msg_id" in state:
                if state["msg_id"] == msg_id:
                    capturing.add(content["comm_id"])
                else:
                    capturing.discard(content["comm_id"])
            continue
        if msg.parent_id != msg_id:
            continue
        if kind == "clear_output":
            if capturing:
                continue
            if content.get("wait"):
                clear_pending = True
            else:
                outputs.clear()
            continue
        if kind == "update_display_data":
            display_id = content.get("transient", {}).get("display_id")
            for out in outputs:
                if display_id and out.get("_display_id") == display_id:
                    out["data"], out["metadata"] = content["data"], content.get("metadata", {})
            continue
        if kind not in OUTPUT_TYPES or capturing:
            continue
        if clear_pending:
            outputs.clear()
            clear_pending = False
        if kind == "stream" and outputs and outputs[-1].get("name") == content["name"]:
            outputs[-1]["text"] += content["text"]
            continue
        out = _output(kind, content)
        outputs.append(out)
    for out in outputs:
        out.pop("_display_id", None)
    return outputs


def _output(kind: str, content: dict[str, Any]) -> dict[str, Any]:
    if kind == "stream":
        return {"output_type": "stream", "name": content["name"], "text": content["text"]}
    if kind == "error":
        return {
            "output_type": "error",
            "ename": content["ename"],
            "evalue": content["evalue"],
            "traceback": content["traceback"],
        }
    out: dict[str, Any] = {
        "output_type": kind,
        "data": content["data"],
        "metadata": content.get("metadata", {}),
    }
    if kind == "execute_result":
        out["execution_count"] = content.get("execution_count")
    display_id = content.get("transient", {}).get("display_id")
    if display_id:
        out["_display_id"] = display_id
    return out


def saved_bytes(source: str, outputs: list[dict[str, Any]], execution_count: int = 1) -> int:
    """Bytes that one cell's outputs (and execution count) add to a notebook nbformat
    writes, over the same cell unexecuted: what the .ipynb on disk grows by."""
    bare = new_notebook(cells=[new_code_cell(source)])
    ran = new_notebook(
        cells=[
            new_code_cell(
                source,
                execution_count=execution_count,
                outputs=[new_output(**_as_nbformat(o)) for o in outputs],
            )
        ]
    )
    return len(nbformat.writes(ran).encode()) - len(nbformat.writes(bare).encode())


def _as_nbformat(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if not k.startswith("_")}


def jupyter_ai_outputs(answer: str, model: str) -> list[dict[str, Any]]:
    """What a jupyter-ai `%%ai` cell leaves for the same answer: an execute_result with
    the answer as text/markdown (IPython's Markdown object) and jupyter_ai metadata."""
    return [
        {
            "output_type": "execute_result",
            "execution_count": 1,
            "data": {
                "text/markdown": answer,
                "text/plain": "<IPython.core.display.Markdown object>",
            },
            "metadata": {"jupyter_ai": {"provider_id": "ollama", "model_id": model}},
        }
    ]
