#!/bin/sh
# Integration test of the MQTT broker's persistence: kill -9 in the middle
# of QoS 1 and QoS 2 streams to persistent subscribers, restart, and check
# that every acknowledged message arrives (QoS 2 exactly once); retained
# messages survive; damaged store files are refused at start; the same with
# a Redis store. The tests are tests/apps/mqtt/persist_test.py (unittest);
# each uses a free loopback port and a temporary directory, and kills what
# it started.
# Usage: test_persist.sh BUILD_DIR
set -eu
build=${1:-build}
[ -x "$build/hermes-mqtt" ] || { echo "no $build/hermes-mqtt" >&2; exit 1; }
sh mk/deps.sh python3-paho-mqtt redis-server
# Debian's python3 (where python3-paho-mqtt lives), not one on the PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
HERMES_MQTT="$build/hermes-mqtt" exec timeout 300 "$py" \
    tests/apps/mqtt/persist_test.py
