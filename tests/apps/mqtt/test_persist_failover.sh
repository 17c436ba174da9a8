#!/bin/sh
# Integration test of persistent-session fail-over through a shared Redis
# (issue 10, docs/adr/0160): one redis-server and three hermes-mqtt nodes,
# real processes on loopback (free ports, ephemeral cluster ports, a 0600
# secret and the configuration in a temporary directory). The node holding
# two persistent paho subscribers (QoS 1, QoS 2) is killed with -9 while
# messages are queued and in flight; a survivor restores their sessions
# from Redis, and the clients, back on a survivor, get session present = 1
# and every acknowledged message, QoS 2 exactly once. The tests are
# tests/apps/mqtt/persist_failover_test.py; every process is stopped and
# every file removed at the end.
# Usage: test_persist_failover.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh python3-paho-mqtt redis-server
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" exec timeout 240 "$py" \
    tests/apps/mqtt/persist_failover_test.py
