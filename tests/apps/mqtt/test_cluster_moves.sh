#!/bin/sh
# Integration test of MQTT session moves across membership changes that
# involve a death (issue 8; docs/adr/0165, 0225): one redis-server and
# three or four real hermes-mqtt processes clustered on loopback (free
# ports), driven by python3-paho-mqtt and mosquitto_pub. Sessions return
# to a node restarted after kill -9 with their queues; a session moving
# between two nodes survives the death of the new owner (with and without
# Redis) or of the old one, with a publisher streaming QoS 1 messages.
# Then the edges (cluster_move_edges_test.py, docs/adr/0260): a clean leave
# survives the death of its new owner; a session without subscriptions
# moves with its in-flight messages on a join and on a leave. Then move
# generations (cluster_move_gen_test.py, docs/adr/0290): a relay's
# give-back after a death yields to the dead owner's newer stored state.
# The tests are tests/apps/mqtt/cluster_moves_test.py,
# cluster_move_edges_test.py and cluster_move_gen_test.py (plain
# unittest); every process is stopped
# and every file removed at the end.
# Usage: test_cluster_moves.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh mosquitto-clients python3-paho-mqtt redis-server
py=/usr/bin/python3
[ -x "$py" ] || py=python3
export HERMES_MQTT="$build/hermes-mqtt"
timeout 240 "$py" tests/apps/mqtt/cluster_moves_test.py
timeout 180 "$py" tests/apps/mqtt/cluster_move_edges_test.py
exec timeout 60 "$py" tests/apps/mqtt/cluster_move_gen_test.py
