#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages that `make run` / `make test` need.
#   tools/sysdeps.sh run    pkg-config (Rust build), libportaudio2 (audio capture),
#                           alsa-utils (audio_node's arecord/aplay on the shared PCMs),
#                           cmake, g++ (tf2_msgs built into the venv: tools/build_tf2_msgs.sh)
#   tools/sysdeps.sh test   the above + chromium, chromium-driver (browser test), stress-ng (make test-stress),
#                           openssl (self-signed certificates of the TLS tests),
#                           prometheus, prometheus-alertmanager (config/monitoring tested against the real servers),
#                           python3-gi, python3-venv (the vendor SDK's client venv, tools/sdk_venv.sh),
#                           debootstrap (the Debian 13 root of the real-client camera test, tools/trixie_root.sh),
#                           gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0, gstreamer1.0-alsa,
#                           gstreamer1.0-plugins-base, gstreamer1.0-plugins-good (the SDK's GStreamer audio:
#                           alsasrc/alsasink on the shared PCMs, test/system/test_vendor_sdk_audio.py)
#   tools/sysdeps.sh bench  the test set + what the vendor daemon's full install needs (footprint bench,
#                           tools/vendor_daemon_venv.sh): libgirepository1.0-dev, libcairo2-dev (PyGObject
#                           build), gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0 (imported even with
#                           --no-media), iproute2 (loopback in its network namespace)
# Installs with apt-get when root, through `sudo -n` when sudo works without a
# password, and otherwise stops with the exact command to run.
# REACHY_MINI_SKIP_SYSDEPS=1 skips it; REACHY_MINI_SYSDEPS_EXTRA adds package names.
set -euo pipefail

set_name=${1:-}
case "$set_name" in
  run)  pkgs=(pkg-config libportaudio2 alsa-utils cmake g++) ;;
  test) pkgs=(pkg-config libportaudio2 alsa-utils cmake g++ chromium chromium-driver stress-ng openssl prometheus prometheus-alertmanager
              python3-gi python3-venv gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-alsa
              gstreamer1.0-plugins-base gstreamer1.0-plugins-good debootstrap) ;;
  bench) pkgs=(pkg-config libportaudio2 alsa-utils cmake g++ chromium chromium-driver stress-ng openssl prometheus prometheus-alertmanager
              python3-gi python3-venv gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gstreamer1.0-alsa
              gstreamer1.0-plugins-base gstreamer1.0-plugins-good debootstrap libgirepository1.0-dev libcairo2-dev iproute2) ;;
  *)    echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac
# shellcheck disable=SC2206
pkgs+=(${REACHY_MINI_SYSDEPS_EXTRA:-})

[ "${REACHY_MINI_SKIP_SYSDEPS:-0}" = 1 ] && exit 0

if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
  echo "reachy_mini: not a Debian/Ubuntu system; install the equivalents of: ${pkgs[*]}" >&2
  echo "  (then set REACHY_MINI_SKIP_SYSDEPS=1 to skip this check)" >&2
  exit 1
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "reachy_mini: these system packages are missing: ${missing[*]}" >&2
  echo "Install them, then run make again:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "reachy_mini: installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq "${missing[@]}"
