#!/bin/sh
# MQTT 3.1.1 conformance cases (docs/mqtt-conformance.md): starts the real
# build/hermes-mqtt on a free loopback port and speaks raw MQTT to it over
# TCP. The cases are tests/apps/mqtt/conformance_test.py (plain unittest).
# Usage: test_conformance.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh python3-paho-mqtt
# Debian's python3 (where python3-paho-mqtt lives), not one on the PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" exec "$py" tests/apps/mqtt/conformance_test.py
