# reachy_mini: `make run` starts the stack on the simulated robot,
# `make test` runs every test, `make bench` prints figures.
# Both do all set-up first: venv in .venv, ROS 2 wheels, Rust build, tf2_msgs.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUST_SRC := $(shell find rust_driver/src -name "*.rs") rust_driver/Cargo.toml rust_driver/Cargo.lock
TF2_MSGS := tools/build_tf2_msgs.sh $(wildcard tools/tf2_msgs/*.* tools/tf2_msgs/msg/*)
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: sdk-venv mcp-venv trixie-root setup sysdeps-run sysdeps-test run test test-rust test-py test-stress bench soak alarm-quality install-service uninstall-service clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py setup.cfg pyproject.toml $(RUST_SRC) $(TF2_MSGS)
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-build-isolation -e .
	@# tf2_msgs is not on PyPI: built from our TFMessage definition when not importable
	@$(PY) -c "import tf2_msgs.msg" 2>/dev/null || bash tools/build_tf2_msgs.sh $(VENV)
	@touch $@

# System packages (Debian/Ubuntu): apt-get as root, `sudo -n` if it works,
# else a stop with the exact command. REACHY_MINI_SKIP_SYSDEPS=1 skips it.
sysdeps-run:
	@bash tools/sysdeps.sh run

sysdeps-test:
	@bash tools/sysdeps.sh test

run: sysdeps-run setup
	$(VENV)/bin/reachy-mini-bringup --use-sim

test: sysdeps-test setup sdk-venv mcp-venv trixie-root test-rust test-py

# The vendor's SDK in its own venv (name clash: both import as reachy_mini),
# for test/system/test_vendor_sdk.py; tools/sdk_venv.sh says why when it cannot.
sdk-venv:
	@bash tools/sdk_venv.sh

# A Debian 13 root (GStreamer 1.26's unixfdsrc) with the vendor SDK, for the camera-socket
# test with the vendor's real client; built once into /var/cache/reachy_mini, then reused.
trixie-root:
	@bash tools/trixie_root.sh >/dev/null

# reachy-mini-mcp (PyPI) in its own venv, for test/system/test_vendor_http.py
mcp-venv:
	@bash tools/mcp_venv.sh

test-rust:
	cargo test --manifest-path rust_driver/Cargo.toml --release

test-py: sysdeps-test setup sdk-venv mcp-venv trixie-root
	$(PY) -m pytest -q test

# The suite with two CPU hogs beside it (stress-ng), as on a busy robot.
test-stress: sysdeps-test setup
	@stress-ng --cpu 2 --timeout 3600s --quiet & hog=$$!; \
	$(PY) -m pytest -q test; rc=$$?; kill $$hog 2>/dev/null; wait $$hog 2>/dev/null; exit $$rc

# BENCH=footprint (or all sections) also makes the vendor daemon's venv
# (.venv-vendor, tools/vendor_daemon_venv.sh) and its system packages; when
# they cannot be had, the footprint bench says so and skips the vendor's side.
bench: setup sdk-venv
	@if [ -z "$(BENCH)" ] || echo " $(BENCH) " | grep -q " footprint "; then \
	  bash tools/sysdeps.sh bench || echo "reachy_mini: footprint: the vendor daemon's system packages are missing (above)"; \
	  bash tools/vendor_daemon_venv.sh; fi
	$(PY) -m tools.bench $(BENCH)

# Fault-storm soak of the whole simulated stack: `make soak DURATION=1800`.
DURATION ?= 120
soak: setup
	$(PY) -m tools.soak --duration $(DURATION) --report soak_report.json

# Does the stack cry wolf? No faults, bursty stress-ng load: `make alarm-quality QUALITY_DURATION=600`.
QUALITY_DURATION ?= 600
alarm-quality: sysdeps-test setup
	$(PY) -m tools.alarm_quality --duration $(QUALITY_DURATION) --report alarm_quality.json

# Boot-time service (systemd) + udev rules; runs as SERVICE_USER (default: you).
SERVICE_USER ?= $(USER)
install-service: setup
	sudo $(abspath $(VENV))/bin/reachy-mini-service install --user $(SERVICE_USER)

uninstall-service:
	sudo $(abspath $(VENV))/bin/reachy-mini-service uninstall

clean:
	rm -rf $(VENV) .venv-sdk .venv-sdk.failed .venv-mcp .venv-mcp.failed rust_driver/target build *.egg-info reachy_mini/*.so
