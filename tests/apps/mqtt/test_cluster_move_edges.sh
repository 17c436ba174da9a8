#!/bin/sh
# Integration test of MQTT session moves at their edges (issue 8;
# docs/adr/0165, 0225, 0260): three or four real hermes-mqtt processes
# clustered on loopback (free ports), driven by python3-paho-mqtt, raw
# sockets and mosquitto_pub. A clean leave survives the death of the new
# owner during the move; a session without subscriptions moves with its
# in-flight messages on a join and on a leave.
# The tests are tests/apps/mqtt/cluster_move_edges_test.py (plain
# unittest); every process is stopped and every file removed at the end.
# Usage: test_cluster_move_edges.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh mosquitto-clients python3-paho-mqtt redis-server
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" exec timeout 180 "$py" \
    tests/apps/mqtt/cluster_move_edges_test.py
