#!/bin/sh
# The net suite: HP echo over loopback (bench/bench_net.c), Hermes against a
# plain blocking C echo (`limit-echo`) measured in the same run.
#   sh bench/suite_net.sh BUILD [--smoke]
# Writes build/bench/net.tsv and prints the table; --smoke runs tiny sizes,
# checks every echoed byte, and times nothing.
set -eu
build=$1
mode=${2:-}
bin="$build/bench/bench_net"
[ -x "$bin" ] || { echo "suite_net: $bin not built (make)" >&2; exit 1; }
if [ "$mode" = --smoke ]; then
    exec "$bin" --smoke >/dev/null
fi
mkdir -p build/bench
out=build/bench/net.tsv
printf 'scenario\tsystem\tvalue\tunit\tbetter\n' >"$out"
"$bin" >>"$out"
sh bench/table.sh "$out"
