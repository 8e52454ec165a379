"""notebooks/open's working copies: made once, replaced only when the tutorial changed,
an edited copy kept aside rather than overwritten."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "_working_copies", ROOT / "notebooks" / "_working_copies.py"
)
assert _spec and _spec.loader
working_copies = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(working_copies)


def test_copies_follow_their_tutorials_without_losing_edits(tmp_path: Path) -> None:
    originals, work = tmp_path / "notebooks", tmp_path / "notebooks" / ".work"
    originals.mkdir()
    (originals / "a.ipynb").write_text("a1")
    (originals / "b.ipynb").write_text("b1")
    assert working_copies.sync(originals, work, stamp="S1") == [
        "a.ipynb: working copy made",
        "b.ipynb: working copy made",
    ]
    (work / "a.ipynb").write_text("a1, run by the user")
    assert working_copies.sync(originals, work, stamp="S2") == []  # nothing changed upstream
    assert (work / "a.ipynb").read_text() == "a1, run by the user"

    (originals / "a.ipynb").write_text("a2")
    (originals / "b.ipynb").write_text("b2")
    assert working_copies.sync(originals, work, stamp="S3") == [
        "a.ipynb: the tutorial changed; your copy is kept as a.yours-S3.ipynb",
        "b.ipynb: the tutorial changed; copy updated",
    ]
    assert (work / "a.ipynb").read_text() == "a2"
    assert (work / "a.yours-S3.ipynb").read_text() == "a1, run by the user"
    assert (work / "b.ipynb").read_text() == "b2"
    assert sorted(p.name for p in originals.glob("*.ipynb")) == ["a.ipynb", "b.ipynb"]


def test_a_copy_it_did_not_make_is_left_alone(tmp_path: Path) -> None:
    originals, work = tmp_path / "o", tmp_path / "w"
    originals.mkdir()
    work.mkdir()
    (originals / "a.ipynb").write_text("a1")
    (work / "a.ipynb").write_text("mine")
    assert working_copies.sync(originals, work) == []
    assert (work / "a.ipynb").read_text() == "mine"
