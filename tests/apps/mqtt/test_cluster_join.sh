#!/bin/sh
# Integration test of a node joining an MQTT cluster (issue 8,
# docs/adr/0266): two real hermes-mqtt processes on loopback (free ports),
# clients connected to n1 whose sessions move to n3 when it joins through
# n2 only (its link to n1 comes up after it adopts some of them), a QoS 1
# stream from n2 meanwhile, then n2 killed. Every client stays connected
# and gets every acknowledged message. The test is
# tests/apps/mqtt/cluster_join_test.py (plain unittest); every process is
# stopped at the end.
# Usage: test_cluster_join.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh mosquitto-clients python3-paho-mqtt
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" exec timeout 120 "$py" \
    tests/apps/mqtt/cluster_join_test.py
