"""Working copies of the tutorials, for `notebooks/open`.

    python notebooks/_working_copies.py ORIGINALS_DIR WORK_DIR

JupyterLab saves what you run, so the tutorials open as copies in WORK_DIR (git-ignored)
and the committed notebooks stay as they are. A missing copy is made. A copy is replaced
only when its tutorial changed since the copy was made; if the copy changed too (you
edited or ran it), it is first kept beside the new one under a dated name. Nothing is
ever deleted. Prints one line per copy made, replaced or kept aside.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

STATE = ".made-from.json"  # per copy: the hash of the tutorial it was made from, and its own


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sync(originals: Path, work: Path, stamp: str | None = None) -> list[str]:
    """Bring the copies in ``work`` up to date with ``originals``; returns what was done."""
    work.mkdir(parents=True, exist_ok=True)
    state_file = work / STATE
    state: dict[str, dict[str, str]] = (
        json.loads(state_file.read_text()) if state_file.exists() else {}
    )
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    done: list[str] = []
    for original in sorted(originals.glob("*.ipynb")):
        name, copy, source = original.name, work / original.name, digest(original)
        made = state.get(name)
        if copy.exists() and made is None:
            # a copy this script did not make: keep it as it is, and follow from here on
            state[name] = {"original": source, "copy": digest(copy)}
            continue
        if copy.exists() and made is not None and made["original"] == source:
            continue  # the tutorial did not change: the copy (and your edits) stay
        if copy.exists():
            if digest(copy) != made["copy"]:  # type: ignore[index]
                aside = copy.with_name(f"{copy.stem}.yours-{stamp}.ipynb")
                copy.rename(aside)
                done.append(f"{name}: the tutorial changed; your copy is kept as {aside.name}")
            else:
                done.append(f"{name}: the tutorial changed; copy updated")
        else:
            done.append(f"{name}: working copy made")
        shutil.copyfile(original, copy)
        state[name] = {"original": source, "copy": source}
    state_file.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    return done


def main(argv: list[str]) -> None:
    originals, work = (Path(a) for a in argv)
    for line in sync(originals, work):
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
