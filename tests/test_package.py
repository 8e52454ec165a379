"""What ships: no editor or patch leftovers in the repository, and a wheel that holds
exactly the package's tracked files, the licence and its metadata."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEFTOVERS = ("*.orig", "*.rej", "*~", "*.bak", "*.swp")


def tracked(*paths: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", *paths], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    return [p for p in out.split("\0") if p]


@pytest.fixture(scope="module")
def git_checkout() -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (e.g. an unpacked sdist)")


def build(target: str, out: Path) -> Path:
    """Build with the project's backend, in this venv: no build isolation, no network."""
    if target == "wheel":
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--quiet", "-w", str(out), str(ROOT)]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "hatchling", "build", "-t", target, "-d", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=120)
    (built,) = out.glob("*.whl" if target == "wheel" else "*.tar.gz")
    return built


def test_no_leftover_files_are_tracked(git_checkout: None) -> None:
    found = [p for p in tracked() if any(fnmatch.fnmatch(Path(p).name, g) for g in LEFTOVERS)]
    assert not found, f"remove these from git (git rm): {found}"


def test_wheel_holds_the_package_and_the_licence(git_checkout: None, tmp_path: Path) -> None:
    wheel = build("wheel", tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    package = sorted(n for n in names if ".dist-info/" not in n)
    dist_info = sorted(n.split(".dist-info/", 1)[1] for n in names if ".dist-info/" in n)
    assert package == sorted(tracked("ollama_nb")), (
        "the wheel's files differ from `git ls-files ollama_nb`: "
        f"extra {sorted(set(package) - set(tracked('ollama_nb')))}, "
        f"missing {sorted(set(tracked('ollama_nb')) - set(package))}"
    )
    assert dist_info == ["METADATA", "RECORD", "WHEEL", "licenses/LICENSE"], dist_info


def test_sdist_holds_the_licence(git_checkout: None, tmp_path: Path) -> None:
    sdist = build("sdist", tmp_path)
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "pyproject.toml", "ollama_nb/__init__.py"} <= names
    assert not any(n.startswith((".venv", "artifacts", "notebooks/.work")) for n in names)
