#!/bin/sh
# Integration test of a session's writes to a connection on another node
# while the cluster link is full (docs/adr/0230): two real hermes-mqtt
# processes with a small --cluster-buffer-limit, a paho subscriber on one
# whose session lives on the other, that node stopped (SIGSTOP) during a
# flood of QoS 1 and QoS 0 messages; every message must arrive, in order.
# The test is tests/apps/mqtt/cluster_backpressure_test.py (unittest);
# then tests/apps/mqtt/cluster_held_ack_test.py: a SUBACK held that way
# reaches the client after the session moves (docs/adr/0296). Every
# process is stopped and every file removed at the end.
# Usage: test_cluster_backpressure.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh python3-paho-mqtt
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" timeout 120 "$py" \
    tests/apps/mqtt/cluster_backpressure_test.py
HERMES_MQTT="$build/hermes-mqtt" exec timeout 60 "$py" \
    tests/apps/mqtt/cluster_held_ack_test.py
