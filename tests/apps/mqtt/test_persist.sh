#!/bin/sh
# Integration test of the MQTT broker's persistence: kill -9 in the middle
# of QoS 1 and QoS 2 streams to persistent subscribers, restart, and check
# that every acknowledged message arrives (QoS 2 exactly once); retained
# messages survive; damaged store files are refused at start; the same with
# a Redis store. The tests are tests/apps/mqtt/persist_test.py (unittest);
# each uses a free loopback port and a temporary directory, and kills what
# it started. Then tests/apps/mqtt/persist_failover_test.py: one
# redis-server and three clustered nodes; the node holding two persistent
# subscribers (QoS 1, QoS 2) is killed with -9 while messages are queued
# and in flight, a survivor restores their sessions from Redis, and the
# clients, back on a survivor, get session present = 1 and every
# acknowledged message, QoS 2 exactly once (docs/adr/0160); a node killed
# and restarted at once, with and without a store paused for writes, keeps
# every acknowledged message of its sessions (docs/adr/0265).
# Usage: test_persist.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh python3-paho-mqtt redis-server
# Debian's python3 (where python3-paho-mqtt lives), not one on the PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" timeout 300 "$py" \
    tests/apps/mqtt/persist_test.py
HERMES_MQTT="$build/hermes-mqtt" exec timeout 120 "$py" \
    tests/apps/mqtt/persist_failover_test.py
