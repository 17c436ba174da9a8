#!/bin/sh
# Integration test of hermes-mqtt in cluster mode: three broker processes
# on loopback (ephemeral ports, a 0600 secret file in a temporary
# directory) driven by real clients (python3-paho-mqtt). The tests are
# tests/apps/mqtt/cluster_test.py (plain unittest); every process and file
# is cleaned up by it, and the whole run is bounded by `timeout`.
# Usage: test_cluster.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh mosquitto-clients python3-paho-mqtt
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" exec timeout -k 5 240 "$py" \
    tests/apps/mqtt/cluster_test.py
