#!/usr/bin/env bash
# Makes (once) a Debian 13 "trixie" root for the camera-socket test with the
# vendor's real client (test/system/test_camera_socket_sdk.py): Debian 12's
# GStreamer (1.22) has no unixfdsrc, Debian 13's (1.26) has it.
#
#   tools/trixie_root.sh          build it if absent, print its path (last line)
#   tools/trixie_root.sh --path   print the path it has / would have, build nothing
#
# The root lives outside the clone, in a cache keyed by the recipe's hash:
#   ${REACHY_MINI_TRIXIE_CACHE:-/var/cache/reachy_mini}/trixie-<sha256 of $RECIPE below, 12 hex>
# and is reused when its .complete stamp is there (CI builds it once).
# Recipe (as the issue found it must be done):
#  - debootstrap --variant=minbase trixie, from the mirror apt already uses
#    (REACHY_MINI_DEBIAN_MIRROR overrides it);
#  - the GStreamer packages installed INSIDE with apt-get (debootstrap's --include
#    cannot resolve their dependencies);
#  - the vendor SDK, client only (as tools/sdk_venv.sh does for .venv-sdk): its
#    wheels downloaded OUTSIDE with pip download --only-binary (pip inside
#    cannot verify the index's certificate here: Python 3.13's strict X.509
#    checks) and installed inside with --no-index --find-links into
#    /opt/sdk, a venv with --system-site-packages (Debian's PyGObject 3.50:
#    works although the SDK pins <= 3.46).
# Mounts needed while building (/proc) are made in a private mount namespace
# (unshare -m), so nothing stays mounted when this script ends.
# Exit 0 with the path on the last line. When it cannot be made (no root, no
# debootstrap, no unshare, a failed step) it prints the reason, writes it to
# <root>.failed (the test then skips with it) and exits 0 — or 1 when
# REACHY_MINI_REQUIRE_TRIXIE=1 (CI: .ci/run), where the test must not skip.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SDK_VERSION=1.13.0
PKGS="python3 python3-venv python3-gi python3-numpy gstreamer1.0-tools gstreamer1.0-plugins-base"
PKGS="$PKGS gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0"
PKGS="$PKGS gir1.2-gst-plugins-bad-1.0"
# the modules the SDK's client imports: ReachyMini() (as tools/sdk_venv.sh) and its LOCAL media backend's audio
CLIENT_MODS="numpy>=2.2.5 asgiref psutil pyserial requests websockets<16 pydantic<3 zeroconf pyusb libusb_package platformdirs"
RECIPE="debootstrap minbase trixie; apt-get: $PKGS; reachy-mini==$SDK_VERSION --no-deps; $CLIENT_MODS; /opt/sdk venv"
CACHE=${REACHY_MINI_TRIXIE_CACHE:-/var/cache/reachy_mini}
HASH=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)   # a change of the recipe makes a new root
ROOT=$CACHE/trixie-$HASH

ROOT=${REACHY_MINI_TRIXIE_ROOT:-$ROOT}     # an existing root elsewhere (used as it is)
if [ "${1:-}" = --path ]; then echo "$ROOT"; exit 0; fi
if [ -f "$ROOT/.complete" ]; then echo "$ROOT"; exit 0; fi

cant() {
  mkdir -p "$CACHE" 2>/dev/null && echo "$*" >"$ROOT.failed" 2>/dev/null
  echo "reachy_mini: Debian 13 root for the real-client camera test not made: $*" >&2
  exit "${REACHY_MINI_REQUIRE_TRIXIE:-0}"
}
[ "$(id -u)" -eq 0 ] || cant "debootstrap and chroot need root"
command -v debootstrap >/dev/null || cant "debootstrap is not installed (tools/sysdeps.sh test installs it)"
unshare -m --propagation private true 2>/dev/null || cant "unshare -m (a private mount namespace) is not allowed here"
[ -e /usr/share/debootstrap/scripts/trixie ] || cant "this debootstrap does not know trixie"

mirror=${REACHY_MINI_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # the first plain Debian archive URI apt is configured with (deb822 or one-line format)
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {for (i=2;i<=NF;i++) if ($i !~ /security/) {print $i; exit}}')
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || cant "no Debian mirror found in apt's sources (set REACHY_MINI_DEBIAN_MIRROR)"

mkdir -p "$CACHE"
exec 9>"$CACHE/.trixie.lock"
flock 9                                   # one builder at a time; the others reuse its result
if [ -f "$ROOT/.complete" ]; then echo "$ROOT"; exit 0; fi
rm -f "$ROOT.failed"
BUILD=$ROOT.build
echo "reachy_mini: building the Debian 13 root for the real-client camera test in $ROOT (minutes, once)" >&2
if [ ! -f "$BUILD/.debootstrapped" ]; then   # a finished debootstrap stage is kept when a later stage failed
  rm -rf "$BUILD"
  debootstrap --variant=minbase trixie "$BUILD" "$mirror" >"$CACHE/trixie-$HASH.log" 2>&1 \
    || { tail -5 "$CACHE/trixie-$HASH.log" >&2; cant "debootstrap failed (log: $CACHE/trixie-$HASH.log)"; }
  touch "$BUILD/.debootstrapped"
fi

unshare -m --propagation private bash -c '
  set -e
  mount -t proc proc "$1/proc"
  cp /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true
  chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $2 && apt-get clean"
' _ "$BUILD" "$PKGS" >>"$CACHE/trixie-$HASH.log" 2>&1 \
  || { tail -5 "$CACHE/trixie-$HASH.log" >&2; cant "apt-get inside the root failed (log: $CACHE/trixie-$HASH.log)"; }

# The SDK wheel without its daemon-side requirements, and the modules its client imports
# (the list of tools/sdk_venv.sh), for the root's CPython 3.13.
WH=$BUILD/opt/wheels
mkdir -p "$WH"
PIPDL=(python3 -m pip download -q --only-binary=:all: --python-version 3.13 --implementation cp --abi cp313
       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 -d "$WH")
if [ -x "$HERE/../.venv/bin/python" ]; then PIPDL[0]="$HERE/../.venv/bin/python"; fi
{ "${PIPDL[@]}" --no-deps "reachy-mini==$SDK_VERSION" \
  && "${PIPDL[@]}" $CLIENT_MODS; } \
  >>"$CACHE/trixie-$HASH.log" 2>&1 || { tail -5 "$CACHE/trixie-$HASH.log" >&2; cant "pip download of the SDK wheels failed"; }
unshare -m --propagation private bash -c '
  set -e
  mount -t proc proc "$1/proc"
  chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root sh -c "
    python3 -m venv --system-site-packages /opt/sdk &&
    /opt/sdk/bin/pip install -q --no-index --find-links /opt/wheels --no-deps reachy-mini==$2 &&
    /opt/sdk/bin/pip install -q --no-index --find-links /opt/wheels $3 &&
    cd / && /opt/sdk/bin/python -c \"import gi; gi.require_version(\\\"Gst\\\", \\\"1.0\\\"); from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find(\\\"unixfdsrc\\\"), \\\"no unixfdsrc\\\"; from reachy_mini import ReachyMini; import reachy_mini.daemon.startup_app_config, reachy_mini.media.audio_gstreamer; print(\\\"sdk ok\\\", Gst.version_string())\"
  "
' _ "$BUILD" "$SDK_VERSION" "$(echo "$CLIENT_MODS" | sed -E 's/[<>=][^ ]*//g')" >>"$CACHE/trixie-$HASH.log" 2>&1 \
  || { tail -5 "$CACHE/trixie-$HASH.log" >&2; cant "installing the SDK inside the root failed (log: $CACHE/trixie-$HASH.log)"; }
rm -rf "$ROOT"
mv "$BUILD" "$ROOT"
touch "$ROOT/.complete"
echo "reachy_mini: Debian 13 root ready" >&2
echo "$ROOT"
