#!/bin/sh
# The net benchmark suite: bench/suite_net.sh BUILD [--smoke]
#
# HP echo over loopback (BUILD/bench/bench_net): messages/s and MB/s for
# small (16-byte) and 4 KiB bodies, over one and 64 connections, each
# client pipelining 32 lines. Hermes is the whole stack (net, HP codec and
# session, one pinned receiver per connection); `limit-echo`, measured in
# the same run by the same clients, is a thread-per-connection blocking C
# echo that parses nothing: what loopback gives on this machine, so the
# ratio says how much of it Hermes keeps. Writes BUILD/bench/net.tsv
# (scenario system value unit better) and prints it with bench/table.sh.
#
# --smoke: tiny sizes, every echoed byte compared with what was sent, no
# timing, no TSV. Part of `make test`.
set -u
. bench/lib.sh
build=${1:?usage: bench/suite_net.sh BUILD [--smoke]}
bin=$build/bench/bench_net
out=$build/bench
tsv=$out/net.tsv
if [ ! -x "$bin" ]; then
    echo "suite_net: $bin is missing; run make first" >&2
    exit 1
fi
mkdir -p "$out"
if [ "${2:-}" = --smoke ]; then
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT INT TERM
    timeout 120 "$bin" --smoke >"$tmp" 2>&1
    status=$?
    sed 's/^/  /' "$tmp"
    [ $status = 0 ] || echo "suite_net: smoke FAILED (exit status $status)"
    exit $status
fi

date_utc=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(bench_load)
printf 'scenario\tsystem\tvalue\tunit\tbetter\n' >"$tsv"
if ! timeout 900 "$bin" >>"$tsv"; then
    echo "suite_net: bench_net failed" >&2
    exit 1
fi
echo "Hermes net suite (HP echo over loopback), $date_utc"
echo "machine: nproc $(nproc); load average $load_start at start, $(bench_load) at end"
echo
sh bench/table.sh "$tsv"
echo
echo "results: $tsv"
