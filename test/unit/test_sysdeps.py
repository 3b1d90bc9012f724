"""tools/sysdeps.sh (run by `make run` / `make test`): nothing to do when the
packages are there; without root and without password-less sudo it stops
with the exact command to run."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "tools", "sysdeps.sh")


def test_nothing_missing_is_silent():
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system")
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "bash"], capture_output=True, text=True).stdout
    assert "install ok installed" in installed
    out = subprocess.run(["bash", SCRIPT, "run"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, REACHY_MINI_SYSDEPS_EXTRA="bash"))
    # run's own packages are installed by `make test` before this runs
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out


def test_unprivileged_user_gets_the_exact_command():
    if os.geteuid() != 0 or shutil.which("su") is None or shutil.which("dpkg-query") is None:
        pytest.skip("needs root (to become an unprivileged user) on Debian")
    fake = "reachy-mini-no-such-package"
    out = subprocess.run(["su", "-s", "/bin/bash", "nobody", "-c",
                          f"REACHY_MINI_SYSDEPS_EXTRA={fake} bash {SCRIPT} run"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"sudo apt-get update && sudo apt-get install -y {fake}" in out.stderr
    assert "installing" not in out.stdout


def test_bad_usage_and_skip():
    assert subprocess.run(["bash", SCRIPT, "nonsense"], capture_output=True).returncode == 2
    out = subprocess.run(["bash", SCRIPT, "test"], capture_output=True, text=True,
                         env=dict(os.environ, REACHY_MINI_SKIP_SYSDEPS="1",
                                  REACHY_MINI_SYSDEPS_EXTRA="reachy-mini-no-such-package"))
    assert out.returncode == 0 and out.stdout == ""
