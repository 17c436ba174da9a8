#!/bin/sh
# Integration test of the MQTT broker: starts the real build/hermes-mqtt on
# free loopback ports and drives it with real clients (python3-paho-mqtt,
# mosquitto_pub/mosquitto_sub, and raw sockets for malformed input). The
# tests themselves are tests/apps/mqtt/broker_test.py and, for the MQTT 3.1.1
# statements it does not prove (docs/mqtt-conformance.md),
# tests/apps/mqtt/conformance_test.py (plain unittest).
# Usage: test_broker.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh mosquitto-clients python3-paho-mqtt
# Debian's python3 (where python3-paho-mqtt lives), not one on the PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
export HERMES_MQTT="$build/hermes-mqtt"
"$py" tests/apps/mqtt/broker_test.py
exec "$py" tests/apps/mqtt/conformance_test.py
