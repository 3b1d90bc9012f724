#!/usr/bin/env bash
# Makes .venv-sdk: the vendor's SDK (PyPI reachy-mini 1.13.0), client only,
# for the tests that drive our stack with it (test/system/test_vendor_sdk.py).
# Its own venv: the SDK imports as `reachy_mini`, like this package.
# Client-only install: the wheel with --no-deps, the modules `import
# reachy_mini` and its GStreamer audio need, and PyGObject from Debian (python3-gi: a venv from
# Debian's /usr/bin/python3 with --system-site-packages). Also the dances
# library (play_move test, grid_snap measurement) and the vendor's kinematics
# crate reachy-mini-rust-kinematics (test/system/test_vendor_kinematics.py
# compares our IK/FK with the vendor's AnalyticalKinematics; the vendor's
# reachy_mini.kinematics package imports its NN engine, hence onnxruntime,
# pinned as the wheel pins it). Prints the reason and exits 0 when it cannot
# be made (the tests then skip with that reason, read from .venv-sdk.failed),
# 1 when REACHY_MINI_REQUIRE_SDK=1.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${SDK_VENV:-.venv-sdk}
STAMP=$VENV/.installed
SDK_VERSION=1.13.0
# The SDK's client modules; pyusb, libusb-package, platformdirs: its GStreamer audio imports them
# (media/audio_control_utils.py for the direction of arrival, the speaker EQ's daemon config);
# the vendor's kinematics crate and onnxruntime: test/system/test_vendor_kinematics.py (see above).
MODULES='numpy asgiref psutil pyserial requests websockets<16 pydantic zeroconf pyusb libusb-package platformdirs
reachy-mini-rust-kinematics>=1.0.3,<1.1 onnxruntime==1.27.0'
RECIPE="$SDK_VERSION dances kinematics $(echo $MODULES)"   # a venv made from another recipe is remade
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] && exit 0
rm -f "$VENV.failed"
# CI sets REACHY_MINI_REQUIRE_SDK=1 (.ci/run): there the SDK tests must run, so a failure stops make.
fail() { echo "reachy_mini: vendor SDK venv not made: $*" | tee "$VENV.failed" >&2; exit "${REACHY_MINI_REQUIRE_SDK:-0}"; }
PY=/usr/bin/python3
[ -x "$PY" ] || fail "no Debian /usr/bin/python3"
"$PY" -c "import gi" 2>/dev/null || fail "Debian's python3-gi is missing (tools/sysdeps.sh test)"
rm -rf "$VENV"
"$PY" -m venv --system-site-packages "$VENV" || fail "python3 -m venv failed (Debian's python3-venv missing?)"
P=$(cd "$VENV" && pwd)/bin/python
$P -m pip install -q --no-deps "reachy-mini==$SDK_VERSION" reachy-mini-dances-library || fail "pip install of the SDK wheel failed"
# (pip's resolver notes that the wheel's daemon-side requirements are absent: that is the point)
# shellcheck disable=SC2086
$P -m pip install -q $MODULES 2>"$VENV/pip.log" \
  || { tail -5 "$VENV/pip.log" >&2; fail "pip install of the SDK's client modules failed"; }
(cd /tmp && "$P" -c "import reachy_mini, reachy_mini_dances_library; from reachy_mini import ReachyMini
from reachy_mini.kinematics import AnalyticalKinematics; AnalyticalKinematics()") \
  || fail "import reachy_mini failed in $VENV"
echo "$RECIPE" > "$STAMP"
echo "reachy_mini: vendor SDK $SDK_VERSION in $VENV"
