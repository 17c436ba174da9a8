#!/bin/sh
# The MQTT subscription tree on its own (bench/bench_mqtt_topic.c):
# subscribe, match and unsubscribe rates. Usage: suite_mqtt_topic.sh BUILD
# [--smoke]. Writes build/bench/mqtt_topic.tsv and prints its table.
set -eu
build=$1
bin=$build/bench/bench_mqtt_topic
if [ "${2:-}" = --smoke ]; then
    exec "$bin" --smoke
fi
out=$build/bench/mqtt_topic.tsv
mkdir -p "$build/bench"
printf 'scenario\tsystem\tvalue\tunit\tbetter\n' > "$out"
"$bin" >> "$out"
sh bench/table.sh "$out"
