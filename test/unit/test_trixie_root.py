"""tools/trixie_root.sh (the Debian 13 root of the real-client camera test): its path
is keyed by the recipe and stable; where it cannot be made it says why, leaves the
reason for the test's skip, and fails only when CI requires it."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "tools",
                      "trixie_root.sh")


def run(*args, env=None, user=None):
    cmd = ["bash", SCRIPT, *args]
    if user:
        cmd = ["su", "-s", "/bin/bash", user, "-c", " ".join(f"'{c}'" for c in cmd)]
    # the caller's REACHY_MINI_REQUIRE_TRIXIE (.ci/run exports 1) is not the case under test: each test sets its own
    base = {k: v for k, v in os.environ.items() if k != "REACHY_MINI_REQUIRE_TRIXIE"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(base, **(env or {})))


def test_path_is_keyed_by_the_recipe_and_stable(tmp_path):
    a = run("--path", env={"REACHY_MINI_TRIXIE_CACHE": str(tmp_path)}).stdout.strip()
    assert a == run("--path", env={"REACHY_MINI_TRIXIE_CACHE": str(tmp_path)}).stdout.strip()
    assert a.startswith(str(tmp_path) + "/trixie-") and len(os.path.basename(a)) == len("trixie-") + 12
    assert run("--path", env={"REACHY_MINI_TRIXIE_ROOT": "/srv/mine"}).stdout.strip() == "/srv/mine"
    assert not os.listdir(tmp_path)          # --path builds nothing


def test_without_root_it_says_why_and_fails_only_when_required():
    if os.geteuid() != 0 or shutil.which("su") is None:
        pytest.skip("needs root (to become an unprivileged user)")
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="reachy_trixie_test_"))   # reachable by nobody
    os.chmod(tmp_path, 0o777)
    env = {"REACHY_MINI_TRIXIE_CACHE": str(tmp_path)}
    out = run(env=env, user="nobody")
    assert out.returncode == 0 and "need root" in out.stderr, out
    failed = [f for f in os.listdir(tmp_path) if f.endswith(".failed")]
    assert failed and "need root" in open(tmp_path / failed[0]).read()
    out = run(env=dict(env, REACHY_MINI_REQUIRE_TRIXIE="1"), user="nobody")
    assert out.returncode == 1 and "not made" in out.stderr
    shutil.rmtree(tmp_path)
