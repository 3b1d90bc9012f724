#!/usr/bin/env bash
# Makes .venv-mcp: reachy-mini-mcp 0.3.0 (PyPI), the MCP server that lets an
# AI assistant drive a Reachy Mini over the vendor daemon's HTTP API, for
# test/system/test_vendor_http.py (it runs every one of its 18 tools against
# our stack).
# Its own venv: its `server` extra requires `reachy-mini` (the vendor's
# package, which imports as `reachy_mini` like this package, and whose full
# install needs PyGObject, onnxruntime and the daemon's dependencies). The
# MCP server never imports it (checked below: it talks HTTP only), so the
# wheel goes in with --no-deps plus what its modules do import: fastmcp and
# mcp (the MCP server and client), httpx, python-dotenv.
# Prints the reason and exits 0 when it cannot be made (the test then skips
# with that reason, read from .venv-mcp.failed), 1 when REACHY_MINI_REQUIRE_SDK=1.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${MCP_VENV:-.venv-mcp}
STAMP=$VENV/.installed
MCP_VERSION=0.3.0
[ -f "$STAMP" ] && exit 0
rm -f "$VENV.failed"
fail() { echo "reachy_mini: reachy-mini-mcp venv not made: $*" | tee "$VENV.failed" >&2; exit "${REACHY_MINI_REQUIRE_SDK:-0}"; }
PY=$(command -v python3.11 || command -v python3)
[ -n "$PY" ] || fail "no python3"
rm -rf "$VENV"
"$PY" -m venv "$VENV" || fail "python3 -m venv failed"
V=$(cd "$VENV" && pwd)
P=$V/bin/python
$P -m pip install -q --no-deps "reachy-mini-mcp==$MCP_VERSION" 2>"$VENV/pip.log" \
  || { tail -5 "$VENV/pip.log" >&2; fail "pip install of reachy-mini-mcp $MCP_VERSION failed"; }
# the versions this was tested with (mcp 2 renamed CallToolResult.isError; the test reads both)
$P -m pip install -q "fastmcp==4.2.3" "mcp==2.3.0" httpx python-dotenv 2>>"$VENV/pip.log" \
  || { tail -5 "$VENV/pip.log" >&2; fail "pip install of the MCP server's modules failed"; }
# the server imports (and registers its 18 tools) without the vendor's package
(cd /tmp && "$P" -c "
import sys, reachy_mini_mcp.server as s
assert 'reachy_mini' not in sys.modules, 'reachy_mini imported'
assert len(s.TOOL_REGISTRY) == 18, sorted(s.TOOL_REGISTRY)
" >/dev/null 2>"$V/import.log") || { tail -5 "$V/import.log" >&2; fail "reachy-mini-mcp does not import in $VENV"; }
touch "$STAMP"
echo "reachy_mini: reachy-mini-mcp $MCP_VERSION in $VENV"
