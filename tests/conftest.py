"""Shared test fixtures.

Where a test needs something the machine lacks (hwloc, ../shared, a Docker daemon), it is skipped with
the reason on a developer's machine, but fails in CI (CI=true), where .ci/run provides all of them: a
skip must never pass for a pass there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("TESSON_SHARED", ROOT.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, reason: str) -> None:
    """Skip (or, in CI, fail) the calling test when ``ok`` is false."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def tesson_cmd(*args: str, env: dict | None = None, input: str | None = None, timeout: float = 120):
    """Run the real CLI in a subprocess, as a user would: returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tesson", *args],
        capture_output=True,
        text=True,
        env=full_env,
        input=input,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def hwloc():
    require(shutil.which("lstopo-no-graphics") is not None and shutil.which("hwloc-distrib") is not None,
            "hwloc is not installed (apt-get install hwloc)")
    return True
