#!/usr/bin/env bash
# Makes .venv-vendor: the vendor's daemon, PyPI reachy-mini 1.13.0, full
# install (with its dependencies, as an owner installs it), for the footprint
# bench (`make bench BENCH=footprint`, tools/bench/footprint.py) to run it
# beside our stack on the same simulated bus.
# Its own venv: the vendor package imports as `reachy_mini`, like ours.
# The full install builds PyGObject (Debian libgirepository1.0-dev,
# libcairo2-dev, pkg-config) and the daemon imports GStreamer's typelibs even
# with --no-media (gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0):
# tools/sysdeps.sh bench installs them.
# Prints the reason and exits 0 when it cannot be made (the bench then says
# why it skips the vendor's side, read from .venv-vendor.failed).
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENDOR_VENV:-.venv-vendor}
STAMP=$VENV/.installed
VERSION=1.13.0
[ -f "$STAMP" ] && exit 0
rm -f "$VENV.failed"
fail() { echo "reachy_mini: vendor daemon venv not made: $*" | tee "$VENV.failed" >&2; exit 0; }
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -n "$PY" ] || fail "no python3"
pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null \
  || fail "libgirepository1.0-dev / libcairo2-dev missing (tools/sysdeps.sh bench)"
rm -rf "$VENV"
"$PY" -m venv "$VENV" || fail "$PY -m venv failed"
P=$(cd "$VENV" && pwd)/bin/python
$P -m pip install -q --upgrade pip >"$VENV/pip.log" 2>&1
$P -m pip install -q "reachy-mini==$VERSION" >>"$VENV/pip.log" 2>&1 \
  || { tail -20 "$VENV/pip.log" >&2; fail "pip install reachy-mini==$VERSION failed (see $VENV/pip.log)"; }
[ -x "$VENV/bin/reachy-mini-daemon" ] || fail "reachy-mini-daemon not installed"
(cd /tmp && "$P" -c "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; import reachy_mini.daemon.app.main") \
  >>"$VENV/pip.log" 2>&1 || { tail -5 "$VENV/pip.log" >&2; fail "the vendor daemon does not import (see $VENV/pip.log)"; }
touch "$STAMP"
echo "reachy_mini: vendor daemon $VERSION in $VENV"
