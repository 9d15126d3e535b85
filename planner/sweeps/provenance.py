"""Where a result came from: the planner's git commit, Python and the packages that made it.

Why: a results.csv argued over a month later must say which code produced it; the version
number alone does not change between commits.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("wafer-planner", "numpy", "pandas", "scipy", "simpy", "pydantic", "pyyaml", "click", "matplotlib",
            "xlsxwriter", "tqdm", "distributed")


def git_commit(root: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the planner runs from; (None, None) when it is not a git
    checkout (an installed wheel) or git is missing."""
    root = root or Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def versions() -> dict[str, str | None]:
    """Installed version of each package that shapes the results (None: not installed)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


BUILD_INFO = Path(__file__).resolve().parents[1] / "_build.json"  # written by setup.py into installs


def built_from() -> tuple[str | None, bool | None]:
    """(commit, dirty) an installed package was built from (setup.py records it when the build
    ran in a git checkout); (None, None) when unknown (built from an sdist or a copy)."""
    try:
        info = json.loads(BUILD_INFO.read_text(encoding="utf-8"))
        return info.get("git_commit"), info.get("git_dirty")
    except (OSError, ValueError, AttributeError):
        return None, None


def provenance() -> dict:
    """run.json's record of the code: the checkout's commit, else the one the install was built
    from (``commit_source`` says which), and whether the simulator ran compiled (same numbers;
    it explains the speed)."""
    commit, dirty = git_commit()
    source = "checkout" if commit else None
    if commit is None:
        commit, dirty = built_from()
        source = "install" if commit else None
    from planner.sim import compiled  # (here: setup.py loads this file with only the standard library)
    return {"git_commit": commit, "git_dirty": dirty, "commit_source": source,
            "simulator": "compiled" if compiled() else "python", "python": sys.version.split()[0],
            "platform": platform.platform(), "packages": versions()}
