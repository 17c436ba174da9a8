#!/bin/sh
# Integration test of MQTT cluster sessions (issue 8, part B): three or four
# real hermes-mqtt processes clustered on loopback (ephemeral cluster ports,
# a 0600 secret in a temporary directory) driven by python3-paho-mqtt,
# mosquitto_pub and raw sockets: a persistent session followed across
# nodes, takeover across nodes with the will, client id uniqueness, a node
# killed with -9, a node joining (sessions handed over with their state).
# The tests are tests/apps/mqtt/cluster_sessions_test.py (plain unittest);
# then tests/apps/mqtt/cluster_join_test.py: a node joining through one
# seed adopts sessions before its link to their connections' node is up,
# and no client of the staying nodes is disconnected or loses a message
# (docs/adr/0266); then tests/apps/mqtt/cluster_connect_test.py: clients
# connect to every node in a loop while a fourth node joins and leaves, and
# every CONNECT gets its CONNACK (docs/adr/0295). Every process is stopped
# and every file removed at the end.
# Usage: test_cluster_sessions.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh mosquitto-clients python3-paho-mqtt
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" timeout 300 "$py" \
    tests/apps/mqtt/cluster_sessions_test.py
HERMES_MQTT="$build/hermes-mqtt" timeout 120 "$py" \
    tests/apps/mqtt/cluster_join_test.py
HERMES_MQTT="$build/hermes-mqtt" exec timeout 120 "$py" \
    tests/apps/mqtt/cluster_connect_test.py
